//! Approval policies enforced by the controller, end to end with the chart's RBAC: quorum of distinct
//! eligible approvers, approvals written straight into the CRD by people who may not approve,
//! namespace owners, reason patterns, namespaces under different policies, auto-approval windows,
//! break-glass, the policy's pending expiry, and scheduled access (`startAt`) across a restart.
//!
//! Every request here is written directly into the CRD, as a client other than the web could: the
//! controller is the authority and must hold the line without the web's checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use janus_api::access_request::reasons;
use janus_api::{AccessRequest, Condition, PolicyStatus};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

const REQUESTER: &str = "jane@example.com";

/// A request by [`REQUESTER`] with `extra` spec fields (requesterGroups, startAt, breakGlass, reason).
fn req(name: &str, namespaces: &[&str], ttl: i64, extra: Value) -> AccessRequest {
    let mut spec = json!({
        "requester": REQUESTER, "cluster": "central", "namespaces": namespaces,
        "reason": "debugging", "ttlSeconds": ttl,
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    serde_json::from_value(json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

/// Appends an approval to `spec.approvals` as the web does (a JSON patch `add …/-`), with the groups
/// the web would have recorded for the approver.
async fn add_approval(sim: &impl KubeAccess, name: &str, by: &str, groups: &[&str]) {
    add_approval_with(sim, name, json!({"by": by, "at": now(), "groups": groups})).await;
}

/// Appends `entry` to `spec.approvals`.
async fn add_approval_with(sim: &impl KubeAccess, name: &str, entry: Value) {
    let api: Api<AccessRequest> = Api::all(sim.admin().await);
    let current = api.get(name).await.unwrap();
    let patch = if current.spec.approvals.is_empty() {
        json!([{"op": "add", "path": "/spec/approvals", "value": [entry]}])
    } else {
        json!([{"op": "add", "path": "/spec/approvals/-", "value": entry}])
    };
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .expect("approval appended");
}

/// Waits until `pred` holds for the request (panics with its status after `secs`).
async fn wait_for(
    sim: &impl KubeAccess,
    name: &str,
    what: &str,
    secs: u64,
    pred: impl Fn(&AccessRequest) -> bool,
) -> AccessRequest {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let ar = get(sim, name).await.expect("request exists");
        if pred(&ar) {
            return ar;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: {what} not reached in {secs}s; status {:#?}",
            ar.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn condition(ar: &AccessRequest, type_: &str) -> Option<Condition> {
    ar.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

fn policy(ar: &AccessRequest) -> PolicyStatus {
    ar.status.as_ref().and_then(|s| s.policy.clone()).unwrap_or_else(|| {
        panic!(
            "no status.policy on {}: {:?}",
            ar.metadata.name.as_deref().unwrap_or(""),
            ar.status
        )
    })
}

/// Reason and message of the condition named after the current phase.
fn phase_condition(ar: &AccessRequest) -> (String, String) {
    let st = ar.status.as_ref().unwrap();
    let c = st
        .conditions
        .iter()
        .find(|c| c.type_ == st.phase.to_string())
        .unwrap_or_else(|| panic!("no {} condition: {st:?}", st.phase));
    (c.reason.clone(), c.message.clone())
}

/// The reasons (and types) of the Kubernetes Events published about a request.
async fn events(sim: &impl KubeAccess, name: &str) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::all(sim.admin().await);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.type_.unwrap_or_default()))
        .collect()
}

/// Waits for an Event (published in the background, so it may follow the status by a moment).
async fn wait_event(sim: &impl KubeAccess, name: &str, reason: &str, type_: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let seen = events(sim, name).await;
        if seen.iter().any(|(r, t)| r == reason && t == type_) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {type_} Event {reason} on {name}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const PROD: &str = "
policies:
- name: prod
  match: {namespaces: [team-a]}
  approvers: {emails: [a1@example.com, a2@example.com, a3@example.com, jane@example.com]}
  approvalsRequired: 2
";

#[tokio::test]
async fn two_of_three_approvers_activate_and_a_duplicate_counts_once() {
    let sim = cluster().await;
    let ctl = Controller::start(&sim, config(PROD)).await;
    create(&sim, &req("quorum", &["team-a"], 600, json!({}))).await;
    let pending = wait_for(&sim, "quorum", "the policy status", 10, |ar| {
        ar.status.as_ref().is_some_and(|s| s.policy.is_some())
    })
    .await;
    let p = policy(&pending);
    assert_eq!(
        (p.name.as_str(), p.approvals_required, p.approvals_given),
        ("prod", 2, 0)
    );

    add_approval(&sim, "quorum", "a1@example.com", &[]).await;
    let one = wait_for(&sim, "quorum", "one approval counted", 10, |ar| {
        ar.status
            .as_ref()
            .and_then(|s| s.policy.as_ref())
            .is_some_and(|p| p.approvals_given == 1)
    })
    .await;
    assert_eq!(phase(&one), "Pending");
    assert_eq!(policy(&one).approved_by, ["a1@example.com"]);
    let c = condition(&one, "PolicySatisfied").expect("PolicySatisfied");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "AwaitingApprovals"));
    assert!(c.message.contains("1/2 approvals (policy prod)"), "{}", c.message);
    assert!(
        tokens(&sim, "quorum").await.is_empty(),
        "nothing granted on one approval"
    );

    // The same approver again (an entry of its own: the CRD refuses an exact copy): still one.
    add_approval_with(
        &sim,
        "quorum",
        json!({"by": "A1@example.com", "at": now(), "comment": "approving again"}),
    )
    .await;
    let dup = wait_for(&sim, "quorum", "the duplicate listed as ignored", 10, |ar| {
        ar.status
            .as_ref()
            .and_then(|s| s.policy.as_ref())
            .is_some_and(|p| !p.ignored.is_empty())
    })
    .await;
    assert_eq!(phase(&dup), "Pending");
    assert_eq!(policy(&dup).approvals_given, 1);
    assert!(
        policy(&dup).ignored.iter().any(|i| i.starts_with("a1@example.com:")),
        "{:?}",
        policy(&dup).ignored
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(phase(&get(&sim, "quorum").await.unwrap()), "Pending");
    assert!(tokens(&sim, "quorum").await.is_empty());

    add_approval(&sim, "quorum", "a2@example.com", &[]).await;
    let active = wait_phase(&sim, "quorum", "Active", 10).await;
    let p = policy(&active);
    assert_eq!((p.approvals_required, p.approvals_given), (2, 2));
    assert_eq!(p.approved_by, ["a1@example.com", "a2@example.com"]);
    let c = condition(&active, "PolicySatisfied").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "QuorumMet"));
    assert_eq!(tokens(&sim, "quorum").await.len(), 1);
    ctl.stop().await;
}

#[tokio::test]
async fn approvals_patched_in_by_people_who_may_not_approve_never_activate() {
    let sim = cluster().await;
    let ctl = Controller::start(&sim, config(PROD)).await;
    create(&sim, &req("forged", &["team-a"], 600, json!({}))).await;
    wait_phase(&sim, "forged", "Pending", 10).await;
    // Straight into the CRD: the single approval of older clients, by someone the policy does not
    // name (before policies, any approval activated the request) ...
    decide(
        &sim,
        "forged",
        "approval",
        json!({"by": "mallory@example.com", "at": now()}),
    )
    .await;
    // ... an entry naming a group no policy lists, and the requester approving her own request (she
    // is on the policy's list, but the requester never counts).
    add_approval(&sim, "forged", "eve@example.com", &["devs"]).await;
    add_approval(&sim, "forged", REQUESTER, &[]).await;
    let seen = wait_for(&sim, "forged", "three ignored approvals", 10, |ar| {
        phase(ar) != "Pending"
            || ar
                .status
                .as_ref()
                .and_then(|s| s.policy.as_ref())
                .is_some_and(|p| p.ignored.len() == 3)
    })
    .await;
    assert_eq!(
        phase(&seen),
        "Pending",
        "activated by approvals that do not count: {:?}",
        seen.status
    );
    assert!(leftovers(&sim, &sim, "forged").await.is_empty());
    let p = policy(&seen);
    assert_eq!(p.approvals_given, 0, "{p:?}");
    for who in ["mallory@example.com:", "eve@example.com:", "jane@example.com:"] {
        assert!(p.ignored.iter().any(|i| i.starts_with(who)), "{who} in {:?}", p.ignored);
    }
    assert!(
        p.ignored
            .iter()
            .any(|i| i == "mallory@example.com: not an approver of policy prod"),
        "{:?}",
        p.ignored
    );
    // Nothing happens, now or a little later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = get(&sim, "forged").await.unwrap();
    assert_eq!(phase(&later), "Pending", "{:?}", later.status);
    assert!(later.status.unwrap().approved.is_none(), "no baseline recorded");
    assert!(leftovers(&sim, &sim, "forged").await.is_empty());
    ctl.stop().await;
}

#[tokio::test]
async fn namespace_owners_must_approve_their_namespace() {
    let sim = cluster().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(sim.admin().await);
    let annotate = |value: Value| {
        let namespaces = namespaces.clone();
        async move {
            let patch = json!({"metadata": {"annotations": {"k8s-janus.opsmode.io/approvers": value}}});
            namespaces
                .patch("team-b", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    annotate(json!("group:payments-leads, owner@example.com")).await;
    let ctl = Controller::start(
        &sim,
        config(
            "
policies:
- name: owned
  match: {namespaces: [team-b]}
  approvers: {emails: [lead@example.com], namespaceOwners: true}
",
        ),
    )
    .await;
    create(&sim, &req("owned", &["team-b"], 600, json!({}))).await;
    add_approval(&sim, "owned", "lead@example.com", &[]).await;
    let waiting = wait_for(&sim, "owned", "the lead's approval counted", 10, |ar| {
        ar.status
            .as_ref()
            .and_then(|s| s.policy.as_ref())
            .is_some_and(|p| p.approvals_given == 1)
    })
    .await;
    assert_eq!(
        phase(&waiting),
        "Pending",
        "a policy approver alone does not satisfy the owners"
    );
    let c = condition(&waiting, "PolicySatisfied").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "AwaitingApprovals"));
    assert!(c.message.contains("owner of team-b"), "{}", c.message);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(tokens(&sim, "owned").await.is_empty());

    // An owner by group (recorded by the web) completes it.
    add_approval(&sim, "owned", "pat@example.com", &["payments-leads"]).await;
    let active = wait_phase(&sim, "owned", "Active", 10).await;
    assert!(
        policy(&active).approved_by.iter().any(|a| a == "pat@example.com"),
        "{:?}",
        policy(&active)
    );
    ctl.stop().await;
    annotate(Value::Null).await;
}

#[tokio::test]
async fn the_reason_pattern_and_mixed_policies_are_refused_by_the_controller() {
    let sim = cluster().await;
    let ctl = Controller::start(
        &sim,
        config(
            "
policies:
- name: prod
  match: {namespaces: [team-a]}
  approvers: {emails: [a1@example.com]}
  reason: {pattern: '^OPS-[0-9]+', description: a ticket id such as OPS-1234}
",
        ),
    )
    .await;
    create(&sim, &req("no-ticket", &["team-a"], 600, json!({}))).await;
    let denied = wait_phase(&sim, "no-ticket", "Denied", 10).await;
    let (reason, message) = phase_condition(&denied);
    assert_eq!(reason, reasons::VALIDATION_FAILED);
    assert!(message.contains("OPS-"), "{message}");

    // team-a is under prod, team-b under the default policy: adding a lax namespace must not
    // bypass the strict one.
    create(
        &sim,
        &req("mixed", &["team-a", "team-b"], 600, json!({"reason": "OPS-7 both"})),
    )
    .await;
    let denied = wait_phase(&sim, "mixed", "Denied", 10).await;
    let (reason, message) = phase_condition(&denied);
    assert_eq!(reason, reasons::VALIDATION_FAILED);
    assert!(message.contains("different approval policies"), "{message}");

    // With a ticket id it waits for its approver, then starts.
    create(
        &sim,
        &req("ticket", &["team-a"], 600, json!({"reason": "OPS-42 crash loop"})),
    )
    .await;
    wait_for(&sim, "ticket", "the policy evaluated", 10, |ar| {
        condition(ar, "PolicySatisfied").is_some()
    })
    .await;
    add_approval(&sim, "ticket", "a1@example.com", &[]).await;
    wait_phase(&sim, "ticket", "Active", 10).await;
    ctl.stop().await;
}

/// A weekly window (every day) from `from` to `to` hours around now, in `tz`, as `HH:MM`.
fn window(tz: chrono_tz::Tz, from: i64, to: i64) -> String {
    let local = Utc::now().with_timezone(&tz);
    let at = |h: i64| (local + chrono::Duration::hours(h)).format("%H:%M").to_string();
    format!("{{start: '{}', end: '{}'}}", at(from), at(to))
}

fn auto_config(window: &str) -> janus_api::config::Config {
    config(&format!(
        "
displayTimezone: America/New_York
policies:
- name: oncall
  match: {{namespaces: [team-a]}}
  approvers: {{emails: [a1@example.com, a2@example.com]}}
  approvalsRequired: 2
  autoApprove: {{groups: [oncall], maxTtlSeconds: 900, windows: [{window}]}}
"
    ))
}

#[tokio::test]
async fn auto_approval_inside_its_window_only() {
    // The window is built in displayTimezone (New York, hours away from UTC): a controller judging it
    // in UTC would see the wrong hours.
    let tz = chrono_tz::America::New_York;
    let sim = cluster().await;
    let ctl = Controller::start(&sim, auto_config(&window(tz, -1, 1))).await;
    create(
        &sim,
        &req("auto-in", &["team-a"], 600, json!({"requesterGroups": ["oncall"]})),
    )
    .await;
    let active = wait_phase(&sim, "auto-in", "Active", 10).await;
    let p = policy(&active);
    assert!(p.auto_approved && !p.break_glass, "{p:?}");
    assert_eq!(p.approvals_given, 0);
    let approved = condition(&active, "Approved").unwrap();
    assert_eq!(approved.reason, "AutoApproved");
    assert_eq!(condition(&active, "PolicySatisfied").unwrap().reason, "AutoApproved");
    let baseline = active.status.as_ref().unwrap().approved.clone().unwrap();
    assert!(
        serde_json::to_string(&baseline)
            .unwrap()
            .contains("system:auto-approval"),
        "{baseline:?}"
    );
    wait_event(&sim, "auto-in", "AutoApproved", "Normal").await;
    // Not in the group: waits for people.
    create(&sim, &req("auto-not-oncall", &["team-a"], 600, json!({}))).await;
    let waiting = wait_for(&sim, "auto-not-oncall", "the policy evaluated", 10, |ar| {
        condition(ar, "PolicySatisfied").is_some()
    })
    .await;
    assert_eq!(phase(&waiting), "Pending");
    ctl.stop().await;

    // Outside the window (it opens in two hours): waits for people.
    let ctl = Controller::start(&sim, auto_config(&window(tz, 2, 3))).await;
    create(
        &sim,
        &req("auto-out", &["team-a"], 600, json!({"requesterGroups": ["oncall"]})),
    )
    .await;
    let waiting = wait_for(&sim, "auto-out", "the policy evaluated", 10, |ar| {
        condition(ar, "PolicySatisfied").is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = get(&sim, "auto-out").await.unwrap_or(waiting);
    assert_eq!(phase(&waiting), "Pending", "{:?}", waiting.status);
    let p = policy(&waiting);
    assert!(!p.auto_approved);
    let c = condition(&waiting, "PolicySatisfied").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "AwaitingApprovals"));
    assert!(leftovers(&sim, &sim, "auto-out").await.is_empty());
    ctl.stop().await;
}

const BREAK_GLASS: &str = "
policies:
- name: prod
  match: {namespaces: [team-a]}
  approvers: {emails: [a1@example.com, a2@example.com]}
  approvalsRequired: 2
  breakGlass: {groups: [sre], maxTtlSeconds: 600}
";

#[tokio::test]
async fn break_glass_activates_at_once_when_the_policy_allows_it() {
    let sim = cluster().await;
    let ctl = Controller::start(&sim, config(BREAK_GLASS)).await;
    create(
        &sim,
        &req(
            "glass",
            &["team-a"],
            300,
            json!({"requesterGroups": ["sre"], "breakGlass": {"at": now()}}),
        ),
    )
    .await;
    let active = wait_phase(&sim, "glass", "Active", 10).await;
    let p = policy(&active);
    assert!(p.break_glass && !p.auto_approved, "{p:?}");
    assert_eq!(condition(&active, "Approved").unwrap().reason, "BreakGlass");
    assert_eq!(condition(&active, "PolicySatisfied").unwrap().reason, "BreakGlass");
    let baseline = active.status.as_ref().unwrap().approved.clone().unwrap();
    assert!(
        serde_json::to_string(&baseline).unwrap().contains("system:break-glass"),
        "{baseline:?}"
    );
    assert_eq!(tokens(&sim, "glass").await.len(), 1);
    wait_event(&sim, "glass", "BreakGlass", "Warning").await;

    // Not in the break-glass group: denied, with the reason.
    create(
        &sim,
        &req(
            "no-glass",
            &["team-a"],
            300,
            json!({"requesterGroups": ["devs"], "breakGlass": {"at": now()}}),
        ),
    )
    .await;
    let denied = wait_phase(&sim, "no-glass", "Denied", 10).await;
    let (reason, message) = phase_condition(&denied);
    assert_eq!(reason, reasons::VALIDATION_FAILED);
    assert!(message.to_lowercase().contains("break"), "{message}");
    // In the group, but longer than break-glass allows: denied too.
    create(
        &sim,
        &req(
            "long-glass",
            &["team-a"],
            3600,
            json!({"requesterGroups": ["sre"], "breakGlass": {"at": now()}}),
        ),
    )
    .await;
    let denied = wait_phase(&sim, "long-glass", "Denied", 10).await;
    assert_eq!(phase_condition(&denied).0, reasons::VALIDATION_FAILED);
    // Break-glass is access now: written into the CRD with a start time, it is refused (as the web
    // refuses it), not scheduled without any approval.
    let in_a_minute = Utc::now() + chrono::Duration::minutes(1);
    create(
        &sim,
        &req(
            "later-glass",
            &["team-a"],
            300,
            json!({"requesterGroups": ["sre"], "breakGlass": {"at": now()}, "startAt": secs(in_a_minute)}),
        ),
    )
    .await;
    let denied = wait_phase(&sim, "later-glass", "Denied", 10).await;
    let (reason, message) = phase_condition(&denied);
    assert_eq!(reason, reasons::VALIDATION_FAILED);
    assert!(message.contains("startAt"), "{message}");
    for name in ["no-glass", "long-glass", "later-glass"] {
        assert!(leftovers(&sim, &sim, name).await.is_empty(), "{name}");
    }
    ctl.stop().await;
}

#[tokio::test]
async fn the_policy_pending_expiry_applies() {
    let sim = cluster().await;
    // Globally a day; under this policy two seconds.
    let ctl = Controller::start(
        &sim,
        config(
            "
pendingExpirySeconds: 86400
policies:
- name: quick
  match: {namespaces: [team-a]}
  approvers: {emails: [a1@example.com]}
  pendingExpirySeconds: 2
",
        ),
    )
    .await;
    create(&sim, &req("quick", &["team-a"], 600, json!({}))).await;
    create(&sim, &req("slow", &["team-b"], 600, json!({}))).await;
    let denied = wait_phase(&sim, "quick", "Denied", 10).await;
    assert_eq!(phase_condition(&denied).0, reasons::PENDING_TIMEOUT);
    assert_eq!(phase(&get(&sim, "slow").await.unwrap()), "Pending");
    ctl.stop().await;
}

fn secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn a_scheduled_request_starts_at_its_time_across_a_controller_restart() {
    let sim = cluster().await;
    let ctl = Controller::start(&sim, config("")).await;
    let start_at = DateTime::from_timestamp(Utc::now().timestamp() + 6, 0).unwrap();
    create(&sim, &req("later", &["team-a"], 60, json!({"startAt": secs(start_at)}))).await;
    add_approval(&sim, "later", "admin@example.com", &[]).await;
    let scheduled = wait_phase(&sim, "later", "Scheduled", 10).await;
    let c = condition(&scheduled, "Scheduled").expect("Scheduled condition");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "StartsLater"));
    assert_eq!(condition(&scheduled, "PolicySatisfied").unwrap().reason, "QuorumMet");
    assert!(
        leftovers(&sim, &sim, "later").await.is_empty(),
        "no credentials before startAt"
    );
    assert!(
        scheduled.status.as_ref().unwrap().approved.is_some(),
        "baseline recorded"
    );

    // The controller that scheduled it goes away; a new one must start it at its time.
    ctl.stop().await;
    assert!(
        Utc::now() < start_at - chrono::Duration::milliseconds(500),
        "the test's premise: restarted before startAt"
    );
    let ctl = Controller::start(&sim, config("")).await;
    let active = loop {
        let ar = get(&sim, "later").await.unwrap();
        let t = Utc::now();
        match phase(&ar).as_str() {
            "Active" => {
                // The promise is "at its time": within 5 s of startAt (generous: the machine is loaded).
                assert!(
                    t <= start_at + chrono::Duration::seconds(5),
                    "Active only at {t}, startAt {start_at}"
                );
                break ar;
            }
            "Scheduled" | "Approved" => {}
            other => panic!("unexpected phase {other}: {:?}", ar.status),
        }
        assert!(t < start_at + chrono::Duration::seconds(10), "never became Active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let st = active.status.clone().unwrap();
    let active_at = janus_api::rules::time::parse_time(st.active_at.as_deref().unwrap()).unwrap();
    assert!(active_at >= start_at, "activated early: {active_at} < {start_at}");
    assert_eq!(
        st.expires_at.as_deref(),
        Some(secs(start_at + chrono::Duration::seconds(60)).as_str()),
        "expiresAt = startAt + TTL"
    );
    let c = condition(&active, "Scheduled").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Started"));
    assert_eq!(tokens(&sim, "later").await.len(), 1);
    ctl.stop().await;
}

#[tokio::test]
async fn a_scheduled_request_ends_without_credentials_and_a_passed_window_grants_nothing() {
    let sim = cluster().await;
    let ctl = Controller::start(&sim, config("")).await;
    let in_an_hour = Utc::now() + chrono::Duration::hours(1);
    create(
        &sim,
        &req("withdrawn", &["team-a"], 60, json!({"startAt": secs(in_an_hour)})),
    )
    .await;
    add_approval(&sim, "withdrawn", "admin@example.com", &[]).await;
    wait_phase(&sim, "withdrawn", "Scheduled", 10).await;
    decide(&sim, "withdrawn", "withdrawal", json!({"by": REQUESTER, "at": now()})).await;
    let cancelled = wait_phase(&sim, "withdrawn", "Cancelled", 10).await;
    let removed = condition(&cancelled, "CredentialsRemoved").unwrap();
    assert_eq!(removed.status, "True");
    assert!(leftovers(&sim, &sim, "withdrawn").await.is_empty());

    // Its whole window (a minute, two minutes ago) passed before anyone approved.
    let past = Utc::now() - chrono::Duration::seconds(120);
    create(&sim, &req("too-late", &["team-a"], 60, json!({"startAt": secs(past)}))).await;
    add_approval(&sim, "too-late", "admin@example.com", &[]).await;
    let expired = wait_phase(&sim, "too-late", "Expired", 10).await;
    assert!(
        expired.status.as_ref().unwrap().message.contains("already passed"),
        "{:?}",
        expired.status
    );
    assert_eq!(
        condition(&expired, "Approved").unwrap().status,
        "True",
        "approved, too late"
    );
    assert!(expired.status.unwrap().active_at.is_none(), "never active");
    assert!(leftovers(&sim, &sim, "too-late").await.is_empty());
    ctl.stop().await;
}

#[tokio::test]
async fn a_scheduled_request_whose_policy_is_no_longer_satisfied_does_not_start() {
    let sim = cluster().await;
    let one = "
policies:
- name: prod
  match: {namespaces: [team-a]}
  approvers: {emails: [a1@example.com, a2@example.com]}
";
    let ctl = Controller::start(&sim, config(one)).await;
    let in_a_minute = Utc::now() + chrono::Duration::minutes(1);
    create(
        &sim,
        &req("stricter", &["team-a"], 60, json!({"startAt": secs(in_a_minute)})),
    )
    .await;
    add_approval(&sim, "stricter", "a1@example.com", &[]).await;
    wait_phase(&sim, "stricter", "Scheduled", 10).await;
    ctl.stop().await;
    // The operator now wants two approvers for prod: the scheduled request, approved by one, is judged
    // again by the next controller and must not start.
    let ctl = Controller::start(
        &sim,
        config(&one.replace("a2@example.com]}", "a2@example.com]}\n  approvalsRequired: 2")),
    )
    .await;
    let failed = wait_phase(&sim, "stricter", "Failed", 10).await;
    let (reason, message) = phase_condition(&failed);
    assert_eq!(reason, reasons::VALIDATION_FAILED);
    assert!(message.contains("1/2 approvals (policy prod)"), "{message}");
    let c = condition(&failed, "PolicySatisfied").unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "AwaitingApprovals"),
        "the status shows the policy as judged now"
    );
    assert_eq!(policy(&failed).approvals_required, 2);
    assert!(failed.status.as_ref().unwrap().active_at.is_none());
    assert!(leftovers(&sim, &sim, "stricter").await.is_empty());
    ctl.stop().await;
}

/// Appends an extension of `seconds` to `spec.extensions`, as the web does.
async fn extend(sim: &impl KubeAccess, name: &str, seconds: i64) {
    let api: Api<AccessRequest> = Api::all(sim.admin().await);
    let current = api.get(name).await.unwrap();
    let entry = json!({"by": "a1@example.com", "at": now(), "seconds": seconds});
    let patch = if current.spec.extensions.is_empty() {
        json!([{"op": "add", "path": "/spec/extensions", "value": [entry]}])
    } else {
        json!([{"op": "add", "path": "/spec/extensions/-", "value": entry}])
    };
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .expect("extension appended");
}

fn rfc(ar: &AccessRequest, field: fn(&janus_api::AccessRequestStatus) -> Option<&String>) -> DateTime<Utc> {
    let st = ar.status.as_ref().unwrap();
    janus_api::rules::time::parse_time(field(st).unwrap()).unwrap()
}

/// Waits until the request's `expiresAt` moved away from `before` (the extension was applied).
async fn wait_extended(sim: &impl KubeAccess, name: &str, before: DateTime<Utc>) -> AccessRequest {
    wait_for(sim, name, "the extension applied", 10, |ar| {
        ar.status
            .as_ref()
            .and_then(|s| s.expires_at.as_deref())
            .and_then(janus_api::rules::time::parse_time)
            .is_some_and(|e| e != before)
    })
    .await
}

#[tokio::test]
async fn a_policy_max_ttl_caps_extensions_and_ends_access_it_no_longer_allows() {
    let sim = cluster().await;
    // Globally 8 hours; under prod two minutes.
    let prod = |max: i64| {
        config(&format!(
            "
maxTtlSeconds: 28800
policies:
- name: prod
  match: {{namespaces: [team-a]}}
  approvers: {{emails: [a1@example.com]}}
  maxTtlSeconds: {max}
"
        ))
    };
    let ctl = Controller::start(&sim, prod(120)).await;
    create(&sim, &req("capped", &["team-a"], 60, json!({}))).await;
    add_approval(&sim, "capped", "a1@example.com", &[]).await;
    let active = wait_phase(&sim, "capped", "Active", 10).await;
    let active_at = rfc(&active, |s| s.active_at.as_ref());
    let first = rfc(&active, |s| s.expires_at.as_ref());
    assert_eq!(first, active_at + chrono::Duration::seconds(60));
    // Ten minutes more would pass the policy's two: the total is capped at its maximum, as the global
    // maxTtlSeconds caps it.
    extend(&sim, "capped", 600).await;
    let extended = wait_extended(&sim, "capped", first).await;
    assert_eq!(
        rfc(&extended, |s| s.expires_at.as_ref()),
        active_at + chrono::Duration::seconds(120),
        "capped at policy prod's maxTtlSeconds: {:?}",
        extended.status
    );
    assert_eq!(phase(&extended), "Active");
    ctl.stop().await;

    // The operator lowers prod's maximum below the access granted: it ends, as a lower global
    // maxTtlSeconds ends it.
    let ctl = Controller::start(&sim, prod(30)).await;
    let failed = wait_phase(&sim, "capped", "Failed", 10).await;
    let (reason, message) = phase_condition(&failed);
    assert_eq!(reason, reasons::VALIDATION_FAILED);
    assert!(message.contains("policy prod allows (30s)"), "{message}");
    assert_eq!(condition(&failed, "CredentialsRemoved").unwrap().status, "True");
    assert!(leftovers(&sim, &sim, "capped").await.is_empty());
    ctl.stop().await;
}

#[tokio::test]
async fn break_glass_access_stays_within_its_maximum_after_an_extension() {
    let sim = cluster().await;
    let ctl = Controller::start(
        &sim,
        config(
            "
maxTtlSeconds: 28800
policies:
- name: prod
  match: {namespaces: [team-a]}
  approvers: {emails: [a1@example.com, a2@example.com]}
  approvalsRequired: 2
  breakGlass: {groups: [sre], maxTtlSeconds: 90}
",
        ),
    )
    .await;
    create(
        &sim,
        &req(
            "glass-ext",
            &["team-a"],
            60,
            json!({"requesterGroups": ["sre"], "breakGlass": {"at": now()}}),
        ),
    )
    .await;
    let active = wait_phase(&sim, "glass-ext", "Active", 10).await;
    assert!(policy(&active).break_glass);
    let active_at = rfc(&active, |s| s.active_at.as_ref());
    let first = rfc(&active, |s| s.expires_at.as_ref());
    extend(&sim, "glass-ext", 3600).await;
    let extended = wait_extended(&sim, "glass-ext", first).await;
    assert_eq!(
        rfc(&extended, |s| s.expires_at.as_ref()),
        active_at + chrono::Duration::seconds(90),
        "break-glass access ends within breakGlass.maxTtlSeconds: {:?}",
        extended.status
    );
    ctl.stop().await;
}

/// An approver as the web appends: read the request, refuse once it is no longer Pending (the web's
/// approve action), append under the resourceVersion read (a JSON patch `test` of it), and on a
/// conflict read again.
async fn approve_as_the_web(sim: &impl KubeAccess, name: &str, by: &str, ttl: i64) {
    let api: Api<AccessRequest> = Api::all(sim.admin().await);
    for _ in 0..100 {
        let current = api.get(name).await.unwrap();
        let st = current.status.clone().unwrap_or_default();
        if st.approved.is_some() || !matches!(phase(&current).as_str(), "Pending" | "<no status>") {
            return;
        }
        let entry = json!({"by": by, "at": now(), "ttlSeconds": ttl, "groups": []});
        let mut ops = vec![json!({"op": "test", "path": "/metadata/resourceVersion",
            "value": current.metadata.resource_version})];
        ops.push(if current.spec.approvals.is_empty() {
            json!({"op": "add", "path": "/spec/approvals", "value": [entry]})
        } else {
            json!({"op": "add", "path": "/spec/approvals/-", "value": entry})
        });
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        match api
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 422 => {}
            Err(e) => panic!("approve {name} as {by}: {e}"),
        }
    }
    panic!("approve {name} as {by}: still conflicting after 100 attempts");
}

#[tokio::test]
async fn an_approval_appended_while_the_controller_judges_never_fails_the_request() {
    let sim = cluster().await;
    let ctl = Controller::start(
        &sim,
        config(
            "
policies:
- name: prod
  match: {namespaces: [team-a]}
  approvers: {emails: [a1@example.com, a2@example.com, a3@example.com, a4@example.com]}
  approvalsRequired: 2
",
        ),
    )
    .await;
    // The controller's status writes take a while (kubesim holds each request to a status
    // subresource back): approvals appended meanwhile land between its read and its write, as they
    // can on a busy API server.
    let sim_server = sim.simulated().expect("kubesim: faults");
    sim_server.cluster.faults.set(kubesim::faults::FaultConfig {
        latency_ms: 150,
        path_contains: "/status".into(),
        ..Default::default()
    });
    let names: Vec<String> = (0..8).map(|i| format!("race-{i}")).collect();
    for name in &names {
        create(&sim, &req(name, &["team-a"], 3600, json!({}))).await;
        approve_as_the_web(&sim, name, "a1@example.com", 3000).await;
    }
    // The second, third and fourth approvers at once, each with a shorter TTL: whichever lands after
    // the read the quorum was judged on changes the effective TTL.
    let mut rounds = Vec::new();
    for name in &names {
        for (by, ttl) in [
            ("a2@example.com", 2400),
            ("a3@example.com", 1800),
            ("a4@example.com", 1200),
        ] {
            let sim = &sim;
            rounds.push(async move { approve_as_the_web(sim, name, by, ttl).await });
        }
    }
    futures::future::join_all(rounds).await;
    for name in &names {
        let done = wait_for(&sim, name, "Active or ended", 20, |ar| {
            matches!(phase(ar).as_str(), "Active" | "Failed" | "Denied")
        })
        .await;
        assert_eq!(
            phase(&done),
            "Active",
            "{name}: a legitimately approved request ended: {:?}",
            done.status
        );
    }
    // Settled: nothing fails a moment later either.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for name in &names {
        let ar = get(&sim, name).await.unwrap();
        assert_eq!(phase(&ar), "Active", "{name}: {:?}", ar.status);
    }
    sim_server.cluster.faults.clear();
    ctl.stop().await;
}

#[tokio::test]
async fn the_policy_status_shrinks_on_the_server_and_is_not_rewritten_once_stable() {
    let sim = cluster().await;
    let cfg = || {
        config(
            "
policies:
- name: leads
  match: {namespaces: [team-a]}
  approvers: {groups: [leads]}
  approvalsRequired: 2
",
        )
    };
    let ctl = Controller::start(&sim, cfg()).await;
    create(&sim, &req("shrink", &["team-a"], 600, json!({}))).await;
    wait_phase(&sim, "shrink", "Pending", 10).await;
    // An older client's single approval records no groups: bob does not count through it ...
    decide(
        &sim,
        "shrink",
        "approval",
        json!({"by": "bob@example.com", "at": now()}),
    )
    .await;
    wait_for(&sim, "shrink", "bob's approval ignored", 10, |ar| {
        ar.status
            .as_ref()
            .and_then(|s| s.policy.as_ref())
            .is_some_and(|p| p.ignored.len() == 1)
    })
    .await;
    // ... the web's entry records his group: now he counts, and nothing is ignored any more.
    add_approval(&sim, "shrink", "bob@example.com", &["leads"]).await;
    let counted = wait_for(&sim, "shrink", "bob counted", 10, |ar| {
        ar.status
            .as_ref()
            .and_then(|s| s.policy.as_ref())
            .is_some_and(|p| p.approvals_given == 1)
    })
    .await;
    assert_eq!(phase(&counted), "Pending");
    // The server's copy, as raw JSON: the empty list must be written, not left out.
    let raw = sim
        .simulated()
        .expect("kubesim")
        .get("k8s-janus.opsmode.io", "accessrequests", "", "shrink")
        .expect("stored");
    assert_eq!(
        raw["status"]["policy"]["ignored"],
        json!([]),
        "status.policy on the server: {}",
        raw["status"]["policy"]
    );
    assert_eq!(policy(&counted).approved_by, ["bob@example.com"]);
    ctl.stop().await;

    // Stable: a new controller judges it again (every request is reconciled at start) and finds the
    // status as it would write it. Every request to the request's status subresource is counted.
    let before = get(&sim, "shrink").await.unwrap().metadata.resource_version;
    let faults = &sim.simulated().expect("kubesim").cluster.faults;
    faults.set(kubesim::faults::FaultConfig {
        path_contains: "accessrequests/shrink/status".into(),
        times: Some(1000),
        ..Default::default()
    });
    let ctl = Controller::start(&sim, cfg()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = 1000 - faults.get().times.unwrap_or(0);
    faults.clear();
    ctl.stop().await;
    let after = get(&sim, "shrink").await.unwrap();
    assert_eq!(phase(&after), "Pending");
    assert_eq!(after.metadata.resource_version, before, "{:?}", after.status);
    assert_eq!(writes, 0, "status written again although nothing changed");
}
