#![allow(clippy::unwrap_used, clippy::expect_used)]
//! kubesim's request throughput and watch fan-out, so we know it is never the bottleneck when measuring janus.
//!
//! Run: `cargo bench -p kubesim --bench throughput` (numbers go to docs/benchmarks.md by hand, with the machine).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sim = kubesim::SimBuilder::new().start().await?;
    let client = sim.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // 1. Creates then gets from 32 concurrent tasks over one HTTP/2 client.
    let tasks = 32;
    let per_task = 100;
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let cms = cms.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task * 2);
            for i in 0..per_task {
                let name = format!("b-{t}-{i}");
                let cm: ConfigMap =
                    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).expect("valid");
                let s = Instant::now();
                cms.create(&PostParams::default(), &cm).await.expect("create");
                lat.push(s.elapsed());
                let s = Instant::now();
                cms.get(&name).await.expect("get");
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await?);
    }
    let total = start.elapsed();
    lat.sort();
    println!(
        "requests: {} in {:.2?} = {:.0} req/s; latency p50 {:.2?} p99 {:.2?}",
        lat.len(),
        total,
        lat.len() as f64 / total.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );

    // 2. Watch fan-out: 100 watchers, 500 creates; time until every watcher saw every event.
    let watchers = 100;
    let events = 500;
    let seen = Arc::new(AtomicUsize::new(0));
    let rv = sim.cluster.store.current_rv().to_string();
    let mut ws = Vec::new();
    for _ in 0..watchers {
        let cms = cms.clone();
        let seen = seen.clone();
        let rv = rv.clone();
        let stream = cms.watch(&WatchParams::default().labels("bench=fanout"), &rv).await?;
        ws.push(tokio::spawn(async move {
            let mut s = std::pin::pin!(stream);
            let mut n = 0;
            while let Some(ev) = s.next().await {
                if let Ok(WatchEvent::Added(_)) = ev {
                    n += 1;
                    seen.fetch_add(1, Ordering::Relaxed);
                    if n == events {
                        return;
                    }
                }
            }
        }));
    }
    let start = Instant::now();
    for i in 0..events {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("f-{i}"), "labels": {"bench": "fanout"}}}))?;
        cms.create(&PostParams::default(), &cm).await?;
    }
    for w in ws {
        tokio::time::timeout(Duration::from_secs(120), w).await??;
    }
    let total = start.elapsed();
    println!(
        "watch fan-out: {} events x {} watchers = {} deliveries in {:.2?} ({:.0} deliveries/s)",
        events,
        watchers,
        seen.load(Ordering::Relaxed),
        total,
        seen.load(Ordering::Relaxed) as f64 / total.as_secs_f64()
    );
    Ok(())
}
