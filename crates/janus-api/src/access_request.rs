//! The `AccessRequest` resource: what was asked, the human decisions about it, and what the controller observed.

use crate::rules::policy::normalize_email;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The longest `ttlSeconds` (and approval TTL, and extension) the CRD accepts: 7 days.
pub const MAX_TTL_SECONDS: i64 = 604_800;

/// Condition reasons that other components act on. Free-text messages are for people; code reads these.
pub mod reasons {
    /// A pending request was denied because nobody decided within `pendingExpirySeconds`.
    pub const PENDING_TIMEOUT: &str = "PendingTimeout";
    /// The request no longer passes the configuration's rules (excluded or Janus namespace, unknown
    /// cluster, TTL bounds): denied while pending, failed once approved.
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    /// Requester, cluster, namespaces, TTL, role, pod scope or the approval itself changed after the
    /// approval.
    pub const SPEC_CHANGED_AFTER_APPROVAL: &str = "SpecChangedAfterApproval";
}

/// A request for temporary `kubectl exec` access to namespaces of one cluster.
///
/// `spec` holds what was asked and the human decisions (written by the web UI with the authenticated
/// identity); `status` holds only the controller's observations.
///
/// The CEL rules (`x-kubernetes-validations`) make the API server refuse what the web never writes:
/// changes to what was asked, decisions changed or removed once made, extensions rewritten, and an
/// approval next to a denial. They are one of two guards: the controller also compares every spec
/// with what it recorded at approval ([`ApprovedSpec`]), for clusters whose CRD lacks the rules.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "k8s-janus.opsmode.io",
    version = "v1alpha1",
    kind = "AccessRequest",
    shortname = "ar",
    status = "AccessRequestStatus",
    printcolumn = r#"{"name":"Requester","type":"string","jsonPath":".spec.requester"}"#,
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.cluster"}"#,
    printcolumn = r#"{"name":"Namespaces","type":"string","jsonPath":".spec.namespaces"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
// No `fieldPath` or `reason` on any rule: API servers before 1.28 do not know those fields, and the
// chart supports older ones (strict field validation would refuse the CRD there). A rule that must
// report a precise field sits on that field instead; what only the parent can see (removal, two
// decisions together) is reported at `spec`, with a message naming the field.
#[x_kube(validation = Rule::new(
    "(!has(oldSelf.approval) || has(self.approval)) && (!has(oldSelf.denial) || has(self.denial)) && (!has(oldSelf.revocation) || has(self.revocation)) && (!has(oldSelf.withdrawal) || has(self.withdrawal))"
).message("decisions (approval, denial, revocation, withdrawal) are never removed once made"))]
#[x_kube(validation = Rule::new("!has(oldSelf.extensions) || has(self.extensions)")
    .message("extensions are append-only: they are never removed"))]
#[x_kube(validation = Rule::new("!(has(self.approval) && has(self.denial))")
    .message("a request is either approved or denied, not both"))]
// Issue 15. No rule ties `approvals` to `denial`: a request with 1 of 2 approvals can still be denied.
#[x_kube(validation = Rule::new("has(self.requesterGroups) == has(oldSelf.requesterGroups)")
    .message("requesterGroups is recorded at creation: never added or removed later"))]
#[x_kube(validation = Rule::new("!has(oldSelf.approvals) || has(self.approvals)")
    .message("approvals are append-only: they are never removed"))]
// The first approval fixes when access starts: the approver decided on that start. An empty
// `approvals` list (only a hand-written object has one) is no approval.
#[x_kube(validation = Rule::new(
    "!(has(oldSelf.approval) || (has(oldSelf.approvals) && size(oldSelf.approvals) > 0)) || (has(self.startAt) == has(oldSelf.startAt) && (!has(self.startAt) || self.startAt == oldSelf.startAt))"
).message("startAt cannot be set, changed or removed once the request has an approval"))]
// Issue 16: role and podScope are fixed at creation (the field rules above compare values; these
// refuse adding or removing them later).
#[x_kube(validation = Rule::new("has(self.role) == has(oldSelf.role)")
    .message("role is set only at creation: never added or removed later"))]
#[x_kube(validation = Rule::new("has(self.podScope) == has(oldSelf.podScope)")
    .message("podScope is set only at creation: never added or removed later"))]
#[x_kube(validation = Rule::new("has(self.breakGlass) == has(oldSelf.breakGlass)")
    .message("breakGlass is set only at creation: never added or removed later"))]
#[x_kube(validation = Rule::new("!has(oldSelf.breakGlassReview) || has(self.breakGlassReview)")
    .message("breakGlassReview is never removed once made"))]
#[x_kube(validation = Rule::new("!has(self.breakGlassReview) || has(self.breakGlass)")
    .message("breakGlassReview needs breakGlass: only a break-glass activation is reviewed"))]
pub struct AccessRequestSpec {
    /// Email of the requester, set from the authenticated identity; never changes.
    #[schemars(length(min = 3, max = 254))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("requester is immutable"))]
    pub requester: String,
    /// Name of the target cluster (an entry of the `clusters` configuration).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("cluster is immutable"))]
    pub cluster: String,
    /// Namespaces to grant exec access in (DNS-1123 labels, 1 to 20).
    #[schemars(
        length(min = 1, max = 20),
        inner(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("namespaces are immutable"))]
    pub namespaces: Vec<String>,
    /// Why access is needed; shown to approvers and kept in the audit log.
    #[schemars(length(min = 1, max = 1000))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("reason is immutable: approvers decided on it"))]
    pub reason: String,
    /// Requested duration of access after approval (policy bounds come from the configuration).
    #[schemars(range(min = 1, max = 604800))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("ttlSeconds is immutable"))]
    pub ttl_seconds: i64,
    /// Set when an admin approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("approval can be set once and is never changed or removed"))]
    pub approval: Option<Approval>,
    /// Set when an admin denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("denial can be set once and is never changed or removed"))]
    pub denial: Option<Denial>,
    /// Set when an admin (or the idle timeout) revoked active access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("revocation can be set once and is never changed or removed"))]
    pub revocation: Option<Revocation>,
    /// Set when the requester withdrew the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("withdrawal can be set once and is never changed or removed"))]
    pub withdrawal: Option<Withdrawal>,
    /// Extensions granted by admins, in order (append-only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    // Append-only: the old list must be a prefix of the new one. Standard CEL has no list slicing on
    // every Kubernetes version, so the new list must equal the old one followed by the entries that are
    // not in it; this also refuses an appended exact copy of an earlier entry (same by, at in
    // milliseconds and seconds), which the web never writes.
    #[x_kube(validation = Rule::new(
        "self == oldSelf + self.filter(e, !(e in oldSelf))"
    ).message("extensions are append-only: earlier entries are never changed, reordered or removed"))]
    pub extensions: Vec<Extension>,
    /// The requester's identity-provider groups when the request was created, as the web saw them.
    /// Policies match on them and auto-approval and break-glass check them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 256)))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("requesterGroups is immutable: recorded at creation"))]
    pub requester_groups: Vec<String>,
    /// When access should begin (RFC 3339). Absent: as soon as the approval quorum is met. A request
    /// approved ahead is `Scheduled` until then, and expires at `startAt` plus the TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub start_at: Option<String>,
    /// Approvals, in order (append-only). A `spec.approval` written by an older client counts as one
    /// more. The controller counts only distinct approvers the request's policy makes eligible.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    // Append-only with immutable entries, as `extensions` (see there).
    #[x_kube(validation = Rule::new(
        "self == oldSelf + self.filter(e, !(e in oldSelf))"
    ).message("approvals are append-only: earlier entries are never changed, reordered or removed"))]
    pub approvals: Vec<ApprovalEntry>,
    /// Set at creation when the requester activated break-glass access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("breakGlass is immutable"))]
    pub break_glass: Option<BreakGlass>,
    /// Set once when an approver reviewed (acknowledged) a break-glass activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("breakGlassReview can be set once and is never changed or removed"))]
    pub break_glass_review: Option<BreakGlassReview>,
    /// The access role (an entry of the `roles` configuration). Absent: `exec` (every request before
    /// access roles was an `exec` grant). Immutable: approvers decided on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("role is immutable: approvers decided on it"))]
    pub role: Option<String>,
    /// Limits the grant to some pods of each namespace. Absent: every pod of the namespaces.
    /// Immutable: approvers decided on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("podScope is immutable: approvers decided on it"))]
    pub pod_scope: Option<PodScope>,
}

/// Which pods of the requested namespaces a grant reaches: those a label selector matches, or those
/// of one workload (resolved by the controller to the workload's own pod selector). Exactly one is set.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.selector) != has(self.workload)")
    .message("podScope needs exactly one of selector and workload"))]
pub struct PodScope {
    /// The pods whose labels match, in each requested namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<PodSelector>,
    /// The pods of one workload (the request then names exactly one namespace, the workload's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
}

/// A pod label selector, as Kubernetes writes one: `matchLabels` and `matchExpressions`, ANDed. It must
/// say something (an empty selector would be every pod: ask without a scope instead).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PodSelector {
    /// Labels that must have exactly these values.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    // Bounded (maxProperties, value maxLength) so an API server can estimate the cost of the CEL rules
    // over podScope (`self == oldSelf`); keys cannot carry a maxLength in a structural schema, the
    // domain rules check them (rules::scope). schemars' `length` and `inner` do not reach a map's
    // size or values, hence the schema by hand.
    #[schemars(schema_with = "match_labels_schema")]
    pub match_labels: std::collections::BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub match_expressions: Vec<PodSelectorRequirement>,
}

/// The schema of [`PodSelector::match_labels`]: at most 20 labels, values at most 63 characters (a
/// label value's limit).
fn match_labels_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {"type": "string", "maxLength": 63},
        "maxProperties": 20,
    })
}

/// One set-based requirement of a pod selector.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
// As Kubernetes validates a LabelSelectorRequirement (apimachinery
// pkg/apis/meta/v1/validation/validation.go, ValidateLabelSelectorRequirement): In and NotIn need
// values, Exists and DoesNotExist take none.
#[x_kube(validation = Rule::new(
    "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)"
).message("operators In and NotIn need values; Exists and DoesNotExist take none"))]
pub struct PodSelectorRequirement {
    /// The label key.
    #[schemars(length(min = 1, max = 317))]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[schemars(length(max = 12), regex(pattern = r"^(In|NotIn|Exists|DoesNotExist)$"))]
    pub operator: String,
    /// Values for `In` and `NotIn` (at least one); none for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(max = 63)))]
    pub values: Vec<String>,
}

/// A workload whose pods a grant reaches.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// `Deployment`, `StatefulSet` or `DaemonSet` (apps/v1).
    pub kind: WorkloadKind,
    /// The workload's name, in the request's one namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
}

/// The kinds of workload a pod scope can name (apps/v1).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

impl WorkloadKind {
    /// The kind as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }
}

impl AccessRequestSpec {
    /// A new request with no decision yet: what was asked, by whom, for how long.
    pub fn new(
        requester: impl Into<String>,
        cluster: impl Into<String>,
        namespaces: Vec<String>,
        reason: impl Into<String>,
        ttl_seconds: i64,
    ) -> Self {
        Self {
            requester: requester.into(),
            cluster: cluster.into(),
            namespaces,
            reason: reason.into(),
            ttl_seconds,
            approval: None,
            denial: None,
            revocation: None,
            withdrawal: None,
            extensions: vec![],
            requester_groups: vec![],
            start_at: None,
            approvals: vec![],
            break_glass: None,
            break_glass_review: None,
            role: None,
            pod_scope: None,
        }
    }

    /// The access role asked for: `spec.role`, or [`crate::policy::DEFAULT_ROLE`] when absent.
    pub fn role_name(&self) -> &str {
        self.role.as_deref().unwrap_or(crate::policy::DEFAULT_ROLE)
    }
}

/// Who made a decision and when.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Email of the person (or `system:idle-timeout` style actor) who decided.
    #[schemars(length(min = 1, max = 254))]
    pub by: String,
    /// When (RFC 3339).
    #[schemars(length(max = 64))]
    pub at: String,
}

/// An approval, with an optional TTL that overrides the requested one.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Who approved.
    #[schemars(length(min = 1, max = 254))]
    pub by: String,
    /// When (RFC 3339).
    #[schemars(length(max = 64))]
    pub at: String,
    /// Duration chosen by the approver instead of `spec.ttlSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub ttl_seconds: Option<i64>,
}

/// One approval of a request that may need several (a policy's `approvalsRequired`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApprovalEntry {
    /// Who approved (email, as authenticated by the web).
    #[schemars(length(min = 1, max = 254))]
    pub by: String,
    /// When (RFC 3339).
    #[schemars(length(max = 64))]
    pub at: String,
    /// Duration this approver chose instead of `spec.ttlSeconds`; with several, the shortest applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub ttl_seconds: Option<i64>,
    /// The approver's comment, shown with the request and kept in the audit log.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1000))]
    pub comment: String,
    /// The approver's groups as the web saw them when they approved (policies name approvers by group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 256)))]
    pub groups: Vec<String>,
}

/// The requester activated access at once under a policy's `breakGlass` rule.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BreakGlass {
    /// When (RFC 3339).
    #[schemars(length(max = 64))]
    pub at: String,
}

/// An approver acknowledged a break-glass activation after the fact.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassReview {
    /// Who reviewed it.
    #[schemars(length(min = 1, max = 254))]
    pub by: String,
    /// When (RFC 3339).
    #[schemars(length(max = 64))]
    pub at: String,
    /// The reviewer's comment.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1000))]
    pub comment: String,
    /// The reviewer's groups as the web saw them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 256)))]
    pub groups: Vec<String>,
}

/// A denial with its reason.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Denial {
    /// Who denied.
    #[schemars(length(min = 1, max = 254))]
    pub by: String,
    /// When (RFC 3339).
    #[schemars(length(max = 64))]
    pub at: String,
    /// Why, shown to the requester.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub reason: String,
}

/// A revocation of active access.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    /// Who revoked.
    #[schemars(length(min = 1, max = 254))]
    pub by: String,
    /// When (RFC 3339).
    #[schemars(length(max = 64))]
    pub at: String,
    /// Why.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub reason: String,
}

/// The requester withdrew the request.
pub type Withdrawal = Decision;

/// Extra time granted by an admin.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    /// Who extended.
    #[schemars(length(min = 1, max = 254))]
    pub by: String,
    /// When (RFC 3339).
    #[schemars(length(max = 64))]
    pub at: String,
    /// How much longer access lasts.
    #[schemars(range(min = 1, max = 604800))]
    pub seconds: i64,
}

/// Where a request is in its lifecycle.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Phase {
    /// Waiting for a decision.
    #[default]
    Pending,
    /// Approved ahead of its `startAt`; no credentials exist until then.
    Scheduled,
    /// Approved; credentials are being issued.
    Approved,
    /// Credentials exist and work until `expiresAt`.
    Active,
    /// Access ran out.
    Expired,
    /// An admin said no (or nobody answered in time).
    Denied,
    /// Access was taken back early.
    Revoked,
    /// The requester withdrew it.
    Cancelled,
    /// Credentials could not be issued; see the message.
    Failed,
}

impl Phase {
    /// Terminal phases never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Expired | Phase::Denied | Phase::Revoked | Phase::Cancelled | Phase::Failed
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// A standard Kubernetes-style condition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type (e.g. `Granted`, `CredentialsRemoved`).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// When the status last changed.
    pub last_transition_time: String,
}

/// Credentials created for one namespace: the names actually used, so cleanup never recomputes them.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Namespace on the target cluster.
    pub namespace: String,
    /// ServiceAccount on the target cluster.
    pub service_account: String,
    /// RoleBinding on the target cluster.
    pub role_binding: String,
    /// Token Secret in the Janus namespace of the central cluster.
    pub token_secret: String,
    /// The namespaced Role of a pod-scoped grant (the RoleBinding then binds it rather than the access
    /// role's ClusterRole); its `resourceNames` list the pods in scope, kept current by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoped_role: Option<String>,
    /// The label selector (Kubernetes syntax) the scoped Role follows in this namespace: the request's
    /// selector, or the workload's pod selector as the controller resolved it. The web lists only the
    /// pods it matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<String>,
}

/// What was approved, as the controller recorded it when it first saw the approval. From then on the
/// spec must keep these values; a request whose spec differs ends `Failed`
/// ([`reasons::SPEC_CHANGED_AFTER_APPROVAL`]). The values are kept beside the digest so the status
/// and the audit log can say which field changed.
///
/// Three digest versions: `v1` for a request approved by one `spec.approval` and without `startAt` (the
/// text every baseline had before approval policies, so those stay valid), `v2` when `startAt` or
/// `approvers` are recorded ([`ApprovedSpec::record`]), `v3` when the request names a `role` or a
/// `podScope` (access roles; a request without either keeps its `v1`/`v2` text).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovedSpec {
    /// `sha256:<hex>` over the values below (see [`ApprovedSpec::compute_digest`]); a baseline whose
    /// values no longer match it was itself edited.
    pub digest: String,
    /// The requester approved.
    pub requester: String,
    /// The cluster approved.
    pub cluster: String,
    /// The namespaces approved, in order.
    pub namespaces: Vec<String>,
    /// `spec.ttlSeconds` as approved.
    pub ttl_seconds: i64,
    /// Who approved (the first counted approver, or the `system:` actor of auto-approval and break-glass).
    pub approved_by: String,
    /// The TTL the approvals chose (the shortest, an approval without one standing for the requested TTL),
    /// if any approval sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_ttl_seconds: Option<i64>,
    /// `spec.startAt` as approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    /// Every approver counted towards the policy's quorum, in order (`system:auto-approval` or
    /// `system:break-glass` when no person approved). Empty in a `v1` baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// `spec.role` as approved, as written (absent and `exec` are recorded apart: the CRD keeps either
    /// from turning into the other). Only in a `v3` baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `spec.podScope` as approved. Only in a `v3` baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_scope: Option<PodScope>,
}

/// The approver recorded for a request the policy's `autoApprove` rule approved.
pub const AUTO_APPROVAL_ACTOR: &str = "system:auto-approval";

/// The approver recorded for a request activated under the policy's `breakGlass` rule.
pub const BREAK_GLASS_ACTOR: &str = "system:break-glass";

impl ApprovedSpec {
    /// The baseline of an approved spec; `None` while it has no approval.
    pub fn of(spec: &AccessRequestSpec) -> Option<Self> {
        let approval = spec.approval.as_ref()?;
        let mut a = Self {
            digest: String::new(),
            requester: spec.requester.clone(),
            cluster: spec.cluster.clone(),
            namespaces: spec.namespaces.clone(),
            ttl_seconds: spec.ttl_seconds,
            approved_by: approval.by.clone(),
            approval_ttl_seconds: approval.ttl_seconds,
            start_at: None,
            approvers: vec![],
            role: spec.role.clone(),
            pod_scope: spec.pod_scope.clone(),
        };
        a.digest = a.compute_digest();
        Some(a)
    }

    /// The baseline the controller records when the request's policy approved it: `approvers` are the
    /// approvers it counted (or `[AUTO_APPROVAL_ACTOR]` / `[BREAK_GLASS_ACTOR]`), `approval_ttl` the
    /// approvers' TTL override in effect ([`crate::rules::ttl::approval_ttl`]).
    ///
    /// A request approved exactly as before approval policies (one `spec.approval`, counted alone, no
    /// `spec.approvals`, no `startAt`) gets the same `v1` baseline as [`ApprovedSpec::of`].
    pub fn record(spec: &AccessRequestSpec, approvers: &[String], approval_ttl: Option<i64>) -> Self {
        if let Some(approval) = &spec.approval
            && spec.approvals.is_empty()
            && spec.start_at.is_none()
            && approval_ttl == approval.ttl_seconds
            && matches!(approvers, [only] if crate::rules::policy::same_email(only, &approval.by))
            && let Some(v1) = Self::of(spec)
        {
            return v1;
        }
        let mut a = Self {
            digest: String::new(),
            requester: spec.requester.clone(),
            cluster: spec.cluster.clone(),
            namespaces: spec.namespaces.clone(),
            ttl_seconds: spec.ttl_seconds,
            approved_by: approvers.first().cloned().unwrap_or_default(),
            approval_ttl_seconds: approval_ttl,
            start_at: spec.start_at.clone(),
            approvers: approvers.to_vec(),
            role: spec.role.clone(),
            pod_scope: spec.pod_scope.clone(),
        };
        a.digest = a.compute_digest();
        a
    }

    /// Whether this is a `v1` baseline (neither `startAt`, `approvers`, `role` nor `podScope` recorded).
    fn is_v1(&self) -> bool {
        self.start_at.is_none() && self.approvers.is_empty() && !self.is_v3()
    }

    /// Whether this is a `v3` baseline (a `role` or a `podScope` recorded).
    fn is_v3(&self) -> bool {
        self.role.is_some() || self.pod_scope.is_some()
    }

    /// The pod scope as a JSON value whose text depends only on its values: `[selector, workload]`,
    /// each `null` when absent, as arrays in a fixed order and no objects (whose key order would depend
    /// on serde_json's `preserve_order` feature, which feature unification can switch on in one binary
    /// and not another).
    fn canonical_scope(scope: &PodScope) -> serde_json::Value {
        let selector = scope.selector.as_ref().map(|sel| {
            let expressions: Vec<_> = sel
                .match_expressions
                .iter()
                .map(|r| serde_json::json!([r.key, r.operator, r.values]))
                .collect();
            serde_json::json!([sel.match_labels.iter().collect::<Vec<_>>(), expressions])
        });
        let workload = scope
            .workload
            .as_ref()
            .map(|w| serde_json::json!([w.kind.as_str(), w.name]));
        serde_json::json!([selector, workload])
    }

    /// The digest of the recorded values: SHA-256 of a JSON array in a fixed field order, so the
    /// same values always give the same digest whatever the serializer's map ordering.
    pub fn compute_digest(&self) -> String {
        let canonical = if self.is_v3() {
            serde_json::json!([
                "v3",
                self.requester,
                self.cluster,
                self.namespaces,
                self.ttl_seconds,
                self.approved_by,
                self.approval_ttl_seconds,
                self.start_at,
                self.approvers,
                self.role,
                self.pod_scope.as_ref().map(Self::canonical_scope),
            ])
        } else if self.is_v1() {
            serde_json::json!([
                "v1",
                self.requester,
                self.cluster,
                self.namespaces,
                self.ttl_seconds,
                self.approved_by,
                self.approval_ttl_seconds,
            ])
        } else {
            serde_json::json!([
                "v2",
                self.requester,
                self.cluster,
                self.namespaces,
                self.ttl_seconds,
                self.approved_by,
                self.approval_ttl_seconds,
                self.start_at,
                self.approvers,
            ])
        };
        let hash = Sha256::digest(canonical.to_string().as_bytes());
        // sha2 0.11's digest (a hybrid-array) has no LowerHex: hex by hand, same text as before.
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// The spec fields (as API paths) that differ from what was approved; empty when nothing did.
    /// `status.approved` is listed when the baseline no longer matches its own digest.
    ///
    /// `spec.role` and `spec.podScope` are compared with what a `v3` baseline recorded (an older
    /// baseline recorded neither, so either set on the spec afterwards is a change).
    ///
    /// A `v2` baseline also reports `spec.approvals` when a counted approver no longer has an approval
    /// (`spec.approval` or an entry of `spec.approvals`), and `spec.approvals.ttlSeconds` when the
    /// TTL the approvals chose ([`crate::rules::ttl::approval_ttl`], what expiry is computed from) is no
    /// longer the one recorded. Other approvals appended later change nothing else (the
    /// quorum was met without them).
    pub fn changes(&self, spec: &AccessRequestSpec) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.compute_digest() != self.digest {
            out.push("status.approved");
        }
        if spec.requester != self.requester {
            out.push("spec.requester");
        }
        if spec.cluster != self.cluster {
            out.push("spec.cluster");
        }
        if spec.namespaces != self.namespaces {
            out.push("spec.namespaces");
        }
        if spec.ttl_seconds != self.ttl_seconds {
            out.push("spec.ttlSeconds");
        }
        if spec.start_at != self.start_at {
            out.push("spec.startAt");
        }
        if spec.role != self.role {
            out.push("spec.role");
        }
        if spec.pod_scope != self.pod_scope {
            out.push("spec.podScope");
        }
        if self.approvers.is_empty() {
            match &spec.approval {
                None => out.push("spec.approval"),
                Some(a) => {
                    if a.by != self.approved_by {
                        out.push("spec.approval.by");
                    }
                    if a.ttl_seconds != self.approval_ttl_seconds {
                        out.push("spec.approval.ttlSeconds");
                    }
                }
            }
            return out;
        }
        let approvals: Vec<String> = spec
            .approval
            .iter()
            .map(|a| normalize_email(&a.by))
            .chain(spec.approvals.iter().map(|a| normalize_email(&a.by)))
            .collect();
        let gone = self
            .approvers
            .iter()
            .filter(|a| !a.starts_with("system:"))
            .any(|a| !approvals.contains(&normalize_email(a)));
        if gone {
            out.push("spec.approvals");
        }
        // The TTL in effect is what the approvals chose (rules::ttl::effective_ttl): what was
        // approved must stay what expiry is computed from.
        if crate::rules::ttl::approval_ttl(spec) != self.approval_ttl_seconds {
            out.push("spec.approvals.ttlSeconds");
        }
        out
    }
}

/// What the controller observed. Nobody else writes it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestStatus {
    /// Lifecycle phase.
    #[serde(default)]
    pub phase: Phase,
    /// Human-readable explanation of the phase.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Conditions; also the request's timeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the approval was observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    /// When credentials first worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_at: Option<String>,
    /// When access ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When the request reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Credentials created, per namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
    /// What was approved, recorded when the approval was first observed; fixed from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<ApprovedSpec>,
    /// The approval policy the controller last evaluated for this request, and where it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyStatus>,
}

/// Which approval policy governs a request and how far its approval has come, as the controller sees it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The policy's name; `default` when no configured policy matched (admins approve, one approval).
    pub name: String,
    /// Distinct eligible approvals needed.
    pub approvals_required: u32,
    /// Distinct eligible approvals present.
    pub approvals_given: u32,
    // Every field is written, empty or false included: the controller writes status with a JSON merge
    // patch, where an omitted field keeps its old value, so a list that shrank to nothing (an approval
    // no longer ignored) would never clear and every reconcile would write the status again. The
    // `schemars` attributes keep the CRD's schema as it was (without a `default` for these fields).
    /// The approvers counted, in order.
    #[serde(default)]
    #[schemars(skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
    /// Approvals present that do not count, each with why (`mallory@x: not an approver of policy prod`).
    #[serde(default)]
    #[schemars(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
    /// Approved by the policy's `autoApprove` rule, without a person.
    #[serde(default)]
    #[schemars(skip_serializing_if = "std::ops::Not::not")]
    pub auto_approved: bool,
    /// Activated under the policy's `breakGlass` rule; awaiting review until `spec.breakGlassReview`.
    #[serde(default)]
    #[schemars(skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
}

impl AccessRequestStatus {
    /// The reason of the condition named after the current phase (why a request ended the way it did),
    /// e.g. [`reasons::PENDING_TIMEOUT`] on a `Denied` request.
    pub fn phase_reason(&self) -> Option<&str> {
        let phase = self.phase.to_string();
        self.conditions
            .iter()
            .find(|c| c.type_ == phase && c.status == "True")
            .map(|c| c.reason.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_shape() {
        let crd = serde_json::to_value(AccessRequest::crd()).unwrap();
        assert_eq!(crd["metadata"]["name"], "accessrequests.k8s-janus.opsmode.io");
        assert_eq!(crd["spec"]["scope"], "Cluster");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "ar");
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["name"], "v1alpha1");
        assert!(v["subresources"]["status"].is_object());
        let cols: Vec<&str> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(cols, ["Requester", "Cluster", "Namespaces", "Phase", "Expires", "Age"]);
        let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["properties"]["namespaces"]["minItems"], 1);
        assert!(spec["properties"]["namespaces"]["items"]["pattern"].is_string());
        assert_eq!(spec["properties"]["reason"]["maxLength"], 1000);
        let required: Vec<&str> = spec["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        for r in ["requester", "cluster", "namespaces", "reason", "ttlSeconds"] {
            assert!(required.contains(&r), "{r} required");
        }
    }

    fn spec() -> AccessRequestSpec {
        serde_json::from_value(serde_json::json!({
            "requester": "jane@example.com", "cluster": "central", "namespaces": ["team-a"],
            "reason": "debugging", "ttlSeconds": 3600,
            "approval": {"by": "admin@example.com", "at": "2026-01-01T00:00:00Z", "ttlSeconds": 1800}
        }))
        .unwrap()
    }

    #[test]
    fn the_approved_baseline_names_every_changed_field() {
        let mut s = spec();
        assert_eq!(
            ApprovedSpec::of(&AccessRequestSpec {
                approval: None,
                ..s.clone()
            }),
            None
        );
        let approved = ApprovedSpec::of(&s).unwrap();
        assert!(approved.digest.starts_with("sha256:") && approved.digest.len() == 7 + 64);
        // The digest is stored in the status of approved requests: its text must not change with a
        // hashing-crate upgrade, or every approved request would look changed. Known answer:
        // SHA-256 of `["v1","jane@example.com","central",["team-a"],3600,"admin@example.com",1800]`.
        assert_eq!(
            approved.digest,
            "sha256:fb8033ac28bdfa551d8174b3199252f056c20a7e30cab490d1460ffc3685a488"
        );
        assert_eq!(approved, ApprovedSpec::of(&s.clone()).unwrap(), "deterministic");
        assert!(approved.changes(&s).is_empty());
        // Decisions that are not part of what was approved change nothing.
        s.extensions.push(Extension {
            by: "admin@example.com".into(),
            at: "t".into(),
            seconds: 60,
        });
        assert!(approved.changes(&s).is_empty());
        s.namespaces.push("k8s-janus".into());
        s.requester = "mallory@example.com".into();
        s.approval.as_mut().unwrap().ttl_seconds = Some(604800);
        assert_eq!(
            approved.changes(&s),
            ["spec.requester", "spec.namespaces", "spec.approval.ttlSeconds"]
        );
        s.approval = None;
        assert!(approved.changes(&s).contains(&"spec.approval"));
        // A baseline edited to match a forged spec no longer matches its own digest.
        let mut forged = approved.clone();
        forged.namespaces.push("k8s-janus".into());
        assert_eq!(forged.changes(&spec())[0], "status.approved");
    }

    fn entry(by: &str, ttl: Option<i64>) -> ApprovalEntry {
        ApprovalEntry {
            by: by.into(),
            at: "2026-01-01T00:00:00Z".into(),
            ttl_seconds: ttl,
            comment: String::new(),
            groups: vec![],
        }
    }

    #[test]
    fn a_request_approved_as_before_policies_keeps_its_v1_baseline() {
        let s = spec();
        let recorded = ApprovedSpec::record(&s, &["Admin@example.com".to_string()], Some(1800));
        assert_eq!(Some(recorded.clone()), ApprovedSpec::of(&s));
        assert_eq!(
            recorded.digest,
            "sha256:fb8033ac28bdfa551d8174b3199252f056c20a7e30cab490d1460ffc3685a488"
        );
        // v1 baselines serialize as before: no startAt, no approvers.
        let v = serde_json::to_value(&recorded).unwrap();
        assert!(v.get("startAt").is_none() && v.get("approvers").is_none(), "{v}");
    }

    #[test]
    fn the_v2_baseline_records_start_and_counted_approvers() {
        let mut s = spec();
        s.approval = None;
        s.start_at = Some("2026-01-02T09:00:00Z".into());
        s.approvals = vec![
            entry("alice@example.com", Some(1800)),
            entry("mallory@example.com", None),
            entry("bob@example.com", None),
        ];
        let counted = ["alice@example.com".to_string(), "bob@example.com".to_string()];
        let approved = ApprovedSpec::record(&s, &counted, Some(1800));
        // Known answer: SHA-256 of
        // `["v2","jane@example.com","central",["team-a"],3600,"alice@example.com",1800,"2026-01-02T09:00:00Z",["alice@example.com","bob@example.com"]]`.
        assert_eq!(
            approved.digest,
            "sha256:ebfdec881647ee8e702638a92eb980d48b6a30af1d6ad767d1f4c7df4fdfd163"
        );
        assert_eq!(approved.approved_by, "alice@example.com");
        assert!(approved.changes(&s).is_empty(), "{:?}", approved.changes(&s));
        // A later approval by someone else changes nothing; one with a shorter TTL changes the expiry.
        s.approvals.push(entry("carol@example.com", None));
        assert!(approved.changes(&s).is_empty());
        let mut shorter = s.clone();
        shorter.approvals.push(entry("dave@example.com", Some(600)));
        assert_eq!(approved.changes(&shorter), ["spec.approvals.ttlSeconds"]);
        // A counted approver's entry gone (the CRD forbids it; a cluster without the rules does not).
        let mut gone = s.clone();
        gone.approvals.retain(|a| a.by != "bob@example.com");
        assert_eq!(approved.changes(&gone), ["spec.approvals"]);
        // A counted approver's TTL changed.
        let mut changed = s.clone();
        changed.approvals[0].ttl_seconds = Some(3600);
        assert_eq!(approved.changes(&changed), ["spec.approvals.ttlSeconds"]);
        // startAt moved or removed.
        let mut moved = s.clone();
        moved.start_at = Some("2026-01-01T09:00:00Z".into());
        assert_eq!(approved.changes(&moved), ["spec.startAt"]);
        moved.start_at = None;
        assert_eq!(approved.changes(&moved), ["spec.startAt"]);
        // The baseline's own fields are covered by its digest.
        let mut forged = approved.clone();
        forged.approvers.push("mallory@example.com".into());
        assert_eq!(forged.changes(&s), ["status.approved"]);
        let mut forged = approved.clone();
        forged.start_at = None;
        assert_eq!(forged.changes(&s)[0], "status.approved");
    }

    #[test]
    fn auto_approval_and_break_glass_record_their_system_actor() {
        let mut s = spec();
        s.approval = None;
        let auto = ApprovedSpec::record(&s, &[AUTO_APPROVAL_ACTOR.to_string()], None);
        // Known answer: SHA-256 of
        // `["v2","jane@example.com","central",["team-a"],3600,"system:auto-approval",null,null,["system:auto-approval"]]`.
        assert_eq!(
            auto.digest,
            "sha256:04491a104d6d95ad173c020b79fbe3d10b0155ac1fe6e7a8bea123054de91699"
        );
        assert_eq!(auto.approved_by, AUTO_APPROVAL_ACTOR);
        assert!(auto.changes(&s).is_empty(), "{:?}", auto.changes(&s));
        let bg = ApprovedSpec::record(&s, &[BREAK_GLASS_ACTOR.to_string()], None);
        assert_ne!(bg.digest, auto.digest);
        assert!(bg.changes(&s).is_empty());
        // A system actor never needs an approval entry; an approval TTL written afterwards does change it.
        s.approvals.push(entry("x@example.com", Some(600)));
        assert_eq!(bg.changes(&s), ["spec.approvals.ttlSeconds"]);
    }

    #[test]
    fn a_legacy_approval_with_a_schedule_gets_a_v2_baseline() {
        let mut s = spec();
        s.start_at = Some("2026-01-02T09:00:00Z".into());
        let approved = ApprovedSpec::record(&s, &["admin@example.com".to_string()], Some(1800));
        assert_eq!(approved.start_at.as_deref(), Some("2026-01-02T09:00:00Z"));
        assert!(approved.changes(&s).is_empty());
        let mut ttl = s.clone();
        ttl.approval.as_mut().unwrap().ttl_seconds = Some(900);
        assert_eq!(approved.changes(&ttl), ["spec.approvals.ttlSeconds"]);
        // A v1 baseline sees a startAt added after the approval.
        let v1 = ApprovedSpec::of(&spec()).unwrap();
        assert_eq!(v1.changes(&s), ["spec.startAt"]);
    }

    fn workload_scope() -> PodScope {
        PodScope {
            selector: None,
            workload: Some(WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: "payments-api".into(),
            }),
        }
    }

    fn selector_scope() -> PodScope {
        PodScope {
            selector: Some(PodSelector {
                match_labels: [("app".to_string(), "checkout".to_string())].into(),
                match_expressions: vec![PodSelectorRequirement {
                    key: "tier".into(),
                    operator: "NotIn".into(),
                    values: vec!["canary".into()],
                }],
            }),
            workload: None,
        }
    }

    #[test]
    fn a_role_or_pod_scope_gets_a_v3_baseline_that_names_them_when_changed() {
        let mut s = spec();
        s.approval = None;
        s.role = Some("logs".into());
        s.pod_scope = Some(workload_scope());
        s.approvals = vec![entry("alice@example.com", None)];
        let approved = ApprovedSpec::record(&s, &["alice@example.com".to_string()], None);
        // Known answer: SHA-256 of `["v3","jane@example.com","central",["team-a"],3600,"alice@example.com",
        // null,null,["alice@example.com"],"logs",[null,["Deployment","payments-api"]]]`.
        assert_eq!(
            approved.digest,
            "sha256:31242807100843c8ecc6030a88e85006f54cb7e4611207abb2615922846a1b30"
        );
        assert!(approved.changes(&s).is_empty(), "{:?}", approved.changes(&s));
        // The role changed, removed, or spelled out as the default: each is a change.
        for role in [Some("exec"), Some("debug"), None] {
            let mut changed = s.clone();
            changed.role = role.map(str::to_owned);
            assert_eq!(approved.changes(&changed), ["spec.role"], "{role:?}");
        }
        // The scope widened to a selector, to another workload, or removed.
        let mut other = workload_scope();
        other.workload.as_mut().unwrap().name = "payments-db".into();
        for scope in [Some(selector_scope()), Some(other), None] {
            let mut changed = s.clone();
            changed.pod_scope = scope.clone();
            assert_eq!(approved.changes(&changed), ["spec.podScope"], "{scope:?}");
        }
        // The baseline's role and scope are covered by its digest.
        let mut forged = approved.clone();
        forged.role = Some("exec".into());
        assert_eq!(forged.changes(&s)[0], "status.approved");
        let mut forged = approved.clone();
        forged.pod_scope = Some(selector_scope());
        assert_eq!(forged.changes(&s)[0], "status.approved");
        // A role alone, or a scope alone, is enough for v3; the legacy single approval too.
        let mut legacy = spec();
        legacy.pod_scope = Some(selector_scope());
        let v3 = ApprovedSpec::record(&legacy, &["admin@example.com".to_string()], Some(1800));
        assert_eq!(Some(v3.clone()), ApprovedSpec::of(&legacy));
        // `["v3","jane@example.com","central",["team-a"],3600,"admin@example.com",1800,null,[],null,
        // [[[["app","checkout"]],[["tier","NotIn",["canary"]]]],null]]`.
        assert_eq!(
            v3.digest,
            "sha256:d434fb6e687930cf7ed0c5ae47c0de8a4020898b6357c486809ee4df0f74ff91"
        );
        assert!(v3.changes(&legacy).is_empty());
        // Stored and read back (the status round trip), it still verifies.
        let back: ApprovedSpec = serde_json::from_value(serde_json::to_value(&approved).unwrap()).unwrap();
        assert_eq!(back, approved);
        assert!(back.changes(&s).is_empty());
    }

    #[test]
    fn baselines_recorded_before_roles_still_verify() {
        // A v1 and a v2 baseline as an earlier controller wrote them into the status: no role, no
        // podScope. Their digests must verify unchanged, and a request without role or scope shows no
        // change.
        let v1: ApprovedSpec = serde_json::from_value(serde_json::json!({
            "digest": "sha256:fb8033ac28bdfa551d8174b3199252f056c20a7e30cab490d1460ffc3685a488",
            "requester": "jane@example.com", "cluster": "central", "namespaces": ["team-a"],
            "ttlSeconds": 3600, "approvedBy": "admin@example.com", "approvalTtlSeconds": 1800
        }))
        .unwrap();
        assert!(v1.changes(&spec()).is_empty(), "{:?}", v1.changes(&spec()));
        let mut s = spec();
        s.approval = None;
        let v2: ApprovedSpec = serde_json::from_value(serde_json::json!({
            "digest": "sha256:04491a104d6d95ad173c020b79fbe3d10b0155ac1fe6e7a8bea123054de91699",
            "requester": "jane@example.com", "cluster": "central", "namespaces": ["team-a"],
            "ttlSeconds": 3600, "approvedBy": "system:auto-approval", "approvers": ["system:auto-approval"]
        }))
        .unwrap();
        assert!(v2.changes(&s).is_empty(), "{:?}", v2.changes(&s));
        // Serialized again, neither gains a role or podScope key.
        for b in [&v1, &v2] {
            let v = serde_json::to_value(b).unwrap();
            assert!(v.get("role").is_none() && v.get("podScope").is_none(), "{v}");
        }
        // A role or scope appearing on such a request afterwards is a change.
        s.role = Some("exec".into());
        assert_eq!(v2.changes(&s), ["spec.role"]);
        s.role = None;
        s.pod_scope = Some(selector_scope());
        assert_eq!(v2.changes(&s), ["spec.podScope"]);
    }

    #[test]
    fn the_phase_reason_comes_from_the_phase_condition() {
        let st: AccessRequestStatus = serde_json::from_value(serde_json::json!({
            "phase": "Denied", "message": "anything at all",
            "conditions": [
                {"type": "Submitted", "status": "True", "reason": "Submitted", "lastTransitionTime": "t"},
                {"type": "Denied", "status": "True", "reason": "PendingTimeout", "lastTransitionTime": "t"}
            ]
        }))
        .unwrap();
        assert_eq!(st.phase_reason(), Some(reasons::PENDING_TIMEOUT));
        assert_eq!(AccessRequestStatus::default().phase_reason(), None);
    }

    #[test]
    fn terminal_phases() {
        assert!(Phase::Expired.is_terminal() && Phase::Failed.is_terminal());
        assert!(!Phase::Active.is_terminal() && !Phase::Pending.is_terminal());
    }
}
