//! The REST dispatcher: parses Kubernetes API paths, authenticates, authorizes and runs each verb.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::Cluster;
use crate::auth::{self, Attributes, UserInfo};
use crate::errors::{ApiError, ApiResult};
use crate::faults::Verdict;
use crate::resources::{GroupResource, ResourceType};
use crate::store::now_rfc3339;
use crate::{crd, discovery, ephemeral, exec, gc, kubelet, logs, patch, watch, workloads};

/// Largest request body accepted (the real server's limit is 3 MiB for most objects).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// The axum router serving the whole API of one cluster.
pub fn router(cluster: Arc<Cluster>) -> Router {
    Router::new().fallback(dispatch).with_state(cluster)
}

/// A parsed resource request.
#[derive(Debug, Clone)]
pub struct ResourceRequest {
    /// The served type.
    pub rt: ResourceType,
    /// Namespace from the path.
    pub namespace: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// Subresource from the path.
    pub sub: Option<String>,
}

/// Query parameters in order, percent-decoded.
pub type Query = Vec<(String, String)>;

/// First value of a query parameter.
pub fn q<'a>(query: &'a Query, key: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn q_bool(query: &Query, key: &str) -> bool {
    matches!(q(query, key), Some("true") | Some("1"))
}

fn parse_query(raw: Option<&str>) -> Query {
    raw.map(url_decode_pairs).unwrap_or_default()
}

fn url_decode_pairs(raw: &str) -> Query {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// JSON response helper.
pub fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response()
}

async fn dispatch(State(cluster): State<Arc<Cluster>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    // With the query, so a fault can hit one kind of call on a path (a list's later pages: `continue=`).
    let target = req
        .uri()
        .path_and_query()
        .map_or(path.as_str(), |pq| pq.as_str())
        .to_string();
    match cluster.faults.before(&target).await {
        Verdict::Serve => {}
        Verdict::Fail(e) => return e.into_response(),
        Verdict::Close => {
            // An erroring body makes hyper drop the connection mid-response, as a crashed server would.
            let body = Body::from_stream(futures::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("injected connection close"))
            }));
            return Response::builder().status(200).body(body).unwrap_or_default();
        }
    }
    match handle(cluster, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(cluster: Arc<Cluster>, req: Request) -> ApiResult<Response> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let query = parse_query(parts.uri.query());
    let method = parts.method.clone();

    // Liveness endpoints answer without authentication, as on real clusters.
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return Ok((StatusCode::OK, "ok").into_response());
    }
    let user = auth::authenticate(&cluster, &parts.headers)?;
    let user = impersonate(&cluster, user, &parts.headers)?;

    if path.starts_with("/kubesim") {
        let body = read_body(body).await?;
        return kubesim_admin(&cluster, &user, &method, &path, &query, body).await;
    }

    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Non-resource paths.
    let resource_prefix = match segs.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => Some(("", "v1", rest)),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => Some((*g, *v, rest)),
        _ => None,
    };
    let Some((group, version, rest)) = resource_prefix else {
        let attrs = Attributes {
            verb: &method.as_str().to_lowercase(),
            path: Some(&path),
            ..Default::default()
        };
        let verb = non_resource_verb(&method);
        let attrs = Attributes { verb, ..attrs };
        if !auth::authorize(&cluster, &user, &attrs) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "forbidden: User \"{}\" cannot {} path \"{}\"",
                    user.username, verb, path
                ),
            ));
        }
        return discovery::serve(&cluster, &path, &parts.headers, &query);
    };

    let rr = parse_resource_path(&cluster, group, version, rest)?;
    let watch = method == Method::GET && rr.name.is_none() && q_bool(&query, "watch");
    let verb = request_verb(&method, &rr, watch);
    let gr = rr.rt.group_resource();
    let attrs = Attributes {
        verb,
        group: &rr.rt.group,
        resource: &rr.rt.plural,
        subresource: rr.sub.as_deref(),
        namespace: rr.namespace.as_deref(),
        name: rr.name.as_deref(),
        path: None,
    };
    if !auth::authorize(&cluster, &user, &attrs) {
        return Err(auth::forbidden(&user, &attrs));
    }
    // From 1.35 a WebSocket connect (GET, `get` above) must be allowed to `create` as well.
    exec::authorize_connect(&cluster, &user, &attrs)?;

    // Streaming subresources take the raw request.
    if let (Some(sub), Some(name), Some(ns)) = (rr.sub.as_deref(), rr.name.as_deref(), rr.namespace.as_deref()) {
        if gr.group.is_empty() && gr.resource == "pods" && sub == "exec" {
            let pod = cluster
                .store
                .get(&gr, ns, name)
                .ok_or_else(|| ApiError::not_found(&gr, name))?;
            // Parameter errors must reach clients that then fall back to SPDY, so they come first.
            let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
                .await
                .map_err(|_| exec::reject_non_websocket(&pod, &query))?;
            return exec::exec(cluster.clone(), pod, query, ws);
        }
        if gr.group.is_empty() && gr.resource == "pods" && sub == "attach" {
            let pod = cluster
                .store
                .get(&gr, ns, name)
                .ok_or_else(|| ApiError::not_found(&gr, name))?;
            let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
                .await
                .map_err(|_| ephemeral::reject_non_websocket(&pod, &query))?;
            return ephemeral::attach(cluster.clone(), pod, query, ws);
        }
        if gr.group.is_empty() && gr.resource == "pods" && sub == "log" {
            let pod = cluster
                .store
                .get(&gr, ns, name)
                .ok_or_else(|| ApiError::not_found(&gr, name))?;
            return logs::serve_log(cluster.clone(), pod, query).await;
        }
    }

    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let table = accept.contains("as=Table");
    let metadata_view = metadata_view(&accept);
    let body = read_body(body).await?;
    let ctx = Ctx {
        cluster: &cluster,
        user: &user,
        rr: &rr,
        query: &query,
        headers: &parts.headers,
    };

    if rr.rt.virtual_only {
        if method != Method::POST {
            return Err(ApiError::method_not_allowed());
        }
        let obj = decode_body(&parts.headers, &body)?;
        let out = auth::review(&cluster, &user, &rr.rt.kind, rr.namespace.as_deref(), obj)?;
        return Ok(json_response(StatusCode::CREATED, &out));
    }

    if rr.sub.as_deref() == Some("scale") && workloads::is_workload(&rr.rt.group, &rr.rt.kind) {
        return ctx.scale(&method, &parts.headers, &body);
    }

    match (method.clone(), rr.name.is_some(), rr.sub.as_deref()) {
        // A watch's events carry single objects: the metadata-only view of each is PartialObjectMetadata
        // (kube-rs `Api<PartialObjectMeta<K>>`). The list view is the wrong shape for every event: the
        // real server's watch encoder fails to transform the first one and ends the stream (200, no
        // event); kubesim ends it at once.
        (Method::GET, false, None) if watch && metadata_view == Some(PARTIAL_LIST) => {
            tracing::info!(resource = %gr, "watch asked for PartialObjectMetadataList: ended at once");
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::empty(),
            )
                .into_response())
        }
        (Method::GET, false, None) if watch => watch::serve(&ctx, table, metadata_view == Some(PARTIAL)),
        (Method::GET, false, None) => {
            crate::list::wait_until_fresh(&ctx).await?;
            let list = ctx.list()?;
            Ok(json_response(
                StatusCode::OK,
                &if table {
                    discovery::to_table(&rr.rt, &list, &query)
                } else if metadata_view == Some(PARTIAL_LIST) {
                    partial_metadata_list(&list)
                } else if metadata_view == Some(PARTIAL) {
                    return Err(wrong_metadata_shape(&rr.rt, true));
                } else {
                    list
                },
            ))
        }
        (Method::GET, true, None)
        | (Method::GET, true, Some("status"))
        | (Method::GET, true, Some(ephemeral::SUBRESOURCE)) => {
            let obj = ctx.get_current()?;
            let out = if table {
                discovery::to_table(&rr.rt, &json!({"items": [obj]}), &query)
            } else if metadata_view == Some(PARTIAL) {
                partial_metadata(&obj)
            } else if metadata_view == Some(PARTIAL_LIST) {
                return Err(wrong_metadata_shape(&rr.rt, false));
            } else {
                obj
            };
            Ok(json_response(StatusCode::OK, &out))
        }
        (Method::POST, false, None) => {
            let obj = decode_body(&parts.headers, &body)?;
            let created = ctx.create(obj)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (Method::POST, true, Some("token")) if gr.resource == "serviceaccounts" => {
            let obj = decode_body(&parts.headers, &body)?;
            let ns = rr.namespace.as_deref().unwrap_or_default();
            let name = rr.name.as_deref().unwrap_or_default();
            let issued = auth::token_request(&cluster, ns, name, &obj)?;
            let mut resp = json_response(StatusCode::CREATED, &issued.object);
            for w in &issued.warnings {
                if let Ok(v) = header::HeaderValue::from_str(&auth::warning_header(w)) {
                    resp.headers_mut().append(header::WARNING, v);
                }
            }
            Ok(resp)
        }
        (Method::PUT, true, sub) => {
            let obj = decode_body(&parts.headers, &body)?;
            let (out, created) = ctx.replace(obj, sub)?;
            Ok(json_response(
                if created { StatusCode::CREATED } else { StatusCode::OK },
                &out,
            ))
        }
        (Method::PATCH, true, sub) => {
            let ct = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let (out, created) = ctx.patch(&ct, &body, sub)?;
            Ok(json_response(
                if created { StatusCode::CREATED } else { StatusCode::OK },
                &out,
            ))
        }
        (Method::DELETE, true, None) => {
            let opts = if body.is_empty() {
                json!({})
            } else {
                decode_body(&parts.headers, &body)?
            };
            ctx.delete(&opts)
        }
        (Method::DELETE, false, None) => {
            let opts = if body.is_empty() {
                json!({})
            } else {
                decode_body(&parts.headers, &body)?
            };
            ctx.delete_collection(&opts)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

const PARTIAL: &str = "PartialObjectMetadata";
const PARTIAL_LIST: &str = "PartialObjectMetadataList";

/// The `meta.k8s.io/v1` metadata-only view an Accept header asks for
/// (`application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`, as kube-rs `list_metadata`
/// sends it), from the first media type that names one.
fn metadata_view(accept: &str) -> Option<&'static str> {
    accept.split(',').find_map(|media| {
        let params: Vec<(&str, &str)> = media
            .split(';')
            .skip(1)
            .filter_map(|p| p.trim().split_once('='))
            .collect();
        let param = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        if param("g") != Some("meta.k8s.io") || param("v") != Some("v1") {
            return None;
        }
        match param("as") {
            Some(PARTIAL) => Some(PARTIAL),
            Some(PARTIAL_LIST) => Some(PARTIAL_LIST),
            _ => None,
        }
    })
}

/// 406 for a metadata-only view of the other shape than the answer's (`asPartialObjectMetadata`
/// and `asPartialObjectMetadataList` in apiserver/pkg/endpoints/handlers/response.go): a
/// PartialObjectMetadata of a list, or a PartialObjectMetadataList of one object.
fn wrong_metadata_shape(rt: &ResourceType, list: bool) -> ApiError {
    let (asked, is) = if list {
        (PARTIAL, "is a list")
    } else {
        (PARTIAL_LIST, "is not a list")
    };
    ApiError::not_acceptable(format!(
        "you requested {asked}, but the requested object {is} ({})",
        go_type(rt, list)
    ))
}

/// The Go type (`%T`) of what a registry hands the response writer: the internal type of a
/// built-in kind (`*core.ConfigMap`, `*rbac.RoleList`), unstructured for custom resources.
fn go_type(rt: &ResourceType, list: bool) -> String {
    let suffix = if list { "List" } else { "" };
    if rt.schema.is_some() {
        return format!("*unstructured.Unstructured{suffix}");
    }
    // Both Event views are served from the core type.
    let package = match rt.group.split('.').next().unwrap_or_default() {
        _ if rt.kind == "Event" => "core",
        "" => "core",
        first => first,
    };
    format!("*{package}.{}{suffix}", rt.kind)
}

/// `meta.AsPartialObjectMetadata` (apiserver/pkg/endpoints/handlers/response.go): the object's
/// metadata under the `PartialObjectMetadata` kind.
pub(crate) fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": PARTIAL, "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"].clone()})
}

/// `asPartialObjectMetadataList`: every item as [`partial_metadata`], the list's resourceVersion,
/// continue token and remaining count kept.
fn partial_metadata_list(list: &Value) -> Value {
    let items: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(partial_metadata)
        .collect();
    json!({"kind": PARTIAL_LIST, "apiVersion": "meta.k8s.io/v1", "metadata": list["metadata"].clone(), "items": items})
}

/// `Impersonate-User` / `Impersonate-Group` headers (kubectl `--as`, `--as-group`): allowed only with
/// the `impersonate` verb on the users, groups or serviceaccounts named, as the real server checks.
fn impersonate(cluster: &Cluster, user: UserInfo, headers: &HeaderMap) -> ApiResult<UserInfo> {
    let Some(target) = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        if headers.get("impersonate-group").is_some() {
            return Err(ApiError::bad_request(
                "requested impersonation of groups without impersonating a user",
            ));
        }
        return Ok(user);
    };
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let check = |resource: &str, ns: Option<&str>, name: &str| -> ApiResult<()> {
        let attrs = Attributes {
            verb: "impersonate",
            resource,
            namespace: ns,
            name: Some(name),
            ..Default::default()
        };
        if auth::authorize(cluster, &user, &attrs) {
            Ok(())
        } else {
            Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{resource} \"{name}\" is forbidden: User \"{}\" cannot impersonate resource \"{resource}\" in API group \"\" at the cluster scope",
                    user.username
                ),
            ))
        }
    };
    let mut out_groups = Vec::new();
    if let Some(rest) = target.strip_prefix("system:serviceaccount:") {
        let (ns, name) = rest
            .split_once(':')
            .ok_or_else(|| ApiError::bad_request("malformed ServiceAccount user name"))?;
        check("serviceaccounts", Some(ns), name)?;
        out_groups.push("system:serviceaccounts".to_string());
        out_groups.push(format!("system:serviceaccounts:{ns}"));
    } else {
        check("users", None, &target)?;
    }
    for g in &groups {
        check("groups", None, g)?;
    }
    out_groups.extend(groups);
    if !out_groups.iter().any(|g| g == "system:authenticated") {
        out_groups.push("system:authenticated".into());
    }
    Ok(UserInfo {
        username: target,
        uid: String::new(),
        groups: out_groups,
    })
}

fn non_resource_verb(m: &Method) -> &'static str {
    match *m {
        Method::GET | Method::HEAD => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    }
}

fn request_verb(m: &Method, rr: &ResourceRequest, watch: bool) -> &'static str {
    // Connect subresources get no verb of their own: a WebSocket GET is `get`, a SPDY POST `create`
    // (requestinfo.go); what 1.35 adds for the GET is exec::authorize_connect.
    match *m {
        Method::GET | Method::HEAD if rr.name.is_some() => "get",
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if rr.name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => "get",
    }
}

fn parse_resource_path(cluster: &Cluster, group: &str, version: &str, rest: &[&str]) -> ApiResult<ResourceRequest> {
    let not_found = || ApiError::new(404, "NotFound", "the server could not find the requested resource");
    let lookup = |plural: &str| cluster.registry.lookup(group, version, plural).ok_or_else(not_found);
    let (rt, namespace, name, sub) = match rest {
        ["namespaces", ns, res, tail @ ..]
            if !(group.is_empty() && matches!(*res, "status" | "finalize") && tail.is_empty()) =>
        {
            let rt = lookup(res)?;
            if !rt.namespaced {
                return Err(not_found());
            }
            (
                rt,
                Some(ns.to_string()),
                tail.first().map(|s| s.to_string()),
                tail.get(1).map(|s| s.to_string()),
            )
        }
        [res, tail @ ..] => {
            let rt = lookup(res)?;
            (
                rt,
                None,
                tail.first().map(|s| s.to_string()),
                tail.get(1).map(|s| s.to_string()),
            )
        }
        [] => return Err(not_found()),
    };
    if rest.len() > 5 {
        return Err(not_found());
    }
    if rt.namespaced && namespace.is_none() && name.is_some() {
        return Err(not_found());
    }
    if let Some(s) = &sub
        && !rt.has_subresource(s)
    {
        return Err(not_found());
    }
    Ok(ResourceRequest {
        rt,
        namespace,
        name,
        sub,
    })
}

async fn read_body(body: Body) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    })
}

/// Decodes a JSON or YAML request body into an object.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if ct.contains("cbor") {
        return Err(ApiError::unsupported_media(ct));
    }
    if ct.contains("protobuf") {
        // kubectl >= 1.32 and helm send built-in kinds as protobuf.
        return crate::protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding protobuf body: {e}")));
    }
    let v: Value = if ct.contains("yaml") {
        yaml_serde::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}")))?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(v)
}

/// The context of one resource request.
pub struct Ctx<'a> {
    /// The cluster.
    pub cluster: &'a Arc<Cluster>,
    /// Who asks.
    pub user: &'a UserInfo,
    /// What is asked for.
    pub rr: &'a ResourceRequest,
    /// Query parameters.
    pub query: &'a Query,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

/// Validates a DNS-1123 subdomain (most object names).
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Validates a DNS-1123 label (namespace names).
pub fn is_dns_label(s: &str) -> bool {
    is_dns_subdomain(s) && s.len() <= 63 && !s.contains('.')
}

fn random_suffix() -> String {
    use rand::RngExt as _;
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
        .collect()
}

impl Ctx<'_> {
    fn gr(&self) -> GroupResource {
        self.rr.rt.group_resource()
    }

    fn ns(&self) -> &str {
        self.rr.namespace.as_deref().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.rr.name.as_deref().unwrap_or_default()
    }

    fn dry_run(&self) -> bool {
        q(self.query, "dryRun").is_some()
    }

    fn get_current(&self) -> ApiResult<Value> {
        self.cluster
            .store
            .get(&self.gr(), self.ns(), self.name())
            .ok_or_else(|| ApiError::not_found(&self.gr(), self.name()))
    }

    /// Lists with selectors, pagination and resourceVersion semantics (see [`crate::list`]).
    pub fn list(&self) -> ApiResult<Value> {
        crate::list::list(self)
    }

    fn check_namespace_for_write(&self, ns: &str) -> ApiResult<()> {
        let nsgr = GroupResource::new("", "namespaces");
        match self.cluster.store.get(&nsgr, "", ns) {
            None => Err(ApiError::not_found(&nsgr, ns)),
            Some(n) if n["metadata"]["deletionTimestamp"].is_string() => Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    self.gr(),
                    self.name()
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Fills and checks type and metadata of a body against the request.
    fn normalize(&self, obj: &mut Value, creating: bool) -> ApiResult<()> {
        let rt = &self.rr.rt;
        if let Some(k) = obj.get("kind").and_then(Value::as_str)
            && k != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                obj["apiVersion"].as_str().unwrap_or(""),
                rt.api_version()
            )));
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let md = &mut obj["metadata"];
        if rt.namespaced {
            let url_ns = self.ns();
            match md.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => md["namespace"] = json!(url_ns),
            }
        } else if let Some(m) = md.as_object_mut() {
            m.remove("namespace");
        }
        if creating {
            let has_name = md.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
            if !has_name {
                match md.get("generateName").and_then(Value::as_str) {
                    Some(g) if !g.is_empty() => md["name"] = json!(format!("{g}{}", random_suffix())),
                    _ => {
                        return Err(ApiError::invalid(
                            &rt.kind,
                            &rt.group,
                            "",
                            vec![(
                                "metadata.name".into(),
                                "Required value: name or generateName is required".into(),
                            )],
                        ));
                    }
                }
            }
            if let Some(m) = md.as_object_mut() {
                for k in [
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "resourceVersion",
                    "uid",
                    "creationTimestamp",
                    "selfLink",
                ] {
                    m.remove(k);
                }
            }
        } else if let Some(name) = &self.rr.name {
            match md.get("name").and_then(Value::as_str) {
                Some(n) if n != name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    )));
                }
                _ => md["name"] = json!(name),
            }
        }
        let name = md["name"].as_str().unwrap_or_default().to_string();
        let valid = match rt.kind.as_str() {
            "Namespace" => is_dns_label(&name),
            // RBAC names are path segments, not DNS names (e.g. `system:controller:x`).
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
                !name.is_empty() && !name.contains('/') && !name.contains('%') && name != "." && name != ".."
            }
            _ => is_dns_subdomain(&name),
        };
        if !valid {
            return Err(ApiError::invalid(
                &rt.kind,
                &rt.group,
                &name,
                vec![(
                    "metadata.name".into(),
                    format!(
                        "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                    ),
                )],
            ));
        }
        if let Some(labels) = md.get("labels").and_then(Value::as_object) {
            for (k, v) in labels {
                if !v.is_string() {
                    return Err(ApiError::bad_request(format!(
                        "metadata.labels.{k}: label values must be strings"
                    )));
                }
            }
        }
        let causes = owner_reference_errors(&md["ownerReferences"]);
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.kind, &rt.group, &name, causes));
        }
        Ok(())
    }

    fn field_manager(&self, default: &str) -> String {
        q(self.query, "fieldManager")
            .map(str::to_string)
            .or_else(|| {
                self.headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(|ua| ua.split('/').next().unwrap_or(ua).to_string())
            })
            .unwrap_or_else(|| default.to_string())
    }

    /// Creates an object through admission.
    pub fn create(&self, mut obj: Value) -> ApiResult<Value> {
        self.normalize(&mut obj, true)?;
        let rt = &self.rr.rt;
        if rt.namespaced {
            self.check_namespace_for_write(self.ns())?;
        }
        admit_create(self.cluster, self.user, rt, &mut obj, self.query)?;
        let manager = self.field_manager("unknown");
        patch::record_update_manager(&mut obj, None, &manager, &rt.api_version(), "Update");
        if self.dry_run() {
            return Ok(obj);
        }
        let created = self.cluster.store.create(&self.gr(), obj)?;
        after_create(self.cluster, rt, &created)?;
        Ok(created)
    }

    /// PUT of an object or its status. Returns the object and whether it was created.
    pub fn replace(&self, mut obj: Value, sub: Option<&str>) -> ApiResult<(Value, bool)> {
        self.normalize(&mut obj, false)?;
        let rt = &self.rr.rt;
        let expected = obj["metadata"]["resourceVersion"].as_str().map(str::to_string);
        let manager = self.field_manager("unknown");
        self.guaranteed_update(|| {
            let current = match self.cluster.store.get(&self.gr(), self.ns(), self.name()) {
                Some(c) => c,
                None => {
                    if sub.is_none() && matches!(rt.kind.as_str(), "Lease" | "Endpoints") {
                        return self.create(obj.clone()).map(|o| Some((o, true)));
                    }
                    return Err(ApiError::not_found(&self.gr(), self.name()));
                }
            };
            self.check_update_uid(&current, &obj)?;
            let updated = self.apply_update(&current, obj.clone(), sub, expected.as_deref(), &manager, "Update")?;
            Ok(updated.map(|u| (u, false)))
        })
    }

    /// A PUT body's uid is a precondition (`rest.DefaultUpdatedObjectInfo.Preconditions`), checked by
    /// the storage layer (`storage.Preconditions.Check` in apiserver/pkg/storage/interfaces.go) before
    /// the resourceVersion: its StorageError text ends up in the 409 as is.
    fn check_update_uid(&self, current: &Value, body: &Value) -> ApiResult<()> {
        let stored = current["metadata"]["uid"].as_str().unwrap_or_default();
        let Some(want) = body["metadata"]["uid"]
            .as_str()
            .filter(|u| !u.is_empty() && *u != stored)
        else {
            return Ok(());
        };
        let rt = &self.rr.rt;
        // etcd keys: built-in groups live under the resource alone, custom resources under their group.
        let mut key = String::from("/registry/");
        if rt.schema.is_some() {
            key.push_str(&format!("{}/", rt.group));
        }
        key.push_str(&rt.plural);
        if rt.namespaced {
            key.push_str(&format!("/{}", self.ns()));
        }
        key.push_str(&format!("/{}", self.name()));
        let mut e = ApiError::conflict(&self.gr(), self.name());
        e.message = format!(
            "Operation cannot be fulfilled on {} \"{}\": StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {want}, UID in object meta: {stored}",
            self.gr(),
            self.name()
        );
        Err(e)
    }

    /// Runs a read-modify-write until no other write came between its read and its write, as the API
    /// server's GuaranteedUpdate does: `attempt` reads the newest object, computes the new one and
    /// returns `Ok(None)` when it lost such a race. Without this, two concurrent writes of one object
    /// (a status write and a spec patch, say) left only the one that was stored last.
    fn guaranteed_update<T>(&self, mut attempt: impl FnMut() -> ApiResult<Option<T>>) -> ApiResult<T> {
        // Each lost race means another write succeeded, so this ends; the bound only guards a livelock.
        for _ in 0..1000 {
            if let Some(done) = attempt()? {
                return Ok(done);
            }
        }
        Err(ApiError::conflict(&self.gr(), self.name()))
    }

    /// Shared tail of PUT and PATCH: subresource rules, generation, finalizers, admission, store.
    ///
    /// `current` is the object the new content was computed from. The write only succeeds while the
    /// store still holds that version: `Ok(None)` when another write came first (unless the client set
    /// its own precondition `expected_rv`, which then fails with 409 Conflict as in Kubernetes).
    fn apply_update(
        &self,
        current: &Value,
        mut new: Value,
        sub: Option<&str>,
        expected_rv: Option<&str>,
        manager: &str,
        operation: &str,
    ) -> ApiResult<Option<Value>> {
        let rt = &self.rr.rt;
        match sub {
            Some("status") => {
                // Only the status changes through the status subresource.
                let status = new.get("status").cloned().unwrap_or(Value::Null);
                new = current.clone();
                if status.is_null() {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                } else {
                    new["status"] = status;
                }
            }
            // dropNonEphemeralContainerUpdates: everything but the ephemeral containers stays.
            Some(ephemeral::SUBRESOURCE) if rt.kind == "Pod" && rt.group.is_empty() => {
                let ecs = new["spec"]["ephemeralContainers"].clone();
                new = current.clone();
                if ecs.is_null() {
                    if let Some(m) = new["spec"].as_object_mut() {
                        m.remove("ephemeralContainers");
                    }
                } else {
                    new["spec"]["ephemeralContainers"] = ecs;
                }
            }
            Some("finalize") if rt.kind == "Namespace" => {
                let fins = new["spec"]["finalizers"].clone();
                new = current.clone();
                new["spec"]["finalizers"] = fins;
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!("subresource {other} cannot be updated")));
            }
            None => {
                if rt.has_subresource("status") && rt.schema.is_some() {
                    // CRDs with a status subresource ignore status on the main resource.
                    new["status"] = current.get("status").cloned().unwrap_or(Value::Null);
                    if new["status"].is_null()
                        && let Some(m) = new.as_object_mut()
                    {
                        m.remove("status");
                    }
                }
            }
        }
        // Decided on the body as sent, before the stored uid and creationTimestamp are copied in
        // below (upstream: the policy-based storage's UpdatedObjectInfo runs before
        // rest.BeforeUpdate), so a body without them is a full update.
        let gc_only = rt.group == auth::rbac::RBAC_GROUP && auth::rbac::gc_only_update(&rt.kind, current, &new);
        // Server-owned metadata stays.
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            let v = current["metadata"].get(k).cloned();
            match v {
                Some(v) => new["metadata"][k] = v,
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(k);
                    }
                }
            }
        }
        if rt.kind == "Namespace" && sub.is_none() {
            new["status"] = current["status"].clone();
        }
        let client_rv = expected_rv.filter(|rv| !rv.is_empty());
        let read_rv = current["metadata"]["resourceVersion"].as_str().unwrap_or_default();
        // A client's resourceVersion that is no longer current is a conflict before anything about the
        // update is validated (registry/store.go `Store.Update`: `NewConflict` ahead of
        // `rest.BeforeUpdate` and the validating admission): a stale write is retried, not refused.
        if client_rv.is_some_and(|rv| rv != read_rv) {
            return Err(ApiError::conflict(&self.gr(), self.name()));
        }
        // A deleting object only loses finalizers, it gains none.
        if current["metadata"]["deletionTimestamp"].is_string() {
            let old: Vec<Value> = current["metadata"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if let Some(fins) = new["metadata"]["finalizers"].as_array()
                && let Some(added) = fins.iter().find(|f| !old.contains(f))
            {
                return Err(ApiError::invalid(
                    &rt.kind,
                    &rt.group,
                    self.name(),
                    vec![(
                        "metadata.finalizers".into(),
                        format!(
                            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [{}]",
                            added.as_str().unwrap_or_default()
                        ),
                    )],
                ));
            }
        }
        let spec_changed = strip_meta_status(current) != strip_meta_status(&new);
        if spec_changed
            && (sub.is_none() || sub == Some(ephemeral::SUBRESOURCE))
            && let Some(g) = current["metadata"]["generation"].as_i64().filter(|g| *g > 0)
        {
            new["metadata"]["generation"] = json!(g + 1);
        }
        admit_update(self.cluster, self.user, rt, current, &mut new, sub, gc_only)?;
        patch::record_update_manager(&mut new, Some(current), manager, &rt.api_version(), operation);
        if self.dry_run() {
            return Ok(Some(new));
        }
        let stored = match self
            .cluster
            .store
            .update(&self.gr(), new, Some(client_rv.unwrap_or(read_rv)))
        {
            Ok(s) => s,
            Err(e) if e.code == 409 && client_rv.is_none() => return Ok(None),
            Err(e) => return Err(e),
        };
        after_update(self.cluster, rt, &stored)?;
        if stored["metadata"]["deletionTimestamp"].is_string()
            && stored["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty())
        {
            gc::finish_deletion(self.cluster, &rt.group_resource(), &stored);
        }
        Ok(Some(stored))
    }

    /// The `scale` subresource of a workload (`pkg/registry/apps/deployment/storage/storage.go`
    /// ScaleREST): GET, PUT and PATCH of an `autoscaling/v1` Scale whose `spec.replicas` is the
    /// workload's.
    fn scale(&self, method: &Method, headers: &HeaderMap, body: &[u8]) -> ApiResult<Response> {
        let current = self.get_current()?;
        if *method == Method::GET {
            return Ok(json_response(StatusCode::OK, &workloads::scale_view(&current)));
        }
        let view = workloads::scale_view(&current);
        let wanted = match *method {
            Method::PUT => decode_body(headers, body)?,
            Method::PATCH => {
                let ct = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let doc: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                match ct.as_str() {
                    "application/json-patch+json" => patch::json_patch(&view, &doc)?,
                    "application/merge-patch+json" => patch::merge_patch(&view, &doc),
                    "application/strategic-merge-patch+json" => patch::strategic_merge(&view, &doc)?,
                    other => return Err(ApiError::unsupported_media(other)),
                }
            }
            _ => return Err(ApiError::method_not_allowed()),
        };
        let replicas = wanted["spec"]["replicas"].as_i64().unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::invalid(
                "Scale",
                "autoscaling",
                self.name(),
                vec![(
                    "spec.replicas".into(),
                    format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                )],
            ));
        }
        let expected = wanted["metadata"]["resourceVersion"].as_str().map(str::to_string);
        let manager = self.field_manager("unknown");
        let stored = self.guaranteed_update(|| {
            let current = self.get_current()?;
            let mut new = current.clone();
            new["spec"]["replicas"] = json!(replicas);
            self.apply_update(&current, new, None, expected.as_deref(), &manager, "Update")
        })?;
        Ok(json_response(StatusCode::OK, &workloads::scale_view(&stored)))
    }

    /// PATCH of every supported type. Returns the object and whether apply created it.
    pub fn patch(&self, content_type: &str, body: &[u8], sub: Option<&str>) -> ApiResult<(Value, bool)> {
        self.guaranteed_update(|| self.patch_once(content_type, body, sub))
    }

    /// One attempt of [`Ctx::patch`] against the newest object; `Ok(None)` if another write overtook it.
    fn patch_once(&self, content_type: &str, body: &[u8], sub: Option<&str>) -> ApiResult<Option<(Value, bool)>> {
        let rt = &self.rr.rt;
        let ct = content_type.split(';').next().unwrap_or("").trim();
        if ct == "application/apply-patch+yaml" || ct == "application/apply-patch+cbor" {
            let manager = q(self.query, "fieldManager")
                .ok_or_else(|| ApiError::bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"))?
                .to_string();
            let force = q_bool(self.query, "force");
            let mut applied: Value =
                yaml_serde::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            if !applied.is_object() {
                return Err(ApiError::bad_request("apply patch must be an object"));
            }
            match self.cluster.store.get(&self.gr(), self.ns(), self.name()) {
                None if sub.is_none() => {
                    self.normalize(&mut applied, false)?;
                    let mut obj = applied.clone();
                    patch::strip_directives(&mut obj);
                    if rt.namespaced {
                        self.check_namespace_for_write(self.ns())?;
                    }
                    admit_create(self.cluster, self.user, rt, &mut obj, self.query)?;
                    patch::record_apply_manager(&mut obj, &applied, &manager, &rt.api_version(), None);
                    if self.dry_run() {
                        return Ok(Some((obj, true)));
                    }
                    let created = self.cluster.store.create(&self.gr(), obj)?;
                    after_create(self.cluster, rt, &created)?;
                    return Ok(Some((created, true)));
                }
                None => return Err(ApiError::not_found(&self.gr(), self.name())),
                Some(current) => {
                    self.normalize(&mut applied, false)?;
                    let merged = patch::server_side_apply(&current, &applied, &manager, force, rt, sub)?;
                    let expected = applied["metadata"]["resourceVersion"].as_str().map(str::to_string);
                    let out = self.apply_update(&current, merged, sub, expected.as_deref(), &manager, "Apply")?;
                    return Ok(out.map(|o| (o, false)));
                }
            }
        }
        let current = self.get_current()?;
        let patch_doc: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        let patched = match ct {
            "application/json-patch+json" => patch::json_patch(&current, &patch_doc)?,
            "application/merge-patch+json" => patch::merge_patch(&current, &patch_doc),
            "application/strategic-merge-patch+json" => {
                if rt.schema.is_some() {
                    return Err(ApiError::unsupported_media(
                        "application/strategic-merge-patch+json (strategic merge patch is not supported for custom resources)",
                    ));
                }
                patch::strategic_merge(&current, &patch_doc)?
            }
            other => return Err(ApiError::unsupported_media(other)),
        };
        let mut patched = patched;
        if !patched.is_object() {
            return Err(ApiError::bad_request("patch produced a non-object"));
        }
        // A resourceVersion inside the patch is a precondition.
        let expected = patch_doc["metadata"]["resourceVersion"].as_str().map(str::to_string);
        self.normalize(&mut patched, false)?;
        let manager = self.field_manager("unknown");
        let out = self.apply_update(&current, patched, sub, expected.as_deref(), &manager, "Update")?;
        Ok(out.map(|o| (o, false)))
    }

    /// DELETE of one object.
    pub fn delete(&self, opts: &Value) -> ApiResult<Response> {
        self.guaranteed_update(|| self.delete_once(opts))
    }

    /// One attempt of [`Ctx::delete`] against the newest object; `Ok(None)` if another write overtook it.
    fn delete_once(&self, opts: &Value) -> ApiResult<Option<Response>> {
        let current = self.get_current()?;
        self.check_delete_preconditions(&current, opts)?;
        if self.dry_run() || opts["dryRun"].as_array().is_some_and(|a| !a.is_empty()) {
            return Ok(Some(json_response(StatusCode::OK, &current)));
        }
        let policy = opts["propagationPolicy"]
            .as_str()
            .or_else(|| q(self.query, "propagationPolicy"))
            .unwrap_or("Background")
            .to_string();
        let orphan = opts["orphanDependents"].as_bool().unwrap_or(false) || policy == "Orphan";
        let policy = if orphan { "Orphan".to_string() } else { policy };
        let (obj, gone) = match gc::delete(self.cluster, &self.rr.rt, &current, &policy) {
            Ok(r) => r,
            // The client's own preconditions were checked above: this one is the read of `current`.
            Err(e) if e.code == 409 => return Ok(None),
            Err(e) => return Err(e),
        };
        // handlers/delete.go: 200, and 202 only when the object stays and the client set
        // `orphanDependents: false` (kept for old clients); finalizers alone do not make it 202.
        let accepted = !gone && opts["orphanDependents"].as_bool() == Some(false);
        let code = if accepted { StatusCode::ACCEPTED } else { StatusCode::OK };
        Ok(Some(json_response(code, &obj)))
    }

    /// DeleteOptions preconditions, worded as `rest.BeforeDelete` (apiserver/pkg/registry/rest/delete.go)
    /// words them: a Conflict on the object's Kind (not its resource), naming both values.
    fn check_delete_preconditions(&self, current: &Value, opts: &Value) -> ApiResult<()> {
        let meta = &current["metadata"];
        let uid = meta["uid"].as_str().unwrap_or_default();
        let rv = meta["resourceVersion"].as_str().unwrap_or_default();
        let pre = &opts["preconditions"];
        let failure = if let Some(want) = pre["uid"].as_str().filter(|w| *w != uid) {
            format!(
                "the UID in the precondition ({want}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
            )
        } else if let Some(want) = pre["resourceVersion"].as_str().filter(|w| *w != rv) {
            format!(
                "the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({rv}). The object might have been modified"
            )
        } else {
            return Ok(());
        };
        Err(self.kind_conflict(&failure))
    }

    /// `NewConflict(GroupResource{Group, Resource: Kind}, name, err)`, as the registry raises it.
    fn kind_conflict(&self, failure: &str) -> ApiError {
        let rt = &self.rr.rt;
        let qualified = if rt.group.is_empty() {
            rt.kind.clone()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        let mut e = ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} \"{}\": {failure}",
                self.name()
            ),
        );
        let mut d = json!({ "name": self.name(), "kind": rt.kind });
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
        e.details = Some(d);
        e
    }

    /// DELETE of a collection (with selectors).
    pub fn delete_collection(&self, opts: &Value) -> ApiResult<Response> {
        let list = self.list()?;
        let policy = opts["propagationPolicy"].as_str().unwrap_or("Background").to_string();
        let mut out = Vec::new();
        if let Some(items) = list["items"].as_array() {
            for it in items {
                if !self.dry_run() {
                    // An item that changed since the list is deleted as it is now.
                    let (ns, name) = crate::store::ns_name(it);
                    let mut current = Some(it.clone());
                    for _ in 0..1000 {
                        let Some(cur) = current.take() else { break };
                        match gc::delete(self.cluster, &self.rr.rt, &cur, &policy) {
                            Ok((o, _)) => out.push(o),
                            Err(e) if e.code == 409 => current = self.cluster.store.get(&self.gr(), &ns, &name),
                            Err(e) => return Err(e),
                        }
                    }
                } else {
                    out.push(it.clone());
                }
            }
        }
        let mut l = list;
        l["items"] = json!(out);
        Ok(json_response(StatusCode::OK, &l))
    }
}

/// Creates an object as the admin through the full admission path (seeds, bootstrap, tests).
pub fn create_internal(cluster: &Arc<Cluster>, obj: Value) -> ApiResult<Value> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let (group, _version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = obj["kind"].as_str().unwrap_or_default();
    let rt = cluster.registry.by_kind(group, kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "no kind \"{kind}\" is registered for version \"{api_version}\""
        ))
    })?;
    let namespace = if rt.namespaced {
        Some(
            obj["metadata"]["namespace"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string(),
        )
    } else {
        None
    };
    let rr = ResourceRequest {
        rt,
        namespace,
        name: None,
        sub: None,
    };
    let admin = UserInfo::admin();
    let query = Query::new();
    let headers = HeaderMap::new();
    let ctx = Ctx {
        cluster,
        user: &admin,
        rr: &rr,
        query: &query,
        headers: &headers,
    };
    ctx.create(obj)
}

/// `validateOwnerReference` of apimachinery's `api/validation/objectmeta.go` (1.33 wording): every
/// reference names a version, kind, name and uid. The path has no index, as upstream's has none.
/// An empty uid matters most: the garbage collector would treat such an owner as absent.
fn owner_reference_errors(refs: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in refs.as_array().into_iter().flatten() {
        let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let api_version = field("apiVersion");
        // schema.ParseGroupVersion: "v1", "group/v1"; anything else has no version.
        let version = match api_version.split('/').collect::<Vec<_>>().as_slice() {
            [v] => v.to_string(),
            [_, v] => v.to_string(),
            _ => String::new(),
        };
        let mut check = |k: &str, value: &str, empty: bool, what: &str| {
            if empty {
                out.push((
                    format!("metadata.ownerReferences.{k}"),
                    format!("Invalid value: {}: {what} must not be empty", auth::go_quote(value)),
                ));
            }
        };
        check("apiVersion", &api_version, version.is_empty(), "version");
        check("kind", &field("kind"), field("kind").is_empty(), "kind");
        check("name", &field("name"), field("name").is_empty(), "name");
        check("uid", &field("uid"), field("uid").is_empty(), "uid");
    }
    out
}

/// The first Kubernetes minor release whose pod strategy sets `metadata.generation` (KEP-5067).
const POD_GENERATION_SINCE_MINOR: u64 = 33;

/// Whether the kind's registry strategy sets `metadata.generation` (1 on create, +1 on spec changes
/// and when deletion starts): custom resources, CRDs, workloads, Pods (since 1.33), Ingresses,
/// NetworkPolicies and PodDisruptionBudgets. ConfigMaps, Secrets, Services, RBAC objects and the
/// rest carry none (e.g. `pkg/registry/core/pod/strategy.go` PrepareForCreate sets it,
/// `pkg/registry/core/configmap/strategy.go` does not). Pods follow the reported version.
fn manages_generation(cluster: &Cluster, rt: &ResourceType) -> bool {
    if (rt.group.as_str(), rt.kind.as_str()) == ("", "Pod") {
        // The version was checked when the cluster was built; an unreadable one counts as current.
        return crate::exec::version_since(&cluster.config.version, POD_GENERATION_SINCE_MINOR).unwrap_or(true);
    }
    rt.schema.is_some()
        || matches!(
            (rt.group.as_str(), rt.kind.as_str()),
            ("apps", _)
                | ("batch", _)
                | ("networking.k8s.io", "Ingress" | "NetworkPolicy")
                | ("policy", "PodDisruptionBudget")
                | ("apiextensions.k8s.io", "CustomResourceDefinition")
        )
}

fn strip_meta_status(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

/// Admission for new objects: defaults, per-kind rules, CRD schemas, RBAC escalation checks.
pub fn admit_create(
    cluster: &Cluster,
    user: &UserInfo,
    rt: &ResourceType,
    obj: &mut Value,
    query: &Query,
) -> ApiResult<()> {
    if manages_generation(cluster, rt) {
        obj["metadata"]["generation"] = json!(1);
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("generation");
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "Pod") => {
            validate_pod(rt, obj)?;
            if obj["spec"]["serviceAccountName"].as_str().is_none_or(str::is_empty) {
                obj["spec"]["serviceAccountName"] = json!("default");
            }
            // SetDefaults_PodSpec: clients rely on it being there (kubectl debug dereferences it).
            if !obj["spec"]["securityContext"].is_object() {
                obj["spec"]["securityContext"] = json!({});
            }
            kubelet::admit_pod(cluster, obj);
        }
        ("", "Secret") => {
            normalize_secret(obj)?;
            if obj["type"] == "kubernetes.io/service-account-token" {
                auth::fill_legacy_token(cluster, obj)?;
            }
        }
        ("", "ConfigMap") => {
            if let Some(d) = obj.get("data").and_then(Value::as_object)
                && d.values().any(|v| !v.is_string())
            {
                return Err(ApiError::bad_request("ConfigMap data values must be strings"));
            }
        }
        ("", "Service") => {
            if obj["spec"]["clusterIP"].as_str().is_none_or(str::is_empty) && obj["spec"]["type"] != "ExternalName" {
                let n = cluster.store.current_rv();
                obj["spec"]["clusterIP"] = json!(format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1));
                obj["spec"]["clusterIPs"] = json!([obj["spec"]["clusterIP"].clone()]);
            }
            if obj["spec"]["type"].is_null() {
                obj["spec"]["type"] = json!("ClusterIP");
            }
        }
        // A POST names no object, so a name-scoped `escalate` grant does not apply (as upstream).
        ("rbac.authorization.k8s.io", _) => {
            let binding = rt.kind == "RoleBinding" || rt.kind == "ClusterRoleBinding";
            if binding {
                auth::rbac::default_binding(obj);
            }
            auth::check_rbac_write_request(cluster, user, &rt.group_resource(), None, obj)?;
            if binding {
                auth::rbac::validate_binding(&rt.kind, obj)?;
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd::admit_crd(cluster, obj)?,
        ("apps", kind) if workloads::is_workload("apps", kind) => {
            workloads::validate(kind, obj)?;
            if cluster.config.workload_pods {
                // The controller writes the status once it has looked at the pods.
                if let Some(m) = obj.as_object_mut() {
                    m.remove("status");
                }
            } else {
                simulate_workload_status(rt, obj);
            }
        }
        ("apps", _) | ("batch", _) => simulate_workload_status(rt, obj),
        ("", "Event") | ("events.k8s.io", "Event") => crate::events::validate_create(rt, obj)?,
        _ => {}
    }
    if rt.schema.is_some() {
        if rt.has_subresource("status")
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        let strict = q(query, "fieldValidation") == Some("Strict");
        crd::validate_custom(rt, obj, strict, None)?;
    }
    Ok(())
}

fn admit_update(
    cluster: &Cluster,
    user: &UserInfo,
    rt: &ResourceType,
    current: &Value,
    new: &mut Value,
    sub: Option<&str>,
    gc_only: bool,
) -> ApiResult<()> {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Secret") => {
            normalize_secret(new)?;
            if new["type"] != current["type"] && !current["type"].is_null() {
                return Err(ApiError::invalid(
                    &rt.kind,
                    "",
                    new["metadata"]["name"].as_str().unwrap_or_default(),
                    vec![("type".into(), "Invalid value: field is immutable".into())],
                ));
            }
        }
        ("", "Pod") if sub == Some(ephemeral::SUBRESOURCE) => ephemeral::admit_update(current, new)?,
        ("", "Pod") if sub.is_none() && ephemeral::plain_update_changes_them(current, new) => {
            return Err(ApiError::invalid(
                "Pod",
                "",
                new["metadata"]["name"].as_str().unwrap_or_default(),
                vec![("spec".into(), POD_UPDATE_FORBIDDEN.into())],
            ));
        }
        ("", "Pod") if sub.is_none() && new["spec"]["containers"] != current["spec"]["containers"] => {
            let strip = |v: &Value| -> Value {
                v["spec"]["containers"]
                    .as_array()
                    .map(|cs| {
                        cs.iter()
                            .map(|c| {
                                let mut c = c.clone();
                                if let Some(m) = c.as_object_mut() {
                                    m.remove("image");
                                }
                                c
                            })
                            .collect::<Vec<_>>()
                            .into()
                    })
                    .unwrap_or(Value::Null)
            };
            if strip(new) != strip(current) {
                return Err(ApiError::invalid(
                    "Pod",
                    "",
                    new["metadata"]["name"].as_str().unwrap_or_default(),
                    vec![("spec".into(), POD_UPDATE_FORBIDDEN.into())],
                ));
            }
        }
        ("rbac.authorization.k8s.io", _) => {
            let binding = rt.kind == "RoleBinding" || rt.kind == "ClusterRoleBinding";
            if binding {
                auth::rbac::default_binding(new);
            }
            // The policy-based storage checks escalation/bind inside the update, before validation:
            // a roleRef change the caller may not bind is 403, not 422 (rolebinding/policybased/storage.go).
            let name = new["metadata"]["name"].as_str().map(str::to_string);
            auth::rbac::check_update(
                &cluster.store,
                user,
                &rt.group_resource(),
                name.as_deref(),
                current,
                new,
                gc_only,
            )?;
            if binding {
                auth::rbac::validate_binding(&rt.kind, new)?;
                if new["roleRef"] != current["roleRef"] {
                    return Err(ApiError::invalid(
                        &rt.kind,
                        &rt.group,
                        new["metadata"]["name"].as_str().unwrap_or_default(),
                        vec![("roleRef".into(), "Invalid value: cannot change roleRef".into())],
                    ));
                }
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd::admit_crd(cluster, new)?,
        ("apps", kind) if sub.is_none() && workloads::is_workload("apps", kind) => {
            workloads::validate(kind, new)?;
            if cluster.config.workload_pods {
                // Status belongs to the status subresource and the controller.
                new["status"] = current["status"].clone();
            } else {
                simulate_workload_status(rt, new);
            }
        }
        ("apps", _) | ("batch", _) if sub.is_none() => simulate_workload_status(rt, new),
        ("", "Event") | ("events.k8s.io", "Event") => crate::events::validate_update(rt, current, new)?,
        _ => {}
    }
    if rt.schema.is_some() {
        crd::validate_custom(rt, new, false, Some(current))?;
    }
    Ok(())
}

fn after_create(cluster: &Arc<Cluster>, rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            let ns = obj["metadata"]["name"].as_str().unwrap_or_default();
            let sa =
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
            let _ = cluster.store.create(&GroupResource::new("", "serviceaccounts"), sa);
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd::established(cluster, obj)?,
        ("apps", kind) if workloads::is_workload("apps", kind) => cluster.workloads.poke(),
        _ => {}
    }
    Ok(())
}

/// `ValidatePodUpdate`'s refusal of a spec change it does not allow.
const POD_UPDATE_FORBIDDEN: &str = "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn after_update(cluster: &Arc<Cluster>, rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    if rt.group.is_empty() && rt.kind == "Pod" {
        ephemeral::sync(cluster, obj);
    }
    if workloads::is_workload(&rt.group, &rt.kind) {
        cluster.workloads.poke();
    }
    if rt.group == "apiextensions.k8s.io"
        && rt.kind == "CustomResourceDefinition"
        && !obj["metadata"]["deletionTimestamp"].is_string()
    {
        crd::register(cluster, obj)?;
    }
    Ok(())
}

fn validate_pod(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let containers = obj["spec"]["containers"].as_array();
    let mut causes = Vec::new();
    match containers {
        None => causes.push(("spec.containers".to_string(), "Required value".to_string())),
        Some(cs) if cs.is_empty() => causes.push(("spec.containers".to_string(), "Required value".to_string())),
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                if c["name"].as_str().is_none_or(|n| !is_dns_label(n)) {
                    causes.push((format!("spec.containers[{i}].name"), "Required value".into()));
                }
                if c["image"].as_str().is_none_or(str::is_empty) {
                    causes.push((format!("spec.containers[{i}].image"), "Required value".into()));
                }
            }
        }
    }
    // Ephemeral containers come only through their subresource (validation.go ValidatePodCreate).
    if obj["spec"]["ephemeralContainers"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        causes.push((
            "spec.ephemeralContainers".to_string(),
            "Forbidden: cannot be set on create".to_string(),
        ));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&rt.kind, "", name, causes))
    }
}

fn normalize_secret(obj: &mut Value) -> ApiResult<()> {
    if obj["type"].as_str().is_none_or(str::is_empty) {
        obj["type"] = json!("Opaque");
    }
    if let Some(sd) = obj.get("stringData").and_then(Value::as_object).cloned() {
        for (k, v) in sd {
            let s = v
                .as_str()
                .ok_or_else(|| ApiError::bad_request("stringData values must be strings"))?;
            obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
        }
        if let Some(m) = obj.as_object_mut() {
            m.remove("stringData");
        }
    }
    if let Some(d) = obj.get("data").and_then(Value::as_object) {
        for (k, v) in d {
            let ok = v
                .as_str()
                .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
            if !ok {
                return Err(ApiError::bad_request(format!("Secret data[{k}] is not valid base64")));
            }
        }
    }
    Ok(())
}

/// Workload controllers are not simulated; their status reports everything ready so `helm --wait`
/// and `kubectl rollout status` complete.
fn simulate_workload_status(rt: &ResourceType, obj: &mut Value) {
    let gen_ = obj["metadata"]["generation"].clone();
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    match rt.kind.as_str() {
        "Deployment" => {
            obj["status"] = json!({
                "observedGeneration": gen_, "replicas": replicas, "updatedReplicas": replicas,
                "readyReplicas": replicas, "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "lastUpdateTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "lastUpdateTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}
                ]
            });
        }
        "StatefulSet" => {
            obj["status"] = json!({"observedGeneration": gen_, "replicas": replicas, "readyReplicas": replicas, "currentReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas});
        }
        "DaemonSet" => {
            obj["status"] = json!({"observedGeneration": gen_, "currentNumberScheduled": 1, "desiredNumberScheduled": 1, "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1, "numberMisscheduled": 0});
        }
        "Job" if obj["status"]["succeeded"].is_null() => {
            obj["status"] = json!({"succeeded": 1, "startTime": now_rfc3339(), "completionTime": now_rfc3339(), "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": now_rfc3339(), "lastTransitionTime": now_rfc3339()}]});
        }
        _ => {}
    }
}

/// Admin-only test endpoints under `/kubesim/`: faults, logs, compaction.
async fn kubesim_admin(
    cluster: &Arc<Cluster>,
    user: &UserInfo,
    method: &Method,
    path: &str,
    query: &Query,
    body: Bytes,
) -> ApiResult<Response> {
    if !user.groups.iter().any(|g| g == "system:masters") {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!("forbidden: User \"{}\" cannot use the kubesim test API", user.username),
        ));
    }
    match (method.clone(), path) {
        (Method::GET, "/kubesim/faults") => Ok(json_response(
            StatusCode::OK,
            &serde_json::to_value(cluster.faults.get()).unwrap_or_default(),
        )),
        (Method::PUT, "/kubesim/faults") => {
            let cfg: crate::faults::FaultConfig = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid fault config: {e}")))?;
            cluster.faults.set(cfg);
            Ok(json_response(
                StatusCode::OK,
                &serde_json::to_value(cluster.faults.get()).unwrap_or_default(),
            ))
        }
        (Method::DELETE, "/kubesim/faults") => {
            cluster.faults.clear();
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::POST, "/kubesim/compact") => {
            cluster.store.compact();
            Ok(json_response(
                StatusCode::OK,
                &json!({"resourceVersion": cluster.store.current_rv().to_string()}),
            ))
        }
        (Method::POST, "/kubesim/logs") => {
            let ns = q(query, "namespace").unwrap_or("default");
            let pod = q(query, "pod").ok_or_else(|| ApiError::bad_request("pod is required"))?;
            let container = q(query, "container").ok_or_else(|| ApiError::bad_request("container is required"))?;
            let text = String::from_utf8_lossy(&body);
            for line in text.lines() {
                cluster.logs.append(ns, pod, container, line);
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let q = url_decode_pairs("command=sh&command=-c&command=echo%20hi%2Bx&tty=true");
        assert_eq!(q[2].1, "echo hi+x");
        assert_eq!(q.len(), 4);
        assert_eq!(pct_decode("a%2"), "a%2");
    }

    #[test]
    fn names() {
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("A"));
        assert!(!is_dns_label("a.b"));
        assert!(!is_dns_subdomain("-a"));
    }
}
