#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Approval policies through the web, end to end against kubesim with the controller: quorum, who may
//! approve and why not, what each approver is shown, break-glass review, the policy preview for the
//! request form, start times, and what a request is refused for at creation.

mod common;
#[path = "support/oauth2_proxy.rs"]
mod oauth2_proxy;

use std::time::Duration;

use common::{ADMIN, Session, Stack};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Three policies beside the default one: team-owned namespaces (owners from the annotation),
/// production with two of three approvers and a ticket id in the reason, and on-call with break-glass
/// and auto-approval for short requests.
const POLICIES: &str = r#"
displayTimezone: Europe/Berlin
maxTtlSeconds: 3600
policies:
- name: team-owned
  description: Each team approves access to its own namespaces.
  match: {namespaces: [team-a, team-d]}
  approvers: {namespaceOwners: true}
- name: prod
  description: Production needs two approvers.
  match: {namespaces: [team-b]}
  approvers: {emails: [p1@example.com, p2@example.com, p3@example.com]}
  approvalsRequired: 2
  approvalTtlOptions: [600, 1200]
  reason: {pattern: "OPS-[0-9]+", description: "a ticket id such as OPS-1234"}
- name: oncall
  description: On-call may break glass.
  match: {namespaces: [team-c]}
  approvers: {emails: [lead@example.com]}
  maxTtlSeconds: 1800
  breakGlass: {emails: [oncall@example.com], maxTtlSeconds: 600}
  autoApprove: {emails: [oncall@example.com], maxTtlSeconds: 300}
- name: all-three
  match: {namespaces: [team-e]}
  approvers: {emails: [q1@example.com, q2@example.com, q3@example.com]}
  approvalsRequired: 3
"#;

/// Starts the stack with [`POLICIES`]; team-a and a new team-d carry their owners' annotation.
async fn stack() -> Stack {
    let stack = Stack::start(POLICIES).await;
    let ns: Api<Namespace> = Api::all(stack.admin_client().await);
    for name in ["team-d", "team-e"] {
        let created: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        ns.create(&PostParams::default(), &created).await.expect("namespace");
    }
    for (name, owners) in [
        ("team-a", "owner-a@example.com"),
        ("team-d", "group:team-d-leads, owner-d@example.com"),
    ] {
        let patch = json!({"metadata": {"annotations": {janus_api::policy::APPROVERS_ANNOTATION: owners}}});
        ns.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate");
    }
    stack
}

/// Creates a request with `body` fields on top of the defaults; its status and answer.
async fn ask(s: &Session, body: Value) -> (u16, Value) {
    let mut b = json!({"cluster": "central", "ttlSeconds": 600, "reason": "investigate OPS-1234"});
    for (k, v) in body.as_object().unwrap() {
        b[k] = v.clone();
    }
    let r = s.post("/api/v1/requests", b).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn created(s: &Session, body: Value) -> String {
    let (status, v) = ask(s, body).await;
    assert_eq!(status, 201, "{v}");
    v["name"].as_str().unwrap().to_string()
}

async fn decide(s: &Session, name: &str, action: &str, body: Value) -> (u16, Value) {
    let r = s.post(&format!("/api/v1/requests/{name}/{action}"), body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The names in a list of request views.
fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until the request's view satisfies `ok`.
async fn wait_view(s: &Session, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut v = Value::Null;
    for _ in 0..300 {
        v = s.json(&format!("/api/v1/requests/{name}")).await;
        if ok(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("request {name} never reached: {what}; last view {v}");
}

/// 2 of 3: one approval leaves the request Pending at 1/2, the second activates it; the requester and
/// people outside the policy are refused with why, a second approval by the same person is a conflict,
/// and each approver's list shows only what they may still decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_of_three_approvers_through_the_web() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let mallory = stack.user(&admin, "mallory", "mallory@example.com", false).await;
    let p1 = stack.user(&admin, "p1", "p1@example.com", false).await;
    let p2 = stack.user(&admin, "p2", "p2@example.com", false).await;
    let p3 = stack.user(&admin, "p3", "p3@example.com", false).await;

    let name = created(&alice, json!({"namespaces": ["team-b"], "ttlSeconds": 1200})).await;
    let v = alice.json(&format!("/api/v1/requests/{name}")).await;
    assert_eq!(v["policy"]["name"], "prod");
    assert_eq!(v["policy"]["description"], "Production needs two approvers.");
    assert_eq!(v["policy"]["approvalsRequired"], 2);
    assert_eq!(
        v["policy"]["approvers"]["emails"],
        json!(["p1@example.com", "p2@example.com", "p3@example.com"])
    );
    assert_eq!(v["policy"]["reason"]["description"], "a ticket id such as OPS-1234");
    assert_eq!(v["policy"]["whyNot"], "you asked for it");

    // Only the policy's approvers (and admins) see it; nobody else learns it exists.
    assert_eq!(mallory.get(&format!("/api/v1/requests/{name}")).await.status(), 404);
    assert_eq!(decide(&mallory, &name, "approve", json!({})).await.0, 404);
    // The admin sees it, may not approve under this policy, and is told who may.
    let seen = admin.json(&format!("/api/v1/requests/{name}")).await;
    assert_eq!(seen["actions"]["approve"], false);
    let why = seen["policy"]["whyNot"].as_str().unwrap().to_string();
    assert!(why.contains("p1@example.com") && why.contains("policy prod"), "{why}");
    let (s, e) = decide(&admin, &name, "approve", json!({})).await;
    assert_eq!((s, e["error"].as_str().unwrap()), (403, why.as_str()));
    assert!(names(&admin.json("/api/v1/approvals").await["pending"]).is_empty());
    let (s, e) = decide(&alice, &name, "approve", json!({})).await;
    assert_eq!((s, e["error"].as_str().unwrap()), (403, "you asked for it"));

    // An approver's list has it; an approval TTL outside the policy's options is refused.
    assert_eq!(names(&p1.json("/api/v1/approvals").await["pending"]), [name.as_str()]);
    let (s, e) = decide(&p1, &name, "approve", json!({"ttlSeconds": 900})).await;
    assert_eq!((s, e["field"].as_str()), (422, Some("ttlSeconds")), "{e}");
    let (s, e) = decide(&p1, &name, "approve", json!({"comment": "x".repeat(1001)})).await;
    assert_eq!((s, e["field"].as_str()), (422, Some("comment")), "{e}");
    let (s, v) = decide(
        &p1,
        &name,
        "approve",
        json!({"ttlSeconds": 600, "comment": "ticket checked"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["approval"].is_null(), "the legacy single approval is never written");
    let (s, e) = decide(&p1, &name, "approve", json!({})).await;
    assert_eq!((s, e["error"].as_str().unwrap()), (409, "you already approved"));

    // One of two: still Pending, and the view says 1/2 with the comment.
    let v = wait_view(&alice, &name, "1 of 2 approvals", |v| {
        v["policy"]["approvalsGiven"] == 1 && v["policy"]["fromController"] == true
    })
    .await;
    assert_eq!(v["phase"], "Pending");
    assert_eq!(v["policy"]["approvalsRequired"], 2);
    assert_eq!(v["policy"]["approvedBy"], json!(["p1@example.com"]));
    let a = &v["approvals"][0];
    assert_eq!(
        (a["by"].as_str(), a["comment"].as_str()),
        (Some("p1@example.com"), Some("ticket checked"))
    );
    assert_eq!(a["counted"], true);
    assert!(
        a["atDisplay"].as_str().unwrap().ends_with("CET") || a["atDisplay"].as_str().unwrap().ends_with("CEST"),
        "{a}"
    );
    let stored: janus_api::AccessRequest = Api::all(stack.admin_client().await).get(&name).await.unwrap();
    assert_eq!(
        stored.spec.approvals[0].groups,
        Vec::<String>::new(),
        "a local account has no groups"
    );
    assert_eq!(stored.spec.approvals[0].ttl_seconds, Some(600));
    assert!(stored.spec.approval.is_none());
    // p1 has nothing left to decide; p2 still has.
    assert!(names(&p1.json("/api/v1/approvals").await["pending"]).is_empty());
    assert_eq!(names(&p2.json("/api/v1/approvals").await["pending"]), [name.as_str()]);

    let (s, v) = decide(&p2, &name, "approve", json!({})).await;
    assert_eq!(s, 200, "{v}");
    let v = alice.wait_phase(&name, "Active").await;
    assert_eq!(v["policy"]["approvalsGiven"], 2);
    assert_eq!(v["effectiveTtlSeconds"], 600, "the shortest approval TTL applies");
    // A third approval comes too late.
    let (s, e) = decide(&p3, &name, "approve", json!({})).await;
    assert_eq!(
        (s, e["error"].as_str().unwrap()),
        (409, "the request is no longer pending")
    );
    stack.stop().await;
}

/// Namespace owners: the owner of team-a sees and decides team-a's requests only; team-d's owner only
/// team-d's. An admin is not an approver under a policy that names only owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_owner_sees_only_what_they_may_decide() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;
    let owner_a = stack.user(&admin, "owner-a", "owner-a@example.com", false).await;
    let owner_d = stack.user(&admin, "owner-d", "owner-d@example.com", false).await;

    let in_a = created(&bob, json!({"namespaces": ["team-a"]})).await;
    let in_d = created(&bob, json!({"namespaces": ["team-d"]})).await;
    let a_list = owner_a.json("/api/v1/approvals").await;
    assert_eq!(names(&a_list["pending"]), [in_a.as_str()], "{a_list}");
    assert_eq!(a_list["approver"], true);
    assert_eq!(
        names(&owner_d.json("/api/v1/approvals").await["pending"]),
        [in_d.as_str()]
    );
    assert_eq!(owner_a.get(&format!("/api/v1/requests/{in_d}")).await.status(), 404);
    assert_eq!(decide(&owner_a, &in_d, "approve", json!({})).await.0, 404);
    assert_eq!(decide(&owner_a, &in_d, "deny", json!({"reason": "no"})).await.0, 404);
    // Nothing to decide and named nowhere: not an approver.
    let b_list = bob.json("/api/v1/approvals").await;
    assert_eq!(
        (names(&b_list["pending"]).len(), &b_list["approver"]),
        (0, &json!(false))
    );
    // The admin: sees both, approves neither (owners only), may still deny.
    let admin_view = admin.json(&format!("/api/v1/requests/{in_a}")).await;
    assert_eq!(admin_view["policy"]["name"], "team-owned");
    assert_eq!(
        admin_view["policy"]["approvers"]["owners"],
        json!([{"namespace": "team-a", "emails": ["owner-a@example.com"], "groups": []}])
    );
    assert_eq!(
        (
            admin_view["actions"]["approve"].as_bool(),
            admin_view["actions"]["deny"].as_bool()
        ),
        (Some(false), Some(true))
    );
    assert!(names(&admin.json("/api/v1/approvals").await["pending"]).is_empty());
    assert_eq!(decide(&admin, &in_a, "approve", json!({})).await.0, 403);

    // The owner decides: one approval of an owner satisfies team-owned.
    let seen = owner_a.json(&format!("/api/v1/requests/{in_a}")).await;
    assert_eq!(seen["actions"]["approve"], true);
    assert!(seen["policy"]["whyNot"].is_null(), "{seen}");
    assert_eq!(
        decide(&owner_a, &in_a, "approve", json!({"comment": "mine"})).await.0,
        200
    );
    bob.wait_phase(&in_a, "Active").await;
    // An eligible approver may deny.
    assert_eq!(
        decide(&owner_d, &in_d, "deny", json!({"reason": "not today"})).await.0,
        200
    );
    bob.wait_phase(&in_d, "Denied").await;
    stack.stop().await;
}

/// What a request is refused for at creation, with the policy's own message and the field it concerns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_refuses_what_the_policy_refuses() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let oncall = stack.user(&admin, "oncall", "oncall@example.com", false).await;

    let refused = |field: &'static str, has: &'static str| {
        move |(s, e): (u16, Value)| {
            assert_eq!((s, e["field"].as_str()), (422, Some(field)), "{e}");
            let m = e["error"].as_str().unwrap();
            assert!(m.contains(has), "{m:?} lacks {has:?}");
        }
    };
    refused(
        "reason",
        "under policy prod the reason must contain a ticket id such as OPS-1234",
    )(ask(&alice, json!({"namespaces": ["team-b"], "reason": "just looking"})).await);
    refused("ttlSeconds", "longer than policy oncall allows")(
        ask(&alice, json!({"namespaces": ["team-c"], "ttlSeconds": 3600})).await,
    );
    refused("namespaces", "different approval policies")(
        ask(&alice, json!({"namespaces": ["team-a", "team-b"]})).await,
    );
    // team-a's owners annotation names only owner-a, who cannot approve their own request.
    let owner_a = stack.user(&admin, "owner-a", "owner-a@example.com", false).await;
    refused("namespaces", "nobody can approve this request")(ask(&owner_a, json!({"namespaces": ["team-a"]})).await);
    refused(
        "breakGlass",
        "under policy oncall only oncall@example.com may break glass",
    )(ask(&alice, json!({"namespaces": ["team-c"], "breakGlass": true})).await);
    refused("breakGlass", "does not allow break-glass")(
        ask(&alice, json!({"namespaces": ["team-b"], "breakGlass": true})).await,
    );
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    refused("startAt", "break-glass access starts at once")(
        ask(
            &oncall,
            json!({"namespaces": ["team-c"], "breakGlass": true, "startAt": later}),
        )
        .await,
    );
    refused("breakGlass", "lasts at most 600s")(
        ask(
            &oncall,
            json!({"namespaces": ["team-c"], "breakGlass": true, "ttlSeconds": 1200}),
        )
        .await,
    );

    // Start times: not in the past, at most 30 days ahead, RFC 3339 or the form's local time.
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    refused("startAt", "in the past")(ask(&alice, json!({"namespaces": ["team-a"], "startAt": past})).await);
    let far = (chrono::Utc::now() + chrono::Duration::days(31)).to_rfc3339();
    refused("startAt", "30 days")(ask(&alice, json!({"namespaces": ["team-a"], "startAt": far})).await);
    refused("startAt", "not a time")(ask(&alice, json!({"namespaces": ["team-a"], "startAt": "tomorrow"})).await);
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let start = (chrono::Utc::now() + chrono::Duration::hours(2)).with_timezone(&berlin);
    let local = start.format("%Y-%m-%dT%H:%M").to_string();
    let name = created(&alice, json!({"namespaces": ["team-a"], "startAt": local})).await;
    let stored: janus_api::AccessRequest = Api::all(stack.admin_client().await).get(&name).await.unwrap();
    let want = start
        .with_timezone(&chrono::Utc)
        .format("%Y-%m-%dT%H:%M:00Z")
        .to_string();
    assert_eq!(
        stored.spec.start_at.as_deref(),
        Some(want.as_str()),
        "local time read in Europe/Berlin"
    );
    let v = alice.json(&format!("/api/v1/requests/{name}")).await;
    let shown = v["startAtDisplay"].as_str().unwrap();
    assert!(
        shown.starts_with(&start.format("%Y-%m-%d %H:%M:00").to_string()),
        "{shown}"
    );
    stack.stop().await;
}

/// Break-glass: active at once, listed for the policy's approvers until one acknowledges it; the
/// requester, people outside the policy and a second review are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn break_glass_is_reviewed_by_an_approver_once() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let oncall = stack.user(&admin, "oncall", "oncall@example.com", false).await;
    let lead = stack.user(&admin, "lead", "lead@example.com", false).await;

    let name = created(
        &oncall,
        json!({"namespaces": ["team-c"], "breakGlass": true, "ttlSeconds": 600}),
    )
    .await;
    let stored: janus_api::AccessRequest = Api::all(stack.admin_client().await).get(&name).await.unwrap();
    assert!(stored.spec.break_glass.is_some());
    let v = oncall.wait_phase(&name, "Active").await;
    assert_eq!(
        (v["breakGlass"].as_bool(), v["awaitingReview"].as_bool()),
        (Some(true), Some(true))
    );
    let list = lead.json("/api/v1/approvals").await;
    assert_eq!(names(&list["awaitingReview"]), [name.as_str()], "{list}");
    assert!(names(&list["pending"]).is_empty());
    assert_eq!(
        lead.json(&format!("/api/v1/requests/{name}")).await["acknowledge"],
        true
    );

    let (s, e) = decide(&oncall, &name, "acknowledge", json!({})).await;
    assert_eq!(
        (s, e["error"].as_str().unwrap()),
        (403, "you cannot review your own break-glass activation")
    );
    let (s, e) = decide(&admin, &name, "acknowledge", json!({})).await;
    assert_eq!(s, 403, "the admin is not an approver of policy oncall: {e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("may acknowledge under policy oncall"),
        "{e}"
    );
    assert_eq!(decide(&alice, &name, "acknowledge", json!({})).await.0, 404);
    let (s, v) = decide(&lead, &name, "acknowledge", json!({"comment": "incident 7, fine"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["breakGlassReview"]["by"], "lead@example.com");
    assert_eq!(v["breakGlassReview"]["comment"], "incident 7, fine");
    assert_eq!(v["awaitingReview"], false);
    let (s, e) = decide(&lead, &name, "acknowledge", json!({})).await;
    assert_eq!(
        (s, e["error"].as_str().unwrap()),
        (409, "lead@example.com already acknowledged it")
    );
    assert!(names(&lead.json("/api/v1/approvals").await["awaitingReview"]).is_empty());

    // Nothing to acknowledge on a request that did not break glass.
    let plain = created(&alice, json!({"namespaces": ["team-c"]})).await;
    let (s, e) = decide(&lead, &plain, "acknowledge", json!({})).await;
    assert_eq!(
        (s, e["error"].as_str().unwrap()),
        (409, "the request was not a break-glass activation")
    );
    stack.stop().await;
}

/// The form's preview: logged-in only; the policy, its approvers and limits, the reason pattern, and what
/// it means for the caller (break-glass, auto-approval now); a conflict is reported, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_policy_preview_explains_what_a_request_would_meet() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let oncall = stack.user(&admin, "oncall", "oncall@example.com", false).await;
    let path = |ns: &str| format!("/api/v1/policy?cluster=central&namespaces={ns}");

    assert_eq!(stack.anon().get(&path("team-b")).await.status(), 401);
    let p = alice.json(&path("team-b")).await;
    assert_eq!(p["policy"], "prod");
    assert_eq!(p["description"], "Production needs two approvers.");
    assert_eq!(p["approvalsRequired"], 2);
    assert_eq!(p["approvers"]["emails"].as_array().unwrap().len(), 3);
    assert_eq!(p["approvalTtlOptions"], json!([600, 1200]));
    assert_eq!(p["maxTtlSeconds"], 3600);
    assert_eq!(
        p["reason"],
        json!({"pattern": "OPS-[0-9]+", "description": "a ticket id such as OPS-1234"})
    );
    assert_eq!(p["breakGlassAllowed"], false);
    assert!(p["conflict"].is_null());

    let d = alice.json(&path("team-a")).await;
    assert_eq!(d["policy"], "team-owned");
    assert_eq!(d["approvers"]["owners"][0]["emails"], json!(["owner-a@example.com"]));
    let none = alice.json("/api/v1/policy?cluster=central&namespaces=team-f").await;
    assert_eq!(
        (none["policy"].as_str(), none["approvers"]["admins"].as_bool()),
        (Some("default"), Some(true))
    );

    // Someone who is neither named by the rules nor an approver of the policy learns only that they are
    // not allowed, not who is (the approvers are shown: people need to know whom to ask).
    let c = alice.json(&path("team-c")).await;
    assert_eq!(c["breakGlassAllowed"], false);
    assert_eq!(
        c["breakGlassWhyNot"], "your account is not allowed to break glass under policy oncall",
        "{c}"
    );
    assert_eq!(
        c["autoApproval"]["whyNot"], "policy oncall does not auto-approve requests by your account",
        "{c}"
    );
    assert!(!c.to_string().contains("oncall@example.com"), "{c}");
    assert_eq!(c["approvers"]["emails"], json!(["lead@example.com"]));
    // The policy's approver is told who may (they review break-glass activations).
    let lead = stack.user(&admin, "lead", "lead@example.com", false).await;
    let l = lead.json(&path("team-c")).await;
    assert!(
        l["breakGlassWhyNot"]
            .as_str()
            .unwrap()
            .contains("only oncall@example.com"),
        "{l}"
    );
    assert!(
        l["autoApproval"]["whyNot"]
            .as_str()
            .unwrap()
            .contains("oncall@example.com"),
        "{l}"
    );
    let o = oncall.json(&path("team-c")).await;
    assert_eq!(
        (o["breakGlassAllowed"].as_bool(), o["breakGlassMaxTtlSeconds"].as_i64()),
        (Some(true), Some(600))
    );
    let short = oncall.json(&format!("{}&ttlSeconds=300", path("team-c"))).await;
    assert_eq!(short["autoApproval"]["wouldApprove"], true, "{short}");
    let long = oncall.json(&format!("{}&ttlSeconds=600", path("team-c"))).await;
    assert_eq!(long["autoApproval"]["wouldApprove"], false);
    assert!(
        long["autoApproval"]["whyNot"]
            .as_str()
            .unwrap()
            .contains("at most 300s"),
        "{long}"
    );

    let mixed = alice.json(&path("team-a,team-b")).await;
    assert!(
        mixed["conflict"]
            .as_str()
            .unwrap()
            .contains("different approval policies"),
        "{mixed}"
    );
    assert_eq!(mixed["policy"], "");

    for (q, status) in [
        ("cluster=central&namespaces=", 422),
        ("cluster=central&namespaces=Team_A", 422),
        ("cluster=central&namespaces=team-a,kube-system", 422),
        ("cluster=nowhere&namespaces=team-a", 404),
        ("cluster=central", 422),
    ] {
        let r = alice.get(&format!("/api/v1/policy?{q}")).await;
        assert_eq!(r.status().as_u16(), status, "{q}");
    }
    stack.stop().await;
}

/// Groups from the identity provider (proxy mode): approvers named by group approve and their groups are
/// recorded with the approval; the requester's groups are recorded at creation; and an identity provider
/// cannot grant the web's own `k8s-janus:admins` group, with which the default policy and this test's
/// policy name admins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identity_provider_groups_decide_but_cannot_claim_the_web_s_own() {
    use oauth2_proxy::{LOGIN, User};
    const CONFIG: &str = r#"
web: {authMode: proxy, trustedProxies: [127.0.0.1/32]}
policies:
- name: sre
  match: {namespaces: [team-c], requesterGroups: [dev]}
  approvers: {groups: [sre-leads, "k8s-janus:admins"]}
"#;
    const USERS: &[(&str, User)] = &[
        (
            "dev",
            User {
                email: "dev@example.com",
                user: "dev",
                groups: &["dev", "k8s-janus:requesters"],
                preferred_username: None,
            },
        ),
        (
            "mallory",
            User {
                email: "mallory@example.com",
                user: "mallory",
                groups: &["dev", "k8s-janus:admins"],
                preferred_username: None,
            },
        ),
        (
            "lead",
            User {
                email: "lead@example.com",
                user: "lead",
                groups: &["sre-leads"],
                preferred_username: None,
            },
        ),
        (
            "admin",
            User {
                email: "admin@example.com",
                user: "admin",
                groups: &[],
                preferred_username: None,
            },
        ),
    ];
    let stack = Stack::start(CONFIG).await;
    let proxy = oauth2_proxy::start(&stack.url, USERS).await;
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .no_proxy()
        .build()
        .unwrap();
    // A session through the stand-in: the login header names the user; the CSRF token is the session's.
    let session = |login: &'static str| {
        let http = http.clone();
        let base = proxy.url.clone();
        async move {
            let me: Value = http
                .get(format!("{base}/api/v1/session"))
                .header(LOGIN, login)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (
                login,
                me["csrfToken"].as_str().unwrap().to_string(),
                me["identity"].clone(),
            )
        }
    };
    let call = |who: &(&'static str, String, Value), path: String, body: Option<Value>| {
        let mut b = match &body {
            Some(_) => http.post(format!("{}{path}", proxy.url)).header("x-csrf-token", &who.1),
            None => http.get(format!("{}{path}", proxy.url)),
        }
        .header(LOGIN, who.0);
        if let Some(body) = body {
            b = b.json(&body);
        }
        async move {
            let r = b.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let dev = session("dev").await;
    let mallory = session("mallory").await;
    let lead = session("lead").await;
    let admin = session("admin").await;
    assert_eq!(mallory.2["groups"], json!(["dev"]), "the web's own group is dropped");
    assert_eq!(mallory.2["isAdmin"], false);
    assert_eq!(dev.2["groups"], json!(["dev"]));

    let ask = |ns: &str| json!({"cluster": "central", "namespaces": [ns], "ttlSeconds": 600, "reason": "debug"});
    let (s, sre) = call(&dev, "/api/v1/requests".into(), Some(ask("team-c"))).await;
    assert_eq!(s, 201, "{sre}");
    let sre = sre["name"].as_str().unwrap().to_string();
    let (s, plain) = call(&dev, "/api/v1/requests".into(), Some(ask("team-a"))).await;
    assert_eq!(s, 201, "{plain}");
    let plain = plain["name"].as_str().unwrap().to_string();
    let ars: Api<janus_api::AccessRequest> = Api::all(stack.admin_client().await);
    // The groups a policy names (match.requesterGroups), never the web's own.
    assert_eq!(ars.get(&sre).await.unwrap().spec.requester_groups, ["dev"]);

    // Claiming k8s-janus:admins through the identity provider makes nobody an approver.
    for name in [&sre, &plain] {
        let (s, e) = call(&mallory, format!("/api/v1/requests/{name}/approve"), Some(json!({}))).await;
        assert_eq!(s, 404, "{name}: {e}");
    }
    let (_, list) = call(&mallory, "/api/v1/approvals".into(), None).await;
    assert_eq!(
        (list["pending"].clone(), list["approver"].clone()),
        (json!([]), json!(false))
    );

    // Approvers by group, and admins under the default policy, with the groups the web saw.
    let (_, list) = call(&lead, "/api/v1/approvals".into(), None).await;
    assert_eq!(names(&list["pending"]), [sre.as_str()], "{list}");
    let (s, v) = call(&lead, format!("/api/v1/requests/{sre}/approve"), Some(json!({}))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(&admin, format!("/api/v1/requests/{plain}/approve"), Some(json!({}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ars.get(&sre).await.unwrap().spec.approvals[0].groups, ["sre-leads"]);
    assert_eq!(
        ars.get(&plain).await.unwrap().spec.approvals[0].groups,
        [janus_api::policy::JANUS_ADMINS_GROUP]
    );
    for name in [&sre, &plain] {
        let mut phase = Value::Null;
        for _ in 0..300 {
            phase = call(&dev, format!("/api/v1/requests/{name}"), None).await.1["phase"].clone();
            if phase == "Active" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(phase, "Active", "{name}");
    }
    stack.stop().await;
}

/// Approvals written at the same moment are all kept: each is appended under the resourceVersion it
/// read, and a write that lost the race re-reads and appends again instead of replacing the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_approvals_are_all_kept() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let mut approvers = Vec::new();
    for q in ["q1", "q2", "q3"] {
        approvers.push(stack.user(&admin, q, &format!("{q}@example.com"), false).await);
    }
    for round in 0..3 {
        let name = created(
            &alice,
            json!({"namespaces": ["team-e"], "reason": format!("round {round}")}),
        )
        .await;
        let results = futures::future::join_all(
            approvers
                .iter()
                .map(|q| decide(q, &name, "approve", json!({"comment": format!("by {}", q.email)}))),
        )
        .await;
        for (q, (s, v)) in approvers.iter().zip(&results) {
            assert_eq!(*s, 200, "{}: {v}", q.email);
        }
        let stored: janus_api::AccessRequest = Api::all(stack.admin_client().await).get(&name).await.unwrap();
        let mut by: Vec<&str> = stored.spec.approvals.iter().map(|a| a.by.as_str()).collect();
        by.sort_unstable();
        assert_eq!(
            by,
            ["q1@example.com", "q2@example.com", "q3@example.com"],
            "round {round}"
        );
        alice.wait_phase(&name, "Active").await;
        let r = alice
            .post(&format!("/api/v1/requests/{name}/withdraw"), json!({}))
            .await;
        assert_eq!(r.status(), 200);
    }
    stack.stop().await;
}

/// An admin's denial does not wait for the target cluster: it needs no policy judgement, and must work
/// while the cluster cannot be reached. An approval, which does, is refused with 503 until it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_denies_while_the_target_cluster_is_unreachable() {
    // `remote` is configured but its kubeconfig Secret does not exist: nothing can reach it.
    let stack = Stack::start("clusters: [{name: central, displayName: Central}, {name: remote}]\n").await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let ar: janus_api::AccessRequest = serde_json::from_value(json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "far-away"},
        "spec": {"requester": "alice@example.com", "cluster": "remote", "namespaces": ["team-a"],
                 "reason": "debug", "ttlSeconds": 600},
    }))
    .unwrap();
    Api::<janus_api::AccessRequest>::all(stack.admin_client().await)
        .create(&PostParams::default(), &ar)
        .await
        .unwrap();
    assert_eq!(admin.json("/api/v1/requests/far-away").await["cluster"], "remote");
    let (s, e) = decide(&admin, "far-away", "approve", json!({})).await;
    assert_eq!(s, 503, "{e}");
    let (s, e) = decide(
        &admin,
        "far-away",
        "deny",
        json!({"reason": "cluster is being retired"}),
    )
    .await;
    assert_eq!(s, 200, "{e}");
    admin.wait_phase("far-away", "Denied").await;
    stack.stop().await;
}

/// Reads server-sent events until a `request` event naming `name` arrives; the request names seen
/// before it, in order.
async fn live_until(
    events: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    name: &str,
) -> Vec<String> {
    use futures::StreamExt as _;
    let mut text = String::new();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let chunk = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("no live update for {name}; saw {seen:?}"))
            .expect("the stream stays open")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            if !frame.contains("event: request") {
                continue;
            }
            let data = frame.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("{}");
            let v: Value = serde_json::from_str(data).unwrap();
            let n = v["name"].as_str().unwrap_or_default().to_string();
            if n == name {
                return seen;
            }
            seen.push(n);
        }
    }
}

/// Live updates reach the approvers of a request's policy, as its pages do, and no one else: an owner
/// who is not an admin sees changes of the requests they may decide, not those of another team.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_updates_reach_the_approvers_of_the_policy() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;
    let owner_a = stack.user(&admin, "owner-a", "owner-a@example.com", false).await;
    let owner_d = stack.user(&admin, "owner-d", "owner-d@example.com", false).await;
    // The namespace metadata the live filter judges by (the web lists it with the form's namespaces).
    for s in [&owner_a, &owner_d] {
        s.json("/api/v1/policy?cluster=central&namespaces=team-a,team-d").await;
    }
    let mut a_events = owner_a.get("/api/v1/events").await.bytes_stream();
    let mut d_events = owner_d.get("/api/v1/events").await.bytes_stream();

    let in_a = created(&bob, json!({"namespaces": ["team-a"]})).await;
    live_until(&mut a_events, &in_a).await;
    let in_d = created(&bob, json!({"namespaces": ["team-d"]})).await;
    let before = live_until(&mut d_events, &in_d).await;
    assert!(
        !before.contains(&in_a),
        "team-d's owner was sent updates of team-a's request: {before:?}"
    );
    stack.stop().await;
}

/// A proxy-mode identity with `n` groups: `named` plus filler, an empty name and a 300-character one.
fn many_groups(named: &[&'static str], n: usize) -> &'static [&'static str] {
    let mut groups: Vec<&'static str> = vec!["", Box::leak("x".repeat(300).into_boxed_str())];
    groups.extend_from_slice(named);
    let mut i = 0;
    while groups.len() < n {
        groups.push(Box::leak(format!("idp-group-{i:03}").into_boxed_str()));
        i += 1;
    }
    Box::leak(groups.into_boxed_slice())
}

/// People in more groups than the CRD keeps (100 names of 1–256 characters, as AD and Entra users often
/// are) create and approve: only the groups some rule names are recorded — for the requester those of
/// match.requesterGroups / autoApprove / breakGlass, for an approver adminGroups, approvers.groups and
/// the owners annotations, plus `k8s-janus:admins` for admins — and the controller activates on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn people_in_hundreds_of_groups_create_and_approve() {
    use oauth2_proxy::{LOGIN, User};
    const CONFIG: &str = r#"
web: {authMode: proxy, trustedProxies: [127.0.0.1/32]}
adminGroups: [ops-admins]
policies:
- name: big
  match: {namespaces: [team-c], requesterGroups: [dev-team]}
  approvers: {groups: [sre-leads]}
  breakGlass: {groups: [firefighters], maxTtlSeconds: 600}
"#;
    let users: Vec<(&'static str, User)> = vec![
        (
            "dev",
            User {
                email: "dev@example.com",
                user: "dev",
                groups: many_groups(&["dev-team", "firefighters"], 150),
                preferred_username: None,
            },
        ),
        (
            "lead",
            User {
                email: "lead@example.com",
                user: "lead",
                groups: many_groups(&["sre-leads"], 150),
                preferred_username: None,
            },
        ),
        (
            "admin",
            User {
                email: "admin@example.com",
                user: "admin",
                groups: many_groups(&["ops-admins"], 150),
                preferred_username: None,
            },
        ),
    ];
    let stack = Stack::start(CONFIG).await;
    let proxy = oauth2_proxy::start(&stack.url, &users).await;
    let http = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .no_proxy()
        .build()
        .unwrap();
    let csrf = |login: &'static str| {
        let http = http.clone();
        let base = proxy.url.clone();
        async move {
            let me: Value = http
                .get(format!("{base}/api/v1/session"))
                .header(LOGIN, login)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(me["identity"]["groups"].as_array().unwrap().len() >= 148, "{me}");
            me["csrfToken"].as_str().unwrap().to_string()
        }
    };
    let post = |login: &'static str, token: String, path: String, body: Value| {
        let b = http
            .post(format!("{}{path}", proxy.url))
            .header(LOGIN, login)
            .header("x-csrf-token", token)
            .json(&body);
        async move {
            let r = b.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let dev = csrf("dev").await;
    let lead = csrf("lead").await;
    let admin = csrf("admin").await;
    let ask = |ns: &str| json!({"cluster": "central", "namespaces": [ns], "ttlSeconds": 600, "reason": "debug"});
    let (s, v) = post("dev", dev.clone(), "/api/v1/requests".into(), ask("team-c")).await;
    assert_eq!(s, 201, "{v}");
    let big = v["name"].as_str().unwrap().to_string();
    let (s, v) = post("dev", dev.clone(), "/api/v1/requests".into(), ask("team-a")).await;
    assert_eq!(s, 201, "{v}");
    let plain = v["name"].as_str().unwrap().to_string();
    let ars: Api<janus_api::AccessRequest> = Api::all(stack.admin_client().await);
    assert_eq!(
        ars.get(&big).await.unwrap().spec.requester_groups,
        ["dev-team", "firefighters"]
    );

    let (s, v) = post("lead", lead, format!("/api/v1/requests/{big}/approve"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post("admin", admin, format!("/api/v1/requests/{plain}/approve"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ars.get(&big).await.unwrap().spec.approvals[0].groups, ["sre-leads"]);
    assert_eq!(
        ars.get(&plain).await.unwrap().spec.approvals[0].groups,
        [janus_api::policy::JANUS_ADMINS_GROUP, "ops-admins"]
    );
    for name in [&big, &plain] {
        let mut phase = String::new();
        for _ in 0..300 {
            let ar = ars.get(name).await.unwrap();
            phase = ar.status.map(|s| format!("{:?}", s.phase)).unwrap_or_default();
            if phase == "Active" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(phase, "Active", "{name}");
    }
    stack.stop().await;
}

/// Extensions stay within the lifetime the controller allows: the governing policy's maxTtlSeconds (here
/// 1800 under oncall, while the global maximum is 3600), and the break-glass rule's for a break-glass
/// activation. The view says how much room is left, and an extension beyond it is refused with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn extensions_stay_within_the_policy_s_maximum() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let alice = stack.user(&admin, "alice", "alice@example.com", false).await;
    let lead = stack.user(&admin, "lead", "lead@example.com", false).await;
    let oncall = stack.user(&admin, "oncall", "oncall@example.com", false).await;

    let name = created(&alice, json!({"namespaces": ["team-c"], "ttlSeconds": 600})).await;
    assert_eq!(decide(&lead, &name, "approve", json!({})).await.0, 200);
    alice.wait_phase(&name, "Active").await;
    let v = admin.json(&format!("/api/v1/requests/{name}")).await;
    assert_eq!(v["extensionRoomSeconds"], 1200, "{v}");
    let (s, e) = decide(&admin, &name, "extend", json!({"seconds": 1800})).await;
    assert_eq!((s, e["field"].as_str()), (422, Some("seconds")), "{e}");
    let m = e["error"].as_str().unwrap();
    assert!(
        m.contains("at most 1800 seconds in total (policy oncall)") && m.contains("at most 1200 more"),
        "{m}"
    );
    let (s, e) = decide(&admin, &name, "extend", json!({"seconds": 1200})).await;
    assert_eq!(s, 200, "{e}");
    let v = wait_view(&admin, &name, "room used up", |v| v["extensionRoomSeconds"] == 0).await;
    assert_eq!(v["extensions"][0]["seconds"], 1200);

    // Break-glass: at most the rule's 600 s in all, so a 600 s activation cannot be extended.
    let glass = created(
        &oncall,
        json!({"namespaces": ["team-c"], "breakGlass": true, "ttlSeconds": 600}),
    )
    .await;
    oncall.wait_phase(&glass, "Active").await;
    let v = wait_view(&admin, &glass, "break-glass room", |v| {
        !v["extensionRoomSeconds"].is_null()
    })
    .await;
    assert_eq!(v["extensionRoomSeconds"], 0, "{v}");
    let (s, e) = decide(&admin, &glass, "extend", json!({"seconds": 900})).await;
    assert_eq!(s, 422, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("at most 600 seconds in total"),
        "{e}"
    );
    stack.stop().await;
}

/// Who may not: someone who is no approver (and an owner once the annotation names them no more) does
/// not find a request's timeline, nor deny or revoke it under a configured policy (404, as for reading
/// it: the request's existence is not disclosed); a break-glass request that was denied cannot be
/// acknowledged (409). (An approval TTL outside the policy's options is refused with 422 in
/// `two_of_three_approvers_through_the_web`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn those_who_may_not_see_or_decide_are_refused() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let bob = stack.user(&admin, "bob", "bob@example.com", false).await;
    let mallory = stack.user(&admin, "mallory", "mallory@example.com", false).await;
    let owner_a = stack.user(&admin, "owner-a", "owner-a@example.com", false).await;
    let p1 = stack.user(&admin, "p1", "p1@example.com", false).await;
    let lead = stack.user(&admin, "lead", "lead@example.com", false).await;

    // A prod request (configured policy): mallory neither reads its timeline nor denies nor revokes it.
    let prod = created(&bob, json!({"namespaces": ["team-b"], "ttlSeconds": 600})).await;
    assert_eq!(p1.get(&format!("/api/v1/requests/{prod}/timeline")).await.status(), 200);
    assert_eq!(
        mallory.get(&format!("/api/v1/requests/{prod}/timeline")).await.status(),
        404
    );
    assert_eq!(decide(&mallory, &prod, "deny", json!({"reason": "no"})).await.0, 404);
    assert_eq!(decide(&p1, &prod, "approve", json!({})).await.0, 200);
    let p2 = stack.user(&admin, "p2", "p2@example.com", false).await;
    assert_eq!(decide(&p2, &prod, "approve", json!({})).await.0, 200);
    bob.wait_phase(&prod, "Active").await;
    assert_eq!(
        decide(&mallory, &prod, "revoke", json!({"reason": "mine now"})).await.0,
        404
    );
    assert_eq!(
        Api::<janus_api::AccessRequest>::all(stack.admin_client().await)
            .get(&prod)
            .await
            .unwrap()
            .spec
            .revocation,
        None
    );

    // An ex-owner: once team-a's annotation no longer names owner-a, the timeline is not found.
    let in_a = created(&bob, json!({"namespaces": ["team-a"]})).await;
    assert_eq!(
        owner_a.get(&format!("/api/v1/requests/{in_a}/timeline")).await.status(),
        200
    );
    let ns: Api<Namespace> = Api::all(stack.admin_client().await);
    let patch =
        json!({"metadata": {"annotations": {janus_api::policy::APPROVERS_ANNOTATION: "someone-else@example.com"}}});
    ns.patch("team-a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let mut status = 0;
    // The web reads namespace metadata at most a few seconds old.
    for _ in 0..200 {
        status = owner_a
            .get(&format!("/api/v1/requests/{in_a}/timeline"))
            .await
            .status()
            .as_u16();
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 404, "the ex-owner still reads the timeline");
    assert_eq!(decide(&owner_a, &in_a, "deny", json!({"reason": "no"})).await.0, 404);

    // A break-glass request by someone the rule does not allow is denied by the controller (written
    // straight into the CRD: the web refuses it at creation); there is nothing to acknowledge.
    let denied: janus_api::AccessRequest = serde_json::from_value(json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "glass-denied"},
        "spec": {"requester": "bob@example.com", "cluster": "central", "namespaces": ["team-c"],
                 "reason": "fire", "ttlSeconds": 600, "breakGlass": {"at": chrono::Utc::now().to_rfc3339()}},
    }))
    .unwrap();
    Api::<janus_api::AccessRequest>::all(stack.admin_client().await)
        .create(&PostParams::default(), &denied)
        .await
        .unwrap();
    bob.wait_phase("glass-denied", "Denied").await;
    let (s, e) = decide(&lead, "glass-denied", "acknowledge", json!({})).await;
    assert_eq!(s, 409, "{e}");
    stack.stop().await;
}

/// Live updates reach a namespace owner even when the web never listed the cluster's namespaces (a
/// request written straight into the CRD, or created through another replica): the web lists them in
/// the background and publishes the change again, judged on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_updates_reach_owners_without_a_listing() {
    let stack = stack().await;
    let admin = stack.login(ADMIN.0, ADMIN.1).await;
    let owner_a = stack.user(&admin, "owner-a", "owner-a@example.com", false).await;
    let mut events = owner_a.get("/api/v1/events").await.bytes_stream();
    let ar: janus_api::AccessRequest = serde_json::from_value(json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "from-elsewhere"},
        "spec": {"requester": "bob@example.com", "cluster": "central", "namespaces": ["team-a"],
                 "reason": "debug", "ttlSeconds": 600},
    }))
    .unwrap();
    Api::<janus_api::AccessRequest>::all(stack.admin_client().await)
        .create(&PostParams::default(), &ar)
        .await
        .unwrap();
    live_until(&mut events, "from-elsewhere").await;
    stack.stop().await;
}
