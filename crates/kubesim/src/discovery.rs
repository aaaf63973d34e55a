//! Discovery (`/version`, `/api`, `/apis`), OpenAPI documents and server-side Table printing.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Cluster;
use crate::api::{Query, json_response};
use crate::errors::{ApiError, ApiResult};
use crate::resources::ResourceType;

fn resource_list(cluster: &Cluster, group: &str, version: &str) -> Option<Value> {
    let types: Vec<ResourceType> = cluster
        .registry
        .all()
        .into_iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in &types {
        let mut r = json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": t.verbs,
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        for sub in &t.subresources {
            let (kind, verbs): (String, Vec<&str>) = match sub.as_str() {
                "status" => (t.kind.clone(), vec!["get", "patch", "update"]),
                "exec" | "attach" | "portforward" => (format!("Pod{}Options", capitalize(sub)), vec!["create", "get"]),
                "log" => ("Pod".into(), vec!["get"]),
                "token" => ("TokenRequest".into(), vec!["create"]),
                "scale" => ("Scale".into(), vec!["get", "patch", "update"]),
                "finalize" => ("Namespace".into(), vec!["update"]),
                _ => (t.kind.clone(), vec!["get", "patch", "update"]),
            };
            let mut r = json!({"name": format!("{}/{}", t.plural, sub), "singularName": "", "namespaced": t.namespaced, "kind": kind, "verbs": verbs});
            if sub == "token" {
                r["group"] = json!("authentication.k8s.io");
                r["version"] = json!("v1");
            }
            if sub == "scale" {
                r["group"] = json!("autoscaling");
                r["version"] = json!("v1");
            }
            resources.push(r);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn group_obj(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// Serves a non-resource path.
pub fn serve(cluster: &Cluster, path: &str, _headers: &HeaderMap, _query: &Query) -> ApiResult<Response> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let not_found = || ApiError::new(404, "NotFound", "the server could not find the requested resource");
    let out = match segs.as_slice() {
        ["version"] => {
            let v = cluster.config.version.trim_start_matches('v').to_string();
            let mut parts = v.split('.');
            json!({
                "major": parts.next().unwrap_or("1"), "minor": parts.next().unwrap_or("33"),
                "gitVersion": cluster.config.version, "gitCommit": "kubesim", "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",

            })
        }
        ["api"] => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
        }
        ["api", "v1"] => resource_list(cluster, "", "v1").ok_or_else(not_found)?,
        ["apis"] => {
            let groups: Vec<Value> = cluster.registry.groups().iter().map(|(g, v)| group_obj(g, v)).collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        ["apis", g] => {
            let (g, v) = cluster
                .registry
                .groups()
                .into_iter()
                .find(|(x, _)| x == g)
                .ok_or_else(not_found)?;
            let mut o = group_obj(&g, &v);
            o["kind"] = json!("APIGroup");
            o["apiVersion"] = json!("v1");
            o
        }
        ["apis", g, v] => resource_list(cluster, g, v).ok_or_else(not_found)?,
        ["openapi", "v2"] => openapi_v2(cluster),
        ["openapi", "v3"] => openapi_v3_index(cluster),
        ["openapi", "v3", rest @ ..] => openapi_v3_doc(cluster, &rest.join("/")).ok_or_else(not_found)?,
        [".well-known", "openid-configuration"] => cluster.tokens.openid_configuration(),
        ["openid", "v1", "jwks"] => cluster.tokens.public_jwks(),
        _ => return Err(not_found()),
    };
    Ok(json_response(StatusCode::OK, &out))
}

/// Swagger 2.0 with the GVK extension for each type. kubectl falls back to its compiled-in types for
/// strategic merge when definitions lack properties; CRDs carry their schema.
fn openapi_v2(cluster: &Cluster) -> Value {
    let mut defs = serde_json::Map::new();
    for t in cluster.registry.all() {
        let mut d = t
            .schema
            .as_deref()
            .cloned()
            .unwrap_or_else(|| json!({"type": "object"}));
        d["x-kubernetes-group-version-kind"] = json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
        let prefix = if t.group.is_empty() {
            "io.k8s.api.core".to_string()
        } else {
            t.group.split('.').rev().collect::<Vec<_>>().join(".")
        };
        defs.insert(format!("{prefix}.{}.{}", t.version, t.kind), d);
    }
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": cluster.config.version}, "paths": {}, "definitions": defs})
}

fn gv_path(t: &ResourceType) -> String {
    if t.group.is_empty() {
        format!("api/{}", t.version)
    } else {
        format!("apis/{}/{}", t.group, t.version)
    }
}

fn openapi_v3_index(cluster: &Cluster) -> Value {
    let mut paths = serde_json::Map::new();
    for t in cluster.registry.all() {
        let p = gv_path(&t);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", cluster.store.current_rv())}),
        );
    }
    json!({"paths": paths})
}

/// One group-version's OpenAPI v3 document: schemas with GVK extensions, and paths whose write
/// operations declare `fieldValidation`, which tells kubectl to validate on the server.
fn openapi_v3_doc(cluster: &Cluster, gv: &str) -> Option<Value> {
    let types: Vec<ResourceType> = cluster
        .registry
        .all()
        .into_iter()
        .filter(|t| gv_path(t) == gv)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut schemas = serde_json::Map::new();
    let mut paths = serde_json::Map::new();
    let fv = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    for t in &types {
        let name = format!(
            "{}.{}.{}",
            if t.group.is_empty() {
                "io.k8s.api.core"
            } else {
                &t.group
            },
            t.version,
            t.kind
        );
        let mut s = t
            .schema
            .as_deref()
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        s["x-kubernetes-group-version-kind"] = json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
        schemas.insert(name.clone(), s);
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let op = |action: &str| json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": [fv.clone()], "responses": {"200": {"description": "OK"}}});
        let base = if t.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("/{gv}/{}", t.plural)
        };
        paths.insert(base.clone(), json!({"post": op("post")}));
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"put": op("put"), "patch": op("patch")}),
        );
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": cluster.config.version}, "paths": paths, "components": {"schemas": schemas}}),
    )
}

/// How long ago `ts` was, as kubectl prints ages (`duration.HumanDuration`, coarsened).
pub(crate) fn age(ts: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn jsonpath_simple(obj: &Value, path: &str) -> Value {
    let mut cur = obj;
    for seg in path.trim_start_matches('.').split('.') {
        if seg.is_empty() {
            continue;
        }
        cur = &cur[seg];
    }
    cur.clone()
}

/// Converts a list to a `meta.k8s.io/v1` Table as kubectl requests for `get`.
pub fn to_table(rt: &ResourceType, list: &Value, query: &Query) -> Value {
    if rt.kind == "Event" {
        return crate::events::table(rt, list, query);
    }
    let mut cols =
        vec![json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0})];
    let kind = rt.kind.as_str();
    let extra: Vec<(String, String)> = match kind {
        "Pod" => vec![
            ("Ready".into(), "string".into()),
            ("Status".into(), "string".into()),
            ("Restarts".into(), "string".into()),
        ],
        "Namespace" => vec![("Status".into(), "string".into())],
        "Secret" => vec![("Type".into(), "string".into()), ("Data".into(), "integer".into())],
        "ConfigMap" => vec![("Data".into(), "integer".into())],
        "ServiceAccount" => vec![("Secrets".into(), "integer".into())],
        _ => rt
            .printer_columns
            .iter()
            .filter(|c| c["name"] != "Age")
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or("").to_string(),
                    c["type"].as_str().unwrap_or("string").to_string(),
                )
            })
            .collect(),
    };
    for (n, t) in &extra {
        cols.push(json!({"name": n, "type": t, "format": "", "description": n, "priority": 0}));
    }
    cols.push(json!({"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}));
    table(list, query, cols, |o| {
        let md = &o["metadata"];
        let mut cells = vec![md["name"].clone()];
        match kind {
            "Pod" => {
                let cs = o["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
                let ready = cs.iter().filter(|c| c["ready"] == true).count();
                let total = o["spec"]["containers"].as_array().map_or(0, |c| c.len());
                let restarts: i64 = cs.iter().map(|c| c["restartCount"].as_i64().unwrap_or(0)).sum();
                let status = if md["deletionTimestamp"].is_string() {
                    "Terminating".to_string()
                } else {
                    o["status"]["phase"].as_str().unwrap_or("Pending").to_string()
                };
                cells.extend([
                    json!(format!("{ready}/{total}")),
                    json!(status),
                    json!(restarts.to_string()),
                ]);
            }
            "Namespace" => cells.push(o["status"]["phase"].clone()),
            "Secret" => cells.extend([o["type"].clone(), json!(o["data"].as_object().map_or(0, |d| d.len()))]),
            "ConfigMap" => cells.push(json!(o["data"].as_object().map_or(0, |d| d.len()))),
            "ServiceAccount" => cells.push(json!(o["secrets"].as_array().map_or(0, |d| d.len()))),
            _ => {
                for c in rt.printer_columns.iter().filter(|c| c["name"] != "Age") {
                    let v = jsonpath_simple(o, c["jsonPath"].as_str().unwrap_or(""));
                    let v = match (&v, c["type"].as_str()) {
                        (Value::String(s), Some("date")) => json!(age(s)),
                        (Value::Array(a), _) => json!(
                            a.iter()
                                .map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
                                .collect::<Vec<_>>()
                                .join(",")
                        ),
                        (Value::Null, _) => json!("<none>"),
                        _ => v.clone(),
                    };
                    cells.push(v);
                }
            }
        }
        cells.push(json!(age(md["creationTimestamp"].as_str().unwrap_or(""))));
        json!(cells)
    })
}

/// A `meta.k8s.io/v1` Table of `list` with the column definitions `cols`: one row per item with
/// the cells `cells` computes and the object as the query's `includeObject` asks (`None`,
/// `Object`, or by default its metadata as a PartialObjectMetadata), and the list's
/// resourceVersion and continue token.
pub fn table(list: &Value, query: &Query, cols: Vec<Value>, cells: impl Fn(&Value) -> Value) -> Value {
    let include_object = crate::api::q(query, "includeObject").unwrap_or("PartialObjectMetadata");
    let rows: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => crate::api::partial_metadata(o),
            };
            json!({"cells": cells(o), "object": object})
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": list["metadata"]["resourceVersion"].clone(), "continue": list["metadata"]["continue"].clone()},
        "columnDefinitions": cols, "rows": rows,
    })
}

/// A 200 with plain text (for `/healthz`-like endpoints).
pub fn ok_text() -> Response {
    (StatusCode::OK, "ok").into_response()
}
