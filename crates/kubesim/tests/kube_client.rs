#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The same behaviours as the kubectl suite, seen from kube-rs: the client library k8s-janus uses.

mod common;

use std::time::Duration;

use common::{Env, eventually};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{Api, AttachParams, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

fn api_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_conflicts_and_errors() {
    let env = Env::new().await;
    let client = env.sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    assert_eq!(
        api_code(&cms.create(&PostParams::default(), &cm("a")).await.unwrap_err()),
        409
    );
    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_string(), "2".to_string())].into());
    cms.replace("a", &PostParams::default(), &fresh).await.unwrap();
    stale.data = Some([("k".to_string(), "3".to_string())].into());
    let e = cms.replace("a", &PostParams::default(), &stale).await.unwrap_err();
    assert_eq!(api_code(&e), 409);
    let list = cms.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(api_code(&cms.get("nope").await.unwrap_err()), 404);
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("a").await.unwrap().is_none());
}

#[tokio::test]
async fn pagination_visits_every_object_once() {
    let env = Env::new().await;
    let client = env.sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..7 {
        cms.create(&PostParams::default(), &cm(&format!("p{i}"))).await.unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = cms.list(&lp).await.unwrap();
        names.extend(page.items.iter().filter_map(|c| c.metadata.name.clone()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    names.sort();
    assert_eq!(names, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn watcher_sees_changes_and_recovers_from_410() {
    let mut env = Env::new().await;
    let client = env.sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let stream = watcher(cms.clone(), watcher::Config::default());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while let Some(ev) = s.next().await {
            if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = ev {
                seen2.lock().unwrap().push(o.metadata.name.unwrap_or_default());
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cms.create(&PostParams::default(), &cm("w1")).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || seen
            .lock()
            .unwrap()
            .contains(&"w1".to_string()))
        .await
    );
    // Restart the API server and forget history: the watcher must re-list and carry on.
    env.sim.cluster.store.compact();
    env.sim.restart().await.unwrap();
    cms.create(&PostParams::default(), &cm("w2")).await.unwrap();
    assert!(
        eventually(Duration::from_secs(15), || seen
            .lock()
            .unwrap()
            .contains(&"w2".to_string()))
        .await,
        "watcher recovered"
    );
    task.abort();

    // A raw watch from a compacted resourceVersion gets a 410 Expired error event.
    let old = "1";
    let res = cms.watch(&kube::api::WatchParams::default(), old).await.unwrap();
    let first = std::pin::pin!(res).try_next().await;
    match first {
        Ok(Some(kube::api::WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn exec_logs_and_container_choice() {
    let env = Env::new().await;
    env.seed("apiVersion: v1\nkind: Pod\nmetadata: {name: duo, namespace: default}\nspec:\n  containers:\n  - {name: app, image: x}\n  - {name: side, image: y}\n");
    let client = env.sim.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let e = pods.exec("duo", vec!["echo", "x"], &AttachParams::default()).await;
    assert!(e.is_err(), "a multi-container pod needs a container");
    let mut p = pods
        .exec(
            "duo",
            vec!["sh", "-c", "echo hello from $POD_NAME"],
            &AttachParams::default().container("app").stderr(false),
        )
        .await
        .unwrap();
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut p.stdout().unwrap(), &mut out)
        .await
        .unwrap();
    let status = p.take_status().unwrap().await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));
    assert_eq!(out.trim(), "hello from duo");
    env.sim.cluster.logs.append("default", "duo", "side", "side log");
    let logs = pods
        .logs(
            "duo",
            &LogParams {
                container: Some("side".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(logs, "side log\n");
}

#[tokio::test]
async fn token_request_and_rbac_through_kube() {
    // This checks kubesim's own revocation (401 as soon as the ServiceAccount is gone), so the 10 s
    // authentication cache a real server has (and kubesim by default) is off; tests/token_timing.rs
    // covers the cache.
    let env = Env::with(kubesim::SimBuilder::new().auth_cache_ttl(Duration::ZERO)).await;
    let client = env.sim.client().await.unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "robot"}})).unwrap(),
    )
    .await
    .unwrap();
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"expirationSeconds": 600}})).unwrap();
    let tr = sas
        .create_token_request("robot", &PostParams::default(), &tr)
        .await
        .unwrap();
    let token = tr.status.unwrap().token;
    let robot = env.sim.client_for_token(&token).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(robot.clone(), "default");
    let e = cms.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(api_code(&e), 403);
    if let kube::Error::Api(s) = &e {
        assert!(
            s.message.contains("system:serviceaccount:default:robot")
                && s.message.contains("cannot list resource \"configmaps\""),
            "{}",
            s.message
        );
    }
    sas.delete("robot", &DeleteParams::default()).await.unwrap();
    let e = cms.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(api_code(&e), 401);
}

#[tokio::test]
async fn faults_are_injected_and_cleared() {
    let env = Env::new().await;
    let client = env.sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    // Two 429s with Retry-After: the client waits as told and the third attempt succeeds.
    env.sim.cluster.faults.set(kubesim::faults::FaultConfig {
        throttle_rate: 1.0,
        retry_after_seconds: 1,
        times: Some(2),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    cms.list(&ListParams::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After honoured");
    assert_eq!(env.sim.cluster.faults.get().times, Some(0), "both faults were served");
    env.sim.cluster.faults.set(kubesim::faults::FaultConfig {
        error_rate: 1.0,
        ..Default::default()
    });
    assert_eq!(api_code(&cms.list(&ListParams::default()).await.unwrap_err()), 500);
    env.sim.cluster.faults.clear();
    cms.list(&ListParams::default()).await.unwrap();
}

#[tokio::test]
async fn state_survives_a_restart_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let sim = kubesim::SimBuilder::new()
        .state(&state)
        .workdir(dir.path().join("w"))
        .start()
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    cms.create(&PostParams::default(), &cm("kept")).await.unwrap();
    sim.shutdown().await.unwrap();
    let sim = kubesim::SimBuilder::new()
        .state(&state)
        .workdir(dir.path().join("w"))
        .start()
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    assert!(cms.get_opt("kept").await.unwrap().is_some());
    let p = cms
        .patch(
            "kept",
            &PatchParams::apply("test").force(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}, "data": {"z": "1"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(p.data.unwrap().get("z").map(String::as_str), Some("1"));
}
