//! Remote clusters in trouble (issue 19). Back after an outage: the requests that waited for it say why
//! while it is down and are granted promptly when it answers again, not after their backoff (which has
//! grown to 16 s after 15 s of failures, and to a minute after a long outage). Slow: its requests hold
//! only its share of the controller's reconcile slots, so other clusters' requests do not wait behind it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use janus_testkit::kubesim_only;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

#[tokio::test]
async fn requests_waiting_for_a_remote_cluster_are_granted_soon_after_it_returns() {
    if kubesim_only(
        "requests_waiting_for_a_remote_cluster_are_granted_soon_after_it_returns",
        "takes a second cluster down and up again (fault injection)",
    ) {
        return;
    }
    let sim = central().await;
    let remote = remote().await;
    let agent_token = sa_token(&remote, NS, "k8s-janus-agent").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "remote-kubeconfig", "namespace": NS, "labels": {"k8s-janus.opsmode.io/cluster": "remote"}},
        "stringData": {"kubeconfig": remote.kubeconfig_for_token(&agent_token)}
    }))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(sim.client().await.unwrap(), NS);
    secrets.create(&Default::default(), &secret).await.unwrap();
    let cfg = config("clusters: [{name: central}, {name: remote}]\n");
    let _ctl = Controller::start(&sim, cfg).await;
    // The controller is up (its start-up check of the clusters is done) before the remote is hurt.
    create(&sim, &request("warm", "remote", &["team-a"], 600)).await;
    approve(&sim, "warm").await;
    wait_phase(&sim, "warm", "Active", 20).await;

    remote.cluster.faults.set(kubesim::faults::FaultConfig {
        unavailable: true,
        ..Default::default()
    });
    create(&sim, &request("down", "remote", &["team-b"], 600)).await;
    approve(&sim, "down").await;
    // Long enough for several failed attempts: the backoff doubles from 0.5 s.
    tokio::time::sleep(Duration::from_secs(17)).await;
    let waiting = get(&sim, "down").await.unwrap();
    let st = waiting.status.clone().unwrap();
    assert_ne!(phase(&waiting), "Active");
    assert!(
        st.conditions
            .iter()
            .any(|c| c.type_ == "ClusterReachable" && c.status == "False" && c.message.contains("cluster remote")),
        "the waiting request does not say that it waits for cluster remote: {st:?}"
    );

    remote.cluster.faults.clear();
    let back = Instant::now();
    // The promise is about a probe interval (0.5 s) plus the grant; 5 s leaves room for a busy machine
    // and is far below the 16 s the backoff alone would take.
    let bound = Duration::from_secs(5);
    loop {
        let ar = get(&sim, "down").await.unwrap();
        if phase(&ar) == "Active" {
            break;
        }
        assert!(
            back.elapsed() < bound,
            "not Active {:?} after the cluster came back: {:?}",
            back.elapsed(),
            ar.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("Active {:?} after the cluster came back", back.elapsed());
}

#[tokio::test]
async fn a_slow_remote_cluster_does_not_hold_up_the_others() {
    if kubesim_only(
        "a_slow_remote_cluster_does_not_hold_up_the_others",
        "slows a second cluster down (fault injection)",
    ) {
        return;
    }
    let sim = central().await;
    let remote = remote().await;
    let agent_token = sa_token(&remote, NS, "k8s-janus-agent").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "remote-kubeconfig", "namespace": NS, "labels": {"k8s-janus.opsmode.io/cluster": "remote"}},
        "stringData": {"kubeconfig": remote.kubeconfig_for_token(&agent_token)}
    }))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(sim.client().await.unwrap(), NS);
    secrets.create(&Default::default(), &secret).await.unwrap();
    let cfg = config("clusters: [{name: central}, {name: remote}]\n");
    let _ctl = Controller::start(&sim, cfg).await;
    // The controller is up (its start-up check of the clusters is done) before the remote is hurt.
    create(&sim, &request("warm", "remote", &["team-a"], 600)).await;
    approve(&sim, "warm").await;
    wait_phase(&sim, "warm", "Active", 20).await;

    // Every API call on the remote takes 3 s: a grant there takes several of them.
    remote.cluster.faults.set(kubesim::faults::FaultConfig {
        latency_ms: 3000,
        ..Default::default()
    });
    // More requests on the slow cluster than the controller reconciles at once.
    let slow: Vec<String> = (0..80).map(|i| format!("slow-{i}")).collect();
    let reqs: Vec<_> = slow.iter().map(|n| request(n, "remote", &["team-b"], 600)).collect();
    futures::future::join_all(reqs.iter().map(|r| create(&sim, r))).await;
    futures::future::join_all(slow.iter().map(|n| approve(&sim, n))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    create(&sim, &request("quick", "central", &["team-a"], 600)).await;
    approve(&sim, "quick").await;
    let approved = Instant::now();
    // Without a bound per cluster, "quick" waits until the slow cluster's reconciles end (12 s and
    // more); 5 s leaves room for a busy machine.
    let bound = Duration::from_secs(5);
    loop {
        let ar = get(&sim, "quick").await.unwrap();
        if phase(&ar) == "Active" {
            break;
        }
        assert!(
            approved.elapsed() < bound,
            "the central request is not Active {:?} after its approval while a slow cluster's requests are in flight: {:?}",
            approved.elapsed(),
            ar.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("central request Active {:?} after its approval", approved.elapsed());
    remote.cluster.faults.clear();
}
