//! The approval-policy gate as the controller writes it down: `status.policy`, the `PolicySatisfied` and
//! `Scheduled` conditions, and who the approved baseline names. The evaluation itself is
//! [`janus_api::rules::policy::evaluate`]; this module only turns its verdict into status, so the web,
//! `kubectl get -o yaml` and the audit log all read the same words.

use janus_api::AccessRequestSpec;
use janus_api::PolicyStatus;
use janus_api::access_request::{AUTO_APPROVAL_ACTOR, BREAK_GLASS_ACTOR};
use janus_api::rules::policy::{ApprovedVia, Governing, Ineligible, Tally, Verdict};

/// Condition types of the gate (defined once, in the domain crate: the recorder and the web read them).
pub use janus_api::rules::conditions::types;

/// Condition reasons of the gate (and of the `Approved` condition, which says how the request was
/// approved).
pub use janus_api::rules::conditions::policy as reasons;

/// Why an approval does not count, in the words `status.policy.ignored` shows.
pub fn ineligible_text(why: &Ineligible) -> String {
    match why {
        Ineligible::Requester => "the requester's own approval does not count".into(),
        Ineligible::NotAnApprover { policy } => format!("not an approver of policy {policy}"),
        Ineligible::AlreadyApproved => "approved more than once; counted once".into(),
    }
}

/// The tally a verdict carries (empty for an invalid request).
pub fn tally_of(verdict: &Verdict) -> Option<&Tally> {
    match verdict {
        Verdict::Invalid(_) => None,
        Verdict::Pending(t) | Verdict::Approved { tally: t, .. } => Some(t),
    }
}

/// `status.policy` for a verdict under `governing`.
pub fn policy_status(governing: &Governing<'_>, verdict: &Verdict) -> PolicyStatus {
    let empty = Tally::default();
    let tally = tally_of(verdict).unwrap_or(&empty);
    let via = match verdict {
        Verdict::Approved { via, .. } => Some(*via),
        _ => None,
    };
    PolicyStatus {
        name: governing.name.clone(),
        // The tally's own requirement when it has one: it is what was counted against.
        approvals_required: if tally.required > 0 {
            tally.required
        } else {
            governing.approvals_required
        },
        approvals_given: u32::try_from(tally.counted.len()).unwrap_or(u32::MAX),
        approved_by: tally.counted.clone(),
        ignored: tally
            .ignored
            .iter()
            .map(|(who, why)| format!("{who}: {}", ineligible_text(why)))
            .collect(),
        auto_approved: via == Some(ApprovedVia::Auto),
        break_glass: via == Some(ApprovedVia::BreakGlass),
    }
}

/// "1/2 approvals (policy prod)", plus the namespaces whose owners have not approved yet.
pub fn progress(policy: &PolicyStatus, missing_owners: &[String]) -> String {
    let mut out = format!(
        "{}/{} approvals (policy {})",
        policy.approvals_given, policy.approvals_required, policy.name
    );
    if !missing_owners.is_empty() {
        out.push_str(&format!(
            "; waiting for an owner of {} to approve",
            missing_owners.join(", ")
        ));
    }
    out
}

/// The `PolicySatisfied` condition for a verdict that is not invalid: (status, reason, message).
pub fn satisfied(policy: &PolicyStatus, verdict: &Verdict) -> (bool, &'static str, String) {
    match verdict {
        Verdict::Approved {
            via: ApprovedVia::Auto, ..
        } => (
            true,
            reasons::AUTO_APPROVED,
            format!("auto-approved under policy {}", policy.name),
        ),
        Verdict::Approved {
            via: ApprovedVia::BreakGlass,
            ..
        } => (
            true,
            reasons::BREAK_GLASS,
            format!("break-glass activation under policy {}", policy.name),
        ),
        Verdict::Approved { tally, .. } => (true, reasons::QUORUM_MET, progress(policy, &tally.missing_owners)),
        Verdict::Pending(tally) => (
            false,
            reasons::AWAITING_APPROVALS,
            progress(policy, &tally.missing_owners),
        ),
        Verdict::Invalid(msg) => (
            false,
            janus_api::access_request::reasons::VALIDATION_FAILED,
            msg.clone(),
        ),
    }
}

/// Who the approved baseline names: the counted approvers, or the system actor of auto-approval and
/// break-glass.
pub fn approvers(via: ApprovedVia, tally: &Tally) -> Vec<String> {
    match via {
        ApprovedVia::Quorum => tally.counted.clone(),
        ApprovedVia::Auto => vec![AUTO_APPROVAL_ACTOR.to_string()],
        ApprovedVia::BreakGlass => vec![BREAK_GLASS_ACTOR.to_string()],
    }
}

/// The `Approved` condition's reason and message for how the request was approved.
pub fn approved_by(via: ApprovedVia, policy: &PolicyStatus, spec: &AccessRequestSpec) -> (&'static str, String) {
    match via {
        ApprovedVia::Quorum => (
            janus_api::rules::conditions::types::APPROVED,
            format!("approved by {}", policy.approved_by.join(", ")),
        ),
        ApprovedVia::Auto => (
            reasons::AUTO_APPROVED,
            format!("auto-approved under policy {}", policy.name),
        ),
        ApprovedVia::BreakGlass => (
            reasons::BREAK_GLASS,
            format!(
                "break-glass activation by {} under policy {}; awaiting review",
                spec.requester, policy.name
            ),
        ),
    }
}

/// The label of the activation metric for how a request was approved.
pub fn via_label(via: ApprovedVia) -> &'static str {
    match via {
        ApprovedVia::Quorum => "quorum",
        ApprovedVia::Auto => "auto",
        ApprovedVia::BreakGlass => "break_glass",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn governing() -> Governing<'static> {
        Governing {
            name: "prod".into(),
            policy: None,
            approvals_required: 2,
            approver_emails: vec!["a@x.io".into(), "b@x.io".into()],
            approver_groups: vec![],
            owners: vec![],
            max_ttl_seconds: 3600,
            approval_ttl_options: vec![],
            pending_expiry_seconds: 0,
            reason: None,
            self_approval: false,
        }
    }

    #[test]
    fn pending_status_counts_and_lists_the_ignored() {
        let tally = Tally {
            counted: vec!["a@x.io".into()],
            ignored: vec![
                (
                    "mallory@x.io".into(),
                    Ineligible::NotAnApprover { policy: "prod".into() },
                ),
                ("a@x.io".into(), Ineligible::AlreadyApproved),
            ],
            required: 2,
            missing_owners: vec![],
        };
        let verdict = Verdict::Pending(tally);
        let ps = policy_status(&governing(), &verdict);
        assert_eq!((ps.approvals_given, ps.approvals_required), (1, 2));
        assert_eq!(ps.approved_by, ["a@x.io"]);
        assert_eq!(
            ps.ignored,
            [
                "mallory@x.io: not an approver of policy prod",
                "a@x.io: approved more than once; counted once"
            ]
        );
        let (ok, reason, msg) = satisfied(&ps, &verdict);
        assert!(!ok);
        assert_eq!(reason, reasons::AWAITING_APPROVALS);
        assert_eq!(msg, "1/2 approvals (policy prod)");
        assert_eq!(
            progress(&ps, &["team-a".into()]),
            "1/2 approvals (policy prod); waiting for an owner of team-a to approve"
        );
    }

    #[test]
    fn auto_approval_and_break_glass_are_flagged() {
        let auto = Verdict::Approved {
            via: ApprovedVia::Auto,
            tally: Tally::default(),
        };
        let ps = policy_status(&governing(), &auto);
        assert!(ps.auto_approved && !ps.break_glass);
        assert_eq!(ps.approvals_required, 2, "the policy's quorum when nothing was counted");
        assert_eq!(satisfied(&ps, &auto).1, reasons::AUTO_APPROVED);
        assert_eq!(approvers(ApprovedVia::Auto, &Tally::default()), [AUTO_APPROVAL_ACTOR]);
        let bg = Verdict::Approved {
            via: ApprovedVia::BreakGlass,
            tally: Tally::default(),
        };
        let ps = policy_status(&governing(), &bg);
        assert!(ps.break_glass && !ps.auto_approved);
        assert_eq!(satisfied(&ps, &bg).1, reasons::BREAK_GLASS);
        assert_eq!(
            approvers(ApprovedVia::BreakGlass, &Tally::default()),
            [BREAK_GLASS_ACTOR]
        );
    }
}
