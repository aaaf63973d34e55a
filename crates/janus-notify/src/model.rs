//! The message model: which notification an audit event implies, what it says and to whom.
//!
//! Pure functions of the event, the request's history row and the configuration. The delivery loop
//! calls [`implied`] for every stored audit event (and for the synthetic "expiring soon" event, see
//! [`expiring_soon_event`]) and hands the [`Notification`] to every sink whose filter takes it
//! ([`crate::Sink::accepts`]).

use chrono::{DateTime, Utc};
use janus_api::config::Config;
use janus_api::notifications::EXPIRING_SOON;
use janus_api::rules::policy::Governing;
use janus_store::{AuditEvent, RequestRecord};
use serde::{Deserialize, Serialize};

use crate::redact::{scrub_text, scrub_value};

/// What a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// A new request waits for a decision: to its approvers.
    Pending,
    /// The requester activated access under break-glass: to every approver, urgent.
    BreakGlass,
    /// The request was approved: to the requester.
    Approved,
    /// The request was denied (by a person, by validation or by the pending timeout): to the requester.
    Denied,
    /// Credentials were issued: to the requester.
    Active,
    /// Access ends soon: to the requester.
    ExpiringSoon,
    /// Access ended (expired, revoked, withdrawn, failed, spec changed): to the requester.
    Ended,
}

/// A link in a message (absolute, built from `web.baseUrl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Button or link text.
    pub label: String,
    /// Absolute URL.
    pub url: String,
}

/// Who a message is for. Emails are what the email sink sends to; groups are shown by the chat sinks
/// ("for the approvers in group ops").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipients {
    /// Email addresses (lower-cased, no duplicates, no glob patterns).
    pub emails: Vec<String>,
    /// Group names.
    pub groups: Vec<String>,
}

/// The part of a notification written for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// What it is about.
    pub topic: Topic,
    /// Break-glass: shown as urgent (and sent with high priority by email).
    pub urgent: bool,
    /// One line (chat header, email subject).
    pub title: String,
    /// One or two sentences.
    pub text: String,
    /// Label/value pairs (requester, cluster, namespaces, ...).
    pub facts: Vec<(String, String)>,
    /// Links; empty when `web.baseUrl` is not set.
    pub links: Vec<Link>,
    /// Where to go in the web UI, said in words, when there is no base URL to link from.
    pub where_to_go: Option<String>,
    /// Recipients.
    pub to: Recipients,
}

/// An audit event as the notifications see it: what [`implied`] reads (from a stored
/// [`AuditEvent`], or the synthetic [`expiring_soon_event`]) and, scrubbed, what sinks show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The audit event's idempotency key (`<uid>/<kind>`); with the sink name the delivery's key.
    pub key: String,
    /// The event kind's string form.
    pub kind: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: String,
    /// The AccessRequest it concerns.
    pub request: Option<String>,
    /// The cluster it concerns.
    pub cluster: Option<String>,
    /// The namespaces it concerns.
    pub namespaces: Vec<String>,
    /// Kind-specific details (in a [`Notification`], scrubbed: [`crate::redact::scrub_value`]).
    pub details: serde_json::Value,
}

impl From<&AuditEvent> for Event {
    fn from(e: &AuditEvent) -> Self {
        Self {
            key: e.key.clone(),
            kind: e.kind.clone(),
            at: e.at,
            actor: e.actor.clone(),
            request: e.request.clone(),
            cluster: e.cluster.clone(),
            namespaces: e.namespaces.clone(),
            details: e.details.clone(),
        }
    }
}

/// What one audit event tells the sinks: always the event (audit streaming), and a message for people
/// when the kind carries one. Serializes to JSON and back, so an outbox row can keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The event.
    pub event: Event,
    /// The message, for pending, decisions, active, expiring soon, ended and break-glass.
    pub message: Option<Message>,
    /// The policy that governed the request (for routing).
    pub policy: Option<String>,
}

impl Notification {
    /// The idempotency key of this notification's delivery to `sink`: the receiver drops a repeat.
    pub fn idempotency_key(&self, sink: &str) -> String {
        format!("{}/{sink}", self.event.key)
    }
}

/// What [`implied`] knows besides the event.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The configuration: `web.baseUrl`, `adminEmails`/`adminGroups`, the policies.
    pub config: &'a Config,
    /// The request's history row, when the event concerns a request the store knows.
    pub request: Option<&'a RequestRecord>,
    /// The request's role (`spec.role`), when known.
    pub role: Option<&'a str>,
    /// The governing policy resolved against the request's namespaces (with namespace owners), when the
    /// caller has the AccessRequest; without it the policy is looked up by name in the configuration.
    pub governing: Option<&'a Governing<'a>>,
}

impl<'a> Context<'a> {
    /// A context with only the configuration.
    pub fn new(config: &'a Config) -> Self {
        Self {
            config,
            request: None,
            role: None,
            governing: None,
        }
    }
}

/// The synthetic "access expires soon" event for a request whose access ends at `expires_at`, in the
/// shape of an audit event (kind [`EXPIRING_SOON`], key `<request>/request.expiring_soon/<expires_at>`
/// so an extension, which moves the end, gets its own message).
pub fn expiring_soon_event(record: &RequestRecord, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Event {
    Event {
        key: format!("{}/{EXPIRING_SOON}/{}", record.name, expires_at.timestamp()),
        kind: EXPIRING_SOON.into(),
        at: now,
        actor: "system".into(),
        request: Some(record.name.clone()),
        cluster: Some(record.cluster.clone()),
        namespaces: record.namespaces.clone(),
        details: serde_json::json!({ "expires_at": expires_at.to_rfc3339() }),
    }
}

fn detail_str(details: &serde_json::Value, key: &str) -> Option<String> {
    match details.get(key)? {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(scrub_text(s)),
        _ => None,
    }
}

fn detail_i64(details: &serde_json::Value, key: &str) -> Option<i64> {
    details.get(key)?.as_i64()
}

pub use janus_api::rules::time::human_duration;

fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn push_unique(list: &mut Vec<String>, value: &str) {
    let v = value.trim().to_lowercase();
    if !v.is_empty() && !is_pattern(&v) && !list.contains(&v) {
        list.push(v);
    }
}

/// The approvers of the request: the governing policy's (with namespace owners when resolved), else the
/// admins. A policy that names approvers only by group or by pattern has no email to send to: the email
/// goes to `adminEmails` then, the chat sinks still show the groups.
fn approvers(ctx: &Context<'_>, policy: Option<&str>) -> Recipients {
    let mut r = Recipients::default();
    if let Some(g) = ctx.governing {
        for e in &g.approver_emails {
            push_unique(&mut r.emails, e);
        }
        r.groups.extend(g.approver_groups.iter().cloned());
        for o in &g.owners {
            for e in &o.emails {
                push_unique(&mut r.emails, e);
            }
            r.groups.extend(o.groups.iter().cloned());
        }
    } else if let Some(p) = policy.and_then(|name| ctx.config.policies.iter().find(|p| p.name == name)) {
        for e in &p.approvers.emails {
            push_unique(&mut r.emails, e);
        }
        r.groups.extend(p.approvers.groups.iter().cloned());
    } else {
        for e in &ctx.config.admin_emails {
            push_unique(&mut r.emails, e);
        }
        r.groups.extend(ctx.config.admin_groups.iter().cloned());
    }
    if r.emails.is_empty() {
        for e in &ctx.config.admin_emails {
            push_unique(&mut r.emails, e);
        }
    }
    r.groups.sort();
    r.groups.dedup();
    r
}

struct Links<'a> {
    base: &'a str,
}

impl Links<'_> {
    fn url(&self, path: &str) -> Option<String> {
        (!self.base.is_empty()).then(|| format!("{}{path}", self.base))
    }
}

/// The notification `event` implies (`Event::from(&stored_audit_event)`): always the scrubbed event,
/// for audit streaming, and a message for people when its kind carries one.
pub fn implied(event: &Event, ctx: &Context<'_>) -> Notification {
    let details = &event.details;
    let record = ctx.request;
    let policy = record
        .and_then(|r| r.policy.clone())
        .or_else(|| detail_str(details, "policy"))
        .or_else(|| ctx.governing.map(|g| g.name.clone()));
    let summary = Event {
        key: event.key.clone(),
        kind: event.kind.clone(),
        at: event.at,
        // Names and emails in practice; scrubbed all the same, as they end up in other systems.
        actor: scrub_text(&event.actor),
        request: event.request.as_deref().map(scrub_text),
        cluster: event.cluster.as_deref().map(scrub_text),
        namespaces: event.namespaces.iter().map(|n| scrub_text(n)).collect(),
        details: scrub_value(details),
    };
    let message = message(event, ctx, policy.as_deref());
    Notification {
        event: summary,
        message,
        policy,
    }
}

fn message(event: &Event, ctx: &Context<'_>, policy: Option<&str>) -> Option<Message> {
    let details = &event.details;
    let record = ctx.request;
    let name = event.request.clone().or_else(|| record.map(|r| r.name.clone()))?;
    let cluster = event
        .cluster
        .clone()
        .or_else(|| record.map(|r| r.cluster.clone()))
        .unwrap_or_default();
    let namespaces = if event.namespaces.is_empty() {
        record.map(|r| r.namespaces.clone()).unwrap_or_default()
    } else {
        event.namespaces.clone()
    };
    let base = ctx.config.web.base_url.trim().trim_end_matches('/');
    let links = Links { base };
    let requester_from_event = matches!(event.kind.as_str(), "request.created" | "request.break_glass");
    let requester = record
        .map(|r| r.requester.clone())
        .or_else(|| requester_from_event.then(|| event.actor.clone()))
        .unwrap_or_default();
    let reason = detail_str(details, "reason")
        .filter(|_| requester_from_event)
        .or_else(|| record.map(|r| scrub_text(&r.reason)).filter(|r| !r.is_empty()));
    let ttl = detail_i64(details, "ttl_seconds").or_else(|| record.map(|r| r.ttl_seconds));
    let ns = namespaces.join(", ");
    let role = ctx.role.map(str::to_string);
    let to_requester = || Recipients {
        emails: if requester.is_empty() {
            Vec::new()
        } else {
            vec![requester.to_lowercase()]
        },
        groups: Vec::new(),
    };
    let request_page = format!("/requests/{name}");
    let mut facts: Vec<(String, String)> = vec![
        ("Request".into(), name.clone()),
        ("Requester".into(), requester.clone()),
        ("Cluster".into(), cluster.clone()),
        ("Namespaces".into(), ns.clone()),
    ];
    if let Some(role) = &role {
        facts.push(("Role".into(), role.clone()));
    }
    let (topic, urgent, title, text, to, mut link_list, where_words) = match event.kind.as_str() {
        "request.created" => {
            if details.get("break_glass").and_then(|v| v.as_bool()) == Some(true) {
                // The break-glass activation (or its refusal) follows as its own event.
                return None;
            }
            if let Some(t) = ttl {
                facts.push(("Duration".into(), human_duration(t)));
            }
            if let Some(r) = &reason {
                facts.push(("Reason".into(), r.clone()));
            }
            if let Some(s) = detail_str(details, "start_at") {
                facts.push(("Starts at".into(), s));
            }
            if let Some(p) = policy {
                facts.push(("Policy".into(), p.to_string()));
            }
            (
                Topic::Pending,
                false,
                format!("Access request from {requester} waits for approval"),
                format!(
                    "{requester} asks for access to {ns} on cluster {cluster}{}.",
                    ttl.map(|t| format!(" for {}", human_duration(t))).unwrap_or_default()
                ),
                approvers(ctx, policy),
                vec![
                    ("Review the request", request_page.clone()),
                    ("Open approvals", "/admin".to_string()),
                ],
                format!("Open the k8s-janus web UI, Approvals, request {name}"),
            )
        }
        "request.break_glass" => {
            if let Some(t) = ttl {
                facts.push(("Duration".into(), human_duration(t)));
            }
            if let Some(r) = &reason {
                facts.push(("Reason".into(), r.clone()));
            }
            if let Some(p) = policy {
                facts.push(("Policy".into(), p.to_string()));
            }
            (
                Topic::BreakGlass,
                true,
                format!("URGENT: break-glass access by {requester} on {cluster}"),
                format!(
                    "{requester} activated break-glass access to {ns} on cluster {cluster} without approval. Review it."
                ),
                approvers(ctx, policy),
                vec![
                    ("Review the activation", request_page.clone()),
                    ("Open approvals", "/admin".to_string()),
                ],
                format!("Open the k8s-janus web UI, Approvals, request {name}"),
            )
        }
        "request.approved" => {
            if detail_str(details, "via").as_deref() == Some("break_glass") {
                // The requester activated it themselves; the approvers got the break-glass message.
                return None;
            }
            let by = match detail_str(details, "via").as_deref() {
                Some("auto_approval") => "automatic approval".to_string(),
                _ => detail_str(details, "approvers")
                    .or_else(|| {
                        details.get("approvers").and_then(|v| v.as_array()).map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str())
                                .map(scrub_text)
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| scrub_text(&event.actor)),
            };
            facts.push(("Approved by".into(), by));
            if let Some(t) = ttl {
                facts.push(("Duration".into(), human_duration(t)));
            }
            if let Some(c) = detail_str(details, "comment") {
                facts.push(("Comment".into(), c));
            }
            if let Some(s) = detail_str(details, "start_at") {
                facts.push(("Starts at".into(), s));
            }
            (
                Topic::Approved,
                false,
                format!("Your access request to {cluster} was approved"),
                format!(
                    "Your request for {ns} on cluster {cluster} was approved{}. Access starts when the credentials are issued.",
                    ttl.map(|t| format!(" for {}", human_duration(t))).unwrap_or_default()
                ),
                to_requester(),
                vec![
                    ("Open the request", request_page.clone()),
                    ("Open a terminal", format!("/terminal/{name}")),
                ],
                format!("Open the k8s-janus web UI, My requests, request {name}"),
            )
        }
        "request.denied" | "request.auto_denied" => {
            let why = detail_str(details, "reason").unwrap_or_else(|| "no reason given".into());
            facts.push(("Reason".into(), why.clone()));
            let by = if event.kind == "request.auto_denied" {
                "nobody decided in time".to_string()
            } else {
                scrub_text(&event.actor)
            };
            facts.push(("Denied by".into(), by));
            (
                Topic::Denied,
                false,
                format!("Your access request to {cluster} was denied"),
                format!("Your request for {ns} on cluster {cluster} was denied: {why}"),
                to_requester(),
                vec![("Open the request", request_page.clone())],
                format!("Open the k8s-janus web UI, My requests, request {name}"),
            )
        }
        "request.activated" => {
            let until = record.and_then(|r| r.expires_at).map(|t| t.to_rfc3339());
            if let Some(u) = &until {
                facts.push(("Until".into(), u.clone()));
            }
            (
                Topic::Active,
                false,
                format!("Your access to {cluster} is active"),
                format!(
                    "You can now open terminals in {ns} on cluster {cluster}{}.",
                    until.map(|u| format!(" until {u}")).unwrap_or_default()
                ),
                to_requester(),
                vec![
                    ("Open a terminal", format!("/terminal/{name}")),
                    ("Open the request", request_page.clone()),
                ],
                format!("Open the k8s-janus web UI, My requests, request {name}, Terminal"),
            )
        }
        EXPIRING_SOON => {
            let at = detail_str(details, "expires_at").unwrap_or_default();
            facts.push(("Ends at".into(), at.clone()));
            (
                Topic::ExpiringSoon,
                false,
                format!("Your access to {cluster} ends soon"),
                format!(
                    "Your access to {ns} on cluster {cluster} ends at {at}. An admin or approver can extend it from the request page."
                ),
                to_requester(),
                vec![
                    ("Open the request (extend)", request_page.clone()),
                    ("Open a terminal", format!("/terminal/{name}")),
                ],
                format!("Open the k8s-janus web UI, My requests, request {name}"),
            )
        }
        "request.expired" | "request.revoked" | "request.withdrawn" | "request.failed" | "request.spec_changed" => {
            let (how, why) = match event.kind.as_str() {
                "request.expired" => ("expired", None),
                "request.revoked" => ("was revoked", detail_str(details, "reason")),
                "request.withdrawn" => ("was withdrawn", None),
                "request.failed" => ("failed", detail_str(details, "message")),
                _ => (
                    "was ended because its spec changed after approval",
                    detail_str(details, "message"),
                ),
            };
            if event.kind == "request.revoked" {
                facts.push(("Revoked by".into(), scrub_text(&event.actor)));
            }
            if let Some(w) = &why {
                facts.push(("Reason".into(), w.clone()));
            }
            (
                Topic::Ended,
                false,
                format!("Your access to {cluster} {how}"),
                format!(
                    "Your access to {ns} on cluster {cluster} {how}{}.",
                    why.map(|w| format!(": {w}")).unwrap_or_default()
                ),
                to_requester(),
                vec![("Open the request", request_page.clone())],
                format!("Open the k8s-janus web UI, My requests, request {name}"),
            )
        }
        _ => return None,
    };
    let built: Vec<Link> = link_list
        .drain(..)
        .filter_map(|(label, path)| {
            links.url(&path).map(|url| Link {
                label: label.to_string(),
                url,
            })
        })
        .collect();
    let where_to_go = built.is_empty().then_some(where_words);
    facts.retain(|(_, v)| !v.is_empty());
    Some(Message {
        topic,
        urgent,
        title,
        text,
        facts,
        links: built,
        where_to_go,
        to,
    })
}
