//! The resource types kubesim serves: the built-in kinds and those added by CustomResourceDefinitions.

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde_json::Value;

/// Identifies a stored collection: API group (empty for core) and plural resource name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    /// API group, `""` for the core group.
    pub group: String,
    /// Plural lowercase resource name, e.g. `pods`.
    pub resource: String,
}

impl GroupResource {
    /// Builds a group/resource pair.
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// Everything kubesim knows about one kind: naming, scope, verbs and (for CRDs) the schema.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// Served version (kubesim serves one version per kind).
    pub version: String,
    /// Kind, e.g. `Pod`.
    pub kind: String,
    /// Plural lowercase name used in URLs.
    pub plural: String,
    /// Singular lowercase name.
    pub singular: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names for kubectl (`po`, `ar`, …).
    pub short_names: Vec<String>,
    /// Verbs advertised in discovery.
    pub verbs: Vec<String>,
    /// Subresources served (`status`, `exec`, `log`, `token`, …).
    pub subresources: Vec<String>,
    /// Categories (`all`) for kubectl.
    pub categories: Vec<String>,
    /// For CRDs: the OpenAPI v3 schema of the served version. Shared: a type is looked up (copied) on
    /// every request, and a CRD's schema is tens of kilobytes of JSON.
    pub schema: Option<std::sync::Arc<Value>>,
    /// For CRDs: the compiled `x-kubernetes-validations` rules of the served version, if any.
    pub validator: Option<std::sync::Arc<crate::cel::Validator>>,
    /// For CRDs: additional printer columns.
    pub printer_columns: Vec<Value>,
    /// Whether the object is created by a POST that does not persist (reviews, token requests).
    pub virtual_only: bool,
}

impl ResourceType {
    /// `group/version` or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The key of this type's collection in the store.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    /// Whether a subresource is served.
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.iter().any(|s| s == sub)
    }
}

/// The verbs of an ordinary read-write resource, as discovery lists them.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    subs: &[&str],
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        verbs: STANDARD_VERBS.iter().map(|s| s.to_string()).collect(),
        subresources: subs.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        schema: None,
        validator: None,
        printer_columns: Vec::new(),
        virtual_only: false,
    }
}

fn create_only(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> ResourceType {
    let mut t = builtin(group, version, kind, plural, namespaced, &[], &[]);
    t.verbs = vec!["create".into()];
    t.virtual_only = true;
    t
}

/// The built-in kinds kubesim serves.
pub fn builtins() -> Vec<ResourceType> {
    let mut v = vec![
        builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            &["status", "finalize"],
        ),
        builtin(
            "",
            "v1",
            "Pod",
            "pods",
            true,
            &["po"],
            &["status", "exec", "log", "attach", "ephemeralcontainers"],
        ),
        builtin("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"], &["token"]),
        builtin("", "v1", "Secret", "secrets", true, &[], &[]),
        builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"], &[]),
        builtin("", "v1", "Service", "services", true, &["svc"], &["status"]),
        builtin("", "v1", "Event", "events", true, &["ev"], &[]),
        builtin("", "v1", "Endpoints", "endpoints", true, &["ep"], &[]),
        builtin(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["pvc"],
            &["status"],
        ),
        builtin("", "v1", "Node", "nodes", false, &["no"], &["status"]),
        builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", true, &[], &[]),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            &[],
        ),
        builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            &["status", "scale"],
        ),
        builtin(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["sts"],
            &["status", "scale"],
        ),
        builtin("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"], &["status"]),
        builtin(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            &["rs"],
            &["status", "scale"],
        ),
        builtin("batch", "v1", "Job", "jobs", true, &[], &["status"]),
        builtin("batch", "v1", "CronJob", "cronjobs", true, &["cj"], &["status"]),
        builtin(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            true,
            &["ing"],
            &["status"],
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
            &["netpol"],
            &[],
        ),
        builtin(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            &["pdb"],
            &["status"],
        ),
        builtin("coordination.k8s.io", "v1", "Lease", "leases", true, &[], &[]),
        builtin("events.k8s.io", "v1", "Event", "events", true, &["ev"], &[]),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            &["status"],
        ),
        create_only(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        ),
        create_only(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
        ),
        create_only(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            false,
        ),
        create_only(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
        ),
        create_only("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", false),
        create_only(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            false,
        ),
    ];
    for t in v.iter_mut() {
        if matches!(
            t.kind.as_str(),
            "Pod" | "Service" | "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "CronJob"
        ) {
            t.categories = vec!["all".into()];
        }
    }
    v
}

/// The set of served types, changing as CRDs come and go.
#[derive(Debug)]
pub struct Registry {
    types: RwLock<BTreeMap<(String, String), ResourceType>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry holding the built-in kinds.
    pub fn new() -> Self {
        let mut m = BTreeMap::new();
        for t in builtins() {
            m.insert((t.group.clone(), t.plural.clone()), t);
        }
        Self { types: RwLock::new(m) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<(String, String), ResourceType>> {
        self.types.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks up a type by group, version and plural name.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.read()
            .get(&(group.to_string(), plural.to_string()))
            .filter(|t| t.version == version)
            .cloned()
    }

    /// Looks up a type by group and kind (any version).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<ResourceType> {
        self.read()
            .values()
            .find(|t| t.group == group && t.kind == kind)
            .cloned()
    }

    /// All served types.
    pub fn all(&self) -> Vec<ResourceType> {
        self.read().values().cloned().collect()
    }

    /// Adds or replaces a type (CRD established).
    pub fn upsert(&self, t: ResourceType) {
        let mut w = self.types.write().unwrap_or_else(|e| e.into_inner());
        w.insert((t.group.clone(), t.plural.clone()), t);
    }

    /// Removes a type (CRD deleted).
    pub fn remove(&self, group: &str, plural: &str) {
        let mut w = self.types.write().unwrap_or_else(|e| e.into_inner());
        w.remove(&(group.to_string(), plural.to_string()));
    }

    /// Groups and the versions served in each, core excluded, sorted with built-ins first.
    pub fn groups(&self) -> Vec<(String, String)> {
        let mut seen: Vec<(String, String)> = Vec::new();
        for t in self.read().values() {
            if t.group.is_empty() {
                continue;
            }
            let gv = (t.group.clone(), t.version.clone());
            if !seen.contains(&gv) {
                seen.push(gv);
            }
        }
        seen
    }
}
