//! Test harness: clusters set up with the chart's own RBAC, and a controller running with the
//! chart's controller ServiceAccount token (never as admin), so the tests prove the RBAC suffices.
//!
//! The helpers take any [`KubeAccess`]: a [`TestCluster`] (kubesim, or the cluster in KUBECONFIG with
//! `JANUS_TEST_CLUSTER=kubeconfig`; seeded through the API by [`cluster`]) for the portable tests, or a
//! [`RunningSim`] seeded through its store ([`central`] and friends) for kubesim-only ones.
#![allow(dead_code, async_fn_in_trait, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use janus_api::AccessRequest;
use janus_api::config::Config;
use janus_testkit::TestCluster;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kubesim::{RunningSim, SimBuilder};
use serde_json::{Value, json};

pub const NS: &str = "k8s-janus";

/// What the helpers need of a cluster; implemented by kubesim itself and by a [`TestCluster`].
pub trait KubeAccess {
    /// An admin client.
    async fn admin(&self) -> kube::Client;
    /// A client authenticating with `token`.
    async fn for_token(&self, token: &str) -> kube::Client;
    /// The API server URL.
    fn server(&self) -> String;
    /// The API server's CA (PEM).
    fn ca(&self) -> String;
    /// How long a token may still authenticate after its ServiceAccount is gone.
    fn cache_ttl(&self) -> Duration;
    /// The simulator, when the cluster is one (kubesim-only steps use it).
    fn simulated(&self) -> Option<&RunningSim>;
}

impl KubeAccess for RunningSim {
    async fn admin(&self) -> kube::Client {
        self.client().await.expect("admin client")
    }
    async fn for_token(&self, token: &str) -> kube::Client {
        self.client_for_token(token).await.expect("client")
    }
    fn server(&self) -> String {
        self.url()
    }
    fn ca(&self) -> String {
        self.ca_pem().to_string()
    }
    fn cache_ttl(&self) -> Duration {
        self.cluster.config.auth_cache_ttl
    }
    fn simulated(&self) -> Option<&RunningSim> {
        Some(self)
    }
}

impl KubeAccess for TestCluster {
    async fn admin(&self) -> kube::Client {
        self.client()
    }
    async fn for_token(&self, token: &str) -> kube::Client {
        self.client_for_token(token).await.expect("client")
    }
    fn server(&self) -> String {
        self.server_url()
    }
    fn ca(&self) -> String {
        self.ca_pem()
    }
    fn cache_ttl(&self) -> Duration {
        self.auth_cache_ttl()
    }
    fn simulated(&self) -> Option<&RunningSim> {
        self.sim()
    }
}

/// A [`TestCluster`] (kubesim unless `JANUS_TEST_CLUSTER=kubeconfig`) prepared like a cluster with the
/// chart installed, seeded through the API only.
pub async fn cluster() -> TestCluster {
    let tc = TestCluster::start().await.expect("test cluster");
    tc.prepare_janus().await.expect("CRD, chart RBAC and workloads");
    tc
}

pub fn repo_root() -> PathBuf {
    janus_testkit::repo_root()
}

pub fn helm() -> PathBuf {
    janus_testkit::helm()
}

/// Renders chart templates with the real helm binary.
pub fn render_chart(set: &[&str], only: &[&str]) -> String {
    janus_testkit::render_chart(set, only).unwrap_or_else(|e| panic!("{e}"))
}

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
spec: {containers: [{name: main, image: debian}]}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: team-b}
spec: {containers: [{name: main, image: debian}]}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: team-c}
spec: {containers: [{name: main, image: debian}]}
---
apiVersion: v1
kind: Secret
metadata: {name: db-password, namespace: team-a}
stringData: {password: hunter2}
"#;

/// A central kubesim prepared like a cluster with the chart installed.
pub async fn central() -> RunningSim {
    central_from(SimBuilder::new()).await
}

/// [`central`] from a builder with other server settings (token limits, caches).
pub async fn central_from(builder: SimBuilder) -> RunningSim {
    seeded_central(builder, &janus_api::crd_yaml().expect("crd")).await
}

/// A central kubesim with the workloads, the given CRD and the chart's RBAC.
async fn seeded_central(builder: SimBuilder, crd: &str) -> RunningSim {
    let sim = builder.name("central").start().await.expect("kubesim");
    sim.load_seed(WORKLOADS).expect("workloads");
    sim.load_seed(crd).expect("crd");
    let rbac = render_chart(
        &[],
        &[
            "templates/serviceaccounts.yaml",
            "templates/rbac-controller.yaml",
            "templates/rbac-pod-exec.yaml",
            "templates/rbac-web.yaml",
        ],
    );
    sim.load_seed(&rbac).expect("chart RBAC");
    sim
}

/// Removes every `x-kubernetes-validations` from a CRD document.
fn strip_cel(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("x-kubernetes-validations");
            m.values_mut().for_each(strip_cel);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_cel),
        _ => {}
    }
}

/// The generated CRD without its CEL rules.
pub fn crd_without_cel() -> String {
    let mut crd: Value = yaml_serde::from_str(&janus_api::crd_yaml().expect("crd")).expect("crd parses");
    strip_cel(&mut crd);
    let text = yaml_serde::to_string(&crd).expect("yaml");
    assert!(!text.contains("x-kubernetes-validations:"), "no rule left");
    text
}

/// Like [`central`], with the CEL-less CRD: privileged clients can then change what the API server
/// would refuse, as on a cluster whose CRD was not upgraded with the chart.
pub async fn central_without_cel() -> RunningSim {
    seeded_central(SimBuilder::new(), &crd_without_cel()).await
}

/// Asserts that `token` no longer works in `ns` and that it stops authenticating once the server's
/// authentication cache has forgotten it: a 403 (nothing grants it) first is fine, but a 403 that
/// stays is what a ServiceAccount that was never deleted answers. kube-apiserver remembers a
/// successful authentication for its cache TTL (cached_token_authenticator.go; 10 s by default) even
/// after the ServiceAccount is gone, so the 401 is awaited for that TTL and a few seconds more.
pub async fn assert_token_dead(sim: &impl KubeAccess, ns: &str, token: &str) {
    assert_token_dead_within(sim, ns, token, sim.cache_ttl() + Duration::from_secs(5)).await;
}

/// [`assert_token_dead`] with the time the 401 may take.
pub async fn assert_token_dead_within(sim: &impl KubeAccess, ns: &str, token: &str, bound: Duration) {
    use k8s_openapi::api::core::v1::Pod;
    let pods: Api<Pod> = Api::namespaced(sim.for_token(token).await, ns);
    let deadline = std::time::Instant::now() + bound;
    loop {
        match pods.list(&ListParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 401 => return,
            Err(kube::Error::Api(s)) if s.code == 403 => assert!(
                std::time::Instant::now() < deadline,
                "the token is still authenticated (403) {bound:?} later: its ServiceAccount is not gone"
            ),
            other => panic!("token should be refused (401, or 403 while cached): {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A remote kubesim with only the agent (chart in remote mode) and workloads.
pub async fn remote() -> RunningSim {
    let sim = SimBuilder::new().name("remote").start().await.expect("kubesim");
    sim.load_seed(WORKLOADS).expect("workloads");
    sim.load_seed(&render_chart(&["remote.enabled=true"], &[]))
        .expect("agent");
    sim
}

/// A token for a ServiceAccount, as an admin would mint it: an hour, far longer than any suite, and short
/// enough that a token minted on a real cluster (the chart's controller can write RBAC) does not outlive the run.
pub async fn sa_token(sim: &impl KubeAccess, ns: &str, sa: &str) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(sim.admin().await, ns);
    let tr: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"expirationSeconds": 3600}})).expect("tr");
    api.create_token_request(sa, &PostParams::default(), &tr)
        .await
        .expect("token")
        .status
        .expect("status")
        .token
}

/// The test configuration: short minimum TTL, no retention, `admin@example.com` (who [`approve`]s) an
/// admin and so an approver under the default policy; `extra` YAML keys override.
pub fn config(extra: &str) -> Config {
    let base = format!(
        "namespace: {NS}\nadminEmails: [admin@example.com]\nminTtlSeconds: 1\ndefaultTtlSeconds: 60\nexcludedNamespaces: [kube-system]\nretentionSeconds: 0\n"
    );
    let mut doc: yaml_serde::Mapping = yaml_serde::from_str(&base).expect("base");
    let over: Option<yaml_serde::Mapping> = yaml_serde::from_str(extra).expect("extra");
    for (k, v) in over.unwrap_or_default() {
        doc.insert(k, v);
    }
    Config::from_yaml(&yaml_serde::to_string(&doc).expect("yaml"), "test").expect("config")
}

/// A running controller (in this process, with the chart's controller identity).
pub struct Controller {
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Controller {
    pub async fn start(sim: &impl KubeAccess, cfg: Config) -> Self {
        Self::start_with(sim, cfg, None).await
    }

    /// Starts with `/metrics` served on `metrics` (benchmarks read reconcile counts there).
    pub async fn start_with(sim: &impl KubeAccess, cfg: Config, metrics: Option<std::net::SocketAddr>) -> Self {
        let token = sa_token(sim, NS, "k8s-janus-controller").await;
        Self::start_as(sim, cfg, metrics, &token).await
    }

    /// Starts with the given token as the controller's identity.
    pub async fn start_as(
        sim: &impl KubeAccess,
        cfg: Config,
        metrics: Option<std::net::SocketAddr>,
        token: &str,
    ) -> Self {
        let client = sim.for_token(token).await;
        let opts = janus_controller::Options {
            metrics_listen: metrics,
            identity: "test".into(),
            leader_election: false,
        };
        Self::spawn(cfg, client, sim.server(), sim.ca(), opts)
    }

    /// Runs it on a client the caller built (tests/calls/mod.rs records that client's requests).
    pub fn spawn(cfg: Config, client: kube::Client, url: String, ca: String, opts: janus_controller::Options) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            if let Err(e) = janus_controller::run(cfg, client, url, ca, opts, stop).await {
                panic!("controller failed: {e:#}");
            }
        });
        Self { task, stop: Some(tx) }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
        self.task.abort();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn request(name: &str, cluster: &str, namespaces: &[&str], ttl: i64) -> AccessRequest {
    serde_json::from_value(json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": name},
        "spec": {"requester": "Jane.Doe+ops@example.com", "cluster": cluster, "namespaces": namespaces, "reason": "debugging", "ttlSeconds": ttl}
    }))
    .expect("request")
}

pub async fn create(sim: &impl KubeAccess, ar: &AccessRequest) {
    let api: Api<AccessRequest> = Api::all(sim.admin().await);
    api.create(&PostParams::default(), ar).await.expect("create request");
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Writes a decision into the spec, as the web UI does.
pub async fn decide(sim: &impl KubeAccess, name: &str, field: &str, value: Value) {
    let api: Api<AccessRequest> = Api::all(sim.admin().await);
    let patch = json!({"spec": {field: value}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("decision");
}

pub async fn approve(sim: &impl KubeAccess, name: &str) {
    decide(sim, name, "approval", json!({"by": "admin@example.com", "at": now()})).await;
}

pub async fn get(sim: &impl KubeAccess, name: &str) -> Option<AccessRequest> {
    let api: Api<AccessRequest> = Api::all(sim.admin().await);
    api.get_opt(name).await.expect("get")
}

pub fn phase(ar: &AccessRequest) -> String {
    ar.status
        .as_ref()
        .map(|s| s.phase.to_string())
        .unwrap_or_else(|| "<no status>".into())
}

/// Waits until the request reaches `want` (panics with its status after `secs`).
pub async fn wait_phase(sim: &impl KubeAccess, name: &str, want: &str, secs: u64) -> AccessRequest {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(ar) = get(sim, name).await {
            if phase(&ar) == want {
                return ar;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{name}: wanted {want}, status is {:?}", ar.status);
            }
        } else if tokio::time::Instant::now() > deadline {
            panic!("{name}: gone while waiting for {want}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every credential object of a request, found by label in all namespaces of both clusters.
pub async fn leftovers(central: &impl KubeAccess, target: &impl KubeAccess, request: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&format!("{}={request}", janus_api::REQUEST_LABEL));
    let tc = target.admin().await;
    let mut out = Vec::new();
    for sa in Api::<ServiceAccount>::all(tc.clone())
        .list(&lp)
        .await
        .expect("list")
        .items
    {
        out.push(format!("sa/{:?}", sa.metadata.name));
    }
    for rb in Api::<RoleBinding>::all(tc.clone()).list(&lp).await.expect("list").items {
        out.push(format!("rb/{:?}", rb.metadata.name));
    }
    // The namespaced Roles of pod-scoped grants.
    for r in Api::<Role>::all(tc).list(&lp).await.expect("list").items {
        out.push(format!("role/{:?}", r.metadata.name));
    }
    for s in Api::<Secret>::all(central.admin().await)
        .list(&lp)
        .await
        .expect("list")
        .items
    {
        out.push(format!("secret/{:?}", s.metadata.name));
    }
    out
}

/// Token Secrets of a request: (namespace it grants, token).
pub async fn tokens(central: &impl KubeAccess, request: &str) -> Vec<(String, String)> {
    let lp = ListParams::default().labels(&format!("{}={request}", janus_api::REQUEST_LABEL));
    let api: Api<Secret> = Api::namespaced(central.admin().await, NS);
    let mut out = Vec::new();
    for s in api.list(&lp).await.expect("list").items {
        let d = s.data.expect("data");
        let get = |k: &str| String::from_utf8(d.get(k).expect(k).0.clone()).expect("utf8");
        out.push((get("namespace"), get("token")));
    }
    out.sort();
    out
}

pub type Shared<T> = Arc<T>;
