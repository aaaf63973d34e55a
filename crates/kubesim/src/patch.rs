//! Patches (JSON, merge, strategic merge), server-side apply and managedFields bookkeeping.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::errors::{ApiError, ApiResult};
use crate::resources::ResourceType;
use crate::store::now_rfc3339;

/// RFC 6902 JSON patch.
pub fn json_patch(current: &Value, patch: &Value) -> ApiResult<Value> {
    let p: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut doc = current.clone();
    json_patch::patch(&mut doc, &p).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })?;
    Ok(doc)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(current: &Value, patch: &Value) -> Value {
    let mut doc = current.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// The merge key of a list field for strategic merge and apply, as declared on the built-in types.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" => "name",
        "volumeMounts" | "volumeDevices" => "mountPath",
        "ownerReferences" => "uid",
        "conditions" => "type",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Lists of scalars that strategic merge unions instead of replacing.
fn is_merged_primitive_list(field: &str) -> bool {
    field == "finalizers"
}

/// Removes `$patch`, `$setElementOrder/…`, `$retainKeys` and `$deleteFromPrimitiveList/…` directives.
pub fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            for x in m.values_mut() {
                strip_directives(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// Strategic merge patch for the built-in kinds.
pub fn strategic_merge(current: &Value, patch: &Value) -> ApiResult<Value> {
    match smp_value("", current, patch)? {
        Some(v) => Ok(v),
        None => Err(ApiError::bad_request(
            "a strategic merge patch cannot delete the whole object",
        )),
    }
}

fn smp_value(field: &str, orig: &Value, patch: &Value) -> ApiResult<Option<Value>> {
    match (orig, patch) {
        (Value::Object(o), Value::Object(p)) => {
            match p.get("$patch").and_then(Value::as_str) {
                Some("replace") => {
                    let mut v = patch.clone();
                    strip_directives(&mut v);
                    return Ok(Some(v));
                }
                Some("delete") => return Ok(None),
                Some("merge") | None => {}
                Some(other) => {
                    return Err(ApiError::bad_request(format!("unknown patch type: {other}")));
                }
            }
            let mut out = o.clone();
            for (k, pv) in p {
                if let Some(list_field) = k.strip_prefix("$deleteFromPrimitiveList/") {
                    if let (Some(Value::Array(cur)), Some(del)) = (out.get(list_field).cloned(), pv.as_array()) {
                        out.insert(
                            list_field.to_string(),
                            Value::Array(cur.into_iter().filter(|x| !del.contains(x)).collect()),
                        );
                    }
                    continue;
                }
                if k.starts_with('$') {
                    continue;
                }
                if pv.is_null() {
                    out.remove(k);
                    continue;
                }
                match o.get(k) {
                    Some(ov) => match smp_value(k, ov, pv)? {
                        Some(v) => {
                            out.insert(k.clone(), v);
                        }
                        None => {
                            out.remove(k);
                        }
                    },
                    None => {
                        let mut v = pv.clone();
                        strip_directives(&mut v);
                        out.insert(k.clone(), v);
                    }
                }
            }
            Ok(Some(Value::Object(out)))
        }
        (Value::Array(o), Value::Array(p)) => {
            if is_merged_primitive_list(field) {
                let mut out = o.clone();
                for x in p {
                    if !out.contains(x) {
                        out.push(x.clone());
                    }
                }
                return Ok(Some(Value::Array(out)));
            }
            let Some(key) = merge_key(field, o) else {
                let mut v = patch.clone();
                strip_directives(&mut v);
                return Ok(Some(v));
            };
            let mut out = o.clone();
            for item in p {
                let kv = &item[key];
                let pos = out.iter().position(|x| &x[key] == kv);
                let directive = item.get("$patch").and_then(Value::as_str);
                match (pos, directive) {
                    (Some(i), Some("delete")) => {
                        out.remove(i);
                    }
                    (None, Some("delete")) => {}
                    (Some(i), _) => {
                        if let Some(v) = smp_value("", &out[i], item)? {
                            out[i] = v;
                        }
                    }
                    (None, _) => {
                        let mut v = item.clone();
                        strip_directives(&mut v);
                        out.push(v);
                    }
                }
            }
            Ok(Some(Value::Array(out)))
        }
        _ => {
            let mut v = patch.clone();
            strip_directives(&mut v);
            Ok(Some(v))
        }
    }
}

/// A field path as in managedFields: `f:spec`, `f:containers`, `k:{"name":"app"}`.
type FieldPath = Vec<String>;

fn key_segment(key: &str, item: &Value) -> String {
    let mut m = Map::new();
    m.insert(key.to_string(), item[key].clone());
    format!("k:{}", Value::Object(m))
}

/// The leaf field paths an object sets (identity fields excluded).
fn fields_of(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>, field: &str) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                if prefix.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "status") {
                    continue;
                }
                if prefix.len() == 1
                    && prefix[0] == "f:metadata"
                    && !matches!(k.as_str(), "labels" | "annotations" | "finalizers" | "ownerReferences")
                {
                    continue;
                }
                prefix.push(format!("f:{k}"));
                fields_of(x, prefix, out, k);
                prefix.pop();
            }
        }
        Value::Array(items)
            if merge_key(field, items).is_some_and(|k| items.iter().all(|i| i.get(k).is_some()))
                && !items.is_empty() =>
        {
            let key = merge_key(field, items).unwrap_or("name");
            for it in items {
                prefix.push(key_segment(key, it));
                let before = out.len();
                fields_of(it, prefix, out, "");
                if out.len() == before {
                    out.insert(prefix.clone());
                }
                prefix.pop();
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

fn field_set(v: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    fields_of(v, &mut Vec::new(), &mut out, "");
    out
}

fn to_fields_v1(set: &BTreeSet<FieldPath>) -> Value {
    let mut root = json!({});
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            if cur.get(seg).is_none() {
                cur[seg.as_str()] = json!({});
            }
            cur = &mut cur[seg.as_str()];
        }
    }
    root
}

fn from_fields_v1(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match v.as_object() {
        Some(m) if !m.is_empty() => {
            for (k, x) in m {
                if k == "." {
                    continue;
                }
                prefix.push(k.clone());
                from_fields_v1(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

fn entry_set(e: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    from_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut out);
    out
}

/// Reads the value at a field path.
fn value_at<'a>(v: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = seg.strip_prefix("k:") {
            let kv: Value = serde_json::from_str(k).ok()?;
            let (key, want) = kv.as_object()?.iter().next()?;
            cur = cur.as_array()?.iter().find(|i| i.get(key) == Some(want))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

fn remove_at(v: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        let next = if let Some(f) = seg.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = seg.strip_prefix("k:") {
            let Ok(kv) = serde_json::from_str::<Value>(k) else {
                return;
            };
            let Some((key, want)) = kv
                .as_object()
                .and_then(|o| o.iter().next())
                .map(|(a, b)| (a.clone(), b.clone()))
            else {
                return;
            };
            cur.as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| i.get(&key) == Some(&want)))
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:")
        && let Ok(kv) = serde_json::from_str::<Value>(k)
        && let Some((key, want)) = kv.as_object().and_then(|o| o.iter().next())
        && let Some(a) = cur.as_array_mut()
    {
        a.retain(|i| i.get(key) != Some(want));
    }
}

fn overlaps(a: &FieldPath, b: &FieldPath) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Whether owning the leaf `owner` means owning `p` (the same field or one inside it).
fn covers(owner: &FieldPath, p: &FieldPath) -> bool {
    p.starts_with(owner)
}

fn managed_entries(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default()
}

fn make_entry(
    manager: &str,
    operation: &str,
    api_version: &str,
    set: &BTreeSet<FieldPath>,
    sub: Option<&str>,
) -> Value {
    let mut e = json!({
        "manager": manager, "operation": operation, "apiVersion": api_version,
        "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(set),
    });
    if let Some(s) = sub {
        e["subresource"] = json!(s);
    }
    e
}

/// Records an Update (or Create) by `manager`: the fields it changed become its own and leave other managers.
pub fn record_update_manager(
    obj: &mut Value,
    current: Option<&Value>,
    manager: &str,
    api_version: &str,
    operation: &str,
) {
    if operation == "Apply" {
        return;
    }
    let new_set = field_set(obj);
    let changed: BTreeSet<FieldPath> = match current {
        None => new_set.clone(),
        Some(c) => new_set
            .iter()
            .filter(|p| value_at(c, p) != value_at(obj, p))
            .cloned()
            .collect(),
    };
    let mut entries = current.map(managed_entries).unwrap_or_default();
    if changed.is_empty() && current.is_some() {
        obj["metadata"]["managedFields"] = json!(entries);
        return;
    }
    let mut mine = BTreeSet::new();
    entries.retain_mut(|e| {
        let mut set = entry_set(e);
        if e["manager"] == manager && e["operation"] == "Update" {
            mine.extend(set);
            return false;
        }
        let before = set.len();
        set.retain(|p| !changed.iter().any(|c| overlaps(c, p)));
        if set.len() != before {
            e["fieldsV1"] = to_fields_v1(&set);
        }
        !set.is_empty()
    });
    mine.extend(changed);
    // Fields removed by this write are nobody's any more.
    mine.retain(|p| value_at(obj, p).is_some());
    entries.push(make_entry(manager, "Update", api_version, &mine, None));
    obj["metadata"]["managedFields"] = json!(entries);
}

/// Records the managedFields entry of an apply that created the object.
pub fn record_apply_manager(obj: &mut Value, applied: &Value, manager: &str, api_version: &str, sub: Option<&str>) {
    let set = field_set(applied);
    obj["metadata"]["managedFields"] = json!([make_entry(manager, "Apply", api_version, &set, sub)]);
}

/// Server-side apply of `applied` by `manager` onto `current`: conflicts with other managers' fields
/// (unless `force`), merge, and removal of fields this manager applied before but no longer does.
pub fn server_side_apply(
    current: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
    rt: &ResourceType,
    sub: Option<&str>,
) -> ApiResult<Value> {
    let mut applied = applied.clone();
    strip_directives(&mut applied);
    let considered = match sub {
        Some("status") => json!({"status": applied.get("status").cloned().unwrap_or(json!({}))}),
        _ => applied.clone(),
    };
    let new_set = if sub == Some("status") {
        let mut out = BTreeSet::new();
        fields_of(
            &considered["status"],
            &mut vec!["f:status".to_string()],
            &mut out,
            "status",
        );
        out
    } else {
        field_set(&considered)
    };
    let mut entries = managed_entries(current);
    let mut conflicts = Vec::new();
    let mut prev_mine = BTreeSet::new();
    for e in &entries {
        let set = entry_set(e);
        if e["manager"] == manager && e["operation"] == "Apply" {
            prev_mine = set;
            continue;
        }
        for p in &new_set {
            if set.iter().any(|q| covers(q, p))
                && value_at(current, p) != value_at(&considered, p)
                && value_at(current, p).is_some()
            {
                conflicts.push((e["manager"].as_str().unwrap_or("unknown").to_string(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let list: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| {
                format!(
                    "conflict with \"{m}\": .{}",
                    p.iter()
                        .map(|s| s.trim_start_matches("f:").to_string())
                        .collect::<Vec<_>>()
                        .join(".")
                )
            })
            .collect();
        let mut e = ApiError::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                list.join("\n")
            ),
        );
        e.details = Some(
            json!({"causes": conflicts.iter().map(|(m, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": format!(".{}", p.join("."))})).collect::<Vec<_>>()}),
        );
        return Err(e);
    }
    let mut merged = smp_value("", current, &considered)?.unwrap_or_else(|| current.clone());
    // Other managers lose what was forced away from them.
    entries.retain_mut(|e| {
        if e["manager"] == manager && e["operation"] == "Apply" {
            return false;
        }
        let mut set = entry_set(e);
        let before = set.len();
        set.retain(|q| {
            !new_set
                .iter()
                .any(|p| covers(q, p) && value_at(current, p) != value_at(&considered, p))
        });
        if set.len() != before {
            e["fieldsV1"] = to_fields_v1(&set);
        }
        !set.is_empty()
    });
    for p in prev_mine.difference(&new_set) {
        let owned_by_other = entries.iter().any(|e| entry_set(e).iter().any(|q| q == p));
        if !owned_by_other && !new_set.iter().any(|n| n.starts_with(p)) {
            remove_at(&mut merged, p);
        }
    }
    entries.push(make_entry(manager, "Apply", &rt.api_version(), &new_set, sub));
    merged["metadata"]["managedFields"] = json!(entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment_type() -> ResourceType {
        crate::resources::builtins()
            .into_iter()
            .find(|t| t.kind == "Deployment")
            .unwrap()
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let cur = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}], "finalizers": ["f1"]}});
        let p = json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}], "finalizers": ["f2"]}});
        let out = strategic_merge(&cur, &p).unwrap();
        let cs = out["spec"]["containers"].as_array().unwrap();
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[1]["image"], "z");
        assert_eq!(out["spec"]["finalizers"], json!(["f1", "f2"]));
        let del = json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}});
        assert_eq!(
            strategic_merge(&out, &del).unwrap()["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let rm = json!({"$deleteFromPrimitiveList/finalizers": ["f1"]});
        assert_eq!(
            strategic_merge(&json!({"finalizers": ["f1", "f2"]}), &rm).unwrap()["finalizers"],
            json!(["f2"])
        );
    }

    #[test]
    fn json_and_merge_patches() {
        let cur = json!({"a": {"b": 1}, "l": [1, 2]});
        assert_eq!(
            merge_patch(&cur, &json!({"a": {"b": null, "c": 2}}))["a"],
            json!({"c": 2})
        );
        let out = json_patch(
            &cur,
            &json!([{"op": "add", "path": "/l/-", "value": 3}, {"op": "replace", "path": "/a/b", "value": 5}]),
        )
        .unwrap();
        assert_eq!(out["l"], json!([1, 2, 3]));
        assert!(json_patch(&cur, &json!([{"op": "test", "path": "/a/b", "value": 9}])).is_err());
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let rt = deployment_type();
        let mut obj =
            json!({"metadata": {"name": "d", "labels": {"a": "1"}}, "spec": {"replicas": 1, "paused": false}});
        let applied = obj.clone();
        record_apply_manager(&mut obj, &applied, "alice", "apps/v1", None);
        // Bob changes replicas with an update: he now owns it.
        let mut upd = obj.clone();
        upd["spec"]["replicas"] = json!(3);
        record_update_manager(&mut upd, Some(&obj), "bob", "apps/v1", "Update");
        // Alice re-applies replicas=1: conflict.
        let again = json!({"metadata": {"name": "d", "labels": {"a": "1"}}, "spec": {"replicas": 1, "paused": false}});
        let e = server_side_apply(&upd, &again, "alice", false, &rt, None).unwrap_err();
        assert_eq!(e.code, 409);
        assert!(e.message.contains("bob"), "{}", e.message);
        let forced = server_side_apply(&upd, &again, "alice", true, &rt, None).unwrap();
        assert_eq!(forced["spec"]["replicas"], 1);
        // Alice stops applying `paused` and the label: both are removed.
        let less = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}});
        let out = server_side_apply(&forced, &less, "alice", false, &rt, None).unwrap();
        assert!(out["spec"].get("paused").is_none(), "{out}");
        assert!(out["metadata"]["labels"].get("a").is_none(), "{out}");
    }
}
