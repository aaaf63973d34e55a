//! The `policies:` configuration: who approves which requests, how many must, and when access may start
//! without a person (auto-approval, break-glass). Evaluation lives in [`crate::rules::policy`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Namespace annotation naming a namespace's owners, who approve requests for it under a policy with
/// `approvers.namespaceOwners: true`. A comma-separated list of emails and `group:<name>` entries, e.g.
/// `"group:payments-leads, alice@example.com"`.
pub const APPROVERS_ANNOTATION: &str = "k8s-janus.opsmode.io/approvers";

/// The group the web records for a person it judged an admin by means the controller cannot see (a local
/// admin account, `adminGroups`). The default policy's approvers include it; configured policies may name
/// it. The web never takes it from an identity provider.
pub const JANUS_ADMINS_GROUP: &str = "k8s-janus:admins";

/// Name under which the behaviour without a matching policy is shown: admins approve, one approval.
pub const DEFAULT_POLICY: &str = "default";

/// The only access role until access scopes add more.
pub const DEFAULT_ROLE: &str = "exec";

/// One approval policy. Policies are evaluated in order per requested namespace; the first that matches
/// governs that namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unique name, shown on the request page and recorded in the status (`default` is reserved).
    pub name: String,
    /// What the policy is for, shown to requesters and approvers.
    #[serde(default)]
    pub description: String,
    /// Which requests it governs. Every criterion given must hold; an empty list matches anything.
    #[serde(default, rename = "match")]
    pub matches: PolicyMatch,
    /// Who may approve.
    #[serde(default)]
    pub approvers: Approvers,
    /// Distinct eligible approvals needed (the requester never counts).
    #[serde(default = "one")]
    pub approvals_required: u32,
    /// Longest TTL under this policy, instead of the global `maxTtlSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ttl_seconds: Option<i64>,
    /// TTLs an approver can pick, instead of the global `approvalTtlOptions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_ttl_options: Option<Vec<i64>>,
    /// Pending requests are denied after this long, instead of the global `pendingExpirySeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_expiry_seconds: Option<i64>,
    /// A pattern the request's reason must match (e.g. a ticket id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonRule>,
    /// Approval without a person, under conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<AutoApprove>,
    /// Immediate activation by given requesters, reviewed afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassRule>,
}

fn one() -> u32 {
    1
}

/// The criteria of a policy. Empty lists match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyMatch {
    /// Cluster names or globs (`prod-*`).
    #[serde(default)]
    pub clusters: Vec<String>,
    /// Namespace names or globs.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// A label selector on the Namespace objects (ANDed with `namespaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Requester emails or globs (`*@contractors.example.com`), case-insensitive.
    #[serde(default)]
    pub requester_emails: Vec<String>,
    /// Requester groups (any of them).
    #[serde(default)]
    pub requester_groups: Vec<String>,
    /// Access roles (see [`DEFAULT_ROLE`]).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A Kubernetes label selector: `matchLabels` and `matchExpressions`, ANDed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must have exactly these values.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based requirement of a [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` and `NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// Who may approve under a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approvers {
    /// Approvers by email (case-insensitive).
    #[serde(default)]
    pub emails: Vec<String>,
    /// Approvers by group.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Also the owners named by each requested namespace's [`APPROVERS_ANNOTATION`]; a request across
    /// several namespaces then needs an approval from the owners of each.
    #[serde(default)]
    pub namespace_owners: bool,
}

/// A pattern the reason must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReasonRule {
    /// A regular expression (Rust `regex` syntax) searched in the reason.
    pub pattern: String,
    /// What the pattern asks for, shown in the form (e.g. "a ticket id such as OPS-1234").
    #[serde(default)]
    pub description: String,
}

/// Conditions under which a request is approved without a person. All given conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoApprove {
    /// Requesters in any of these groups qualify.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Requesters with these emails qualify.
    #[serde(default)]
    pub emails: Vec<String>,
    /// Only requests asking for at most this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ttl_seconds: Option<i64>,
    /// Only requests created within one of these weekly windows (in `displayTimezone`); empty: any time.
    #[serde(default)]
    pub windows: Vec<TimeWindow>,
}

/// A weekly time window in `displayTimezone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeWindow {
    /// Days it opens on: `Mon` … `Sun`; empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Local opening time, `HH:MM`.
    pub start: String,
    /// Local closing time, `HH:MM` (exclusive); earlier than `start` means the window runs past midnight.
    pub end: String,
}

/// Who may activate at once, and for how long.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakGlassRule {
    /// Requesters in any of these groups may break glass.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Requesters with these emails may break glass.
    #[serde(default)]
    pub emails: Vec<String>,
    /// The longest break-glass access.
    #[serde(default = "default_break_glass_ttl")]
    pub max_ttl_seconds: i64,
}

fn default_break_glass_ttl() -> i64 {
    3600
}
