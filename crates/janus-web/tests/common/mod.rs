//! Web test harness: a central cluster with the chart's RBAC, the controller and the web process each
//! running with their chart ServiceAccount's token, SQLite in a temporary directory, and HTTP sessions.
//!
//! Two ways to start it: [`Stack::portable`] runs on a [`TestCluster`] (kubesim by default, any cluster
//! from KUBECONFIG with `JANUS_TEST_CLUSTER=kubeconfig`) and seeds only through the API; the other
//! constructors ([`Stack::start`], [`Stack::start_on`], ...) are kubesim-only and reach into the
//! simulator (fault injection, restarts, log appends) through [`Stack::sim`].
#![allow(dead_code)]

#[path = "../../../janus-controller/tests/common/mod.rs"]
pub mod k8s;

use std::time::Duration;

use janus_api::config::Config;
use janus_testkit::{Backend, TestCluster};
use janus_web::server::{self, Options};
use kubesim::RunningSim;
use serde_json::{Value, json};

pub use k8s::NS;

/// The bootstrap admin.
pub const ADMIN: (&str, &str) = ("admin", "bootstrap-password-1");
/// Password of every other test user.
pub const PASSWORD: &str = "correct horse battery";

/// Extra workloads: a pod with a sidecar, and a namespace that is excluded.
pub const EXTRA: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team-a}
spec: {containers: [{name: main, image: debian}, {name: sidecar, image: envoy}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
"#;

/// [`EXTRA`] for any cluster: the images have a shell (a real cluster execs into them; kubesim runs any
/// pod as a local process), and the containers keep running. Without [`EXTRA`]'s `kube-system`
/// Namespace: every cluster has it (kube-apiserver creates it; kubesim too, seed.rs `bootstrap`), and a
/// forced apply would make the kit a field manager of a real cluster's system namespace.
pub const EXTRA_PORTABLE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team-a}
spec:
  terminationGracePeriodSeconds: 1
  # One process namespace, so a test can see the sidecar's shell from the main container.
  shareProcessNamespace: true
  containers:
  - {name: main, image: "busybox:1.36", command: [sleep, "3600"]}
  - {name: sidecar, image: "busybox:1.36", command: [sleep, "3600"]}
"#;

/// The kubesim of a kubesim-only stack. Dereferences to it; on a portable stack it holds none, and
/// using it is a test bug, reported as such (portable tests ask [`Stack::simulated`]).
pub struct SimSlot(Option<RunningSim>);

impl std::ops::Deref for SimSlot {
    type Target = RunningSim;
    fn deref(&self) -> &RunningSim {
        self.0
            .as_ref()
            .expect("stack.sim is for kubesim-only stacks; a portable stack uses Stack::simulated()")
    }
}

impl std::ops::DerefMut for SimSlot {
    fn deref_mut(&mut self) -> &mut RunningSim {
        self.0
            .as_mut()
            .expect("stack.sim is for kubesim-only stacks; a portable stack uses Stack::simulated()")
    }
}

/// `k8s::` helpers take `&stack.sim` as they took the kubesim itself.
impl k8s::KubeAccess for SimSlot {
    async fn admin(&self) -> kube::Client {
        (**self).admin().await
    }
    async fn for_token(&self, token: &str) -> kube::Client {
        (**self).for_token(token).await
    }
    fn server(&self) -> String {
        (**self).server()
    }
    fn ca(&self) -> String {
        (**self).ca()
    }
    fn cache_ttl(&self) -> Duration {
        (**self).cache_ttl()
    }
    fn simulated(&self) -> Option<&RunningSim> {
        self.0.as_ref()
    }
}

/// The cluster a stack runs on.
enum Kube {
    /// A kubesim seeded through its store (kubesim-only constructors); the slot in [`Stack::sim`] holds it.
    Sim,
    /// A [`TestCluster`], seeded through the API.
    Cluster(Box<TestCluster>),
}

/// The web test configuration: [`k8s::config`] with the web defaults the suites expect, `extra` on top.
fn web_config(extra: &str) -> Config {
    let mut doc: yaml_serde::Mapping = yaml_serde::from_str(extra).unwrap_or_default();
    for (k, v) in [
        ("adminEmails", "[admin@example.com]"),
        ("approvalTtlOptions", "[600, 900]"),
        ("idleTimeoutSeconds", "0"),
    ] {
        let key = yaml_serde::Value::from(k);
        if !doc.contains_key(&key) {
            doc.insert(key, yaml_serde::from_str(v).expect("default"));
        }
    }
    k8s::config(&yaml_serde::to_string(&doc).expect("yaml"))
}

/// Everything running.
pub struct Stack {
    /// The kubesim of a kubesim-only stack (fault injection, restarts, log appends). Portable stacks
    /// hold none here: they use [`Stack::simulated`].
    pub sim: SimSlot,
    kube: Kube,
    pub controller: Option<k8s::Controller>,
    pub url: String,
    pub host: String,
    pub dir: tempfile::TempDir,
    web: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The cluster end of a stack being started: the controller runs, the web gets these.
struct Wiring {
    cfg: Config,
    controller: k8s::Controller,
    web_client: kube::Client,
    server: String,
    ca_pem: String,
}

impl Stack {
    /// Starts the stack on a kubesim; `extra` is YAML merged into the test configuration.
    pub async fn start(extra: &str) -> Stack {
        Self::start_with(|_| extra.to_string(), None).await
    }

    /// Starts the stack with configuration made from the web UI's URL (for `web.baseUrl`), and the
    /// OIDC client secret the web process gets from its environment.
    pub async fn start_with(extra: impl FnOnce(&str) -> String, oidc_client_secret: Option<String>) -> Stack {
        Self::start_full(extra, oidc_client_secret, None).await
    }

    /// Starts the stack on a given database (default: SQLite in the stack's temp dir).
    pub async fn start_full(
        extra: impl FnOnce(&str) -> String,
        oidc_client_secret: Option<String>,
        database_url: Option<String>,
    ) -> Stack {
        Self::start_on(kubesim::SimBuilder::new(), extra, oidc_client_secret, database_url).await
    }

    /// [`Stack::start_full`] on a central kubesim made from `builder` (server settings such as the
    /// watch window). Seeded through the simulator's store: kubesim-only.
    pub async fn start_on(
        builder: kubesim::SimBuilder,
        extra: impl FnOnce(&str) -> String,
        oidc_client_secret: Option<String>,
        database_url: Option<String>,
    ) -> Stack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let extra = extra(&format!("http://{addr}"));
        let sim = k8s::central_from(builder).await;
        sim.load_seed(EXTRA).expect("extra workloads");
        let cfg = web_config(&extra);
        let controller = k8s::Controller::start(&sim, cfg.clone()).await;
        let token = k8s::sa_token(&sim, NS, "k8s-janus-web").await;
        let web_client = sim.client_for_token(&token).await.expect("web client");
        let wiring = Wiring {
            cfg,
            controller,
            web_client,
            server: sim.url(),
            ca_pem: sim.ca_pem().to_string(),
        };
        Self::launch(
            SimSlot(Some(sim)),
            Kube::Sim,
            wiring,
            listener,
            oidc_client_secret,
            database_url,
        )
        .await
    }

    /// Starts the stack on [`TestCluster::start`]: kubesim, or the cluster in KUBECONFIG when
    /// `JANUS_TEST_CLUSTER=kubeconfig`. Everything is seeded through the API (server-side apply);
    /// [`TestCluster::prepare_janus`] removes what an earlier test left on a reused real cluster.
    pub async fn portable(extra: &str) -> Stack {
        let cluster = TestCluster::start().await.expect("test cluster");
        Self::portable_on(cluster, extra).await
    }

    /// [`Stack::portable`] on a given cluster.
    pub async fn portable_on(cluster: TestCluster, extra: &str) -> Stack {
        cluster.prepare_janus().await.expect("CRD, chart RBAC and workloads");
        cluster.apply_yaml(EXTRA_PORTABLE).await.expect("extra workloads");
        cluster
            .wait_pod_running("team-a", "web", Duration::from_secs(180))
            .await
            .expect("pod team-a/web running");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let cfg = web_config(extra);
        let controller = k8s::Controller::start(&cluster, cfg.clone()).await;
        let token = cluster.sa_token(NS, "k8s-janus-web").await.expect("web token");
        let web_client = cluster.client_for_token(&token).await.expect("web client");
        let wiring = Wiring {
            cfg,
            controller,
            web_client,
            server: cluster.server_url(),
            ca_pem: cluster.ca_pem(),
        };
        Self::launch(
            SimSlot(None),
            Kube::Cluster(Box::new(cluster)),
            wiring,
            listener,
            None,
            None,
        )
        .await
    }

    /// Starts the web process on `listener` and waits until it is ready.
    async fn launch(
        sim: SimSlot,
        kube: Kube,
        wiring: Wiring,
        listener: tokio::net::TcpListener,
        oidc_client_secret: Option<String>,
        database_url: Option<String>,
    ) -> Stack {
        let addr = listener.local_addr().expect("addr");
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            listen: addr,
            metrics_listen: None,
            database_url: Some(
                database_url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("janus.db").display())),
            ),
            database_password: None,
            session_key: Some("k".repeat(48)),
            bootstrap_admin: Some((ADMIN.0.into(), "admin@example.com".into(), ADMIN.1.into())),
            replica: "test".into(),
            central_server: wiring.server,
            central_ca_pem: wiring.ca_pem,
            oidc_client_secret,
        };
        let client = wiring.web_client;
        let (state, watch) = server::build_state(wiring.cfg, client.clone(), &opts)
            .await
            .expect("state");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let web = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            if let Err(e) = server::serve(state, client, opts, listener, stop, watch).await {
                panic!("web failed: {e}");
            }
        });
        let url = format!("http://{addr}");
        let stack = Stack {
            sim,
            kube,
            controller: Some(wiring.controller),
            url: url.clone(),
            host: addr.to_string(),
            dir,
            web,
            stop: Some(tx),
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{url}/readyz")).send().await
                && r.status().is_success()
                && r.text().await.unwrap_or_default() == "ready"
            {
                return stack;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("web never became ready");
    }

    /// Which kind of cluster the stack runs on (kubesim-only stacks: simulated).
    pub fn backend(&self) -> Backend {
        match &self.kube {
            Kube::Sim => Backend::Simulated,
            Kube::Cluster(c) => c.backend(),
        }
    }

    /// The kubesim behind the stack, when there is one.
    pub fn simulated(&self) -> Option<&RunningSim> {
        match &self.kube {
            Kube::Sim => self.sim.0.as_ref(),
            Kube::Cluster(c) => c.sim(),
        }
    }

    /// An admin client of the stack's cluster (the test's own view; the web and controller never use it).
    pub async fn admin_client(&self) -> kube::Client {
        match &self.kube {
            Kube::Sim => self.sim.client().await.expect("client"),
            Kube::Cluster(c) => c.client(),
        }
    }

    /// A client of the stack's cluster authenticated by `token`.
    pub async fn client_for_token(&self, token: &str) -> kube::Client {
        match &self.kube {
            Kube::Sim => self.sim.client_for_token(token).await.expect("client"),
            Kube::Cluster(c) => c.client_for_token(token).await.expect("client"),
        }
    }

    /// A client without a session.
    pub fn anon(&self) -> Session {
        Session {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            csrf: String::new(),
            base: self.url.clone(),
            email: String::new(),
            cookie: String::new(),
        }
    }

    /// Logs in through the API.
    pub async fn login(&self, user: &str, password: &str) -> Session {
        let mut s = self.anon();
        let r = s
            .http
            .post(format!("{}/api/v1/login", self.url))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 200, "login of {user} failed");
        s.cookie = r
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .to_string();
        let body: Value = r.json().await.expect("json");
        s.csrf = body["csrfToken"].as_str().expect("csrf").to_string();
        s.email = body["identity"]["email"].as_str().expect("email").to_string();
        s
    }

    /// Creates an engineer or admin and logs in as them.
    pub async fn user(&self, admin: &Session, username: &str, email: &str, is_admin: bool) -> Session {
        let r = admin
            .post(
                "/api/v1/users",
                json!({"username": username, "email": email, "password": PASSWORD, "isAdmin": is_admin}),
            )
            .await;
        assert_eq!(
            r.status(),
            201,
            "create user {username}: {}",
            r.text().await.unwrap_or_default()
        );
        self.login(username, PASSWORD).await
    }

    /// Stops the web process (and the controller).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.web).await;
        if let Some(c) = self.controller.take() {
            c.stop().await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.web.abort();
    }
}

/// An HTTP client with (maybe) a session.
#[derive(Clone)]
pub struct Session {
    pub http: reqwest::Client,
    pub csrf: String,
    pub base: String,
    pub email: String,
    /// `janus_session=…`, for WebSocket handshakes.
    pub cookie: String,
}

impl Session {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.base)).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn patch(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .patch(format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .expect("PATCH")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .send()
            .await
            .expect("DELETE")
    }

    /// Submits a urlencoded form like a browser (with Origin and the CSRF field).
    pub async fn form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("_csrf", &self.csrf));
        self.http
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .form(&all)
            .send()
            .await
            .expect("form")
    }

    pub async fn json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    /// Creates a request; returns its name.
    pub async fn request(&self, namespaces: &[&str], ttl: i64, reason: &str) -> String {
        let r = self
            .post(
                "/api/v1/requests",
                json!({"cluster": "central", "namespaces": namespaces, "ttlSeconds": ttl, "reason": reason}),
            )
            .await;
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 201, "create request: {body}");
        body["name"].as_str().expect("name").to_string()
    }

    /// Waits until the request reaches a phase (as this session sees it).
    pub async fn wait_phase(&self, name: &str, phase: &str) -> Value {
        for _ in 0..300 {
            let v = self.json(&format!("/api/v1/requests/{name}")).await;
            if v["phase"] == phase {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("request {name} never reached {phase}");
    }
}

/// Runs `scripts/pg-throwaway.sh` with `args`; its standard output.
pub fn throwaway(args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-throwaway.sh");
    let out = std::process::Command::new(script)
        .args(args)
        .output()
        .expect("pg-throwaway.sh");
    assert!(
        out.status.success(),
        "pg-throwaway.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PostgreSQL cluster of the test's own (scripts/pg-throwaway.sh), removed when dropped.
pub struct Pg {
    /// Its data directory (for `pause`, `resume` and `stop`).
    pub dir: String,
    /// Its connection URL.
    pub url: String,
}

impl Pg {
    /// Starts one on a free port.
    pub fn start() -> Pg {
        let out = throwaway(&["start"]);
        let get = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} missing in {out}"))
                .to_string()
        };
        Pg {
            dir: get("PG_THROWAWAY_DIR"),
            url: get("JANUS_TEST_POSTGRES_URL"),
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-throwaway.sh");
        let _ = std::process::Command::new(script).args(["stop", &self.dir]).output();
    }
}
