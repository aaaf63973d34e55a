//! The delivery engine against real components: the store on SQLite and PostgreSQL (a throwaway
//! cluster from scripts/pg-throwaway.sh), and a local HTTP receiver (axum) behind the generic webhook
//! sink, which counts what arrives per idempotency key and can fail on demand (503, 429 with
//! Retry-After, 400).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use janus_api::config::Config;
use janus_api::notifications::resolve;
use janus_notify::{Delivery, DeliveryOptions};
use janus_store::{AuditKind, NewAuditEvent, OutboxState, Store};
use sqlx::Connection as _;

/// How the receiver answers on one path.
#[derive(Clone, Debug)]
enum Mode {
    Ok,
    /// 503 for the first n hits, then 429 with `Retry-After: 1` for the next m, then 200.
    Flaky {
        unavailable: u32,
        busy: u32,
    },
    /// 400 until fixed.
    Refuse,
    /// 200 after a delay.
    Slow(Duration),
}

#[derive(Default)]
struct Inner {
    modes: BTreeMap<String, Mode>,
    hits: u32,
    /// Per path: every (idempotency key, status answered, when).
    seen: BTreeMap<String, Vec<(String, u16, Instant)>>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Inner>>);

impl Receiver {
    fn set(&self, path: &str, m: Mode) {
        self.0.lock().unwrap().modes.insert(path.into(), m);
    }
    /// Keys accepted (200) on `path`, with how many times each.
    fn accepted(&self, path: &str) -> BTreeMap<String, usize> {
        let g = self.0.lock().unwrap();
        let mut out = BTreeMap::new();
        for (k, status, _) in g.seen.get(path).into_iter().flatten() {
            if *status == 200 {
                *out.entry(k.clone()).or_insert(0) += 1;
            }
        }
        out
    }
    fn all(&self, path: &str) -> Vec<(String, u16, Instant)> {
        self.0.lock().unwrap().seen.get(path).cloned().unwrap_or_default()
    }
}

async fn receive(State(r): State<Receiver>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mode = {
        let mut g = r.0.lock().unwrap();
        g.hits += 1;
        g.modes.get(&path).cloned().unwrap_or(Mode::Ok)
    };
    let (status, resp) = match mode {
        Mode::Ok => (200, (StatusCode::OK, "ok").into_response()),
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            (200, (StatusCode::OK, "ok").into_response())
        }
        Mode::Refuse => (400, (StatusCode::BAD_REQUEST, "invalid_payload").into_response()),
        Mode::Flaky { unavailable, busy } => {
            let n = r.0.lock().unwrap().seen.get(&path).map_or(0, |v| v.len()) as u32;
            if n < unavailable {
                (503, (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response())
            } else if n < unavailable + busy {
                (
                    429,
                    (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response(),
                )
            } else {
                (200, (StatusCode::OK, "ok").into_response())
            }
        }
    };
    r.0.lock()
        .unwrap()
        .seen
        .entry(path)
        .or_default()
        .push((key, status, Instant::now()));
    resp
}

async fn receiver() -> (SocketAddr, Receiver) {
    let r = Receiver::default();
    let app = Router::new().route("/{*path}", post(receive)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, r)
}

/// A configuration with one webhook sink per name, posting to `http://addr/<name>`, and the engine.
fn engine(store: &Store, addr: SocketAddr, names: &[&str], replica: &str) -> Delivery {
    let yaml = format!(
        "notifications:\n  timeoutSeconds: 5\n  webhook:\n{}",
        names
            .iter()
            .map(|n| format!("    - {{name: {n}, urlEnv: URL_{n}, hmacKeyEnv: KEY}}\n"))
            .collect::<String>()
    );
    let config = Config::from_yaml(&yaml, "test").unwrap();
    let mut env: BTreeMap<String, String> = names
        .iter()
        .map(|n| (format!("URL_{n}"), format!("http://127.0.0.1:{}/{n}", addr.port())))
        .collect();
    env.insert("KEY".into(), "k".into());
    let resolved = resolve(&config.notifications, &|k| env.get(k).cloned()).unwrap();
    let sinks = janus_notify::build(&resolved, replica).unwrap();
    let mut opts = DeliveryOptions::from_config(&config, replica);
    opts.poll = Duration::from_millis(50);
    opts.lease = Duration::from_secs(2);
    opts.backoff_base = Duration::from_millis(50);
    opts.backoff_cap = Duration::from_millis(400);
    Delivery::new(store.clone(), Arc::new(config), sinks, opts)
}

/// Counts the outcomes the engine reports (the web turns them into metrics).
#[derive(Default)]
struct Counted(Mutex<BTreeMap<&'static str, usize>>);

impl Counted {
    fn get(&self, what: &str) -> usize {
        self.0.lock().unwrap().get(what).copied().unwrap_or(0)
    }
    fn add(&self, what: &'static str) {
        *self.0.lock().unwrap().entry(what).or_insert(0) += 1;
    }
}

impl janus_notify::DeliveryObserver for Counted {
    fn sent(&self, _: &str, latency: Duration) {
        assert!(latency < Duration::from_secs(120));
        self.add("sent");
    }
    fn failed(&self, _: &str) {
        self.add("failed");
    }
    fn retrying(&self, _: &str) {
        self.add("retrying");
    }
    fn dead_lettered(&self, _: &str) {
        self.add("dead");
    }
}

fn event(key: &str) -> NewAuditEvent {
    NewAuditEvent {
        key: key.into(),
        kind: AuditKind::RequestCreated,
        at: Utc::now(),
        actor: "alice@example.com".into(),
        request: Some("alice-x".into()),
        cluster: Some("prod".into()),
        namespaces: vec!["payments".into()],
        details: serde_json::json!({"reason": "INC-1"}),
    }
}

async fn record(store: &Store, prefix: &str, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}/{i}/request.created")).collect();
    for k in &keys {
        store.record_audit(&event(k)).await.unwrap();
    }
    keys
}

async fn produce_all(d: &Delivery) {
    while d.produce_once().await.unwrap() > 0 {}
}

/// Sends until nothing is due or claimed for a while, at most `secs`.
async fn drain(d: &Delivery, secs: u64, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "not everything delivered within {secs} s");
        let s = d.send_once().await.unwrap();
        if s.claimed == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn expected(keys: &[String], sink: &str) -> BTreeMap<String, usize> {
    keys.iter().map(|k| (format!("{k}/{sink}"), 1)).collect()
}

// ---- stores ----

fn pg_url() -> Option<String> {
    match std::env::var("JANUS_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("CI").map_or(true, |v| v.is_empty() || v == "false"),
                "CI is set but JANUS_TEST_POSTGRES_URL is not: run the tests through scripts/test.sh"
            );
            eprintln!("JANUS_TEST_POSTGRES_URL not set: PostgreSQL variant skipped");
            None
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh database on the cluster of `base` (its URL).
async fn fresh_pg(base: &str) -> String {
    let name = format!(
        "janus_d_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        Utc::now().timestamp_micros() % 1_000_000
    );
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    let (head, _) = base.rsplit_once('/').unwrap();
    format!("{head}/{name}")
}

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("janus.db").display());
    (Store::connect(&url, None).await.unwrap(), dir)
}

// ---- every event, once per sink ----

async fn every_event_once_per_sink(store: &Store, b: &str) {
    let (addr, rx) = receiver().await;
    let d = engine(store, addr, &["a", "b"], "web-0");
    // History before notifications were configured is not sent: the cursor starts at the head.
    let old = record(store, "old", 3).await;
    produce_all(&d).await;
    let keys = record(store, "new", 25).await;
    produce_all(&d).await;
    // Producing again (this replica or another) queues nothing twice.
    produce_all(&d).await;
    let other = engine(store, addr, &["a", "b"], "web-1");
    produce_all(&other).await;
    assert_eq!(store.outbox_rows(1000).await.unwrap().len(), 50, "{b}");
    drain(&d, 30, || rx.accepted("a").len() == 25 && rx.accepted("b").len() == 25).await;
    assert_eq!(rx.accepted("a"), expected(&keys, "a"), "{b}");
    assert_eq!(rx.accepted("b"), expected(&keys, "b"), "{b}");
    assert!(
        rx.all("a")
            .iter()
            .all(|(k, _, _)| !old.iter().any(|o| k.starts_with(o))),
        "{b}"
    );
    let rows = store.outbox_rows(1000).await.unwrap();
    assert!(
        rows.iter().all(|r| r.state == OutboxState::Sent && r.sent_at.is_some()),
        "{b}"
    );
}

#[tokio::test]
async fn every_event_once_per_sink_sqlite() {
    let (s, _d) = sqlite().await;
    every_event_once_per_sink(&s, "sqlite").await;
}

#[tokio::test]
async fn every_event_once_per_sink_postgres() {
    let Some(base) = pg_url() else { return };
    let s = Store::connect(&fresh_pg(&base).await, None).await.unwrap();
    every_event_once_per_sink(&s, "postgres").await;
}

// ---- a receiver failing for a while ----

#[tokio::test]
async fn a_failing_receiver_gets_everything_once_it_recovers() {
    let (s, _d) = sqlite().await;
    let (addr, rx) = receiver().await;
    rx.set(
        "flaky",
        Mode::Flaky {
            unavailable: 12,
            busy: 3,
        },
    );
    let counted = Arc::new(Counted::default());
    let d = engine(&s, addr, &["flaky"], "web-0").with_observer(counted.clone());
    produce_all(&d).await;
    let keys = record(&s, "f", 5).await;
    produce_all(&d).await;
    drain(&d, 60, || rx.accepted("flaky").len() == 5).await;
    assert_eq!(rx.accepted("flaky"), expected(&keys, "flaky"));
    let all = rx.all("flaky");
    // Every repeat carries the key of a message, and a message's key is the same every time.
    assert!(all.iter().all(|(k, _, _)| expected(&keys, "flaky").contains_key(k)));
    assert_eq!(all.iter().filter(|(_, s, _)| *s == 503).count(), 12);
    // After a 429 with Retry-After: 1, that message is not tried again within the second.
    for (i, (k, status, at)) in all.iter().enumerate() {
        if *status == 429
            && let Some((_, _, next)) = all[i + 1..].iter().find(|(k2, _, _)| k2 == k)
        {
            assert!(
                next.duration_since(*at) >= Duration::from_millis(950),
                "{k} retried after {:?} despite Retry-After: 1",
                next.duration_since(*at)
            );
        }
    }
    let rows = s.outbox_rows(100).await.unwrap();
    assert!(rows.iter().all(|r| r.state == OutboxState::Sent));
    assert_eq!(rows.iter().map(|r| r.attempts).sum::<i64>(), 12 + 3 + 5);
    assert_eq!(
        (
            counted.get("sent"),
            counted.get("failed"),
            counted.get("retrying"),
            counted.get("dead")
        ),
        (5, 15, 15, 0)
    );
}

// ---- refused: dead letter, manual retry ----

#[tokio::test]
async fn a_refused_delivery_is_dead_lettered_and_retried_by_hand() {
    let (s, _d) = sqlite().await;
    let (addr, rx) = receiver().await;
    rx.set("strict", Mode::Refuse);
    let counted = Arc::new(Counted::default());
    let d = engine(&s, addr, &["strict"], "web-0").with_observer(counted.clone());
    produce_all(&d).await;
    let keys = record(&s, "r", 1).await;
    produce_all(&d).await;
    let st = d.send_once().await.unwrap();
    assert_eq!((st.claimed, st.dead), (1, 1));
    // Not retried on its own.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.send_once().await.unwrap().claimed, 0);
    let dead = s.list_dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_status, Some(400));
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("invalid_payload"),
        "{dead:?}"
    );
    assert!(
        !dead[0].last_error.as_deref().unwrap().contains("127.0.0.1"),
        "no URL in the error"
    );
    rx.set("strict", Mode::Ok);
    assert!(s.retry_dead(dead[0].id).await.unwrap());
    drain(&d, 10, || rx.accepted("strict").len() == 1).await;
    assert_eq!(rx.accepted("strict"), expected(&keys, "strict"));
    let row = s.outbox_row(dead[0].id).await.unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (OutboxState::Sent, 2));
    assert_eq!(
        (
            counted.get("sent"),
            counted.get("failed"),
            counted.get("retrying"),
            counted.get("dead")
        ),
        (1, 1, 0, 1)
    );
}

/// A delivery that keeps failing past deadLetterAfterSeconds is dead-lettered with its last error.
#[tokio::test]
async fn a_delivery_failing_too_long_is_dead_lettered() {
    let (s, _d) = sqlite().await;
    let (addr, rx) = receiver().await;
    rx.set(
        "down",
        Mode::Flaky {
            unavailable: 1000,
            busy: 0,
        },
    );
    let mut d = engine(&s, addr, &["down"], "web-0");
    produce_all(&d).await;
    record(&s, "t", 1).await;
    produce_all(&d).await;
    let mut opts = DeliveryOptions::from_config(&Config::from_yaml("{}", "t").unwrap(), "web-0");
    opts.backoff_base = Duration::from_millis(50);
    opts.backoff_cap = Duration::from_millis(100);
    opts.dead_letter_after = Duration::from_secs(1);
    d = d.with_options(opts);
    let start = Instant::now();
    loop {
        let st = d.send_once().await.unwrap();
        if st.dead == 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(start.elapsed() >= Duration::from_millis(900));
    let dead = s.list_dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let err = dead[0].last_error.as_deref().unwrap();
    assert!(err.contains("not delivered within 1 s") && err.contains("503"), "{err}");
    assert!(rx.all("down").len() > 1);
}

// ---- a sender killed mid-batch ----

async fn killed_sender(store: &Store, b: &str) {
    let (addr, rx) = receiver().await;
    rx.set("slow", Mode::Slow(Duration::from_millis(200)));
    let mut opts_d = engine(store, addr, &["slow"], "web-0");
    produce_all(&opts_d).await;
    let keys = record(store, "k", 10).await;
    produce_all(&opts_d).await;
    // One at a time, so the claimed batch is still mostly unsent when the task dies.
    opts_d = opts_d.with_concurrency(1);
    let doomed = opts_d.clone();
    let task = tokio::spawn(async move {
        loop {
            let _ = doomed.send_once().await;
        }
    });
    let t0 = Instant::now();
    while rx.all("slow").len() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(10), "{b}: the sender sent nothing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    let _ = task.await;
    let survivor = engine(store, addr, &["slow"], "web-1");
    // Its claims hold until the lease lapses.
    assert_eq!(
        survivor.send_once().await.unwrap().claimed,
        0,
        "{b}: claims of the dead sender held"
    );
    drain(&survivor, 30, || rx.accepted("slow").len() == 10).await;
    let got = rx.accepted("slow");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected(&keys, "slow").keys().collect::<Vec<_>>(),
        "{b}"
    );
    // At most the message in flight when the task died arrives twice, with the same key.
    assert!(got.values().filter(|n| **n > 1).count() <= 1, "{b}: {got:?}");
    assert!(
        store
            .outbox_rows(100)
            .await
            .unwrap()
            .iter()
            .all(|r| r.state == OutboxState::Sent),
        "{b}"
    );
}

#[tokio::test]
async fn a_killed_sender_leaves_the_rest_to_another_after_the_lease_sqlite() {
    let (s, _d) = sqlite().await;
    killed_sender(&s, "sqlite").await;
}

#[tokio::test]
async fn a_killed_sender_leaves_the_rest_to_another_after_the_lease_postgres() {
    let Some(base) = pg_url() else { return };
    let s = Store::connect(&fresh_pg(&base).await, None).await.unwrap();
    killed_sender(&s, "postgres").await;
}

// ---- PostgreSQL stopped and started ----

fn pg_script(args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-throwaway.sh");
    let out = std::process::Command::new(script).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "pg-throwaway.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A cluster of this test's own, so stopping it disturbs no other test.
struct OwnPostgres {
    dir: String,
    url: String,
}

impl OwnPostgres {
    fn start() -> Self {
        let out = pg_script(&["start"]);
        let get = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_string()
        };
        Self {
            dir: get("PG_THROWAWAY_DIR"),
            url: get("JANUS_TEST_POSTGRES_URL"),
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-throwaway.sh");
        let _ = std::process::Command::new(script).args(["stop", &self.dir]).output();
    }
}

#[tokio::test]
async fn nothing_is_lost_when_postgres_stops_and_starts_again() {
    if pg_url().is_none() {
        return;
    }
    let pg = OwnPostgres::start();
    let store = Store::connect(&pg.url, None).await.unwrap();
    let (addr, rx) = receiver().await;
    rx.set("hook", Mode::Slow(Duration::from_millis(50)));
    let d = engine(&store, addr, &["hook"], "web-0");
    produce_all(&d).await;
    let mut keys = record(&store, "before", 20).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(d.clone().run(stopped));
    let t0 = Instant::now();
    while rx.all("hook").len() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(20), "nothing sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pg_script(&["pause", &pg.dir]);
    assert!(store.ping().await.is_err());
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg_script(&["resume", &pg.dir]);
    // Events recorded after the outage are delivered too.
    let t0 = Instant::now();
    loop {
        if store.ping().await.is_ok() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the database did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    keys.extend(record(&store, "after", 5).await);
    let t0 = Instant::now();
    while rx.accepted("hook").len() < 25 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "lost: {} of 25",
            25 - rx.accepted("hook").len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the engine stops when told")
        .unwrap();
    let got = rx.accepted("hook");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected(&keys, "hook").keys().collect::<Vec<_>>()
    );
    // A repeat (a send whose commit the outage lost) carries the same key.
    assert!(
        rx.all("hook")
            .iter()
            .all(|(k, _, _)| expected(&keys, "hook").contains_key(k))
    );
}

// ---- two replicas on one PostgreSQL ----

#[tokio::test]
async fn two_replicas_send_each_delivery_once() {
    let Some(base) = pg_url() else { return };
    let url = fresh_pg(&base).await;
    let (s0, s1) = (
        Store::connect(&url, None).await.unwrap(),
        Store::connect(&url, None).await.unwrap(),
    );
    let (addr, rx) = receiver().await;
    rx.set("hook", Mode::Slow(Duration::from_millis(5)));
    let r0 = engine(&s0, addr, &["hook"], "web-0");
    let r1 = engine(&s1, addr, &["hook"], "web-1");
    produce_all(&r0).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let t0 = tokio::spawn(r0.run(stopped.clone()));
    let t1 = tokio::spawn(r1.run(stopped));
    // Events arrive while both replicas produce and send.
    let mut keys = Vec::new();
    for i in 0..10 {
        keys.extend(record(&s0, &format!("two{i}"), 15).await);
    }
    let start = Instant::now();
    while rx.all("hook").len() < keys.len() {
        assert!(start.elapsed() < Duration::from_secs(60), "not all delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let a late duplicate, if any, arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    t0.await.unwrap();
    t1.await.unwrap();
    let got = rx.accepted("hook");
    assert_eq!(got, expected(&keys, "hook"), "each delivery received exactly once");
    assert_eq!(rx.all("hook").len(), keys.len());
    let rows = s0.outbox_rows(1000).await.unwrap();
    assert_eq!(rows.len(), keys.len());
    assert!(rows.iter().all(|r| r.state == OutboxState::Sent && r.attempts == 1));
}

// ---- expiring soon ----

fn active(name: &str, expires_in: chrono::Duration) -> janus_store::RequestRecord {
    let now = Utc::now();
    janus_store::RequestRecord {
        name: name.into(),
        requester: "alice@example.com".into(),
        cluster: "prod".into(),
        namespaces: vec!["payments".into()],
        reason: "INC-2".into(),
        ttl_seconds: 3600,
        phase: "Active".into(),
        message: String::new(),
        created_at: now - chrono::Duration::minutes(50),
        approved_by: Some("bob@example.com".into()),
        decided_by: None,
        expires_at: Some(now + expires_in),
        ended_at: None,
        updated_at: now,
        deleted_at: None,
        policy: None,
        approvals: vec![],
        auto_approved: false,
        break_glass: false,
        break_glass_reviewed_by: None,
        start_at: None,
    }
}

/// An Active request within `expiringSoonSeconds` (600 by default) of its end is told once; a request
/// further out is not; an extension (a new end) is told again; each message is delivered.
#[tokio::test]
async fn expiring_soon_is_sent_once_per_end() {
    let (s, _d) = sqlite().await;
    let (addr, rx) = receiver().await;
    let d = engine(&s, addr, &["hook"], "web-0");
    s.upsert_request(&active("soon", chrono::Duration::minutes(5)))
        .await
        .unwrap();
    s.upsert_request(&active("later", chrono::Duration::minutes(30)))
        .await
        .unwrap();
    assert_eq!(d.expiring_once(Utc::now()).await.unwrap(), 1);
    assert_eq!(d.expiring_once(Utc::now()).await.unwrap(), 0, "told once");
    let mut extended = active("soon", chrono::Duration::minutes(8));
    extended.updated_at += chrono::Duration::seconds(1);
    s.upsert_request(&extended).await.unwrap();
    assert_eq!(
        d.expiring_once(Utc::now()).await.unwrap(),
        1,
        "a new end, a new message"
    );
    drain(&d, 10, || rx.accepted("hook").len() == 2).await;
    let keys: Vec<String> = rx.accepted("hook").into_keys().collect();
    assert!(
        keys.iter()
            .all(|k| k.starts_with("soon/request.expiring_soon/") && k.ends_with("/hook")),
        "{keys:?}"
    );
}
