//! Approval policy evaluation: which policy governs a request, who may approve it, whether its quorum
//! is met, and whether it may start without a person (auto-approval, break-glass). One pure function
//! family used by the web (to authorize and explain) and the controller (the authority).
//!
//! SKELETON (lead, 2026-12-06): signatures and semantics are fixed here; P1 implements the bodies.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::AccessRequestSpec;
use crate::config::Config;
use crate::policy::{PolicyConfig, ReasonRule};

/// A requested namespace as read from the target cluster: the metadata policies match on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The namespace's name.
    pub name: String,
    /// Its labels (for `match.namespaceSelector`).
    pub labels: BTreeMap<String, String>,
    /// Its annotations (for [`crate::policy::APPROVERS_ANNOTATION`]).
    pub annotations: BTreeMap<String, String>,
}

/// What policy evaluation reads of a request.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    /// Target cluster.
    pub cluster: &'a str,
    /// Requester email.
    pub requester: &'a str,
    /// Requester groups recorded at creation.
    pub requester_groups: &'a [String],
    /// Access role ([`crate::policy::DEFAULT_ROLE`] until access scopes land).
    pub role: &'a str,
    /// Requested TTL.
    pub ttl_seconds: i64,
    /// The reason given.
    pub reason: &'a str,
    /// Requested namespaces with their metadata, in request order.
    pub namespaces: &'a [NamespaceInfo],
    /// When the request was created: auto-approval windows are judged at this instant.
    pub created: DateTime<Utc>,
    /// Whether the requester asked for break-glass activation.
    pub break_glass: bool,
}

/// Why a request cannot be governed by any single policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The namespaces fall under different policies; the request must be split.
    #[error("the namespaces fall under different approval policies ({}); request them separately", .0.iter().map(|(ns, p)| format!("{ns}: {p}")).collect::<Vec<_>>().join(", "))]
    Conflict(Vec<(String, String)>),
}

/// The owners one namespace names in its approvers annotation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceOwners {
    /// The namespace.
    pub namespace: String,
    /// Owner emails (lower-cased).
    pub emails: Vec<String>,
    /// Owner groups.
    pub groups: Vec<String>,
}

/// The policy governing one request, resolved against its namespaces.
#[derive(Debug, Clone)]
pub struct Governing<'a> {
    /// The policy's name, or [`crate::policy::DEFAULT_POLICY`].
    pub name: String,
    /// The configured policy; `None` for the default.
    pub policy: Option<&'a PolicyConfig>,
    /// Distinct eligible approvals needed.
    pub approvals_required: u32,
    /// Approvers by email (lower-cased); for the default policy `adminEmails`.
    pub approver_emails: Vec<String>,
    /// Approvers by group; for the default policy `adminGroups` and [`crate::policy::JANUS_ADMINS_GROUP`].
    pub approver_groups: Vec<String>,
    /// Per-namespace owners (only with `approvers.namespaceOwners`, only namespaces with the annotation).
    pub owners: Vec<NamespaceOwners>,
    /// Longest TTL allowed.
    pub max_ttl_seconds: i64,
    /// TTLs an approver can pick.
    pub approval_ttl_options: Vec<i64>,
    /// Pending expiry in seconds (0 disables).
    pub pending_expiry_seconds: i64,
    /// The reason pattern, if any.
    pub reason: Option<&'a ReasonRule>,
    /// The requester may approve their own request (only the default policy, `allowSelfApproval`).
    pub self_approval: bool,
}

/// Why a person's approval does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ineligible {
    /// The requester never counts (unless the default policy allows self-approval).
    Requester,
    /// Not named by the policy, its groups, or an owners annotation.
    NotAnApprover {
        /// The policy's name.
        policy: String,
    },
    /// Already approved this request; a second approval by the same person does not count.
    AlreadyApproved,
}

/// The approvals of a request counted against its policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Distinct eligible approvers, in order (lower-cased emails).
    pub counted: Vec<String>,
    /// Approvals that do not count, with why.
    pub ignored: Vec<(String, Ineligible)>,
    /// Distinct eligible approvals needed.
    pub required: u32,
    /// Namespaces with owners none of whom approved yet.
    pub missing_owners: Vec<String>,
}

/// How a request came to be approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovedVia {
    /// The quorum of eligible approvals is present.
    Quorum,
    /// The policy's `autoApprove` conditions held at creation.
    Auto,
    /// The requester broke glass under the policy's `breakGlass` rule.
    BreakGlass,
}

/// What the controller does with a request, by its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The request breaks a rule of its policy (reason pattern, TTL above the policy's maximum, namespaces
    /// under different policies, break-glass not allowed): deny it while pending, fail it once approved.
    Invalid(String),
    /// Waiting for approvals.
    Pending(Tally),
    /// May start (at `startAt` if set).
    Approved {
        /// Why.
        via: ApprovedVia,
        /// The approvals counted (empty for auto-approval and break-glass).
        tally: Tally,
    },
}

impl<'a> RequestFacts<'a> {
    /// The facts of `spec`, with its namespaces' metadata (in `spec.namespaces` order) and creation time.
    pub fn of(spec: &'a AccessRequestSpec, namespaces: &'a [NamespaceInfo], created: DateTime<Utc>) -> Self {
        Self {
            cluster: &spec.cluster,
            requester: &spec.requester,
            requester_groups: &spec.requester_groups,
            role: crate::policy::DEFAULT_ROLE,
            ttl_seconds: spec.ttl_seconds,
            reason: &spec.reason,
            namespaces,
            created,
            break_glass: spec.break_glass.is_some(),
        }
    }
}

/// The policy governing a request: for each namespace the first configured policy whose criteria all
/// hold, else the default. Namespaces under different policies are a [`PolicyError::Conflict`].
pub fn govern<'a>(config: &'a Config, facts: &RequestFacts<'_>) -> Result<Governing<'a>, PolicyError> {
    let _ = (config, facts);
    todo!("P1")
}

impl Governing<'_> {
    /// Whether a person with `email` and `groups` may approve a request by `requester` under this policy.
    pub fn eligibility(&self, requester: &str, email: &str, groups: &[String]) -> Result<(), Ineligible> {
        let _ = (requester, email, groups);
        todo!("P1")
    }

    /// The approvals of `spec` (`spec.approval` first, then `spec.approvals`) counted against this policy.
    pub fn tally(&self, spec: &AccessRequestSpec) -> Tally {
        let _ = spec;
        todo!("P1")
    }

    /// The request's own rules: reason pattern, TTL within the policy's bounds, break-glass allowed when
    /// asked for. `Err` is the message shown to the requester and written to the status.
    pub fn check_request(&self, facts: &RequestFacts<'_>, config: &Config) -> Result<(), String> {
        let _ = (facts, config);
        todo!("P1")
    }

    /// Whether the policy's `autoApprove` conditions hold for the request (window judged at creation in
    /// `displayTimezone`). `Err` says which condition failed.
    pub fn auto_approval(&self, facts: &RequestFacts<'_>, config: &Config) -> Result<(), String> {
        let _ = (facts, config);
        todo!("P1")
    }

    /// Whether the requester may break glass under this policy for the TTL asked. `Err` says why not.
    pub fn break_glass(&self, facts: &RequestFacts<'_>) -> Result<(), String> {
        let _ = facts;
        todo!("P1")
    }
}

/// The verdict on a request: invalid, pending with its tally, or approved (by quorum, auto-approval or
/// break-glass). The controller activates only on [`Verdict::Approved`], re-evaluated on every reconcile.
pub fn evaluate(config: &Config, spec: &AccessRequestSpec, facts: &RequestFacts<'_>) -> Verdict {
    let _ = (config, spec, facts);
    todo!("P1")
}
