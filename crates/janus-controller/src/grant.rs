//! Creating and removing a request's credentials: ServiceAccount, RoleBinding (to the access role's
//! ClusterRole, or to the namespaced Role of a pod-scoped grant, see [`crate::scope`]) and TokenRequest
//! on the target cluster, and the token Secret in the Janus namespace of the central cluster.
//!
//! Every step is idempotent and adopts what a crashed earlier attempt created (by label). Cleanup finds
//! objects by label across all namespaces, never by recomputing names.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use janus_api::roles::RoleConfig;
use janus_api::rules::policy::NamespaceInfo;
use janus_api::{AccessRequest, Grant, MANAGED_BY, MANAGED_BY_LABEL, REQUEST_LABEL, names};
use k8s_openapi::ByteString;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Resource, ResourceExt};

use crate::clusters::ClusterHandle;
use crate::error::{Error, Result, is_conflict, is_forbidden, is_not_found};
use crate::lifecycle::{fmt_time, token_clock_skewed, token_lifetime, token_renew_at};
use crate::token_index::TokenSecret;

/// Annotation on token Secrets: when the token in it stops working.
pub const TOKEN_EXPIRES_ANNOTATION: &str = "k8s-janus.opsmode.io/token-expires-at";
/// Annotation on token Secrets: when the token in it was requested (by the controller's clock). With
/// [`TOKEN_EXPIRES_ANNOTATION`] it tells when a token shortened by the cluster is renewed.
pub const TOKEN_ISSUED_ANNOTATION: &str = "k8s-janus.opsmode.io/token-issued-at";
/// Annotation on created objects naming the requester (for people reading `kubectl get sa`).
pub const REQUESTER_ANNOTATION: &str = "k8s-janus.opsmode.io/requester";

/// Namespaces of one request read or granted at the same time: a request names a handful; the bound
/// keeps one with many from opening that many requests at once.
pub const NAMESPACES_IN_FLIGHT: usize = 8;

fn labels(request: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (REQUEST_LABEL.to_string(), request.to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
    ])
}

/// Name, namespace, labels and annotations of every object of a grant.
pub(crate) fn meta(name: &str, ns: &str, ar: &AccessRequest) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        labels: Some(labels(&ar.name_any())),
        annotations: Some(BTreeMap::from([(
            REQUESTER_ANNOTATION.to_string(),
            ar.spec.requester.clone(),
        )])),
        ..Default::default()
    }
}

/// Whether an object carries the request's label.
pub(crate) fn owned_by_request(labels: Option<&BTreeMap<String, String>>, request: &str) -> bool {
    labels.and_then(|l| l.get(REQUEST_LABEL)).is_some_and(|v| v == request)
}

/// A 403 as a permanent error naming what k8s-janus may not do; anything else as is.
pub(crate) fn forbidden_to_permanent(cluster: &str, what: &str, e: kube::Error) -> Error {
    if is_forbidden(&e) {
        Error::Permanent(format!(
            "k8s-janus is not allowed to {what} on cluster {cluster}: {e}; check the chart's RBAC (or the remote agent) there"
        ))
    } else {
        e.into()
    }
}

/// Checks that the namespaces exist on the target. `Err(Permanent)` names the first missing one.
pub async fn check_namespaces(target: &ClusterHandle, namespaces: &[String]) -> Result<()> {
    read_namespaces(target, namespaces).await.map(|_| ())
}

/// Reads the namespaces on the target (one GET each, all at once, answered in request order) for what
/// approval policies match on: labels and annotations. `Err(Permanent)` names the first missing one
/// or one being deleted.
pub async fn read_namespaces(target: &ClusterHandle, namespaces: &[String]) -> Result<Vec<NamespaceInfo>> {
    let api: Api<Namespace> = Api::all(target.client.clone());
    // Owned names: a stream over borrowed ones is not `Send` for every lifetime the controller's
    // runtime asks of a reconcile future.
    let read = futures::stream::iter(namespaces.to_vec())
        .map(|ns| {
            let api = api.clone();
            async move { api.get_opt(&ns).await }
        })
        .buffered(NAMESPACES_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let mut out = Vec::with_capacity(namespaces.len());
    for (ns, got) in namespaces.iter().zip(read) {
        match got {
            Ok(Some(n)) if n.metadata.deletion_timestamp.is_none() => out.push(NamespaceInfo {
                name: ns.clone(),
                labels: n.metadata.labels.unwrap_or_default(),
                annotations: n.metadata.annotations.unwrap_or_default(),
            }),
            Ok(Some(_)) => {
                return Err(Error::Permanent(format!(
                    "namespace {ns:?} is being deleted on cluster {}",
                    target.name
                )));
            }
            Ok(None) => {
                return Err(Error::Permanent(format!(
                    "namespace {ns:?} does not exist on cluster {}",
                    target.name
                )));
            }
            Err(e) => return Err(forbidden_to_permanent(&target.name, "read namespaces", e)),
        }
    }
    Ok(out)
}

/// Reads the ClusterRole an access role binds on the target and returns its rules (a pod-scoped
/// grant narrows them into a Role). `Err(Permanent)` names the role, the ClusterRole and the cluster
/// when it does not exist there (the chart or the remote agent on that cluster lacks it), or when its
/// rules reach beyond pods ([`janus_api::rules::scope::check_cluster_role_rules`]).
pub async fn role_rules(target: &ClusterHandle, role: &RoleConfig) -> Result<Vec<PolicyRule>> {
    let api: Api<ClusterRole> = Api::all(target.client.clone());
    match api.get_opt(&role.cluster_role).await {
        Ok(Some(cr)) => {
            let rules = cr.rules.unwrap_or_default();
            // A ClusterRole edited on the target to reach beyond pods (RBAC, tokens, impersonation,
            // wildcards) is refused, whatever the configuration says.
            janus_api::rules::scope::check_cluster_role_rules(&role.name, &rules).map_err(|e| {
                Error::Permanent(format!(
                    "ClusterRole {} on cluster {}: {e}",
                    role.cluster_role, target.name
                ))
            })?;
            Ok(rules)
        }
        Ok(None) => Err(Error::Permanent(format!(
            "ClusterRole {} (role {}) does not exist on cluster {}: install or upgrade the k8s-janus chart/agent there",
            role.cluster_role, role.name, target.name
        ))),
        Err(e) => Err(forbidden_to_permanent(
            &target.name,
            &format!("read ClusterRole {} (role {})", role.cluster_role, role.name),
            e,
        )),
    }
}

async fn ensure_service_account(target: &ClusterHandle, ar: &AccessRequest, ns: &str, name: &str) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(target.client.clone(), ns);
    let sa = ServiceAccount {
        metadata: meta(name, ns, ar),
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => {
            let existing = api.get(name).await?;
            if existing.metadata.deletion_timestamp.is_some() {
                return Err(Error::CleanupPending(format!(
                    "ServiceAccount {ns}/{name} is still being deleted"
                )));
            }
            if owned_by_request(existing.metadata.labels.as_ref(), &ar.name_any()) {
                Ok(())
            } else {
                Err(Error::Permanent(format!(
                    "ServiceAccount {ns}/{name} exists on cluster {} and does not belong to this request",
                    target.name
                )))
            }
        }
        Err(e) if is_not_found(&e) => Err(Error::Permanent(format!(
            "namespace {ns:?} does not exist on cluster {}",
            target.name
        ))),
        Err(e) => Err(forbidden_to_permanent(&target.name, "create ServiceAccounts", e)),
    }
}

async fn ensure_role_binding(
    target: &ClusterHandle,
    ar: &AccessRequest,
    ns: &str,
    name: &str,
    role_ref: RoleRef,
) -> Result<()> {
    let api: Api<RoleBinding> = Api::namespaced(target.client.clone(), ns);
    let what = format!("bind {} {}", role_ref.kind, role_ref.name);
    let rb = RoleBinding {
        metadata: meta(name, ns, ar),
        role_ref,
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: name.into(),
            namespace: Some(ns.into()),
            api_group: None,
        }]),
    };
    match api.create(&PostParams::default(), &rb).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => {
            let existing = api.get(name).await?;
            if owned_by_request(existing.metadata.labels.as_ref(), &ar.name_any()) && existing.role_ref == rb.role_ref {
                Ok(())
            } else {
                Err(Error::Permanent(format!(
                    "RoleBinding {ns}/{name} exists on cluster {} and does not belong to this request",
                    target.name
                )))
            }
        }
        Err(e) => Err(forbidden_to_permanent(&target.name, &what, e)),
    }
}

async fn request_token(target: &ClusterHandle, ns: &str, sa: &str, lifetime: i64) -> Result<(String, DateTime<Utc>)> {
    let api: Api<ServiceAccount> = Api::namespaced(target.client.clone(), ns);
    let tr = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(lifetime),
            ..Default::default()
        },
        ..Default::default()
    };
    let out = api
        .create_token_request(sa, &PostParams::default(), &tr)
        .await
        .map_err(|e| forbidden_to_permanent(&target.name, "create ServiceAccount tokens", e))?;
    let status = out
        .status
        .ok_or_else(|| Error::Permanent("TokenRequest returned no token".into()))?;
    Ok((
        status.token,
        crate::lifecycle::from_jiff(&status.expiration_timestamp.0),
    ))
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; the values are the grant's distinct inputs, a struct would only rename them"
)]
async fn write_token_secret(
    central: &ClusterHandle,
    janus_ns: &str,
    ar: &AccessRequest,
    name: &str,
    target: &ClusterHandle,
    ns: &str,
    token: String,
    token_issued: DateTime<Utc>,
    token_expires: DateTime<Utc>,
) -> Result<String> {
    let api: Api<Secret> = Api::namespaced(central.client.clone(), janus_ns);
    let mut md = meta(name, janus_ns, ar);
    let annotations = md.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(TOKEN_EXPIRES_ANNOTATION.into(), fmt_time(token_expires));
    annotations.insert(TOKEN_ISSUED_ANNOTATION.into(), fmt_time(token_issued));
    // In metadata too, so the controller's metadata-only watch knows which cluster to clean up.
    annotations.insert(crate::token_index::TOKEN_CLUSTER_ANNOTATION.into(), target.name.clone());
    md.owner_references = Some(vec![OwnerReference {
        api_version: AccessRequest::api_version(&()).into_owned(),
        kind: AccessRequest::kind(&()).into_owned(),
        name: ar.name_any(),
        uid: ar.uid().unwrap_or_default(),
        controller: Some(true),
        // Not blockOwnerDeletion: setting it needs `update` on accessrequests/finalizers where the
        // OwnerReferencesPermissionEnforcement admission plugin runs, and buys nothing here — the
        // request's own finalizer already holds its deletion until every credential is gone.
        block_owner_deletion: None,
    }]);
    let data = BTreeMap::from([
        ("token".to_string(), ByteString(token.into_bytes())),
        ("server".to_string(), ByteString(target.server.clone().into_bytes())),
        ("ca".to_string(), ByteString(target.ca_pem.clone().into_bytes())),
        ("namespace".to_string(), ByteString(ns.as_bytes().to_vec())),
        ("cluster".to_string(), ByteString(target.name.clone().into_bytes())),
    ]);
    let mut secret = Secret {
        metadata: md,
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    let written = match api.create(&PostParams::default(), &secret).await {
        Ok(s) => s,
        Err(e) if is_conflict(&e) => {
            let existing = api.get(name).await?;
            if !owned_by_request(existing.metadata.labels.as_ref(), &ar.name_any()) {
                return Err(Error::Permanent(format!(
                    "Secret {janus_ns}/{name} exists and does not belong to this request"
                )));
            }
            secret.metadata.resource_version = existing.metadata.resource_version;
            api.replace(name, &PostParams::default(), &secret).await?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(written.metadata.resource_version.unwrap_or_default())
}

/// One namespace's grant as [`ensure_grant`] left it.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The names used.
    pub grant: Grant,
    /// The resourceVersion of the token Secret as written, so the controller can tell the watch event
    /// of its own write from someone else's change.
    pub resource_version: String,
    /// When the token has to be renewed: `Some` when the cluster issued it for less than the access
    /// it serves (a capped `--service-account-max-token-expiration`), `None` when it lasts.
    pub renew_at: Option<DateTime<Utc>>,
}

/// What a grant's RoleBinding binds in one namespace.
#[derive(Debug, Clone)]
pub enum Access {
    /// The access role's ClusterRole, on every pod of the namespace.
    ClusterRole(String),
    /// A namespaced Role (named like the grant) with these rules: the role's ClusterRole rules
    /// narrowed to the pods `selector` (Kubernetes syntax) matches now.
    Scoped {
        /// The Role's rules ([`janus_api::rules::scope::scoped_rules`]).
        rules: Vec<PolicyRule>,
        /// The label selector the Role follows.
        selector: String,
    },
}

/// Creates (or adopts) everything for one namespace and (re)issues its token, valid until `expires`
/// or as long as the cluster allows, whichever is sooner. The token Secret is updated in place.
pub async fn ensure_grant(
    central: &ClusterHandle,
    janus_ns: &str,
    target: &ClusterHandle,
    ar: &AccessRequest,
    ns: &str,
    access: &Access,
    expires: DateTime<Utc>,
) -> Result<Issued> {
    let request = ar.name_any();
    let sa = names::grant_name(&request, ns);
    let secret = names::token_secret_name(&request, ns);
    ensure_service_account(target, ar, ns, &sa).await?;
    // Once the ServiceAccount is ours, its binding and its token do not wait for each other: the token
    // is not handed out before the grant is Active, and a grant that fails (a foreign binding by that
    // name, a refused token) is cleaned up, ServiceAccount (its tokens with it) and Secret. The
    // ServiceAccount itself must come first (see `ensure_service_account`: the name may be taken).
    let bind = async {
        let role_ref = match access {
            Access::ClusterRole(cluster_role) => RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: cluster_role.clone(),
            },
            Access::Scoped { rules, .. } => {
                // Before the binding: RBAC checks a binding against the rules of the Role it names,
                // which must therefore exist.
                crate::scope::write_role(target, ar, ns, &sa, rules).await?;
                RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "Role".into(),
                    name: sa.clone(),
                }
            }
        };
        ensure_role_binding(target, ar, ns, &sa, role_ref).await
    };
    let issue = async {
        let issued = Utc::now();
        let (token, token_expires) = request_token(target, ns, &sa, token_lifetime(expires, issued)).await?;
        let renew_at = (token_expires < expires).then(|| token_renew_at(issued, token_expires));
        if let Some(at) = renew_at {
            if token_clock_skewed(issued, token_expires) {
                tracing::warn!(
                    request = %request,
                    namespace = ns,
                    cluster = %target.name,
                    issued = %fmt_time(issued),
                    token_expires = %fmt_time(token_expires),
                    renew_at = %fmt_time(at),
                    "the token seems to expire at or right after its issue: the controller's clock is probably \
                     ahead of the API server's (clock skew); it is renewed no sooner than the minimum interval"
                );
            }
            tracing::info!(
                request = %request,
                namespace = ns,
                cluster = %target.name,
                token_expires = %fmt_time(token_expires),
                renew_at = %fmt_time(at),
                "the cluster shortened the token below the access; it is renewed before it expires"
            );
        }
        let rv = write_token_secret(central, janus_ns, ar, &secret, target, ns, token, issued, token_expires).await?;
        Ok::<_, Error>((rv, renew_at))
    };
    // Both halves run to their end, even when one fails: a half dropped mid-call could have its create
    // committed after the failed grant's cleanup listed what to delete (a RoleBinding left behind).
    let (rv, renew_at) = match tokio::join!(bind, issue) {
        (Ok(()), Ok(issued)) => issued,
        // The permanent error first: it ends the request, where a transient one would only retry.
        (Err(e @ Error::Permanent(_)), _) | (_, Err(e @ Error::Permanent(_))) => return Err(e),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    Ok(Issued {
        grant: Grant {
            namespace: ns.to_string(),
            service_account: sa.clone(),
            role_binding: sa.clone(),
            token_secret: secret,
            scoped_role: matches!(access, Access::Scoped { .. }).then_some(sa),
            pod_selector: match access {
                Access::Scoped { selector, .. } => Some(selector.clone()),
                Access::ClusterRole(_) => None,
            },
        },
        resource_version: rv,
        renew_at,
    })
}

/// Until when the recorded token Secrets serve the access that ends at `expires`: `expires` itself
/// when every token lasts that long, else the earliest time a shortened token is due for renewal
/// ([`token_renew_at`]). `None` when a Secret is missing, belongs to someone else or carries no usable
/// expiry: the tokens are issued again now. Reads the Secrets by the names in `status.grants` (one GET
/// each) rather than listing the namespace.
pub async fn tokens_valid_until(
    central: &ClusterHandle,
    janus_ns: &str,
    request: &str,
    grants: &[Grant],
    expires: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    if grants.is_empty() {
        return Ok(None);
    }
    let api: Api<Secret> = Api::namespaced(central.client.clone(), janus_ns);
    let mut until = expires;
    for g in grants {
        let Some(s) = api.get_opt(&g.token_secret).await? else {
            return Ok(None);
        };
        if !owned_by_request(s.metadata.labels.as_ref(), request) {
            return Ok(None);
        }
        let annotation = |key: &str| s.annotations().get(key).and_then(|t| crate::lifecycle::parse_time(t));
        let Some(token_expires) = annotation(TOKEN_EXPIRES_ANNOTATION) else {
            return Ok(None);
        };
        if token_expires >= expires {
            continue;
        }
        // A Secret written before the issue time was recorded is renewed now (it was never capped on
        // purpose: earlier versions issued tokens that covered the access or re-issued them).
        let Some(issued) = annotation(TOKEN_ISSUED_ANNOTATION) else {
            return Ok(None);
        };
        until = until.min(token_renew_at(issued, token_expires));
    }
    Ok(Some(until))
}

/// Takes away at once the access of the grants recorded in a request's status, on the cluster that
/// holds them: every RoleBinding (and scoped Role) at the same time, then every ServiceAccount, each
/// deleted by name without a list first. The label-based [`cleanup_cluster`] still follows and is what makes
/// the removal complete; this only brings the moment the token stops working forward (a revocation's
/// first call is the one that cuts access).
///
/// Only names this controller derives from the request are deleted ([`names::grant_name`]): a status
/// entry naming anything else is skipped, so whoever can write status cannot steer the deletions to
/// other objects. Ok(true) when every grant listed was cut this way, Ok(false) when some named
/// something else (the label-based cleanup is then what removes its credentials).
pub async fn cut_access(target: &ClusterHandle, request: &str, grants: &[Grant]) -> Result<bool> {
    let ours: Vec<(&Grant, String)> = grants
        .iter()
        .filter_map(|g| {
            let name = names::grant_name(request, &g.namespace);
            (g.service_account == name && g.role_binding == name).then_some((g, name))
        })
        .collect();
    let every = ours.len() == grants.len();
    if ours.is_empty() {
        return Ok(every);
    }
    // Authorization first: a real API server refuses the token (403) as soon as the binding is gone,
    // while it may accept a deleted ServiceAccount's token from its cache for about 10 s.
    let authorization = ours.iter().flat_map(|(g, name)| {
        let ns = g.namespace.as_str();
        let binding = async move {
            let api: Api<RoleBinding> = Api::namespaced(target.client.clone(), ns);
            delete_one(&api, "RoleBinding", ns, name).await
        };
        let role = g.scoped_role.as_deref().filter(|r| *r == name).map(|r| async move {
            let api: Api<Role> = Api::namespaced(target.client.clone(), ns);
            delete_one(&api, "Role", ns, r).await
        });
        [futures::future::Either::Left(binding)]
            .into_iter()
            .chain(role.map(futures::future::Either::Right))
    });
    let cut = futures::future::join_all(authorization).await;
    let accounts = futures::future::join_all(ours.iter().map(|(g, name)| async move {
        let api: Api<ServiceAccount> = Api::namespaced(target.client.clone(), &g.namespace);
        delete_one(&api, "ServiceAccount", &g.namespace, name).await
    }))
    .await;
    for r in cut.into_iter().chain(accounts) {
        r?;
    }
    Ok(every)
}

/// Ends, on one cluster, the access of the given requests, done for many requests with one list per
/// kind, the three lists at once: their RoleBindings and scoped Roles are deleted first, then their
/// ServiceAccounts ([`delete_grant_objects`]). Returns how many ServiceAccounts were deleted. The full
/// [`cleanup_cluster`] of each request still follows; this only brings the moment the tokens stop
/// working forward.
pub async fn revoke_tokens_of(target: &ClusterHandle, requests: &std::collections::HashSet<String>) -> Result<usize> {
    let lp = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let [bindings, roles, accounts] = delete_grant_objects(target, &lp, |labels| owned_by_any(labels, requests)).await;
    bindings?;
    roles?;
    let (deleted, _) = accounts?;
    Ok(deleted)
}

fn owned_by_any(labels: &BTreeMap<String, String>, requests: &std::collections::HashSet<String>) -> bool {
    labels.get(REQUEST_LABEL).is_some_and(|owner| requests.contains(owner))
}

/// A namespaced kind the cleanup lists across all namespaces of a target cluster.
trait Namespaced:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug
{
}

impl<K> Namespaced for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

/// Every object of kind `K` in all namespaces of `target` that the selector in `lp` finds.
async fn list_all<K: Namespaced>(target: &ClusterHandle, lp: &ListParams) -> Result<Vec<K>> {
    let all: Api<K> = Api::all(target.client.clone());
    Ok(all.list(lp).await?.items)
}

/// The objects of kind `K` on `target` that the selector in `lp` finds and `keep` accepts.
async fn list_doomed<K: Namespaced>(
    target: &ClusterHandle,
    lp: &ListParams,
    keep: impl Fn(&BTreeMap<String, String>) -> bool,
) -> Result<Vec<K>> {
    Ok(list_all::<K>(target, lp)
        .await?
        .into_iter()
        .filter(|o| keep(o.labels()))
        .collect())
}

/// Deletes the listed objects, 32 at a time. Returns how many are gone, and what still exists (held
/// by a finalizer).
async fn delete_listed<K: Namespaced>(
    target: &ClusterHandle,
    kind: &str,
    doomed: Vec<K>,
) -> Result<(usize, Vec<String>)> {
    let deletions = futures::stream::iter(doomed).map(|o| async move {
        let ns = o.namespace().unwrap_or_default();
        let api: Api<K> = Api::namespaced(target.client.clone(), &ns);
        delete_one(&api, kind, &ns, &o.name_any()).await
    });
    let results: Vec<Result<Option<String>>> = deletions.buffer_unordered(32).collect().await;
    let mut deleted = 0;
    let mut left = Vec::new();
    for r in results {
        match r? {
            None => deleted += 1,
            Some(held) => left.push(held),
        }
    }
    Ok((deleted, left))
}

/// Deletes what the selector in `lp` finds of the three kinds of a grant on `target` (and `keep`
/// accepts): the three lists are made at once, then the RoleBindings and the scoped Roles (what
/// grants: a real API server stops authorizing as soon as its RBAC informer sees the deletion) are
/// deleted, then the ServiceAccounts (a real API server may keep accepting a deleted ServiceAccount's
/// token from its authentication cache for about 10 s). Each kind goes even when another could not.
/// Returns, per kind (RoleBindings, Roles, ServiceAccounts), how many are gone and what is held.
async fn delete_grant_objects(
    target: &ClusterHandle,
    lp: &ListParams,
    keep: impl Fn(&BTreeMap<String, String>) -> bool + Copy,
) -> [Result<(usize, Vec<String>)>; 3] {
    // Listed at once: one kind after the other made each ending reconcile wait for three lists in a
    // row, and with thousands of grants a list is the slow part (issue 19).
    let (bindings, roles, accounts) = tokio::join!(
        list_doomed::<RoleBinding>(target, lp, keep),
        list_doomed::<Role>(target, lp, keep),
        list_doomed::<ServiceAccount>(target, lp, keep),
    );
    let (bindings, roles) = tokio::join!(
        async move { delete_listed(target, "RoleBinding", bindings?).await },
        async move { delete_listed(target, "Role", roles?).await },
    );
    let accounts = match accounts {
        Ok(a) => delete_listed(target, "ServiceAccount", a).await,
        Err(e) => Err(e),
    };
    [bindings, roles, accounts]
}

/// What of kind `K` the selector in `lp` still finds on `target`, described for the status.
async fn still_listed<K: Namespaced>(target: &ClusterHandle, lp: &ListParams, kind: &str) -> Result<Vec<String>> {
    Ok(list_all::<K>(target, lp)
        .await?
        .iter()
        .map(|o| format!("{kind} {}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .collect())
}

/// Deletes one object; `Some(description)` if it still exists afterwards (a finalizer holds it).
///
/// The API server answers a DELETE with a Status or the removed object when the object is gone, and
/// with the object marked for deletion when something still holds it; no second list is needed.
async fn delete_one<K>(api: &Api<K>, kind: &str, ns: &str, name: &str) -> Result<Option<String>>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(r) => Ok(r
            .left()
            .filter(|o| o.meta().deletion_timestamp.is_some())
            .map(|_| format!("{kind} {ns}/{name}"))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The request's token Secrets on the central cluster, found by label on the API server: when the
/// controller's index of them ([`crate::token_index::TokenIndex`]) cannot answer. A list of the janus
/// namespace's Secrets scans every token Secret there, so with thousands of grants it is among the
/// costliest calls of an ending.
pub async fn token_secrets(central: &ClusterHandle, janus_ns: &str, request: &str) -> Result<Vec<TokenSecret>> {
    let lp = ListParams::default().labels(&format!("{REQUEST_LABEL}={request}"));
    let secrets: Api<Secret> = Api::namespaced(central.client.clone(), janus_ns);
    Ok(secrets
        .list(&lp)
        .await?
        .items
        .into_iter()
        .map(|s| {
            let cluster = s
                .annotations()
                .get(crate::token_index::TOKEN_CLUSTER_ANNOTATION)
                .cloned()
                .or_else(|| {
                    s.data
                        .as_ref()
                        .and_then(|d| d.get("cluster"))
                        .and_then(|c| String::from_utf8(c.0.clone()).ok())
                });
            TokenSecret {
                name: s.name_any(),
                cluster,
            }
        })
        .collect())
}

/// The clusters the token Secrets were issued for (written at each grant), so cleanup reaches them
/// whatever the spec says now.
pub fn secret_clusters(secrets: &[TokenSecret]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in secrets {
        if let Some(c) = &s.cluster
            && !c.is_empty()
            && !out.contains(c)
        {
            out.push(c.clone());
        }
    }
    out
}

/// Deletes every credential of a request (found by label) on one cluster and reports what is still
/// left: [`delete_grant_objects`] (RoleBindings and scoped Roles before ServiceAccounts, the lists made
/// at once), then one more look at all three at once. The access itself was cut by name first
/// ([`cut_access`]) when the status names the grants.
pub async fn cleanup_cluster(target: &ClusterHandle, request: &str) -> Result<Vec<String>> {
    let selector = format!("{REQUEST_LABEL}={request}");
    let lp = ListParams::default().labels(&selector);
    let [bindings, roles, accounts] = delete_grant_objects(target, &lp, |_| true).await;
    let mut left = Vec::new();
    left.extend(bindings?.1);
    left.extend(roles?.1);
    left.extend(accounts?.1);
    // One look again at all three: an object created after the lists above (by a grant of an old
    // leader still finishing) is not gone. A RoleBinding left over is what could still grant (to
    // anyone who can later create a ServiceAccount of that name); a ServiceAccount left over
    // authenticates its token.
    if left.is_empty() {
        let (b, r, a) = tokio::join!(
            still_listed::<RoleBinding>(target, &lp, "RoleBinding"),
            still_listed::<Role>(target, &lp, "Role"),
            still_listed::<ServiceAccount>(target, &lp, "ServiceAccount"),
        );
        left.extend(b?);
        left.extend(r?);
        left.extend(a?);
    }
    Ok(left)
}

/// Deletes the token Secrets found (by the index or [`token_secrets`]) and reports what is still left (held by a
/// finalizer).
pub async fn delete_secrets(central: &ClusterHandle, janus_ns: &str, found: &[TokenSecret]) -> Result<Vec<String>> {
    let secrets: Api<Secret> = Api::namespaced(central.client.clone(), janus_ns);
    let mut left = Vec::new();
    for s in found {
        left.extend(delete_one(&secrets, "Secret", janus_ns, &s.name).await?);
    }
    Ok(left)
}
