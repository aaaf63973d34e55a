#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The recorder against kubesim and the real controller: lifecycles produce exactly the expected audit
//! events, once, with their real times — also across a recorder restart and a PostgreSQL outage.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use janus_api::AccessRequest;
use janus_api::config::Config;
use janus_store::recorder::Recorder;
use janus_store::{AuditEvent, AuditQuery, Store};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kubesim::{RunningSim, SimBuilder};
use serde_json::{Value, json};

const NS: &str = "k8s-janus";

const SEED: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: k8s-janus}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: team-a}
spec: {containers: [{name: main, image: debian}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: janus-pod-exec}
rules:
  - {apiGroups: [""], resources: ["pods"], verbs: ["get", "list"]}
  - {apiGroups: [""], resources: ["pods/exec"], verbs: ["create", "get"]}
  - {apiGroups: [""], resources: ["pods/log"], verbs: ["get"]}
  - {apiGroups: [""], resources: ["events"], verbs: ["list"]}
"#;

async fn sim() -> RunningSim {
    let sim = SimBuilder::new().name("central").start().await.expect("kubesim");
    sim.load_seed(SEED).expect("seed");
    sim.load_seed(&janus_api::crd_yaml().expect("crd")).expect("crd");
    sim
}

fn config(retention: i64, extra: &str) -> Config {
    // The approvals these tests write into the CRD count only from an approver of the default policy.
    let yaml =
        format!("namespace: {NS}\nminTtlSeconds: 1\nretentionSeconds: {retention}\nadminEmails: [{ADMIN}]\n{extra}");
    Config::from_yaml(&yaml, "test").expect("config")
}

/// A task with a stop signal.
struct Running {
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
        self.task.abort();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn controller(sim: &RunningSim, cfg: Config) -> Running {
    let client = sim.client().await.expect("client");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opts = janus_controller::Options {
        metrics_listen: None,
        identity: "test".into(),
        leader_election: false,
    };
    let (url, ca) = (sim.url(), sim.ca_pem().to_string());
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = rx.await;
        };
        if let Err(e) = janus_controller::run(cfg, client, url, ca, opts, stop).await {
            panic!("controller failed: {e:#}");
        }
    });
    Running { task, stop: Some(tx) }
}

async fn recorder(sim: &RunningSim, store: &Store) -> (Running, Arc<AtomicBool>) {
    let client = sim.client().await.expect("client");
    let rec = Recorder::new();
    let healthy = rec.healthy();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let store = store.clone();
    let task = tokio::spawn(async move {
        rec.run(client, store, async move {
            let _ = rx.await;
        })
        .await
    });
    (Running { task, stop: Some(tx) }, healthy)
}

fn api(client: kube::Client) -> Api<AccessRequest> {
    Api::all(client)
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

async fn create(sim: &RunningSim, name: &str, ttl: i64) {
    let ar: AccessRequest = serde_json::from_value(json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": name},
        "spec": {"requester": "jane@example.com", "cluster": "central", "namespaces": ["team-a"],
                 "reason": "debugging '; DROP TABLE audit_events; -- <script>", "ttlSeconds": ttl}
    }))
    .expect("request");
    api(sim.client().await.expect("client"))
        .create(&PostParams::default(), &ar)
        .await
        .expect("create");
}

async fn decide(sim: &RunningSim, name: &str, field: &str, value: Value) {
    let patch = json!({"spec": {field: value}});
    api(sim.client().await.expect("client"))
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("decision");
}

async fn get(sim: &RunningSim, name: &str) -> AccessRequest {
    api(sim.client().await.expect("client")).get(name).await.expect("get")
}

async fn wait_phase(sim: &RunningSim, name: &str, want: &str, secs: u64) -> AccessRequest {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let ar = get(sim, name).await;
        let phase = ar.status.as_ref().map(|s| s.phase.to_string()).unwrap_or_default();
        if phase == want {
            return ar;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: wanted {want}, status {:?}",
            ar.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the CredentialsRemoved condition is True (the last transition of a finished request).
async fn wait_cleaned(sim: &RunningSim, name: &str) -> AccessRequest {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ar = get(sim, name).await;
        if cond_time(&ar, "CredentialsRemoved").is_some() {
            return ar;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: not cleaned up: {:?}",
            ar.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cond_time(ar: &AccessRequest, type_: &str) -> Option<DateTime<Utc>> {
    ar.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| t(&c.last_transition_time))
}

fn created(ar: &AccessRequest) -> DateTime<Utc> {
    let ts = &ar.metadata.creation_timestamp.as_ref().expect("creationTimestamp").0;
    DateTime::from_timestamp(ts.as_second(), 0).expect("time")
}

fn status_time(ar: &AccessRequest, f: impl Fn(&janus_api::AccessRequestStatus) -> Option<&String>) -> DateTime<Utc> {
    t(f(ar.status.as_ref().expect("status")).expect("status time"))
}

/// What a finished request must have produced: kind → (time, actor).
type Expected = BTreeMap<String, (DateTime<Utc>, String)>;

fn expect(pairs: &[(&str, DateTime<Utc>, &str)]) -> Expected {
    pairs
        .iter()
        .map(|(k, at, a)| (k.to_string(), (*at, a.to_string())))
        .collect()
}

async fn events_of(store: &Store, name: &str) -> Vec<AuditEvent> {
    store
        .audit_events(&AuditQuery {
            request: Some(name.into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap_or_default()
}

/// Waits until the store holds exactly the expected events for `name` (each once), then checks times
/// and actors.
async fn assert_events(store: &Store, name: &str, want: &Expected, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let got = loop {
        let got = events_of(store, name).await;
        let kinds: Vec<&str> = got.iter().map(|e| e.kind.as_str()).collect();
        if want.keys().all(|k| kinds.contains(&k.as_str())) {
            break got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: wanted {:?}, recorded {kinds:?}",
            want.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut kinds: Vec<&str> = got.iter().map(|e| e.kind.as_str()).collect();
    kinds.sort();
    let mut expected: Vec<&str> = want.keys().map(|k| k.as_str()).collect();
    expected.sort();
    assert_eq!(kinds, expected, "{name}: exactly the expected events, each once");
    for e in &got {
        let (at, actor) = &want[&e.kind];
        assert!(
            time_ok(name, &e.kind, e.at, *at),
            "{name}: time of {}: {} != {at}",
            e.kind,
            e.at
        );
        assert_eq!(&e.actor, actor, "{name}: actor of {}", e.kind);
        assert_eq!(e.cluster.as_deref(), Some("central"));
        assert_eq!(e.namespaces, ["team-a"]);
    }
}

/// Every `activeAt` each request ever showed, seen by a watcher of its own. Under load the controller
/// sometimes rewrites `activeAt` a second later (a re-grant from a stale view); the recorder keeps the
/// first one it saw, so the activation event may carry any value the object really showed.
#[derive(Clone, Default)]
struct Timeline(Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<DateTime<Utc>>>>>);

impl Timeline {
    async fn start(sim: &RunningSim) -> tokio::task::JoinHandle<()> {
        use futures::StreamExt as _;
        use kube::runtime::watcher;
        let seen = TIMELINE.clone();
        let a = api(sim.client().await.expect("client"));
        tokio::spawn(async move {
            let mut w = watcher(a, watcher::Config::default()).boxed();
            while let Some(ev) = w.next().await {
                if let Ok(watcher::Event::Apply(ar) | watcher::Event::InitApply(ar)) = ev
                    && let Some(at) = ar.status.as_ref().and_then(|s| s.active_at.as_deref())
                {
                    let name = ar.metadata.name.clone().unwrap_or_default();
                    let mut m = seen.0.lock().expect("lock");
                    let v = m.entry(name).or_default();
                    if !v.contains(&t(at)) {
                        v.push(t(at));
                    }
                }
            }
        })
    }

    fn active_ats(&self, name: &str) -> Vec<DateTime<Utc>> {
        self.0.lock().expect("lock").get(name).cloned().unwrap_or_default()
    }
}

/// One timeline for all tests of this binary (request names differ between tests).
static TIMELINE: std::sync::LazyLock<Timeline> = std::sync::LazyLock::new(Timeline::default);

/// Whether `at` is right for an event of `kind` on `name`.
fn time_ok(name: &str, kind: &str, at: DateTime<Utc>, want: DateTime<Utc>) -> bool {
    if at == want {
        return true;
    }
    let moved = kind == "request.activated" && TIMELINE.active_ats(name).contains(&at);
    if moved {
        eprintln!("note: {name}: activeAt moved from {at} to {want} (controller re-grant); the first is recorded");
    }
    moved
}

const ADMIN: &str = "admin@example.com";
const JANE: &str = "jane@example.com";

/// approve → Active → expire.
async fn expire_flow(sim: &RunningSim, name: &str) -> Expected {
    create(sim, name, 2).await;
    wait_phase(sim, name, "Pending", 10).await;
    let at = now();
    decide(sim, name, "approval", json!({"by": ADMIN, "at": at})).await;
    wait_phase(sim, name, "Expired", 20).await;
    let ar = wait_cleaned(sim, name).await;
    expect(&[
        ("request.created", created(&ar), JANE),
        ("request.approved", t(&at), ADMIN),
        (
            "request.activated",
            status_time(&ar, |s| s.active_at.as_ref()),
            "system",
        ),
        ("request.expired", status_time(&ar, |s| s.ended_at.as_ref()), "system"),
        (
            "request.credentials_removed",
            cond_time(&ar, "CredentialsRemoved").expect("cond"),
            "system",
        ),
    ])
}

async fn deny_flow(sim: &RunningSim, name: &str) -> Expected {
    create(sim, name, 60).await;
    wait_phase(sim, name, "Pending", 10).await;
    let at = now();
    decide(
        sim,
        name,
        "denial",
        json!({"by": ADMIN, "at": at, "reason": "<b>not today</b>"}),
    )
    .await;
    wait_phase(sim, name, "Denied", 10).await;
    let ar = wait_cleaned(sim, name).await;
    expect(&[
        ("request.created", created(&ar), JANE),
        ("request.denied", t(&at), ADMIN),
        (
            "request.credentials_removed",
            cond_time(&ar, "CredentialsRemoved").expect("cond"),
            "system",
        ),
    ])
}

async fn activate(sim: &RunningSim, name: &str, ttl: i64) -> String {
    create(sim, name, ttl).await;
    wait_phase(sim, name, "Pending", 10).await;
    let at = now();
    decide(sim, name, "approval", json!({"by": ADMIN, "at": at})).await;
    wait_phase(sim, name, "Active", 20).await;
    at
}

async fn revoke(sim: &RunningSim, name: &str) -> String {
    let at = now();
    decide(
        sim,
        name,
        "revocation",
        json!({"by": ADMIN, "at": at, "reason": "incident over"}),
    )
    .await;
    wait_phase(sim, name, "Revoked", 20).await;
    at
}

async fn revoke_flow(sim: &RunningSim, name: &str) -> Expected {
    let approved = activate(sim, name, 3600).await;
    let revoked = revoke(sim, name).await;
    let ar = wait_cleaned(sim, name).await;
    expect(&[
        ("request.created", created(&ar), JANE),
        ("request.approved", t(&approved), ADMIN),
        (
            "request.activated",
            status_time(&ar, |s| s.active_at.as_ref()),
            "system",
        ),
        ("request.revoked", t(&revoked), ADMIN),
        (
            "request.credentials_removed",
            cond_time(&ar, "CredentialsRemoved").expect("cond"),
            "system",
        ),
    ])
}

async fn withdraw_flow(sim: &RunningSim, name: &str) -> Expected {
    create(sim, name, 60).await;
    wait_phase(sim, name, "Pending", 10).await;
    let at = now();
    decide(sim, name, "withdrawal", json!({"by": JANE, "at": at})).await;
    wait_phase(sim, name, "Cancelled", 10).await;
    let ar = wait_cleaned(sim, name).await;
    expect(&[
        ("request.created", created(&ar), JANE),
        ("request.withdrawn", t(&at), JANE),
        (
            "request.credentials_removed",
            cond_time(&ar, "CredentialsRemoved").expect("cond"),
            "system",
        ),
    ])
}

/// Two extensions (each its own event), then a revocation.
async fn extend_flow(sim: &RunningSim, name: &str) -> (Expected, Vec<String>) {
    let approved = activate(sim, name, 3600).await;
    let mut ext = Vec::new();
    for (i, secs) in [600, 1200].into_iter().enumerate() {
        let at = now();
        let all: Vec<Value> = ext
            .iter()
            .map(|a: &String| json!({"by": ADMIN, "at": a, "seconds": 600}))
            .chain([json!({"by": ADMIN, "at": at, "seconds": secs})])
            .collect();
        decide(sim, name, "extensions", json!(all)).await;
        ext.push(at);
        // Wait for the controller to see it (the expiry moves).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ar = get(sim, name).await;
            let s = ar.status.expect("status");
            let (a, e) = (
                t(s.active_at.as_deref().expect("a")),
                t(s.expires_at.as_deref().expect("e")),
            );
            let total: i64 = [600, 1200][..=i].iter().sum();
            if e - a == chrono::Duration::seconds(3600 + total) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "extension {i} not applied: {}",
                serde_json::to_string(&s).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let revoked = revoke(sim, name).await;
    let ar = wait_cleaned(sim, name).await;
    let exp = expect(&[
        ("request.created", created(&ar), JANE),
        ("request.approved", t(&approved), ADMIN),
        (
            "request.activated",
            status_time(&ar, |s| s.active_at.as_ref()),
            "system",
        ),
        ("request.revoked", t(&revoked), ADMIN),
        (
            "request.credentials_removed",
            cond_time(&ar, "CredentialsRemoved").expect("cond"),
            "system",
        ),
    ]);
    (exp, ext)
}

/// The two extension events (same kind, so checked apart from `assert_events`).
async fn assert_extensions(store: &Store, name: &str, ats: &[String]) {
    let got: Vec<AuditEvent> = events_of(store, name)
        .await
        .into_iter()
        .filter(|e| e.kind == "request.extended")
        .collect();
    assert_eq!(got.len(), 2, "{name}: two extensions");
    let mut got = got;
    got.sort_by_key(|e| e.at);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.at, t(&ats[i]));
        assert!(e.key.ends_with(&format!("/request.extended/{i}")), "{}", e.key);
        assert_eq!(e.details["seconds"], [600, 1200][i]);
    }
}

async fn with_extensions(store: &Store, name: &str, mut want: Expected) -> Expected {
    // `assert_events` compares kinds one to one; extensions are checked by `assert_extensions`.
    let got = events_of(store, name).await;
    if let Some(e) = got.iter().find(|e| e.kind == "request.extended") {
        want.insert("request.extended".into(), (e.at, e.actor.clone()));
    }
    want
}

async fn assert_extend(store: &Store, name: &str, want: &Expected, ats: &[String], secs: u64) {
    // Wait for everything else first, then the extension pair.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let n = events_of(store, name).await.len();
        if n >= want.len() + 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name}: only {n} events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_extensions(store, name, ats).await;
    let got = events_of(store, name).await;
    let others: Vec<&AuditEvent> = got.iter().filter(|e| e.kind != "request.extended").collect();
    assert_eq!(others.len(), want.len(), "{name}: {others:?}");
    for e in others {
        let (at, actor) = &want[&e.kind];
        assert!(
            time_ok(name, &e.kind, e.at, *at),
            "{name}: time of {}: {} != {at}",
            e.kind,
            e.at
        );
        assert_eq!(&e.actor, actor, "{name}: {}", e.kind);
    }
    let _ = with_extensions;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycles_are_recorded_exactly_once() {
    let sim = sim().await;
    let probe = Timeline::start(&sim).await;
    let ctl = controller(&sim, config(0, "pendingExpirySeconds: 3\n")).await;
    let (store, _dir) = common::sqlite_store().await;
    let (rec, healthy) = recorder(&sim, &store).await;

    let (exp, deny, rev, wd, (ext, ext_at)) = tokio::join!(
        expire_flow(&sim, "expire"),
        deny_flow(&sim, "deny"),
        revoke_flow(&sim, "revoke"),
        withdraw_flow(&sim, "withdraw"),
        extend_flow(&sim, "extend"),
    );
    // Nobody decides: the controller denies after pendingExpirySeconds.
    create(&sim, "unanswered", 60).await;
    wait_phase(&sim, "unanswered", "Denied", 20).await;
    let ar = wait_cleaned(&sim, "unanswered").await;
    let auto = expect(&[
        ("request.created", created(&ar), JANE),
        (
            "request.auto_denied",
            status_time(&ar, |s| s.ended_at.as_ref()),
            "system",
        ),
        (
            "request.credentials_removed",
            cond_time(&ar, "CredentialsRemoved").expect("cond"),
            "system",
        ),
    ]);

    for (name, want) in [
        ("expire", &exp),
        ("deny", &deny),
        ("revoke", &rev),
        ("withdraw", &wd),
        ("unanswered", &auto),
    ] {
        assert_events(&store, name, want, 20).await;
    }
    assert_extend(&store, "extend", &ext, &ext_at, 20).await;
    assert!(healthy.load(Ordering::Relaxed));

    // History rows.
    let h = store.get_request("revoke").await.unwrap().expect("history");
    assert_eq!((h.phase.as_str(), h.decided_by.as_deref()), ("Revoked", Some(ADMIN)));
    assert_eq!(h.reason, "debugging '; DROP TABLE audit_events; -- <script>");
    assert_eq!(
        store
            .get_request("unanswered")
            .await
            .unwrap()
            .unwrap()
            .decided_by
            .as_deref(),
        Some("system")
    );

    // Deletion: recorded once, history kept.
    api(sim.client().await.unwrap())
        .delete("deny", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if store.get_request("deny").await.unwrap().unwrap().deleted_at.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "deletion not recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let del: Vec<_> = events_of(&store, "deny")
        .await
        .into_iter()
        .filter(|e| e.kind == "request.deleted")
        .collect();
    assert_eq!(del.len(), 1);
    assert_eq!(del[0].actor, "system");
    assert_eq!(del[0].details["by_retention"], false);
    assert_eq!(del[0].details["phase"], "Denied");

    // Nothing recorded twice after everything settled (re-derivations on every update).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = store
        .audit_events(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut keys: Vec<_> = all.iter().map(|e| e.key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), all.len());
    assert_eq!(all.len(), 5 + 3 + 5 + 3 + 7 + 3 + 1);
    rec.stop().await;
    ctl.stop().await;
    probe.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_recorder_rederives_missed_transitions_with_real_times() {
    let sim = sim().await;
    let probe = Timeline::start(&sim).await;
    let ctl = controller(&sim, config(0, "")).await;
    let (store, _dir) = common::sqlite_store().await;
    let (rec, _) = recorder(&sim, &store).await;
    let approved = activate(&sim, "before", 3600).await;
    let want_early = expect(&[
        ("request.created", created(&get(&sim, "before").await), JANE),
        ("request.approved", t(&approved), ADMIN),
        (
            "request.activated",
            status_time(&get(&sim, "before").await, |s| s.active_at.as_ref()),
            "system",
        ),
    ]);
    assert_events(&store, "before", &want_early, 20).await;
    let gone = deny_flow(&sim, "gone").await;
    assert_events(&store, "gone", &gone, 20).await;
    rec.stop().await;

    // While no recorder runs: a revocation, a whole new request, and a deletion.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let revoked = revoke(&sim, "before").await;
    let ar = wait_cleaned(&sim, "before").await;
    let mut want = want_early.clone();
    want.insert("request.revoked".into(), (t(&revoked), ADMIN.into()));
    want.insert(
        "request.credentials_removed".into(),
        (cond_time(&ar, "CredentialsRemoved").unwrap(), "system".into()),
    );
    let unseen = withdraw_flow(&sim, "unseen").await;
    // "gone" is deleted while nothing watches.
    api(sim.client().await.unwrap())
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while api(sim.client().await.unwrap())
        .get_opt("gone")
        .await
        .unwrap()
        .is_some()
    {
        assert!(tokio::time::Instant::now() < deadline, "not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (rec, _) = recorder(&sim, &store).await;
    assert_events(&store, "before", &want, 20).await;
    assert_events(&store, "unseen", &unseen, 20).await;
    // Its events carry the times they happened, not the recorder's.
    let recorded = events_of(&store, "before").await;
    let rev = recorded.iter().find(|e| e.kind == "request.revoked").unwrap();
    assert!(Utc::now() - rev.at > chrono::Duration::seconds(1));
    // The deletion missed while down is noticed at the re-list (its time is when it was noticed).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if store.get_request("gone").await.unwrap().unwrap().deleted_at.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "missed deletion not noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let del: Vec<_> = events_of(&store, "gone")
        .await
        .into_iter()
        .filter(|e| e.kind == "request.deleted")
        .collect();
    assert_eq!(del.len(), 1, "{del:?}");
    rec.stop().await;
    ctl.stop().await;
    probe.abort();
}

/// A PostgreSQL cluster of this test's own (scripts/pg-throwaway.sh), stopped and deleted on drop.
struct OwnPostgres {
    dir: String,
    url: String,
}

fn pg_script(args: &[&str]) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-throwaway.sh");
    let out = std::process::Command::new(script)
        .args(args)
        .output()
        .expect("pg-throwaway.sh runs");
    assert!(
        out.status.success(),
        "pg-throwaway.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl OwnPostgres {
    fn start() -> Self {
        let out = pg_script(&["start"]);
        let get = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} missing in {out}"))
                .to_string()
        };
        Self {
            dir: get("PG_THROWAWAY_DIR"),
            url: get("JANUS_TEST_POSTGRES_URL"),
        }
    }
    fn pause(&self) {
        pg_script(&["pause", &self.dir]);
    }
    fn resume(&self) {
        pg_script(&["resume", &self.dir]);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-throwaway.sh");
        let _ = std::process::Command::new(script).args(["stop", &self.dir]).output();
    }
}

async fn wait_flag(flag: &AtomicBool, want: bool, secs: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while flag.load(Ordering::Relaxed) != want {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_loses_nothing() {
    // Runs where the shared test cluster is configured (scripts/test.sh); uses a cluster of its own so
    // stopping it disturbs no other test.
    if common::pg_url().is_none() {
        return;
    }
    let pg = OwnPostgres::start();
    let store = Store::connect(&pg.url, None).await.expect("store");
    let sim = sim().await;
    let probe = Timeline::start(&sim).await;
    let ctl = controller(&sim, config(0, "pendingExpirySeconds: 0\n")).await;
    let (rec, healthy) = recorder(&sim, &store).await;

    // Before the outage.
    let expired = expire_flow(&sim, "o-expire").await;
    let approved = activate(&sim, "o-revoke", 3600).await;
    assert_events(&store, "o-expire", &expired, 20).await;

    let writer = janus_store::writer::AuditWriter::spawn(store.clone(), 1000);
    pg.pause();
    // Web events recorded during the outage are buffered.
    // At the stored precision (microseconds).
    let login_at = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("now");
    for i in 0..5 {
        assert!(writer.record(janus_store::NewAuditEvent {
            key: format!("web/login/{i}"),
            kind: janus_store::AuditKind::LoginSucceeded,
            at: login_at + chrono::Duration::milliseconds(i),
            actor: JANE.into(),
            request: None,
            cluster: None,
            namespaces: vec![],
            details: json!({"method": "local"}),
        }));
    }
    // During the outage: a revocation, whole lifecycles, and a deletion.
    let revoked = revoke(&sim, "o-revoke").await;
    let (denied, withdrawn) = tokio::join!(deny_flow(&sim, "o-deny"), withdraw_flow(&sim, "o-withdraw"));
    api(sim.client().await.unwrap())
        .delete("o-expire", &DeleteParams::default())
        .await
        .unwrap();
    wait_flag(&healthy, false, 30, "the recorder never noticed the outage").await;
    assert!(store.ping().await.is_err());
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.resume();
    wait_flag(&healthy, true, 60, "the recorder did not recover").await;

    let ar = get(&sim, "o-revoke").await;
    let revoke_want = expect(&[
        ("request.created", created(&ar), JANE),
        ("request.approved", t(&approved), ADMIN),
        (
            "request.activated",
            status_time(&ar, |s| s.active_at.as_ref()),
            "system",
        ),
        ("request.revoked", t(&revoked), ADMIN),
        (
            "request.credentials_removed",
            cond_time(&ar, "CredentialsRemoved").expect("cond"),
            "system",
        ),
    ]);
    assert_events(&store, "o-revoke", &revoke_want, 60).await;
    assert_events(&store, "o-deny", &denied, 60).await;
    assert_events(&store, "o-withdraw", &withdrawn, 60).await;
    let mut expired_then_deleted = expired.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let deleted = loop {
        let evs = events_of(&store, "o-expire").await;
        if let Some(d) = evs.iter().find(|e| e.kind == "request.deleted") {
            break d.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deletion during the outage not recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    expired_then_deleted.insert("request.deleted".into(), (deleted.at, "system".into()));
    assert_events(&store, "o-expire", &expired_then_deleted, 10).await;
    assert!(deleted.at <= Utc::now() && Utc::now() - deleted.at < chrono::Duration::seconds(120));
    assert!(
        store
            .get_request("o-expire")
            .await
            .unwrap()
            .unwrap()
            .deleted_at
            .is_some()
    );
    assert_eq!(store.get_request("o-revoke").await.unwrap().unwrap().phase, "Revoked");
    tokio::time::timeout(Duration::from_secs(60), writer.flush())
        .await
        .expect("buffered web events written");
    let logins = store
        .audit_events(&AuditQuery {
            kind: Some("login.succeeded".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logins.len(), 5);
    assert!(
        logins
            .iter()
            .all(|e| e.at >= login_at && e.at < login_at + chrono::Duration::milliseconds(5))
    );
    assert!(writer.healthy().load(Ordering::Relaxed));
    rec.stop().await;
    ctl.stop().await;
    probe.abort();
    store.close().await;
}

// ---- approval policies (issue 15) ----

const POLICY: &str = "policies:
- name: prod
  match: {namespaces: [team-a]}
  approvers: {emails: [a1@example.com, a2@example.com, a3@example.com]}
  approvalsRequired: 2
  breakGlass: {groups: [oncall], maxTtlSeconds: 600}
  autoApprove: {groups: [auto-ok], maxTtlSeconds: 900}
";

/// Creates a request by Jane for team-a with `extra` spec fields.
async fn create_with(sim: &RunningSim, name: &str, ttl: i64, extra: Value) {
    let mut spec = json!({"requester": JANE, "cluster": "central", "namespaces": ["team-a"],
                          "reason": "INC-9: \"payments\" down", "ttlSeconds": ttl});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    let ar: AccessRequest = serde_json::from_value(json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("request");
    api(sim.client().await.expect("client"))
        .create(&PostParams::default(), &ar)
        .await
        .expect("create");
}

/// Appends an approval to `spec.approvals` straight into the CRD (as the web, or anyone with write
/// access, can) and returns its time.
async fn approve(sim: &RunningSim, name: &str, by: &str, comment: &str) -> String {
    let at = now();
    let mut list = serde_json::to_value(&get(sim, name).await.spec.approvals).expect("approvals");
    // Empty fields are left out, as the typed entries serialize them: the earlier entries sent back
    // must equal the stored ones (the CEL rule keeps entries immutable).
    let mut entry = json!({"by": by, "at": at});
    if !comment.is_empty() {
        entry["comment"] = json!(comment);
    }
    list.as_array_mut().expect("a list").push(entry);
    decide(sim, name, "approvals", list).await;
    at
}

/// Waits until the store holds events with exactly `want` keys for `name`; returns them by key.
async fn events_by_key(store: &Store, name: &str, want: &[String], secs: u64) -> BTreeMap<String, AuditEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = events_of(store, name).await;
        let mut keys: Vec<String> = got.iter().map(|e| e.key.clone()).collect();
        keys.sort();
        let mut expected = want.to_vec();
        expected.sort();
        if keys == expected {
            return got.into_iter().map(|e| (e.key.clone(), e)).collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: wanted {expected:?}, recorded {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_approvals_auto_approval_break_glass_and_scheduling_are_recorded_once() {
    let sim = sim().await;
    let ctl = controller(&sim, config(0, POLICY)).await;
    let (store, _dir) = common::sqlite_store().await;
    let (rec, _healthy) = recorder(&sim, &store).await;

    // 2-of-3 quorum, after an approval patched in by someone the policy does not name.
    create_with(&sim, "quorum", 600, json!({})).await;
    wait_phase(&sim, "quorum", "Pending", 10).await;
    let mallory_at = approve(&sim, "quorum", "mallory@example.com", "trust me").await;
    let a1_at = approve(&sim, "quorum", "a1@example.com", "ok, seen INC-9").await;
    let a2_at = approve(&sim, "quorum", "a2@example.com", "").await;
    let ar = wait_phase(&sim, "quorum", "Active", 20).await;
    let uid = ar.metadata.uid.clone().expect("uid");
    let keys: Vec<String> = [
        "request.created",
        "request.approval_given/0",
        "request.approval_ignored/0",
        "request.approval_given/1",
        "request.approval_given/2",
        "request.approved",
        "request.activated",
    ]
    .iter()
    .map(|k| format!("{uid}/{k}"))
    .collect();
    let evs = events_by_key(&store, "quorum", &keys, 20).await;
    let ev = |k: &str| &evs[&format!("{uid}/{k}")];
    let ignored = ev("request.approval_ignored/0");
    assert_eq!(
        (ignored.actor.as_str(), ignored.at),
        ("mallory@example.com", t(&mallory_at))
    );
    assert_eq!(
        ignored.details["reason"], "mallory@example.com: not an approver of policy prod",
        "{ignored:?}"
    );
    let a1 = ev("request.approval_given/1");
    assert_eq!((a1.actor.as_str(), a1.at), ("a1@example.com", t(&a1_at)));
    assert_eq!(a1.details["comment"], "ok, seen INC-9");
    assert_eq!(a1.details["policy"], "prod");
    // Approved when the second counted approval arrived, by that approver.
    let approved = ev("request.approved");
    assert_eq!((approved.actor.as_str(), approved.at), ("a2@example.com", t(&a2_at)));
    assert_eq!(approved.details["via"], "quorum");
    assert_eq!(
        approved.details["approvers"],
        json!(["a1@example.com", "a2@example.com"])
    );
    assert_eq!(approved.details["policy"], "prod");
    let h = store.get_request("quorum").await.unwrap().expect("history");
    assert_eq!(h.policy.as_deref(), Some("prod"));
    assert_eq!(h.approvals, ["mallory@example.com", "a1@example.com", "a2@example.com"]);
    assert_eq!(h.approved_by.as_deref(), Some("a1@example.com, a2@example.com"));
    assert!(!h.break_glass && !h.auto_approved);

    // Break-glass: active at once, flagged, then reviewed by an approver of the policy.
    let bg_at = now();
    create_with(
        &sim,
        "glass",
        300,
        json!({"requesterGroups": ["oncall"], "breakGlass": {"at": bg_at}}),
    )
    .await;
    let ar = wait_phase(&sim, "glass", "Active", 20).await;
    let uid = ar.metadata.uid.clone().expect("uid");
    let review_at = now();
    decide(
        &sim,
        "glass",
        "breakGlassReview",
        json!({"by": "a3@example.com", "at": review_at, "comment": "justified; postmortem OPS-12"}),
    )
    .await;
    let keys: Vec<String> = [
        "request.created",
        "request.approved",
        "request.break_glass",
        "request.activated",
        "request.break_glass_reviewed",
    ]
    .iter()
    .map(|k| format!("{uid}/{k}"))
    .collect();
    let evs = events_by_key(&store, "glass", &keys, 20).await;
    let ev = |k: &str| &evs[&format!("{uid}/{k}")];
    assert_eq!(ev("request.created").details["break_glass"], true);
    let bg = ev("request.break_glass");
    assert_eq!((bg.actor.as_str(), bg.at), (JANE, t(&bg_at)));
    assert_eq!(bg.details["reason"], "INC-9: \"payments\" down");
    assert_eq!(bg.details["policy"], "prod");
    assert_eq!(ev("request.approved").details["via"], "break_glass");
    let review = ev("request.break_glass_reviewed");
    assert_eq!((review.actor.as_str(), review.at), ("a3@example.com", t(&review_at)));
    assert_eq!(review.details["comment"], "justified; postmortem OPS-12");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let h = loop {
        let h = store.get_request("glass").await.unwrap().expect("history");
        if h.break_glass_reviewed_by.is_some() {
            break h;
        }
        assert!(tokio::time::Instant::now() < deadline, "review not in history: {h:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(h.break_glass);
    assert_eq!(h.break_glass_reviewed_by.as_deref(), Some("a3@example.com"));
    assert_eq!(h.approved_by.as_deref(), Some("system:break-glass"));

    // Auto-approval: no person, marked as such.
    create_with(&sim, "auto", 600, json!({"requesterGroups": ["auto-ok"]})).await;
    let ar = wait_phase(&sim, "auto", "Active", 20).await;
    let uid = ar.metadata.uid.clone().expect("uid");
    let approved_at = status_time(&ar, |s| s.approved_at.as_ref());
    let keys: Vec<String> = [
        "request.created",
        "request.approved",
        "request.auto_approved",
        "request.activated",
    ]
    .iter()
    .map(|k| format!("{uid}/{k}"))
    .collect();
    let evs = events_by_key(&store, "auto", &keys, 20).await;
    for k in ["request.approved", "request.auto_approved"] {
        let e = &evs[&format!("{uid}/{k}")];
        assert_eq!((e.actor.as_str(), e.at), ("system:auto-approval", approved_at), "{k}");
        assert_eq!(e.details["policy"], "prod", "{k}");
    }
    let h = store.get_request("auto").await.unwrap().expect("history");
    assert!(h.auto_approved);
    assert_eq!(h.approved_by.as_deref(), Some("system:auto-approval"));

    // Scheduled: approved ahead, Scheduled until startAt, then Active.
    let start = (Utc::now() + chrono::Duration::seconds(6)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    create_with(&sim, "later", 600, json!({"startAt": start})).await;
    wait_phase(&sim, "later", "Pending", 10).await;
    approve(&sim, "later", "a1@example.com", "").await;
    let a3_at = approve(&sim, "later", "a3@example.com", "for the maintenance window").await;
    let scheduled = wait_phase(&sim, "later", "Scheduled", 10).await;
    let scheduled_at = cond_time(&scheduled, "Scheduled").expect("Scheduled condition");
    let ar = wait_phase(&sim, "later", "Active", 20).await;
    let uid = ar.metadata.uid.clone().expect("uid");
    let keys: Vec<String> = [
        "request.created",
        "request.approval_given/0",
        "request.approval_given/1",
        "request.approved",
        "request.scheduled",
        "request.activated",
    ]
    .iter()
    .map(|k| format!("{uid}/{k}"))
    .collect();
    let evs = events_by_key(&store, "later", &keys, 20).await;
    let ev = |k: &str| &evs[&format!("{uid}/{k}")];
    assert_eq!(ev("request.approved").at, t(&a3_at));
    let s = ev("request.scheduled");
    assert_eq!((s.actor.as_str(), s.at), ("system", scheduled_at));
    assert_eq!(s.details["start_at"], start.as_str());
    assert!(
        ev("request.activated").at >= t(&start),
        "activated at its start, not before"
    );
    assert_eq!(
        store.get_request("later").await.unwrap().expect("history").start_at,
        Some(t(&start))
    );

    // Every later re-derivation (status updates, resyncs) inserted nothing twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = store
        .audit_events(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut keys: Vec<_> = all.iter().map(|e| e.key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!((keys.len(), all.len()), (22, 22));
    rec.stop().await;
    ctl.stop().await;
}
