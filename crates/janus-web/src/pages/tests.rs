//! Rendering tests of the pages' pure parts: times in the display zone, the terminal page once access
//! has ended, the request form's policy hints and the request page's policy explanation.

use janus_api::AccessRequest;
use janus_api::config::Config;
use janus_api::rules::policy::NamespaceInfo;
use serde_json::json;

use super::local_times;
use super::requests::{
    ScopeChoice, access_cell, action_forms, pod_scope_of, policy_block, policy_hint, role_choice, scope_choice, summary,
};
use super::terminal::{access_ended, debug_form, ended_block, ended_summary, request_again_href, scope_note};
use crate::auth::{AuthSource, Identity};
use crate::service::RequestView;
use crate::service::scope::WorkloadView;

const TZ: chrono_tz::Tz = chrono_tz::Europe::Berlin;
const ENGINEER: &str = "engineer@example.com";

/// Two approvals of three named approvers for payments and checkout on `remote`, with a ticket-id reason.
const POLICY: &str = "policies:\n  - name: payments-team\n    description: Payments <b>owners</b>\n    \
    match: {clusters: [remote], namespaces: [payments, checkout]}\n    \
    approvers: {emails: [alice@example.com, bob@example.com, carol@example.com]}\n    \
    approvalsRequired: 2\n    approvalTtlOptions: [900, 1800]\n    \
    reason: {pattern: '[A-Z]+-[0-9]+', description: 'a ticket id such as OPS-1234'}\n";

fn config_with(extra: &str) -> Config {
    Config::from_yaml(
        &format!("namespace: janus\nadminEmails: [admin@example.com]\ndisplayTimezone: Europe/Berlin\n{extra}"),
        "test",
    )
    .expect("config")
}

fn config() -> Config {
    config_with("")
}

fn infos(names: &[&str]) -> Vec<NamespaceInfo> {
    names
        .iter()
        .map(|n| NamespaceInfo {
            name: (*n).to_string(),
            labels: Default::default(),
            annotations: Default::default(),
        })
        .collect()
}

fn identity(email: &str) -> Identity {
    Identity {
        email: email.into(),
        name: email.into(),
        is_admin: email == "admin@example.com",
        groups: vec![],
        auth: AuthSource::Local,
        csrf: "csrf".into(),
        session: None,
        token: None,
    }
}

/// A request of the engineer on `remote` for payments and checkout, with `spec` and `status` merged in.
fn view(spec: serde_json::Value, status: serde_json::Value) -> RequestView {
    view_as(&config(), ENGINEER, spec, status)
}

/// The same request as `viewer` sees it under `config`.
fn view_as(config: &Config, viewer: &str, spec: serde_json::Value, status: serde_json::Value) -> RequestView {
    let mut ar = json!({
        "apiVersion": "k8s-janus.opsmode.io/v1alpha1",
        "kind": "AccessRequest",
        "metadata": {"name": "req-1", "namespace": "janus", "creationTimestamp": "2026-12-06T06:00:00Z"},
        "spec": {
            "requester": ENGINEER, "cluster": "remote", "namespaces": ["payments", "checkout"],
            "reason": "OPS-1 <script>alert(1)</script> & more", "ttlSeconds": 3600
        },
        "status": status,
    });
    if let (Some(base), Some(extra)) = (ar["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    let ar: AccessRequest = serde_json::from_value(ar).expect("access request");
    RequestView::of(config, &identity(viewer), &ar, &infos(&["payments", "checkout"]))
}

#[test]
fn status_line_shows_times_in_the_display_zone() {
    let r = view(
        json!({"approval": {"by": "admin@example.com", "at": "2026-12-06T06:22:57Z"}}),
        json!({"phase": "Active", "message": "access to payments, checkout on remote until 2026-12-06T07:22:57Z",
               "activeAt": "2026-12-06T06:22:57Z", "expiresAt": "2026-12-06T07:22:57Z"}),
    );
    let html = summary(TZ, &r).into_string();
    assert!(
        html.contains("access to payments, checkout on remote until 2026-12-06 08:22:57 CET"),
        "status line in Europe/Berlin: {html}"
    );
    assert!(
        !html.contains("T07:22:57Z\u{3c}"),
        "no raw RFC 3339 time shown as text: {html}"
    );
    assert!(
        !html.contains("until 2026-12-06T07:22:57Z"),
        "no raw UTC time in the status line: {html}"
    );
    // The reason is text, never markup.
    assert!(
        html.contains("OPS-1 &lt;script&gt;alert(1)&lt;/script&gt; &amp; more"),
        "{html}"
    );
}

#[test]
fn local_times_rewrites_every_timestamp_and_leaves_the_rest() {
    assert_eq!(
        local_times(TZ, "from 2026-07-01T10:00:00Z to 2026-07-01T12:30:00.250+02:00."),
        "from 2026-07-01 12:00:00 CEST to 2026-07-01 12:30:00 CEST."
    );
    assert_eq!(local_times(TZ, "no time here 2026-07-01"), "no time here 2026-07-01");
}

#[test]
fn terminal_after_expiry_says_when_and_offers_only_what_works() {
    let r = view(
        json!({"approval": {"by": "admin@example.com", "at": "2026-12-06T06:22:57Z"}}),
        json!({"phase": "Expired", "message": "access expired", "activeAt": "2026-12-06T06:22:57Z",
               "expiresAt": "2026-12-06T07:22:57Z", "endedAt": "2026-12-06T07:22:58Z"}),
    );
    assert!(access_ended(&r));
    assert_eq!(ended_summary(TZ, &r), "Access expired at 2026-12-06 08:22:58 CET.");
    let html = ended_block(TZ, &r).into_string();
    assert!(html.contains("Access expired at 2026-12-06 08:22:58 CET."), "{html}");
    assert!(!html.contains("0s (ended)"), "{html}");
    assert!(
        !html.contains("<button") && !html.contains("/terminal/"),
        "nothing that opens a shell or logs: {html}"
    );
    assert!(
        html.contains(r#"href="/requests/req-1""#),
        "a link to the request page: {html}"
    );
    let again = request_again_href(&r);
    assert_eq!(
        again,
        "/requests/new?cluster=remote&namespaces=payments%2Ccheckout&reason=OPS-1%20%3Cscript%3Ealert%281%29%3C/script%3E%20%26%20more&role=exec"
    );
    assert!(html.contains("Request again"), "{html}");
}

#[test]
fn terminal_after_revocation_names_who_when_and_why() {
    let r = view(
        json!({"approval": {"by": "admin@example.com", "at": "2026-12-06T06:22:57Z"},
               "revocation": {"by": "admin@example.com", "at": "2026-12-06T06:30:00Z", "reason": "done <b>now</b>"}}),
        json!({"phase": "Active", "message": "access to payments, checkout on remote until 2026-12-06T07:22:57Z",
               "expiresAt": "2026-12-06T07:22:57Z"}),
    );
    // Revoked but not yet acted on by the controller: ended all the same.
    assert!(access_ended(&r));
    assert_eq!(
        ended_summary(TZ, &r),
        "Access was revoked by admin@example.com at 2026-12-06 07:30:00 CET: done <b>now</b>"
    );
    let html = ended_block(TZ, &r).into_string();
    assert!(
        html.contains("done &lt;b&gt;now&lt;/b&gt;"),
        "the reason escaped: {html}"
    );
}

#[test]
fn an_active_request_has_not_ended() {
    let r = view(
        json!({"approval": {"by": "admin@example.com", "at": "2026-12-06T06:22:57Z"}}),
        json!({"phase": "Active", "expiresAt": "2026-12-06T07:22:57Z"}),
    );
    assert!(!access_ended(&r));
}

#[test]
fn request_page_explains_the_policy_quorum_and_why_i_cannot_approve() {
    let cfg = config_with(POLICY);
    let spec = json!({"approvals": [
        {"by": "bob@example.com", "at": "2026-12-06T06:10:00Z", "comment": "looks <i>fine</i>", "ttlSeconds": 900}
    ]});
    let status = json!({"phase": "Pending"});
    // Dave is named nowhere: the page says so, shows 1 of 2, and offers no approve button.
    let r = view_as(&cfg, "dave@example.com", spec.clone(), status.clone());
    let html = policy_block(&r).into_string();
    assert!(html.contains("payments-team"), "{html}");
    assert!(
        html.contains("Payments &lt;b&gt;owners&lt;/b&gt;"),
        "the description escaped: {html}"
    );
    assert!(html.contains("1 of 2 approvals"), "quorum progress: {html}");
    assert!(
        html.contains("alice@example.com, bob@example.com, carol@example.com"),
        "who may approve: {html}"
    );
    assert!(
        html.contains("2026-12-06 07:10:00 CET"),
        "the approval's time in the display zone: {html}"
    );
    assert!(
        html.contains("looks &lt;i&gt;fine&lt;/i&gt;"),
        "the approval comment, escaped: {html}"
    );
    assert!(html.contains("You cannot approve:"), "the why-not text: {html}");
    assert!(
        html.contains("a ticket id such as OPS-1234"),
        "the reason pattern's description: {html}"
    );
    let forms = action_forms(&cfg, &identity("dave@example.com"), &r, "/").into_string();
    assert!(
        !forms.contains("/approve"),
        "no approve form for someone who may not approve: {forms}"
    );

    // Carol may approve: a comment field and the policy's durations, and no why-not.
    let r = view_as(&cfg, "carol@example.com", spec.clone(), status.clone());
    assert!(!policy_block(&r).into_string().contains("You cannot approve"));
    let forms = action_forms(&cfg, &identity("carol@example.com"), &r, "/").into_string();
    assert!(forms.contains(r#"name="comment""#), "approval comment field: {forms}");
    assert!(
        forms.contains(r#"<option value="900">15m</option><option value="1800">30m</option>"#),
        "the policy's TTL options: {forms}"
    );

    // Bob approved already: he is told why he cannot approve again.
    let r = view_as(&cfg, "bob@example.com", spec, status);
    assert!(policy_block(&r).into_string().contains("You cannot approve:"));
}

#[test]
fn break_glass_awaiting_review_shows_badges_and_acknowledge_for_an_approver() {
    let cfg = config_with(POLICY);
    let spec = json!({"breakGlass": {"at": "2026-12-06T06:00:01Z"}, "ttlSeconds": 600});
    let status = json!({"phase": "Active", "expiresAt": "2026-12-06T06:10:01Z",
        "policy": {"name": "payments-team", "approvalsRequired": 2, "approvalsGiven": 0, "breakGlass": true}});
    let r = view_as(&cfg, "alice@example.com", spec.clone(), status.clone());
    let badges = super::requests::badges(&r).into_string();
    assert!(
        badges.contains("break-glass") && badges.contains("awaiting review"),
        "{badges}"
    );
    let forms = action_forms(&cfg, &identity("alice@example.com"), &r, "/admin").into_string();
    assert!(
        forms.contains("/requests/req-1/acknowledge") && forms.contains("Review comment"),
        "{forms}"
    );
    let html = summary(TZ, &r).into_string();
    assert!(
        html.contains("activated by the requester at 2026-12-06 07:00:01 CET"),
        "{html}"
    );
    // The requester cannot review their own break-glass access.
    let r = view_as(&cfg, ENGINEER, spec, status);
    let forms = action_forms(&cfg, &identity(ENGINEER), &r, "/").into_string();
    assert!(!forms.contains("/acknowledge"), "{forms}");
}

#[test]
fn scheduled_request_shows_its_start_time_in_the_display_zone() {
    let r = view(
        json!({"startAt": "2026-12-24T08:00:00Z", "approvals": [{"by": "admin@example.com", "at": "2026-12-06T06:10:00Z"}]}),
        json!({"phase": "Scheduled", "message": "approved; access starts at 2026-12-24T08:00:00Z"}),
    );
    let html = summary(TZ, &r).into_string();
    assert!(
        html.contains("2026-12-24 09:00:00 CET (approved; access starts then)"),
        "{html}"
    );
    assert!(
        html.contains("approved; access starts at 2026-12-24 09:00:00 CET"),
        "{html}"
    );
    assert!(!html.contains("T08:00:00Z"), "no raw UTC time: {html}");
}

#[test]
fn form_hint_shows_policy_approvers_reason_and_conflicts() {
    use crate::service::view::{ApproversSummary, PolicyPreview, ReasonHint};
    let p = PolicyPreview {
        policy: "payments-team".into(),
        description: "Payments owners".into(),
        approvals_required: 2,
        approvers: ApproversSummary {
            emails: vec!["alice@example.com".into()],
            groups: vec!["<leads>".into()],
            ..Default::default()
        },
        max_ttl_seconds: 3600,
        approval_ttl_options: vec![900],
        reason: Some(ReasonHint {
            pattern: "[A-Z]+-[0-9]+".into(),
            description: "a ticket id".into(),
        }),
        ..Default::default()
    };
    let html = policy_hint(Some(&p)).into_string();
    assert!(
        html.contains("payments-team")
            && html.contains("2 approvals needed from: alice@example.com, group &lt;leads&gt;"),
        "{html}"
    );
    assert!(
        html.contains(r#"data-pattern="[A-Z]+-[0-9]+""#) && html.contains("The reason must contain a ticket id."),
        "{html}"
    );
    assert!(
        html.contains("Longest duration: 1h; approvers may choose 15m"),
        "{html}"
    );
    let conflict = PolicyPreview {
        conflict: Some("namespaces a and b fall under different policies".into()),
        ..Default::default()
    };
    assert!(
        policy_hint(Some(&conflict))
            .into_string()
            .contains("different policies")
    );
    assert!(
        policy_hint(None).into_string().contains("hidden"),
        "no hint before namespaces are chosen"
    );
}

/// The extend form offers only what fits in the maximum lifetime of the request's policy (as the
/// controller names it in `status.policy`: here 4500 s, an hour granted), and says so instead of
/// offering anything once nothing fits.
#[test]
fn extend_offers_only_what_the_policy_still_allows() {
    let cfg = config_with(&format!(
        "maxTtlSeconds: 28800\n{}",
        POLICY.replace("approvalsRequired: 2", "approvalsRequired: 2\n    maxTtlSeconds: 4500")
    ));
    let active = |expires: &str| {
        view_as(
            &cfg,
            "admin@example.com",
            json!({}),
            json!({"phase": "Active", "activeAt": "2026-12-06T07:00:00Z", "expiresAt": expires,
                   "policy": {"name": "payments-team", "approvalsRequired": 2, "approvalsGiven": 2}}),
        )
    };
    let r = active("2026-12-06T08:00:00Z");
    assert_eq!(r.extension_room_seconds, Some(900));
    let forms = action_forms(&cfg, &identity("admin@example.com"), &r, "/").into_string();
    assert!(forms.contains(r#"<option value="900">"#), "{forms}");
    assert!(!forms.contains(r#"<option value="1800">"#), "{forms}");
    let full = active("2026-12-06T08:15:00Z");
    assert_eq!(full.extension_room_seconds, Some(0));
    let forms = action_forms(&cfg, &identity("admin@example.com"), &full, "/").into_string();
    assert!(!forms.contains("/extend"), "{forms}");
    assert!(forms.contains("cannot be extended"), "{forms}");
}

/// Roles with a debug image allow-list (exact and prefix entries).
const ROLES: &str = "roles:\n  - {name: exec, displayName: Shell, description: 'A shell <b>here</b>', clusterRole: janus-pod-exec, terminal: shell}\n  \
    - {name: logs, displayName: Logs (read-only), description: Read pod logs and events. No shell., clusterRole: janus-pod-logs, terminal: logs}\n  \
    - {name: debug, displayName: Debug container, description: Ephemeral containers., clusterRole: janus-pod-debug, terminal: debug, \
    debugImages: ['busybox:1.36', 'nicolaka/netshoot:*']}\n";

#[test]
fn form_offers_each_role_with_its_description_tied_to_its_radio() {
    let c = config_with(ROLES);
    let roles: Vec<_> = c
        .roles
        .iter()
        .map(|r| (crate::service::scope::RoleView::of(r), r.name != "debug"))
        .collect();
    let html = role_choice(&roles, "logs").into_string();
    assert!(
        html.contains(r#"<label class="role-card unavailable" data-role="debug" data-terminal="debug" title="Not allowed by the policy for the chosen namespaces"><input type="radio" name="role" value="debug" disabled"#),
        "a role the governing policy refuses stays listed, disabled, saying why: {html}"
    );
    assert_eq!(html.matches(" disabled ").count(), 1, "only that one: {html}");
    for (name, title) in [
        ("exec", "Shell"),
        ("logs", "Logs (read-only)"),
        ("debug", "Debug container"),
    ] {
        assert!(
            html.contains(&format!(r#"value="{name}""#)) && html.contains(title),
            "role {name} offered as {title}: {html}"
        );
        assert!(
            html.contains(&format!(r#"aria-describedby="role-desc-{name}""#))
                && html.contains(&format!(r#"id="role-desc-{name}""#))
                && html.contains(&format!(
                    r#"<span class="role-title" id="role-title-{name}">{title}</span>"#
                )),
            "the description of {name} is tied to its radio: {html}"
        );
    }
    assert!(
        html.contains(r#"<input type="radio" name="role" value="logs" checked aria-labelledby="role-title-logs""#),
        "the chosen role is checked: {html}"
    );
    assert!(!html.contains(r#"value="exec" checked"#), "one role checked: {html}");
    assert!(
        html.contains("A shell &lt;b&gt;here&lt;/b&gt;"),
        "descriptions are text: {html}"
    );
    assert!(
        html.contains("<legend>Access</legend>"),
        "the group is labelled: {html}"
    );
    let refused = role_choice(&roles, "debug").into_string();
    assert!(
        refused.contains(r#"value="exec" checked"#) && !refused.contains(r#"value="debug" checked"#),
        "a refused role asked for gives way to the first allowed one: {refused}"
    );
}

#[test]
fn scope_picker_keeps_the_choice_and_says_when_a_workload_can_be_picked() {
    let one = vec!["payments".to_string()];
    let two = vec!["payments".to_string(), "checkout".to_string()];
    let html = scope_choice(&ScopeChoice::All, &two, &[]).into_string();
    assert!(
        html.contains(r#"name="scope" value="all" checked"#),
        "all pods by default: {html}"
    );
    assert!(
        html.contains("Choose exactly one namespace"),
        "a workload needs one namespace: {html}"
    );
    let html = scope_choice(&ScopeChoice::Workload("Deployment/payments-api".into()), &one, &[]).into_string();
    assert!(html.contains(r#"value="workload" checked"#), "{html}");
    assert!(
        html.contains(r#"<option value="Deployment/payments-api" selected>Deployment payments-api</option>"#),
        "the workload chosen stays chosen (a form sent back with an error): {html}"
    );
    // Listed by the server (one namespace chosen): every workload offered, the chosen one selected.
    let listed = [
        WorkloadView {
            kind: "Deployment".into(),
            name: "payments-api".into(),
            replicas: 2,
            ready_replicas: 2,
            selector: Some("app=payments-api".into()),
            selector_error: None,
        },
        WorkloadView {
            kind: "StatefulSet".into(),
            name: "db".into(),
            replicas: 1,
            ready_replicas: 1,
            selector: Some("app=db".into()),
            selector_error: None,
        },
    ];
    let html = scope_choice(&ScopeChoice::Workload("StatefulSet/db".into()), &one, &listed).into_string();
    assert!(
        html.contains(r#"<option value="Deployment/payments-api" title="pods with app=payments-api">Deployment payments-api (2 replicas)</option>"#)
            && html.contains(r#"<option value="StatefulSet/db" selected title="pods with app=db">StatefulSet db (1 replica)</option>"#),
        "the workloads listed without JavaScript, the chosen one selected once: {html}"
    );
    assert_eq!(html.matches("StatefulSet/db").count(), 1, "{html}");
    let html = scope_choice(&ScopeChoice::Selector("app=\"x\"<".into()), &one, &[]).into_string();
    assert!(html.contains(r#"value="selector" checked"#), "{html}");
    assert!(
        html.contains(r#"value="app=&quot;x&quot;&lt;""#),
        "the selector typed stays, escaped: {html}"
    );
    assert!(
        html.contains(r#"for="pod-selector""#) && html.contains(r#"id="pod-selector""#),
        "labelled: {html}"
    );
}

#[test]
fn form_scope_becomes_the_request_pod_scope_or_a_clear_error() {
    use janus_api::access_request::WorkloadKind;
    assert_eq!(pod_scope_of(&ScopeChoice::All).expect("all"), None);
    let w = pod_scope_of(&ScopeChoice::Workload("StatefulSet/db".into()))
        .expect("workload")
        .and_then(|s| s.workload)
        .expect("a workload scope");
    assert_eq!((w.kind, w.name.as_str()), (WorkloadKind::StatefulSet, "db"));
    let s = pod_scope_of(&ScopeChoice::Selector("app=checkout, tier in (b,a)".into()))
        .expect("selector")
        .and_then(|s| s.selector)
        .expect("a selector scope");
    assert_eq!(
        janus_api::rules::scope::selector_string(&s),
        "app=checkout,tier in (a,b)"
    );
    for (bad, says) in [
        (ScopeChoice::Workload(String::new()), "choose a workload"),
        (ScopeChoice::Workload("Job/x".into()), "choose a workload"),
        (ScopeChoice::Selector("  ".into()), "type a label selector"),
        (ScopeChoice::Selector("app in (a".into()), "without its ')'"),
    ] {
        match pod_scope_of(&bad) {
            Err(crate::error::WebError::Invalid { field, message }) => {
                assert_eq!(field, "podScope", "{bad:?}");
                assert!(message.contains(says), "{bad:?}: {message}");
            }
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
}

#[test]
fn role_and_scope_show_on_the_request_page_and_in_rows() {
    let c = config_with(ROLES);
    let r = view_as(
        &c,
        ENGINEER,
        json!({"role": "logs", "podScope": {"selector": {"matchLabels": {"app": "checkout"}}}}),
        json!({"phase": "Pending"}),
    );
    let html = summary(TZ, &r).into_string();
    assert!(
        html.contains("Logs (read-only) · pods with app=checkout"),
        "role and scope on the request page: {html}"
    );
    assert!(html.contains("Read pod logs and events. No shell."), "{html}");
    let row = access_cell(&r).into_string();
    assert!(
        row.contains("Logs (read-only) · pods with app=checkout") && row.contains(r#"data-role="logs""#),
        "{row}"
    );
    let r = view_as(
        &c,
        ENGINEER,
        json!({"namespaces": ["payments"], "podScope": {"workload": {"kind": "Deployment", "name": "payments-api"}}}),
        json!({"phase": "Active", "grants": [{"namespace": "payments", "serviceAccount": "sa", "roleBinding": "rb", "tokenSecret": "",
               "scopedRole": "rb", "podSelector": "app=payments-api"}]}),
    );
    assert!(
        summary(TZ, &r)
            .into_string()
            .contains("Shell · pods of deployment payments-api"),
        "the default role is the shell"
    );
    let note = scope_note(&r).into_string();
    assert!(
        note.contains("pods of deployment payments-api") && note.contains("app=payments-api"),
        "the terminal says which pods it lists, and the workload's selector: {note}"
    );
    assert_eq!(
        request_again_href(&r),
        "/requests/new?cluster=remote&namespaces=payments&reason=OPS-1%20%3Cscript%3Ealert%281%29%3C/script%3E%20%26%20more&role=exec&workload=Deployment/payments-api",
        "asking again keeps the role and the scope"
    );
    let unscoped = view(json!({}), json!({"phase": "Active"}));
    assert_eq!(scope_note(&unscoped).into_string(), "", "no note without a scope");
}

#[test]
fn debug_form_offers_the_roles_images_only() {
    let c = config_with(ROLES);
    let r = view_as(&c, ENGINEER, json!({"role": "debug"}), json!({"phase": "Active"}));
    let html = debug_form(&r).into_string();
    assert!(
        html.contains(r#"id="debug-image" type="text" name="image" list="debug-images" value="busybox:1.36""#),
        "the first exact image is preset: {html}"
    );
    assert!(
        html.contains(r#"<option value="nicolaka/netshoot:">"#),
        "a prefix entry is offered as its prefix: {html}"
    );
    assert!(html.contains("Allowed: busybox:1.36, nicolaka/netshoot:*"), "{html}");
    for id in ["debug-pod", "debug-target", "debug-image"] {
        assert!(html.contains(&format!(r#"for="{id}""#)), "{id} labelled: {html}");
    }
}
