//! The calls a grant and a revocation make, in order (issue 19, "one request at a time"): the
//! namespaces of a request are granted at the same time, the Active write needs no second read of the
//! request, a revocation's first call deletes the RoleBindings (then the ServiceAccounts), and a
//! decision that arrives while credentials are being issued is never declared Active.
//!
//! Kubesim-only: the controller's client is recorded in this process, and the last test slows the
//! API server down (fault injection).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod calls;
mod common;

use std::time::Duration;

use calls::{Call, Calls, Ctl, approved_with_slow_grant};
use common::*;
use janus_api::names;
use janus_testkit::kubesim_only;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;

const NAMESPACES: [&str; 3] = ["team-a", "team-b", "team-c"];

/// The calls that act on the request or its credentials: no Events (published in the background)
/// and no watches.
fn acting(calls: Vec<Call>) -> Vec<Call> {
    calls
        .into_iter()
        .filter(|c| !c.kind.ends_with(" events") && !c.kind.starts_with("watch "))
        .collect()
}

fn kinds(calls: &[Call]) -> Vec<&str> {
    calls.iter().map(|c| c.kind.as_str()).collect()
}

async fn pods_answer(sim: &kubesim::RunningSim, ns: &str, token: &str) -> Result<(), u16> {
    let pods: Api<Pod> = Api::namespaced(sim.client_for_token(token).await.expect("client"), ns);
    match pods.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(s.code),
        Err(e) => panic!("unexpected answer: {e}"),
    }
}

#[tokio::test]
async fn a_grant_runs_its_namespaces_together_and_a_revocation_cuts_access_first() {
    if kubesim_only(
        "a_grant_runs_its_namespaces_together_and_a_revocation_cuts_access_first",
        "records the calls of a controller in this process",
    ) {
        return;
    }
    let sim = central().await;
    let calls = Calls::default();
    let _ctl = Ctl::start(&sim, config(""), None, &calls).await;
    create(&sim, &request("paths", "central", &NAMESPACES, 600)).await;
    wait_phase(&sim, "paths", "Pending", 10).await;
    // The Pending reconcile's Events settle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mark = calls.len();
    approve(&sim, "paths").await;
    wait_phase(&sim, "paths", "Active", 10).await;
    let grant = acting(calls.since(mark));
    let grant_kinds = kinds(&grant);
    // Every namespace's ServiceAccount is asked for before any RoleBinding: the namespaces run
    // together, not one after the other.
    let first_binding = grant_kinds
        .iter()
        .position(|k| *k == "create rolebindings")
        .expect("RoleBindings created");
    let accounts_before = grant_kinds[..first_binding]
        .iter()
        .filter(|k| **k == "create serviceaccounts")
        .count();
    assert_eq!(
        accounts_before,
        NAMESPACES.len(),
        "ServiceAccounts of all namespaces before the first RoleBinding: {grant_kinds:?}"
    );
    // One read of the request (the reconcile's fresh one): the Active write carries the
    // resourceVersion as a precondition instead of a second read.
    assert_eq!(
        grant_kinds.iter().filter(|k| **k == "get accessrequests").count(),
        1,
        "{grant_kinds:?}"
    );
    assert_eq!(
        grant_kinds
            .iter()
            .filter(|k| **k == "patch accessrequests/status")
            .count(),
        2,
        "Approved, then Active: {grant_kinds:?}"
    );

    let tokens = tokens(&sim, "paths").await;
    assert_eq!(tokens.len(), NAMESPACES.len());
    for (ns, token) in &tokens {
        assert_eq!(pods_answer(&sim, ns, token).await, Ok(()), "{ns}: the token works");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mark = calls.len();
    decide(
        &sim,
        "paths",
        "revocation",
        json!({"by": "admin@example.com", "at": now(), "reason": "done"}),
    )
    .await;
    wait_phase(&sim, "paths", "Revoked", 10).await;
    let revocation = acting(calls.since(mark));
    // First the RoleBindings (the token is refused at once), then the ServiceAccounts, each by the
    // name the controller derives, before anything is read or listed.
    let n = NAMESPACES.len();
    let first: Vec<&Call> = revocation.iter().take(2 * n).collect();
    for (i, c) in first.iter().enumerate() {
        let want = if i < n {
            "delete rolebindings"
        } else {
            "delete serviceaccounts"
        };
        assert_eq!(c.kind, want, "call {i} of the revocation: {:?}", kinds(&revocation));
    }
    let mut deleted: Vec<&str> = first[..n].iter().map(|c| c.path.as_str()).collect();
    deleted.sort();
    let mut want: Vec<String> = NAMESPACES
        .iter()
        .map(|ns| {
            format!(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/{}",
                names::grant_name("paths", ns)
            )
        })
        .collect();
    want.sort();
    assert_eq!(deleted, want);
    // The label-based cleanup still follows, and leaves nothing.
    assert!(kinds(&revocation).contains(&"list rolebindings"));
    assert!(leftovers(&sim, &sim, "paths").await.is_empty());
    for (ns, token) in &tokens {
        assert_token_dead(&sim, ns, token).await;
    }
    // The revocation's reconcile read the request once; the token Secrets' deletions (its own) and its
    // status write's echo brought no other.
    let reads = calls
        .since(mark)
        .iter()
        .filter(|c| c.kind == "get accessrequests")
        .count();
    assert_eq!(reads, 1, "{:?}", kinds(&acting(calls.since(mark))));
}

#[tokio::test]
async fn a_revocation_during_the_grant_is_never_declared_active() {
    if kubesim_only(
        "a_revocation_during_the_grant_is_never_declared_active",
        "needs fault injection (API latency)",
    ) {
        return;
    }
    let sim = central().await;
    let calls = Calls::default();
    // The revocation comes while the grant is still issuing credentials.
    let (_ctl, (seen, recorder)) = approved_with_slow_grant(&sim, "race", &calls).await;
    decide(
        &sim,
        "race",
        "revocation",
        json!({"by": "admin@example.com", "at": now(), "reason": "changed my mind"}),
    )
    .await;
    wait_phase(&sim, "race", "Revoked", 30).await;
    sim.cluster.faults.clear();
    tokio::time::sleep(Duration::from_millis(300)).await;
    recorder.abort();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&"Approved".to_string()), "{seen:?}");
    assert!(
        !seen.contains(&"Active".to_string()),
        "a request revoked while its credentials were issued was declared Active: {seen:?}"
    );
    // The grant's Active write (over the version it was judged on) was refused, and only then was the
    // request read again, which found the revocation.
    let all = acting(calls.since(0));
    let all_kinds = kinds(&all);
    let last_secret = all_kinds
        .iter()
        .rposition(|k| *k == "create secrets")
        .expect("the grant wrote its token Secrets");
    assert_eq!(
        all_kinds[last_secret + 1..].iter().take(2).copied().collect::<Vec<_>>(),
        ["patch accessrequests/status", "get accessrequests"],
        "{all_kinds:?}"
    );
    assert!(leftovers(&sim, &sim, "race").await.is_empty());
}

/// A controller in this process with its calls recorded, and a request `name` it has judged Pending; the
/// mark is taken before the request was created, and whatever the finalizer's watch event would bring
/// has had time to come.
async fn judged_pending(name: &str) -> (kubesim::RunningSim, Calls, Ctl, usize) {
    let sim = central().await;
    let calls = Calls::default();
    let ctl = Ctl::start(&sim, config(""), None, &calls).await;
    let mark = calls.len();
    create(&sim, &request(name, "central", &["team-a"], 600)).await;
    wait_phase(&sim, name, "Pending", 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    (sim, calls, ctl, mark)
}

/// A new request is judged once: its status write carries the resourceVersion the finalizer patch
/// left, not the one read before it (which made every new request's first write fail with a conflict
/// and its judging, a read on the target cluster included, run twice).
#[tokio::test]
async fn a_new_request_is_judged_once() {
    if kubesim_only(
        "a_new_request_is_judged_once",
        "records the calls of a controller in this process",
    ) {
        return;
    }
    let (_sim, calls, _ctl, mark) = judged_pending("once").await;
    let judged = acting(calls.since(mark));
    let judged_kinds = kinds(&judged);
    let count = |kind: &str| judged_kinds.iter().filter(|k| **k == kind).count();
    assert_eq!(count("patch accessrequests"), 1, "the finalizer: {judged_kinds:?}");
    assert_eq!(
        count("patch accessrequests/status"),
        1,
        "one status write, not a refused one and another: {judged_kinds:?}"
    );
}

/// A request is read once per change it brings (its creation, its approval): the finalizer's echo, and
/// an event whose change a reconcile already read fresh, start no reconcile of their own.
#[tokio::test]
async fn a_request_is_read_once_per_change_it_brings() {
    if kubesim_only(
        "a_request_is_read_once_per_change_it_brings",
        "records the calls of a controller in this process",
    ) {
        return;
    }
    let (sim, calls, _ctl, mark) = judged_pending("reads").await;
    approve(&sim, "reads").await;
    wait_phase(&sim, "reads", "Active", 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let made = acting(calls.since(mark));
    // Up to the Active write: the token Secret's own watch event may come before the controller has
    // noted the write it echoes, and then brings one more reconcile (taken for drift, harmlessly).
    let active_write = made
        .iter()
        .rposition(|c| c.kind == "patch accessrequests/status")
        .expect("the Active write");
    let reads = made[..active_write]
        .iter()
        .filter(|c| c.kind == "get accessrequests")
        .count();
    // The creation and the approval; the finalizer the first reconcile added is nothing new to it.
    assert_eq!(reads, 2, "{:?}", kinds(&made));
}

#[tokio::test]
async fn a_finalizer_added_while_the_controller_adds_its_own_is_kept() {
    if kubesim_only(
        "a_finalizer_added_while_the_controller_adds_its_own_is_kept",
        "slows the API server down (fault injection)",
    ) {
        return;
    }
    let sim = central().await;
    // The reconcile's read of the request and its finalizer patch are each held back 1.5 s before the
    // API server serves them; the other controller's finalizer lands between the two.
    let faults = &sim.simulated().expect("kubesim").cluster.faults;
    faults.set(kubesim::faults::FaultConfig {
        path_contains: "accessrequests/keepfin".into(),
        latency_ms: 1_500,
        times: Some(2),
        ..Default::default()
    });
    let calls = Calls::default();
    let _ctl = Ctl::start(&sim, config(""), None, &calls).await;
    create(&sim, &request("keepfin", "central", &["team-a"], 600)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while faults.get().times != Some(0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the controller never read the request"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both held-back calls are in: the read has answered (without this finalizer) and the patch
    // waits.
    let api: Api<janus_api::AccessRequest> = Api::all(sim.admin().await);
    api.patch(
        "keepfin",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"finalizers": ["example.com/other"]}})),
    )
    .await
    .expect("the other controller's finalizer");
    wait_phase(&sim, "keepfin", "Pending", 15).await;
    let stored = get(&sim, "keepfin").await.expect("stored");
    let finalizers = stored.metadata.finalizers.unwrap_or_default();
    assert!(
        finalizers.iter().any(|f| f == "example.com/other"),
        "the other controller's finalizer was dropped: {finalizers:?}"
    );
    assert!(
        finalizers.iter().any(|f| f == janus_api::FINALIZER),
        "ours is missing: {finalizers:?}"
    );
}

/// Once a namespace's ServiceAccount is the grant's, its RoleBinding and its token are asked for
/// together: the token request does not wait for the binding's answer (held 3 s here).
#[tokio::test]
async fn a_grants_binding_and_token_do_not_wait_for_each_other() {
    if kubesim_only(
        "a_grants_binding_and_token_do_not_wait_for_each_other",
        "needs fault injection (API latency)",
    ) {
        return;
    }
    let sim = central().await;
    let calls = Calls::default();
    let _ctl = Ctl::start(&sim, config(""), None, &calls).await;
    create(&sim, &request("together", "central", &["team-a"], 600)).await;
    wait_phase(&sim, "together", "Pending", 10).await;
    let held = Duration::from_secs(3);
    sim.cluster.faults.set(kubesim::faults::FaultConfig {
        latency_ms: held.as_millis() as u64,
        path_contains: "/namespaces/team-a/rolebindings".into(),
        ..Default::default()
    });
    let mark = calls.len();
    approve(&sim, "together").await;
    wait_phase(&sim, "together", "Active", 20).await;
    sim.cluster.faults.clear();
    let grant = acting(calls.since(mark));
    let sent = |kind: &str| {
        grant
            .iter()
            .find(|c| c.kind == kind)
            .unwrap_or_else(|| panic!("no {kind}: {:?}", kinds(&grant)))
            .at
    };
    let (binding, token) = (sent("create rolebindings"), sent("create serviceaccounts/token"));
    let account = sent("create serviceaccounts");
    assert!(
        account <= binding && account <= token,
        "the ServiceAccount first: {:?}",
        kinds(&grant)
    );
    assert!(
        token.saturating_duration_since(binding) < held / 2,
        "the token was asked for {:?} after the binding, whose answer took {held:?}",
        token.saturating_duration_since(binding)
    );
    let tokens = tokens(&sim, "together").await;
    assert_eq!(
        pods_answer(&sim, "team-a", &tokens[0].1).await,
        Ok(()),
        "the token works"
    );
}

/// A RoleBinding by the grant's name that is not the grant's own fails the grant; the token issued
/// beside it is taken back with its ServiceAccount and Secret, and the foreign binding is left alone.
#[tokio::test]
async fn a_foreign_binding_by_the_grants_name_fails_the_grant_and_takes_its_token_back() {
    use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
    if kubesim_only(
        "a_foreign_binding_by_the_grants_name_fails_the_grant_and_takes_its_token_back",
        "records the calls of a controller in this process",
    ) {
        return;
    }
    let sim = central().await;
    let calls = Calls::default();
    let _ctl = Ctl::start(&sim, config(""), None, &calls).await;
    let name = names::grant_name("squat", "team-a");
    let bindings: Api<RoleBinding> = Api::namespaced(sim.client().await.unwrap(), "team-a");
    let foreign = RoleBinding {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "view".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: "someone@example.com".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        }]),
    };
    bindings.create(&Default::default(), &foreign).await.unwrap();
    create(&sim, &request("squat", "central", &["team-a"], 600)).await;
    wait_phase(&sim, "squat", "Pending", 10).await;
    approve(&sim, "squat").await;
    let failed = wait_phase(&sim, "squat", "Failed", 20).await;
    let message = failed.status.map(|s| s.message).unwrap_or_default();
    assert!(message.contains("does not belong to this request"), "{message}");
    let issued = acting(calls.since(0));
    assert!(
        kinds(&issued).contains(&"create secrets"),
        "the token half ran to its end beside the refused binding: {:?}",
        kinds(&issued)
    );
    assert!(
        leftovers(&sim, &sim, "squat").await.is_empty(),
        "the grant's credentials are gone"
    );
    assert!(tokens(&sim, "squat").await.is_empty());
    let kept = bindings.get(&name).await.unwrap();
    assert_eq!(kept.subjects, foreign.subjects, "the foreign binding is untouched");
    assert_eq!(kept.role_ref, foreign.role_ref);
}
