//! The terminal by role: which pods a request's grant reaches (its pod scope), what the terminal may open
//! under its role, and the `debug` role's ephemeral containers.
//!
//! `POST /api/v1/requests/{name}/debug` with `{"namespace", "pod", "targetContainer", "image"}` (the
//! requester only, while the request is Active, CSRF as every write) starts an ephemeral container
//! `janus-debug-<tag>-xxxxxx` from `image` next to `targetContainer` and answers `{"namespace", "pod",
//! "container"}` once it runs; `<tag>` is [`request_tag`] of the request's name. The terminal socket
//! then attaches to it: `/ws/terminal/{name}?namespace=&pod=&container=janus-debug-<tag>-xxxxxx&csrf=`
//! (under a `debug` role the socket attaches only to a debug container carrying this request's tag whose
//! image the role still allows, and to nothing else; under `exec` it opens a shell; under `logs` it is
//! refused).
//!
//! The image check is the web's: the request's token never leaves the server, so nobody can add an
//! ephemeral container with it except through this endpoint, which adds one only for an image that
//! [`rules::scope::image_allowed`] accepts (docs/security.md, "Debug containers").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use janus_api::AccessRequest;
use janus_api::access_request::PodSelector;
use janus_api::roles::{RoleConfig, TerminalMode};
use janus_api::rules::scope;
use janus_store::AuditKind;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit;
use crate::auth::{Authenticated, Identity};
use crate::error::WebError;
use crate::extract::{Json, Path};
use crate::requests;
use crate::state::AppState;
use crate::terminal::access;

/// The prefix of every debug container the web starts; the terminal attaches only to these.
pub const DEBUG_CONTAINER_PREFIX: &str = "janus-debug-";

/// Most debug containers one request may add to one pod: ephemeral containers can never be removed
/// from a pod, so each one is permanent clutter in its spec.
pub const MAX_DEBUG_CONTAINERS_PER_POD: usize = 5;

/// Longest image reference accepted (container image references in practice stay far below this).
pub const MAX_IMAGE_LEN: usize = 512;

/// A short stable tag of a request name: the first 6 hex digits of its SHA-256. It ties a debug
/// container to the request that started it, so another request's socket cannot attach to it.
pub fn request_tag(request: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(request.as_bytes())
        .iter()
        .take(3)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The name prefix of the debug containers the web starts for `request`: `janus-debug-<tag>-`.
pub fn request_prefix(request: &str) -> String {
    format!("{DEBUG_CONTAINER_PREFIX}{}-", request_tag(request))
}

/// The debug containers of `pod` that belong to `request` (its tag), with their images.
pub fn request_containers<'a>(pod: &'a Pod, request: &str) -> Vec<(&'a str, Option<&'a str>)> {
    let prefix = request_prefix(request);
    pod.spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .map(|l| {
            l.iter()
                .filter(|c| c.name.starts_with(&prefix))
                .map(|c| (c.name.as_str(), c.image.as_deref()))
                .collect()
        })
        .unwrap_or_default()
}

/// How long a new debug container may take to run before the web gives up waiting.
const DEBUG_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The configured role of a request; a role the configuration no longer lists is a conflict (the
/// controller ends such requests).
pub fn role_of<'a>(state: &'a AppState, ar: &AccessRequest) -> Result<&'a RoleConfig, WebError> {
    scope::role_of(&state.config.roles, &ar.spec).map_err(|e| WebError::Conflict(e.to_string()))
}

/// The label selector the grant in `namespace` follows: the controller's (`status.grants[].podSelector`,
/// a workload's resolved selector), else the request's own selector. `None`: every pod, or a workload
/// scope not resolved yet (the API server's Role still limits what the token reaches).
pub fn grant_selector(ar: &AccessRequest, namespace: &str) -> Option<String> {
    let granted = ar
        .status
        .as_ref()
        .and_then(|s| s.grants.iter().find(|g| g.namespace == namespace))
        .and_then(|g| g.pod_selector.clone());
    granted.or_else(|| {
        ar.spec
            .pod_scope
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .map(scope::selector_string)
    })
}

/// Whether a pod with `labels` is in the request's scope in `namespace`. A selector the web cannot read
/// back counts as not matching: the web never widens a scope.
pub fn in_scope(ar: &AccessRequest, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
    match grant_selector(ar, namespace) {
        None => true,
        Some(text) => parsed(&text).is_some_and(|s| scope::selector_matches(&s, labels)),
    }
}

fn parsed(text: &str) -> Option<PodSelector> {
    crate::service::scope::parse_selector(text).ok()
}

/// Reads a pod with the request's token and checks it is in scope: 404 when it does not exist, 403
/// when the API server refuses (outside a scoped grant's Role) or its labels are outside the scope.
pub async fn scoped_pod(
    client: &kube::Client,
    ar: &AccessRequest,
    namespace: &str,
    pod: &str,
) -> Result<Pod, WebError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let p = access::bounded(pods.get(pod)).await?.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => WebError::NotFound(format!("no pod {pod} in {namespace}")),
        kube::Error::Api(s) if s.code == 403 => {
            WebError::Forbidden("the request's access does not cover this pod".into())
        }
        kube::Error::Api(s) if s.code == 401 => {
            WebError::Conflict("the request's credentials are no longer valid".into())
        }
        other => WebError::from(other),
    })?;
    let labels = p.metadata.labels.clone().unwrap_or_default();
    if !in_scope(ar, namespace, &labels) {
        return Err(WebError::Forbidden(format!(
            "pod {pod} is not in this request's scope ({})",
            ar.spec
                .pod_scope
                .as_ref()
                .map_or_else(|| "all pods".into(), scope::describe)
        )));
    }
    Ok(p)
}

/// Body of `POST /api/v1/requests/{name}/debug`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DebugInput {
    /// A granted namespace.
    pub namespace: String,
    /// A pod in the request's scope.
    pub pod: String,
    /// The container to debug (the ephemeral container shares its process namespace).
    pub target_container: String,
    /// The image: one the role's `debugImages` allows (exact, or a prefix ending in `*`).
    pub image: String,
}

/// The debug container started.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DebugStarted {
    /// The namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The ephemeral container's name (`janus-debug-<tag>-…`): attach to it through the terminal socket.
    pub container: String,
}

/// `POST /api/v1/requests/{name}/debug`.
#[utoipa::path(post, path = "/api/v1/requests/{name}/debug", tag = "terminal", summary = "Start a debug container (debug roles)",
    description = "Adds an ephemeral container `janus-debug-…` from an allowed image (the role's debugImages) next to a \
        container of a pod in the request's scope, with the request's own token, and answers once it runs (at most \
        30 s). The requester only, while the request is active. A refused image is audited (debug.refused) and \
        nothing is patched; a started container is audited (debug.started). Attach to it through the terminal \
        socket with container=<name>.",
    params(("name" = String, Path, description = "AccessRequest name")),
    request_body = DebugInput,
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 201, description = "The debug container runs", body = DebugStarted),
        (status = 401, description = "Not logged in", body = crate::api::openapi::ErrorBody),
        (status = 403, description = "Not the requester, CSRF, or the pod is outside the request's access or scope", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "Unknown request (or not the caller's), or no such pod", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "The request is not active, its role starts no debug containers, the pod already has 5 of this request's debug containers, or its credentials no longer work", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "Image not allowed or longer than 512 characters (`field`: image), namespace not granted, or bad pod or container", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "The cluster's API is unavailable, or the container did not start in time", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn start(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(name): Path<String>,
    Json(input): Json<DebugInput>,
) -> Result<Response, WebError> {
    // Visibility first (404 for what the caller may not know), then: the requester's own access only.
    // An admin's terminal access to others' requests covers watching shells, not adding containers.
    let ar = requests::get_visible(&state, &id, &name).await?;
    if !requests::is_requester(&id, &ar) {
        return Err(WebError::Forbidden(
            "only the requester can start debug containers".into(),
        ));
    }
    let role = role_of(&state, &ar)?;
    if role.terminal != TerminalMode::Debug {
        return Err(WebError::Conflict(format!(
            "role {} starts no debug containers",
            role.name
        )));
    }
    let valid = janus_api::names::is_dns_label(&input.namespace)
        && janus_api::names::is_dns_subdomain(&input.pod)
        && janus_api::names::is_dns_label(&input.target_container);
    if !valid {
        return Err(WebError::invalid("pod", "invalid namespace, pod or container name"));
    }
    // Capped before anything else sees it: a megabyte "image" would otherwise land in the audit log.
    if input.image.len() > MAX_IMAGE_LEN {
        return Err(WebError::invalid(
            "image",
            format!("the image reference is longer than {MAX_IMAGE_LEN} characters"),
        ));
    }
    let image = input.image.trim().to_string();
    if !scope::image_allowed(role, &image) {
        audit_refused(&state, &id, &ar, &input, &image).await;
        return Err(WebError::invalid(
            "image",
            format!(
                "image {image:?} is not allowed for role {}; allowed: {}",
                role.name,
                role.debug_images.join(", ")
            ),
        ));
    }
    let (ar, client) = access::client_for(&state, &id, &name, &input.namespace).await?;
    let pod = scoped_pod(&client, &ar, &input.namespace, &input.pod).await?;
    let regular: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    if !regular.contains(&input.target_container) {
        return Err(WebError::invalid(
            "targetContainer",
            format!(
                "pod {} has no container {}; choose one of: {}",
                input.pod,
                input.target_container,
                regular.join(", ")
            ),
        ));
    }
    if request_containers(&pod, &name).len() >= MAX_DEBUG_CONTAINERS_PER_POD {
        return Err(WebError::Conflict(format!(
            "pod {} already has {MAX_DEBUG_CONTAINERS_PER_POD} debug containers of this request; attach to one of them",
            input.pod
        )));
    }
    let container = format!("{}{}", request_prefix(&name), suffix());
    // What `kubectl debug` sends (staging/src/k8s.io/kubectl/pkg/cmd/debug/debug.go): a strategic-merge
    // patch of the ephemeralcontainers subresource adding one container; no securityContext of its own,
    // so the pod's and the namespace's Pod Security level apply unchanged.
    let patch = json!({"spec": {"ephemeralContainers": [{
        "name": container,
        "image": image,
        "targetContainerName": input.target_container,
        "stdin": true,
        "tty": true,
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }]}});
    let pods: Api<Pod> = Api::namespaced(client, &input.namespace);
    access::bounded(pods.patch_ephemeral_containers(&input.pod, &PatchParams::default(), &Patch::Strategic(&patch)))
        .await?
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 403 => {
                WebError::Forbidden("the API server refused the debug container for this request's access".into())
            }
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => WebError::invalid(
                "pod",
                format!("the API server refused the debug container: {}", s.message),
            ),
            other => WebError::from(other),
        })?;
    wait_running(&pods, &input.pod, &container).await?;
    audit::record(
        &state,
        AuditKind::DebugContainerStarted,
        &id.email,
        Some(&name),
        Some(&ar.spec.cluster),
        std::slice::from_ref(&input.namespace),
        json!({"pod": input.pod, "container": container, "targetContainer": input.target_container, "image": image}),
    )
    .await;
    tracing::info!(request = %name, namespace = %input.namespace, pod = %input.pod, %container, %image, "debug container started");
    Ok((
        axum::http::StatusCode::CREATED,
        Json(DebugStarted {
            namespace: input.namespace,
            pod: input.pod,
            container,
        }),
    )
        .into_response())
}

async fn audit_refused(state: &AppState, id: &Identity, ar: &AccessRequest, input: &DebugInput, image: &str) {
    audit::record(
        state,
        AuditKind::DebugImageRefused,
        &id.email,
        ar.metadata.name.as_deref(),
        Some(&ar.spec.cluster),
        std::slice::from_ref(&input.namespace),
        json!({"pod": input.pod, "targetContainer": input.target_container, "image": image}),
    )
    .await;
}

/// Six random lowercase letters and digits.
fn suffix() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let bytes: [u8; 6] = rand::random();
    bytes
        .iter()
        .map(|b| char::from(CHARS[usize::from(*b) % CHARS.len()]))
        .collect()
}

/// Waits until the ephemeral container runs (its status says `running`), reading the pod with the
/// request's token; a container that terminates or cannot start is reported with the kubelet's reason.
async fn wait_running(pods: &Api<Pod>, pod: &str, container: &str) -> Result<(), WebError> {
    let deadline = Instant::now() + DEBUG_START_TIMEOUT;
    loop {
        let p = access::bounded(pods.get(pod)).await?.map_err(WebError::from)?;
        let status = p
            .status
            .as_ref()
            .and_then(|s| s.ephemeral_container_statuses.as_ref())
            .and_then(|l| l.iter().find(|c| c.name == container))
            .and_then(|c| c.state.clone());
        if let Some(state) = status {
            if state.running.is_some() {
                return Ok(());
            }
            if let Some(t) = state.terminated {
                return Err(WebError::Conflict(format!(
                    "debug container {container} ended at once: {}",
                    t.reason.unwrap_or_else(|| format!("exit code {}", t.exit_code))
                )));
            }
            if let Some(w) = state.waiting
                && matches!(
                    w.reason.as_deref(),
                    Some("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "CreateContainerError")
                )
            {
                return Err(WebError::Conflict(format!(
                    "debug container {container} cannot start: {}",
                    w.reason.unwrap_or_default()
                )));
            }
        }
        if Instant::now() >= deadline {
            return Err(WebError::Unavailable(format!(
                "debug container {container} did not start within {} s",
                DEBUG_START_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debug container names are valid container names with the prefix of their request, which differs
    /// between requests and stays the same for one.
    #[test]
    fn debug_container_names() {
        let long = "a".repeat(253);
        for request in ["alice-1a2b3", "bob-9z8y7", long.as_str()] {
            assert_eq!(request_tag(request), request_tag(request));
            for _ in 0..100 {
                let name = format!("{}{}", request_prefix(request), suffix());
                assert!(janus_api::names::is_dns_label(&name), "{name}");
                assert_eq!(name.len(), DEBUG_CONTAINER_PREFIX.len() + 6 + 1 + 6);
            }
        }
        assert_ne!(request_prefix("alice-1a2b3"), request_prefix("bob-9z8y7"));
    }

    /// A pod is in scope when the grant's selector matches its labels; an unreadable selector matches
    /// nothing (never widening), and no scope matches every pod.
    #[test]
    fn scope_of_a_grant() {
        use janus_api::access_request::{AccessRequestSpec, AccessRequestStatus, Grant};
        let spec = AccessRequestSpec::new("a@x.io", "c", vec!["ns".to_string()], "r", 600);
        let mut ar = AccessRequest::new("r", spec);
        let labels = |v: &str| -> BTreeMap<String, String> { [("app".to_string(), v.to_string())].into() };
        assert!(in_scope(&ar, "ns", &labels("x")));
        ar.status = Some(AccessRequestStatus {
            grants: vec![Grant {
                namespace: "ns".into(),
                service_account: "sa".into(),
                role_binding: "rb".into(),
                token_secret: "s".into(),
                scoped_role: Some("sa".into()),
                pod_selector: Some("app=checkout".into()),
            }],
            ..Default::default()
        });
        assert!(in_scope(&ar, "ns", &labels("checkout")));
        assert!(!in_scope(&ar, "ns", &labels("other")));
        if let Some(st) = ar.status.as_mut() {
            st.grants[0].pod_selector = Some("app in (".into());
        }
        assert!(!in_scope(&ar, "ns", &labels("checkout")));
    }
}
