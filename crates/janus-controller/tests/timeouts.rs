#![allow(clippy::unwrap_used, clippy::expect_used)]
//! API client timeouts against kubesim: a stalled API server fails a call instead of hanging it, and
//! a quiet watch keeps working although it is silent for longer than the read timeout.

use std::time::Duration;

use futures::StreamExt as _;
use janus_controller::clusters::{Timeouts, bounded_client, handle_from_kubeconfig};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::watcher;
use kubesim::SimBuilder;
use kubesim::faults::FaultConfig;
use tokio::time::Instant;

async fn admin_config(sim: &kubesim::RunningSim) -> kube::Config {
    let kc: kube::config::Kubeconfig = yaml_serde::from_str(&sim.kubeconfig_yaml()).unwrap();
    kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap()
}

const SHORT: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    read: Duration::from_secs(2),
    write: Duration::from_secs(2),
    watch: Duration::from_secs(1),
};

fn stall_configmaps(sim: &kubesim::RunningSim) {
    sim.cluster.faults.set(FaultConfig {
        latency_ms: 600_000,
        path_contains: "/configmaps".into(),
        ..Default::default()
    });
}

#[tokio::test]
async fn a_stalled_call_fails_with_a_timeout() {
    let sim = SimBuilder::new().start().await.unwrap();
    let client = bounded_client(admin_config(&sim).await, SHORT).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    // A pooled connection that sat idle first must not count against the timeout of the next call.
    api.get_opt("warm-up").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        api.get_opt("idle-pool").await.is_ok(),
        "an idle pooled connection timed out"
    );

    stall_configmaps(&sim);
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), api.get_opt("stalled"))
        .await
        .expect("the call hangs: no read timeout");
    let took = started.elapsed();
    let err = r.expect_err("a stalled call must fail");
    println!("stalled call failed after {took:?}: {err}");
    assert!(took >= SHORT.read, "failed before the read timeout: {took:?}");
    assert!(
        format!("{err:?}").to_lowercase().contains("timed out") || format!("{err:?}").contains("TimedOut"),
        "{err:?}"
    );
}

#[tokio::test]
async fn remote_cluster_clients_have_the_production_read_timeout() {
    let sim = SimBuilder::new().start().await.unwrap();
    let handle = handle_from_kubeconfig("remote", &sim.kubeconfig_yaml()).await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(handle.client, "default");
    stall_configmaps(&sim);
    let started = Instant::now();
    let r = tokio::time::timeout(
        Timeouts::default().read + Duration::from_secs(15),
        api.get_opt("stalled"),
    )
    .await
    .expect("a call to a stalled remote cluster hangs: no read timeout");
    println!("stalled remote call failed after {:?}", started.elapsed());
    assert!(r.is_err());
}

#[tokio::test]
async fn a_quiet_watch_outlives_the_read_timeout() {
    let sim = SimBuilder::new().start().await.unwrap();
    let client = bounded_client(admin_config(&sim).await, SHORT).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // Nothing happens in "default" for three read timeouts: the watch is silent all along. Without
    // bookmarks, which a real API server sends about once a minute (beyond the production read
    // timeout) and kubesim every 2 s.
    let quiet = watcher::Config::default().disable_bookmarks();
    let events = watcher(api, quiet.clone())
        .take_until(tokio::time::sleep(SHORT.read * 3))
        .collect::<Vec<_>>()
        .await;
    let errors: Vec<String> = events
        .iter()
        .filter_map(|e| e.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(errors.is_empty(), "the quiet watch broke: {errors:?}");
    // And it still delivers: a change after the quiet spell arrives.
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut stream = watcher(api.clone(), quiet).boxed();
    while let Some(ev) = stream.next().await {
        if matches!(ev.unwrap(), watcher::Event::InitDone) {
            break;
        }
    }
    tokio::time::sleep(SHORT.read * 2).await;
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "late"}})).unwrap();
    api.create(&Default::default(), &cm).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = stream.next().await {
            if let watcher::Event::Apply(cm) = ev.expect("no watch error") {
                return cm.metadata.name;
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(seen.as_deref(), Some("late"));
}
