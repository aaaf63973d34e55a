#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Relists lose no transition: the real controller and the web process (its request cache, the audit
//! recorder) run against a kubesim whose watches expire as a real cluster's do, only much faster —
//! history kept 1 s instead of minutes (storage/cacher/watch_cache.go's sliding history, etcd
//! compaction) and every watch ended by the server after 1 s instead of the 290 s kube-rs asks for
//! (endpoints/handlers/get.go honours `timeoutSeconds`) — so the clients re-watch and relist many times
//! while sixteen requests go through create → approve → Active → revoke → cleanup, and half are deleted.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{ADMIN, Stack};
use serde_json::{Value, json};

/// The kinds of a request's audit timeline once they all are there (panics after a minute).
async fn audit_kinds(admin: &common::Session, name: &str, want: &[&str]) -> Vec<String> {
    let mut last = Value::Null;
    for _ in 0..1200 {
        last = admin.json(&format!("/api/v1/requests/{name}/timeline")).await;
        let kinds: Vec<String> = last["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["kind"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if want.iter().all(|w| kinds.iter().any(|k| k == w)) {
            return kinds;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timeline of {name} lacks some of {want:?}: {last}");
}

/// Waits until the web process shows the request in `phase`. Generous: kube-rs backs off after each
/// 410 (0.8 s doubling to 30 s, reset after 2 quiet minutes, as client-go's reflector), and here
/// watches expire every second or two, so a transition can take that long to arrive — late, never lost.
async fn wait_web_phase(session: &common::Session, name: &str, phase: &str) {
    let mut last = Value::Null;
    for _ in 0..1800 {
        last = session.json(&format!("/api/v1/requests/{name}")).await;
        if last["phase"] == phase {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never reached {phase} as the web sees it: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relists_lose_no_transition() {
    let builder = kubesim::SimBuilder::new()
        .watch_window(Duration::from_secs(1))
        .min_request_timeout(Duration::from_secs(1));
    let mut stack = Stack::start_on(builder, |_| String::new(), None, None).await;
    // kube-rs asks for `timeoutSeconds=290`, which the server honours; end its watches after 1 s too,
    // from the first: a restart of the API server drops the watches opened at start.
    stack.sim.cluster.faults.set(kubesim::faults::FaultConfig {
        watch_timeout_ms: Some(1000),
        ..Default::default()
    });
    stack.sim.restart().await.expect("restart");
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    // Pauses longer than the window between the steps: every watch of the two processes has ended and
    // resumed from a resourceVersion that is gone by then.
    let pause = || tokio::time::sleep(Duration::from_millis(1300));

    // Every watch resumed from a resourceVersion the store has compacted is answered 410 Gone, but a
    // watch that saw the newest change resumes without one: how many 410s the pauses above cause
    // depends on what else was written meanwhile (Events, Secrets), so on timing. A change of another
    // kind, left to age out of the window while every watch ends and resumes, makes each of them
    // resume from a compacted resourceVersion at least once.
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(stack.sim.client().await.expect("client"), "default");
    let force_relists = |round: usize| {
        let cms = cms.clone();
        async move {
            let cm: k8s_openapi::api::core::v1::ConfigMap =
                serde_json::from_value(json!({"metadata": {"name": format!("relist-tick-{round}")}})).unwrap();
            cms.create(&Default::default(), &cm).await.expect("tick");
            // The window (1 s) plus a watch's life (1 s), and some margin.
            tokio::time::sleep(Duration::from_millis(2300)).await;
        }
    };

    // Two users, so eight requests can be open at once (a user may have five).
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;
    let mut names = Vec::new();
    for round in 0..2 {
        let mut batch = Vec::new();
        for i in 0..4 {
            for who in [&alice, &bob] {
                batch.push(who.request(&["team-a"], 600, &format!("relist {round}/{i}")).await);
            }
        }
        force_relists(round).await;
        for name in &batch {
            let r = admin.post(&format!("/api/v1/requests/{name}/approve"), json!({})).await;
            assert_eq!(r.status(), 200, "approve {name}");
        }
        for name in &batch {
            // Read through the web process: its view is its watch cache.
            wait_web_phase(&admin, name, "Active").await;
        }
        pause().await;
        for name in &batch {
            let r = admin
                .post(&format!("/api/v1/requests/{name}/revoke"), json!({"reason": "done"}))
                .await;
            assert_eq!(r.status(), 200, "revoke {name}");
        }
        for name in &batch {
            wait_web_phase(&admin, name, "Revoked").await;
        }
        names.extend(batch);
        pause().await;
    }

    for name in &names {
        // Cleanup really happened: no ServiceAccount, RoleBinding or token Secret left.
        let mut left = Vec::new();
        for _ in 0..100 {
            left = common::k8s::leftovers(&stack.sim, &stack.sim, name).await;
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(left.is_empty(), "{name}: credentials left after revocation: {left:?}");
        // Every transition is in the audit log, derived by the recorder from what its watch saw.
        audit_kinds(
            &admin,
            name,
            &[
                "request.created",
                "request.approved",
                "request.activated",
                "request.revoked",
            ],
        )
        .await;
    }

    // Deletions during the gaps: the web's cache forgets them too.
    let requests: kube::Api<janus_api::access_request::AccessRequest> =
        kube::Api::all(stack.sim.client().await.expect("client"));
    for name in names.iter().step_by(2) {
        requests
            .delete(name, &Default::default())
            .await
            .expect("delete request");
    }
    for (i, name) in names.iter().enumerate() {
        let mut code = 0;
        for _ in 0..1800 {
            code = admin.get(&format!("/api/v1/requests/{name}")).await.status().as_u16();
            if (i % 2 == 0 && code == 404) || (i % 2 == 1 && code == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let want = if i % 2 == 0 { 404 } else { 200 };
        assert_eq!(code, want, "{name} as the web sees it");
    }

    // The clients really went through relists, not one long watch each.
    let expired = stack.sim.cluster.expired_watches.load(Ordering::Relaxed);
    assert!(expired >= 5, "only {expired} watches were answered 410 Gone");
    stack.stop().await;
}
