//! End-to-end lifecycles with RBAC enforced: grant, use, expire, revoke, withdraw, deny, delete,
//! extend, validation, races and remote clusters.
//!
//! Portable: most tests run on a [`janus_testkit::TestCluster`] (kubesim by default; the cluster in
//! KUBECONFIG with `JANUS_TEST_CLUSTER=kubeconfig`, see scripts/test-real-cluster.sh), seeded through
//! the API. Kubesim-only, and skipped with a printed reason on a real cluster: the finalizer test (a
//! short token leeway), the slow grant (fault injection) and the remote cluster (a second cluster and
//! its outage). On a real cluster the tests share one cluster, so they run one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use janus_testkit::kubesim_only;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, AttachParams, DeleteParams, ListParams, LogParams};
use serde_json::json;

fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// What a token may do: exec and logs in its namespace, nothing else anywhere.
async fn assert_token_scoped(target: &impl KubeAccess, ns: &str, token: &str, others: &[&str]) {
    let client = target.for_token(token).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let listed: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    // A real cluster may hold more pods (other suites add some); the workload pod is there.
    assert!(listed.iter().any(|n| n == "app"), "{listed:?}");
    let mut p = pods
        .exec(
            "app",
            vec!["sh", "-c", "echo hello-$POD_NAMESPACE"],
            &AttachParams::default().stderr(false),
        )
        .await
        .unwrap();
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut p.stdout().unwrap(), &mut out)
        .await
        .unwrap();
    assert_eq!(out.trim(), format!("hello-{ns}"));
    // The token may read the logs, and they hold what the container printed. kubesim never runs a
    // container's command: in process the test writes the line itself; as a separate process reached
    // through its kubeconfig alone (scripts/test-real-cluster.sh --sim) nothing can, so there only the
    // authorization is checked, with a printed skip. A real cluster's busybox prints the line (the
    // kit's WORKLOADS command), possibly a moment after the pod turned Running, so it is polled for.
    if let Some(sim) = target.simulated() {
        sim.cluster.logs.append(ns, "app", "main", "a log line");
    }
    let in_process = target.simulated().is_some();
    let kubesim_process = !in_process && janus_testkit::served_by_kubesim(&target.admin().await).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let logs = pods.logs("app", &LogParams::default()).await.unwrap();
        if kubesim_process {
            let test = std::thread::current()
                .name()
                .unwrap_or("assert_token_scoped")
                .to_string();
            janus_testkit::skip(
                &test,
                &format!("the log content of {ns}/app: a kubesim process never runs the container's command"),
            );
            break;
        }
        if logs.contains("a log line") {
            break;
        }
        assert!(
            !in_process && tokio::time::Instant::now() < deadline,
            "the container's line in the logs of {ns}/app: {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        code(&pods.delete("app", &DeleteParams::default()).await.unwrap_err()),
        403,
        "no other verbs"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    assert_eq!(
        code(&secrets.list(&ListParams::default()).await.unwrap_err()),
        403,
        "no Secrets"
    );
    for other in others {
        let pods: Api<Pod> = Api::namespaced(client.clone(), other);
        assert_eq!(
            code(&pods.list(&ListParams::default()).await.unwrap_err()),
            403,
            "not in {other}"
        );
        assert!(
            pods.exec("app", vec!["true"], &AttachParams::default()).await.is_err(),
            "no exec in {other}"
        );
    }
}

#[tokio::test]
async fn one_namespace_grant_use_expire() {
    let sim = cluster().await;
    let ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("one", "central", &["team-a"], 4)).await;
    let pending = wait_phase(&sim, "one", "Pending", 10).await;
    assert!(
        pending
            .status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "Submitted")
    );
    assert!(tokens(&sim, "one").await.is_empty(), "nothing before approval");
    approve(&sim, "one").await;
    let active = wait_phase(&sim, "one", "Active", 10).await;
    let st = active.status.unwrap();
    assert_eq!(st.grants.len(), 1);
    assert!(st.expires_at.is_some());
    let status_json = serde_json::to_string(&st).unwrap();
    let toks = tokens(&sim, "one").await;
    assert_eq!(toks.len(), 1);
    assert!(!status_json.contains(&toks[0].1), "the token never appears in status");
    assert_token_scoped(&sim, "team-a", &toks[0].1, &["team-b", "k8s-janus"]).await;
    let expired = wait_phase(&sim, "one", "Expired", 15).await;
    assert!(
        expired
            .status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "CredentialsRemoved" && c.status == "True")
    );
    assert!(leftovers(&sim, &sim, "one").await.is_empty());
    assert_token_dead(&sim, "team-a", &toks[0].1).await;
    // Every transition left a Kubernetes Event on the request (published in the background, so they
    // may follow the status by a moment).
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(sim.admin().await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("one"))
            .filter_map(|e| e.reason)
            .collect();
        let missing: Vec<&str> = ["Submitted", "Approved", "Granted", "Expired"]
            .into_iter()
            .filter(|want| !reasons.iter().any(|r| r == want))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {missing:?} event in {reasons:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ctl.stop().await;
}

#[tokio::test]
async fn three_namespaces_then_revoke() {
    let sim = cluster().await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("three", "central", &["team-a", "team-b", "team-c"], 600)).await;
    approve(&sim, "three").await;
    wait_phase(&sim, "three", "Active", 10).await;
    let toks = tokens(&sim, "three").await;
    assert_eq!(
        toks.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
        ["team-a", "team-b", "team-c"]
    );
    for (ns, tok) in &toks {
        let others: Vec<&str> = ["team-a", "team-b", "team-c"].into_iter().filter(|o| o != ns).collect();
        assert_token_scoped(&sim, ns, tok, &others).await;
    }
    decide(
        &sim,
        "three",
        "revocation",
        json!({"by": "admin@example.com", "at": now(), "reason": "done"}),
    )
    .await;
    let r = wait_phase(&sim, "three", "Revoked", 10).await;
    assert_eq!(r.status.unwrap().message, "revoked by admin@example.com: done");
    assert!(leftovers(&sim, &sim, "three").await.is_empty());
    for (ns, tok) in &toks {
        assert_token_dead(&sim, ns, tok).await;
    }
}

#[tokio::test]
async fn a_credential_held_by_a_finalizer_is_reported_until_it_is_gone() {
    // Kubesim-only: a real cluster's leeway is fixed at 60 s (a kube-apiserver setting).
    if kubesim_only(
        "a_credential_held_by_a_finalizer_is_reported_until_it_is_gone",
        "needs a short token leeway (SimBuilder::token_leeway_seconds)",
    ) {
        return;
    }
    // A ServiceAccount marked for deletion still authenticates its tokens for the JWT leeway after its
    // deletionTimestamp (`invalidIfDeletedBefore` in pkg/serviceaccount/claims.go, 60 s upstream),
    // then as long as the cache remembers them. A short leeway keeps the wait for that short.
    const LEEWAY: i64 = 2;
    let sim = central_from(kubesim::SimBuilder::new().token_leeway_seconds(LEEWAY)).await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("held", "central", &["team-a"], 600)).await;
    approve(&sim, "held").await;
    let active = wait_phase(&sim, "held", "Active", 10).await;
    let sa_name = active.status.unwrap().grants[0].service_account.clone();
    let toks = tokens(&sim, "held").await;
    let admin = sim.client().await.unwrap();
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(admin, "team-a");
    let hold = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    sas.patch(
        &sa_name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&hold),
    )
    .await
    .unwrap();
    decide(
        &sim,
        "held",
        "revocation",
        json!({"by": "admin@example.com", "at": now(), "reason": "done"}),
    )
    .await;
    wait_phase(&sim, "held", "Revoked", 10).await;
    // The RoleBinding is gone, so the token is refused at once; the ServiceAccount, marked for
    // deletion but still there, stops authenticating it after the leeway and the cache.
    let bound = Duration::from_secs(LEEWAY as u64) + sim.cluster.config.auth_cache_ttl + Duration::from_secs(5);
    assert_token_dead_within(&sim, "team-a", &toks[0].1, bound).await;
    let pending = |ar: &janus_api::AccessRequest| {
        ar.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "CredentialsRemoved").cloned())
    };
    let ar = get(&sim, "held").await.unwrap();
    let c = pending(&ar).expect("CredentialsRemoved condition");
    assert_eq!(c.status, "False");
    assert!(
        c.message.contains(&format!("ServiceAccount team-a/{sa_name}")),
        "{}",
        c.message
    );
    // Once the finalizer goes, the retry confirms the removal.
    let release = json!({"metadata": {"finalizers": null}});
    sas.patch(
        &sa_name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&release),
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let ar = get(&sim, "held").await.unwrap();
        if pending(&ar).is_some_and(|c| c.status == "True") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "removal never confirmed: {:?}",
            pending(&ar)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(leftovers(&sim, &sim, "held").await.is_empty());
}

#[tokio::test]
async fn withdraw_deny_and_the_deny_after_approve_race() {
    let sim = cluster().await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("w", "central", &["team-a"], 600)).await;
    approve(&sim, "w").await;
    wait_phase(&sim, "w", "Active", 10).await;
    decide(
        &sim,
        "w",
        "withdrawal",
        json!({"by": "Jane.Doe+ops@example.com", "at": now()}),
    )
    .await;
    wait_phase(&sim, "w", "Cancelled", 10).await;
    assert!(leftovers(&sim, &sim, "w").await.is_empty());

    create(&sim, &request("d", "central", &["team-a"], 600)).await;
    decide(
        &sim,
        "d",
        "denial",
        json!({"by": "admin@example.com", "at": now(), "reason": "not today"}),
    )
    .await;
    let d = wait_phase(&sim, "d", "Denied", 10).await;
    assert_eq!(d.status.unwrap().message, "denied by admin@example.com: not today");

    // Approval and denial cannot both be written: the CRD's CEL rules make the API server refuse the
    // second with 422, so the request goes on with the first. (How the controller resolves both, on a
    // cluster whose CRD lacks the rules, is tested in tests/invariants.rs.)
    create(&sim, &request("race", "central", &["team-a", "team-b"], 600)).await;
    approve(&sim, "race").await;
    let api: Api<janus_api::AccessRequest> = Api::all(sim.admin().await);
    let denial =
        json!({"spec": {"denial": {"by": "other-admin@example.com", "at": now(), "reason": "changed my mind"}}});
    let err = api
        .patch(
            "race",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&denial),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), 422);
    assert!(err.to_string().contains("either approved or denied"), "{err}");
    wait_phase(&sim, "race", "Active", 10).await;
}

#[tokio::test]
async fn invalid_requests_are_denied_with_a_precise_message() {
    let sim = cluster().await;
    let _ctl = Controller::start(&sim, config("maxTtlSeconds: 3600\n")).await;
    for (name, cluster, ns, ttl, want) in [
        ("c1", "nowhere", "team-a", 600, "unknown cluster \"nowhere\""),
        (
            "c2",
            "central",
            "kube-system",
            600,
            "namespace \"kube-system\" is excluded",
        ),
        ("c3", "central", "k8s-janus", 600, "namespace \"k8s-janus\" is excluded"),
        (
            "c4",
            "central",
            "ghost",
            600,
            "namespace \"ghost\" does not exist on cluster central",
        ),
        ("c5", "central", "team-a", 7200, "outside the allowed range"),
    ] {
        create(&sim, &request(name, cluster, &[ns], ttl)).await;
        let ar = wait_phase(&sim, name, "Denied", 10).await;
        let msg = ar.status.unwrap().message;
        assert!(msg.contains(want), "{name}: {msg}");
    }
}

#[tokio::test]
async fn deleting_a_request_removes_everything() {
    let sim = cluster().await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("del", "central", &["team-a", "team-b"], 600)).await;
    approve(&sim, "del").await;
    wait_phase(&sim, "del", "Active", 10).await;
    let toks = tokens(&sim, "del").await;
    let api: Api<janus_api::AccessRequest> = Api::all(sim.admin().await);
    api.delete("del", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get(&sim, "del").await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "finalizer never removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(leftovers(&sim, &sim, "del").await.is_empty());
    assert_token_dead(&sim, "team-a", &toks[0].1).await;
}

#[tokio::test]
async fn extension_moves_expiry_and_keeps_the_token_working() {
    let sim = cluster().await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("ext", "central", &["team-a"], 3)).await;
    approve(&sim, "ext").await;
    let a = wait_phase(&sim, "ext", "Active", 10).await;
    let first_expiry = a.status.unwrap().expires_at.unwrap();
    let tok = tokens(&sim, "ext").await.remove(0).1;
    decide(
        &sim,
        "ext",
        "extensions",
        json!([{"by": "admin@example.com", "at": now(), "seconds": 4}]),
    )
    .await;
    // Past the original expiry, still active and the token still works.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ar = get(&sim, "ext").await.unwrap();
    assert_eq!(phase(&ar), "Active");
    let st = ar.status.unwrap();
    assert_ne!(st.expires_at.unwrap(), first_expiry);
    assert!(st.conditions.iter().any(|c| c.type_ == "Extended"));
    let pods: Api<Pod> = Api::namespaced(sim.for_token(&tok).await, "team-a");
    pods.list(&ListParams::default()).await.unwrap();
    wait_phase(&sim, "ext", "Expired", 10).await;
    assert_token_dead(&sim, "team-a", &tok).await;
}

#[tokio::test]
async fn revoke_during_a_slow_grant_leaves_nothing() {
    // Kubesim-only: slows every API call down (fault injection).
    if kubesim_only(
        "revoke_during_a_slow_grant_leaves_nothing",
        "needs fault injection (API latency)",
    ) {
        return;
    }
    let sim = central().await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("slow", "central", &["team-a", "team-b", "team-c"], 600)).await;
    wait_phase(&sim, "slow", "Pending", 10).await;
    // Every API call now takes 150 ms: the grant of three namespaces takes well over a second.
    sim.cluster.faults.set(kubesim::faults::FaultConfig {
        latency_ms: 150,
        ..Default::default()
    });
    approve(&sim, "slow").await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    decide(
        &sim,
        "slow",
        "revocation",
        json!({"by": "admin@example.com", "at": now(), "reason": "oops"}),
    )
    .await;
    wait_phase(&sim, "slow", "Revoked", 30).await;
    sim.cluster.faults.clear();
    assert!(leftovers(&sim, &sim, "slow").await.is_empty());
}

#[tokio::test]
async fn pending_requests_time_out_and_finished_ones_are_retained_then_deleted() {
    let sim = cluster().await;
    let _ctl = Controller::start(&sim, config("pendingExpirySeconds: 2\nretentionSeconds: 2\n")).await;
    create(&sim, &request("p", "central", &["team-a"], 600)).await;
    let d = wait_phase(&sim, "p", "Denied", 10).await;
    assert!(d.status.unwrap().message.contains("no decision within 2s"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while get(&sim, "p").await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "not deleted after retention");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn remote_cluster_works_and_its_outage_affects_only_its_requests() {
    // Kubesim-only: needs a second cluster and takes it down (fault injection).
    if kubesim_only(
        "remote_cluster_works_and_its_outage_affects_only_its_requests",
        "needs a second cluster and fault injection (its outage)",
    ) {
        return;
    }
    let sim = central().await;
    let remote = remote().await;
    let agent_token = sa_token(&remote, NS, "k8s-janus-agent").await;
    let kubeconfig = remote.kubeconfig_for_token(&agent_token);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "remote-kubeconfig", "namespace": NS, "labels": {"k8s-janus.opsmode.io/cluster": "remote"}},
        "stringData": {"kubeconfig": kubeconfig}
    }))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(sim.client().await.unwrap(), NS);
    secrets.create(&Default::default(), &secret).await.unwrap();
    let cfg = config("clusters: [{name: central, displayName: Central}, {name: remote, displayName: Remote}]\n");
    let _ctl = Controller::start(&sim, cfg).await;

    create(&sim, &request("r1", "remote", &["team-b"], 600)).await;
    approve(&sim, "r1").await;
    wait_phase(&sim, "r1", "Active", 10).await;
    let toks = tokens(&sim, "r1").await;
    assert_token_scoped(&remote, "team-b", &toks[0].1, &["team-a"]).await;
    // The token is the remote's: the central cluster does not accept it.
    assert_token_dead(&sim, "team-b", &toks[0].1).await;
    decide(
        &sim,
        "r1",
        "revocation",
        json!({"by": "admin@example.com", "at": now(), "reason": ""}),
    )
    .await;
    wait_phase(&sim, "r1", "Revoked", 10).await;
    assert!(leftovers(&sim, &remote, "r1").await.is_empty());
    assert_token_dead(&remote, "team-b", &toks[0].1).await;

    // The remote goes down: its request waits with a clear message; the central one is unaffected.
    remote.cluster.faults.set(kubesim::faults::FaultConfig {
        error_rate: 1.0,
        ..Default::default()
    });
    create(&sim, &request("r2", "remote", &["team-b"], 600)).await;
    approve(&sim, "r2").await;
    create(&sim, &request("c", "central", &["team-a"], 600)).await;
    approve(&sim, "c").await;
    wait_phase(&sim, "c", "Active", 10).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r2 = get(&sim, "r2").await.unwrap();
    assert!(matches!(phase(&r2).as_str(), "Pending" | "Approved"), "{:?}", r2.status);
    // Back up: the waiting request proceeds.
    remote.cluster.faults.clear();
    wait_phase(&sim, "r2", "Active", 90).await;
}

#[tokio::test]
async fn what_came_due_while_no_controller_ran_ends_at_the_next_start() {
    let sim = cluster().await;
    let ctl = Controller::start(&sim, config("")).await;
    for (name, ttl) in [
        ("due-expired", 3),
        ("due-revoked", 600),
        ("due-deleted", 600),
        ("due-kept", 600),
    ] {
        create(&sim, &request(name, "central", &["team-a"], ttl)).await;
        approve(&sim, name).await;
    }
    let mut toks = Vec::new();
    for name in ["due-expired", "due-revoked", "due-deleted", "due-kept"] {
        wait_phase(&sim, name, "Active", 10).await;
        toks.push(tokens(&sim, name).await.remove(0).1);
    }
    ctl.stop().await;
    // While no controller runs: one request expires, one is revoked, one is deleted.
    decide(
        &sim,
        "due-revoked",
        "revocation",
        json!({"by": "admin@example.com", "at": now(), "reason": "done"}),
    )
    .await;
    let ars: Api<janus_api::AccessRequest> = Api::all(sim.admin().await);
    ars.delete("due-deleted", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    for t in &toks[..3] {
        let pods: Api<Pod> = Api::namespaced(sim.for_token(t).await, "team-a");
        assert!(
            pods.list(&ListParams::default()).await.is_ok(),
            "nothing ends without a controller"
        );
    }
    let _ctl = Controller::start(&sim, config("")).await;
    wait_phase(&sim, "due-expired", "Expired", 10).await;
    wait_phase(&sim, "due-revoked", "Revoked", 10).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(&sim, "due-deleted").await.is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the deleted request was never released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (name, t) in ["due-expired", "due-revoked", "due-deleted"].iter().zip(&toks) {
        assert!(leftovers(&sim, &sim, name).await.is_empty(), "{name} left credentials");
        assert_token_dead(&sim, "team-a", t).await;
    }
    assert_eq!(phase(&get(&sim, "due-kept").await.unwrap()), "Active");
    assert_token_scoped(&sim, "team-a", &toks[3], &["team-b"]).await;
}

#[tokio::test]
async fn a_deleted_token_secret_is_issued_again() {
    let sim = cluster().await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("drift", "central", &["team-a"], 600)).await;
    approve(&sim, "drift").await;
    let active = wait_phase(&sim, "drift", "Active", 10).await;
    let secret_name = active.status.unwrap().grants[0].token_secret.clone();
    let secrets: Api<Secret> = Api::namespaced(sim.admin().await, "k8s-janus");
    let before = secrets.get(&secret_name).await.unwrap();
    // Our own write was not taken for drift (nothing re-issued while nobody touched it)...
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        secrets.get(&secret_name).await.unwrap().metadata.uid,
        before.metadata.uid
    );
    // ...but someone else's deletion is.
    secrets.delete(&secret_name, &DeleteParams::default()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let again = loop {
        if let Some(s) = secrets.get_opt(&secret_name).await.unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the token Secret was not issued again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(again.metadata.uid, before.metadata.uid);
    assert_eq!(phase(&get(&sim, "drift").await.unwrap()), "Active");
    let toks = tokens(&sim, "drift").await;
    assert_token_scoped(&sim, "team-a", &toks[0].1, &["team-b"]).await;
}

#[tokio::test]
async fn a_removed_finalizer_is_put_back_at_once() {
    let sim = cluster().await;
    let _ctl = Controller::start(&sim, config("")).await;
    create(&sim, &request("fin", "central", &["team-a"], 600)).await;
    approve(&sim, "fin").await;
    wait_phase(&sim, "fin", "Active", 10).await;
    let ars: Api<janus_api::AccessRequest> = Api::all(sim.admin().await);
    let strip = json!({"metadata": {"finalizers": null}});
    ars.patch(
        "fin",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&strip),
    )
    .await
    .unwrap();
    // Without it a deletion would skip cleanup, so it must not wait for the next resync.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ar = get(&sim, "fin").await.unwrap();
        if ar
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == janus_api::FINALIZER)
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "finalizer not restored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ars.delete("fin", &DeleteParams::default()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(&sim, "fin").await.is_some() {
        assert!(std::time::Instant::now() < deadline, "never released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(leftovers(&sim, &sim, "fin").await.is_empty());
}
