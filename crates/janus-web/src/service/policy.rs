//! Approval policies as the web applies them: the policy governing a request (from its namespaces'
//! metadata), the groups recorded with a person's decisions, who may approve, deny and acknowledge, and
//! the explanation shown to a person. The rules themselves are [`janus_api::rules::policy`]; the
//! controller evaluates the same functions and stays the authority.

use std::collections::BTreeSet;

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

/// Most groups the CRD keeps in one list (`spec.requesterGroups`, `approvals[].groups`,
/// `breakGlassReview.groups`): a longer list is refused by the API server (422).
pub const MAX_RECORDED_GROUPS: usize = 100;
/// Longest group name the CRD keeps, counted here in bytes: never more characters than the API server
/// counts, however it counts them.
pub const MAX_GROUP_NAME: usize = 256;

/// The groups recorded as `spec.requesterGroups` when `id` creates a request: those of the identity
/// provider's groups (never the web's own) that some policy names for requesters — `match.requesterGroups`,
/// `autoApprove.groups`, `breakGlass.groups` — which are all the controller judges a requester's groups
/// by. Recording every group would fail for people in hundreds of groups (see [`MAX_RECORDED_GROUPS`]).
pub fn requester_groups(config: &Config, id: &Identity) -> Vec<String> {
    let named: BTreeSet<&str> = config
        .policies
        .iter()
        .flat_map(|p| {
            let auto = p.auto_approve.iter().flat_map(|a| a.groups.iter());
            let glass = p.break_glass.iter().flat_map(|b| b.groups.iter());
            p.matches.requester_groups.iter().chain(auto).chain(glass)
        })
        .map(String::as_str)
        .collect();
    recordable(&id.email, "requester", id_groups(id), &named)
}

/// The groups recorded with `id`'s approval or break-glass review of a request on `namespaces`: those of
/// [`decision_groups`] that can make someone an approver — `adminGroups`, any policy's
/// `approvers.groups`, the `group:` entries of the namespaces' owners annotations — plus
/// [`JANUS_ADMINS_GROUP`] for admins. The controller judges the approval by exactly these.
pub fn recorded_decision_groups(config: &Config, id: &Identity, namespaces: &[NamespaceInfo]) -> Vec<String> {
    let owners: Vec<rules_policy::NamespaceOwners> = namespaces
        .iter()
        .filter_map(|n| {
            n.annotations
                .get(janus_api::policy::APPROVERS_ANNOTATION)
                .map(|v| rules_policy::parse_owners(&n.name, v))
        })
        .collect();
    let mut named: BTreeSet<&str> = config
        .admin_groups
        .iter()
        .chain(config.policies.iter().flat_map(|p| p.approvers.groups.iter()))
        .chain(owners.iter().flat_map(|o| o.groups.iter()))
        .map(String::as_str)
        .collect();
    named.insert(JANUS_ADMINS_GROUP);
    // The web's own admin judgement first: a cap must never cut it off.
    let mut groups = Vec::new();
    if id.is_admin {
        groups.push(JANUS_ADMINS_GROUP.to_string());
    }
    groups.extend(id_groups(id));
    recordable(&id.email, "approver", groups, &named)
}

/// `groups` kept in order when `named`, once each, within the CRD's limits (empty names and names longer
/// than [`MAX_GROUP_NAME`] can match no policy and are dropped; beyond [`MAX_RECORDED_GROUPS`] the rest is
/// dropped with a warning, so the request or decision is still written).
fn recordable(email: &str, role: &str, groups: Vec<String>, named: &BTreeSet<&str>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut kept: Vec<String> = groups
        .into_iter()
        .filter(|g| !g.is_empty() && g.len() <= MAX_GROUP_NAME && named.contains(g.as_str()))
        .filter(|g| seen.insert(g.clone()))
        .collect();
    if kept.len() > MAX_RECORDED_GROUPS {
        tracing::warn!(
            user = email,
            role,
            groups = kept.len(),
            kept = MAX_RECORDED_GROUPS,
            "more groups named by the policies than a request records; the rest are not recorded"
        );
        kept.truncate(MAX_RECORDED_GROUPS);
    }
    kept
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

/// Why `id` may not approve `ar` now, as shown to them ([`rules::actions::approve_refusal`]); `None`
/// when they may. `gov` is the governing policy (`Err` when the namespaces fall under different
/// policies).
pub fn approve_refusal(gov: &Result<Governing<'_>, PolicyError>, ar: &AccessRequest, id: &Identity) -> Option<Refusal> {
    let text = rules::actions::approve_refusal(super::requests::actor(id), &id_groups(id), ar, gov.as_ref().ok())?;
    // Someone who is no approver of an open request is refused as such (403); everything else is about
    // the request's state or an approval already given (409).
    let ineligible = open_for_approval(ar)
        && gov.as_ref().is_ok_and(|g| {
            matches!(
                g.eligibility(&ar.spec.requester, &id.email, &decision_groups(id)),
                Err(Ineligible::Requester | Ineligible::NotAnApprover { .. })
            )
        });
    Some(if ineligible {
        Refusal::NotEligible(text)
    } else if approved_by(ar, &id.email) {
        Refusal::Already(text)
    } else {
        Refusal::State(text)
    })
}

/// The identity provider's groups of `id` (the rules add [`JANUS_ADMINS_GROUP`] for admins themselves).
pub fn id_groups(id: &Identity) -> Vec<String> {
    crate::auth::idp_groups(id.groups.clone())
}

/// Why a person may not approve or acknowledge: the HTTP meaning of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not an approver of the policy, or the requester (403).
    NotEligible(String),
    /// Done by them (or someone) already (409).
    Already(String),
    /// The request's state does not take it (409).
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

/// Why `id` may not acknowledge `ar`'s break-glass activation now; `None` when they may. Only the
/// policy's approvers review (never the requester), once, after the request was activated under
/// break-glass. Who may is judged first (403), then the request's state (409).
pub fn why_not_acknowledge(
    gov: &Result<Governing<'_>, PolicyError>,
    ar: &AccessRequest,
    id: &Identity,
) -> Option<Refusal> {
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
        return Some(Refusal::NotEligible(format!(
            "only {} may acknowledge under policy {}",
            gov.describe_approvers(),
            gov.name
        )));
    }
    if ar.spec.break_glass.is_none() {
        return Some(Refusal::State("the request was not a break-glass activation".into()));
    }
    if let Some(r) = &ar.spec.break_glass_review {
        return Some(Refusal::Already(format!("{} already acknowledged it", r.by)));
    }
    if !break_glass_activated(ar) {
        return Some(Refusal::State("the break-glass request was never activated".into()));
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

/// The bound the controller caps `ar`'s total lifetime at ([`rules::ttl::lifetime_bound`]: the
/// `maxTtlSeconds` of the policy in `status.policy`, the break-glass rule's for a break-glass request,
/// else the global one).
pub fn lifetime_bound(config: &Config, ar: &AccessRequest) -> rules::ttl::LifetimeBound {
    rules::ttl::lifetime_bound(config, &ar.spec, ar.status.as_ref().and_then(|s| s.policy.as_ref()))
}

/// How many seconds an extension may still add to `ar`'s active access within [`lifetime_bound`] (its
/// lifetime counted from `spec.startAt`, else from activation, to its expiry); `None` when extensions may
/// pass the bound (`allowExtensionBeyondMaxTtl`, never for break-glass) or nothing is active yet.
pub fn extension_room(config: &Config, ar: &AccessRequest) -> Option<i64> {
    let bound = lifetime_bound(config, ar);
    if bound.extensions_beyond {
        return None;
    }
    let st = ar.status.as_ref()?;
    let started = start_at(ar).or_else(|| st.active_at.as_deref().and_then(rules::time::parse_time))?;
    let expires = st.expires_at.as_deref().and_then(rules::time::parse_time)?;
    let granted = (expires - started).num_seconds();
    Some((bound.max_ttl_seconds - granted).max(0))
}

/// Whether `ar` is a break-glass activation nobody reviewed yet.
pub fn awaiting_review(ar: &AccessRequest) -> bool {
    break_glass_activated(ar) && ar.spec.break_glass_review.is_none()
}

/// When `ar` is to start (`spec.startAt`), when set and parseable.
pub fn start_at(ar: &AccessRequest) -> Option<DateTime<Utc>> {
    ar.spec.start_at.as_deref().and_then(rules::time::parse_time)
}

#[cfg(test)]
mod tests {
    use janus_api::AccessRequestSpec;
    use janus_api::access_request::{ApprovalEntry, BreakGlass, BreakGlassReview};

    use super::*;
    use crate::auth::AuthSource;

    const YAML: &str = "namespace: janus\nadminEmails: [admin@example.com]\npolicies:\n- name: prod\n  match: {namespaces: [prod]}\n  approvers: {emails: [p1@example.com, p2@example.com], groups: [sre]}\n  approvalsRequired: 2\n";

    fn identity(email: &str, groups: &[&str], is_admin: bool) -> Identity {
        Identity {
            email: email.into(),
            name: email.into(),
            is_admin,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            auth: AuthSource::Proxy,
            csrf: String::new(),
            session: None,
            token: None,
        }
    }

    fn request(ns: &str, phase: Option<&str>) -> AccessRequest {
        let mut ar = AccessRequest::new(
            "r",
            AccessRequestSpec::new("dev@example.com", "central", vec![ns.into()], "r", 600),
        );
        if let Some(p) = phase {
            ar.status = serde_json::from_value(serde_json::json!({"phase": p})).expect("status");
        }
        ar
    }

    fn infos(ar: &AccessRequest) -> Vec<NamespaceInfo> {
        ar.spec
            .namespaces
            .iter()
            .map(|n| NamespaceInfo {
                name: n.clone(),
                ..Default::default()
            })
            .collect()
    }

    /// The groups recorded with a decision: the provider's (never one of the web's own) plus the admins
    /// group exactly when the web judged the person an admin.
    #[test]
    fn decisions_record_the_provider_groups_and_the_web_s_admin_judgement() {
        let cfg = Config::from_yaml(
            "namespace: janus\npolicies:\n- name: p\n  match: {requesterGroups: [dev, ops]}\n  approvers: {groups: [ops]}\n",
            "test",
        )
        .expect("config");
        let forged = identity("m@example.com", &["dev", "k8s-janus:admins"], false);
        assert_eq!(decision_groups(&forged), ["dev"]);
        assert_eq!(requester_groups(&cfg, &forged), ["dev"]);
        let admin = identity("a@example.com", &["ops"], true);
        assert_eq!(decision_groups(&admin), ["ops", JANUS_ADMINS_GROUP]);
        assert_eq!(requester_groups(&cfg, &admin), ["ops"]);
        assert_eq!(recorded_decision_groups(&cfg, &admin, &[]), [JANUS_ADMINS_GROUP, "ops"]);
    }

    /// Only the groups some rule names are recorded (the CRD keeps at most 100 names of 1–256
    /// characters): for requesters those of match.requesterGroups, autoApprove and breakGlass; for
    /// approvers adminGroups, approvers.groups and the owners annotations of the request's namespaces;
    /// empty and over-long names never; beyond 100 the rest is dropped.
    #[test]
    fn only_the_groups_that_matter_are_recorded_within_the_crd_s_limits() {
        let long = "l".repeat(300);
        let many: Vec<String> = (0..120).map(|i| format!("g{i:03}")).collect();
        let yaml = format!(
            "namespace: janus\nadminGroups: [admins]\npolicies:\n- name: p\n  match: {{requesterGroups: [m, \"{long}\"]}}\n  approvers: {{groups: [a1]}}\n  autoApprove: {{groups: [auto]}}\n  breakGlass: {{groups: [glass], maxTtlSeconds: 600}}\n- name: wide\n  match: {{namespaces: [wide]}}\n  approvers: {{groups: [{}]}}\n",
            many.join(", ")
        );
        let cfg = Config::from_yaml(&yaml, "test").expect("config");
        let mut groups: Vec<&str> = vec!["", "x", "m", "auto", "glass", "a1", "admins", "own", "m"];
        groups.push(&long);
        let person = identity("p@example.com", &groups, false);
        assert_eq!(requester_groups(&cfg, &person), ["m", "auto", "glass"]);
        let owned = NamespaceInfo {
            name: "team".into(),
            annotations: [(
                janus_api::policy::APPROVERS_ANNOTATION.to_string(),
                "group:own, x@example.com".to_string(),
            )]
            .into(),
            ..Default::default()
        };
        assert_eq!(recorded_decision_groups(&cfg, &person, &[]), ["a1", "admins"]);
        assert_eq!(
            recorded_decision_groups(&cfg, &person, &[owned]),
            ["a1", "admins", "own"]
        );
        let all: Vec<&str> = many.iter().map(String::as_str).collect();
        let member = identity("w@example.com", &all, true);
        let kept = recorded_decision_groups(&cfg, &member, &[]);
        assert_eq!(kept.len(), MAX_RECORDED_GROUPS);
        assert_eq!(
            (kept[0].as_str(), kept[1].as_str()),
            (JANUS_ADMINS_GROUP, "g000"),
            "the admin judgement is kept first"
        );
    }

    /// Refusals to approve carry their HTTP meaning: not an approver or the requester (403), already
    /// approved or no longer open (409).
    #[test]
    fn approval_refusals_are_classified() {
        let cfg = Config::from_yaml(YAML, "test").expect("config");
        let mut ar = request("prod", None);
        let gov = governing(&cfg, &ar, &infos(&ar));
        let p1 = identity("p1@example.com", &[], false);
        let sre = identity("s@example.com", &["sre"], false);
        let admin = identity("admin@example.com", &[], true);
        let dev = identity("dev@example.com", &["sre"], false);
        assert_eq!(approve_refusal(&gov, &ar, &p1), None);
        assert_eq!(approve_refusal(&gov, &ar, &sre), None, "by group");
        assert!(
            matches!(approve_refusal(&gov, &ar, &admin), Some(Refusal::NotEligible(m)) if m.contains("policy prod"))
        );
        assert!(
            matches!(approve_refusal(&gov, &ar, &dev), Some(Refusal::NotEligible(_))),
            "the requester"
        );
        ar.spec.approvals.push(ApprovalEntry {
            by: "P1@example.com".into(),
            at: "2026-01-01T00:00:00Z".into(),
            ttl_seconds: None,
            comment: String::new(),
            groups: vec![],
        });
        let gov = governing(&cfg, &ar, &infos(&ar));
        assert!(matches!(approve_refusal(&gov, &ar, &p1), Some(Refusal::Already(_))));
        assert_eq!(approve_refusal(&gov, &ar, &sre), None, "one of two: still open");
        let active = request("prod", Some("Active"));
        let gov = governing(&cfg, &active, &infos(&active));
        assert!(matches!(approve_refusal(&gov, &active, &p1), Some(Refusal::State(_))));
        // Under the default policy the admin approves, by the web's judgement.
        let plain = request("team-a", None);
        let gov = governing(&cfg, &plain, &infos(&plain));
        assert_eq!(approve_refusal(&gov, &plain, &admin), None);
        assert!(matches!(
            approve_refusal(&gov, &plain, &p1),
            Some(Refusal::NotEligible(_))
        ));
    }

    /// Only the policy's approvers acknowledge a break-glass activation, never the requester, once it
    /// happened, and only once.
    #[test]
    fn break_glass_reviews_are_for_approvers_once() {
        let cfg = Config::from_yaml(YAML, "test").expect("config");
        let p1 = identity("p1@example.com", &[], false);
        let dev = identity("dev@example.com", &["sre"], false);
        let admin = identity("admin@example.com", &[], true);
        let mut ar = request("prod", Some("Pending"));
        let gov = governing(&cfg, &ar, &infos(&ar));
        assert!(
            matches!(why_not_acknowledge(&gov, &ar, &p1), Some(Refusal::State(_))),
            "no break-glass"
        );
        ar.spec.break_glass = Some(BreakGlass {
            at: "2026-01-01T00:00:00Z".into(),
        });
        assert!(!awaiting_review(&ar), "never activated");
        assert!(matches!(why_not_acknowledge(&gov, &ar, &p1), Some(Refusal::State(_))));
        ar.status = serde_json::from_value(serde_json::json!({"phase": "Active", "policy": {
            "name": "prod", "approvalsRequired": 2, "approvalsGiven": 0, "breakGlass": true}}))
        .expect("status");
        assert!(awaiting_review(&ar));
        assert_eq!(why_not_acknowledge(&gov, &ar, &p1), None);
        assert!(matches!(
            why_not_acknowledge(&gov, &ar, &dev),
            Some(Refusal::NotEligible(_))
        ));
        assert!(
            matches!(why_not_acknowledge(&gov, &ar, &admin), Some(Refusal::NotEligible(m)) if m.contains("may acknowledge under policy prod"))
        );
        ar.spec.break_glass_review = Some(BreakGlassReview {
            by: "p2@example.com".into(),
            at: "2026-01-01T00:01:00Z".into(),
            comment: String::new(),
            groups: vec![],
        });
        assert!(!awaiting_review(&ar));
        assert!(matches!(why_not_acknowledge(&gov, &ar, &p1), Some(Refusal::Already(_))));
    }
}
