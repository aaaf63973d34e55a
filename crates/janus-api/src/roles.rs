//! The `roles:` configuration: the access profiles a request can name (`exec`, `logs`, `debug` and the
//! operator's own), each binding one ClusterRole. Validation and the rules of pod-scoped grants live in
//! [`crate::rules::scope`].

use serde::{Deserialize, Serialize};

/// The ClusterRole of the shipped `logs` role: pods get/list, pods/log, events. No exec.
pub const POD_LOGS_CLUSTER_ROLE: &str = "janus-pod-logs";
/// The ClusterRole of the shipped `debug` role: ephemeral debug containers and attaching to them.
pub const POD_DEBUG_CLUSTER_ROLE: &str = "janus-pod-debug";

/// What the terminal page offers under a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TerminalMode {
    /// A shell (`pods/exec`) in a chosen container, with logs and events beside it.
    Shell,
    /// Logs and events only; no shell.
    Logs,
    /// An ephemeral debug container (image from the role's `debugImages`) started next to a chosen
    /// container and attached to (`pods/ephemeralcontainers`, `pods/attach`), with logs and events.
    Debug,
}

impl TerminalMode {
    /// The mode as the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shell => "shell",
            Self::Logs => "logs",
            Self::Debug => "debug",
        }
    }
}

/// One access role: a named profile binding one ClusterRole on the target cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleConfig {
    /// The name requests use (`spec.role`): a DNS label, unique.
    pub name: String,
    /// Shown in the request form and on request pages.
    #[serde(default)]
    pub display_name: String,
    /// What the role allows, shown in the request form.
    #[serde(default)]
    pub description: String,
    /// The ClusterRole a grant binds. It must exist on every cluster a request can name; the chart
    /// installs the shipped ones and lists every role's ClusterRole in the controller's `bind` rule.
    pub cluster_role: String,
    /// What the terminal page offers.
    pub terminal: TerminalMode,
    /// Images a debug container may run (exact references, or a prefix ending in `/*` or `:*`); required
    /// and only allowed with `terminal: debug`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub debug_images: Vec<String>,
}

impl RoleConfig {
    /// The name to show: `displayName`, else `name`.
    pub fn title(&self) -> &str {
        if self.display_name.is_empty() {
            &self.name
        } else {
            &self.display_name
        }
    }
}

/// The roles when the configuration names none: the three the chart ships (`exec`, `logs`, `debug`),
/// with `debug` allowing no image until the operator lists some (so it cannot be requested usefully
/// before then; the web says so).
pub fn builtin_roles() -> Vec<RoleConfig> {
    vec![
        RoleConfig {
            name: crate::policy::DEFAULT_ROLE.into(),
            display_name: "Shell".into(),
            description: "A shell (kubectl exec) in the pods of the namespaces, with their logs and events.".into(),
            cluster_role: crate::POD_EXEC_CLUSTER_ROLE.into(),
            terminal: TerminalMode::Shell,
            debug_images: vec![],
        },
        RoleConfig {
            name: "logs".into(),
            display_name: "Logs (read-only)".into(),
            description: "Read pod logs and events. No shell.".into(),
            cluster_role: POD_LOGS_CLUSTER_ROLE.into(),
            terminal: TerminalMode::Logs,
            debug_images: vec![],
        },
        RoleConfig {
            name: "debug".into(),
            display_name: "Debug container".into(),
            description:
                "Start an ephemeral debug container from an allowed image next to a container, and attach to it.".into(),
            cluster_role: POD_DEBUG_CLUSTER_ROLE.into(),
            terminal: TerminalMode::Debug,
            debug_images: vec![],
        },
    ]
}
