#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Notification delivery latency and throughput for one webhook sink (issue 17): the store (SQLite in a
//! temp dir; PostgreSQL too when `JANUS_TEST_POSTGRES_URL` is set), the real [`Delivery`] engine with
//! the production options (`DeliveryOptions::from_config`: the producer polls every second), and a
//! local HTTP receiver on 127.0.0.1 that stamps when each CloudEvent arrives.
//!
//! - latency: `BENCH_LATENCY_N` (default 200) new requests recorded one at a time, ~20 ms apart,
//!   through the recorder's write path (`recorder::record_request`: the history row, then the
//!   `request.created` audit event); for each, the time from that write returning to the receiver
//!   getting the CloudEvent whose id is the delivery's idempotency key (`<event key>/<sink>`).
//! - throughput: `BENCH_BULK` (default 5,000) `request.created` events recorded in one audit write,
//!   then deliveries per second until the receiver has them all.
//!
//! `cargo bench -p janus-notify --bench delivery`. It prints figures; it asserts nothing about speed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{SecondsFormat, Utc};
use janus_api::AccessRequest;
use janus_api::config::Config;
use janus_api::notifications::resolve;
use janus_notify::{Delivery, DeliveryOptions};
use janus_store::Store;
use janus_store::recorder::{events_from_request, record_from_request, record_request};
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::sync::{mpsc, watch};

const SINK: &str = "siem";

/// One CloudEvent as the receiver saw it.
struct Arrival {
    /// The CloudEvents `id` (the idempotency key).
    id: String,
    /// `data.message.topic` (`pending` for a new request).
    topic: String,
    /// The `Idempotency-Key` header is the CloudEvents id, as it must be.
    same_key: bool,
    at: Instant,
}

async fn receive(State(tx): State<mpsc::UnboundedSender<Arrival>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let ce: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = ce["id"].as_str().unwrap_or_default().to_string();
    let header = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let same_key = header == id;
    let topic = ce["data"]["message"]["topic"].as_str().unwrap_or("-").to_string();
    let _ = tx.send(Arrival {
        id,
        topic,
        same_key,
        at,
    });
    StatusCode::OK
}

async fn receiver() -> (u16, mpsc::UnboundedReceiver<Arrival>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route("/in", post(receive)).with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, rx)
}

/// The engine as `janus web` builds it: one signed webhook sink, the configuration's defaults, the
/// production options.
fn engine(store: &Store, port: u16) -> Delivery {
    let yaml = format!("notifications:\n  webhook:\n    - {{name: {SINK}, urlEnv: HOOK_URL, hmacKeyEnv: HOOK_KEY}}\n");
    let config = Config::from_yaml(&yaml, "bench").unwrap();
    let env: HashMap<&str, String> = [
        ("HOOK_URL", format!("http://127.0.0.1:{port}/in")),
        ("HOOK_KEY", "bench-key".to_string()),
    ]
    .into();
    let resolved = resolve(&config.notifications, &|k| env.get(k).cloned()).unwrap();
    let sinks = janus_notify::build(&resolved, "bench-0").unwrap();
    let opts = DeliveryOptions::from_config(&config, "bench-0");
    Delivery::new(store.clone(), Arc::new(config), sinks, opts)
}

/// A request just created (no status yet), as the recorder first sees it.
fn request(uid: &str) -> AccessRequest {
    serde_json::from_value(json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": uid, "uid": uid,
                     "creationTimestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)},
        "spec": {"requester": "jane@example.com", "cluster": "central", "namespaces": ["payments"],
                 "reason": "INC-42 benchmark", "ttlSeconds": 900}
    }))
    .unwrap()
}

/// The delivery's idempotency key for the `request.created` event of request `uid`.
fn key(uid: &str) -> String {
    format!("{uid}/request.created/{SINK}")
}

/// Starts the engine on a database whose cursor exists (created at the chain head, as the first
/// producer pass does), so what is recorded from now on is sent, as on a running replica.
async fn start(store: &Store, port: u16) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    store.outbox_cursor().await.unwrap();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(engine(store, port).run(stopped));
    // Let the first pass run, so the measurement starts with the engine in its polling loop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (stop, task)
}

async fn stop(stop: watch::Sender<bool>, task: tokio::task::JoinHandle<()>) {
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
}

/// Waits for the arrivals of `want` (keys), at most `secs`; returns the first arrival per key and how
/// many arrivals were repeats or not asked for.
async fn collect(
    rx: &mut mpsc::UnboundedReceiver<Arrival>,
    want: &HashMap<String, Instant>,
    secs: u64,
) -> (HashMap<String, Arrival>, usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut got: HashMap<String, Arrival> = HashMap::new();
    let mut other = 0;
    while got.len() < want.len() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(a)) => {
                assert!(a.same_key, "{}: Idempotency-Key header and CloudEvents id differ", a.id);
                if want.contains_key(&a.id) && !got.contains_key(&a.id) {
                    got.insert(a.id.clone(), a);
                } else {
                    other += 1;
                }
            }
            _ => panic!(
                "only {} of {} deliveries arrived within {secs} s",
                got.len(),
                want.len()
            ),
        }
    }
    (got, other)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Part 1: request written → CloudEvent at the receiver, one request at a time.
async fn latency(label: &str, store: &Store, n: usize) {
    let (port, mut rx) = receiver().await;
    let (halt, task) = start(store, port).await;
    let mut written = HashMap::with_capacity(n);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..n {
        tick.tick().await;
        let uid = format!("lat-{label}-{i}");
        record_request(store, &request(&uid)).await.unwrap();
        written.insert(key(&uid), Instant::now());
    }
    let (got, other) = collect(&mut rx, &written, 120).await;
    stop(halt, task).await;
    let mut lat: Vec<Duration> = got
        .iter()
        .map(|(k, a)| a.at.saturating_duration_since(written[k]))
        .collect();
    lat.sort();
    let pending = got.values().filter(|a| a.topic == "pending").count();
    println!(
        "{label:<9} latency   {n} requests one at a time (20 ms apart): write → receiver p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms (min {:.0} ms; {pending}/{n} topic pending; {other} repeats)",
        ms(pct(&lat, 0.50)),
        ms(pct(&lat, 0.90)),
        ms(pct(&lat, 0.99)),
        ms(pct(&lat, 1.0)),
        ms(lat[0]),
    );
}

/// Part 2: `n` events in one audit write, then deliveries per second until all arrived.
async fn throughput(label: &str, store: &Store, n: usize) {
    let (port, mut rx) = receiver().await;
    let (halt, task) = start(store, port).await;
    let requests: Vec<AccessRequest> = (0..n).map(|i| request(&format!("bulk-{label}-{i}"))).collect();
    // The history rows first (the producer reads each event's request), then every event in one write.
    for ar in &requests {
        store
            .upsert_request_with_uid(&record_from_request(ar), ar.metadata.uid.as_deref())
            .await
            .unwrap();
    }
    let events: Vec<_> = requests.iter().flat_map(events_from_request).collect();
    assert_eq!(events.len(), n);
    store.record_audit_batch(&events).await.unwrap();
    let t0 = Instant::now();
    let want: HashMap<String, Instant> = requests
        .iter()
        .map(|ar| (key(ar.metadata.uid.as_deref().unwrap()), t0))
        .collect();
    let (got, other) = collect(&mut rx, &want, 600).await;
    stop(halt, task).await;
    let first = got.values().map(|a| a.at).min().unwrap();
    let last = got.values().map(|a| a.at).max().unwrap();
    let sustained = (n - 1) as f64 / last.duration_since(first).as_secs_f64();
    println!(
        "{label:<9} throughput {n} events in one write: all received {:.2} s after it ({:.0}/s overall); first after {:.0} ms; sustained {sustained:.0} deliveries/s (first → last arrival, {:.2} s; {other} repeats)",
        last.duration_since(t0).as_secs_f64(),
        n as f64 / last.duration_since(t0).as_secs_f64(),
        ms(first.duration_since(t0)),
        last.duration_since(first).as_secs_f64(),
    );
}

async fn sqlite(dir: &tempfile::TempDir, name: &str) -> Store {
    let url = format!("sqlite://{}", dir.path().join(format!("{name}.db")).display());
    Store::connect(&url, None).await.unwrap()
}

async fn postgres(base: &str, name: &str) -> Store {
    let name = format!("janus_bench_{name}_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.ok();
    let (b, _) = base.rsplit_once('/').unwrap();
    Store::connect(&format!("{b}/{name}"), None).await.unwrap()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let n = env_usize("BENCH_LATENCY_N", 200).max(1);
    let bulk = env_usize("BENCH_BULK", 5000).max(2);
    let dir = tempfile::tempdir().unwrap();
    let pg = std::env::var("JANUS_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty());
    latency("sqlite", &sqlite(&dir, "latency").await, n).await;
    throughput("sqlite", &sqlite(&dir, "bulk").await, bulk).await;
    if let Some(base) = &pg {
        latency("postgres", &postgres(base, "latency").await, n).await;
        throughput("postgres", &postgres(base, "bulk").await, bulk).await;
    }
}
