//! Who may take which action on a request, given its phase and decisions: the web offers exactly these,
//! and refuses everything else.

use serde::Serialize;

use super::lifecycle::{phase_of, undecided};
use super::policy::{Governing, Ineligible, same_email};
use crate::access_request::BREAK_GLASS_ACTOR;
use crate::config::Config;
use crate::policy::JANUS_ADMINS_GROUP;
use crate::{AccessRequest, Phase};

/// The person acting.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// Their email (compared case-insensitively with the requester).
    pub email: &'a str,
    /// Whether they are an admin (an approver).
    pub is_admin: bool,
}

/// The configuration switches that change who may act.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionPolicy {
    /// `allowSelfApproval`: an admin may approve their own request.
    pub allow_self_approval: bool,
    /// `webui.adminTerminalAccess`: admins may open terminals on others' active grants.
    pub admin_terminal_access: bool,
}

impl ActionPolicy {
    /// The switches as configured.
    pub fn of(config: &Config) -> Self {
        Self {
            allow_self_approval: config.allow_self_approval,
            admin_terminal_access: config.web.admin_terminal_access,
        }
    }
}

/// What a person may do with a request right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Actions {
    /// Approve (admin, pending, not one's own unless allowed).
    pub approve: bool,
    /// Deny (admin, pending).
    pub deny: bool,
    /// Revoke (admin, approved or active).
    pub revoke: bool,
    /// Extend (admin, active).
    pub extend: bool,
    /// Withdraw (requester, not ended).
    pub withdraw: bool,
    /// Open a terminal (requester, or admins when configured; active).
    pub terminal: bool,
    /// Acknowledge a break-glass activation (an eligible approver of the request's policy, while the
    /// activation is unreviewed). Only [`allowed_under`] grants it.
    pub acknowledge: bool,
}

/// Whether `actor` asked for `ar`.
pub fn is_requester(actor: Actor<'_>, ar: &AccessRequest) -> bool {
    same_email(&ar.spec.requester, actor.email)
}

/// Whether `actor` may see `ar` at all: admins see everything, requesters their own.
pub fn may_view(actor: Actor<'_>, ar: &AccessRequest) -> bool {
    actor.is_admin || is_requester(actor, ar)
}

/// The actions `actor` may take on `ar`. A decision already written closes the actions it would race
/// with, in the same precedence the controller applies ([`super::ending`]).
///
/// This is the rule without approval policies (admins approve, one approval); [`allowed_under`] judges
/// approvals by the request's policy.
pub fn allowed(actor: Actor<'_>, ar: &AccessRequest, policy: ActionPolicy) -> Actions {
    let p = phase_of(ar);
    let own = is_requester(actor, ar);
    // A `spec.approval` is the one approval of the default policy: it closes approving and denying
    // (the CRD refuses a denial beside it).
    let pending = p == Phase::Pending && undecided(&ar.spec) && ar.spec.approval.is_none();
    let live = is_live(ar, p);
    Actions {
        approve: actor.is_admin && pending && (!own || policy.allow_self_approval),
        deny: actor.is_admin && pending,
        revoke: actor.is_admin && live,
        extend: actor.is_admin && live && p == Phase::Active,
        withdraw: own && !p.is_terminal() && ar.spec.withdrawal.is_none() && ar.spec.revocation.is_none(),
        terminal: p == Phase::Active && live && (own || (actor.is_admin && policy.admin_terminal_access)),
        acknowledge: false,
    }
}

/// Approved and not ended by a decision: access exists, is being issued or is scheduled.
fn is_live(ar: &AccessRequest, p: Phase) -> bool {
    matches!(p, Phase::Scheduled | Phase::Approved | Phase::Active)
        && ar.spec.revocation.is_none()
        && ar.spec.withdrawal.is_none()
}

/// The groups a person's approval is judged with: their identity-provider groups, plus
/// [`JANUS_ADMINS_GROUP`] when the web judged them an admin (exactly what it records in their approval).
fn judged_groups(actor: Actor<'_>, groups: &[String]) -> Vec<String> {
    let mut g = groups.to_vec();
    if actor.is_admin && !g.iter().any(|x| x == JANUS_ADMINS_GROUP) {
        g.push(JANUS_ADMINS_GROUP.to_owned());
    }
    g
}

/// Whether `actor` already has an approval on `ar` (`spec.approval` or an entry of `spec.approvals`).
fn approved_by(actor: Actor<'_>, ar: &AccessRequest) -> bool {
    ar.spec.approval.iter().any(|a| same_email(&a.by, actor.email))
        || ar.spec.approvals.iter().any(|a| same_email(&a.by, actor.email))
}

/// Why `actor` cannot approve `ar` under `governing` (`None`: the request's policy could not be
/// determined, e.g. its namespaces fall under different policies); `Ok` when they can.
fn approve_check(
    actor: Actor<'_>,
    groups: &[String],
    ar: &AccessRequest,
    governing: Option<&Governing<'_>>,
) -> Result<(), String> {
    if !(phase_of(ar) == Phase::Pending && undecided(&ar.spec)) {
        return Err("the request is no longer pending".into());
    }
    let Some(g) = governing else {
        return Err("the request's approval policy cannot be determined, so nobody can approve it".into());
    };
    match g.eligibility(&ar.spec.requester, actor.email, &judged_groups(actor, groups)) {
        Err(Ineligible::Requester) => Err("you asked for it".into()),
        Err(Ineligible::NotAnApprover { policy }) => Err(format!(
            "only {} may approve under policy {policy}",
            g.describe_approvers()
        )),
        Err(Ineligible::AlreadyApproved) => Err("you already approved".into()),
        Ok(()) if approved_by(actor, ar) => Err("you already approved".into()),
        Ok(()) => Ok(()),
    }
}

/// Why `actor` (with identity-provider `groups`) cannot approve `ar` under its policy `governing`, in
/// words for the request page (`you asked for it`, `you already approved`, `only members of
/// payments-leads or alice@example.com may approve under policy prod`, `the request is no longer
/// pending`); `None` when they can.
pub fn approve_refusal(
    actor: Actor<'_>,
    groups: &[String],
    ar: &AccessRequest,
    governing: Option<&Governing<'_>>,
) -> Option<String> {
    approve_check(actor, groups, ar, governing).err()
}

/// The actions `actor` (with identity-provider `groups`) may take on `ar` under its approval policy
/// `governing` (`None` when it could not be determined: nobody approves or acknowledges then).
///
/// - approve: an eligible approver of the policy ([`Governing::eligibility`]) who has not approved yet,
///   while the request is pending (approvals so far do not close it: a quorum may need more);
/// - deny: admins and eligible approvers, while pending and without a `spec.approval` (the CRD refuses a
///   denial beside it);
/// - acknowledge: an eligible approver, on a break-glass request not yet reviewed, once the controller
///   activated it ([`break_glass_activated`]);
/// - revoke: admins and eligible approvers, while approved, scheduled or active (taking access back is
///   always safe); extend and terminal as in [`allowed`].
///
/// An admin is judged with [`JANUS_ADMINS_GROUP`] added to `groups`, as the web records it.
pub fn allowed_under(
    actor: Actor<'_>,
    groups: &[String],
    ar: &AccessRequest,
    governing: Option<&Governing<'_>>,
    policy: ActionPolicy,
) -> Actions {
    let p = phase_of(ar);
    let own = is_requester(actor, ar);
    let live = is_live(ar, p);
    let eligible = governing.is_some_and(|g| {
        g.eligibility(&ar.spec.requester, actor.email, &judged_groups(actor, groups))
            .is_ok()
    });
    let pending = p == Phase::Pending && undecided(&ar.spec);
    Actions {
        approve: approve_check(actor, groups, ar, governing).is_ok(),
        deny: (actor.is_admin || eligible) && pending && ar.spec.approval.is_none(),
        revoke: (actor.is_admin || eligible) && live,
        extend: actor.is_admin && live && p == Phase::Active,
        withdraw: own && !p.is_terminal() && ar.spec.withdrawal.is_none() && ar.spec.revocation.is_none(),
        terminal: p == Phase::Active && live && (own || (actor.is_admin && policy.admin_terminal_access)),
        acknowledge: eligible
            && ar.spec.break_glass.is_some()
            && ar.spec.break_glass_review.is_none()
            && break_glass_activated(ar, p),
    }
}

/// Whether the controller activated `ar` under its policy's break-glass rule (so there is an activation
/// to review): `status.policy.breakGlass`, or, for a request that has had access (Active, Expired,
/// Revoked), the break-glass approval baseline ([`BREAK_GLASS_ACTOR`]). A break-glass request denied as
/// not allowed, or still pending, was never activated: there is nothing to acknowledge.
pub fn break_glass_activated(ar: &AccessRequest, phase: Phase) -> bool {
    let Some(status) = ar.status.as_ref() else {
        return false;
    };
    status.policy.as_ref().is_some_and(|p| p.break_glass)
        || (matches!(phase, Phase::Active | Phase::Expired | Phase::Revoked)
            && status
                .approved
                .as_ref()
                .is_some_and(|a| a.approvers.iter().any(|x| x == BREAK_GLASS_ACTOR)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccessRequestSpec, AccessRequestStatus};

    fn request(phase: Phase) -> AccessRequest {
        let mut ar = AccessRequest::new(
            "r",
            AccessRequestSpec::new("Dev@Example.com", "local", vec!["default".into()], "r", 3600),
        );
        ar.status = Some(AccessRequestStatus {
            phase,
            ..Default::default()
        });
        ar
    }

    const DEV: Actor<'static> = Actor {
        email: "dev@example.com",
        is_admin: false,
    };
    const ADMIN: Actor<'static> = Actor {
        email: "admin@example.com",
        is_admin: true,
    };
    const SELF_ADMIN: Actor<'static> = Actor {
        email: "dev@example.com",
        is_admin: true,
    };
    const OTHER: Actor<'static> = Actor {
        email: "other@example.com",
        is_admin: false,
    };

    #[test]
    fn pending_requests() {
        let ar = request(Phase::Pending);
        let p = ActionPolicy::default();
        let a = allowed(ADMIN, &ar, p);
        assert!(a.approve && a.deny && !a.revoke && !a.extend && !a.withdraw && !a.terminal);
        let d = allowed(DEV, &ar, p);
        assert_eq!(
            d,
            Actions {
                withdraw: true,
                ..Default::default()
            }
        );
        assert_eq!(allowed(OTHER, &ar, p), Actions::default());
        // Self-approval only when configured; denial of one's own request is always possible.
        let s = allowed(SELF_ADMIN, &ar, p);
        assert!(!s.approve && s.deny && s.withdraw);
        let s = allowed(
            SELF_ADMIN,
            &ar,
            ActionPolicy {
                allow_self_approval: true,
                ..p
            },
        );
        assert!(s.approve);
        assert!(may_view(DEV, &ar) && may_view(ADMIN, &ar) && !may_view(OTHER, &ar));
    }

    #[test]
    fn emails_are_compared_in_one_normalised_form() {
        // Unicode lower-casing on both sides, as everywhere else: `Å` and `å` are the same person.
        let mut ar = request(Phase::Pending);
        ar.spec.requester = " Åsa@Example.com".into();
        let asa = Actor {
            email: "åsa@example.com ",
            is_admin: true,
        };
        assert!(is_requester(asa, &ar));
        let a = allowed(asa, &ar, ActionPolicy::default());
        assert!(a.withdraw && !a.approve, "{a:?}");
        ar.spec.approvals = vec![crate::ApprovalEntry {
            by: "ÅSA@example.com".into(),
            at: "2026-01-01T00:00:00Z".into(),
            ttl_seconds: None,
            comment: String::new(),
            groups: vec![],
        }];
        assert!(approved_by(asa, &ar));
    }

    #[test]
    fn a_written_decision_closes_racing_actions() {
        let mut ar = request(Phase::Pending);
        ar.spec.approval =
            Some(serde_json::from_value(serde_json::json!({"by": "a@x", "at": "2026-01-01T00:00:00Z"})).unwrap());
        let a = allowed(ADMIN, &ar, ActionPolicy::default());
        assert!(!a.approve && !a.deny, "already decided");
        let mut active = request(Phase::Active);
        active.spec.revocation = Some(
            serde_json::from_value(serde_json::json!({"by": "a@x", "at": "2026-01-01T00:00:00Z", "reason": ""}))
                .unwrap(),
        );
        assert_eq!(allowed(ADMIN, &active, ActionPolicy::default()), Actions::default());
        assert_eq!(allowed(DEV, &active, ActionPolicy::default()), Actions::default());
    }

    #[test]
    fn active_requests() {
        let ar = request(Phase::Active);
        let p = ActionPolicy::default();
        let a = allowed(ADMIN, &ar, p);
        assert!(a.revoke && a.extend && !a.terminal && !a.approve);
        assert!(
            allowed(
                ADMIN,
                &ar,
                ActionPolicy {
                    admin_terminal_access: true,
                    ..p
                }
            )
            .terminal
        );
        let d = allowed(DEV, &ar, p);
        assert!(d.terminal && d.withdraw && !d.revoke);
        let approved = allowed(ADMIN, &request(Phase::Approved), p);
        assert!(approved.revoke && !approved.extend);
        for ended in [
            Phase::Expired,
            Phase::Revoked,
            Phase::Denied,
            Phase::Cancelled,
            Phase::Failed,
        ] {
            assert_eq!(allowed(ADMIN, &request(ended), p), Actions::default(), "{ended:?}");
            assert_eq!(allowed(DEV, &request(ended), p), Actions::default(), "{ended:?}");
        }
    }

    mod under_a_policy {
        use super::*;
        use crate::access_request::ApprovedSpec;
        use crate::rules::policy::{NamespaceInfo, RequestFacts, govern};
        use crate::{ApprovalEntry, BreakGlass, BreakGlassReview, PolicyStatus};

        const CFG: &str = "adminEmails: [admin@example.com]\npolicies:\n- name: prod\n  match: {clusters: [prod]}\n  \
                           approvers: {emails: [alice@example.com, bob@example.com], groups: [payments-leads]}\n  \
                           approvalsRequired: 2\n  breakGlass: {groups: [oncall], maxTtlSeconds: 1800}\n";

        fn prod(phase: Phase) -> AccessRequest {
            let mut ar = request(phase);
            ar.spec.cluster = "prod".into();
            ar
        }

        fn entry(by: &str) -> ApprovalEntry {
            ApprovalEntry {
                by: by.into(),
                at: "2026-01-01T00:00:00Z".into(),
                ttl_seconds: None,
                comment: String::new(),
                groups: vec![],
            }
        }

        fn check(ar: &AccessRequest, f: impl FnOnce(Option<&Governing<'_>>)) {
            let cfg = Config::from_yaml(CFG, "t").unwrap();
            let nss = [NamespaceInfo {
                name: "default".into(),
                ..Default::default()
            }];
            let facts = RequestFacts::of(&ar.spec, &nss, chrono::Utc::now());
            let g = govern(&cfg, &facts).unwrap();
            f(Some(&g));
        }

        const ALICE: Actor<'static> = Actor {
            email: "Alice@example.com",
            is_admin: false,
        };

        #[test]
        fn approving_takes_eligibility_and_stays_open_until_the_quorum() {
            let mut ar = prod(Phase::Pending);
            let p = ActionPolicy::default();
            check(&ar, |g| {
                let a = allowed_under(ALICE, &[], &ar, g, p);
                assert!(a.approve && a.deny && !a.acknowledge && !a.revoke, "{a:?}");
                // An admin by the default policy is no approver of prod, but may still deny.
                let admin = allowed_under(ADMIN, &[], &ar, g, p);
                assert!(!admin.approve && admin.deny);
                assert_eq!(
                    approve_refusal(ADMIN, &[], &ar, g).unwrap(),
                    "only members of payments-leads or alice@example.com or bob@example.com may approve under policy prod"
                );
                // Group membership makes an approver.
                assert!(allowed_under(OTHER, &["payments-leads".into()], &ar, g, p).approve);
                assert!(!allowed_under(OTHER, &["devs".into()], &ar, g, p).deny);
                assert_eq!(approve_refusal(DEV, &[], &ar, g).unwrap(), "you asked for it");
                assert!(!allowed_under(DEV, &["payments-leads".into()], &ar, g, p).approve);
            });
            // One of two approvals: still pending, Alice may not approve twice, Bob may.
            ar.spec.approvals.push(entry("alice@example.com"));
            check(&ar, |g| {
                let a = allowed_under(ALICE, &[], &ar, g, p);
                assert!(!a.approve && a.deny);
                assert_eq!(approve_refusal(ALICE, &[], &ar, g).unwrap(), "you already approved");
                let bob = Actor {
                    email: "bob@example.com",
                    is_admin: false,
                };
                assert!(allowed_under(bob, &[], &ar, g, p).approve);
                assert_eq!(approve_refusal(bob, &[], &ar, g), None);
            });
            // The existing rule keeps an approval-less request open too (only spec.approval closes it).
            assert!(allowed(ADMIN, &ar, p).approve);
            ar.status.as_mut().unwrap().phase = Phase::Active;
            check(&ar, |g| {
                assert_eq!(
                    approve_refusal(ALICE, &[], &ar, g).unwrap(),
                    "the request is no longer pending"
                );
                let a = allowed_under(ALICE, &[], &ar, g, p);
                assert!(!a.approve && !a.deny && a.revoke && !a.extend, "{a:?}");
            });
            // Nobody approves when the policy cannot be determined.
            let pending = prod(Phase::Pending);
            assert!(!allowed_under(ALICE, &[], &pending, None, p).approve);
            assert!(allowed_under(ADMIN, &[], &pending, None, p).deny);
        }

        #[test]
        fn a_denial_or_withdrawal_closes_approving() {
            let mut ar = prod(Phase::Pending);
            ar.spec.denial = Some(
                serde_json::from_value(serde_json::json!({"by": "b@x", "at": "2026-01-01T00:00:00Z", "reason": ""}))
                    .unwrap(),
            );
            check(&ar, |g| {
                let a = allowed_under(ALICE, &[], &ar, g, ActionPolicy::default());
                assert!(!a.approve && !a.deny);
                assert_eq!(
                    approve_refusal(ALICE, &[], &ar, g).unwrap(),
                    "the request is no longer pending"
                );
            });
        }

        /// A break-glass request by an on-call requester, in `phase`, without any status but the phase.
        fn glass(phase: Phase) -> AccessRequest {
            let mut ar = prod(phase);
            ar.spec.requester_groups = vec!["oncall".into()];
            ar.spec.break_glass = Some(BreakGlass {
                at: "2026-01-01T00:00:00Z".into(),
            });
            ar
        }

        /// The same, as the controller leaves it once it activated the request under the break-glass rule:
        /// `status.policy.breakGlass` and the break-glass approval baseline.
        fn activated(phase: Phase) -> AccessRequest {
            let mut ar = glass(phase);
            let st = ar.status.as_mut().unwrap();
            st.policy = Some(PolicyStatus {
                name: "prod".into(),
                break_glass: true,
                ..Default::default()
            });
            st.approved = Some(ApprovedSpec::record(&ar.spec, &[BREAK_GLASS_ACTOR.to_string()], None));
            ar
        }

        #[test]
        fn only_an_activated_break_glass_request_awaits_acknowledgement() {
            let p = ActionPolicy::default();
            // Denied as not allowed (or failed before activating): nothing was activated, nothing to
            // review, whatever phase it ended in.
            for phase in [
                Phase::Denied,
                Phase::Failed,
                Phase::Cancelled,
                Phase::Pending,
                Phase::Active,
            ] {
                let ar = glass(phase);
                check(&ar, |g| {
                    assert!(!allowed_under(ALICE, &[], &ar, g, p).acknowledge, "{phase:?}")
                });
            }
            // Activated: status.policy.breakGlass, or (for a request that had access) the baseline alone.
            for phase in [Phase::Active, Phase::Expired, Phase::Revoked, Phase::Failed] {
                let ar = activated(phase);
                check(&ar, |g| {
                    assert!(allowed_under(ALICE, &[], &ar, g, p).acknowledge, "{phase:?}")
                });
            }
            for (phase, want) in [
                (Phase::Active, true),
                (Phase::Expired, true),
                (Phase::Revoked, true),
                (Phase::Denied, false),
                (Phase::Failed, false),
            ] {
                let mut ar = activated(phase);
                ar.status.as_mut().unwrap().policy = None;
                check(&ar, |g| {
                    assert_eq!(allowed_under(ALICE, &[], &ar, g, p).acknowledge, want, "{phase:?}")
                });
            }
        }

        #[test]
        fn break_glass_is_acknowledged_once_by_an_eligible_approver() {
            let mut ar = activated(Phase::Active);
            let p = ActionPolicy::default();
            check(&ar, |g| {
                assert!(allowed_under(ALICE, &[], &ar, g, p).acknowledge);
                assert!(
                    !allowed_under(ADMIN, &[], &ar, g, p).acknowledge,
                    "not an approver of prod"
                );
                assert!(
                    !allowed_under(DEV, &["payments-leads".into()], &ar, g, p).acknowledge,
                    "the requester"
                );
                assert!(!allowed(ADMIN, &ar, p).acknowledge);
            });
            // Expired: still to review. (Not activated: see the test above.)
            for (phase, want) in [(Phase::Expired, true), (Phase::Revoked, true)] {
                ar.status.as_mut().unwrap().phase = phase;
                check(&ar, |g| {
                    assert_eq!(allowed_under(ALICE, &[], &ar, g, p).acknowledge, want, "{phase:?}")
                });
            }
            ar.spec.break_glass_review = Some(BreakGlassReview {
                by: "bob@example.com".into(),
                at: "2026-01-01T01:00:00Z".into(),
                comment: String::new(),
                groups: vec![],
            });
            check(&ar, |g| {
                assert!(!allowed_under(ALICE, &[], &ar, g, p).acknowledge, "reviewed")
            });
        }

        #[test]
        fn the_default_policy_takes_admins_as_the_web_records_them() {
            let ar = request(Phase::Pending);
            let p = ActionPolicy::default();
            check(&ar, |g| {
                // Admin by a local account (no adminEmails entry): judged with k8s-janus:admins.
                let local = Actor {
                    email: "root@local",
                    is_admin: true,
                };
                assert!(allowed_under(local, &[], &ar, g, p).approve);
                assert!(!allowed_under(SELF_ADMIN, &[], &ar, g, p).approve, "own request");
                let a = allowed_under(OTHER, &[], &ar, g, p);
                assert_eq!(a, Actions::default());
            });
        }

        #[test]
        fn scheduled_requests_can_be_revoked_and_withdrawn() {
            let ar = request(Phase::Scheduled);
            let p = ActionPolicy::default();
            let a = allowed(ADMIN, &ar, p);
            assert!(a.revoke && !a.extend && !a.terminal && !a.approve);
            let d = allowed(DEV, &ar, p);
            assert!(d.withdraw && !d.terminal);
        }
    }
}
