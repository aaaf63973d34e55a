#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Helm chart against kubesim with the real helm binary (issue 7, "Verified by"):
//!
//! - `chart_install_runs_a_full_lifecycle_on_both_clusters`: the chart README's install commands, verbatim
//!   (`helm upgrade --install k8s-janus ./charts/k8s-janus --namespace k8s-janus --create-namespace`, and
//!   `--set remote.enabled=true` on the remote), on clusters holding nothing but workloads. Then the
//!   controller and the web process run outside the cluster, as the `janus` binary with the arguments
//!   and environment of the chart's Deployments, the chart's ConfigMap and the tokens of the
//!   ServiceAccounts the chart created; request → approve → exec → expire passes on both clusters.
//! - `every_chart_rbac_rule_is_needed`: each verb of each rule of the controller, web and agent roles
//!   and of the access ClusterRoles (`janus-pod-exec`, `-logs`, `-debug`), as the chart installed them, is removed in turn, and a probe of the role
//!   must fail while all pass with the full roles (`Probe`, `ROLES` and `UNPROBED` below;
//!   docs/security.md, "Every rule is needed"). Portable: the central cluster is janus-testkit's
//!   `TestCluster` (kubesim, or a real cluster with `JANUS_TEST_CLUSTER=kubeconfig`, as
//!   scripts/test-real-cluster.sh runs it), the remote an in-process kubesim (`install_for_probes`).
//! - `the_image_runs_what_the_chart_invokes`: the Dockerfile and the chart agree (binary, path, user,
//!   subcommands and flags the chart passes).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use janus_api::AccessRequest;
use janus_api::config::Config;
use janus_testkit::{Backend, TestCluster};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use kubesim::{RunningSim, SimBuilder};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

const NS: &str = "k8s-janus";
const RELEASE: &str = "k8s-janus";
const ENGINEER_PASSWORD: &str = "engineer password 1";
/// The chart's pod and container security context (charts/k8s-janus/templates/_helpers.tpl).
const CHART_UID: i64 = 65532;

/// Namespaces and pods only: everything k8s-janus needs comes from the chart.
const WORKLOADS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
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
"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn helm_binary() -> PathBuf {
    let local = repo_root().join(".tools/bin/helm");
    assert!(
        local.exists(),
        "helm not found at {}: run scripts/install-test-tools.sh",
        local.display()
    );
    local
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

// ---------------------------------------------------------------- clusters and helm

/// A cluster with its admin kubeconfig: an in-process kubesim ([`Cluster::start`]) or, for the
/// central cluster of the RBAC probes, whatever [`TestCluster::start`] gives (kubesim, or the
/// cluster of `KUBECONFIG` with `JANUS_TEST_CLUSTER=kubeconfig`).
struct Cluster {
    tc: TestCluster,
    /// A name for files of this cluster in the test's directory.
    name: String,
    /// The admin kubeconfig helm uses (kubesim's; `None` for a cluster helm never touches).
    kubeconfig: Option<PathBuf>,
}

impl Cluster {
    async fn start(name: &str, dir: &Path, version: &str) -> Cluster {
        let builder = SimBuilder::new()
            .name(name)
            .version(version)
            .workdir(dir.join(format!("{name}-pods")));
        let tc = TestCluster::start_simulated(builder).await.expect("kubesim");
        let sim = tc.sim().expect("kubesim");
        sim.load_seed(WORKLOADS).expect("workloads");
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        sim.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        Cluster {
            tc,
            name: name.to_string(),
            kubeconfig: Some(kubeconfig),
        }
    }

    /// The simulator (clusters made by [`Cluster::start`] are kubesim).
    fn sim(&self) -> &RunningSim {
        self.tc.sim().expect("an in-process kubesim")
    }

    /// An admin client.
    fn client(&self) -> kube::Client {
        self.tc.client()
    }

    async fn admin(&self) -> kube::Client {
        self.client()
    }

    /// `helm upgrade --install k8s-janus ./charts/k8s-janus --namespace k8s-janus --create-namespace`
    /// (+ `--set` values), from the repository root, as the chart README says.
    async fn helm_install(&self, dir: &Path, sets: &[&str]) {
        let mut args = vec![
            "upgrade",
            "--install",
            RELEASE,
            "./charts/k8s-janus",
            "--namespace",
            NS,
            "--create-namespace",
        ];
        for s in sets {
            args.extend(["--set", s]);
        }
        let home = dir.join(format!("helm-{}", self.sim().addr().port()));
        let out = tokio::process::Command::new(helm_binary())
            .args(&args)
            .current_dir(repo_root())
            .env(
                "KUBECONFIG",
                self.kubeconfig.as_ref().expect("a cluster helm installs to"),
            )
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output();
        let out = tokio::time::timeout(Duration::from_secs(120), out)
            .await
            .expect("helm finished in time")
            .expect("helm runs");
        assert!(
            out.status.success(),
            "helm {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A token of a ServiceAccount (TokenRequest, as an admin mints it), for as long as the test kit's:
    /// on a real cluster the chart controller's token can write RBAC and must not outlive the run.
    async fn token(&self, sa: &str) -> String {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin().await, NS);
        let tr: k8s_openapi::api::authentication::v1::TokenRequest =
            serde_json::from_value(json!({"spec": {"expirationSeconds": janus_testkit::SA_TOKEN_SECONDS}}))
                .expect("tr");
        api.create_token_request(sa, &PostParams::default(), &tr)
            .await
            .unwrap_or_else(|e| panic!("token for {sa} (did the chart create it?): {e}"))
            .status
            .expect("status")
            .token
    }

    /// Writes a kubeconfig with a ServiceAccount's token.
    async fn sa_kubeconfig(&self, sa: &str, dir: &Path) -> (PathBuf, String) {
        let token = self.token(sa).await;
        let path = dir.join(format!("{sa}-{}.kubeconfig", self.name));
        let kubeconfig = self.tc.kubeconfig_for_token(&token).expect("kubeconfig");
        std::fs::write(&path, kubeconfig).expect("write kubeconfig");
        (path, token)
    }

    async fn secret_value(&self, name: &str, key: &str) -> String {
        let api: Api<Secret> = Api::namespaced(self.admin().await, NS);
        let s = api.get(name).await.unwrap_or_else(|e| panic!("Secret {name}: {e}"));
        let data = s.data.unwrap_or_default();
        let v = data
            .get(key)
            .unwrap_or_else(|| panic!("Secret {name} has no key {key}"));
        String::from_utf8(v.0.clone()).expect("utf8")
    }
}

/// Registers the remote cluster on the central one as scripts/setup.sh does: Secret
/// `remote-kubeconfig` with a kubeconfig holding a token of the agent ServiceAccount the chart created.
async fn register_remote(central: &Cluster, remote: &Cluster) {
    use janus_registration::kubeconfig::{Auth, KubeconfigInput, build};
    let token = remote.token(janus_registration::agent::AGENT_SERVICE_ACCOUNT).await;
    let kubeconfig = build(&KubeconfigInput {
        name: "remote".into(),
        server: remote.tc.server_url(),
        ca_pem: Some(remote.tc.ca_pem().into_bytes()),
        tls_server_name: None,
        insecure: false,
        auth: Auth::Token(token),
    })
    .expect("kubeconfig");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "remote-kubeconfig", "namespace": NS,
                     "labels": {janus_registration::CLUSTER_LABEL: "remote",
                                "app.kubernetes.io/managed-by": "k8s-janus"}},
        "stringData": {janus_registration::KUBECONFIG_KEY: kubeconfig},
    }))
    .expect("secret");
    recreate_secret(central, secret).await;
}

/// Creates a Secret in the release namespace, replacing one of the same name an earlier run left on
/// a reused real cluster.
async fn recreate_secret(c: &Cluster, secret: Secret) {
    let api = Api::<Secret>::namespaced(c.client(), NS);
    let name = secret.metadata.name.clone().expect("a named Secret");
    match api.delete(&name, &Default::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => panic!("delete the old Secret {name}: {e}"),
    }
    api.create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("Secret {name}: {e}"));
}

/// Both clusters with the chart installed and the remote registered.
struct Installed {
    dir: tempfile::TempDir,
    central: Cluster,
    remote: Cluster,
    /// config.yaml of the chart's ConfigMap, as read back from the central cluster.
    config_yaml: String,
    /// The chart's Deployments on the central cluster (as installed, or as rendered).
    deployments: Vec<Deployment>,
}

async fn install(central_sets: &[&str]) -> Installed {
    let version = kubesim::DEFAULT_VERSION;
    let dir = tempfile::tempdir().expect("tmp");
    let (central, remote) = tokio::join!(
        Cluster::start("central", dir.path(), version),
        Cluster::start("remote", dir.path(), version)
    );
    let mut sets = clusters_sets();
    sets.extend_from_slice(central_sets);
    tokio::join!(
        central.helm_install(dir.path(), &sets),
        remote.helm_install(dir.path(), &["remote.enabled=true"])
    );
    let mut deployments = Vec::new();
    for component in ["controller", "web"] {
        let dep: Deployment = Api::namespaced(central.client(), NS)
            .get(&format!("{RELEASE}-{component}"))
            .await
            .unwrap_or_else(|e| panic!("Deployment {component}: {e}"));
        deployments.push(dep);
    }
    finish_install(dir, central, remote, deployments).await
}

/// `--set` values pointing `clusters[]` at the remote (a --set list replaces the default list, so
/// clusters[0] too), and naming `admin@example.com`, who approves through the CRD in these tests, an
/// admin: under the default approval policy the controller counts an approval only from an approver.
fn clusters_sets() -> Vec<&'static str> {
    vec![
        "janus.adminEmails[0]=admin@example.com",
        "clusters[0].name=central",
        "clusters[0].displayName=Central",
        "clusters[1].name=remote",
        "clusters[1].displayName=Remote",
    ]
}

/// [`clusters_sets`], and the shipped roles with an image the debug role may start (a `--set` list
/// replaces the whole default list, so every role is spelled out).
fn probe_sets() -> Vec<&'static str> {
    let mut sets = clusters_sets();
    sets.extend([
        "janus.roles[0].name=exec",
        "janus.roles[0].clusterRole=janus-pod-exec",
        "janus.roles[0].terminal=shell",
        "janus.roles[1].name=logs",
        "janus.roles[1].clusterRole=janus-pod-logs",
        "janus.roles[1].terminal=logs",
        "janus.roles[2].name=debug",
        "janus.roles[2].clusterRole=janus-pod-debug",
        "janus.roles[2].terminal=debug",
        "janus.roles[2].debugImages[0]=busybox:1.36",
    ]);
    sets
}

/// Registers the remote, reads the chart's config back from the central cluster and checks it.
async fn finish_install(
    dir: tempfile::TempDir,
    central: Cluster,
    remote: Cluster,
    deployments: Vec<Deployment>,
) -> Installed {
    register_remote(&central, &remote).await;
    let cm: ConfigMap = Api::namespaced(central.admin().await, NS)
        .get(&format!("{RELEASE}-config"))
        .await
        .expect("the chart's ConfigMap");
    let config_yaml = cm.data.unwrap_or_default()["config.yaml"].clone();
    let config = Config::from_yaml(&config_yaml, "ConfigMap").expect("the chart's config.yaml is valid");
    let names: Vec<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["central", "remote"], "clusters from --set");
    Installed {
        dir,
        central,
        remote,
        config_yaml,
        deployments,
    }
}

/// The kinds of the chart's objects the RBAC probes install on the central cluster: the identities,
/// their rules, the config and the generated Secrets the Deployments read. The Deployments are only
/// read (the janus processes run on this host), never applied: on a real cluster that would undo
/// the `--replicas=0` of the installed controller, which would then reconcile the probes' requests.
const PROBED_CHART_KINDS: [&str; 7] = [
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// The clusters of the RBAC probes, with the chart "installed" on both.
///
/// The central cluster is [`TestCluster::start`]'s: kubesim reporting (and authorizing as)
/// Kubernetes `version`, or with `JANUS_TEST_CLUSTER=kubeconfig` the cluster of `KUBECONFIG` (its
/// own version; see [`every_rule_is_needed_on`]). Everything goes there through the API:
/// [`TestCluster::prepare_janus`] (CRD, workloads, leftovers of earlier runs removed), then the
/// chart rendered by the real helm with the same `--set` values as [`install`], server-side applied
/// ([`PROBED_CHART_KINDS`]). On the kind cluster of .github/workflows/kind.yml, which has the chart
/// installed as this same release, the forced apply takes those objects over (and re-generates the
/// chart's Secrets): acceptable on the throwaway cluster the real-cluster suites require, and the
/// probes put every role's rules back after each removal.
///
/// The remote cluster (agent RBAC, and the "satellite" registered only by a labelled Secret) stays
/// an in-process kubesim with `helm install` in both modes: the controller and the web the probes
/// start run on this host, so they reach it, and a second real cluster is not something a
/// kubeconfig gives.
async fn install_for_probes(version: &str) -> Installed {
    use serde::Deserialize as _;
    let dir = tempfile::tempdir().expect("tmp");
    let tc = match Backend::from_env().expect("JANUS_TEST_CLUSTER") {
        Backend::Simulated => {
            let builder = SimBuilder::new()
                .name("central")
                .version(version)
                .workdir(dir.path().join("central-pods"));
            TestCluster::start_simulated(builder).await
        }
        Backend::Kubeconfig => TestCluster::start().await,
    }
    .expect("the central test cluster");
    let (prepared, remote) = tokio::join!(tc.prepare_janus(), async {
        let remote = Cluster::start("remote", dir.path(), version).await;
        remote.helm_install(dir.path(), &["remote.enabled=true"]).await;
        remote
    });
    prepared.expect("CRD, workloads and the chart's RBAC on the central cluster");

    let rendered = janus_testkit::render_chart(&probe_sets(), &[]).expect("helm template");
    let mut apply = Vec::new();
    let mut deployments = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(&rendered) {
        let mut obj = Value::deserialize(doc).expect("helm template output is YAML");
        let kind = obj["kind"].as_str().unwrap_or_default().to_string();
        if kind == "Deployment" {
            deployments.push(serde_json::from_value::<Deployment>(obj).expect("a Deployment"));
        } else if PROBED_CHART_KINDS.contains(&kind.as_str()) {
            let cluster_scoped = kind.starts_with("Cluster");
            if !cluster_scoped && obj["metadata"]["namespace"].is_null() {
                obj["metadata"]["namespace"] = json!(NS);
            }
            apply.push(serde_json::to_string(&obj).expect("json"));
        }
    }
    tc.apply_yaml(&apply.join("\n---\n"))
        .await
        .expect("the chart's objects on the central cluster");
    let central = Cluster {
        tc,
        name: "central".into(),
        kubeconfig: None,
    };
    finish_install(dir, central, remote, deployments).await
}

// ---------------------------------------------------------------- the janus processes

/// A `janus` process (killed on drop; its log is printed when the test fails).
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "---- last lines of {} ----\n{}",
                self.log.display(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

/// Runs the janus container of a chart Deployment outside the cluster: the same subcommand, flags and
/// environment (Secrets resolved from the cluster), with `/etc/janus` (the ConfigMap volume) mapped to
/// a directory holding `config.yaml`, listeners moved to free loopback ports, and `extra` flags.
async fn run_deployment(
    inst: &Installed,
    component: &str,
    workdir: &Path,
    listen: &[(&str, u16)],
    extra: &[String],
) -> Proc {
    let name = format!("{RELEASE}-{component}");
    let dep = inst
        .deployments
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("Deployment {name}"))
        .clone();
    let pod = dep.spec.expect("spec").template.spec.expect("pod spec");
    let c = pod
        .containers
        .iter()
        .find(|c| c.name == component)
        .expect("janus container");
    assert_eq!(
        c.command.as_deref(),
        Some(&["janus".to_string()][..]),
        "{component}: command"
    );
    let etc = workdir.join("etc-janus");
    std::fs::create_dir_all(&etc).expect("mkdir");
    std::fs::write(etc.join("config.yaml"), &inst.config_yaml).expect("config.yaml");
    let config_mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "config")
        .expect("config mount")
        .mount_path
        .clone();
    let mut args: Vec<String> = Vec::new();
    for a in c.args.iter().flatten() {
        let mut a = a.clone();
        if let Some(rest) = a.strip_prefix(&format!("{config_mount}/")) {
            a = etc.join(rest).display().to_string();
        }
        if let Some((_, port)) = listen.iter().find(|(from, _)| *from == a) {
            a = format!("127.0.0.1:{port}");
        }
        args.push(a);
    }
    args.extend(extra.iter().cloned());
    let log = workdir.join(format!("{component}.log"));
    let out = std::fs::File::create(&log).expect("log");
    let err = out.try_clone().expect("log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_janus"));
    cmd.args(&args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("JANUS_LOG_FORMAT", "text")
        .env("JANUS_LOG", "info,kube=warn")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            v.clone()
        } else {
            let from = e.value_from.as_ref().expect("value or valueFrom");
            if let Some(s) = &from.secret_key_ref {
                inst.central.secret_value(&s.name, &s.key).await
            } else if let Some(f) = &from.field_ref {
                assert_eq!(f.field_path, "metadata.name", "{component}: env {}", e.name);
                format!("{RELEASE}-{component}-test")
            } else {
                panic!("{component}: env {} has an unexpected source", e.name)
            }
        };
        cmd.env(&e.name, value);
    }
    let child = cmd.spawn().expect("janus starts");
    Proc { child, log }
}

/// The web process with the web ServiceAccount's token and a fresh SQLite database; returns its URL
/// once `/readyz` says ready, or an error after `wait`.
async fn start_web(inst: &Installed, workdir: &Path, wait: Duration) -> (Proc, Result<String, String>) {
    std::fs::create_dir_all(workdir).expect("mkdir");
    let (kubeconfig, _) = inst.central.sa_kubeconfig(&format!("{RELEASE}-web"), workdir).await;
    let (port, metrics) = (free_port(), free_port());
    let db = format!("sqlite://{}", workdir.join("janus.db").display());
    let proc = run_deployment(
        inst,
        "web",
        workdir,
        &[("0.0.0.0:8080", port), ("0.0.0.0:9090", metrics)],
        &[
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--database-url".into(),
            db,
        ],
    )
    .await;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + wait;
    let mut last = String::from("not answering");
    while Instant::now() < deadline {
        match http.get(format!("{url}/readyz")).send().await {
            Ok(r) => {
                let text = r.text().await.unwrap_or_default();
                if text == "ready" {
                    return (proc, Ok(url));
                }
                last = text;
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (proc, Err(format!("web not ready: {last}")))
}

// ---------------------------------------------------------------- the web JSON API

struct Session {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Session {
    async fn login(base: &str, user: &str, password: &str) -> Result<Session, String> {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("login as {user}: {}", r.status()));
        }
        let cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .ok_or("no session cookie")?
            .to_string();
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        Ok(Session {
            http,
            base: base.to_string(),
            cookie,
            csrf: body["csrfToken"].as_str().ok_or("no csrf token")?.to_string(),
        })
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("GET");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .expect("POST");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn phase(&self, name: &str) -> String {
        let (_, v) = self.get(&format!("/api/v1/requests/{name}")).await;
        v["phase"].as_str().unwrap_or_default().to_string()
    }

    async fn wait_phase(&self, name: &str, phase: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.phase(name).await;
            if now == phase {
                return;
            }
            assert!(Instant::now() < deadline, "{name}: wanted {phase}, is {now:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn namespaces(&self, cluster: &str) -> Result<Vec<String>, String> {
        let (status, v) = self.get(&format!("/api/v1/clusters/{cluster}/namespaces")).await;
        if status != 200 {
            return Err(format!("namespaces of {cluster}: {status} {v}"));
        }
        Ok(v["namespaces"]
            .as_array()
            .map(|a| a.iter().filter_map(|n| n.as_str().map(String::from)).collect())
            .unwrap_or_default())
    }
}

/// Logs in as the bootstrap admin (credentials from the chart's `<release>-bootstrap-admin` Secret) and
/// creates an engineer through the API; returns (admin, engineer).
async fn accounts(inst: &Installed, url: &str, engineer: &str) -> Result<(Session, Session), String> {
    let secret = format!("{RELEASE}-bootstrap-admin");
    let user = inst.central.secret_value(&secret, "username").await;
    let password = inst.central.secret_value(&secret, "password").await;
    let admin = Session::login(url, &user, &password).await?;
    let (status, body) = admin
        .post(
            "/api/v1/users",
            json!({"username": engineer, "email": format!("{engineer}@example.com"), "password": ENGINEER_PASSWORD, "isAdmin": false}),
        )
        .await;
    if status != 201 {
        return Err(format!("creating the engineer: {status} {body}"));
    }
    let engineer = Session::login(url, engineer, ENGINEER_PASSWORD).await?;
    Ok((admin, engineer))
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the terminal of `team-a/app` for a request and runs `echo` in it.
async fn shell_echo(s: &Session, request: &str, marker: &str) -> Result<Ws, String> {
    let url = format!(
        "{}/ws/terminal/{request}?namespace=team-a&pod=app&cols=80&rows=24&csrf={}",
        s.base.replace("http://", "ws://"),
        s.csrf
    );
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert("cookie", s.cookie.parse().unwrap());
    req.headers_mut().insert("origin", s.base.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| format!("{request}: terminal refused: {e}"))?;
    echo_through(&mut ws, request, marker, "", "terminal").await?;
    Ok(ws)
}

/// Credential objects of a request, by label: ServiceAccounts and RoleBindings on the target, token
/// Secrets on the central cluster.
async fn credentials(central: &Cluster, target: &Cluster, request: &str) -> Vec<String> {
    let lp = ListParams::default().labels(&format!("{}={request}", janus_api::REQUEST_LABEL));
    let t = target.admin().await;
    let mut out = Vec::new();
    for sa in Api::<ServiceAccount>::all(t.clone())
        .list(&lp)
        .await
        .expect("list")
        .items
    {
        out.push(format!("ServiceAccount {:?}", sa.metadata.name));
    }
    for rb in Api::<RoleBinding>::all(t).list(&lp).await.expect("list").items {
        out.push(format!("RoleBinding {:?}", rb.metadata.name));
    }
    for s in Api::<Secret>::all(central.admin().await)
        .list(&lp)
        .await
        .expect("list")
        .items
    {
        out.push(format!("Secret {:?}", s.metadata.name));
    }
    out
}

// ---------------------------------------------------------------- 1. install + lifecycle

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chart_install_runs_a_full_lifecycle_on_both_clusters() {
    // 60 s is the smallest minTtlSeconds values.schema.json allows.
    let inst = install(&["janus.minTtlSeconds=60"]).await;
    let dir = inst.dir.path().to_path_buf();

    // The controller: chart Deployment arguments (leader election included), controller token.
    let cdir = dir.join("controller");
    std::fs::create_dir_all(&cdir).expect("mkdir");
    let (ckube, _) = inst
        .central
        .sa_kubeconfig(&format!("{RELEASE}-controller"), &cdir)
        .await;
    let _controller = run_deployment(
        &inst,
        "controller",
        &cdir,
        &[("0.0.0.0:9090", free_port())],
        &["--kubeconfig".into(), ckube.display().to_string()],
    )
    .await;
    let (_web, url) = start_web(&inst, &dir.join("web"), Duration::from_secs(30)).await;
    let url = url.expect("web ready");
    let (admin, engineer) = accounts(&inst, &url, "engineer").await.expect("accounts");

    let (_, clusters) = engineer.get("/api/v1/clusters").await;
    let names: Vec<&str> = clusters["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["central", "remote"]);

    // Requests on both clusters at once, so both expire during the same minute.
    let targets = [("central", &inst.central), ("remote", &inst.remote)];
    let mut requests = Vec::new();
    for (cluster, _) in &targets {
        let ns = engineer.namespaces(cluster).await.expect("namespaces");
        assert!(ns.contains(&"team-a".to_string()), "{cluster}: {ns:?}");
        assert!(
            !ns.contains(&NS.to_string()),
            "{cluster}: the Janus namespace is excluded: {ns:?}"
        );
        let (status, created) = engineer
            .post(
                "/api/v1/requests",
                json!({"cluster": cluster, "namespaces": ["team-a"], "ttlSeconds": 60, "reason": "chart end-to-end test"}),
            )
            .await;
        assert_eq!(status, 201, "{cluster}: {created}");
        requests.push(created["name"].as_str().expect("name").to_string());
    }
    for name in &requests {
        let (status, body) = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
        assert_eq!(status, 200, "approve {name}: {body}");
    }
    let mut shells = Vec::new();
    let mut tokens = Vec::new();
    for ((cluster, target), name) in targets.iter().zip(&requests) {
        engineer.wait_phase(name, "Active", Duration::from_secs(30)).await;
        let found = credentials(&inst.central, target, name).await;
        assert_eq!(
            found.len(),
            3,
            "{cluster}: one ServiceAccount, RoleBinding and Secret: {found:?}"
        );
        shells.push(shell_echo(&engineer, name, cluster).await.expect("terminal"));
        let lp = ListParams::default().labels(&format!("{}={name}", janus_api::REQUEST_LABEL));
        let secret = Api::<Secret>::namespaced(inst.central.admin().await, NS)
            .list(&lp)
            .await
            .expect("list")
            .items
            .remove(0);
        let token = secret.data.expect("data")["token"].0.clone();
        tokens.push(String::from_utf8(token).expect("utf8"));
    }

    // Expiry: the phase, the open terminals, the credentials and the tokens themselves.
    for name in &requests {
        engineer.wait_phase(name, "Expired", Duration::from_secs(100)).await;
    }
    for (ws, name) in shells.iter_mut().zip(&requests) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "{name}: the terminal stayed open after expiry"
            );
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
                Ok(Some(Ok(_))) => {}
                Err(_) => {}
            }
        }
    }
    for (((cluster, target), name), token) in targets.iter().zip(&requests).zip(&tokens) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = credentials(&inst.central, target, name).await;
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{cluster}: left after expiry: {left:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let client = target.tc.client_for_token(token).await.expect("client");
        let denied = Api::<Pod>::namespaced(client, "team-a")
            .list(&ListParams::default())
            .await;
        assert!(denied.is_err(), "{cluster}: the expired token still lists pods");
    }
}

// ---------------------------------------------------------------- 2. every RBAC rule is needed

/// Steps of the product, each run with the chart's own identities; every verb of every rule must be
/// needed by at least one of the steps listed for its role in `ROLES`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Probe {
    /// The controller's reconcile (`janus_controller::reconcile::reconcile`, controller token) drives a
    /// request on the central and one on the remote cluster through their whole life: Pending (its
    /// finalizer, status, the check that its namespaces exist), Active once approved (ServiceAccount,
    /// RoleBinding to `janus-pod-exec`, TokenRequest, token Secret, Events), extended (tokens re-issued:
    /// the existing ServiceAccount and RoleBinding are adopted, the token Secret replaced), revoked
    /// (credentials found by label and deleted); a denied request is deleted after `retentionSeconds`
    /// (shortened to 1 s here).
    Controller,
    /// The controller itself (`janus_controller::run`, controller token): it watches AccessRequests
    /// (an approved one becomes Active) and its token Secrets (a deleted one is re-issued).
    Watch,
    /// Leader election (`janus_controller::leader::campaign`, controller token) takes and releases a
    /// Lease; a standby watching it takes over at once.
    LeaderElection,
    /// The web process (web token) starts, an engineer creates a request through the JSON API, sees it
    /// in their list (the web process's watch) and an admin approves it; the request form lists the namespaces of the central cluster, of the remote
    /// (configured) and of a cluster registered only by a labelled Secret; the clusters page finds
    /// `janus-pod-exec` on each.
    Web,
    /// An engineer with an Active request uses it through the web UI (which acts with the request's
    /// own token): the pod list, a shell (`echo` through the terminal WebSocket), the log stream and
    /// the events of the namespace.
    Terminal,
    /// Pod-scoped grants on the central and the remote cluster, through the controller's reconcile
    /// (controller token; agent token on the remote), with one reconcile context kept for the whole
    /// probe so its pod watches run: a `logs` request limited to a label selector becomes Active with a
    /// namespaced Role naming the matching pod (the role's ClusterRole read and narrowed), a pod that
    /// starts matching is added to the Role and a deleted one removed (the pod watch); an `exec`
    /// request limited to a Deployment resolves the workload's selector (apps get); both are revoked
    /// and their Roles found by label and deleted.
    Scoped,
    /// An engineer with an Active `logs` request (role janus-pod-logs): the pod list, the log stream
    /// and the events, through the web UI with the request's own token.
    Logs,
    /// An engineer with an Active `debug` request (role janus-pod-debug): the pod list, the events, the
    /// log stream, a debug container started next to a container (`POST …/debug`, an allowed image) and
    /// attached to through the terminal WebSocket (`echo`).
    Debug,
}

/// The roles the chart installs and the probes that need their rules, in the order they are tried
/// (docs/security.md, "Every rule is needed").
const ROLES: [(&str, &str, &str, &[Probe]); 8] = [
    // (cluster, kind, name, probes)
    // What requesters get (the remote cluster's copy is the same template). First, while the web
    // process of this probe has never lost its own rights.
    ("central", "ClusterRole", "janus-pod-exec", &[Probe::Terminal]),
    ("central", "ClusterRole", "janus-pod-logs", &[Probe::Logs]),
    ("central", "ClusterRole", "janus-pod-debug", &[Probe::Debug]),
    (
        "central",
        "ClusterRole",
        "k8s-janus-controller",
        &[Probe::Controller, Probe::Scoped, Probe::Watch],
    ),
    (
        "central",
        "Role",
        "k8s-janus-controller",
        &[Probe::LeaderElection, Probe::Controller, Probe::Watch],
    ),
    ("central", "ClusterRole", "k8s-janus-web", &[Probe::Web]),
    ("central", "Role", "k8s-janus-web", &[Probe::Web]),
    (
        "remote",
        "ClusterRole",
        "k8s-janus-agent",
        &[Probe::Controller, Probe::Scoped, Probe::Web],
    ),
];

/// Verbs no probe here can need on the Kubernetes versions `on` accepts, and why they stay: (role,
/// resource, verb, on, reason).
type Unprobed = (&'static str, &'static str, &'static str, fn(&str) -> bool, &'static str);
const UNPROBED: [Unprobed; 9] = [
    (
        "k8s-janus-controller",
        "events",
        "patch",
        any_version,
        "the controller's event recorder patches an Event that repeats within its series window instead of creating another (janus-controller's tests/events.rs shows it with the chart's RBAC; no probe here does)",
    ),
    (
        "k8s-janus-controller",
        "secrets",
        "watch",
        any_version,
        "the controller watches its token Secrets to repair drift; without watch, kube-rs's watcher re-lists after every failed watch, which repairs drift as well in an error loop, or stalls the controller, depending on timing: no deterministic probe",
    ),
    (
        "janus-pod-exec",
        "pods/exec",
        "create",
        before_1_35,
        "before 1.35 a WebSocket exec (kube-rs, the terminal) is authorized as get alone; from 1.35 it needs create too (AuthorizePodWebsocketUpgradeCreatePermission), which the 1.35 run proves; SPDY clients (kubectl's fallback) always need it",
    ),
    (
        "janus-pod-debug",
        "pods/attach",
        "create",
        before_1_35,
        "as pods/exec: before 1.35 a WebSocket attach is authorized as get alone, from 1.35 as get and create (the 1.35 run proves it); SPDY clients always need create",
    ),
    (
        "k8s-janus-controller",
        "clusterroles",
        "bind",
        any_version,
        "bind by name is the declared limit of what the controller may bind (issue 16: the chart renders bind with the roles' ClusterRoles); with its bindings to those same ClusterRoles it also holds their permissions, which RBAC accepts for binding them too, so no probe can fail without it",
    ),
    (
        "k8s-janus-agent",
        "clusterroles",
        "bind",
        any_version,
        "as for the controller: bind by name is the declared limit, implied by the agent's bindings to the same ClusterRoles",
    ),
    (
        "janus-pod-logs",
        "pods",
        "get",
        any_version,
        "the logs role of issue 16 is pods get/list, pods/log, events; the web follows logs without reading the pod first (its pod list says the containers), while a client that resolves a pod's containers as kubectl logs does (GET the pod) needs it",
    ),
    (
        "k8s-janus-controller",
        "pods",
        "list",
        any_version,
        "the controller also holds pods get/list through its binding to janus-pod-exec (the roles' permissions, for writing scoped Roles), which hides the removal; kept so that the pod watch does not depend on which roles are configured",
    ),
    (
        "k8s-janus-agent",
        "pods",
        "list",
        any_version,
        "as for the controller: the agent's binding to janus-pod-exec grants pods list too; kept so that the pod watch and the scope preview do not depend on which roles are configured",
    ),
];

fn any_version(_: &str) -> bool {
    true
}

/// Versions that authorize a WebSocket exec as `get` alone (kubesim follows kube-apiserver's rule).
fn before_1_35(version: &str) -> bool {
    !kubesim::exec::upgrade_needs_create(version).expect("a readable version")
}

fn rule_text(r: &PolicyRule) -> String {
    format!(
        "{}/{} {}{}",
        r.api_groups.as_deref().unwrap_or_default().join(","),
        r.resources.as_deref().unwrap_or_default().join(","),
        r.verbs.join(","),
        r.resource_names
            .as_ref()
            .map(|n| format!(" (resourceNames {})", n.join(",")))
            .unwrap_or_default()
    )
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

struct Probes {
    inst: Installed,
    config: Arc<Config>,
    controller: kube::Client,
    n: std::sync::atomic::AtomicU32,
    /// For `Probe::Terminal`: a web process, an engineer's session and their Active request.
    terminal: Option<(Proc, Session, String)>,
    /// For `Probe::Logs` and `Probe::Debug`: sessions of two more engineers and their Active `logs` and
    /// `debug` requests (served by the web process of `terminal`).
    by_role: Option<((Session, String), (Session, String))>,
}

impl Probes {
    fn next(&self) -> u32 {
        self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    async fn run(&self, p: Probe) -> Result<(), String> {
        match p {
            Probe::Controller => {
                self.lifecycle("central").await?;
                self.lifecycle("remote").await
            }
            Probe::Watch => self.watch().await,
            Probe::LeaderElection => self.lease().await,
            Probe::Web => self.web().await,
            Probe::Terminal => self.terminal().await,
            Probe::Scoped => {
                self.scoped("central").await?;
                self.scoped("remote").await
            }
            Probe::Logs => self.logs().await,
            Probe::Debug => self.debug().await,
        }
    }

    fn ars(&self) -> Api<AccessRequest> {
        Api::all(self.inst.central.client())
    }

    fn target(&self, cluster: &str) -> &Cluster {
        if cluster == "remote" {
            &self.inst.remote
        } else {
            &self.inst.central
        }
    }

    /// Creates a request (as the web UI would, with `extra` spec fields).
    async fn create(&self, cluster: &str, extra: Value) -> String {
        let name = format!("probe-{}", self.next());
        let mut spec = json!({"requester": "engineer@example.com", "cluster": cluster,
                              "namespaces": ["team-a"], "reason": "rbac probe", "ttlSeconds": 3600});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let ar: AccessRequest = serde_json::from_value(json!({
            "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("request");
        self.ars()
            .create(&PostParams::default(), &ar)
            .await
            .expect("create request");
        name
    }

    /// Writes a decision into the spec, as the web UI does.
    async fn decide(&self, name: &str, spec: Value) {
        self.ars()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .expect("decision");
    }

    fn context(&self) -> Arc<janus_controller::reconcile::Context> {
        use janus_controller::{clusters::Clusters, metrics::Metrics, reconcile};
        let mut config = (*self.config).clone();
        config.retention_seconds = 1;
        let config = Arc::new(config);
        let clusters = Clusters::new(
            config.clone(),
            self.controller.clone(),
            self.inst.central.tc.server_url(),
            self.inst.central.tc.ca_pem(),
        );
        let recorder =
            janus_controller::recorder::Recorder::new(self.controller.clone(), "k8s-janus-controller", "probe");
        Arc::new(reconcile::Context::new(
            config,
            clusters,
            recorder,
            Arc::new(Metrics::new()),
        ))
    }

    /// Reconciles a request as the controller does (controller token) until `done` holds for it
    /// (`None`: the request is gone), or it ends in another phase, or a few rounds have passed.
    async fn settle(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(Option<&AccessRequest>) -> bool,
    ) -> Result<(), String> {
        self.settle_in(&self.context(), name, what, done).await
    }

    /// [`Probes::settle`] with a given reconcile context (its pod watches live as long as it does).
    async fn settle_in(
        &self,
        ctx: &Arc<janus_controller::reconcile::Context>,
        name: &str,
        what: &str,
        done: impl Fn(Option<&AccessRequest>) -> bool,
    ) -> Result<(), String> {
        let ars = self.ars();
        let mut last_error = String::new();
        let mut current = ars.get_opt(name).await.expect("get");
        for _ in 0..4 {
            if done(current.as_ref()) {
                return Ok(());
            }
            let Some(ar) = current else { break };
            if let Err(e) = janus_controller::reconcile::reconcile(
                Arc::new(janus_controller::cached_request::CachedRequest::from(&ar)),
                ctx.clone(),
            )
            .await
            {
                last_error = e.to_string();
            }
            current = ars.get_opt(name).await.expect("get");
        }
        if done(current.as_ref()) {
            return Ok(());
        }
        let status = current.and_then(|a| a.status).map(|s| (s.phase.to_string(), s.message));
        Err(format!(
            "{name}: not {what}; status {status:?}, last error {last_error:?}"
        ))
    }

    async fn settle_phase(&self, name: &str, phase: &str) -> Result<(), String> {
        self.settle(name, phase, |ar| {
            ar.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.phase.to_string() == phase)
        })
        .await
    }

    /// `Probe::Controller` on one cluster.
    async fn lifecycle(&self, cluster: &str) -> Result<(), String> {
        let target = self.target(cluster);
        // Denied on arrival: its end starts the retention clock.
        let denied = self
            .create(
                cluster,
                json!({"denial": {"by": "admin@example.com", "at": now(), "reason": "probe"}}),
            )
            .await;
        self.settle_phase(&denied, "Denied").await?;
        let denied_at = Instant::now();

        let name = self.create(cluster, json!({})).await;
        self.settle_phase(&name, "Pending").await?;
        self.decide(&name, json!({"approval": {"by": "admin@example.com", "at": now()}}))
            .await;
        self.settle_phase(&name, "Active").await?;
        let found = credentials(&self.inst.central, target, &name).await;
        if found.len() != 3 {
            return Err(format!("{name}: credentials {found:?}"));
        }
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(self.inst.central.client());
        let published = events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .iter()
            .any(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str()));
        if !published {
            return Err(format!("{name}: no Event published on the request"));
        }

        // Extension: new tokens lasting until the new expiry.
        let before = self
            .ars()
            .get(&name)
            .await
            .expect("get")
            .status
            .and_then(|s| s.expires_at);
        self.decide(
            &name,
            json!({"extensions": [{"by": "admin@example.com", "at": now(), "seconds": 1800}]}),
        )
        .await;
        let secrets: Api<Secret> = Api::namespaced(self.inst.central.client(), NS);
        let lp = ListParams::default().labels(&format!("{}={name}", janus_api::REQUEST_LABEL));
        self.settle(&name, "extended", |ar| {
            ar.and_then(|a| a.status.as_ref())
                .is_some_and(|s| s.phase.to_string() == "Active" && s.expires_at.is_some() && s.expires_at != before)
        })
        .await?;
        let expires = self
            .ars()
            .get(&name)
            .await
            .expect("get")
            .status
            .and_then(|s| s.expires_at)
            .unwrap_or_default();
        let token_expiries: Vec<String> = secrets
            .list(&lp)
            .await
            .expect("list")
            .items
            .iter()
            .filter_map(|s| {
                s.metadata
                    .annotations
                    .as_ref()?
                    .get(janus_controller::grant::TOKEN_EXPIRES_ANNOTATION)
                    .cloned()
            })
            .collect();
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        if token_expiries.len() != 1 || parse(&token_expiries[0]) < parse(&expires) {
            return Err(format!(
                "{name}: extended to {expires}, tokens last until {token_expiries:?}"
            ));
        }

        // Revocation: every credential found by label and removed.
        self.decide(
            &name,
            json!({"revocation": {"by": "admin@example.com", "at": now(), "reason": "probe"}}),
        )
        .await;
        self.settle(&name, "revoked with its credentials removed", |ar| {
            ar.and_then(|a| a.status.as_ref()).is_some_and(|s| {
                s.phase.to_string() == "Revoked"
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "CredentialsRemoved" && c.status == "True")
            })
        })
        .await?;
        let left = credentials(&self.inst.central, target, &name).await;
        if !left.is_empty() {
            return Err(format!("{name}: left after revocation: {left:?}"));
        }

        // Retention: the denied request is deleted once its time is up.
        tokio::time::sleep(Duration::from_millis(1100).saturating_sub(denied_at.elapsed())).await;
        self.settle(&denied, "deleted after retention", |ar| ar.is_none()).await
    }

    /// `Probe::Watch`.
    async fn watch(&self) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let opts = janus_controller::Options {
            metrics_listen: None,
            identity: "probe".into(),
            leader_election: false,
        };
        let task = tokio::spawn(janus_controller::run(
            (*self.config).clone(),
            self.controller.clone(),
            self.inst.central.tc.server_url(),
            self.inst.central.tc.ca_pem(),
            opts,
            async move {
                let _ = rx.await;
            },
        ));
        let result = self.watched().await;
        let _ = tx.send(());
        let mut task = task;
        // A controller that never got its watches up does not notice the stop.
        if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
            task.abort();
        }
        result
    }

    async fn watched(&self) -> Result<(), String> {
        // Generous: a busy machine must not make the full roles fail; a missing verb waits it out.
        let within = Duration::from_secs(10);
        let name = self.create("central", json!({})).await;
        let phase = |ar: Option<AccessRequest>| {
            ar.and_then(|a| a.status)
                .map(|s| s.phase.to_string())
                .unwrap_or_default()
        };
        let deadline = Instant::now() + within;
        while phase(self.ars().get_opt(&name).await.expect("get")) != "Pending" {
            if Instant::now() > deadline {
                return Err(format!("{name}: the controller never saw the new request"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.decide(&name, json!({"approval": {"by": "admin@example.com", "at": now()}}))
            .await;
        let secrets: Api<Secret> = Api::namespaced(self.inst.central.client(), NS);
        let lp = ListParams::default().labels(&format!("{}={name}", janus_api::REQUEST_LABEL));
        let deadline = Instant::now() + within;
        let first = loop {
            if phase(self.ars().get_opt(&name).await.expect("get")) == "Active" {
                let list = secrets.list(&lp).await.expect("list").items;
                if let Some(s) = list.first() {
                    break s.metadata.name.clone().unwrap_or_default();
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{name}: the approval was never acted on"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Drift: the token Secret is deleted behind the controller's back, once the controller has
        // nothing left to do (its own status write would make it look again anyway).
        tokio::time::sleep(Duration::from_secs(1)).await;
        secrets.delete(&first, &Default::default()).await.expect("delete");
        let deadline = Instant::now() + within;
        loop {
            if secrets
                .list(&lp)
                .await
                .expect("list")
                .items
                .iter()
                .any(|s| s.metadata.deletion_timestamp.is_none())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{name}: the deleted token Secret was never re-issued"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn lease(&self) -> Result<(), String> {
        use janus_controller::leader::{LeaseConfig, Timings, campaign};
        // A long retry period: a standby sees the release in time only through its watch of the Lease.
        let timings = Timings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(5),
        };
        // Per process: a reused real cluster keeps the Leases of earlier runs.
        let name = format!("probe-{}-{}", std::process::id(), self.next());
        let cfg = |identity: &str| LeaseConfig {
            namespace: NS.into(),
            name: name.clone(),
            identity: identity.into(),
            timings,
        };
        // Taking the Lease creates it; the standby reads and watches it; the release and the
        // standby's takeover update it.
        let a = match tokio::time::timeout(Duration::from_secs(10), campaign(self.controller.clone(), cfg("a"))).await {
            Ok(Ok(l)) => l,
            other => return Err(format!("take the Lease: {other:?}")),
        };
        let standby = tokio::spawn(campaign(self.controller.clone(), cfg("b")));
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !a.release().await {
            return Err("release the Lease: not released".into());
        }
        match tokio::time::timeout(Duration::from_secs(2), standby).await {
            Ok(Ok(Ok(b))) => {
                b.release().await;
                Ok(())
            }
            other => Err(format!(
                "the standby did not take over a released Lease at once (watch): {other:?}"
            )),
        }
    }

    async fn web(&self) -> Result<(), String> {
        let n = self.next();
        let workdir = self.inst.dir.path().join(format!("web-probe-{n}"));
        let (_web, url) = start_web(&self.inst, &workdir, Duration::from_secs(15)).await;
        let url = url?;
        // A new engineer each time: open requests per requester are limited.
        let (admin, engineer) = accounts(&self.inst, &url, &format!("engineer-{n}")).await?;
        let (status, body) = engineer
            .post(
                "/api/v1/requests",
                json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 3600, "reason": "rbac probe"}),
            )
            .await;
        if status != 201 {
            return Err(format!("create request: {status} {body}"));
        }
        let name = body["name"].as_str().unwrap_or_default();
        // The engineer's list comes from the web process's watch of AccessRequests.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !engineer.get("/api/v1/requests").await.1.to_string().contains(name) {
            if Instant::now() > deadline {
                return Err(format!("{name} never appeared in the engineer's list"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (status, body) = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
        if status != 200 {
            return Err(format!("approve: {status} {body}"));
        }
        for cluster in ["central", "remote", LABELLED_CLUSTER] {
            let ns = engineer.namespaces(cluster).await?;
            if !ns.contains(&"team-a".to_string()) {
                return Err(format!("namespaces of {cluster}: {ns:?}"));
            }
        }
        // The clusters page tells whether janus-pod-exec is installed on each cluster.
        let (status, clusters) = engineer.get("/api/v1/clusters").await;
        let checked: Vec<(String, Value)> = clusters["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["podExecRole"].clone(),
                )
            })
            .collect();
        if status != 200 || checked.len() != 3 || checked.iter().any(|(_, known)| *known != json!(true)) {
            return Err(format!("clusters page: {status} janus-pod-exec found: {checked:?}"));
        }
        // The pod-scope picker, read with the web's identity on the central cluster and with the
        // agent's on the remote one: the workloads of a namespace and the pods a selector matches.
        for cluster in ["central", "remote"] {
            let (status, body) = engineer
                .get(&format!("/api/v1/clusters/{cluster}/workloads?namespace=team-a"))
                .await;
            if status != 200 {
                return Err(format!("workloads of {cluster}/team-a: {status} {body}"));
            }
            let (status, body) = engineer
                .get(&format!(
                    "/api/v1/clusters/{cluster}/pods?namespace=team-a&selector=probe%21%3Dnone"
                ))
                .await;
            if status != 200 || !body.to_string().contains("\"app\"") {
                return Err(format!("scope preview on {cluster}/team-a: {status} {body}"));
            }
        }
        Ok(())
    }

    /// Starts the web process for `Probe::Terminal`; an engineer requests access to team-a on the
    /// central cluster, an admin approves it, the controller's reconcile makes it Active.
    async fn start_terminal(&mut self) {
        let workdir = self.inst.dir.path().join("web-terminal");
        let (web, url) = start_web(&self.inst, &workdir, Duration::from_secs(30)).await;
        let url = url.expect("web ready");
        let (admin, engineer) = accounts(&self.inst, &url, "terminal-user").await.expect("accounts");
        let (status, created) = engineer
            .post(
                "/api/v1/requests",
                json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 3600, "reason": "rbac probe"}),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let name = created["name"].as_str().expect("name").to_string();
        self.settle_phase(&name, "Pending").await.expect("pending");
        let (status, body) = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
        assert_eq!(status, 200, "approve: {body}");
        self.settle_phase(&name, "Active").await.expect("active");
        // An engineer each with a logs and a debug request (open requests per requester are limited).
        let mut by_role = Vec::new();
        for role in ["logs", "debug"] {
            let (admin, engineer) = accounts(&self.inst, &url, &format!("{role}-user"))
                .await
                .expect("accounts");
            let (status, created) = engineer
                .post(
                    "/api/v1/requests",
                    json!({"cluster": "central", "namespaces": ["team-a"], "ttlSeconds": 3600, "reason": "rbac probe", "role": role}),
                )
                .await;
            assert_eq!(status, 201, "{role}: {created}");
            let name = created["name"].as_str().expect("name").to_string();
            self.settle_phase(&name, "Pending").await.expect("pending");
            let (status, body) = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
            assert_eq!(status, 200, "approve {role}: {body}");
            self.settle_phase(&name, "Active").await.expect("active");
            by_role.push((engineer, name));
        }
        let debug = by_role.pop().expect("debug");
        let logs = by_role.pop().expect("logs");
        self.by_role = Some((logs, debug));
        self.terminal = Some((web, engineer, name));
    }

    /// The pod list, the events and the log stream of `team-a/app` for a request (the terminal page's
    /// reads, with the request's token).
    async fn reads(s: &Session, name: &str) -> Result<(), String> {
        let (status, pods) = s.get(&format!("/api/v1/requests/{name}/pods?namespace=team-a")).await;
        if status != 200 || !pods.to_string().contains("\"app\"") {
            return Err(format!("pods: {status} {pods}"));
        }
        let (status, events) = s.get(&format!("/api/v1/requests/{name}/events?namespace=team-a")).await;
        if status != 200 {
            return Err(format!("events: {status} {events}"));
        }
        let logs = s
            .http
            .get(format!(
                "{}/api/v1/requests/{name}/logs?namespace=team-a&pod=app",
                s.base
            ))
            .header("cookie", &s.cookie)
            .send();
        match tokio::time::timeout(Duration::from_secs(10), logs).await {
            Ok(Ok(r)) if r.status() == 200 => Ok(()),
            Ok(Ok(r)) => Err(format!("logs: {}", r.status())),
            other => Err(format!("logs: {other:?}")),
        }
    }

    async fn logs(&self) -> Result<(), String> {
        let ((s, name), _) = self.by_role.as_ref().expect("start_terminal first");
        Self::reads(s, name).await
    }

    async fn debug(&self) -> Result<(), String> {
        let (_, (s, name)) = self.by_role.as_ref().expect("start_terminal first");
        Self::reads(s, name).await?;
        let (status, started) = s
            .post(
                &format!("/api/v1/requests/{name}/debug"),
                json!({"namespace": "team-a", "pod": "app", "targetContainer": "main", "image": "busybox:1.36"}),
            )
            .await;
        if !(200..300).contains(&status) {
            return Err(format!("debug container: {status} {started}"));
        }
        let container = started["container"].as_str().unwrap_or_default();
        let url = format!(
            "{}/ws/terminal/{name}?namespace=team-a&pod=app&container={container}&cols=80&rows=24&csrf={}",
            s.base.replace("http://", "ws://"),
            s.csrf
        );
        let mut req = url.into_client_request().expect("request");
        req.headers_mut().insert("cookie", s.cookie.parse().unwrap());
        req.headers_mut().insert("origin", s.base.parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .map_err(|e| format!("{name}: attach refused: {e}"))?;
        let marker = format!("probe{}", self.next());
        echo_through(&mut ws, name, &marker, "from the debug container", "attach").await
    }

    /// `Probe::Scoped` on one cluster.
    async fn scoped(&self, cluster: &str) -> Result<(), String> {
        let target = self.target(cluster);
        let admin = target.admin().await;
        let n = self.next();
        let (label, workload) = (format!("scoped-{n}"), format!("web-{n}"));
        let pod = |name: &str, labels: Value| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "team-a", "labels": labels},
                "spec": {"containers": [{"name": "main", "image": "debian"}]},
            }))
            .expect("pod")
        };
        let pods: Api<Pod> = Api::namespaced(admin.clone(), "team-a");
        let (a, b, w) = (format!("{label}-a"), format!("{label}-b"), format!("{workload}-0"));
        for (name, labels) in [(&a, json!({"probe": label})), (&w, json!({"wl": workload}))] {
            pods.create(&PostParams::default(), &pod(name, labels))
                .await
                .expect("pod");
        }
        let dep: Deployment = serde_json::from_value(json!({
            "metadata": {"name": workload, "namespace": "team-a"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"wl": workload}},
                     "template": {"metadata": {"labels": {"wl": workload}},
                                  "spec": {"containers": [{"name": "main", "image": "debian"}]}}},
        }))
        .expect("deployment");
        Api::<Deployment>::namespaced(admin.clone(), "team-a")
            .create(&PostParams::default(), &dep)
            .await
            .expect("deployment");
        // One context for the whole probe: the pod watches it starts live as long as it does.
        let ctx = self.context();
        let result = self.scoped_with(&ctx, cluster, &label, &workload, [&a, &b, &w]).await;
        drop(ctx);
        for name in [&a, &b, &w] {
            let _ = pods.delete(name, &Default::default()).await;
        }
        let _ = Api::<Deployment>::namespaced(admin, "team-a")
            .delete(&workload, &Default::default())
            .await;
        result
    }

    async fn scoped_with(
        &self,
        ctx: &Arc<janus_controller::reconcile::Context>,
        cluster: &str,
        label: &str,
        workload: &str,
        [a, b, w]: [&String; 3],
    ) -> Result<(), String> {
        let target = self.target(cluster);
        let phase = |p: &'static str| {
            move |ar: Option<&AccessRequest>| {
                ar.and_then(|a| a.status.as_ref())
                    .is_some_and(|s| s.phase.to_string() == p)
            }
        };
        let activate = |name: String| async move {
            self.settle_in(ctx, &name, "Pending", phase("Pending")).await?;
            self.decide(&name, json!({"approval": {"by": "admin@example.com", "at": now()}}))
                .await;
            self.settle_in(ctx, &name, "Active", phase("Active")).await?;
            let grant = self.ars().get(&name).await.expect("get").status.expect("status").grants;
            match grant
                .first()
                .and_then(|g| g.scoped_role.clone().zip(g.pod_selector.clone()))
            {
                Some(found) => Ok::<_, String>((name, found)),
                None => Err(format!("{name}: Active without a scoped Role: {grant:?}")),
            }
        };
        let roles: Api<Role> = Api::namespaced(target.admin().await, "team-a");
        let named = |role: Option<Role>| -> Vec<String> {
            let mut out: Vec<String> = role
                .and_then(|r| r.rules)
                .unwrap_or_default()
                .into_iter()
                .flat_map(|r| r.resource_names.unwrap_or_default())
                .collect();
            out.sort();
            out.dedup();
            out
        };
        // Until the Role names exactly `want` (the pod watch updates it; generous for a busy machine).
        let until = |role: String, want: Vec<String>| {
            let roles = roles.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let got = named(roles.get_opt(&role).await.expect("role"));
                    if got == want {
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        return Err(format!("Role {role}: names {got:?}, wanted {want:?}"));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };

        // A logs grant limited to a selector: the Role follows the pods the selector matches.
        let name = self
            .create(
                cluster,
                json!({"role": "logs", "podScope": {"selector": {"matchLabels": {"probe": label}}}}),
            )
            .await;
        let (logs, (role, selector)) = activate(name).await?;
        if selector != format!("probe={label}") {
            return Err(format!("{logs}: podSelector {selector:?}"));
        }
        until(role.clone(), vec![a.clone()]).await?;
        let pods: Api<Pod> = Api::namespaced(target.admin().await, "team-a");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": b, "namespace": "team-a", "labels": {"probe": label}},
            "spec": {"containers": [{"name": "main", "image": "debian"}]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod).await.expect("pod");
        until(role.clone(), vec![a.clone(), b.clone()]).await?;
        pods.delete(a, &Default::default()).await.expect("delete");
        until(role.clone(), vec![b.clone()]).await?;

        // An exec grant limited to a Deployment: its selector is read from the workload.
        let name = self
            .create(
                cluster,
                json!({"podScope": {"workload": {"kind": "Deployment", "name": workload}}}),
            )
            .await;
        let (exec, (role_w, selector)) = activate(name).await?;
        if selector != format!("wl={workload}") {
            return Err(format!("{exec}: podSelector {selector:?}"));
        }
        // The pods the selector matches: the probe's own, and whatever a workload controller made of
        // the Deployment (a real cluster's, or kubesim's with `serve --workload-pods`, as the portable
        // run starts it).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lp = ListParams::default().labels(&selector);
            let mut want: Vec<String> = pods
                .list(&lp)
                .await
                .expect("pods")
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| p.metadata.name)
                .collect();
            want.sort();
            let got = named(roles.get_opt(&role_w).await.expect("role"));
            if want.contains(w) && got == want {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("Role {role_w}: names {got:?}, wanted {want:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Revoked: every credential, the Roles included, found by label and deleted.
        for name in [&logs, &exec] {
            self.decide(
                name,
                json!({"revocation": {"by": "admin@example.com", "at": now(), "reason": "probe"}}),
            )
            .await;
            self.settle_in(ctx, name, "revoked with its credentials removed", |ar| {
                ar.and_then(|a| a.status.as_ref()).is_some_and(|s| {
                    s.phase.to_string() == "Revoked"
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "CredentialsRemoved" && c.status == "True")
                })
            })
            .await?;
            let lp = ListParams::default().labels(&format!("{}={name}", janus_api::REQUEST_LABEL));
            let left = roles.list(&lp).await.expect("roles").items.len();
            if left != 0 || !credentials(&self.inst.central, target, name).await.is_empty() {
                return Err(format!("{name}: credentials left after revocation ({left} Roles)"));
            }
        }
        Ok(())
    }

    async fn terminal(&self) -> Result<(), String> {
        let (_, s, name) = self.terminal.as_ref().expect("start_terminal first");
        // The log stream follows: its status line is the answer.
        Self::reads(s, name).await?;
        let marker = format!("probe{}", self.next());
        shell_echo(s, name, &marker).await.map(|_| ())
    }
}

/// A cluster registered only by a labelled Secret (not in `clusters:`): the remote kubesim again.
const LABELLED_CLUSTER: &str = "satellite";

async fn register_labelled(central: &Cluster, remote: &Cluster) {
    let token = remote.token(janus_registration::agent::AGENT_SERVICE_ACCOUNT).await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "satellite-cluster", "namespace": NS,
                     "labels": {janus_registration::CLUSTER_LABEL: LABELLED_CLUSTER}},
        "stringData": {janus_registration::KUBECONFIG_KEY: remote.tc.kubeconfig_for_token(&token).expect("kubeconfig")},
    }))
    .expect("secret");
    recreate_secret(central, secret).await;
}

/// Reads a role's rules and writes new ones (as the cluster admin).
async fn role_rules(c: &Cluster, kind: &str, name: &str, set: Option<Vec<PolicyRule>>) -> Vec<PolicyRule> {
    let client = c.client();
    if kind == "ClusterRole" {
        let api: Api<ClusterRole> = Api::all(client);
        let mut role = api.get(name).await.unwrap_or_else(|e| panic!("{kind}/{name}: {e}"));
        if let Some(rules) = set {
            role.rules = Some(rules);
            role = api.replace(name, &PostParams::default(), &role).await.expect("replace");
        }
        role.rules.unwrap_or_default()
    } else {
        let api: Api<Role> = Api::namespaced(client, NS);
        let mut role = api.get(name).await.unwrap_or_else(|e| panic!("{kind}/{name}: {e}"));
        if let Some(rules) = set {
            role.rules = Some(rules);
            role = api.replace(name, &PostParams::default(), &role).await.expect("replace");
        }
        role.rules.unwrap_or_default()
    }
}

/// The user the RBAC probes bind each probed role to, to ask the API server (SubjectAccessReview)
/// whether a change of the role's rules is in effect yet.
const SYNC_USER: &str = "janus-rbac-probe-sync";

fn sync_binding_name(name: &str) -> String {
    format!("{SYNC_USER}-{name}")
}

/// Binds [`SYNC_USER`] to a role: a RoleBinding in the release namespace for a Role, a
/// ClusterRoleBinding for a ClusterRole.
async fn bind_sync_user(c: &Cluster, kind: &str, name: &str) {
    let binding_kind = if kind == "ClusterRole" {
        "ClusterRoleBinding"
    } else {
        "RoleBinding"
    };
    let mut binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": binding_kind,
        "metadata": {"name": sync_binding_name(name)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": SYNC_USER}],
    });
    if kind == "Role" {
        binding["metadata"]["namespace"] = json!(NS);
    }
    c.tc.apply_yaml(&binding.to_string())
        .await
        .unwrap_or_else(|e| panic!("bind {SYNC_USER} to {kind}/{name}: {e}"));
}

/// Removes what [`bind_sync_user`] made, so the probes leave no extra grant behind (a failed run may
/// leave one binding of a user nobody authenticates as; the next run's apply takes it over).
async fn unbind_sync_user(c: &Cluster, kind: &str, name: &str) {
    let binding = sync_binding_name(name);
    let deleted = if kind == "ClusterRole" {
        Api::<ClusterRoleBinding>::all(c.client())
            .delete(&binding, &Default::default())
            .await
            .map(|_| ())
    } else {
        Api::<RoleBinding>::namespaced(c.client(), NS)
            .delete(&binding, &Default::default())
            .await
            .map(|_| ())
    };
    if let Err(e) = deleted {
        eprintln!("removing the binding {binding}: {e}");
    }
}

/// Waits until the API server authorizes [`SYNC_USER`] for `verb` on the first resource (and
/// resource name) of `rule` as `allowed` says, i.e. until a replaced role is in effect.
/// kube-apiserver's RBAC authorizer (plugin/pkg/auth/authorizer/rbac/rbac.go) reads roles and
/// bindings through informer listers (pkg/kubeapiserver/authorizer/config.go, `rbac.New`), so a replaced role is authorized a moment after the write
/// returns; a probe started before would test the old rules. kubesim authorizes from its store and
/// answers at once. A verb another rule of the role grants too never flips; then this gives up after
/// a while, and the probe (which passes) reports the verb as superfluous, which it is.
async fn await_rules(c: &Cluster, kind: &str, rule: &PolicyRule, verb: &str, allowed: bool) {
    let mut spec = if let Some(path) = rule.non_resource_urls.iter().flatten().next() {
        json!({"nonResourceAttributes": {"path": path, "verb": verb}})
    } else {
        let resource = rule.resources.iter().flatten().next().cloned().unwrap_or_default();
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r.to_string(), Some(s.to_string())),
            None => (resource, None),
        };
        let group = rule.api_groups.iter().flatten().next().cloned().unwrap_or_default();
        let mut attrs = json!({"group": group, "resource": resource, "verb": verb});
        if let Some(s) = subresource {
            attrs["subresource"] = json!(s);
        }
        if let Some(n) = rule.resource_names.iter().flatten().next() {
            attrs["name"] = json!(n);
        }
        if kind == "Role" {
            attrs["namespace"] = json!(NS);
        }
        json!({"resourceAttributes": attrs})
    };
    spec["user"] = json!(SYNC_USER);
    let review: SubjectAccessReview = serde_json::from_value(json!({"spec": spec})).expect("review");
    let api: Api<SubjectAccessReview> = Api::all(c.client());
    let within = Duration::from_secs(10);
    let deadline = Instant::now() + within;
    loop {
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .unwrap_or_else(|e| panic!("SubjectAccessReview {spec}: {e}"));
        if answer.status.is_some_and(|s| s.allowed == allowed) {
            return;
        }
        if Instant::now() > deadline {
            eprintln!(
                "{kind} {}: {verb} still allowed={} after {within:?}",
                rule_text(rule),
                !allowed
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removing any one verb of any rule (for a rule with one verb: the rule) breaks a probe of the role,
/// which passes with the full role; so does removing a whole rule (it removes more). On a cluster
/// that authorizes a WebSocket exec as `get` alone (before 1.35).
/// On a real cluster (`JANUS_TEST_CLUSTER=kubeconfig`, scripts/test-real-cluster.sh) the central
/// cluster is that one, at whatever version it runs.
#[test]
fn every_chart_rbac_rule_is_needed() {
    on_a_large_stack(|| every_rule_is_needed_on("v1.34.3"));
}

/// The same on a cluster that also asks for `create` on a WebSocket exec (1.35 and later).
#[test]
fn every_chart_rbac_rule_is_needed_from_1_35() {
    if janus_testkit::kubesim_only(
        "every_chart_rbac_rule_is_needed_from_1_35",
        "a real API server has the one version it runs, which every_chart_rbac_rule_is_needed probes",
    ) {
        return;
    }
    on_a_large_stack(|| every_rule_is_needed_on("v1.35.0"));
}

/// Runs the probes on a thread (and runtime workers) with a 32 MiB stack. The probe future nests the
/// controller's reconcile, the web's handlers and the terminal inline; unoptimised, its poll frames
/// came within reach of libtest's 2 MiB thread stack, and one CI run aborted with a stack overflow in
/// `every_chart_rbac_rule_is_needed_from_1_35`. Release builds (the product) are far from that.
fn on_a_large_stack<F, Fut>(make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    const STACK: usize = 32 << 20;
    let probes = std::thread::Builder::new()
        .name("rbac-probes".into())
        .stack_size(STACK)
        .spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .thread_stack_size(STACK)
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(make())
        })
        .expect("the probe thread starts");
    if let Err(panic) = probes.join() {
        std::panic::resume_unwind(panic);
    }
}

/// The probes with the central cluster at `requested` (kubesim), or at the real cluster's own
/// version; the remote kubesim always runs `requested` (none of its rules depends on the version).
async fn every_rule_is_needed_on(requested: &str) {
    let inst = install_for_probes(requested).await;
    // The version-dependent exceptions (UNPROBED) follow what the server says it is.
    let version = inst
        .central
        .client()
        .apiserver_version()
        .await
        .expect("the central cluster's version")
        .git_version;
    if inst.central.tc.backend() == Backend::Simulated {
        assert_eq!(version, requested, "kubesim's version");
    }
    println!("RBAC probes with the central cluster at Kubernetes {version}");
    let version = version.as_str();
    register_labelled(&inst.central, &inst.remote).await;
    let config = Arc::new(Config::from_yaml(&inst.config_yaml, "ConfigMap").expect("config"));
    let (_, token) = inst
        .central
        .sa_kubeconfig(&format!("{RELEASE}-controller"), inst.dir.path())
        .await;
    let controller = inst.central.tc.client_for_token(&token).await.expect("client");
    let mut probes = Probes {
        inst,
        config,
        controller,
        n: Default::default(),
        terminal: None,
        by_role: None,
    };

    // Every Role and ClusterRole of the release is covered.
    let mut installed = Vec::new();
    for (cluster, c) in [("central", &probes.inst.central), ("remote", &probes.inst.remote)] {
        let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
        for r in Api::<ClusterRole>::all(c.client()).list(&lp).await.expect("list").items {
            installed.push((cluster, "ClusterRole", r.metadata.name.expect("name")));
        }
        for r in Api::<Role>::all(c.client()).list(&lp).await.expect("list").items {
            installed.push((cluster, "Role", r.metadata.name.expect("name")));
        }
    }
    // The remote's access ClusterRoles are the same template as the central's, probed there.
    installed.retain(|(c, _, n)| !(*c == "remote" && n.starts_with("janus-pod-")));
    installed.sort();
    let mut covered: Vec<(&str, &str, String)> = ROLES.iter().map(|(c, k, n, _)| (*c, *k, n.to_string())).collect();
    covered.sort();
    assert_eq!(installed, covered, "the roles the chart installed");

    // Each probe passes with the chart's rules as they are.
    probes.start_terminal().await;
    for p in [
        Probe::Controller,
        Probe::Scoped,
        Probe::Watch,
        Probe::LeaderElection,
        Probe::Web,
        Probe::Terminal,
        Probe::Logs,
        Probe::Debug,
    ] {
        if let Err(e) = probes.run(p).await {
            panic!("{p:?} fails with the chart's own RBAC on {version}: {e}");
        }
    }

    // Without any one verb, one of the role's probes fails.
    let mut superfluous = Vec::new();
    for (cluster, kind, name, role_probes) in ROLES {
        let c = probes.target(cluster);
        bind_sync_user(c, kind, name).await;
        let rules = role_rules(c, kind, name, None).await;
        for (i, rule) in rules.iter().enumerate() {
            for verb in &rule.verbs {
                let mut fewer = rules.clone();
                if rule.verbs.len() == 1 {
                    fewer.remove(i);
                } else {
                    fewer[i].verbs.retain(|v| v != verb);
                }
                let what = format!("{cluster} {kind}/{name}: {} without {verb}", rule_text(rule));
                let unprobed = UNPROBED.iter().find(|(r, res, v, on, _)| {
                    *r == name && *v == verb && on(version) && rule.resources.iter().flatten().any(|x| x == res)
                });
                if let Some((_, _, _, _, why)) = unprobed {
                    eprintln!("not probed: {what}: {why}");
                    continue;
                }
                role_rules(c, kind, name, Some(fewer)).await;
                await_rules(c, kind, rule, verb, false).await;
                let started = Instant::now();
                let mut failed = None;
                for p in role_probes.iter() {
                    if let Err(e) = probes.run(*p).await {
                        failed = Some((*p, e));
                        break;
                    }
                }
                role_rules(c, kind, name, Some(rules.clone())).await;
                await_rules(c, kind, rule, verb, true).await;
                match failed {
                    None => superfluous.push(what),
                    Some((p, e)) => eprintln!("{what}: {p:?} fails ({:?}): {e}", started.elapsed()),
                }
            }
        }
        // Bound to one role at a time: another role granting the same verb would hide the removal.
        unbind_sync_user(c, kind, name).await;
    }
    assert!(
        superfluous.is_empty(),
        "permissions no probe needs on {version}:\n{}",
        superfluous.join("\n")
    );
}

// ---------------------------------------------------------------- 3. the image runs what the chart invokes

fn helm_template(sets: &[&str]) -> Vec<Value> {
    use serde::Deserialize as _;
    let mut cmd = Command::new(helm_binary());
    cmd.args(["template", RELEASE])
        .arg(repo_root().join("charts/k8s-janus"))
        .args(["--namespace", NS]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("helm runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    yaml_serde::Deserializer::from_str(&String::from_utf8_lossy(&out.stdout))
        .map(|d| Value::deserialize(d).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Instructions of the Dockerfile's last stage (continuation lines joined).
fn runtime_stage(dockerfile: &str) -> Vec<String> {
    let mut joined = Vec::new();
    let mut cur = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        joined.push(std::mem::take(&mut cur));
    }
    let last_from = joined.iter().rposition(|l| l.starts_with("FROM ")).expect("FROM");
    joined.split_off(last_from)
}

#[test]
fn the_image_runs_what_the_chart_invokes() {
    let root = repo_root();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile at the repository root");
    assert!(
        dockerfile.contains("cargo build --release --locked -p janus"),
        "the builder stage builds the janus package"
    );
    let stage = runtime_stage(&dockerfile);
    let find = |prefix: &str| -> Vec<&String> { stage.iter().filter(|l| l.starts_with(prefix)).collect() };
    assert_eq!(
        find("ENTRYPOINT"),
        [&r#"ENTRYPOINT ["/usr/local/bin/janus"]"#.to_string()]
    );
    assert!(
        find("COPY")
            .iter()
            .any(|l| l.ends_with("/out/janus /usr/local/bin/janus")),
        "the binary lands at /usr/local/bin/janus: {stage:?}"
    );
    assert_eq!(
        Path::new(env!("CARGO_BIN_EXE_janus")).file_name(),
        Some(std::ffi::OsStr::new("janus")),
        "cargo builds a binary named janus"
    );
    let user = find("USER");
    assert_eq!(user.len(), 1, "one USER: {user:?}");
    let ids: Vec<i64> = user[0]["USER ".len()..]
        .split(':')
        .map(|s| s.trim().parse().expect("numeric user and group"))
        .collect();
    assert_eq!(ids, [CHART_UID, CHART_UID], "USER uid:gid");
    let path = find("ENV PATH=");
    assert!(
        path.len() == 1 && path[0]["ENV PATH=".len()..].split(':').next() == Some("/usr/local/bin"),
        "`janus` (the chart's command) resolves to /usr/local/bin/janus: {path:?}"
    );
    for label in ["title", "description", "source", "licenses", "version", "revision"] {
        assert!(
            dockerfile.contains(&format!("org.opencontainers.image.{label}=")),
            "OCI label {label}"
        );
    }
    let rust = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION");
    let minimum = std::fs::read_to_string(root.join("Cargo.toml"))
        .expect("Cargo.toml")
        .lines()
        .find_map(|l| {
            l.strip_prefix("rust-version = ")
                .map(|v| v.trim_matches('"').to_string())
        })
        .expect("rust-version");
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().expect("number")).collect() };
    assert!(
        version(rust) >= version(&minimum),
        "RUST_VERSION {rust} below the workspace's {minimum}"
    );
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    for entry in ["target/", ".tools/", ".git"] {
        assert!(ignore.lines().any(|l| l.trim() == entry), ".dockerignore lacks {entry}");
    }

    // Every janus container the chart renders, in the modes that add containers or arguments.
    let mut checked = 0;
    for sets in [
        &[][..],
        &["kubeconfigSync.enabled=true"][..],
        &[
            "webui.authEnabled=true",
            "oauth2Proxy.existingSecret=o2p",
            "oauth2Proxy.emailDomains[0]=example.com",
        ][..],
    ] {
        for doc in helm_template(sets) {
            let pod = match doc["kind"].as_str() {
                Some("Deployment") | Some("Job") => &doc["spec"]["template"]["spec"],
                _ => continue,
            };
            for c in pod["containers"].as_array().expect("containers") {
                if !c["image"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("opsmode/k8s-janus:")
                {
                    continue;
                }
                let what = format!("{sets:?} {}/{}", doc["metadata"]["name"], c["name"]);
                assert_eq!(c["command"], json!(["janus"]), "{what}");
                for key in ["runAsUser", "runAsGroup"] {
                    let id = c["securityContext"][key]
                        .as_i64()
                        .or_else(|| pod["securityContext"][key].as_i64());
                    assert_eq!(id, Some(CHART_UID), "{what}: {key} is the image's USER");
                }
                assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{what}");
                let mounts: Vec<&str> = c["volumeMounts"]
                    .as_array()
                    .expect("mounts")
                    .iter()
                    .filter_map(|m| m["mountPath"].as_str())
                    .collect();
                assert!(mounts.contains(&"/tmp"), "{what}: a writable /tmp");
                if c["name"] == "web" {
                    // The default SQLite database sits on a volume, not the read-only image.
                    assert!(mounts.contains(&"/var/lib/janus"), "{what}: {mounts:?}");
                }
                let args: Vec<String> = c["args"]
                    .as_array()
                    .expect("args")
                    .iter()
                    .map(|a| a.as_str().expect("string").to_string())
                    .collect();
                let out = Command::new(env!("CARGO_BIN_EXE_janus"))
                    .args(&args)
                    .arg("--help")
                    .output()
                    .expect("janus runs");
                assert!(
                    out.status.success(),
                    "{what}: `janus {} --help` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
        }
    }
    // controller, web (x3 modes), kubeconfig-sync
    assert!(checked >= 6, "janus containers checked: {checked}");
}

/// Types `echo <marker>-$((40+2))` into a terminal WebSocket and waits (15 s) until `<marker>-42` comes
/// back: the shell ran it. `from` and `what` only word the errors.
async fn echo_through<S>(ws: &mut S, who: &str, marker: &str, from: &str, what: &str) -> Result<(), String>
where
    S: futures::Sink<Message> + futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    <S as futures::Sink<Message>>::Error: std::fmt::Display,
{
    ws.send(Message::Binary(
        format!("echo {marker}-$((40+2))\r").into_bytes().into(),
    ))
    .await
    .map_err(|e| format!("{who}: send: {e}"))?;
    let want = format!("{marker}-42");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen.contains(&want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(Message::Text(t)))) => seen.push_str(&format!("[control {t}]")),
            Ok(Some(Ok(_))) => {}
            Err(_) => {
                let from = if from.is_empty() {
                    String::new()
                } else {
                    format!(" {from}")
                };
                return Err(format!("{who}: no echo{from}; saw {seen:?}"));
            }
            other => return Err(format!("{who}: {what} ended: {other:?}; saw {seen:?}")),
        }
    }
    Ok(())
}
