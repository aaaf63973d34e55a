//! Two `janus web` replicas on one PostgreSQL, as the chart runs them: the pieces the `web-replicas`
//! benchmark part (crates/janus-bench/src/replicas.rs) and the end-to-end test
//! crates/janus/tests/replicas.rs share (processes, sessions, terminals, the audit check).
//!
//! Self-contained on purpose (no `crate::` paths): the test includes this file with `#[path]`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// The janus namespace of the chart install.
pub const NS: &str = "k8s-janus";
/// The namespace the requests ask for, and its pod (janus_testkit's WORKLOADS).
pub const TARGET_NS: &str = "team-a";
/// The pod the terminals open a shell in.
pub const TARGET_POD: &str = "app";
/// Password of every user the farm creates (local accounts need 12 characters).
pub const PASSWORD: &str = "replica-bench-password";

/// The chart's configuration (templates/configmap.yaml rendered by the real helm with
/// `replicaCount=2` and `postgresql.enabled=true`) pointing at `database_url`, with `web` settings
/// merged over the chart's `web` block (settings the chart does not expose, such as per-user limits).
pub fn chart_config(database_url: &str, web: &Value) -> anyhow::Result<String> {
    let rendered = janus_testkit::render_chart(
        &[
            "replicaCount=2",
            "postgresql.enabled=true",
            "postgresql.host=127.0.0.1",
            "postgresql.existingSecret=janus-postgresql",
        ],
        &["templates/configmap.yaml"],
    )?;
    let cm: Value = yaml_serde::from_str(&rendered).context("the rendered ConfigMap")?;
    let text = cm["data"]["config.yaml"]
        .as_str()
        .context("the ConfigMap has no config.yaml")?;
    let mut cfg: Value = yaml_serde::from_str(text).context("the chart's config.yaml")?;
    let chart_url = cfg["database"]["url"].as_str().unwrap_or_default().to_string();
    if !chart_url.starts_with("postgres://") {
        bail!("the chart did not configure PostgreSQL: {chart_url}");
    }
    cfg["database"]["url"] = json!(database_url);
    if let (Some(to), Some(from)) = (cfg["web"].as_object_mut(), web.as_object()) {
        for (k, v) in from {
            to.insert(k.clone(), v.clone());
        }
    }
    Ok(yaml_serde::to_string(&cfg)?)
}

/// A free TCP port on 127.0.0.1 (bound and released: good enough between processes of one test).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Writes a file only its owner may read (kubeconfigs carry tokens).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// What every replica is started with.
pub struct WebSpec {
    /// The `janus` binary.
    pub janus: PathBuf,
    /// The configuration file ([`chart_config`]).
    pub config: PathBuf,
    /// Kubeconfig with the chart's web ServiceAccount token.
    pub kubeconfig: PathBuf,
    /// Where the process logs go (`web-<name>.log`).
    pub logs: PathBuf,
    /// `JANUS_SESSION_KEY`: one Secret for all replicas, as in the chart.
    pub session_key: String,
    /// `JANUS_BOOTSTRAP_ADMIN_PASSWORD` of the bootstrap admin `admin`.
    pub admin_password: String,
}

/// One `janus web` process.
pub struct Web {
    /// Its name (`JANUS_POD_NAME`).
    pub name: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub host: String,
    child: tokio::process::Child,
}

impl Web {
    /// Starts a replica and waits until it answers `/readyz` with `ready` (its request cache synced
    /// and the database reachable).
    pub async fn start(spec: &WebSpec, name: &str) -> anyhow::Result<Web> {
        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let log_path = spec.logs.join(format!("web-{name}.log"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = tokio::process::Command::new(&spec.janus)
            .args(["--log-format", "json", "web", "--config"])
            .arg(&spec.config)
            .arg("--kubeconfig")
            .arg(&spec.kubeconfig)
            .args(["--listen", &host])
            .env("JANUS_POD_NAME", name)
            .env("JANUS_SESSION_KEY", &spec.session_key)
            .env("JANUS_BOOTSTRAP_ADMIN_PASSWORD", &spec.admin_password)
            .env(
                "JANUS_LOG",
                std::env::var("BENCH_WEB_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", spec.janus.display()))?;
        let mut web = Web {
            name: name.to_string(),
            url: format!("http://{host}"),
            host,
            child,
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", web.url)).send().await
                && r.status().is_success()
                && r.text().await.unwrap_or_default() == "ready"
            {
                return Ok(web);
            }
            if let Some(status) = web.child.try_wait()? {
                bail!("janus web {name} exited ({status}); see {}", log_path.display());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("janus web {name} not ready within 60 s; see {}", log_path.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }
}

/// A `janus controller` process with the chart's leader election.
pub async fn start_controller(
    janus: &Path,
    config: &Path,
    kubeconfig: &Path,
    logs: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::File::create(logs.join("controller.log"))?;
    tokio::process::Command::new(janus)
        .args(["--log-format", "json", "controller", "--config"])
        .arg(config)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("JANUS_POD_NAME", "controller-0")
        .env("JANUS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", janus.display()))
}

/// A logged-in client of one replica: the session cookie and its CSRF token.
#[derive(Clone)]
pub struct Session {
    http: reqwest::Client,
    /// The replica's URL.
    pub base: String,
    /// The replica's `host:port`.
    pub host: String,
    /// `janus_session=…`.
    pub cookie: String,
    /// The `X-CSRF-Token` value.
    pub csrf: String,
    /// Who.
    pub email: String,
}

impl Session {
    /// `POST /api/v1/login` on `web`.
    pub async fn login(http: &reqwest::Client, web: &Web, user: &str, password: &str) -> anyhow::Result<Session> {
        let r = http
            .post(format!("{}/api/v1/login", web.url))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("login of {user} on {}: {}", web.name, r.status());
        }
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("janus_session="))
            .and_then(|v| v.split(';').next())
            .context("login set no session cookie")?
            .to_string();
        let body: Value = r.json().await?;
        Ok(Session {
            http: http.clone(),
            base: web.url.clone(),
            host: web.host.clone(),
            cookie,
            csrf: body["csrfToken"].as_str().context("no csrfToken")?.to_string(),
            email: body["identity"]["email"].as_str().context("no email")?.to_string(),
        })
    }

    /// The same session (cookie and CSRF token) sent to another replica.
    pub fn on(&self, web: &Web) -> Session {
        Session {
            base: web.url.clone(),
            host: web.host.clone(),
            ..self.clone()
        }
    }

    /// A GET with the session cookie.
    pub async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
    }

    /// A JSON POST with the session cookie and the CSRF token.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(body)
            .send()
            .await
    }

    /// Creates a local account (the session must be an admin's).
    pub async fn create_user(&self, username: &str, email: &str, is_admin: bool) -> anyhow::Result<()> {
        let r = self
            .post(
                "/api/v1/users",
                &json!({"username": username, "email": email, "password": PASSWORD, "isAdmin": is_admin}),
            )
            .await?;
        if r.status().as_u16() != 201 {
            bail!(
                "create user {username}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Asks for a shell in [`TARGET_NS`] for an hour; the request's name.
    pub async fn create_request(&self, reason: &str) -> anyhow::Result<String> {
        let r = self
            .post(
                "/api/v1/requests",
                &json!({"cluster": "central", "namespaces": [TARGET_NS], "ttlSeconds": 3600, "reason": reason}),
            )
            .await?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or_default();
        if status.as_u16() != 201 {
            bail!("create request: {status} {body}");
        }
        Ok(body["name"].as_str().context("no name")?.to_string())
    }

    /// `POST /api/v1/requests/{name}/{action}`; the answer's status.
    pub async fn decide(&self, name: &str, action: &str, body: &Value) -> reqwest::Result<reqwest::StatusCode> {
        Ok(self
            .post(&format!("/api/v1/requests/{name}/{action}"), body)
            .await?
            .status())
    }

    /// The request's phase as this session sees it.
    pub async fn phase(&self, name: &str) -> anyhow::Result<String> {
        let v: Value = self.get(&format!("/api/v1/requests/{name}")).await?.json().await?;
        Ok(v["phase"].as_str().unwrap_or_default().to_string())
    }

    /// Waits until every request is in `phase` (polling the list of all requests: an admin's session),
    /// or fails after `within`.
    pub async fn wait_phase(&self, names: &[String], phase: &str, within: Duration) -> anyhow::Result<()> {
        let want: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let started = Instant::now();
        loop {
            // Pages of at most 500 (the API's largest) of the requests in that phase.
            let mut done = 0usize;
            let mut offset = 0usize;
            loop {
                let r = self
                    .get(&format!(
                        "/api/v1/requests?scope=all&phase={phase}&limit=500&offset={offset}"
                    ))
                    .await?;
                if !r.status().is_success() {
                    bail!("list requests as {}: {}", self.email, r.status());
                }
                let v: Value = r.json().await?;
                let items = v["items"].as_array().cloned().unwrap_or_default();
                done += items
                    .iter()
                    .filter(|i| want.contains(i["name"].as_str().unwrap_or_default()))
                    .count();
                offset += items.len();
                if items.is_empty() || offset >= v["total"].as_u64().unwrap_or(0) as usize {
                    break;
                }
            }
            if done == want.len() {
                return Ok(());
            }
            if started.elapsed() > within {
                bail!("{done} of {} requests {phase} after {within:?}", want.len());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An open browser terminal (a shell in [`TARGET_POD`]).
pub struct Terminal {
    ws: Ws,
    /// The session id the web gave it.
    pub id: String,
}

impl Terminal {
    /// Opens `/ws/terminal/{request}` as a browser does (cookie, Origin, csrf parameter) and waits for
    /// the `connected` control message.
    pub async fn open(s: &Session, request: &str) -> anyhow::Result<Terminal> {
        let url = format!(
            "ws://{}/ws/terminal/{request}?namespace={TARGET_NS}&pod={TARGET_POD}&csrf={}",
            s.host, s.csrf
        );
        let mut req = url.into_client_request()?;
        req.headers_mut().insert("cookie", s.cookie.parse()?);
        req.headers_mut().insert("origin", s.base.parse()?);
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t)?;
                    if v["type"] == "connected" {
                        let id = v["session"].as_str().unwrap_or_default().to_string();
                        return Ok(Terminal { ws, id });
                    }
                    bail!("terminal on {request}: {v}");
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => bail!("terminal on {request} ended before connecting: {other:?}"),
                Err(_) => bail!("terminal on {request}: not connected within 60 s"),
            }
        }
    }

    /// Waits until the web ends the session (its `closed` message, or the socket closing) and says why;
    /// shell output meanwhile is read and dropped. Fails after `within`.
    pub async fn closed(mut self, within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap_or_default();
                    if v["type"] == "closed" {
                        return Ok(v["reason"].as_str().unwrap_or_default().to_string());
                    }
                }
                Ok(Some(Ok(Message::Close(f)))) => return Ok(format!("socket closed: {f:?}")),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Ok(format!("socket error: {e}")),
                Ok(None) => return Ok("socket ended".into()),
                Err(_) => bail!("terminal {} still open after {within:?}", self.id),
            }
        }
    }
}

/// What a decision load did: requests created and approved with a 2xx answer (the ones whose audit
/// events must exist), calls that got another answer, and calls no replica answered.
#[derive(Debug, Default)]
pub struct Decisions {
    /// Requests whose creation was answered 201.
    pub created: Vec<String>,
    /// Requests whose approval was answered 2xx.
    pub approved: Vec<String>,
    /// Other answers (status and call), e.g. a 5xx from a dying replica.
    pub refused: Vec<String>,
    /// Calls whose replica did not answer (killed): retried on the other replica with the same cookie.
    pub unanswered: usize,
}

/// One decision worker: a requester and an approver, each with a session valid on every replica.
pub struct Pair {
    /// The requester (a different person from the approver: no self-approval).
    pub user: Session,
    /// The approver (an admin).
    pub admin: Session,
}

/// Runs `pairs` in parallel until `stop`: each creates a request and approves it, through its own
/// replica; a call the replica does not answer (a connection error) is retried, with the same
/// session, on `fallback` from then on, as a load balancer would send it.
pub async fn decision_load(pairs: Vec<Pair>, fallback: &Web, stop: Instant) -> Decisions {
    let fallback_url = fallback.url.clone();
    let fallback_host = fallback.host.clone();
    let workers = pairs.into_iter().enumerate().map(|(i, mut p)| {
        let fallback_url = fallback_url.clone();
        let fallback_host = fallback_host.clone();
        async move {
            let mut d = Decisions::default();
            let mut n = 0usize;
            let switch = |s: &mut Session| {
                s.base = fallback_url.clone();
                s.host = fallback_host.clone();
            };
            while Instant::now() < stop {
                n += 1;
                let reason = format!("decision load {i}-{n}");
                let body =
                    json!({"cluster": "central", "namespaces": [TARGET_NS], "ttlSeconds": 3600, "reason": reason});
                let created = match p.user.post("/api/v1/requests", &body).await {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let v: Value = r.json().await.unwrap_or_default();
                        v["name"].as_str().map(str::to_string)
                    }
                    Ok(r) => {
                        d.refused
                            .push(format!("create {}: {}", r.status(), r.text().await.unwrap_or_default()));
                        None
                    }
                    Err(_) => {
                        d.unanswered += 1;
                        switch(&mut p.user);
                        None
                    }
                };
                let Some(name) = created else { continue };
                d.created.push(name.clone());
                let mut retried = false;
                loop {
                    match p.admin.decide(&name, "approve", &json!({})).await {
                        Ok(s) if s.is_success() => {
                            d.approved.push(name.clone());
                            break;
                        }
                        // The killed replica approved it but died before answering: the retry finds
                        // it approved. The decision took effect; only its answer was lost.
                        Ok(s) if retried && s.as_u16() == 409 => {
                            d.approved.push(name.clone());
                            break;
                        }
                        Ok(s) => {
                            d.refused.push(format!("approve {name}: {s}"));
                            break;
                        }
                        Err(_) => {
                            d.unanswered += 1;
                            if p.admin.base == fallback_url {
                                break;
                            }
                            switch(&mut p.admin);
                            retried = true;
                        }
                    }
                }
            }
            d
        }
    });
    let mut all = Decisions::default();
    for d in futures::future::join_all(workers).await {
        all.created.extend(d.created);
        all.approved.extend(d.approved);
        all.refused.extend(d.refused);
        all.unanswered += d.unanswered;
    }
    all
}

/// The decisions with no audit event in the database: `request.created` for every created request,
/// `request.approved` for every approved one. Waits up to `within` for the replicas' recorders (they
/// derive these events from the AccessRequests) before answering.
pub async fn audit_missing(database_url: &str, d: &Decisions, within: Duration) -> anyhow::Result<Vec<String>> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .context("cannot connect to PostgreSQL")?;
    let mut expected: BTreeMap<(String, &str), ()> = BTreeMap::new();
    for n in &d.created {
        expected.insert((n.clone(), "request.created"), ());
    }
    for n in &d.approved {
        expected.insert((n.clone(), "request.approved"), ());
    }
    let started = Instant::now();
    loop {
        let rows: Vec<(Option<String>, String)> = sqlx::query_as(
            "SELECT request, kind FROM audit_events WHERE kind IN ('request.created', 'request.approved')",
        )
        .fetch_all(&pool)
        .await?;
        let found: BTreeSet<(String, String)> = rows.into_iter().filter_map(|(r, k)| Some((r?, k))).collect();
        let missing: Vec<String> = expected
            .keys()
            .filter(|(n, k)| !found.contains(&(n.clone(), k.to_string())))
            .map(|(n, k)| format!("{k} of {n}"))
            .collect();
        if missing.is_empty() || started.elapsed() > within {
            pool.close().await;
            return Ok(missing);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
