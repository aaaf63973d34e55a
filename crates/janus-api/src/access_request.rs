//! The `AccessRequest` resource: what was asked, the human decisions about it, and what the controller observed.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A request for temporary `kubectl exec` access to namespaces of one cluster.
///
/// `spec` holds what was asked and the human decisions (written by the web UI with the authenticated
/// identity); `status` holds only the controller's observations.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
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
pub struct AccessRequestSpec {
    /// Email of the requester, set from the authenticated identity; never changes.
    #[schemars(length(min = 3, max = 254))]
    pub requester: String,
    /// Name of the target cluster (an entry of the `clusters` configuration).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub cluster: String,
    /// Namespaces to grant exec access in (DNS-1123 labels, 1 to 20).
    #[schemars(
        length(min = 1, max = 20),
        inner(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    pub namespaces: Vec<String>,
    /// Why access is needed; shown to approvers and kept in the audit log.
    #[schemars(length(min = 1, max = 1000))]
    pub reason: String,
    /// Requested duration of access after approval (policy bounds come from the configuration).
    #[schemars(range(min = 1, max = 604800))]
    pub ttl_seconds: i64,
    /// Set when an admin approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Set when an admin denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<Denial>,
    /// Set when an admin (or the idle timeout) revoked active access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Revocation>,
    /// Set when the requester withdrew the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawal: Option<Withdrawal>,
    /// Extensions granted by admins, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<Extension>,
}

/// Who made a decision and when.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Email of the person (or `system:idle-timeout` style actor) who decided.
    #[schemars(length(min = 1, max = 254))]
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

/// An approval, with an optional TTL that overrides the requested one.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Who approved.
    #[schemars(length(min = 1, max = 254))]
    pub by: String,
    /// When.
    pub at: String,
    /// Duration chosen by the approver instead of `spec.ttlSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 604800))]
    pub ttl_seconds: Option<i64>,
}

/// A denial with its reason.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Denial {
    /// Who denied.
    #[schemars(length(min = 1, max = 254))]
    pub by: String,
    /// When.
    pub at: String,
    /// Why, shown to the requester.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub reason: String,
}

/// A revocation of active access.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    /// Who revoked.
    #[schemars(length(min = 1, max = 254))]
    pub by: String,
    /// When.
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
#[serde(rename_all = "camelCase")]
pub struct Extension {
    /// Who extended.
    #[schemars(length(min = 1, max = 254))]
    pub by: String,
    /// When.
    pub at: String,
    /// How much longer access lasts.
    #[schemars(range(min = 1, max = 604800))]
    pub seconds: i64,
}

/// Where a request is in its lifecycle.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
pub enum Phase {
    /// Waiting for a decision.
    #[default]
    Pending,
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

    #[test]
    fn terminal_phases() {
        assert!(Phase::Expired.is_terminal() && Phase::Failed.is_terminal());
        assert!(!Phase::Active.is_terminal() && !Phase::Pending.is_terminal());
    }
}
