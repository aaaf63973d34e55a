//! Events: one stored object with two views (core/v1 and events.k8s.io/v1), and the API server's
//! validation of both.
//!
//! As in kube-apiserver, an Event lives once in storage (in its core form) whichever API wrote it; the
//! events.k8s.io/v1 endpoint reads and writes the same objects through a field mapping
//! (`pkg/apis/events/v1/conversion.go`): `note`<->`message`, `regarding`<->`involvedObject`,
//! `deprecatedSource`<->`source`, `deprecatedFirstTimestamp`/`deprecatedLastTimestamp`/`deprecatedCount`
//! <->`firstTimestamp`/`lastTimestamp`/`count` and `reportingController`<->`reportingComponent`. So both
//! views share one resourceVersion and one change history. Validation follows
//! `pkg/apis/core/validation/events.go` (`ValidateEventCreate`, `ValidateEventUpdate`), which runs on the
//! core form whatever the request's version, so its field paths name core fields.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::errors::{ApiError, ApiResult};
use crate::resources::{GroupResource, ResourceType};
use crate::store::Change;

/// The group of the events.k8s.io API.
pub const EVENTS_GROUP: &str = "events.k8s.io";

/// `ReportingInstanceLengthLimit`, `ActionLengthLimit`, `ReasonLengthLimit` upstream.
const SHORT_FIELD_LIMIT: usize = 128;
/// `NoteLengthLimit` upstream: compared with Go's `len`, so it counts bytes.
pub const NOTE_LENGTH_LIMIT: usize = 1024;

/// Whether `gr` is the events.k8s.io view of Events.
pub fn is_events_view(gr: &GroupResource) -> bool {
    gr.group == EVENTS_GROUP && gr.resource == "events"
}

fn is_core_events(gr: &GroupResource) -> bool {
    gr.group.is_empty() && gr.resource == "events"
}

/// The collection objects of `gr` are stored in: events.k8s.io Events live with the core Events.
pub fn storage_gr(gr: &GroupResource) -> Cow<'_, GroupResource> {
    if is_events_view(gr) {
        Cow::Owned(GroupResource::new("", "events"))
    } else {
        Cow::Borrowed(gr)
    }
}

/// The object as the API of `gr` shows it, when that differs from the stored form; `None` otherwise.
pub fn view(gr: &GroupResource, stored: &Value) -> Option<Value> {
    is_events_view(gr).then(|| core_to_v1(stored))
}

/// The stored form of an object written through the API of `gr`: Events become canonical core Events
/// (whichever API wrote them), everything else is stored as it is.
pub fn to_storage(gr: &GroupResource, obj: Value) -> ApiResult<Value> {
    if is_events_view(gr) {
        v1_to_core(&obj)
    } else if is_core_events(gr) {
        canonical_core(&obj)
    } else {
        Ok(obj)
    }
}

/// A change as a watch on `gr` sees it: `None` when it belongs to another collection, converted when
/// `gr` is a second view of the stored collection.
pub fn change_for<'a>(gr: &GroupResource, c: &'a Change) -> Option<Cow<'a, Change>> {
    if c.gr != *storage_gr(gr) {
        return None;
    }
    if !is_events_view(gr) {
        return Some(Cow::Borrowed(c));
    }
    let mut v = c.clone();
    v.gr = gr.clone();
    v.object = core_to_v1(&c.object);
    v.previous = c.previous.as_ref().map(core_to_v1);
    Some(Cow::Owned(v))
}

/// Keys of the core form, as they are renamed in the events.k8s.io form.
const RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// Fields with the same name in both forms.
const SHARED: &[&str] = &[
    "metadata",
    "reason",
    "type",
    "eventTime",
    "series",
    "action",
    "related",
    "reportingInstance",
];

fn bad_field(field: &str, want: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Event in version \"v1\" cannot be handled as a Event: json: cannot unmarshal into Go struct field Event.{field} of type {want}"
    ))
}

/// Reads an optional field of the expected JSON type (null counts as absent).
fn typed<'a>(obj: &'a Value, field: &str, check: fn(&Value) -> bool, want: &str) -> ApiResult<Option<&'a Value>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) if check(v) => Ok(Some(v)),
        Some(_) => Err(bad_field(field, want)),
    }
}

/// Parses a timestamp as the API server decodes `metav1.Time`/`MicroTime` and writes it back in the
/// server's format (seconds, or microseconds for `MicroTime`).
fn normalize_time(field: &str, v: Option<&Value>, micro: bool) -> ApiResult<Value> {
    let Some(v) = v else { return Ok(Value::Null) };
    let s = v.as_str().ok_or_else(|| bad_field(field, "string"))?;
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| {
        ApiError::bad_request(format!(
            "Event in version \"v1\" cannot be handled as a Event: parsing time \"{s}\" ({field}): {e}"
        ))
    })?;
    let t = t.with_timezone(&chrono::Utc);
    let fmt = if micro {
        chrono::SecondsFormat::Micros
    } else {
        chrono::SecondsFormat::Secs
    };
    Ok(json!(t.to_rfc3339_opts(fmt, true)))
}

/// The core/v1 Event as the API server serialises it: `source` always an object, the three timestamps
/// null when unset, `reportingComponent`/`reportingInstance` always strings, `count` omitted when 0.
fn canonical_core(obj: &Value) -> ApiResult<Value> {
    let is_obj = Value::is_object as fn(&Value) -> bool;
    let is_str = Value::is_string as fn(&Value) -> bool;
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    out.insert(
        "metadata".into(),
        obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    );
    out.insert(
        "involvedObject".into(),
        typed(obj, "involvedObject", is_obj, "v1.ObjectReference")?
            .cloned()
            .unwrap_or_else(|| json!({})),
    );
    for f in ["reason", "message", "type", "action"] {
        if let Some(v) = typed(obj, f, is_str, "string")?.filter(|v| v.as_str() != Some("")) {
            out.insert(f.into(), v.clone());
        }
    }
    out.insert(
        "source".into(),
        typed(obj, "source", is_obj, "v1.EventSource")?
            .cloned()
            .unwrap_or_else(|| json!({})),
    );
    out.insert(
        "firstTimestamp".into(),
        normalize_time(
            "firstTimestamp",
            obj.get("firstTimestamp").filter(|v| !v.is_null()),
            false,
        )?,
    );
    out.insert(
        "lastTimestamp".into(),
        normalize_time(
            "lastTimestamp",
            obj.get("lastTimestamp").filter(|v| !v.is_null()),
            false,
        )?,
    );
    let count = typed(obj, "count", |v| v.is_i64(), "int32")?
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if count != 0 {
        out.insert("count".into(), json!(count));
    }
    out.insert(
        "eventTime".into(),
        normalize_time("eventTime", obj.get("eventTime").filter(|v| !v.is_null()), true)?,
    );
    if let Some(s) = typed(obj, "series", is_obj, "v1.EventSeries")? {
        let mut s = s.clone();
        if let Some(t) = s.get("lastObservedTime").filter(|v| !v.is_null()) {
            let t = normalize_time("series.lastObservedTime", Some(t), true)?;
            s["lastObservedTime"] = t;
        }
        out.insert("series".into(), s);
    }
    if let Some(r) = typed(obj, "related", is_obj, "v1.ObjectReference")? {
        out.insert("related".into(), r.clone());
    }
    for f in ["reportingComponent", "reportingInstance"] {
        let v = typed(obj, f, is_str, "string")?.cloned().unwrap_or_else(|| json!(""));
        out.insert(f.into(), v);
    }
    Ok(Value::Object(out))
}

/// Converts an events.k8s.io/v1 Event to the stored core form.
fn v1_to_core(obj: &Value) -> ApiResult<Value> {
    let mut core = Map::new();
    for f in SHARED {
        if let Some(v) = obj.get(*f) {
            core.insert((*f).into(), v.clone());
        }
    }
    for (c, v1) in RENAMES {
        if let Some(v) = obj.get(*v1) {
            core.insert((*c).into(), v.clone());
        }
    }
    canonical_core(&Value::Object(core))
}

/// The events.k8s.io/v1 view of a stored core Event, serialised as the API server does: `eventTime`,
/// the deprecated timestamps, `regarding` and `deprecatedSource` always present, empty strings and a
/// zero `deprecatedCount` omitted.
fn core_to_v1(core: &Value) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    for f in SHARED {
        if let Some(v) = core.get(*f) {
            out.insert((*f).into(), v.clone());
        }
    }
    for (c, v1) in RENAMES {
        if let Some(v) = core.get(*c) {
            out.insert((*v1).into(), v.clone());
        }
    }
    for f in [
        "reportingController",
        "reportingInstance",
        "reason",
        "note",
        "type",
        "action",
    ] {
        if out.get(f).is_some_and(|v| v.as_str() == Some("") || v.is_null()) {
            out.remove(f);
        }
    }
    if out.get("deprecatedCount").is_some_and(|v| v.as_i64() == Some(0)) {
        out.remove("deprecatedCount");
    }
    for f in ["eventTime", "deprecatedFirstTimestamp", "deprecatedLastTimestamp"] {
        out.entry(f).or_insert(Value::Null);
    }
    for f in ["regarding", "deprecatedSource"] {
        out.entry(f).or_insert_with(|| json!({}));
    }
    Value::Object(out)
}

/// The core form of a request body or stored object of `rt`, for validation.
fn core_form(rt: &ResourceType, obj: &Value) -> ApiResult<Value> {
    if rt.group == EVENTS_GROUP {
        v1_to_core(obj)
    } else {
        canonical_core(obj)
    }
}

fn is_event(rt: &ResourceType) -> bool {
    rt.kind == "Event" && (rt.group.is_empty() || rt.group == EVENTS_GROUP)
}

fn s<'a>(obj: &'a Value, f: &str) -> &'a str {
    obj[f].as_str().unwrap_or_default()
}

fn unset(v: &Value) -> bool {
    v.is_null()
}

/// `field.Invalid(path, value, detail)` as the API server prints it.
fn invalid(path: &str, value: &Value, detail: &str) -> (String, String) {
    let shown = match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "\"\"".to_string(),
        other => other.to_string(),
    };
    (path.to_string(), format!("Invalid value: {shown}: {detail}"))
}

fn required(path: &str) -> (String, String) {
    (path.to_string(), "Required value".to_string())
}

/// `validation.IsQualifiedName` (apimachinery `pkg/util/validation/validation.go`).
fn qualified_name_errors(value: &str) -> Vec<String> {
    const MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    let parts: Vec<&str> = value.split('/').collect();
    let mut errs = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else if !crate::api::is_dns_subdomain(prefix) {
                errs.push("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {MSG} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    let b = name.as_bytes();
    let edge_ok = |c: Option<&u8>| c.is_some_and(u8::is_ascii_alphanumeric);
    let ok = edge_ok(b.first())
        && edge_ok(b.last())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        errs.push(format!("name part {MSG}"));
    }
    errs
}

/// `legacyValidateEvent`: applies to every request version. `rt` is the API the request came
/// through: core/v1 names the reporting controller by its own field, `reportingComponent`.
fn legacy(rt: &ResourceType, ev: &Value) -> Vec<(String, String)> {
    let controller_field = if rt.group.is_empty() {
        "reportingComponent"
    } else {
        "reportingController"
    };
    let mut errs = Vec::new();
    let ns = s(&ev["metadata"], "namespace");
    let inv_ns = &ev["involvedObject"]["namespace"];
    let inv_ns_s = inv_ns.as_str().unwrap_or_default();
    let mismatch = || invalid("involvedObject.namespace", inv_ns, "does not match event.namespace");
    if unset(&ev["eventTime"]) {
        if inv_ns_s.is_empty() {
            // Old clients wrote cluster-scoped objects' Events to "default".
            if !ns.is_empty() && ns != "default" {
                errs.push(mismatch());
            }
        } else if ns != inv_ns_s {
            errs.push(mismatch());
        }
    } else {
        if inv_ns_s.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let controller = s(ev, "reportingComponent");
        if controller.is_empty() {
            errs.push(required(controller_field));
        }
        for m in qualified_name_errors(controller) {
            errs.push(invalid(controller_field, &json!(controller), &m));
        }
        let limited = |errs: &mut Vec<(String, String)>, path: &str, value: &str, limit: usize| {
            if value.is_empty() && path != "message" {
                errs.push(required(path));
            }
            if value.len() > limit {
                errs.push(invalid(
                    path,
                    &json!(""),
                    &format!("can have at most {limit} characters"),
                ));
            }
        };
        limited(
            &mut errs,
            "reportingInstance",
            s(ev, "reportingInstance"),
            SHORT_FIELD_LIMIT,
        );
        limited(&mut errs, "action", s(ev, "action"), SHORT_FIELD_LIMIT);
        limited(&mut errs, "reason", s(ev, "reason"), SHORT_FIELD_LIMIT);
        limited(&mut errs, "message", s(ev, "message"), NOTE_LENGTH_LIMIT);
    }
    if !ns.is_empty() && !crate::api::is_dns_subdomain(ns) {
        errs.push(invalid(
            "namespace",
            &json!(ns),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ));
    }
    errs
}

/// `validateV1EventSeries`.
fn series(ev: &Value) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    if let Some(s) = ev.get("series").filter(|v| v.is_object()) {
        if s["count"].as_i64().unwrap_or(0) < 2 {
            errs.push(invalid("series.count", &json!(""), "should be at least 2"));
        }
        if unset(&s["lastObservedTime"]) {
            errs.push(required("series.lastObservedTime"));
        }
    }
    errs
}

fn refuse(rt: &ResourceType, ev: &Value, errs: Vec<(String, String)>) -> ApiResult<()> {
    if errs.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(&rt.kind, &rt.group, s(&ev["metadata"], "name"), errs))
}

/// `ValidateEventCreate`: the legacy rules for core/v1, and the strict ones for events.k8s.io/v1.
pub fn validate_create(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    if !is_event(rt) {
        return Ok(());
    }
    let ev = core_form(rt, obj)?;
    let mut errs = legacy(rt, &ev);
    if rt.group == EVENTS_GROUP {
        errs.extend(series(&ev));
        if unset(&ev["eventTime"]) {
            errs.push(required("eventTime"));
        }
        let t = s(&ev, "type");
        if t != "Normal" && t != "Warning" {
            errs.push(invalid("type", &json!(""), &format!("has invalid value: {t}")));
        }
        for f in ["firstTimestamp", "lastTimestamp"] {
            if !unset(&ev[f]) {
                errs.push(invalid(f, &json!(""), "needs to be unset"));
            }
        }
        if ev["count"].as_i64().unwrap_or(0) != 0 {
            errs.push(invalid("count", &json!(""), "needs to be unset"));
        }
        if !s(&ev["source"], "component").is_empty() || !s(&ev["source"], "host").is_empty() {
            errs.push(invalid("source", &json!(""), "needs to be unset"));
        }
    }
    refuse(rt, &ev, errs)
}

/// `ValidateEventUpdate`: the legacy rules for core/v1; through events.k8s.io/v1 also a changed
/// series is checked and every descriptive field is immutable.
pub fn validate_update(rt: &ResourceType, current: &Value, new: &Value) -> ApiResult<()> {
    if !is_event(rt) {
        return Ok(());
    }
    let ev = core_form(rt, new)?;
    let old = core_form(rt, current)?;
    let mut errs = legacy(rt, &ev);
    if rt.group == EVENTS_GROUP {
        if ev.get("series") != old.get("series") {
            errs.extend(series(&ev));
        }
        for f in [
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ] {
            if ev.get(f) != old.get(f) {
                // The internal type names reportingComponent ReportingController.
                let path = if f == "reportingComponent" {
                    "reportingController"
                } else {
                    f
                };
                errs.push(invalid(path, ev.get(f).unwrap_or(&Value::Null), "field is immutable"));
            }
        }
    }
    refuse(rt, &ev, errs)
}

/// The server-side Table of Events (`kubectl get events`), the same for both views since they share
/// storage: the columns and cells of `printEvent` in pkg/printers/internalversion/printers.go, where
/// "Last Seen" falls back to `series.lastObservedTime`, then the first time (`firstTimestamp`, else
/// `eventTime`), and a count of 0 shows as 1.
pub fn table(rt: &ResourceType, list: &Value, query: &crate::api::Query) -> Value {
    let col = |name: &str, priority: u8| json!({"name": name, "type": "string", "format": if name == "Name" { "name" } else { "" }, "description": name, "priority": priority});
    let cols = vec![
        col("Last Seen", 0),
        col("Type", 0),
        col("Reason", 0),
        col("Object", 0),
        col("Subobject", 1),
        col("Source", 1),
        col("Message", 0),
        col("First Seen", 1),
        col("Count", 1),
        col("Name", 1),
    ];
    let since = |v: &Value| {
        v.as_str()
            .map_or_else(|| "<unknown>".to_string(), crate::discovery::age)
    };
    crate::discovery::table(list, query, cols, |o| {
        let ev = core_form(rt, o).unwrap_or_else(|_| o.clone());
        let first = if ev["firstTimestamp"].is_null() {
            since(&ev["eventTime"])
        } else {
            since(&ev["firstTimestamp"])
        };
        let mut last = if ev["lastTimestamp"].is_null() {
            first.clone()
        } else {
            since(&ev["lastTimestamp"])
        };
        let mut count = ev["count"].as_i64().unwrap_or(0);
        if let Some(series) = ev.get("series").filter(|s| s.is_object()) {
            last = since(&series["lastObservedTime"]);
            count = series["count"].as_i64().unwrap_or(0);
        } else if count == 0 {
            count = 1;
        }
        let inv = &ev["involvedObject"];
        let kind = s(inv, "kind").to_lowercase();
        let target = match s(inv, "name") {
            "" => kind,
            name => format!("{kind}/{name}"),
        };
        // formatEventSource: the old source fields, else the reporting ones.
        let first_set = |a: &'_ str, b: &'_ str| if a.is_empty() { b.to_string() } else { a.to_string() };
        let component = first_set(s(&ev["source"], "component"), s(&ev, "reportingComponent"));
        let instance = first_set(s(&ev["source"], "host"), s(&ev, "reportingInstance"));
        let source = if instance.is_empty() {
            component
        } else {
            format!("{component}, {instance}")
        };
        let cells = json!([
            last,
            s(&ev, "type"),
            s(&ev, "reason"),
            target,
            s(inv, "fieldPath"),
            source,
            s(&ev, "message").trim(),
            first,
            count,
            o["metadata"]["name"].clone(),
        ]);
        cells
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_event() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": "team-a"},
            "eventTime": "2026-01-02T03:04:05.123456Z",
            "reportingController": "example.com/ctl", "reportingInstance": "ctl-1",
            "action": "Grant", "reason": "Granted", "note": "hello", "type": "Normal",
            "regarding": {"kind": "Pod", "name": "app", "namespace": "team-a"},
        })
    }

    #[test]
    fn round_trip_is_lossless_on_the_canonical_forms() {
        let core = v1_to_core(&v1_event()).unwrap();
        assert_eq!(core["message"], "hello");
        assert_eq!(core["involvedObject"]["name"], "app");
        assert_eq!(core["reportingComponent"], "example.com/ctl");
        assert!(core["lastTimestamp"].is_null() && core.get("lastTimestamp").is_some());
        assert!(core.get("count").is_none());
        assert_eq!(core["source"], json!({}));
        let v1 = core_to_v1(&core);
        assert_eq!(v1_to_core(&v1).unwrap(), core);
        assert_eq!(v1["note"], "hello");
        assert!(v1.get("deprecatedCount").is_none());
        assert!(v1["deprecatedLastTimestamp"].is_null());
    }

    #[test]
    fn times_are_written_in_the_server_format() {
        let mut e = v1_event();
        e["eventTime"] = json!("2026-01-02T04:04:05+01:00");
        assert_eq!(v1_to_core(&e).unwrap()["eventTime"], "2026-01-02T03:04:05.000000Z");
        e["eventTime"] = json!("yesterday");
        assert_eq!(v1_to_core(&e).unwrap_err().code, 400);
        e["eventTime"] = json!(5);
        assert_eq!(v1_to_core(&e).unwrap_err().code, 400);
    }

    #[test]
    fn qualified_names() {
        assert!(qualified_name_errors("k8s-janus").is_empty());
        assert!(qualified_name_errors("example.com/My_Name").is_empty());
        assert_eq!(qualified_name_errors("a/b/c").len(), 1);
        assert_eq!(qualified_name_errors("-x").len(), 1);
        assert_eq!(qualified_name_errors("").len(), 2);
    }
}
