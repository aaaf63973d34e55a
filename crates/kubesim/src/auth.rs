//! Authentication (admin token, ServiceAccount JWTs, legacy token Secrets) and RBAC authorization.
// CONTRACT STUB: replaced by the full implementation (helper-2). Signatures are the contract.

use serde_json::Value;

use crate::errors::{ApiError, ApiResult};
use crate::resources::GroupResource;
use crate::Cluster;

/// An authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name (`system:serviceaccount:ns:name` for ServiceAccounts).
    pub username: String,
    /// UID (the ServiceAccount's uid for its tokens).
    pub uid: String,
    /// Groups, always including `system:authenticated`.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The kubesim admin identity (`system:masters`).
    pub fn admin() -> Self {
        Self { username: "kubesim-admin".into(), uid: String::new(), groups: vec!["system:masters".into(), "system:authenticated".into()] }
    }
}

/// What a request wants to do, for authorization.
#[derive(Debug, Clone, Default)]
pub struct Attributes<'a> {
    /// get, list, watch, create, update, patch, delete, deletecollection, bind, escalate, impersonate…
    pub verb: &'a str,
    /// API group, "" for core.
    pub group: &'a str,
    /// Plural resource; empty for non-resource requests.
    pub resource: &'a str,
    /// Subresource (`exec`, `status`, `token`, `log`…).
    pub subresource: Option<&'a str>,
    /// Namespace of the request, None for cluster scope.
    pub namespace: Option<&'a str>,
    /// Object name if the request names one.
    pub name: Option<&'a str>,
    /// For non-resource requests: the URL path (`/version`, `/api`…).
    pub path: Option<&'a str>,
}

/// Signs and verifies ServiceAccount tokens (RS256).
pub struct TokenIssuer;

impl TokenIssuer {
    /// A fresh RSA key.
    pub fn generate() -> anyhow::Result<Self> { Ok(Self) }
}

/// Who is calling. 401 for a missing, malformed, expired or revoked token.
pub fn authenticate(cluster: &Cluster, headers: &http::HeaderMap) -> ApiResult<UserInfo> {
    let _ = cluster; let _ = headers; Ok(UserInfo::admin())
}

/// Whether RBAC allows the request.
pub fn authorize(cluster: &Cluster, user: &UserInfo, attrs: &Attributes<'_>) -> bool {
    let _ = (cluster, user, attrs); true
}

/// The 403 for a refused request, in the wording of the real API server.
pub fn forbidden(user: &UserInfo, attrs: &Attributes<'_>) -> ApiError {
    ApiError::forbidden(&user.username, attrs.verb, &GroupResource::new(attrs.group, attrs.resource), attrs.subresource, attrs.name, attrs.namespace)
}

/// Escalation prevention for writes of Roles/ClusterRoles and the `bind` check for bindings.
pub fn check_rbac_write(cluster: &Cluster, user: &UserInfo, gr: &GroupResource, obj: &Value) -> ApiResult<()> {
    let _ = (cluster, user, gr, obj); Ok(())
}

/// `POST .../serviceaccounts/{name}/token`.
pub fn token_request(cluster: &Cluster, ns: &str, sa: &str, body: &Value) -> ApiResult<Value> {
    let _ = (cluster, ns, sa, body); Err(ApiError::internal("not yet"))
}

/// Fills `data.token`, `data.ca.crt`, `data.namespace` of a `kubernetes.io/service-account-token` Secret.
pub fn fill_legacy_token(cluster: &Cluster, secret: &mut Value) -> ApiResult<()> {
    let _ = (cluster, secret); Ok(())
}

/// SubjectAccessReview, SelfSubjectAccessReview, LocalSubjectAccessReview, SelfSubjectRulesReview,
/// TokenReview and SelfSubjectReview.
pub fn review(cluster: &Cluster, user: &UserInfo, kind: &str, namespace: Option<&str>, body: Value) -> ApiResult<Value> {
    let _ = (cluster, user, kind, namespace); Ok(body)
}
