//! Authentication (admin token, ServiceAccount JWTs, legacy token Secrets) and RBAC authorization,
//! with the semantics and the wording of the real API server.
//!
//! - [`tokens`]: the RS256 signing key, TokenRequest (with the optional lifetime cap), legacy token
//!   Secrets and bearer-token authentication (bound to the ServiceAccount's uid; with the real server's
//!   clock leeway and its cache of successful authentications, so a deletion revokes within seconds,
//!   not at once).
//! - [`rbac`]: RBAC evaluation (bindings, aggregated ClusterRoles, the built-in bootstrap policy) and
//!   escalation prevention on writes of roles and bindings.
//! - [`reviews`]: SubjectAccessReview and its relatives, TokenReview and SelfSubjectReview.
//!
//! The functions taking a [`Cluster`] are the API layer's entry points; each one delegates to a function
//! over a [`Ctx`] (store, issuer, settings), so every piece is testable without a whole cluster.

pub mod rbac;
pub mod reviews;
pub mod tokens;

use serde_json::{Value, json};

use crate::Cluster;
use crate::errors::{ApiError, ApiResult};
use crate::resources::GroupResource;
use crate::store::Store;

pub use rbac::{Decision, PolicyRule, bootstrap_policy};
pub use tokens::{
    AuthCache, AuthError, Claims, ISSUER, KubernetesClaims, LEGACY_ISSUER, ObjectRef, TokenIssuer, TokenResponse,
};

/// The group whose members may do anything (Kubernetes' privileged group, checked before RBAC).
pub const SYSTEM_MASTERS: &str = "system:masters";
/// The group every authenticated identity carries.
pub const SYSTEM_AUTHENTICATED: &str = "system:authenticated";

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
        Self {
            username: "kubesim-admin".into(),
            uid: String::new(),
            groups: vec![SYSTEM_MASTERS.into(), SYSTEM_AUTHENTICATED.into()],
        }
    }

    /// The identity of a ServiceAccount token: `system:serviceaccount:NS:NAME` in the groups
    /// `system:serviceaccounts`, `system:serviceaccounts:NS` and `system:authenticated`.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> Self {
        Self {
            username: service_account_username(namespace, name),
            uid: uid.to_string(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                SYSTEM_AUTHENTICATED.into(),
            ],
        }
    }

    /// Whether the identity is in `system:masters`, which bypasses RBAC and escalation checks.
    pub fn is_privileged(&self) -> bool {
        self.groups.iter().any(|g| g == SYSTEM_MASTERS)
    }
}

/// `system:serviceaccount:NS:NAME`, the user name of a ServiceAccount.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
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

impl Attributes<'_> {
    /// A resource request names a resource; a non-resource request has only a path.
    pub fn is_resource_request(&self) -> bool {
        !(self.resource.is_empty() && self.path.is_some())
    }
}

/// What the auth functions need from a cluster, borrowed; tests build one around a bare [`Store`].
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The objects (ServiceAccounts, Secrets, Pods, RBAC objects…).
    pub store: &'a Store,
    /// The ServiceAccount token signer.
    pub tokens: &'a TokenIssuer,
    /// The admin bearer token.
    pub admin_token: &'a str,
    /// Smallest `expirationSeconds` a TokenRequest may ask for.
    pub min_token_expiration_seconds: i64,
    /// `--service-account-max-token-expiration`: longer TokenRequests are shortened to it, with a warning.
    pub max_token_expiration_seconds: Option<i64>,
    /// Clock skew tolerated on token times and on deletion timestamps of bound objects.
    pub token_leeway_seconds: i64,
    /// How long a successful token authentication is remembered (zero: not at all).
    pub auth_cache_ttl: std::time::Duration,
}

impl<'a> Ctx<'a> {
    /// Borrows what auth needs from a cluster.
    pub fn of(cluster: &'a Cluster) -> Self {
        Self {
            store: &cluster.store,
            tokens: &cluster.tokens,
            admin_token: &cluster.config.admin_token,
            min_token_expiration_seconds: cluster.config.min_token_expiration_seconds,
            max_token_expiration_seconds: cluster.config.max_token_expiration_seconds,
            token_leeway_seconds: cluster.config.token_leeway_seconds,
            auth_cache_ttl: cluster.config.auth_cache_ttl,
        }
    }
}

/// Who is calling. 401 for a missing, malformed, expired or revoked token.
pub fn authenticate(cluster: &Cluster, headers: &http::HeaderMap) -> ApiResult<UserInfo> {
    authenticate_headers(&Ctx::of(cluster), headers)
}

/// [`authenticate`] over a [`Ctx`]: `Authorization: Bearer …` (or, for WebSocket upgrades, the
/// `base64url.bearer.authorization.k8s.io.…` subprotocol), checked against the API server's audience.
pub fn authenticate_headers(ctx: &Ctx<'_>, headers: &http::HeaderMap) -> ApiResult<UserInfo> {
    let Some(token) = tokens::bearer_token(headers) else {
        return Err(ApiError::unauthorized());
    };
    match tokens::authenticate_token(ctx, &token, &[ISSUER.to_string()]) {
        Ok((user, _)) => Ok(user),
        Err(e) => {
            // The reason never contains the token itself, so it is safe to log.
            tracing::debug!(reason = %e, "bearer token rejected");
            Err(ApiError::unauthorized())
        }
    }
}

/// Whether RBAC allows the request.
pub fn authorize(cluster: &Cluster, user: &UserInfo, attrs: &Attributes<'_>) -> bool {
    rbac::decide(&cluster.store, user, attrs).allowed
}

/// The authorizer's full answer: allowed or not, and the reason (`RBAC: allowed by …`, or the
/// resolution errors of a refusal, which the real server appends to its 403 message).
pub fn decide(cluster: &Cluster, user: &UserInfo, attrs: &Attributes<'_>) -> Decision {
    rbac::decide(&cluster.store, user, attrs)
}

/// The 403 for a refused request, in the wording of the real API server.
pub fn forbidden(user: &UserInfo, attrs: &Attributes<'_>) -> ApiError {
    forbidden_because(user, attrs, "")
}

/// The 403 for a refused request with the authorizer's reason appended (`…: RBAC: clusterrole… not
/// found`), as the real API server words it when a binding points at a missing role.
pub fn forbidden_because(user: &UserInfo, attrs: &Attributes<'_>, reason: &str) -> ApiError {
    let mut e = if attrs.is_resource_request() {
        ApiError::forbidden(
            &user.username,
            attrs.verb,
            &GroupResource::new(attrs.group, attrs.resource),
            attrs.subresource.filter(|s| !s.is_empty()),
            attrs.name.filter(|s| !s.is_empty()),
            attrs.namespace.filter(|s| !s.is_empty()),
        )
    } else {
        let mut e = ApiError::new(
            403,
            "Forbidden",
            format!(
                "forbidden: User {} cannot {} path {}",
                go_quote(&user.username),
                attrs.verb,
                go_quote(attrs.path.unwrap_or_default())
            ),
        );
        e.details = Some(json!({}));
        e
    };
    if !reason.is_empty() {
        e.message = format!("{}: {reason}", e.message);
    }
    e
}

/// Escalation prevention for writes of Roles/ClusterRoles and the `bind` check for bindings.
///
/// The `escalate` check uses the object's name, as for an update or apply; a POST to the collection
/// carries no name in the real server, see [`check_rbac_write_request`].
pub fn check_rbac_write(cluster: &Cluster, user: &UserInfo, gr: &GroupResource, obj: &Value) -> ApiResult<()> {
    let name = obj["metadata"]["name"].as_str().filter(|n| !n.is_empty());
    rbac::check_write(&cluster.store, user, gr, name, obj)
}

/// [`check_rbac_write`] with the name from the request URL (`None` for a POST to the collection),
/// which is what the real server authorizes `escalate` against.
pub fn check_rbac_write_request(
    cluster: &Cluster,
    user: &UserInfo,
    gr: &GroupResource,
    request_name: Option<&str>,
    obj: &Value,
) -> ApiResult<()> {
    rbac::check_write(&cluster.store, user, gr, request_name, obj)
}

/// `POST .../serviceaccounts/{name}/token`: the TokenRequest and its warnings (see [`warning_header`]).
pub fn token_request(cluster: &Cluster, ns: &str, sa: &str, body: &Value) -> ApiResult<TokenResponse> {
    tokens::token_request(&Ctx::of(cluster), ns, sa, body)
}

/// The value of an HTTP `Warning` header as the API server writes it: code 299, agent `-`, the text
/// quoted (`299 - "text"`; `NewWarningHeader` in `staging/src/k8s.io/apimachinery/pkg/util/net/http.go`).
pub fn warning_header(text: &str) -> String {
    format!("299 - {}", go_quote(text))
}

/// Fills `data.token`, `data.namespace` and the uid annotation of a `kubernetes.io/service-account-token`
/// Secret (`data.ca.crt` is the API layer's: auth does not know the CA).
pub fn fill_legacy_token(cluster: &Cluster, secret: &mut Value) -> ApiResult<()> {
    tokens::fill_legacy_token(&Ctx::of(cluster), secret)
}

/// SubjectAccessReview, SelfSubjectAccessReview, LocalSubjectAccessReview, SelfSubjectRulesReview,
/// TokenReview and SelfSubjectReview.
pub fn review(
    cluster: &Cluster,
    user: &UserInfo,
    kind: &str,
    namespace: Option<&str>,
    body: Value,
) -> ApiResult<Value> {
    reviews::review(&Ctx::of(cluster), user, kind, namespace, body)
}

/// A string quoted as Go's `%q` does, for messages that must match the real server's byte for byte.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A list formatted as Go's `%q` formats a `[]string`: `["a" "b"]`.
pub(crate) fn go_quote_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| go_quote(s.as_ref())).collect();
    format!("[{}]", inner.join(" "))
}

/// Errors joined as Kubernetes' `utilerrors.NewAggregate(...).Error()`: one alone, several in brackets,
/// duplicates dropped.
pub(crate) fn aggregate_errors(errors: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    match seen.as_slice() {
        [one] => (*one).to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Shared fixtures of the auth tests: one RSA key for all (generation is the slow part), a store
/// helper and header builders.
#[cfg(test)]
pub(crate) mod testutil {
    use std::sync::OnceLock;

    use serde_json::{Value, json};

    use super::{Ctx, TokenIssuer, UserInfo};
    use crate::resources::GroupResource;
    use crate::store::Store;

    pub const ADMIN: &str = "kubesim-admin-test-token";

    pub fn issuer() -> &'static TokenIssuer {
        static I: OnceLock<TokenIssuer> = OnceLock::new();
        I.get_or_init(|| TokenIssuer::generate().expect("RSA key"))
    }

    pub fn ctx(store: &Store) -> Ctx<'_> {
        Ctx {
            store,
            tokens: issuer(),
            admin_token: ADMIN,
            min_token_expiration_seconds: 600,
            max_token_expiration_seconds: None,
            // Unit tests of exact expiry and immediate revocation; the leeway and the cache have tests
            // of their own that set them.
            token_leeway_seconds: 0,
            auth_cache_ttl: std::time::Duration::ZERO,
        }
    }

    pub fn put(store: &Store, group: &str, resource: &str, obj: Value) -> Value {
        store.create(&GroupResource::new(group, resource), obj).expect("create")
    }

    pub fn del(store: &Store, group: &str, resource: &str, ns: &str, name: &str) {
        store
            .remove(&GroupResource::new(group, resource), ns, name)
            .expect("object to delete");
    }

    pub fn sa(store: &Store, ns: &str, name: &str) -> Value {
        put(
            store,
            "",
            "serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"namespace": ns, "name": name}}),
        )
    }

    pub fn pod(store: &Store, ns: &str, name: &str, sa: &str) -> Value {
        put(
            store,
            "",
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": ns, "name": name},
                   "spec": {"serviceAccountName": sa, "containers": [{"name": "c", "image": "busybox"}]}}),
        )
    }

    pub fn uid(obj: &Value) -> String {
        obj["metadata"]["uid"].as_str().expect("uid").to_string()
    }

    pub fn user(name: &str, groups: &[&str]) -> UserInfo {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        groups.push("system:authenticated".into());
        UserInfo {
            username: name.into(),
            uid: String::new(),
            groups,
        }
    }

    pub fn bearer(token: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        h
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn go_quoting_matches_go() {
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(go_quote_list(&["system:a", "b"]), r#"["system:a" "b"]"#);
        assert_eq!(go_quote_list::<&str>(&[]), "[]");
        assert_eq!(aggregate_errors(&["x".into()]), "x");
        assert_eq!(aggregate_errors(&["x".into(), "y".into(), "x".into()]), "[x, y]");
    }

    #[test]
    fn forbidden_messages_use_upstream_wording() {
        let u = user("jane", &[]);
        let a = Attributes {
            verb: "create",
            resource: "pods",
            subresource: Some("exec"),
            namespace: Some("ns"),
            name: Some("p"),
            ..Default::default()
        };
        let e = forbidden(&u, &a);
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            r#"pods "p" is forbidden: User "jane" cannot create resource "pods/exec" in API group "" in the namespace "ns""#
        );
        let a = Attributes {
            verb: "get",
            path: Some("/metrics"),
            ..Default::default()
        };
        assert_eq!(
            forbidden(&u, &a).message,
            r#"forbidden: User "jane" cannot get path "/metrics""#
        );
        let a = Attributes {
            verb: "list",
            group: "apps",
            resource: "deployments",
            ..Default::default()
        };
        let e = forbidden_because(&u, &a, "RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found");
        assert_eq!(
            e.message,
            "deployments.apps is forbidden: User \"jane\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found"
        );
    }

    #[test]
    fn warning_headers_are_framed_as_the_api_server_frames_them() {
        assert_eq!(
            warning_header("requested expiration of 7200 seconds shortened to 3600 seconds"),
            r#"299 - "requested expiration of 7200 seconds shortened to 3600 seconds""#
        );
        assert_eq!(warning_header(r#"a "b""#), r#"299 - "a \"b\"""#);
    }

    #[test]
    fn headers_without_a_valid_bearer_token_are_401() {
        let store = Store::new();
        let c = ctx(&store);
        assert_eq!(authenticate_headers(&c, &http::HeaderMap::new()).unwrap_err().code, 401);
        let mut basic = http::HeaderMap::new();
        basic.insert(http::header::AUTHORIZATION, "Basic YTpi".parse().unwrap());
        assert_eq!(authenticate_headers(&c, &basic).unwrap_err().code, 401);
        let mut empty = http::HeaderMap::new();
        empty.insert(http::header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(authenticate_headers(&c, &empty).unwrap_err().code, 401);
        let e = authenticate_headers(&c, &bearer("not-a-token")).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (401, "Unauthorized"));
        assert_eq!(authenticate_headers(&c, &bearer(ADMIN)).unwrap(), UserInfo::admin());
        let mut lower = http::HeaderMap::new();
        lower.insert(http::header::AUTHORIZATION, format!("bearer {ADMIN}").parse().unwrap());
        assert!(authenticate_headers(&c, &lower).unwrap().is_privileged());
    }
}
