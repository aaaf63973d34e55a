#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Leader election against kubesim with the chart's controller identity: a holder cut off from the
//! API server steps down before its lease can expire and the standby takes over only after expiry
//! (leadership intervals never overlap); a graceful shutdown hands the lease over at once.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use janus_controller::leader::{self, LEASE_NAME, LeaseConfig, Timings};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kubesim::RunningSim;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A TCP proxy in front of kubesim that can be frozen: bytes stop flowing both ways, connections
/// stay open. To the replica behind it, the API server stalls (a partition, an overloaded server).
struct Partition {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
}

impl Partition {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let f = f.clone();
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::join!(pump(dr, uw, f.clone()), pump(ur, dw, f));
                });
            }
        });
        Self { addr, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Frozen: hold the bytes forever (the test ends first).
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A client with the chart's controller identity, optionally through `via`.
async fn controller_client(sim: &RunningSim, via: Option<&Partition>) -> kube::Client {
    let token = sa_token(sim, NS, "k8s-janus-controller").await;
    let mut yaml = sim.kubeconfig_for_token(&token);
    if let Some(p) = via {
        yaml = yaml.replace(&sim.url(), &format!("https://{}", p.addr));
    }
    let kc: kube::config::Kubeconfig = yaml_serde::from_str(&yaml).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

fn lease_cfg(identity: &str, timings: Timings) -> LeaseConfig {
    LeaseConfig {
        namespace: NS.into(),
        name: LEASE_NAME.into(),
        identity: identity.into(),
        timings,
    }
}

async fn holder(sim: &RunningSim) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(sim.client().await.unwrap(), NS);
    api.get_opt(LEASE_NAME)
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

async fn lease_spec(sim: &RunningSim) -> k8s_openapi::api::coordination::v1::LeaseSpec {
    let api: Api<Lease> = Api::namespaced(sim.client().await.unwrap(), NS);
    api.get(LEASE_NAME).await.unwrap().spec.unwrap()
}

/// Leadership intervals: (identity, start, end).
type Intervals = Arc<Mutex<Vec<(String, Instant, Option<Instant>)>>>;

/// One replica: campaigns once, leads until it loses leadership, then stops (the process would exit).
fn replica(client: kube::Client, identity: &str, timings: Timings, log: Intervals) -> tokio::task::JoinHandle<()> {
    let cfg = lease_cfg(identity, timings);
    let id = identity.to_string();
    tokio::spawn(async move {
        let mut l = leader::campaign(client, cfg).await.unwrap();
        let i = {
            let mut g = log.lock().unwrap();
            g.push((id, Instant::now(), None));
            g.len() - 1
        };
        l.lost().await;
        log.lock().unwrap()[i].2 = Some(Instant::now());
    })
}

fn assert_no_overlap(log: &Intervals) {
    let g = log.lock().unwrap();
    for (i, a) in g.iter().enumerate() {
        for b in g.iter().skip(i + 1) {
            let a_end = a.2.unwrap_or(Instant::now() + Duration::from_secs(3600));
            let b_end = b.2.unwrap_or(Instant::now() + Duration::from_secs(3600));
            assert!(
                a_end <= b.1 || b_end <= a.1,
                "{} and {} led at the same time: {:?}",
                a.0,
                b.0,
                *g
            );
        }
    }
}

const FAST: Timings = Timings {
    lease_duration: Duration::from_secs(4),
    renew_deadline: Duration::from_secs(2),
    retry_period: Duration::from_millis(250),
};

#[tokio::test]
async fn a_stalled_holder_steps_down_before_its_lease_expires_and_the_standby_waits_for_expiry() {
    let sim = central().await;
    let partition = Partition::start(sim.addr()).await;
    let log: Intervals = Default::default();
    let a = replica(controller_client(&sim, Some(&partition)).await, "a", FAST, log.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while holder(&sim).await.as_deref() != Some("a") {
        assert!(Instant::now() < deadline, "a never became leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = replica(controller_client(&sim, None).await, "b", FAST, log.clone());
    // b sees a renewing and must stay a standby.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "b took a live lease: {:?}",
        log.lock().unwrap()
    );
    let transitions_before = lease_spec(&sim).await.lease_transitions;

    // a's API calls stall from now on; its last successful renewal was sent at most one retry
    // period (plus one round trip) ago.
    let frozen_at = Instant::now();
    partition.freeze();

    let deadline = frozen_at + Duration::from_secs(20);
    while log.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "b never took over: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let g = log.lock().unwrap().clone();
    let a_end = g[0].2.expect("a must have stepped down before b took over");
    let b_start = g[1].1;
    let stepped_down_after = a_end - frozen_at;
    let took_over_after = b_start - frozen_at;
    println!("a stepped down {stepped_down_after:?} after the stall, b took over {took_over_after:?} after it");
    // Before the lease can expire from anyone's point of view (renew deadline, plus scheduling slack
    // well inside the lease duration).
    assert!(
        stepped_down_after <= FAST.renew_deadline + Duration::from_millis(500),
        "a stepped down only {stepped_down_after:?} after its API stalled"
    );
    // b waited a full lease duration from the last renewal it saw (sent at most a retry period and
    // a round trip before the stall).
    assert!(
        took_over_after >= FAST.lease_duration - FAST.retry_period - Duration::from_millis(200),
        "b took over after only {took_over_after:?}"
    );
    assert_no_overlap(&log);
    assert_eq!(holder(&sim).await.as_deref(), Some("b"));
    assert_eq!(
        lease_spec(&sim).await.lease_transitions,
        transitions_before.map(|t| t + 1),
        "a change of holder is counted"
    );
    a.abort();
    b.abort();
}

#[tokio::test]
async fn racing_candidates_never_lead_at_once() {
    // Five candidates start together against one Lease: optimistic concurrency lets one win.
    let sim = central().await;
    let log: Intervals = Default::default();
    let mut tasks = Vec::new();
    for i in 0..5 {
        tasks.push(replica(
            controller_client(&sim, None).await,
            &format!("r{i}"),
            FAST,
            log.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(log.lock().unwrap().len(), 1, "{:?}", log.lock().unwrap());
    assert_no_overlap(&log);
    assert_eq!(lease_spec(&sim).await.lease_transitions, Some(0));
    for t in tasks {
        t.abort();
    }
}

/// A controller task with leader election and the given timings; the sender stops it gracefully.
fn controller(
    sim: &RunningSim,
    client: kube::Client,
    identity: &str,
    timings: Timings,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let opts = janus_controller::Options {
        metrics_listen: None,
        identity: identity.into(),
        leader_election: true,
    };
    let task = tokio::spawn(janus_controller::run_with_timings(
        config(""),
        client,
        sim.url(),
        sim.ca_pem().to_string(),
        opts,
        timings,
        async move {
            let _ = rx.await;
        },
    ));
    (tx, task)
}

async fn wait_holder(sim: &RunningSim, who: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while holder(sim).await.as_deref() != Some(who) {
        assert!(
            started.elapsed() < within,
            "{who} does not hold the lease after {within:?} (holder: {:?})",
            holder(sim).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn graceful_shutdown_hands_the_lease_over_at_once() {
    // Production timings: without the release, the standby would wait the full 15 s lease.
    let sim = central().await;
    let timings = Timings::default();
    let (stop_a, a) = controller(&sim, controller_client(&sim, None).await, "a", timings);
    wait_holder(&sim, "a", Duration::from_secs(10)).await;
    let (_stop_b, b) = controller(&sim, controller_client(&sim, None).await, "b", timings);
    // b is a standby: give it time to observe a's lease and start watching it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(holder(&sim).await.as_deref(), Some("a"));

    let signalled = Instant::now();
    stop_a.send(()).unwrap();
    let handover = wait_holder(&sim, "b", Duration::from_secs(3)).await;
    println!("lease handed over {handover:?} after a's shutdown signal");
    let a_result = tokio::time::timeout(Duration::from_secs(5), a).await.unwrap().unwrap();
    assert!(a_result.is_ok(), "graceful shutdown is not an error: {a_result:?}");
    let spec = lease_spec(&sim).await;
    assert_eq!(spec.lease_transitions, Some(1), "a created it (0), b took it over (1)");
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert!(signalled.elapsed() < Duration::from_secs(10));
    b.abort();
}

#[tokio::test]
async fn a_controller_that_cannot_renew_stops_acting_and_exits_before_its_lease_expires() {
    let sim = central().await;
    let target = &sim;
    let partition = Partition::start(sim.addr()).await;
    let (_stop_a, a) = controller(&sim, controller_client(&sim, Some(&partition)).await, "a", FAST);
    wait_holder(&sim, "a", Duration::from_secs(10)).await;
    let (_stop_b, b) = controller(&sim, controller_client(&sim, None).await, "b", FAST);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let frozen_at = Instant::now();
    partition.freeze();
    // The whole controller stops (run returns LeadershipLost, the process exits) within the renew
    // deadline, before the lease can expire for b.
    let a_result = tokio::time::timeout(FAST.lease_duration, a)
        .await
        .expect("a still runs when its lease may already expire")
        .unwrap();
    let exited_after = frozen_at.elapsed();
    println!("a exited {exited_after:?} after its API stalled");
    let err = a_result.expect_err("losing leadership ends run with an error");
    assert!(
        err.downcast_ref::<janus_controller::LeadershipLost>().is_some(),
        "{err:#}"
    );
    assert_ne!(holder(&sim).await.as_deref(), Some("b"), "b took over before a stopped");

    // b takes over after expiry and acts: a request approved now is granted by b.
    wait_holder(&sim, "b", Duration::from_secs(10)).await;
    create(&sim, &request("after-failover", "central", &["team-a"], 600)).await;
    approve(&sim, "after-failover").await;
    wait_phase(target, "after-failover", "Active", 20).await;
    b.abort();
}

#[tokio::test]
async fn a_live_holder_with_a_skewed_clock_keeps_its_lease() {
    // The holder's clock runs an hour behind: every renewTime it writes looks an hour old. It renews
    // every 500 ms, so the standby must never take the lease, whatever the timestamps say.
    let sim = central().await;
    let admin: Api<Lease> = Api::namespaced(sim.client().await.unwrap(), NS);
    let skewed = || {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(3600),
        )
    };
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": LEASE_NAME, "namespace": NS},
        "spec": {"holderIdentity": "skewed", "leaseDurationSeconds": 4, "leaseTransitions": 0},
    }))
    .unwrap();
    admin.create(&Default::default(), &lease).await.unwrap();
    let holder_task = tokio::spawn({
        let admin = admin.clone();
        async move {
            loop {
                let mut l = admin.get(LEASE_NAME).await.unwrap();
                let spec = l.spec.as_mut().unwrap();
                spec.renew_time = Some(skewed());
                spec.acquire_time = Some(skewed());
                let _ = admin.replace(LEASE_NAME, &Default::default(), &l).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let log: Intervals = Default::default();
    let b = replica(controller_client(&sim, None).await, "b", FAST, log.clone());
    tokio::time::sleep(FAST.lease_duration * 2).await;
    assert!(
        log.lock().unwrap().is_empty(),
        "b took a lease its holder keeps renewing"
    );
    assert_eq!(holder(&sim).await.as_deref(), Some("skewed"));
    // Once the holder stops, b takes over a lease duration after it last saw a change.
    holder_task.abort();
    let stopped = Instant::now();
    wait_holder(&sim, "b", Duration::from_secs(10)).await;
    assert!(stopped.elapsed() >= FAST.lease_duration - Duration::from_millis(600));
    b.abort();
}
