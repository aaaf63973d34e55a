//! A status written by someone else while a grant is issuing credentials (issue 19 review of the
//! resourceVersion-precondition Active write): another controller (a stale or new leader during
//! failover) or the overdue sweep ends the request, the grant's Active write is refused (409), and the
//! request read again must not be declared Active over that decision; the credentials the grant just
//! issued are taken back.
//!
//! Kubesim-only: the API server is slowed down (fault injection) and the controller runs in this
//! process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod calls;
mod common;

use std::time::{Duration, Instant};

use calls::{Calls, approved_with_slow_grant};
use common::*;
use janus_api::AccessRequest;
use janus_testkit::kubesim_only;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

#[tokio::test]
async fn a_status_ended_by_another_writer_during_the_grant_is_never_overwritten_with_active() {
    if kubesim_only(
        "a_status_ended_by_another_writer_during_the_grant_is_never_overwritten_with_active",
        "needs fault injection (API latency)",
    ) {
        return;
    }
    let sim = central().await;
    let calls = Calls::default();
    // The other writer ends the request while the grant is still issuing credentials.
    let (_ctl, (seen, recorder)) = approved_with_slow_grant(&sim, "overrun", &calls).await;
    let api: Api<AccessRequest> = Api::all(sim.client().await.expect("client"));
    // What an overdue sweep or another leader writes: a terminal phase, credentials (as it saw them,
    // none yet) removed. A status write does not wake this controller's reconcile.
    let ended = now();
    let status = json!({
        "phase": "Expired",
        "message": "access expired (written by another controller)",
        "endedAt": ended,
        "conditions": [
            {"type": "Expired", "status": "True", "reason": "Expired",
             "message": "access expired (written by another controller)", "lastTransitionTime": ended},
            {"type": "CredentialsRemoved", "status": "True", "reason": "Removed",
             "message": "all credentials removed", "lastTransitionTime": ended}
        ]
    });
    api.patch_status(
        "overrun",
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .expect("status written by the other writer");
    let written = Instant::now();
    sim.cluster.faults.clear();

    // The credentials the grant issued meanwhile are gone within a generous bound.
    let mut left = leftovers(&sim, &sim, "overrun").await;
    while !left.is_empty() && written.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = leftovers(&sim, &sim, "overrun").await;
    }
    // Past the grant's own 1.5 s calls and its Active write: the outcome has settled.
    if let Some(rest) = Duration::from_secs(5).checked_sub(written.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    recorder.abort();
    let seen = seen.lock().unwrap().clone();
    let last = phase(&get(&sim, "overrun").await.expect("the request"));
    assert!(
        !seen.contains(&"Active".to_string()),
        "a request ended by another writer during the grant was declared Active: {seen:?}"
    );
    assert_eq!(last, "Expired", "{seen:?}");
    assert!(
        left.is_empty(),
        "credentials left 5 s after the request ended: {left:?}"
    );
    assert!(leftovers(&sim, &sim, "overrun").await.is_empty());
}
