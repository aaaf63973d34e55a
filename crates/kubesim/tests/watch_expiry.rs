#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Watches and lists as kube-apiserver serves them: time-based 410 Gone, server-side watch timeouts,
//! snapshot `continue` tokens, `resourceVersionMatch=Exact` and future resourceVersions.
//!
//! Written from the real server's source (kubernetes/kubernetes, staging/src/k8s.io/apiserver/pkg/):
//! - storage/cacher/watch_cache.go: `too old resource version: RV (OLDEST)`; `waitUntilFreshAndBlock`
//!   blocks 3 s (`blockTimeout`) and then returns `NewTooLargeResourceVersionError(rv, current, 1)`;
//! - storage/cacher/cacher.go: watch errors after the request was accepted are an `ERROR` event in an
//!   HTTP 200 stream ("To match the uncached watch implementation…");
//! - storage/cacher/delegator.go `shouldDelegateList`: `Exact`, legacy limit+resourceVersion and
//!   `continue` lists are read from etcd at a revision;
//! - storage/etcd3/errors.go: `The provided continue parameter is too old…` with a fresh token
//!   (revision -1) in the Status' `metadata.continue`, `The resourceVersion for the provided list is
//!   too old.`; storage/etcd3/store.go: `ErrFutureRev` → TooLargeResourceVersion (504);
//! - endpoints/handlers/get.go: a watch without `timeoutSeconds` ends after
//!   `minRequestTimeout * (rand.Float64() + 1.0)`; apimachinery
//!   pkg/apis/meta/internalversion/validation/validation.go `ValidateListOptions`.

mod common;

use std::time::{Duration, Instant};

use kube::client::Body;
use kubesim::SimBuilder;
use serde_json::{Value, json};

/// An admin client that shows every answer as it is: kube's default layer would retry the 504s
/// (as it should against a real server) and hide them from these tests.
async fn raw_client(env: &common::Env) -> kube::Client {
    let kc: kube::config::Kubeconfig = yaml_serde::from_str(&env.sim.kubeconfig_yaml()).expect("kubeconfig");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    cfg.default_retry = false;
    kube::Client::try_from(cfg).expect("client")
}

/// A GET as the admin: status code and JSON body (or the raw text wrapped in a string).
async fn get(client: &kube::Client, path: &str) -> (u16, Value) {
    let req = http::Request::get(path).body(Body::empty()).expect("request");
    let resp = client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
    (code, body)
}

/// A watch's events, read until the server ends the stream (or `limit` passes).
async fn watch_events(client: &kube::Client, path: &str, limit: Duration) -> Vec<Value> {
    let req = http::Request::get(path).body(Body::empty()).expect("request");
    let resp = client.send(req).await.expect("send");
    assert_eq!(resp.status().as_u16(), 200, "a watch is accepted with 200");
    let bytes = tokio::time::timeout(limit, resp.into_body().collect_bytes())
        .await
        .expect("the server ends the watch")
        .expect("body");
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect()
}

async fn create_cm(client: &kube::Client, name: &str, value: &str) -> u64 {
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client.clone(), "default");
    let cm: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": value}})).expect("cm");
    let out = api.create(&Default::default(), &cm).await.expect("create");
    rv_of(&serde_json::to_value(out).expect("json"))
}

async fn set_cm(client: &kube::Client, name: &str, value: &str) -> u64 {
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client.clone(), "default");
    let patch = kube::api::Patch::Merge(json!({"data": {"v": value}}));
    let out = api.patch(name, &Default::default(), &patch).await.expect("patch");
    rv_of(&serde_json::to_value(out).expect("json"))
}

async fn delete_cm(client: &kube::Client, name: &str) {
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client.clone(), "default");
    api.delete(name, &Default::default()).await.expect("delete");
}

fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("resourceVersion")
}

fn names_and_values(list: &Value) -> Vec<(String, String)> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                o["data"]["v"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn a_watch_from_a_resource_version_older_than_the_window_gets_410_in_the_stream() {
    let env = common::Env::with(SimBuilder::new().watch_window(Duration::from_secs(1))).await;
    let client = raw_client(&env).await;
    let old = create_cm(&client, "a", "1").await;
    set_cm(&client, "a", "2").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let newest = set_cm(&client, "a", "3").await;
    // The change after `old` has left the 1 s window: the stream holds one ERROR event, 410 Expired.
    let events = watch_events(
        &client,
        &format!("{CMS}?watch=true&resourceVersion={old}&timeoutSeconds=5"),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    let status = &events[0]["object"];
    assert_eq!(
        (status["code"].as_u64(), status["reason"].as_str()),
        (Some(410), Some("Expired")),
        "{status}"
    );
    let msg = status["message"].as_str().unwrap_or_default();
    assert!(msg.starts_with(&format!("too old resource version: {old} (")), "{msg}");
    // A resourceVersion inside the window (the newest, as a bookmark would carry it) still watches.
    let events = watch_events(
        &client,
        &format!("{CMS}?watch=true&resourceVersion={newest}&timeoutSeconds=1"),
        Duration::from_secs(10),
    )
    .await;
    assert!(events.iter().all(|e| e["type"] != "ERROR"), "{events:?}");
}

#[tokio::test]
async fn bookmarks_keep_a_quiet_watcher_inside_the_window() {
    let env = common::Env::with(SimBuilder::new().watch_window(Duration::from_secs(1))).await;
    let client = raw_client(&env).await;
    let start = create_cm(&client, "a", "1").await;
    set_cm(&client, "a", "2").await;
    // A watch that saw the change and then bookmarks; the history moves past the window meanwhile.
    let events = watch_events(
        &client,
        &format!("{CMS}?watch=true&resourceVersion={start}&allowWatchBookmarks=true&timeoutSeconds=3"),
        Duration::from_secs(10),
    )
    .await;
    let bookmark = events
        .iter()
        .rev()
        .find(|e| e["type"] == "BOOKMARK")
        .expect("a bookmark within 3 s");
    let bm_rv = rv_of(&bookmark["object"]);
    let events = watch_events(
        &client,
        &format!("{CMS}?watch=true&resourceVersion={bm_rv}&timeoutSeconds=1"),
        Duration::from_secs(10),
    )
    .await;
    assert!(events.iter().all(|e| e["type"] != "ERROR"), "{events:?}");
}

#[tokio::test]
async fn the_server_ends_a_watch_without_timeout_seconds_after_the_min_request_timeout() {
    let env = common::Env::with(SimBuilder::new().min_request_timeout(Duration::from_secs(1))).await;
    let client = raw_client(&env).await;
    let started = Instant::now();
    // Between 1 and 2 s by the rule; 10 s is the generous bound of this deadline test.
    watch_events(&client, &format!("{CMS}?watch=true"), Duration::from_secs(10)).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "not before the minimum");
}

#[tokio::test]
async fn continue_pages_are_a_snapshot_of_the_first_page() {
    let env = common::Env::new().await;
    let client = raw_client(&env).await;
    for n in ["c0", "c1", "c2", "c3", "c4"] {
        create_cm(&client, n, "old").await;
    }
    let (code, page1) = get(&client, &format!("{CMS}?limit=2")).await;
    assert_eq!(code, 200);
    let snapshot = page1["metadata"]["resourceVersion"].as_str().expect("rv").to_string();
    // Changes after the first page: none of them may show in the later pages.
    set_cm(&client, "c2", "new").await;
    delete_cm(&client, "c3").await;
    create_cm(&client, "c2x", "new").await;
    let mut seen = names_and_values(&page1);
    let mut token = page1["metadata"]["continue"].as_str().expect("continue").to_string();
    loop {
        let (code, page) = get(&client, &format!("{CMS}?limit=2&continue={token}")).await;
        assert_eq!(code, 200, "{page}");
        assert_eq!(
            page["metadata"]["resourceVersion"],
            json!(snapshot),
            "every page is at the first page's RV"
        );
        seen.extend(names_and_values(&page));
        match page["metadata"]["continue"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    let expected: Vec<(String, String)> = ["c0", "c1", "c2", "c3", "c4"]
        .iter()
        .map(|n| (n.to_string(), "old".to_string()))
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn an_expired_continue_token_is_410_with_a_token_that_continues_at_the_newest_state() {
    let env = common::Env::with(SimBuilder::new().watch_window(Duration::from_secs(1))).await;
    let client = raw_client(&env).await;
    for n in ["c0", "c1", "c2"] {
        create_cm(&client, n, "old").await;
    }
    let (_, page1) = get(&client, &format!("{CMS}?limit=1")).await;
    let token = page1["metadata"]["continue"].as_str().expect("continue").to_string();
    set_cm(&client, "c1", "new").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, status) = get(&client, &format!("{CMS}?limit=1&continue={token}")).await;
    assert_eq!(code, 410, "{status}");
    assert_eq!(status["reason"], "Expired");
    assert_eq!(
        status["message"],
        "The provided continue parameter is too old to display a consistent list result. You can start a new list \
         without the continue parameter, or use the continue token in this response to retrieve the remainder of the \
         results. Continuing with the provided token results in an inconsistent list - objects that were created, \
         modified, or deleted between the time the first chunk was returned and now may show up in the list."
    );
    let fresh = status["metadata"]["continue"]
        .as_str()
        .expect("a fresh token in the Status");
    let (code, rest) = get(&client, &format!("{CMS}?continue={fresh}")).await;
    assert_eq!(code, 200, "{rest}");
    // The rest of the list, as it is now.
    assert_eq!(
        names_and_values(&rest),
        vec![("c1".into(), "new".into()), ("c2".into(), "old".into())]
    );
    // Bad tokens and a resourceVersion beside a token are 400.
    let (code, status) = get(&client, &format!("{CMS}?continue=not-a-token")).await;
    assert_eq!(code, 400, "{status}");
    let (code, status) = get(&client, &format!("{CMS}?continue={fresh}&resourceVersion=5")).await;
    assert_eq!(
        (code, status["message"].as_str()),
        (
            400,
            Some("specifying resource version is not allowed when using continue")
        )
    );
}

#[tokio::test]
async fn exact_lists_read_the_past_and_future_resource_versions_are_504() {
    let env = common::Env::with(SimBuilder::new().watch_window(Duration::from_secs(2))).await;
    let client = raw_client(&env).await;
    let at = create_cm(&client, "a", "1").await;
    set_cm(&client, "a", "2").await;
    create_cm(&client, "b", "1").await;

    let (code, list) = get(
        &client,
        &format!("{CMS}?resourceVersion={at}&resourceVersionMatch=Exact"),
    )
    .await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["metadata"]["resourceVersion"], json!(at.to_string()));
    assert_eq!(names_and_values(&list), vec![("a".into(), "1".into())]);
    // NotOlderThan an old version is the newest state.
    let (_, list) = get(
        &client,
        &format!("{CMS}?resourceVersion={at}&resourceVersionMatch=NotOlderThan"),
    )
    .await;
    assert_eq!(names_and_values(&list).len(), 2);

    let current = env.sim.cluster.store.current_rv();
    let future = current + 1000;
    let (code, status) = get(
        &client,
        &format!("{CMS}?resourceVersion={future}&resourceVersionMatch=Exact"),
    )
    .await;
    assert_eq!(code, 504, "{status}");
    assert_eq!(status["reason"], "Timeout");
    assert_eq!(
        status["message"],
        json!(format!(
            "Timeout: Too large resource version: {future}, current: {current}"
        ))
    );
    assert_eq!(status["details"]["causes"][0]["reason"], "ResourceVersionTooLarge");

    // NotOlderThan a future version waits (the watch cache's 3 s) and then answers 504, retry after 1 s …
    let started = Instant::now();
    let (code, status) = get(&client, &format!("{CMS}?resourceVersion={future}")).await;
    assert_eq!(code, 504, "{status}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the server waits before giving up"
    );
    assert_eq!(status["details"]["retryAfterSeconds"], 1);
    // … and answers once a write reaches it within the wait.
    let next = env.sim.cluster.store.current_rv() + 1;
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            create_cm(&client, "c", "1").await
        })
    };
    let (code, list) = get(
        &client,
        &format!("{CMS}?resourceVersion={next}&resourceVersionMatch=NotOlderThan"),
    )
    .await;
    assert_eq!(code, 200, "{list}");
    assert!(rv_of(&list) >= next);
    writer.await.expect("writer");

    // Past the window, the exact read is gone.
    set_cm(&client, "a", "3").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, status) = get(
        &client,
        &format!("{CMS}?resourceVersion={at}&resourceVersionMatch=Exact"),
    )
    .await;
    assert_eq!(code, 410, "{status}");
    assert_eq!(
        status["message"],
        "The resourceVersion for the provided list is too old."
    );
}

#[tokio::test]
async fn list_options_are_validated_as_the_real_server_does() {
    let env = common::Env::new().await;
    let client = raw_client(&env).await;
    let (code, status) = get(&client, &format!("{CMS}?resourceVersionMatch=Exact")).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
    );
    let (code, status) = get(&client, &format!("{CMS}?resourceVersion=0&resourceVersionMatch=Exact")).await;
    assert_eq!(code, 422, "{status}");
    let msg = status["message"].as_str().unwrap_or_default();
    assert!(
        msg.ends_with(
            "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""
        ),
        "{msg}"
    );
    let (code, status) = get(&client, &format!("{CMS}?resourceVersion=1&resourceVersionMatch=Newest")).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["details"]["causes"][0]["reason"], "FieldValueNotSupported");
}

/// The real kubectl pages with `--chunk-size` and follows the new tokens to the end.
#[tokio::test]
async fn kubectl_pages_through_a_list() {
    let env = common::Env::new().await;
    let client = raw_client(&env).await;
    for i in 0..7 {
        create_cm(&client, &format!("k{i}"), "v").await;
    }
    let out = env
        .ok(&["get", "configmaps", "-n", "default", "--chunk-size=2", "-o", "name"])
        .await;
    let names: Vec<&str> = out.lines().filter(|l| l.contains("/k")).collect();
    assert_eq!(names.len(), 7, "{out}");
}
