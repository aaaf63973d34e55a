//! Who may take which action on a request, given its phase and decisions: the web offers exactly these,
//! and refuses everything else.

use serde::Serialize;

use super::lifecycle::{phase_of, undecided};
use crate::config::Config;
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
}

/// Whether `actor` asked for `ar`.
pub fn is_requester(actor: Actor<'_>, ar: &AccessRequest) -> bool {
    ar.spec.requester.eq_ignore_ascii_case(actor.email)
}

/// Whether `actor` may see `ar` at all: admins see everything, requesters their own.
pub fn may_view(actor: Actor<'_>, ar: &AccessRequest) -> bool {
    actor.is_admin || is_requester(actor, ar)
}

/// The actions `actor` may take on `ar`. A decision already written closes the actions it would race
/// with, in the same precedence the controller applies ([`super::ending`]).
pub fn allowed(actor: Actor<'_>, ar: &AccessRequest, policy: ActionPolicy) -> Actions {
    let p = phase_of(ar);
    let own = is_requester(actor, ar);
    let pending = p == Phase::Pending && undecided(&ar.spec);
    let live =
        matches!(p, Phase::Approved | Phase::Active) && ar.spec.revocation.is_none() && ar.spec.withdrawal.is_none();
    Actions {
        approve: actor.is_admin && pending && (!own || policy.allow_self_approval),
        deny: actor.is_admin && pending,
        revoke: actor.is_admin && live,
        extend: actor.is_admin && live && p == Phase::Active,
        withdraw: own && !p.is_terminal() && ar.spec.withdrawal.is_none() && ar.spec.revocation.is_none(),
        terminal: p == Phase::Active && live && (own || (actor.is_admin && policy.admin_terminal_access)),
    }
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
}
