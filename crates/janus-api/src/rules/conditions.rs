//! Names of the status conditions and of the reasons that code (not people) acts on.
//!
//! Free-text messages are for people. Condition types and reasons are an API: the web, the recorder and
//! alerting read them, so they are written once, here.

pub use crate::access_request::reasons;

/// Condition types the controller sets on an AccessRequest.
pub mod types {
    /// The controller saw the request (set with the first status).
    pub const SUBMITTED: &str = "Submitted";
    /// An approval was seen (the request left Pending for Approved).
    pub const APPROVED: &str = "Approved";
    /// Credentials were issued in every namespace (the request is Active).
    pub const GRANTED: &str = "Granted";
    /// Every credential of the request is gone (`True`), or removal is still pending (`False`).
    pub const CREDENTIALS_REMOVED: &str = "CredentialsRemoved";
    /// An extension was applied (the credentials were re-issued for the new expiry).
    pub const EXTENDED: &str = "Extended";
    /// Whether the target cluster answered the last grant attempt.
    pub const CLUSTER_REACHABLE: &str = "ClusterReachable";
    /// Whether the request's approval policy is satisfied (`True`) or still waits for approvals (`False`).
    pub const POLICY_SATISFIED: &str = "PolicySatisfied";
    /// `True` while an approved request waits for its `startAt`; `False` once access started.
    pub const SCHEDULED: &str = "Scheduled";
}

/// Reasons of the `PolicySatisfied` and `Scheduled` conditions, and of the `Approved` condition, which
/// says how the request was approved.
pub mod policy {
    /// `PolicySatisfied=False`: fewer distinct eligible approvals than the policy requires, or a
    /// namespace's owners have not approved yet.
    pub const AWAITING_APPROVALS: &str = "AwaitingApprovals";
    /// `PolicySatisfied=True`: the quorum of distinct eligible approvers is present.
    pub const QUORUM_MET: &str = "QuorumMet";
    /// `PolicySatisfied=True` and `Approved=True`: approved by the policy's `autoApprove` rule.
    pub const AUTO_APPROVED: &str = "AutoApproved";
    /// `PolicySatisfied=True` and `Approved=True`: activated under the policy's `breakGlass` rule. Also
    /// the reason of the Warning Event published when such access becomes active.
    pub const BREAK_GLASS: &str = "BreakGlass";
    /// `Scheduled=True`: approved ahead; access starts at `spec.startAt`.
    pub const STARTS_LATER: &str = "StartsLater";
    /// `Scheduled=False`: `startAt` was reached and credentials are issued.
    pub const STARTED: &str = "Started";
}

/// Reasons of the `ClusterReachable` condition.
pub mod reachability {
    /// The cluster answered.
    pub const REACHABLE: &str = "Reachable";
    /// The cluster has no usable kubeconfig or does not answer.
    pub const CLUSTER_UNAVAILABLE: &str = "ClusterUnavailable";
    /// The cluster answered with an error.
    pub const CLUSTER_ERROR: &str = "ClusterError";
}

/// Reasons of the `CredentialsRemoved` condition.
pub mod removal {
    /// Every ServiceAccount, RoleBinding and token Secret is gone.
    pub const REMOVED: &str = "Removed";
    /// Some credential could not be removed yet; the controller keeps retrying.
    pub const CLEANUP_PENDING: &str = "CleanupPending";
}

/// Whether `status` carries condition `type_` with status `True`.
pub fn is_true(status: &crate::AccessRequestStatus, type_: &str) -> bool {
    status.conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the request's credentials are known to be gone.
pub fn credentials_removed(status: &crate::AccessRequestStatus) -> bool {
    is_true(status, types::CREDENTIALS_REMOVED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccessRequestStatus, Condition};

    fn cond(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: String::new(),
            message: String::new(),
            last_transition_time: String::new(),
        }
    }

    #[test]
    fn only_a_true_condition_counts() {
        let mut st = AccessRequestStatus::default();
        assert!(!credentials_removed(&st));
        st.conditions.push(cond(types::CREDENTIALS_REMOVED, "False"));
        assert!(!credentials_removed(&st));
        st.conditions.push(cond(types::CREDENTIALS_REMOVED, "True"));
        assert!(credentials_removed(&st));
        assert!(!is_true(&st, types::GRANTED));
    }
}
