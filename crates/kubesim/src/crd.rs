//! CustomResourceDefinitions: serving their kinds, and validating, defaulting and pruning custom objects.
//!
//! Everything the structural schema says (types, required, enum, bounds, lengths, patterns, items, maps,
//! defaults, pruning) is checked here; `x-kubernetes-validations` (CEL) rules are compiled when the CRD
//! is admitted and evaluated by [`crate::cel`] after the schema checks, as the real server does.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::Cluster;
use crate::cel::Validator;
use crate::errors::{ApiError, ApiResult, Cause};
use crate::resources::{GroupResource, ResourceType};
use crate::store::now_rfc3339;

/// Checks a CRD and fills its status as the apiextensions controller would.
pub fn admit_crd(cluster: &Cluster, crd: &mut Value) -> ApiResult<()> {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let mut causes = Vec::new();
    if group.is_empty() {
        causes.push(("spec.group".into(), "Required value".into()));
    }
    if plural.is_empty() {
        causes.push(("spec.names.plural".into(), "Required value".into()));
    }
    if spec["names"]["kind"].as_str().is_none_or(str::is_empty) {
        causes.push(("spec.names.kind".into(), "Required value".into()));
    }
    if name != format!("{plural}.{group}") {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced") | Some("Cluster")) {
        causes.push((
            "spec.scope".into(),
            "Unsupported value: supported values: \"Cluster\", \"Namespaced\"".into(),
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
        causes.push((
            "spec.versions".into(),
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if v["schema"]["openAPIV3Schema"].is_null() {
            causes.push((
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "Required value: schemas are required".into(),
            ));
        }
    }
    // A built-in kind cannot be shadowed.
    if let Some(existing) = cluster
        .registry
        .all()
        .into_iter()
        .find(|t| t.group == group && t.plural == plural)
        && existing.schema.is_none()
    {
        causes.push((
            "spec.group".into(),
            format!("Invalid value: \"{group}\": is a built-in group"),
        ));
    }
    let mut causes: Vec<Cause> = causes.into_iter().map(|(f, m)| Cause::inferred(f, m)).collect();
    // Every version's rules must compile, not only the served one's.
    for (i, v) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}].schema.openAPIV3Schema");
        if let Err(errs) = Validator::compile(&v["schema"]["openAPIV3Schema"], &at) {
            causes.extend(errs.into_iter().map(|e| Cause {
                reason: e.reason.to_string(),
                field: e.field,
                message: e.message,
            }));
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid_causes(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            &name,
            causes,
        ));
    }
    let now = now_rfc3339();
    crd["status"] = json!({
        "acceptedNames": spec["names"].clone(),
        "storedVersions": versions.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
    });
    Ok(())
}

/// Builds the served type of a CRD (its storage version).
pub fn to_type(crd: &Value) -> Option<ResourceType> {
    let spec = &crd["spec"];
    let v = spec["versions"].as_array()?.iter().find(|v| v["storage"] == true)?;
    let names = &spec["names"];
    let kind = names["kind"].as_str()?.to_string();
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut subresources = Vec::new();
    if v["subresources"]["status"].is_object() {
        subresources.push("status".to_string());
    }
    if v["subresources"]["scale"].is_object() {
        subresources.push("scale".to_string());
    }
    Some(ResourceType {
        group: spec["group"].as_str()?.to_string(),
        version: v["name"].as_str()?.to_string(),
        singular: names["singular"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase()),
        kind,
        plural: names["plural"].as_str()?.to_string(),
        namespaced: spec["scope"] == "Namespaced",
        short_names: strs(&names["shortNames"]),
        verbs: crate::resources::STANDARD_VERBS.iter().map(|s| s.to_string()).collect(),
        subresources,
        categories: strs(&names["categories"]),
        schema: Some(Arc::new(v["schema"]["openAPIV3Schema"].clone())),
        validator: None,
        printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
        virtual_only: false,
    })
}

/// Starts serving a newly created CRD.
pub fn established(cluster: &Arc<Cluster>, crd: &Value) -> ApiResult<()> {
    register(cluster, crd)
}

/// Serves (or re-serves after an update) a CRD's kind, with its validation rules compiled once here.
pub fn register(cluster: &Arc<Cluster>, crd: &Value) -> ApiResult<()> {
    let t = with_rules(crd)?;
    cluster.registry.upsert(t);
    Ok(())
}

/// [`to_type`] with the storage version's `x-kubernetes-validations` compiled.
pub fn with_rules(crd: &Value) -> ApiResult<ResourceType> {
    let mut t = to_type(crd).ok_or_else(|| ApiError::internal("CRD without a storage version"))?;
    if let Some(schema) = &t.schema {
        // Rules were checked when the CRD was admitted; a CRD seeded without admission may still
        // carry a broken one, which is refused here rather than silently not enforced.
        t.validator = Validator::compile(schema, "spec.versions.schema.openAPIV3Schema")
            .map_err(|errs| {
                let name = crd["metadata"]["name"].as_str().unwrap_or_default();
                let causes = errs
                    .into_iter()
                    .map(|e| Cause {
                        reason: e.reason.to_string(),
                        field: e.field,
                        message: e.message,
                    })
                    .collect();
                ApiError::invalid_causes("CustomResourceDefinition", "apiextensions.k8s.io", name, causes)
            })?
            .map(Arc::new);
    }
    Ok(t)
}

/// Stops serving a deleted CRD and drops its objects.
pub fn removed(cluster: &Arc<Cluster>, crd: &Value) {
    if let Some(t) = to_type(crd) {
        let gr: GroupResource = t.group_resource();
        cluster.registry.remove(&t.group, &t.plural);
        let (items, _) = cluster.store.list(&gr, None);
        for o in items {
            let (ns, name) = crate::store::ns_name(&o);
            cluster.store.remove(&gr, &ns, &name);
        }
    }
}

/// Validates a custom object against its type's schema after defaulting and pruning, then against its
/// CEL rules (`old` is the stored object on update, for transition rules and ratcheting).
/// With `strict`, unknown fields are an error instead of being pruned.
pub fn validate_custom(rt: &ResourceType, obj: &mut Value, strict: bool, old: Option<&Value>) -> ApiResult<()> {
    let Some(schema) = &rt.schema else { return Ok(()) };
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let mut unknown = Vec::new();
    let mut causes = Vec::new();
    if let Some(m) = obj.as_object_mut() {
        if let Some(props) = schema["properties"].as_object() {
            prune_nulls(props, m);
        }
        for (k, v) in m.iter_mut() {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match schema["properties"].get(k) {
                Some(s) => walk(s, v, k, old.and_then(|o| o.get(k)), &mut causes, &mut unknown),
                None if schema["x-kubernetes-preserve-unknown-fields"] == true => {}
                None => unknown.push(k.clone()),
            }
        }
        // Defaults and pruning at the root.
        if let Some(props) = schema["properties"].as_object() {
            for (k, s) in props {
                if !m.contains_key(k)
                    && let Some(d) = s.get("default")
                {
                    m.insert(k.clone(), d.clone());
                }
            }
        }
        if let Some(req) = schema["required"].as_array() {
            for r in req.iter().filter_map(Value::as_str) {
                if !m.contains_key(r) {
                    causes.push((r.to_string(), "Required value".into()));
                }
            }
        }
    }
    if strict && !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|u| format!("unknown field \"{u}\"")).collect();
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    prune(schema, obj, true, &unknown);
    let mut causes: Vec<Cause> = causes.into_iter().map(|(f, m)| Cause::inferred(f, m)).collect();
    if let Some(validator) = &rt.validator {
        // The real server skips CEL when the schema found a "blocking" error (customResourceStrategy's
        // hasBlockingErr), since rules could not rely on the shape of the object.
        let blocking = causes.iter().any(|c| {
            matches!(
                c.reason.as_str(),
                "FieldValueNotSupported"
                    | "FieldValueRequired"
                    | "FieldValueTooLong"
                    | "FieldValueTooMany"
                    | "FieldValueTypeInvalid"
            )
        });
        if blocking {
            causes.push(Cause {
                reason: "FieldValueInvalid".into(),
                field: "<nil>".into(),
                // field.Invalid(nil, nil, …): the nil value prints as a bare `null` in current releases.
                message: "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
            });
        } else {
            causes.extend(validator.validate(obj, old));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_causes(&rt.kind, &rt.group, &name, causes))
    }
}

/// Drops `null` from properties that are not `nullable`, before defaulting and validation, as the
/// API server does (apiextensions-apiserver `PruneNonNullableNullsWithoutDefaults`; a property with a
/// default then gets its default): the field is then absent, also to the CEL rules.
fn prune_nulls(props: &Map<String, Value>, m: &mut Map<String, Value>) {
    m.retain(|k, v| !(v.is_null() && props.get(k).is_some_and(|ps| ps["nullable"] != true)));
}

/// A schema's `pattern`, compiled once: validation runs on every write, and compiling a regex costs
/// far more than matching it. `None` for a pattern that does not compile (not checked, as before).
fn compiled_pattern(p: &str) -> Option<regex::Regex> {
    type Cache = std::sync::Mutex<std::collections::HashMap<String, Option<regex::Regex>>>;
    static CACHE: std::sync::LazyLock<Cache> = std::sync::LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(re) = cache.get(p) {
        return re.clone();
    }
    // Patterns come from CRDs that clients create: bounded so that made-up ones cannot grow it.
    if cache.len() >= 1024 {
        cache.clear();
    }
    let re = regex::Regex::new(p).ok();
    cache.insert(p.to_string(), re.clone());
    re
}

fn prune(_schema: &Value, obj: &mut Value, _root: bool, unknown: &[String]) {
    for path in unknown {
        remove_path(obj, path);
    }
}

fn remove_path(obj: &mut Value, path: &str) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut cur = obj;
    for p in parts {
        cur = match (p.strip_suffix(']').and_then(|x| x.split_once('[')), cur) {
            (Some((field, idx)), c) => {
                let Ok(i) = idx.parse::<usize>() else { return };
                let c = if field.is_empty() { c } else { &mut c[field] };
                match c.get_mut(i) {
                    Some(x) => x,
                    None => return,
                }
            }
            (None, c) => match c.get_mut(p) {
                Some(x) => x,
                None => return,
            },
        };
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// Validates `v` at `path` against `s`, applying defaults inside objects and collecting unknown fields.
///
/// `old` is the correlated value of the stored object on update. Validation ratcheting
/// (CRDValidationRatcheting, GA in 1.30; apiextensions-apiserver `pkg/apiserver/schema/validation/
/// ratcheting.go`): a subtree equal to its old value is not re-rejected, so tightening a schema does not
/// block writes that leave an old, now invalid, value alone.
fn walk(
    s: &Value,
    v: &mut Value,
    path: &str,
    old: Option<&Value>,
    causes: &mut Vec<(String, String)>,
    unknown: &mut Vec<String>,
) {
    let before = causes.len();
    walk_node(s, v, path, old, causes, unknown);
    if old.is_some_and(|o| o == v) && causes.len() > before {
        tracing::debug!(field = path, "unchanged value ratcheted past schema errors");
        causes.truncate(before);
    }
}

fn walk_node(
    s: &Value,
    v: &mut Value,
    path: &str,
    old: Option<&Value>,
    causes: &mut Vec<(String, String)>,
    unknown: &mut Vec<String>,
) {
    if v.is_null() {
        if s["nullable"] != true {
            causes.push((
                path.into(),
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    s["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    let int_or_string = s["x-kubernetes-int-or-string"] == true;
    if let Some(t) = s["type"].as_str() {
        let actual = type_name(v);
        let ok = actual == t
            || (t == "number" && actual == "integer")
            || (int_or_string && matches!(actual, "integer" | "string"));
        if !ok {
            causes.push((
                path.into(),
                format!("Invalid value: \"{actual}\": {path} in body must be of type {t}: \"{actual}\""),
            ));
            return;
        }
    }
    if let Some(en) = s["enum"].as_array()
        && !en.contains(v)
    {
        let opts: Vec<String> = en.iter().map(short).collect();
        causes.push((
            path.into(),
            format!("Unsupported value: {}: supported values: {}", short(v), opts.join(", ")),
        ));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = s["minimum"].as_f64() {
            let excl = s["exclusiveMinimum"] == true;
            if n < min || (excl && n == min) {
                causes.push((
                    path.into(),
                    format!(
                        "Invalid value: {v}: {path} in body should be greater than {}{min}",
                        if excl { "" } else { "or equal to " }
                    ),
                ));
            }
        }
        if let Some(max) = s["maximum"].as_f64() {
            let excl = s["exclusiveMaximum"] == true;
            if n > max || (excl && n == max) {
                causes.push((
                    path.into(),
                    format!(
                        "Invalid value: {v}: {path} in body should be less than {}{max}",
                        if excl { "" } else { "or equal to " }
                    ),
                ));
            }
        }
    }
    if let Some(st) = v.as_str() {
        let len = st.chars().count() as u64;
        if let Some(max) = s["maxLength"].as_u64()
            && len > max
        {
            causes.push((path.into(), format!("Too long: may not be more than {max} bytes")));
        }
        if let Some(min) = s["minLength"].as_u64()
            && len < min
        {
            causes.push((
                path.into(),
                format!(
                    "Invalid value: {}: {path} in body should be at least {min} chars long",
                    short(v)
                ),
            ));
        }
        if let Some(p) = s["pattern"].as_str() {
            match compiled_pattern(p) {
                Some(re) if !re.is_match(st) => causes.push((
                    path.into(),
                    format!("Invalid value: {}: {path} in body should match '{p}'", short(v)),
                )),
                _ => {}
            }
        }
        if s["format"] == "date-time" && chrono::DateTime::parse_from_rfc3339(st).is_err() {
            causes.push((
                path.into(),
                format!(
                    "Invalid value: {}: {path} in body must be of type date-time: {}",
                    short(v),
                    short(v)
                ),
            ));
        }
    }
    match v {
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = s["maxItems"].as_u64()
                && n > max
            {
                causes.push((path.into(), format!("Too many: {n}: must have at most {max} items")));
            }
            if let Some(min) = s["minItems"].as_u64()
                && n < min
            {
                causes.push((
                    path.into(),
                    format!("Invalid value: {n}: {path} in body should have at least {min} items"),
                ));
            }
            if s["uniqueItems"] == true || s["x-kubernetes-list-type"] == "set" {
                for (i, a) in items.iter().enumerate() {
                    if items[..i].contains(a) {
                        causes.push((format!("{path}[{i}]"), format!("Duplicate value: {}", short(a))));
                    }
                }
            }
            if let Some(is) = s.get("items") {
                let olds = old.and_then(Value::as_array);
                let keys: Vec<&str> = s["x-kubernetes-list-map-keys"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for (i, it) in items.iter_mut().enumerate() {
                    // Only elements of map and set lists correlate with old elements.
                    let old_item = match (s["x-kubernetes-list-type"].as_str(), olds) {
                        (Some("map"), Some(os)) => os.iter().find(|o| keys.iter().all(|k| o.get(*k) == it.get(*k))),
                        (Some("set"), Some(os)) => os.iter().find(|o| *o == it),
                        _ => None,
                    };
                    walk(is, it, &format!("{path}[{i}]"), old_item, causes, unknown);
                }
            }
        }
        Value::Object(m) => walk_object(s, m, path, old.and_then(Value::as_object), causes, unknown),
        _ => {}
    }
}

fn walk_object(
    s: &Value,
    m: &mut Map<String, Value>,
    path: &str,
    old: Option<&Map<String, Value>>,
    causes: &mut Vec<(String, String)>,
    unknown: &mut Vec<String>,
) {
    let preserve = s["x-kubernetes-preserve-unknown-fields"] == true;
    let props = s["properties"].as_object();
    if let Some(props) = props {
        prune_nulls(props, m);
        for (k, ps) in props {
            if !m.contains_key(k)
                && let Some(d) = ps.get("default")
            {
                m.insert(k.clone(), d.clone());
            }
        }
    }
    for (k, v) in m.iter_mut() {
        let child = format!("{path}.{k}");
        let o = old.and_then(|o| o.get(k));
        if let Some(ps) = props.and_then(|p| p.get(k)) {
            walk(ps, v, &child, o, causes, unknown);
        } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
            walk(ap, v, &child, o, causes, unknown);
        } else if !preserve
            && s["additionalProperties"] != true
            && (props.is_some() || s["type"] == "object")
            && !s["x-kubernetes-embedded-resource"].as_bool().unwrap_or(false)
        {
            unknown.push(child);
        }
    }
    if let Some(req) = s["required"].as_array() {
        for r in req.iter().filter_map(Value::as_str) {
            if !m.contains_key(r) {
                causes.push((format!("{path}.{r}"), "Required value".into()));
            }
        }
    }
    if let Some(max) = s["maxProperties"].as_u64()
        && m.len() as u64 > max
    {
        causes.push((
            path.into(),
            format!("Too many: {}: must have at most {max} items", m.len()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(schema: Value) -> ResourceType {
        let crd = json!({"spec": {"group": "g.io", "names": {"kind": "Thing", "plural": "things"}, "scope": "Cluster",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}, "subresources": {"status": {}}}]}});
        to_type(&crd).unwrap()
    }

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                "names": {"type": "array", "minItems": 1, "items": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
        }})
    }

    #[test]
    fn defaults_prunes_and_accepts() {
        let t = rt(schema());
        let mut o = json!({"apiVersion": "g.io/v1", "kind": "Thing", "metadata": {"name": "x"},
            "spec": {"size": 3, "extra": 1, "names": ["ab"], "labels": {"a": "b"}, "free": {"any": {"thing": 1}}}});
        validate_custom(&t, &mut o, false, None).unwrap();
        assert_eq!(o["spec"]["mode"], "a");
        assert!(o["spec"].get("extra").is_none());
        assert_eq!(o["spec"]["free"]["any"]["thing"], 1);
    }

    #[test]
    fn nulls_in_non_nullable_fields_are_pruned_then_defaulted() {
        let t = rt(schema());
        let mut o = json!({"metadata": {"name": "x"}, "spec": {"size": 3, "mode": null, "names": ["ab"]}});
        validate_custom(&t, &mut o, false, None).unwrap();
        assert_eq!(o["spec"]["mode"], "a", "pruned, then defaulted");
        let mut o = json!({"metadata": {"name": "x"}, "spec": {"size": null, "names": ["ab"]}});
        let e = validate_custom(&t, &mut o, false, None).unwrap_err();
        assert!(e.message.contains("spec.size: Required value"), "{}", e.message);
    }

    #[test]
    fn rejects_with_field_paths() {
        let t = rt(schema());
        let mut o = json!({"metadata": {"name": "x"}, "spec": {"size": 11, "mode": "z", "names": ["TOOLONG"]}});
        let e = validate_custom(&t, &mut o, false, None).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("spec.size"), "{}", e.message);
        assert!(e.message.contains("Unsupported value: \"z\""), "{}", e.message);
        assert!(e.message.contains("spec.names[0]"), "{}", e.message);
        let mut missing = json!({"metadata": {"name": "x"}, "spec": {}});
        let e = validate_custom(&t, &mut missing, false, None).unwrap_err();
        assert!(e.message.contains("spec.size: Required value"), "{}", e.message);
        let mut wrong_type = json!({"metadata": {"name": "x"}, "spec": {"size": "3"}});
        assert!(validate_custom(&t, &mut wrong_type, false, None).is_err());
    }

    #[test]
    fn unchanged_invalid_values_ratchet_on_update() {
        let t = rt(schema());
        // Stored before the schema was tightened: size 11 and a long name are now invalid.
        let old = json!({"metadata": {"name": "x"}, "spec": {"size": 11, "mode": "a", "names": ["toolong"]}});
        let mut edit = json!({"metadata": {"name": "x"}, "spec": {"size": 11, "mode": "b", "names": ["toolong"]}});
        validate_custom(&t, &mut edit, false, Some(&old)).unwrap();
        // Changing the invalid value itself is checked, and on create nothing ratchets.
        let mut change = json!({"metadata": {"name": "x"}, "spec": {"size": 12, "mode": "a", "names": ["toolong"]}});
        let e = validate_custom(&t, &mut change, false, Some(&old)).unwrap_err();
        assert!(
            e.message.contains("spec.size") && !e.message.contains("spec.names"),
            "{}",
            e.message
        );
        let mut create = old.clone();
        assert!(validate_custom(&t, &mut create, false, None).is_err());
    }

    #[test]
    fn cel_rules_run_after_schema_checks_unless_blocked() {
        let crd = json!({"metadata": {"name": "things.g.io"}, "spec": {"group": "g.io", "names": {"kind": "Thing", "plural": "things"}, "scope": "Cluster",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"a": {"type": "integer", "maximum": 10}, "b": {"type": "string"}},
                    "x-kubernetes-validations": [{"rule": "self.a < 5", "message": "a below 5"}]}}}}}]}});
        let t = with_rules(&crd).unwrap();
        let mut o = json!({"metadata": {"name": "x"}, "spec": {"a": 7}});
        let e = validate_custom(&t, &mut o, false, None).unwrap_err();
        assert_eq!(
            e.message,
            "Thing.g.io \"x\" is invalid: spec: Invalid value: \"object\": a below 5"
        );
        // Schema and rule errors are reported together.
        let mut o = json!({"metadata": {"name": "x"}, "spec": {"a": 11}});
        let e = validate_custom(&t, &mut o, false, None).unwrap_err();
        assert!(
            e.message.contains("spec.a: Invalid value: 11") && e.message.contains("a below 5"),
            "{}",
            e.message
        );
        // A type error blocks the rules, as upstream.
        let mut o = json!({"metadata": {"name": "x"}, "spec": {"a": "7"}});
        let e = validate_custom(&t, &mut o, false, None).unwrap_err();
        assert!(
            e.message.contains("some validation rules were not checked"),
            "{}",
            e.message
        );
        assert_eq!(e.details.unwrap()["causes"][0]["reason"], "FieldValueTypeInvalid");
        // An uncompilable rule refuses the CRD with the field path of the rule.
        let mut bad = crd.clone();
        bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"][0]
            ["rule"] = json!("self.a <");
        let e = with_rules(&bad).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message.contains(
                "x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{Rule:\"self.a <\""
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn strict_reports_unknown_fields() {
        let t = rt(schema());
        let mut o = json!({"metadata": {"name": "x"}, "spec": {"size": 3, "bogus": true}});
        let e = validate_custom(&t, &mut o, true, None).unwrap_err();
        assert!(e.message.contains("unknown field \"spec.bogus\""), "{}", e.message);
    }
}
