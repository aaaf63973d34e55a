#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Controller latency benchmarks against kubesim (DESIGN §9): approve → Active for one request and for
//! 1,000 approved at once, expiry lag (expiresAt → credentials gone) and scheduled start lag (startAt →
//! Active), the two lags also across a restart.
//!
//! Also revoke → token refused one request at a time (`revoke`), and the controller's API calls per
//! approval and per revocation, counted by a layer on the controller's own client.
//!
//! Run: `cargo bench -p janus-controller --bench lifecycle` (needs .tools/bin/helm for the chart RBAC).
//! `JANUS_BENCH_PARTS=bulk,scheduled` runs only the named parts (`seq`, `revoke`, `bulk`, `expiry`,
//! `scheduled`; all by default, always in that order). With `BENCH_JSON=<path>` the figures are also
//! written there as the benchmark tool's JSON list (`scripts/bench.sh lifecycle`).

#[path = "../tests/calls/mod.rs"]
mod calls;
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use calls::{Calls, Ctl, per_run};
use common::*;
use futures::StreamExt;
use janus_api::AccessRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

/// The figures for `BENCH_JSON`, in the benchmark tool's shape (scripts/bench.sh).
#[derive(Default)]
struct Figures(Vec<serde_json::Value>);

impl Figures {
    fn add(&mut self, figure: &str, unit: &str, value: f64, target: &str, pass: bool) {
        // Two decimals are all these figures carry.
        let value = (value * 100.0).round() / 100.0;
        self.0.push(json!({
            "part": "lifecycle", "figure": figure, "unit": unit, "value": value, "target": target, "pass": pass,
        }));
    }

    fn write(&self) {
        if let Ok(path) = std::env::var("BENCH_JSON") {
            std::fs::write(&path, serde_json::to_vec_pretty(&self.0).expect("json")).expect("write BENCH_JSON");
            eprintln!("figures written to {path}");
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn wait_all(api: &Api<AccessRequest>, prefix: &str, n: usize, phase_want: &str) -> HashMap<String, Instant> {
    // Watch from now and stamp each request when it first reaches the phase.
    let mut seen = HashMap::new();
    let list = api.list(&ListParams::default()).await.expect("list");
    for ar in &list.items {
        let name = ar.metadata.name.clone().unwrap_or_default();
        if name.starts_with(prefix) && phase(ar) == phase_want {
            seen.insert(name, Instant::now());
        }
    }
    let rv = list.metadata.resource_version.unwrap_or_default();
    let mut stream = Box::pin(
        api.watch(&WatchParams::default().timeout(290), &rv)
            .await
            .expect("watch"),
    );
    while seen.len() < n {
        match stream.next().await {
            Some(Ok(WatchEvent::Modified(ar) | WatchEvent::Added(ar))) => {
                let name = ar.metadata.name.clone().unwrap_or_default();
                if name.starts_with(prefix) && phase(&ar) == phase_want {
                    seen.entry(name).or_insert_with(Instant::now);
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    seen
}

/// Whether `JANUS_BENCH_PARTS` (comma-separated) names this part; without it every part runs.
fn part(name: &str) -> bool {
    match std::env::var("JANUS_BENCH_PARTS") {
        Ok(v) => v.split(',').any(|p| p.trim() == name),
        Err(_) => true,
    }
}

/// What one scheduled run measured.
struct Scheduled {
    /// Due (startAt, or the restart if later) → the watch sees Active, one per request.
    lags: Vec<Duration>,
    /// Requests seen Active before they were due (a controller bug if ever non-zero).
    early: usize,
    /// Requests still not Scheduled when the first startAt came (their lag includes their approval).
    late_scheduled: usize,
    /// Other requests Active while these came due.
    others_active: usize,
    /// The controller running at the end (the restarted one, if there was a restart).
    ctl: Option<Ctl>,
}

/// Scheduled start lag: `count` requests under the default policy with `spec.startAt` spread over 10 s
/// from 15 s ahead, approved ahead so that they wait as Scheduled; each is stamped when the watch
/// first shows it Active. With `restart`, the controller is stopped 5 s before the first startAt and
/// started 5 s after it; a request is then due at max(startAt, restart).
async fn run_scheduled(
    sim: &kubesim::RunningSim,
    api: &Api<AccessRequest>,
    prefix: &str,
    count: usize,
    ctl: Option<Ctl>,
    restart: bool,
    calls: &Calls,
) -> Scheduled {
    // startAt is wall-clock time, the watch stamps are Instants: one offset between the two, taken
    // once, converts every startAt.
    let (u0, i0) = (chrono::Utc::now(), Instant::now());
    let at = |t: chrono::DateTime<chrono::Utc>| match (t - u0).to_std() {
        Ok(ahead) => i0 + ahead,
        Err(_) => i0 - (u0 - t).to_std().unwrap_or_default(),
    };
    let first = u0 + chrono::Duration::seconds(15);
    let spread_ms = 10_000 / count.max(1) as i64;
    let mut starts = HashMap::new();
    let mut creates = Vec::new();
    for i in 0..count {
        let name = format!("{prefix}{i}");
        // As the web writes it (RFC 3339 with milliseconds); read back so that the instant compared
        // is exactly the one the controller parses.
        let text =
            janus_api::rules::time::fmt_time_millis(first + chrono::Duration::milliseconds(spread_ms * i as i64));
        let start = janus_controller::lifecycle::parse_time(&text).expect("startAt");
        starts.insert(name.clone(), start);
        let mut ar = request(&name, "central", &["team-a"], 3600);
        ar.spec.start_at = Some(text);
        let api = api.clone();
        creates.push(tokio::spawn(async move {
            api.create(&PostParams::default(), &ar)
                .await
                .expect("create scheduled request");
        }));
    }
    for c in creates {
        c.await.expect("create");
    }
    // Both phases are watched from before the approvals, so no transition is missed.
    let mut scheduled_waiter = {
        let api = api.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move { wait_all(&api, &prefix, count, "Scheduled").await })
    };
    let active_waiter = {
        let api = api.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move { wait_all(&api, &prefix, count, "Active").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut approvals = Vec::new();
    for i in 0..count {
        let api = api.clone();
        let name = format!("{prefix}{i}");
        approvals.push(tokio::spawn(async move {
            let p = json!({"spec": {"approval": {"by": "admin@example.com", "at": now()}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&p))
                .await
                .expect("approve");
        }));
    }
    for a in approvals {
        a.await.expect("approval");
    }
    let first_due = at(first);
    // A request the controller had not yet made Scheduled when the first startAt came would count its
    // approval in its lag; the waiter gives up at that moment and the report says how many there were.
    let scheduled = tokio::time::timeout(
        first_due.saturating_duration_since(Instant::now()),
        &mut scheduled_waiter,
    )
    .await
    .map(|r| r.expect("waiter"))
    .unwrap_or_default();
    scheduled_waiter.abort();
    let late_scheduled = count - scheduled.len();
    if let Some(last) = scheduled.values().max() {
        eprintln!(
            "[{prefix}] {} Scheduled, the last {:.2?} before the first startAt",
            scheduled.len(),
            first_due.saturating_duration_since(*last)
        );
    }
    let others_active = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .filter(|ar| phase(ar) == "Active" && !ar.metadata.name.as_deref().unwrap_or_default().starts_with(prefix))
        .count();
    let mut ctl = ctl;
    let mut restarted_at = None;
    if restart {
        tokio::time::sleep_until((first_due - Duration::from_secs(5)).into()).await;
        if let Some(c) = ctl.take() {
            c.stop().await;
        }
        eprintln!("[{prefix}] controller stopped");
        tokio::time::sleep_until((first_due + Duration::from_secs(5)).into()).await;
        restarted_at = Some(Instant::now());
        eprintln!("[{prefix}] restarting the controller at {}", chrono::Utc::now());
        ctl = Some(Ctl::start(sim, config("maxTtlSeconds: 28800\n"), None, calls).await);
    }
    eprintln!("[{prefix}] waiting for Active");
    let active = active_waiter.await.expect("waiter");
    assert_eq!(active.len(), count, "[{prefix}] not all Active");
    let mut lags = Vec::new();
    let mut early = 0;
    for (name, seen) in &active {
        let due = at(starts[name]).max(restarted_at.unwrap_or(i0));
        match seen.checked_duration_since(due) {
            Some(lag) => lags.push(lag),
            None => early += 1,
        }
    }
    Scheduled {
        lags,
        early,
        late_scheduled,
        others_active,
        ctl,
    }
}

#[tokio::main]
async fn main() {
    if let Ok(filter) = std::env::var("JANUS_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let sim = central().await;
    let admin = sim.client().await.expect("client");
    let api: Api<AccessRequest> = Api::all(admin.clone());
    let pp = PatchParams::default();
    let calls = Calls::default();
    let mut figs = Figures::default();
    let mut ctl = Some(Ctl::start(&sim, config("maxTtlSeconds: 28800\n"), Some("127.0.0.1:19191"), &calls).await);

    if part("seq") {
        // 1. One request at a time: one namespace (n=50), then three namespaces (n=20).
        // The approvals are written and the phases watched through one admin client and one watch that
        // stay open, as the web's do: until 2026-12-07 each approval made a new client (a TLS handshake)
        // and a new watch, and their cost on the shared cores was counted in approve → Active.
        let rv = api
            .list(&ListParams::default().limit(1))
            .await
            .expect("list")
            .metadata
            .resource_version
            .expect("list resourceVersion");
        let mut w = Box::pin(
            api.watch(&WatchParams::default().timeout(290), &rv)
                .await
                .expect("watch"),
        );
        for (namespaces, n) in [(&["team-a"][..], 50), (&["team-a", "team-b", "team-c"][..], 20)] {
            let k = namespaces.len();
            let (mut one, mut to_first_call) = (Vec::new(), Vec::new());
            let (mut until_active, mut settled) = (Vec::new(), Vec::new());
            for i in 0..n {
                let name = format!("seq{k}-{i}");
                create(&sim, &request(&name, "central", namespaces, 600)).await;
                wait_phase(&sim, &name, "Pending", 10).await;
                // The Pending reconcile's own Events settle before counting.
                tokio::time::sleep(Duration::from_millis(30)).await;
                let before = calls.len();
                let t = Instant::now();
                let approval = json!({"spec": {"approval": {"by": "admin@example.com", "at": now()}}});
                api.patch(&name, &pp, &Patch::Merge(&approval)).await.expect("approve");
                loop {
                    match w.next().await {
                        Some(Ok(WatchEvent::Modified(ar) | WatchEvent::Added(ar)))
                            if ar.metadata.name.as_deref() == Some(name.as_str()) && phase(&ar) == "Active" =>
                        {
                            break;
                        }
                        Some(Ok(WatchEvent::Error(e))) => panic!("{name}: watch error {e:?}"),
                        Some(Ok(_)) => {}
                        other => panic!("{name}: the watch ended before Active: {other:?}"),
                    }
                }
                one.push(t.elapsed());
                // Where the time went: until the controller's first call, and each call's send time.
                let sent: Vec<_> = calls
                    .since(before)
                    .into_iter()
                    .filter(|c| !c.kind.ends_with(" events"))
                    .collect();
                if let Some(first) = sent.first() {
                    to_first_call.push(first.at.saturating_duration_since(t));
                }
                if i == n / 2 {
                    let steps: Vec<String> = sent
                        .iter()
                        .map(|c| format!("{:.1} {}", ms(c.at.saturating_duration_since(t)), c.kind))
                        .collect();
                    eprintln!("  one approval ({name}), ms after the approval: {}", steps.join(", "));
                }
                until_active.push(calls.counted_since(before));
                // Background Events and the echo of the last status write.
                tokio::time::sleep(Duration::from_millis(30)).await;
                settled.push(calls.counted_since(before));
            }
            let (p50, p99) = (pct(&mut one, 0.5), pct(&mut one, 0.99));
            println!("approve -> Active, one request, {k} namespace(s) (n={n}): p50 {p50:.2?} p99 {p99:.2?}");
            println!(
                "  approve -> the controller's first call: p50 {:.2?}",
                pct(&mut to_first_call, 0.5)
            );
            let (calls_active, detail) = per_run(&until_active);
            println!("  controller API calls per approval until Active: {calls_active:.2} ({detail})");
            let (calls_all, detail) = per_run(&settled);
            println!("  controller API calls per approval, with background Events: {calls_all:.2} ({detail})");
            let what = if k == 1 {
                "one namespace".to_string()
            } else {
                format!("{k} namespaces")
            };
            figs.add(
                &format!(
                    "approve → Active p50, one request at a time ({what}, n={n}, controller and kubesim in one process)"
                ),
                "ms",
                ms(p50),
                "≤ 5",
                ms(p50) <= 5.0,
            );
            figs.add(
                &format!("approve → Active p99, one request at a time ({what}, n={n})"),
                "ms",
                ms(p99),
                "< 20",
                ms(p99) < 20.0,
            );
            figs.add(
                &format!("controller API calls per approval until Active ({what}; background Events not counted)"),
                "count",
                calls_active,
                "< 9",
                calls_active < 9.0,
            );
        }
    }

    if part("revoke") {
        // 2. Revoke → token refused, one request at a time: an Active request is revoked as the web does
        // it (a merge patch of spec.revocation) and its token is tried every millisecond until the API
        // server refuses it (403 once the RoleBinding is gone, 401 once the ServiceAccount is).
        let n = 50;
        let (mut lat, mut to_first_delete) = (Vec::new(), Vec::new());
        let (mut until_refused, mut settled) = (Vec::new(), Vec::new());
        for i in 0..n {
            let name = format!("rvk-{i}");
            create(&sim, &request(&name, "central", &["team-a"], 600)).await;
            wait_phase(&sim, &name, "Pending", 10).await;
            approve(&sim, &name).await;
            wait_phase(&sim, &name, "Active", 10).await;
            let token = tokens(&sim, &name).await.pop().expect("token Secret").1;
            let pods: Api<k8s_openapi::api::core::v1::Pod> =
                Api::namespaced(sim.client_for_token(&token).await.expect("client"), "team-a");
            let lp = ListParams::default().limit(1);
            pods.list(&lp).await.expect("the token works before the revocation");
            tokio::time::sleep(Duration::from_millis(30)).await;
            let before = calls.len();
            let t = Instant::now();
            let p = json!({"spec": {"revocation": {"by": "admin@example.com", "at": now(), "reason": "bench"}}});
            api.patch(&name, &pp, &Patch::Merge(&p)).await.expect("revoke");
            // Tried every millisecond on the bench's runtime, which it shares with the controller and
            // kubesim: an attempt can wait behind their work, so this figure is an upper bound (the
            // first RoleBinding DELETE is reported beside it).
            let refused_at = loop {
                match pods.list(&lp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 401 || s.code == 403 => break Instant::now(),
                    Err(e) => panic!("{name}: unexpected answer to the revoked token: {e}"),
                }
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "{name}: token still accepted 10 s after the revocation"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            let first_cut = calls
                .since(before)
                .iter()
                .find(|c| c.kind == "delete rolebindings")
                .map(|c| c.at.saturating_duration_since(t));
            to_first_delete.push(first_cut.unwrap_or_default());
            lat.push(refused_at.saturating_duration_since(t));
            until_refused.push(calls.counted_before(before, refused_at));
            wait_phase(&sim, &name, "Revoked", 10).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            settled.push(calls.counted_since(before));
        }
        let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
        println!("revoke -> token refused, one request (n={n}): p50 {p50:.2?} p99 {p99:.2?}");
        println!(
            "  revoke -> the controller sends its first RoleBinding DELETE: p50 {:.2?} p99 {:.2?}",
            pct(&mut to_first_delete, 0.5),
            pct(&mut to_first_delete, 0.99)
        );
        let (c, detail) = per_run(&until_refused);
        println!("  controller API calls per revocation until refused: {c:.2} ({detail})");
        let (c_all, detail) = per_run(&settled);
        println!("  controller API calls per revocation until Revoked, with Events: {c_all:.2} ({detail})");
        figs.add(
            &format!("revoke → token refused p50, one request at a time (n={n}; the token is tried every 1 ms)"),
            "ms",
            ms(p50),
            "≤ 5",
            ms(p50) <= 5.0,
        );
        figs.add(
            &format!("revoke → token refused p99, one request at a time (n={n})"),
            "ms",
            ms(p99),
            "< 20",
            ms(p99) < 20.0,
        );
    }

    if part("bulk") {
        // 2. 1,000 approved at once (BENCH_BULK overrides the count).
        let n: usize = std::env::var("BENCH_BULK")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        for i in 0..n {
            create(&sim, &request(&format!("bulk-{i}"), "central", &["team-b"], 28000)).await;
        }
        let waiter = {
            let api = api.clone();
            tokio::spawn(async move { wait_all(&api, "bulk-", n, "Active").await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = calls.len();
        let t0 = Instant::now();
        let mut approvals = Vec::new();
        for i in 0..n {
            let api = api.clone();
            let pp = pp.clone();
            approvals.push(tokio::spawn(async move {
                let p = json!({"spec": {"approval": {"by": "admin@example.com", "at": now()}}});
                api.patch(&format!("bulk-{i}"), &pp, &Patch::Merge(&p))
                    .await
                    .expect("approve");
            }));
        }
        for a in approvals {
            a.await.expect("approval");
        }
        let approved_in = t0.elapsed();
        let seen = wait_all(&api, "bulk-", n, "Active").await;
        let waited = waiter.await.expect("waiter");
        let last = waited.values().chain(seen.values()).max().copied().unwrap_or(t0);
        let all_active = last - t0;
        let during = calls.counted_since(before);
        println!(
            "{n} approvals written in {approved_in:.2?}; all {n} Active {all_active:.2?} after the first approval"
        );
        let (c, detail) = per_run(&[during]);
        println!("  controller API calls until all Active: {c} ({detail})");
        figs.add(
            &format!(
                "{n} approvals at once on ONE cluster → all Active (single-cluster run; the issue's < 1.5 s target is for the 50-cluster fleet, DESIGN §9's one-cluster target is < 3 s)"
            ),
            "s",
            all_active.as_secs_f64(),
            "< 3",
            all_active < Duration::from_secs(3),
        );
        let reconciles = || async {
            let out = tokio::process::Command::new("curl")
                .args(["-s", "http://127.0.0.1:19191/metrics"])
                .output()
                .await;
            let body = out
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            body.lines()
                .filter(|l| l.starts_with("janus_reconciles_total") || l.starts_with("janus_reconcile_errors"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        eprintln!("after bulk: {}", reconciles().await);
        tokio::time::sleep(Duration::from_secs(10)).await;
        eprintln!("10 s later: {}", reconciles().await);
    }

    if part("expiry") {
        // 3. Expiry lag: credentials gone vs status.expiresAt, measured from ServiceAccount DELETED events.
        let sas: Api<ServiceAccount> = Api::all(admin.clone());
        let lag_of = |expires: &HashMap<String, chrono::DateTime<chrono::Utc>>,
                      gone: &HashMap<String, chrono::DateTime<chrono::Utc>>| {
            let mut v: Vec<Duration> = gone
                .iter()
                .filter_map(|(k, g)| expires.get(k).map(|e| (*g - *e).to_std().unwrap_or_default()))
                .collect();
            (pct(&mut v, 0.5), pct(&mut v, 0.99), v.len())
        };
        #[allow(
            clippy::too_many_arguments,
            reason = "one bench scenario's knobs; a struct would only rename them"
        )]
        async fn run_expiry(
            sim: &kubesim::RunningSim,
            api: &Api<AccessRequest>,
            sas: &Api<ServiceAccount>,
            prefix: &str,
            count: usize,
            ttl: i64,
            restart: Option<(Ctl, Duration)>,
            calls: &Calls,
        ) -> (
            HashMap<String, chrono::DateTime<chrono::Utc>>,
            HashMap<String, chrono::DateTime<chrono::Utc>>,
            Option<Ctl>,
        ) {
            for i in 0..count {
                create(sim, &request(&format!("{prefix}{i}"), "central", &["team-c"], ttl)).await;
            }
            // Deletions are watched from before the approvals, so none can be missed however slow we are.
            let sa_rv = sas
                .list(&ListParams::default().limit(1))
                .await
                .expect("list")
                .metadata
                .resource_version
                .unwrap_or_default();
            let waiter = {
                let api = api.clone();
                let prefix = prefix.to_string();
                tokio::spawn(async move { wait_all(&api, &prefix, count, "Active").await })
            };
            tokio::time::sleep(Duration::from_millis(300)).await;
            for i in 0..count {
                approve(sim, &format!("{prefix}{i}")).await;
            }
            eprintln!("[{prefix}] approvals written, waiting for Active");
            let active = waiter.await.expect("waiter");
            eprintln!("[{prefix}] {} Active", active.len());
            assert_eq!(active.len(), count);
            let mut expires = HashMap::new();
            for i in 0..count {
                let ar = get(sim, &format!("{prefix}{i}")).await.expect("request");
                let e = ar
                    .status
                    .and_then(|s| s.expires_at)
                    .and_then(|e| janus_controller::lifecycle::parse_time(&e))
                    .expect("expiresAt");
                expires.insert(format!("{prefix}{i}"), e);
            }
            let mut w = Box::pin(
                sas.watch(
                    &WatchParams::default().labels(janus_api::REQUEST_LABEL).timeout(290),
                    &sa_rv,
                )
                .await
                .expect("watch"),
            );
            let mut restarted = None;
            if let Some((ctl, down)) = restart {
                ctl.stop().await;
                tokio::time::sleep(down).await;
                // From here on, "due" means max(expiresAt, restart time).
                let started = chrono::Utc::now();
                eprintln!("[{prefix}] restarting the controller at {started}");
                for e in expires.values_mut() {
                    *e = (*e).max(started);
                }
                restarted = Some(Ctl::start(sim, config("maxTtlSeconds: 28800\n"), None, calls).await);
            }
            let mut gone = HashMap::new();
            eprintln!("[{prefix}] waiting for credentials to go");
            let mut last_progress = Instant::now();
            let mut last_len = 0;
            while gone.len() < count {
                if gone.len() != last_len {
                    last_len = gone.len();
                    last_progress = Instant::now();
                } else if last_progress.elapsed() > Duration::from_secs(20) {
                    let ar = get(sim, &format!("{prefix}0")).await;
                    let left = sas
                        .list(&ListParams::default().labels(janus_api::REQUEST_LABEL))
                        .await
                        .map(|l| l.items.len());
                    eprintln!(
                        "[{prefix}] stalled with {} gone; {prefix}0 = {:?}; labelled SAs left: {left:?}",
                        gone.len(),
                        ar.and_then(|a| a.status).map(|s| (s.phase, s.message, s.expires_at))
                    );
                    last_progress = Instant::now();
                }
                let next = w.next().await;
                match next {
                    Some(Ok(WatchEvent::Deleted(sa))) => {
                        let req = sa
                            .metadata
                            .labels
                            .unwrap_or_default()
                            .get(janus_api::REQUEST_LABEL)
                            .cloned()
                            .unwrap_or_default();
                        if req.starts_with(prefix) {
                            gone.entry(req).or_insert_with(chrono::Utc::now);
                        }
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            (expires, gone, restarted)
        }
        let (e, g, _) = run_expiry(&sim, &api, &sas, "exp-", 200, 8, None, &calls).await;
        let (p50, p99, k) = lag_of(&e, &g);
        println!("expiry lag (n={k}, TTL 8 s): p50 {p50:.2?} p99 {p99:.2?}");
        figs.add(
            &format!(
                "expiry lag p99 (expiresAt → ServiceAccount deleted), {k} grants on one cluster expiring within about a second, other requests Active meanwhile"
            ),
            "ms",
            ms(p99),
            "< 250",
            ms(p99) < 250.0,
        );
        // Across a restart: the controller is down when the expiries come due and starts 10 s later; the
        // lag counted from the restart shows how fast a fresh controller catches up.
        let (e, g, restarted) = run_expiry(
            &sim,
            &api,
            &sas,
            "rst-",
            200,
            8,
            Some((ctl.take().expect("controller"), Duration::from_secs(10))),
            &calls,
        )
        .await;
        let (p50, p99, k) = lag_of(&e, &g);
        println!(
            "expiry lag across a restart (n={k}, TTL 8 s, controller down for 10 s, lag counted from max(expiresAt, restart)): p50 {p50:.2?} p99 {p99:.2?}"
        );
        figs.add(
            &format!(
                "expiry lag p99 across a controller restart ({k} grants overdue when it starts; counted from max(expiresAt, restart))"
            ),
            "ms",
            ms(p99),
            "< 1000",
            ms(p99) < 1000.0,
        );
        ctl = restarted;
    }

    // 4. Scheduled start lag: approved ahead, Scheduled until spec.startAt, then Active (issue 15). Placed
    // after the expiry parts so that the ~1,050 requests of parts 1 and 2 are Active meanwhile, as they are
    // while the expiries come due, and the expiry figures stay comparable with earlier runs.
    if part("scheduled") {
        let report = |what: &str, s: &mut Scheduled| {
            println!(
                "{what} (n={}, startAt spread over 10 s from 15 s ahead, {} other requests Active): p50 {:.2?} p99 {:.2?} max {:.2?}; {} Active before due, {} not yet Scheduled at the first startAt",
                s.lags.len(),
                s.others_active,
                pct(&mut s.lags, 0.5),
                pct(&mut s.lags, 0.99),
                pct(&mut s.lags, 1.0),
                s.early,
                s.late_scheduled
            );
        };
        let mut s = run_scheduled(&sim, &api, "sch-", 200, ctl.take(), false, &calls).await;
        report("scheduled start lag, startAt -> Active", &mut s);
        // Across a restart: the controller stops 5 s before the first startAt and starts 5 s after it, so
        // about half are overdue when it starts; counted from max(startAt, restart) as for expiry.
        let mut s = run_scheduled(&sim, &api, "srs-", 200, s.ctl.take(), true, &calls).await;
        report(
            "scheduled start lag across a restart (controller down from 5 s before the first startAt to 5 s after; counted from max(startAt, restart))",
            &mut s,
        );
        ctl = s.ctl.take();
    }
    if let Some(c) = ctl {
        c.stop().await;
    }
    figs.write();
}
