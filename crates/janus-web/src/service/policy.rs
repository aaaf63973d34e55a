//! Approval policies as the web applies them: the policy governing a request (from its namespaces'
//! metadata), the groups recorded with a person's decisions, who may approve, deny and acknowledge, and
//! the explanation shown to a person. The rules themselves are [`janus_api::rules::policy`]; the
//! controller evaluates the same functions and stays the authority.

use chrono::{DateTime, Utc};
use janus_api::AccessRequest;
use janus_api::config::Config;
use janus_api::policy::JANUS_ADMINS_GROUP;
use janus_api::rules::policy::{self as rules_policy, Governing, Ineligible, NamespaceInfo, PolicyError, RequestFacts};
use janus_api::rules::{self, lifecycle};

use super::requests::created;
use crate::auth::Identity;

/// The groups the web records with `id`'s approvals and reviews, and judges their eligibility by: the
/// identity provider's groups (never one in the `k8s-janus:` namespace) plus
/// [`JANUS_ADMINS_GROUP`] when the web judged the person an admin (local admin account, `adminEmails`,
/// `adminGroups`), which the default policy's approvers include.
pub fn decision_groups(id: &Identity) -> Vec<String> {
    let mut groups = crate::auth::idp_groups(id.groups.clone());
    if id.is_admin {
        groups.push(JANUS_ADMINS_GROUP.to_string());
    }
    groups
}

/// The groups recorded as `spec.requesterGroups` when `id` creates a request: the identity provider's,
/// without the web's own.
pub fn requester_groups(id: &Identity) -> Vec<String> {
    crate::auth::idp_groups(id.groups.clone())
}

/// The facts of `ar` for policy evaluation, with its namespaces' metadata. A request not yet stored (no
/// creation time) is judged now.
pub fn facts<'a>(ar: &'a AccessRequest, namespaces: &'a [NamespaceInfo]) -> RequestFacts<'a> {
    RequestFacts::of(&ar.spec, namespaces, created(ar).unwrap_or_else(Utc::now))
}

/// The policy governing `ar`, given its namespaces' metadata (in `spec.namespaces` order).
pub fn governing<'a>(
    config: &'a Config,
    ar: &AccessRequest,
    namespaces: &[NamespaceInfo],
) -> Result<Governing<'a>, PolicyError> {
    rules_policy::govern(config, &facts(ar, namespaces))
}

/// Whether `email` approved `ar` already (`spec.approval` or an entry of `spec.approvals`).
pub fn approved_by(ar: &AccessRequest, email: &str) -> bool {
    ar.spec
        .approval
        .as_ref()
        .is_some_and(|a| a.by.eq_ignore_ascii_case(email))
        || ar.spec.approvals.iter().any(|a| a.by.eq_ignore_ascii_case(email))
}

/// Whether `id` is an approver of the policy (named by email or group, an owner of one of the
/// namespaces, or an admin under the default policy), the requester included when self-approval applies.
pub fn is_policy_approver(gov: &Governing<'_>, ar: &AccessRequest, id: &Identity) -> bool {
    match gov.eligibility(&ar.spec.requester, &id.email, &decision_groups(id)) {
        Ok(()) | Err(Ineligible::AlreadyApproved) => true,
        // The requester is an approver only where self-approval applies, and then eligibility says so.
        Err(Ineligible::Requester) | Err(Ineligible::NotAnApprover { .. }) => false,
    }
}

/// Whether `ar` is still open to approvals: pending, no denial, withdrawal or revocation.
pub fn open_for_approval(ar: &AccessRequest) -> bool {
    rules::phase_of(ar) == janus_api::Phase::Pending && lifecycle::ending(&ar.spec).is_none()
}

/// Why `id` may not approve `ar` now, as shown to them; `None` when they may. `gov` is the governing
/// policy (`Err` when the namespaces fall under different policies).
pub fn why_not_approve(gov: &Result<Governing<'_>, PolicyError>, ar: &AccessRequest, id: &Identity) -> Option<Refusal> {
    if rules::phase_of(ar).is_terminal() {
        return Some(Refusal::State(format!(
            "the request has already ended ({:?})",
            rules::phase_of(ar)
        )));
    }
    if !open_for_approval(ar) {
        return Some(Refusal::State("the request is no longer pending".into()));
    }
    let gov = match gov {
        Ok(g) => g,
        Err(e) => return Some(Refusal::State(e.to_string())),
    };
    match gov.eligibility(&ar.spec.requester, &id.email, &decision_groups(id)) {
        Err(Ineligible::Requester) => {
            return Some(Refusal::NotEligible("you cannot approve your own request".into()));
        }
        Err(Ineligible::NotAnApprover { .. }) => {
            return Some(Refusal::NotEligible(not_an_approver(gov)));
        }
        Err(Ineligible::AlreadyApproved) => {
            return Some(Refusal::Already("you already approved this request".into()));
        }
        Ok(()) => {}
    }
    if approved_by(ar, &id.email) {
        return Some(Refusal::Already("you already approved this request".into()));
    }
    None
}

/// Why a person may not approve: the HTTP meaning of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an approver of the policy, or the requester (403).
    NotEligible(String),
    /// Approved by them already (409).
    Already(String),
    /// The request's state does not take approvals (409).
    State(String),
}

impl Refusal {
    /// The text shown to the person.
    pub fn message(&self) -> &str {
        match self {
            Refusal::NotEligible(m) | Refusal::Already(m) | Refusal::State(m) => m,
        }
    }
}

/// "only members of payments-leads or alice@example.com may approve under policy prod", naming every way
/// to be an approver of `gov`.
pub fn not_an_approver(gov: &Governing<'_>) -> String {
    let mut who: Vec<String> = Vec::new();
    let groups: Vec<&str> = gov
        .approver_groups
        .iter()
        .filter(|g| g.as_str() != JANUS_ADMINS_GROUP)
        .map(String::as_str)
        .collect();
    if gov.approver_groups.iter().any(|g| g == JANUS_ADMINS_GROUP) {
        who.push("admins".into());
    }
    if !groups.is_empty() {
        who.push(format!("members of {}", groups.join(", ")));
    }
    who.extend(gov.approver_emails.iter().cloned());
    for o in &gov.owners {
        let mut names: Vec<String> = o.groups.iter().map(|g| format!("members of {g}")).collect();
        names.extend(o.emails.iter().cloned());
        if !names.is_empty() {
            who.push(format!("the owners of {} ({})", o.namespace, names.join(", ")));
        }
    }
    if who.is_empty() {
        return format!("nobody may approve under policy {}", gov.name);
    }
    format!("only {} may approve under policy {}", join_or(&who), gov.name)
}

/// `a`, `a or b`, `a, b or c`.
fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Whether `id` may deny `ar` now: admins, and the policy's eligible approvers (not the requester, who
/// withdraws instead).
pub fn may_deny(gov: &Result<Governing<'_>, PolicyError>, ar: &AccessRequest, id: &Identity) -> bool {
    if !open_for_approval(ar) {
        return false;
    }
    id.is_admin || gov.as_ref().is_ok_and(|g| is_policy_approver(g, ar, id))
}

/// Why `id` may not acknowledge `ar`'s break-glass activation now; `None` when they may. Only the
/// policy's approvers review (not the requester), once, after the request was activated under
/// break-glass.
pub fn why_not_acknowledge(
    gov: &Result<Governing<'_>, PolicyError>,
    ar: &AccessRequest,
    id: &Identity,
) -> Option<Refusal> {
    if ar.spec.break_glass.is_none() {
        return Some(Refusal::State("the request was not a break-glass activation".into()));
    }
    if let Some(r) = &ar.spec.break_glass_review {
        return Some(Refusal::Already(format!("{} already acknowledged it", r.by)));
    }
    if !break_glass_activated(ar) {
        return Some(Refusal::State("the break-glass request was never activated".into()));
    }
    let gov = match gov {
        Ok(g) => g,
        Err(e) => return Some(Refusal::State(e.to_string())),
    };
    if rules::actions::is_requester(super::requests::actor(id), ar) {
        return Some(Refusal::NotEligible(
            "you cannot review your own break-glass activation".into(),
        ));
    }
    if !is_policy_approver(gov, ar, id) {
        return Some(Refusal::NotEligible(
            not_an_approver(gov).replace("may approve under", "may acknowledge under"),
        ));
    }
    None
}

/// Whether the controller activated `ar` under break-glass (its status says so, or it got past Pending
/// with a break-glass record and no human approval).
pub fn break_glass_activated(ar: &AccessRequest) -> bool {
    if ar.spec.break_glass.is_none() {
        return false;
    }
    let st = ar.status.as_ref();
    if st.and_then(|s| s.policy.as_ref()).is_some_and(|p| p.break_glass) {
        return true;
    }
    st.is_some_and(|s| s.active_at.is_some())
}

/// Whether `ar` is a break-glass activation nobody reviewed yet.
pub fn awaiting_review(ar: &AccessRequest) -> bool {
    break_glass_activated(ar) && ar.spec.break_glass_review.is_none()
}

/// When `ar` is to start (`spec.startAt`), when set and parseable.
pub fn start_at(ar: &AccessRequest) -> Option<DateTime<Utc>> {
    ar.spec.start_at.as_deref().and_then(rules::time::parse_time)
}
