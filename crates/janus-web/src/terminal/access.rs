//! Who may use a request's access from the browser, and the Kubernetes client that carries the request's
//! own token (never the web ServiceAccount's identity).

use janus_api::AccessRequest;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::auth::Identity;
use crate::error::WebError;
use crate::requests;
use crate::state::AppState;

/// Checks that `id` may open terminals on `name` in `namespace` and returns the request and a client of
/// the target cluster authenticated with the request's token for that namespace.
pub async fn client_for(
    state: &AppState,
    id: &Identity,
    name: &str,
    namespace: &str,
) -> Result<(AccessRequest, kube::Client), WebError> {
    let ar = requests::get_visible(state, id, name).await?;
    let allowed = requests::actions(state, id, &ar);
    if !allowed.terminal {
        let own = requests::is_requester(id, &ar);
        return Err(if own || id.is_admin && state.config.web.admin_terminal_access {
            WebError::Conflict("the request is not active".into())
        } else {
            WebError::Forbidden("only the requester can use this access".into())
        });
    }
    let grant = ar
        .status
        .as_ref()
        .and_then(|s| s.grants.iter().find(|g| g.namespace == namespace))
        .ok_or_else(|| {
            WebError::invalid(
                "namespace",
                format!("namespace {namespace:?} is not granted by this request"),
            )
        })?;
    let secrets: Api<Secret> = Api::namespaced(state.client.clone(), &state.config.namespace);
    let secret = secrets
        .get_opt(&grant.token_secret)
        .await?
        .ok_or_else(|| WebError::Conflict("the credentials of this request are gone".into()))?;
    let field = |k: &str| -> Option<String> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    let token =
        field("token").ok_or_else(|| WebError::Conflict("the credentials of this request are incomplete".into()))?;
    let server =
        field("server").ok_or_else(|| WebError::Conflict("the credentials of this request are incomplete".into()))?;
    let ca = field("ca").unwrap_or_default();
    let client = token_client(&server, &ca, token).await?;
    Ok((ar, client))
}

/// A client for `server` authenticated with a bearer token.
pub async fn token_client(server: &str, ca_pem: &str, token: String) -> Result<kube::Client, WebError> {
    use base64::Engine as _;
    let mut cluster = serde_json::json!({"server": server});
    if !ca_pem.is_empty() {
        cluster["certificate-authority-data"] = base64::engine::general_purpose::STANDARD.encode(ca_pem).into();
    }
    let kc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "target", "cluster": cluster}],
        "users": [{"name": "request", "user": {"token": token}}],
        "contexts": [{"name": "target", "context": {"cluster": "target", "user": "request"}}],
        "current-context": "target",
    });
    let kc: kube::config::Kubeconfig =
        serde_json::from_value(kc).map_err(|_| WebError::Internal("cannot build the request's kubeconfig".into()))?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|_| WebError::Unavailable("the target cluster's address or CA is not usable".into()))?;
    // No read timeout: the same client carries exec and log-follow streams, quiet for minutes by nature
    // (they have their own ping and idle rules). Short calls are bounded by [`bounded`] instead.
    cfg.connect_timeout = Some(CONNECT_TIMEOUT);
    cfg.write_timeout = Some(SHORT_CALL_TIMEOUT);
    kube::Client::try_from(cfg).map_err(|_| WebError::Unavailable("cannot connect to the target cluster".into()))
}

/// Establishing a connection to a target cluster.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest a short call to a target cluster (a list, the opening of an exec or log stream) may take:
/// a stalled API server must not hold a browser request, and its connection slot, forever.
pub const SHORT_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs a short call to a target cluster with [`SHORT_CALL_TIMEOUT`].
pub async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<Result<T, kube::Error>, WebError> {
    tokio::time::timeout(SHORT_CALL_TIMEOUT, call)
        .await
        .map_err(|_| WebError::Unavailable("the target cluster did not answer in time; try again shortly".into()))
}
