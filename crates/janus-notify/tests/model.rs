//! The message model and renderers: who gets what for each event, links from `web.baseUrl` (and words
//! without it), and no token ever in any rendering.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use chrono::{TimeZone, Utc};
use janus_api::config::Config;
use janus_api::notifications::{EVENT_KINDS, EXPIRING_SOON, MESSAGE_KINDS};
use janus_notify::model::{Context, Event, Topic, expiring_soon_event, implied};
use janus_notify::render;
use janus_store::{AuditKind, RequestRecord};
use serde_json::json;

const CONFIG: &str = r#"
adminEmails: [admin@example.com]
adminGroups: [platform-admins]
web: {baseUrl: "https://janus.example.com/"}
clusters: [{name: prod}]
policies:
  - name: db
    match: {clusters: [prod]}
    approvers: {emails: [dba@example.com, "*@dba.example.com"], groups: [dbas]}
"#;

const TOKEN: &str =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YXBwcyJ9.c2lnbmF0dXJlLXZhbHVl";
const KUBECONFIG_DATA: &str = "client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpNSUlFb3dJQkFBS0NBUUVB";

fn record(policy: Option<&str>) -> RequestRecord {
    serde_json::from_value(json!({
        "name": "alice-prod-x1",
        "requester": "Alice@Example.com",
        "cluster": "prod",
        "namespaces": ["payments"],
        "reason": "INC-42 crash loop",
        "ttlSeconds": 3600,
        "phase": "Active",
        "message": "",
        "createdAt": "2026-12-06T10:00:00Z",
        "approvedBy": null,
        "decidedBy": null,
        "expiresAt": "2026-12-06T11:00:00Z",
        "endedAt": null,
        "updatedAt": "2026-12-06T10:00:00Z",
        "deletedAt": null,
        "policy": policy,
    }))
    .unwrap()
}

fn event(kind: &str, actor: &str, details: serde_json::Value) -> Event {
    Event {
        key: format!("uid-1/{kind}"),
        kind: kind.into(),
        at: Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap(),
        actor: actor.into(),
        request: Some("alice-prod-x1".into()),
        cluster: Some("prod".into()),
        namespaces: vec!["payments".into()],
        details,
    }
}

#[test]
fn the_event_kinds_of_the_configuration_are_the_audit_kinds_and_expiring_soon() {
    let mut audit: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
    audit.push(EXPIRING_SOON);
    assert_eq!(
        EVENT_KINDS.to_vec(),
        audit,
        "janus-api's EVENT_KINDS drifted from AuditKind::ALL"
    );
    for k in MESSAGE_KINDS {
        assert!(EVENT_KINDS.contains(k), "{k}");
    }
}

#[test]
fn a_pending_request_goes_to_the_policys_approvers_else_the_admins() {
    let config = Config::from_yaml(CONFIG, "t").unwrap();
    let rec = record(Some("db"));
    let ctx = Context {
        request: Some(&rec),
        role: Some("edit"),
        ..Context::new(&config)
    };
    let created = event(
        "request.created",
        "alice@example.com",
        json!({"reason": "INC-42 crash loop", "ttl_seconds": 3600}),
    );
    let n = implied(&created, &ctx);
    let m = n.message.expect("pending has a message");
    assert_eq!(m.topic, Topic::Pending);
    assert!(!m.urgent);
    // The pattern is not an address; groups are kept for the chat sinks.
    assert_eq!(m.to.emails, vec!["dba@example.com"]);
    assert_eq!(m.to.groups, vec!["dbas"]);
    assert!(m.facts.contains(&("Duration".into(), "1h".into())), "{:?}", m.facts);
    assert!(m.facts.contains(&("Role".into(), "edit".into())));
    assert!(m.facts.contains(&("Reason".into(), "INC-42 crash loop".into())));
    assert_eq!(m.links[0].url, "https://janus.example.com/requests/alice-prod-x1");
    assert_eq!(m.links[1].url, "https://janus.example.com/admin");
    assert_eq!(m.where_to_go, None);
    assert_eq!(n.policy.as_deref(), Some("db"));

    // No policy (the default): the admins.
    let rec = record(None);
    let ctx = Context {
        request: Some(&rec),
        ..Context::new(&config)
    };
    let m = implied(&created, &ctx).message.unwrap();
    assert_eq!(m.to.emails, vec!["admin@example.com"]);
    assert_eq!(m.to.groups, vec!["platform-admins"]);

    // A break-glass request's creation is not "pending": the activation event carries the message.
    let bg = event("request.created", "alice@example.com", json!({"break_glass": true}));
    assert!(implied(&bg, &ctx).message.is_none());
}

#[test]
fn break_glass_goes_to_every_approver_marked_urgent() {
    let config = Config::from_yaml(CONFIG, "t").unwrap();
    let ctx = Context::new(&config);
    let e = event(
        "request.break_glass",
        "alice@example.com",
        json!({"policy": "db", "reason": "outage", "ttl_seconds": 900}),
    );
    let m = implied(&e, &ctx).message.unwrap();
    assert_eq!(m.topic, Topic::BreakGlass);
    assert!(m.urgent);
    assert_eq!(m.to.emails, vec!["dba@example.com"]);
    assert!(m.title.starts_with("URGENT"), "{}", m.title);
    assert!(render::email(&m).subject.starts_with("[URGENT]"));
    assert!(
        render::slack(&m, None)["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .starts_with(":rotating_light:")
    );
    // The requester's own approval under break-glass sends nothing more.
    let approved = event("request.approved", "alice@example.com", json!({"via": "break_glass"}));
    assert!(implied(&approved, &ctx).message.is_none());
}

#[test]
fn decisions_and_the_lifecycle_go_to_the_requester() {
    let config = Config::from_yaml(CONFIG, "t").unwrap();
    let rec = record(Some("db"));
    let ctx = Context {
        request: Some(&rec),
        ..Context::new(&config)
    };
    let cases = [
        (
            event(
                "request.approved",
                "dba@example.com",
                json!({"ttl_seconds": 1800, "comment": "go ahead", "approvers": ["dba@example.com"]}),
            ),
            Topic::Approved,
            vec!["30m", "go ahead", "dba@example.com"],
        ),
        (
            event("request.denied", "dba@example.com", json!({"reason": "use staging"})),
            Topic::Denied,
            vec!["use staging"],
        ),
        (
            event("request.auto_denied", "system", json!({"reason": "pending too long"})),
            Topic::Denied,
            vec!["pending too long", "nobody decided in time"],
        ),
        (
            event("request.activated", "system", json!({"ttl_seconds": 3600})),
            Topic::Active,
            vec!["2026-12-06T11:00:00+00:00"],
        ),
        (
            expiring_soon_event(&rec, Utc.with_ymd_and_hms(2026, 12, 6, 11, 0, 0).unwrap(), Utc::now()),
            Topic::ExpiringSoon,
            vec!["2026-12-06T11:00:00+00:00"],
        ),
        (
            event("request.expired", "system", json!({})),
            Topic::Ended,
            vec!["expired"],
        ),
        (
            event("request.revoked", "admin@example.com", json!({"reason": "done early"})),
            Topic::Ended,
            vec!["revoked", "done early"],
        ),
        (
            event("request.withdrawn", "alice@example.com", json!({})),
            Topic::Ended,
            vec!["withdrawn"],
        ),
        (
            event(
                "request.failed",
                "system",
                json!({"message": "namespace payments is gone"}),
            ),
            Topic::Ended,
            vec!["failed", "namespace payments is gone"],
        ),
    ];
    for (e, topic, wants) in cases {
        let m = implied(&e, &ctx)
            .message
            .unwrap_or_else(|| panic!("{} has a message", e.kind));
        assert_eq!(m.topic, topic, "{}", e.kind);
        assert_eq!(m.to.emails, vec!["alice@example.com"], "{}", e.kind);
        let text = render::email(&m).text;
        for w in wants {
            assert!(text.contains(w), "{}: {w} not in {text}", e.kind);
        }
        assert!(
            m.links.iter().all(|l| l.url.starts_with("https://janus.example.com/")),
            "{}",
            e.kind
        );
    }
    let approved = implied(&event("request.approved", "dba@example.com", json!({})), &ctx)
        .message
        .unwrap();
    assert!(
        approved
            .links
            .iter()
            .any(|l| l.url == "https://janus.example.com/terminal/alice-prod-x1")
    );
    // Each extension moves the end: a new expiring-soon key.
    let a = expiring_soon_event(&rec, Utc.with_ymd_and_hms(2026, 12, 6, 11, 0, 0).unwrap(), Utc::now());
    let b = expiring_soon_event(&rec, Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap(), Utc::now());
    assert_ne!(a.key, b.key);
    // Events that are not about a person's request carry no message, only the event (audit streaming).
    let login = Event {
        request: None,
        cluster: None,
        namespaces: vec![],
        ..event("login.failed", "bob", json!({"reason": "wrong password"}))
    };
    let n = implied(&login, &ctx);
    assert!(n.message.is_none());
    // An outbox row can keep a notification as JSON.
    let pending = implied(&event("request.created", "alice@example.com", json!({})), &ctx);
    let back: janus_notify::Notification = serde_json::from_str(&serde_json::to_string(&pending).unwrap()).unwrap();
    assert_eq!(back, pending);
    assert_eq!(n.idempotency_key("siem"), "uid-1/login.failed/siem");
}

#[test]
fn without_a_base_url_messages_say_where_to_go_and_carry_no_link() {
    let config = Config::from_yaml("adminEmails: [admin@example.com]\n", "t").unwrap();
    let ctx = Context::new(&config);
    let m = implied(&event("request.created", "alice@example.com", json!({})), &ctx)
        .message
        .unwrap();
    assert!(m.links.is_empty());
    let words = m.where_to_go.clone().unwrap();
    assert!(
        words.contains("Approvals") && words.contains("alice-prod-x1"),
        "{words}"
    );
    assert!(render::email(&m).text.contains(&words));
    assert!(render::email(&m).html.contains(&words));
    let slack = render::slack(&m, None).to_string();
    assert!(slack.contains(&words) && !slack.contains("\"url\""), "{slack}");
    let teams = render::teams(&m).to_string();
    assert!(teams.contains(&words) && !teams.contains("Action.OpenUrl"), "{teams}");
}

#[test]
fn no_rendering_of_any_kind_ever_carries_a_token_or_kubeconfig_data() {
    let config = Config::from_yaml(CONFIG, "t").unwrap();
    let mut rec = record(Some("db"));
    rec.reason = format!("please {TOKEN}");
    let ctx = Context {
        request: Some(&rec),
        ..Context::new(&config)
    };
    let poisoned = json!({
        "reason": format!("need it {TOKEN}"),
        "comment": format!("here is my kubeconfig {KUBECONFIG_DATA}"),
        "message": format!("Bearer {TOKEN}"),
        "token": TOKEN,
        "grants": [{"namespace": "payments", "token": TOKEN, "kubeconfig": KUBECONFIG_DATA}],
        "approvers": [TOKEN],
        "ttl_seconds": 3600,
        "expires_at": "2026-12-06T11:00:00Z",
    });
    let secrets = [TOKEN, "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVkt", "c2lnbmF0dXJlLXZhbHVl"];
    for kind in EVENT_KINDS {
        let mut e = event(kind, "alice@example.com", poisoned.clone());
        e.actor = if *kind == "request.revoked" {
            format!("admin {TOKEN}")
        } else {
            e.actor
        };
        let n = implied(&e, &ctx);
        let mut renderings = vec![
            render::cloudevent(&n, "k").to_string(),
            render::syslog_line(&n, "web-0", "k8s-janus", "k"),
            serde_json::to_string(&n).unwrap(),
        ];
        if let Some(m) = &n.message {
            let mail = render::email(m);
            renderings.extend([
                render::slack(m, None).to_string(),
                render::teams(m).to_string(),
                mail.subject,
                mail.text,
                mail.html,
            ]);
        }
        for r in renderings {
            for s in secrets {
                assert!(!r.contains(s), "{kind}: a secret leaked into {r}");
            }
        }
    }
}

#[test]
fn renderings_follow_their_formats() {
    let config = Config::from_yaml(CONFIG, "t").unwrap();
    let rec = record(Some("db"));
    let ctx = Context {
        request: Some(&rec),
        ..Context::new(&config)
    };
    let n = implied(
        &event("request.created", "alice@example.com", json!({"ttl_seconds": 3600})),
        &ctx,
    );
    let m = n.message.as_ref().unwrap();
    // Teams: a message with one Adaptive Card 1.4 attachment.
    let t = render::teams(m);
    assert_eq!(t["type"], "message");
    assert_eq!(
        t["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(t["attachments"][0]["content"]["type"], "AdaptiveCard");
    assert_eq!(t["attachments"][0]["content"]["version"], "1.4");
    // CloudEvents 1.0 required attributes.
    let ce = render::cloudevent(&n, "uid-1/request.created/hook");
    for attr in ["specversion", "id", "source", "type"] {
        assert!(ce[attr].is_string(), "{attr}");
    }
    assert_eq!(ce["type"], "io.opsmode.k8s-janus.request.created");
    assert_eq!(ce["id"], "uid-1/request.created/hook");
    assert_eq!(ce["subject"], "alice-prod-x1");
    // RFC 5424: PRI 13*8+6 = 110, version 1, structured data with the key.
    let line = render::syslog_line(&n, "web-0", "k8s-janus", "uid-1/request.created/siem");
    assert!(line.starts_with("<110>1 2026-12-06T10:00:00.000000Z web-0 k8s-janus - request.created [janus@32473 key=\"uid-1/request.created\""), "{line}");
    let framed = render::octet_frame(&line);
    assert!(framed.starts_with(format!("{} <110>", line.len()).as_bytes()));
}
