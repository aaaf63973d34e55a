//! A test cluster for the end-to-end suites: kubesim by default, or the cluster a kubeconfig names.
//!
//! [`TestCluster::start`] starts an in-process kubesim unless `JANUS_TEST_CLUSTER=kubeconfig` is set;
//! then it uses `KUBECONFIG` (or `~/.kube/config`) and its current context, and only if
//! `JANUS_TEST_CLUSTER_CONTEXT` names that same context ([`confirm_context`]). The real cluster is
//! opt-in twice on purpose: `cargo test` must never touch whatever cluster a developer's kubeconfig
//! points at, and the kit's clean-up of earlier tests' requests must never run against a cluster
//! nobody named. Everything a portable suite does goes through the Kubernetes API (seeding is server-side
//! apply), so the same test runs on kubesim, kind or a cloud cluster; tests that need kubesim's
//! knobs (fault injection, restarts, versions, token lifetimes) use [`TestCluster::sim`] and skip
//! themselves on a real cluster with [`kubesim_only`].

mod kubeconfig;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde_json::{Value, json};

pub use kubeconfig::ClusterAccess;

/// The environment variable that selects the backend (`kubeconfig` for a real cluster).
pub const BACKEND_ENV: &str = "JANUS_TEST_CLUSTER";

/// The environment variable that must name the kubeconfig's current context before the kit uses the
/// kubeconfig backend (see [`confirm_context`]).
pub const CONTEXT_ENV: &str = "JANUS_TEST_CLUSTER_CONTEXT";

/// The email domain of every identity the suites create requests as (`alice@example.com`, ...). On
/// a real cluster the kit removes leftover AccessRequests of these requesters only
/// ([`is_test_requester`]); example.com is reserved (RFC 2606), so no real user has it.
pub const TEST_REQUESTER_DOMAIN: &str = "example.com";

/// The `gitCommit` kubesim reports on `/version` (a real kube-apiserver reports a commit hash).
pub const KUBESIM_GIT_COMMIT: &str = "kubesim";

/// How long the ServiceAccount tokens [`TestCluster::sa_token`] mints live: an hour, longer than any
/// suite's test runs, short enough that the chart identities' tokens a run leaves on a real cluster
/// are soon useless (kube-apiserver's minimum is 10 minutes).
pub const SA_TOKEN_SECONDS: i64 = 3600;

/// The field manager of every server-side apply the kit makes.
pub const FIELD_MANAGER: &str = "janus-testkit";

/// The namespace the chart is installed in (and the controller's own namespace in the tests).
pub const NS: &str = "k8s-janus";

/// The namespaces with a workload pod `app` each (see [`WORKLOADS`]).
pub const WORKLOAD_NAMESPACES: [&str; 3] = ["team-a", "team-b", "team-c"];

/// How long kube-apiserver keeps a successful token authentication (cached_token_authenticator.go:
/// 10 s), and so how long a deleted ServiceAccount's token may still authenticate on a real cluster.
pub const REAL_AUTH_CACHE_TTL: Duration = Duration::from_secs(10);

/// The image of the workload pods: small, public and with a shell, so `kubectl exec` works on a real
/// cluster. kubesim's kubelet runs any pod (its exec runs host processes), so the YAML is the same.
pub const WORKLOAD_IMAGE: &str = "busybox:1.36";

/// Namespaces, one pod `app` (container `main`) in each of team-a, team-b and team-c, and a Secret
/// in team-a that nothing may read. The container prints `a log line` and sleeps; `POD_NAMESPACE`
/// is set for exec as kubesim sets it.
pub const WORKLOADS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: k8s-janus}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-c}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: team-a}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.36
    command: [sh, -c, "echo a log line; exec sleep 86400"]
    env: [{name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: team-b}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.36
    command: [sh, -c, "echo a log line; exec sleep 86400"]
    env: [{name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: team-c}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.36
    command: [sh, -c, "echo a log line; exec sleep 86400"]
    env: [{name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}]
---
apiVersion: v1
kind: Secret
metadata: {name: db-password, namespace: team-a}
stringData: {password: hunter2}
"#;

/// The chart templates whose objects [`TestCluster::prepare_janus`] applies: the ServiceAccounts and
/// every Role, ClusterRole and binding (the controller tests run with these identities, never admin).
pub const CHART_RBAC_TEMPLATES: [&str; 4] = [
    "templates/serviceaccounts.yaml",
    "templates/rbac-controller.yaml",
    "templates/rbac-pod-exec.yaml",
    "templates/rbac-web.yaml",
];

/// What went wrong setting up or talking to a test cluster.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// `JANUS_TEST_CLUSTER` has a value the kit does not know.
    #[error("{BACKEND_ENV}={0:?}: use \"kubeconfig\" for the cluster in KUBECONFIG, or leave it unset for kubesim")]
    UnknownBackend(String),
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// kubesim did not start.
    #[error("kubesim: {0}")]
    Simulator(String),
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What the kit was doing.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A YAML document could not be applied as it is.
    #[error("YAML document {index}: {reason}")]
    Yaml {
        /// The 0-based position of the document in the stream.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The kubeconfig backend was asked for, but `JANUS_TEST_CLUSTER_CONTEXT` does not name the
    /// kubeconfig's current context.
    #[error(
        "refusing to use the kubeconfig's current context {current:?}: {CONTEXT_ENV} is {}; the test kit \
         deletes test AccessRequests and their credentials and force-applies the CRD and chart RBAC, so \
         set {CONTEXT_ENV}={current:?} only if that is a throwaway cluster",
        confirmed.as_deref().map_or_else(|| "not set".to_string(), |c| format!("{c:?}"))
    )]
    UnconfirmedContext {
        /// The kubeconfig's current context (empty when it has none).
        current: String,
        /// What `JANUS_TEST_CLUSTER_CONTEXT` says (`None`: unset).
        confirmed: Option<String>,
    },
    /// A TokenRequest was answered without a token.
    #[error("TokenRequest for {0} returned no token")]
    NoToken(String),
    /// helm failed or is missing.
    #[error("helm: {0}")]
    Helm(String),
    /// Something did not happen in time.
    #[error("timed out after {after:?}: {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: Duration,
    },
}

impl TestkitError {
    fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Self::Api { what, source }
    }
}

/// Which cluster a [`TestCluster`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An in-process kubesim (the default).
    Simulated,
    /// The current context of `KUBECONFIG` (or the default kubeconfig): `JANUS_TEST_CLUSTER=kubeconfig`.
    Kubeconfig,
}

impl Backend {
    /// The backend `JANUS_TEST_CLUSTER` asks for (unset or empty: kubesim).
    pub fn from_env() -> Result<Self, TestkitError> {
        Self::parse(&std::env::var(BACKEND_ENV).unwrap_or_default())
    }

    /// The backend a `JANUS_TEST_CLUSTER` value names.
    pub fn parse(value: &str) -> Result<Self, TestkitError> {
        match value {
            "" | "kubesim" | "simulated" => Ok(Self::Simulated),
            "kubeconfig" => Ok(Self::Kubeconfig),
            other => Err(TestkitError::UnknownBackend(other.to_string())),
        }
    }
}

/// For a test that needs kubesim itself (fault injection, API server restarts, version switches,
/// token-lifetime or leeway knobs, a second cluster): `true`, after printing why, when the suites run
/// against a real cluster, so the test returns early and the skip is visible in the output.
pub fn kubesim_only(test: &str, reason: &str) -> bool {
    match Backend::from_env() {
        Ok(Backend::Simulated) => false,
        Ok(Backend::Kubeconfig) => {
            // Captured like any test output: scripts/test-real-cluster.sh shows it (--show-output).
            println!("SKIPPED {test} on the real cluster ({BACKEND_ENV}=kubeconfig): kubesim-only: {reason}");
            true
        }
        // start() reports the bad value; a kubesim-only test runs on kubesim meanwhile.
        Err(_) => false,
    }
}

/// For a test step that needs a container's command to have run (its output in the pod's logs), on
/// kubesim reached only through a kubeconfig (`scripts/test-real-cluster.sh --sim`), where nothing can
/// run it: prints `SKIPPED <test>: <reason>` so the skip shows in the output.
pub fn skip(test: &str, reason: &str) {
    // Captured like any test output: scripts/test-real-cluster.sh shows it (--show-output).
    println!("SKIPPED {test}: {reason}");
}

/// Whether the kubeconfig backend may use a kubeconfig whose current context is `current`:
/// only when `confirmed` (the value of [`CONTEXT_ENV`]) is exactly that name. One wrong
/// `current-context` must not point the kit's clean-up at a cluster running a real Janus.
pub fn confirm_context(current: Option<&str>, confirmed: Option<&str>) -> Result<(), TestkitError> {
    match (current, confirmed) {
        (Some(current), Some(confirmed)) if !current.is_empty() && current == confirmed => Ok(()),
        _ => Err(TestkitError::UnconfirmedContext {
            current: current.unwrap_or_default().to_string(),
            confirmed: confirmed.map(str::to_string),
        }),
    }
}

/// Whether `requester` is one of the suites' identities: an address whose domain is exactly
/// [`TEST_REQUESTER_DOMAIN`] (any case), so `x@corp.example.com` or `x@example.com.org` are not.
pub fn is_test_requester(requester: &str) -> bool {
    requester
        .rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.eq_ignore_ascii_case(TEST_REQUESTER_DOMAIN))
}

/// Whether the API server `client` talks to is kubesim (its `/version` reports
/// [`KUBESIM_GIT_COMMIT`]), in process or as a separate process reached through a kubeconfig.
pub async fn served_by_kubesim(client: &kube::Client) -> Result<bool, TestkitError> {
    let info = client
        .apiserver_version()
        .await
        .map_err(TestkitError::api("GET /version"))?;
    Ok(info.git_commit == KUBESIM_GIT_COMMIT)
}

/// A Kubernetes cluster for a test: kubesim or a real one.
pub struct TestCluster {
    backend: Backend,
    sim: Option<kubesim::RunningSim>,
    admin: kube::Client,
    access: ClusterAccess,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("backend", &self.backend)
            .field("server", &self.access.server)
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// kubesim by default; a real cluster when `JANUS_TEST_CLUSTER=kubeconfig` (then `KUBECONFIG` or
    /// the default kubeconfig and its current context are used, if `JANUS_TEST_CLUSTER_CONTEXT`
    /// names it). Opt-in on purpose: a developer's `KUBECONFIG` must never be hit by `cargo test`.
    pub async fn start() -> Result<Self, TestkitError> {
        match Backend::from_env()? {
            Backend::Simulated => Self::start_simulated(kubesim::SimBuilder::new().name("central")).await,
            Backend::Kubeconfig => Self::from_kubeconfig().await,
        }
    }

    /// A kubesim started from `builder` (for tests that need its settings; kubesim-only).
    pub async fn start_simulated(builder: kubesim::SimBuilder) -> Result<Self, TestkitError> {
        let sim = builder
            .start()
            .await
            .map_err(|e| TestkitError::Simulator(format!("{e:#}")))?;
        let admin = sim
            .client()
            .await
            .map_err(|e| TestkitError::Simulator(format!("admin client: {e:#}")))?;
        let access = ClusterAccess::from_kubeconfig_yaml(&sim.kubeconfig_yaml())?;
        Ok(Self {
            backend: Backend::Simulated,
            sim: Some(sim),
            admin,
            access,
        })
    }

    /// The cluster of the current context of `KUBECONFIG` (or the default kubeconfig), which
    /// `JANUS_TEST_CLUSTER_CONTEXT` must name ([`confirm_context`]).
    pub async fn from_kubeconfig() -> Result<Self, TestkitError> {
        let kc = kube::config::Kubeconfig::read().map_err(|e| TestkitError::Kubeconfig(e.to_string()))?;
        confirm_context(kc.current_context.as_deref(), confirmed_context().as_deref())?;
        // Relative paths are relative to the (first) kubeconfig file, as kubectl takes them.
        let first = std::env::var_os("KUBECONFIG")
            .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube/config")));
        let base = first.as_deref().and_then(Path::parent).map(Path::to_path_buf);
        Self::from_parsed_kubeconfig(kc, base.as_deref()).await
    }

    /// The cluster of the current context of the kubeconfig file at `path` (backend
    /// [`Backend::Kubeconfig`]: nothing but that file is used), which `JANUS_TEST_CLUSTER_CONTEXT`
    /// must name ([`confirm_context`]).
    pub async fn from_kubeconfig_file(path: &Path) -> Result<Self, TestkitError> {
        Self::kubeconfig_file_confirmed(path, confirmed_context().as_deref()).await
    }

    /// [`Self::from_kubeconfig_file`] with the confirmation given here instead of in
    /// `JANUS_TEST_CLUSTER_CONTEXT`: the file's current context must be `context`.
    pub async fn from_kubeconfig_file_in_context(path: &Path, context: &str) -> Result<Self, TestkitError> {
        Self::kubeconfig_file_confirmed(path, Some(context)).await
    }

    async fn kubeconfig_file_confirmed(path: &Path, confirmed: Option<&str>) -> Result<Self, TestkitError> {
        let kc = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| TestkitError::Kubeconfig(format!("{}: {e}", path.display())))?;
        confirm_context(kc.current_context.as_deref(), confirmed)?;
        Self::from_parsed_kubeconfig(kc, path.parent()).await
    }

    async fn from_parsed_kubeconfig(kc: kube::config::Kubeconfig, base: Option<&Path>) -> Result<Self, TestkitError> {
        let access = ClusterAccess::from_kubeconfig(kc, base)?;
        let admin = access.admin_client().await?;
        tracing::info!(server = %access.server, "test cluster from the kubeconfig");
        Ok(Self {
            backend: Backend::Kubeconfig,
            sim: None,
            admin,
            access,
        })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the API server is kubesim ([`served_by_kubesim`]): always on the simulated backend;
    /// on the kubeconfig backend when it is a kubesim process (`scripts/test-real-cluster.sh --sim`).
    pub async fn served_by_kubesim(&self) -> Result<bool, TestkitError> {
        if self.sim.is_some() {
            return Ok(true);
        }
        served_by_kubesim(&self.admin).await
    }

    /// The simulator, for kubesim-only tests (fault injection, restarts, direct store access); `None`
    /// on a real cluster.
    pub fn sim(&self) -> Option<&kubesim::RunningSim> {
        self.sim.as_ref()
    }

    /// The simulator, mutably (for [`kubesim::RunningSim::restart`]); `None` on a real cluster.
    pub fn sim_mut(&mut self) -> Option<&mut kubesim::RunningSim> {
        self.sim.as_mut()
    }

    /// An admin client.
    pub fn client(&self) -> kube::Client {
        self.admin.clone()
    }

    /// A client that authenticates with `token` (a ServiceAccount's, say) against this cluster.
    pub async fn client_for_token(&self, token: &str) -> Result<kube::Client, TestkitError> {
        self.access.client_for_token(token).await
    }

    /// A kubeconfig (YAML) that authenticates with `token` against this cluster.
    pub fn kubeconfig_for_token(&self, token: &str) -> Result<String, TestkitError> {
        self.access.kubeconfig_for_token(token)
    }

    /// The API server URL (`https://…`).
    pub fn server_url(&self) -> String {
        self.access.server.clone()
    }

    /// PEM of the CA the API server's certificate is checked against (empty when the kubeconfig
    /// names none, e.g. a cluster with a publicly trusted certificate).
    pub fn ca_pem(&self) -> String {
        self.access.ca_pem.clone()
    }

    /// The admin kubeconfig: kubesim's, or the given one reduced to its current context with every
    /// referenced file inlined.
    pub fn kubeconfig_yaml(&self) -> String {
        self.access.admin_kubeconfig_yaml.clone()
    }

    /// How long a token the cluster accepted may still authenticate after its ServiceAccount is
    /// gone: kubesim's setting, or kube-apiserver's fixed cache TTL.
    pub fn auth_cache_ttl(&self) -> Duration {
        self.sim
            .as_ref()
            .map_or(REAL_AUTH_CACHE_TTL, |s| s.cluster.config.auth_cache_ttl)
    }

    /// Server-side applies every document of a YAML stream (field manager [`FIELD_MANAGER`], forced),
    /// any kind, found through discovery. Documents are applied in order; namespaced objects without
    /// a namespace go to `default`. A CRD is awaited until it is Established, so later documents may
    /// be of its kind.
    pub async fn apply_yaml(&self, multi_doc_yaml: &str) -> Result<(), TestkitError> {
        use serde::Deserialize as _;
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        for (index, doc) in yaml_serde::Deserializer::from_str(multi_doc_yaml).enumerate() {
            let value = Value::deserialize(doc).map_err(|e| TestkitError::Yaml {
                index,
                reason: e.to_string(),
            })?;
            if value.is_null() {
                continue;
            }
            let obj: DynamicObject = serde_json::from_value(value.clone()).map_err(|e| TestkitError::Yaml {
                index,
                reason: format!("not a Kubernetes object: {e}"),
            })?;
            let types = obj.types.clone().ok_or_else(|| TestkitError::Yaml {
                index,
                reason: "no apiVersion/kind".into(),
            })?;
            let name = obj.metadata.name.clone().ok_or_else(|| TestkitError::Yaml {
                index,
                reason: format!("{} without metadata.name", types.kind),
            })?;
            let gvk = GroupVersionKind::try_from(&types).map_err(|e| TestkitError::Yaml {
                index,
                reason: e.to_string(),
            })?;
            let (resource, caps) = kube::discovery::pinned_kind(&self.admin, &gvk)
                .await
                .map_err(TestkitError::api(format!(
                    "discover {}/{}",
                    types.api_version, types.kind
                )))?;
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => {
                    let ns = obj.metadata.namespace.as_deref().unwrap_or("default");
                    Api::namespaced_with(self.admin.clone(), ns, &resource)
                }
                Scope::Cluster => Api::all_with(self.admin.clone(), &resource),
            };
            api.patch(&name, &pp, &Patch::Apply(&value))
                .await
                .map_err(TestkitError::api(format!("apply {} {name}", types.kind)))?;
            if types.kind == "CustomResourceDefinition" {
                self.wait_crd_established(&name, Duration::from_secs(60)).await?;
            }
        }
        Ok(())
    }

    async fn wait_crd_established(&self, name: &str, timeout: Duration) -> Result<(), TestkitError> {
        let api: Api<CustomResourceDefinition> = Api::all(self.admin.clone());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let crd = api
                .get(name)
                .await
                .map_err(TestkitError::api(format!("get CRD {name}")))?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(TestkitError::Timeout {
                    what: format!("CRD {name} Established"),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Makes the cluster look like one with the chart installed, for suites that run the controller
    /// and the web in the test process: the CRD ([`janus_api::crd_yaml`]), the workloads
    /// ([`WORKLOADS`], pods awaited Running), and the chart's ServiceAccounts and RBAC rendered by
    /// the real helm ([`CHART_RBAC_TEMPLATES`]), all server-side applied. On a reused real cluster,
    /// the AccessRequests of test identities ([`is_test_requester`]) an earlier test left behind, and
    /// their credentials, are removed first; nothing else is.
    pub async fn prepare_janus(&self) -> Result<(), TestkitError> {
        self.prepare_janus_with_crd(&janus_api::crd_yaml().map_err(|e| TestkitError::Yaml {
            index: 0,
            reason: format!("the generated CRD: {e}"),
        })?)
        .await
    }

    /// [`Self::prepare_janus`] with another CRD document (e.g. one without its CEL rules).
    pub async fn prepare_janus_with_crd(&self, crd_yaml: &str) -> Result<(), TestkitError> {
        self.apply_yaml(crd_yaml).await?;
        if self.backend == Backend::Kubeconfig {
            self.remove_leftovers().await?;
        }
        self.apply_yaml(WORKLOADS).await?;
        let rbac = render_chart(&[], &CHART_RBAC_TEMPLATES)?;
        self.apply_yaml(&rbac).await?;
        for ns in WORKLOAD_NAMESPACES {
            self.wait_pod_running(ns, "app", Duration::from_secs(180)).await?;
        }
        Ok(())
    }

    /// Deletes the AccessRequests of test identities (finalizers stripped: no controller runs between
    /// tests) and the objects labelled as those requests' credentials, so fixed request names can be
    /// used again. Any other request (a real Janus's audit record and live grants) and its
    /// credentials stay.
    async fn remove_leftovers(&self) -> Result<(), TestkitError> {
        let ars: Api<janus_api::AccessRequest> = Api::all(self.admin.clone());
        let strip = json!({"metadata": {"finalizers": null}});
        let mut names = Vec::new();
        for ar in ars
            .list(&ListParams::default())
            .await
            .map_err(TestkitError::api("list AccessRequests"))?
            .items
        {
            let Some(name) = ar.metadata.name else { continue };
            if !is_test_requester(&ar.spec.requester) {
                continue;
            }
            let gone = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 404);
            if let Err(e) = ars.patch(&name, &PatchParams::default(), &Patch::Merge(&strip)).await
                && !gone(&e)
            {
                return Err(TestkitError::api(format!("strip finalizers of {name}"))(e));
            }
            if let Err(e) = ars.delete(&name, &DeleteParams::default()).await
                && !gone(&e)
            {
                return Err(TestkitError::api(format!("delete AccessRequest {name}"))(e));
            }
            names.push(name);
        }
        let lp = ListParams::default().labels(janus_api::REQUEST_LABEL);
        let dp = DeleteParams::default();
        let ours = |meta: &kube::api::ObjectMeta| {
            meta.labels
                .as_ref()
                .and_then(|l| l.get(janus_api::REQUEST_LABEL))
                .is_some_and(|request| names.contains(request))
        };
        // In the controller's cleanup order: bindings first, then the pod-scoped grants' Roles, then the
        // ServiceAccounts, then the token Secrets.
        self.delete_ours::<RoleBinding>(&lp, &dp, "list RoleBindings", &ours)
            .await?;
        self.delete_ours::<Role>(&lp, &dp, "list Roles", &ours).await?;
        self.delete_ours::<ServiceAccount>(&lp, &dp, "list ServiceAccounts", &ours)
            .await?;
        self.delete_ours::<Secret>(&lp, &dp, "list Secrets", &ours).await?;
        // Deletion is asynchronous; the next test must not find an old request under its name.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for name in names {
            while ars
                .get_opt(&name)
                .await
                .map_err(TestkitError::api("get AccessRequest"))?
                .is_some()
            {
                if tokio::time::Instant::now() > deadline {
                    return Err(TestkitError::Timeout {
                        what: format!("AccessRequest {name} left by an earlier test deleted"),
                        after: Duration::from_secs(30),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Deletes the namespaced objects of kind `K` that carry the request label and that `ours` claims
    /// (best effort: an object already gone, or one another cleaner got first, is fine).
    async fn delete_ours<K>(
        &self,
        lp: &ListParams,
        dp: &DeleteParams,
        what: &'static str,
        ours: &impl Fn(&kube::api::ObjectMeta) -> bool,
    ) -> Result<(), TestkitError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let all: Api<K> = Api::all(self.admin.clone());
        for o in all.list(lp).await.map_err(TestkitError::api(what))?.items {
            let meta = o.meta();
            if !ours(meta) {
                continue;
            }
            if let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) {
                let _ = Api::<K>::namespaced(self.admin.clone(), ns).delete(name, dp).await;
            }
        }
        Ok(())
    }
    /// Waits until pod `ns/name` is Running.
    pub async fn wait_pod_running(&self, ns: &str, name: &str, timeout: Duration) -> Result<(), TestkitError> {
        let pods: Api<Pod> = Api::namespaced(self.admin.clone(), ns);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::from("not found");
        loop {
            if let Some(pod) = pods
                .get_opt(name)
                .await
                .map_err(TestkitError::api(format!("get pod {ns}/{name}")))?
            {
                let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
                if phase == "Running" {
                    return Ok(());
                }
                last = format!("phase {phase:?}");
            }
            if tokio::time::Instant::now() > deadline {
                return Err(TestkitError::Timeout {
                    what: format!("pod {ns}/{name} Running ({last})"),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A token of ServiceAccount `ns/sa` (TokenRequest, [`SA_TOKEN_SECONDS`] long), as an admin would
    /// mint it.
    pub async fn sa_token(&self, ns: &str, sa: &str) -> Result<String, TestkitError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), ns);
        let tr = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(SA_TOKEN_SECONDS),
                ..Default::default()
            },
            ..Default::default()
        };
        let out = api
            .create_token_request(sa, &PostParams::default(), &tr)
            .await
            .map_err(TestkitError::api(format!("TokenRequest for {ns}/{sa}")))?;
        out.status
            .map(|s| s.token)
            .ok_or_else(|| TestkitError::NoToken(format!("{ns}/{sa}")))
    }
}

/// `JANUS_TEST_CLUSTER_CONTEXT`, if set.
fn confirmed_context() -> Option<String> {
    std::env::var(CONTEXT_ENV).ok()
}

/// The repository root (the kit lives in `crates/janus-testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The helm binary scripts/install-test-tools.sh installs (`.tools/bin/helm`), else `helm` on PATH.
pub fn helm() -> PathBuf {
    let local = repo_root().join(".tools/bin/helm");
    if local.exists() { local } else { PathBuf::from("helm") }
}

/// Renders chart templates (`only`, all when empty) with the real helm, release `k8s-janus` in
/// namespace [`NS`], with `--set` values `set`.
pub fn render_chart(set: &[&str], only: &[&str]) -> Result<String, TestkitError> {
    let mut cmd = std::process::Command::new(helm());
    cmd.args(["template", "k8s-janus"])
        .arg(repo_root().join("charts/k8s-janus"))
        .args(["--namespace", NS]);
    for s in set {
        cmd.args(["--set", s]);
    }
    for o in only {
        cmd.args(["--show-only", o]);
    }
    let out = cmd
        .output()
        .map_err(|e| TestkitError::Helm(format!("{}: {e} (run scripts/install-test-tools.sh)", helm().display())))?;
    if !out.status.success() {
        return Err(TestkitError::Helm(format!(
            "template failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
