//! Audit events and request history derived from AccessRequests.
//!
//! [`events_from_request`] is a pure function: every event an AccessRequest implies, each with the real
//! time it happened (taken from the spec decisions, the status timestamps or the conditions'
//! `lastTransitionTime`) and a deterministic key `<uid>/<kind>[/<index>]`. Deriving the events again —
//! after a restart, an outage or a re-list — therefore inserts nothing twice and misses nothing the
//! object still shows. [`Recorder`] watches AccessRequests and writes those events and the history
//! rows, holding the latest object per name while the database is unreachable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use janus_api::access_request::{AccessRequest, AccessRequestSpec, AccessRequestStatus, ApprovedSpec, Phase, reasons};
use janus_api::rules::conditions::policy as policy_reasons;
use janus_api::rules::{self, conditions::types, time::parse_time};
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;
use serde_json::json;

use crate::{AuditKind, NewAuditEvent, RequestRecord, Store, StoreError};

/// The actor of events observed from the controller, retention and other automatic processes.
pub const SYSTEM_ACTOR: &str = "system";

/// The actor of an auto-approval: the policy's `autoApprove` rule, no person (as the approved
/// baseline records it).
pub use janus_api::access_request::AUTO_APPROVAL_ACTOR;

/// Who "approved" a break-glass activation in the history row: the policy's `breakGlass` rule (as the
/// approved baseline records it).
pub use janus_api::access_request::BREAK_GLASS_ACTOR;

/// How a request came to be approved, as the controller's status tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Its approvals (one approval without policies; the quorum under one).
    Quorum,
    /// The policy's auto-approval rule.
    Auto,
    /// The requester broke glass under the policy's rule.
    BreakGlass,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Quorum => "quorum",
            Via::Auto => "auto_approval",
            Via::BreakGlass => "break_glass",
        }
    }
}

/// One approval written into the spec: `spec.approval` (index `None`, from older clients) or
/// `spec.approvals[i]`. Listed in the order the policy tally reads them.
struct Written<'a> {
    index: Option<usize>,
    by: &'a str,
    at: &'a str,
    ttl_seconds: Option<i64>,
    comment: &'a str,
    groups: &'a [String],
}

fn written_approvals(spec: &AccessRequestSpec) -> Vec<Written<'_>> {
    let legacy = spec.approval.iter().map(|a| Written {
        index: None,
        by: &a.by,
        at: &a.at,
        ttl_seconds: a.ttl_seconds,
        comment: "",
        groups: &[],
    });
    let entries = spec.approvals.iter().enumerate().map(|(i, e)| Written {
        index: Some(i),
        by: &e.by,
        at: &e.at,
        ttl_seconds: e.ttl_seconds,
        comment: &e.comment,
        groups: &e.groups,
    });
    legacy.chain(entries).collect()
}

fn true_condition<'a>(status: &'a AccessRequestStatus, type_: &str) -> Option<&'a janus_api::Condition> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the controller approved the request, how, and when it observed that. `None` while it has
/// not (a decision written into the spec is not yet an approval under a policy).
fn approval_observed(status: &AccessRequestStatus) -> Option<(Via, Option<DateTime<Utc>>)> {
    let satisfied = true_condition(status, types::POLICY_SATISFIED);
    let approved = true_condition(status, types::APPROVED);
    let approved_phase = matches!(status.phase, Phase::Approved | Phase::Scheduled | Phase::Active);
    if status.approved_at.is_none() && satisfied.is_none() && approved.is_none() && !approved_phase {
        return None;
    }
    let reason = satisfied.or(approved).map(|c| c.reason.as_str());
    let policy = status.policy.as_ref();
    let via = match reason {
        Some(policy_reasons::AUTO_APPROVED) => Via::Auto,
        Some(policy_reasons::BREAK_GLASS) => Via::BreakGlass,
        _ if policy.is_some_and(|p| p.auto_approved) => Via::Auto,
        _ if policy.is_some_and(|p| p.break_glass) => Via::BreakGlass,
        _ => Via::Quorum,
    };
    let at = status
        .approved_at
        .as_deref()
        .and_then(parse_time)
        .or_else(|| approved.and_then(|c| parse_time(&c.last_transition_time)))
        .or_else(|| satisfied.and_then(|c| parse_time(&c.last_transition_time)));
    Some((via, at))
}

/// The approval that completed the quorum: of each counted approver's first approval, the latest.
/// Without a policy status (an older controller), the latest approval written. Under a policy only
/// counted approvals qualify: an approval the controller ignored never approved anything.
fn completing<'w, 'a>(written: &'w [Written<'a>], counted: Option<&[String]>) -> Option<&'w Written<'a>> {
    let candidates: Vec<&Written<'a>> = match counted {
        None => written.iter().collect(),
        Some(counted) => counted
            .iter()
            .filter_map(|who| written.iter().find(|w| w.by.trim().eq_ignore_ascii_case(who)))
            .collect(),
    };
    // Ties (and unparsable times) go to the later one in the tally's order.
    candidates.into_iter().max_by_key(|w| parse_time(w.at))
}

/// Pairs each `status.policy.ignored` entry (`<email>: <why>`) with the approvals it stands for. The
/// controller lists each person and reason once, so one entry may stand for several approvals: all of
/// that email's, except the one counted (the first) when the person also counts. An entry that names
/// no written approval (only a hand-edited status) comes with `None`.
fn ignored_approvals<'w, 'a>(
    written: &'w [Written<'a>],
    ignored: &'w [String],
    counted: &[String],
) -> Vec<(&'w String, Option<&'w Written<'a>>)> {
    let mut used: HashSet<Option<usize>> = HashSet::new();
    let mut out = Vec::new();
    for why in ignored {
        let who = ignored_email(why);
        let skip_first = counted.iter().any(|c| c.eq_ignore_ascii_case(who));
        let entries: Vec<&Written<'a>> = written
            .iter()
            .filter(|w| w.by.trim().eq_ignore_ascii_case(who))
            .skip(usize::from(skip_first))
            .filter(|w| used.insert(w.index))
            .collect();
        if entries.is_empty() {
            out.push((why, None));
        }
        out.extend(entries.into_iter().map(|w| (why, Some(w))));
    }
    out
}

/// The email an entry of `status.policy.ignored` names (the text before `: `).
fn ignored_email(why: &str) -> &str {
    why.split_once(": ").map_or(why, |(w, _)| w).trim()
}

/// Message prefix controllers before the `PendingTimeout` condition reason wrote when a pending request
/// timed out. Read only for such objects (their `Denied` condition has the generic reason `Denied`),
/// so their events keep the kind they were first recorded with.
const LEGACY_AUTO_DENY_PREFIX: &str = "no decision within";

/// Whether the controller denied a request for lack of a decision: the condition reason says so.
fn auto_denied(status: &AccessRequestStatus) -> bool {
    match status.phase_reason() {
        Some(reasons::PENDING_TIMEOUT) => true,
        Some("Denied") | None => status.message.starts_with(LEGACY_AUTO_DENY_PREFIX),
        Some(_) => false,
    }
}

/// The details of a `request.spec_changed` event: which fields changed, with the approved and the
/// observed values of each (names, emails and numbers; nothing secret lives in a spec).
fn spec_change_details(ar: &AccessRequest, status: &AccessRequestStatus) -> serde_json::Value {
    let spec = &ar.spec;
    let mut changed = match &status.approved {
        Some(a) => a.changes(spec),
        None => vec!["spec.approval"],
    };
    // The spec still matches the record: what was tampered with is the record itself (the controller
    // wrote back the baseline it remembered after someone removed it from status).
    if changed.is_empty() {
        changed.push("status.approved");
    }
    let observed = |field: &str| match field {
        "spec.requester" => json!(spec.requester),
        "spec.cluster" => json!(spec.cluster),
        "spec.namespaces" => json!(spec.namespaces),
        "spec.ttlSeconds" => json!(spec.ttl_seconds),
        "spec.approval" => json!(spec.approval.as_ref().map(|a| &a.by)),
        "spec.approval.by" => json!(spec.approval.as_ref().map(|a| &a.by)),
        "spec.approval.ttlSeconds" => json!(spec.approval.as_ref().and_then(|a| a.ttl_seconds)),
        "spec.startAt" => json!(spec.start_at),
        "spec.approvals" => json!(
            written_approvals(spec)
                .iter()
                .map(|w| w.by.trim().to_lowercase())
                .collect::<Vec<_>>()
        ),
        "spec.approvals.ttlSeconds" => json!(rules::ttl::approval_ttl(spec)),
        _ => serde_json::Value::Null,
    };
    let approved = |a: &ApprovedSpec, field: &str| match field {
        "spec.requester" => json!(a.requester),
        "spec.cluster" => json!(a.cluster),
        "spec.namespaces" => json!(a.namespaces),
        "spec.ttlSeconds" => json!(a.ttl_seconds),
        "spec.approval" | "spec.approval.by" => json!(a.approved_by),
        "spec.approval.ttlSeconds" | "spec.approvals.ttlSeconds" => json!(a.approval_ttl_seconds),
        "spec.startAt" => json!(a.start_at),
        "spec.approvals" => json!(a.approvers),
        _ => serde_json::Value::Null,
    };
    let mut was = serde_json::Map::new();
    let mut now = serde_json::Map::new();
    for f in &changed {
        if let Some(a) = &status.approved {
            was.insert((*f).to_string(), approved(a, f));
        }
        now.insert((*f).to_string(), observed(f));
    }
    json!({
        "changed": changed,
        "approved": was,
        "observed": now,
        "approved_digest": status.approved.as_ref().map(|a| &a.digest),
        "message": status.message,
    })
}

/// The stable identity used in event keys: the object's uid (its name if it has none).
fn identity(ar: &AccessRequest) -> String {
    match &ar.metadata.uid {
        Some(uid) if !uid.is_empty() => uid.clone(),
        _ => format!("name:{}", ar.metadata.name.as_deref().unwrap_or("")),
    }
}

/// The key of a request's event: `<uid>/<kind>` or `<uid>/<kind>/<index>`.
pub fn event_key(uid: &str, kind: AuditKind, index: Option<usize>) -> String {
    match index {
        Some(i) => format!("{uid}/{}/{i}", kind.as_str()),
        None => format!("{uid}/{}", kind.as_str()),
    }
}

fn condition_time(status: &AccessRequestStatus, type_: &str) -> Option<DateTime<Utc>> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .and_then(|c| parse_time(&c.last_transition_time))
}

fn created_at(ar: &AccessRequest) -> Option<DateTime<Utc>> {
    ar.metadata.creation_timestamp.as_ref().map(rules::time::from_k8s)
}

/// The TTL in effect ([`rules::ttl::effective_ttl`]).
fn effective_ttl(ar: &AccessRequest) -> i64 {
    rules::ttl::effective_ttl(&ar.spec)
}

/// When the request ended: `status.endedAt`, else the terminal phase's condition.
fn ended_at(status: &AccessRequestStatus) -> Option<DateTime<Utc>> {
    status
        .ended_at
        .as_deref()
        .and_then(parse_time)
        .or_else(|| condition_time(status, &status.phase.to_string()))
}

/// Every audit event the request implies, in the order they happened. Pure: the same object always
/// gives the same events with the same keys and times.
pub fn events_from_request(ar: &AccessRequest) -> Vec<NewAuditEvent> {
    let uid = identity(ar);
    let name = ar.metadata.name.clone().unwrap_or_default();
    let spec = &ar.spec;
    let status = ar.status.clone().unwrap_or_default();
    let created = created_at(ar).or_else(|| condition_time(&status, types::SUBMITTED));
    let ended = ended_at(&status);
    let mut out = Vec::new();
    let mut push = |kind: AuditKind, index: Option<usize>, at: Option<DateTime<Utc>>, actor: &str, details| {
        // A time that cannot be known (only for malformed objects) falls back to the creation time.
        if let Some(at) = at.or(created) {
            out.push(NewAuditEvent {
                key: event_key(&uid, kind, index),
                kind,
                at,
                actor: actor.to_string(),
                request: Some(name.clone()),
                cluster: Some(spec.cluster.clone()),
                namespaces: spec.namespaces.clone(),
                details,
            });
        }
    };

    let mut created_details = json!({"reason": spec.reason, "ttl_seconds": spec.ttl_seconds});
    // Only what the request asked for beyond the original fields, so older objects give the same
    // details as before.
    if let Some(start) = &spec.start_at {
        created_details["start_at"] = json!(start);
    }
    if spec.break_glass.is_some() {
        created_details["break_glass"] = json!(true);
    }
    if !spec.requester_groups.is_empty() {
        created_details["requester_groups"] = json!(spec.requester_groups);
    }
    push(
        AuditKind::RequestCreated,
        None,
        created,
        &spec.requester,
        created_details,
    );

    let policy = status.policy.as_ref();
    let policy_name = policy.map(|p| p.name.clone());
    let counted: &[String] = policy.map_or(&[], |p| p.approved_by.as_slice());
    let observed = approval_observed(&status);
    let observed_at = observed.and_then(|(_, at)| at);
    let written = written_approvals(spec);
    let mut unmatched = Vec::new();

    // Every approval written into `spec.approvals`, counted or not (the tally is the controller's and
    // is recorded with `request.approved` and `request.approval_ignored`). A `spec.approval` from an
    // older client is its own event only when it is not the approval `request.approved` names: under
    // a policy needing more than one, next to `spec.approvals`, or when the request ended without it.
    let legacy_alone = spec.approvals.is_empty() && policy.is_none_or(|p| p.approvals_required <= 1);
    let legacy_named = match (policy, observed) {
        (None, _) => true,
        (Some(_), Some((Via::Quorum, _))) => legacy_alone,
        (Some(_), Some(_)) => false,
        (Some(_), None) => legacy_alone && !status.phase.is_terminal(),
    };
    for w in &written {
        if w.index.is_none() && legacy_named {
            continue;
        }
        push(
            AuditKind::ApprovalGiven,
            w.index,
            parse_time(w.at).or(observed_at),
            w.by,
            json!({
                "index": w.index,
                "comment": w.comment,
                "ttl_seconds": w.ttl_seconds,
                "groups": w.groups,
                "policy": policy_name,
            }),
        );
    }
    for (why, w) in ignored_approvals(&written, policy.map_or(&[], |p| p.ignored.as_slice()), counted) {
        let who = ignored_email(why);
        let details = json!({
            "reason": why,
            "index": w.and_then(|w| w.index),
            "groups": w.map_or(&[][..], |w| w.groups),
            "policy": policy_name,
        });
        let at = w.and_then(|w| parse_time(w.at)).or(observed_at);
        match w {
            Some(w) => push(AuditKind::ApprovalIgnored, w.index, at, w.by, details),
            None => {
                // An ignored approval that names no written one (only a hand-edited status): keyed by
                // the name it gives, so it is still recorded once.
                if let Some(at) = at.or(created) {
                    unmatched.push(NewAuditEvent {
                        key: format!("{uid}/{}/{}", AuditKind::ApprovalIgnored.as_str(), who.to_lowercase()),
                        kind: AuditKind::ApprovalIgnored,
                        at,
                        actor: who.to_string(),
                        request: Some(name.clone()),
                        cluster: Some(spec.cluster.clone()),
                        namespaces: spec.namespaces.clone(),
                        details,
                    });
                }
            }
        }
    }

    match (policy, &spec.approval) {
        // Before policies (or an older controller): the approval written is the approval, as always.
        (None, Some(a)) => {
            let at = parse_time(&a.at)
                .or_else(|| status.approved_at.as_deref().and_then(parse_time))
                .or_else(|| condition_time(&status, types::APPROVED));
            push(
                AuditKind::RequestApproved,
                None,
                at,
                &a.by,
                json!({"ttl_seconds": effective_ttl(ar), "requested_ttl_seconds": spec.ttl_seconds}),
            );
        }
        _ => {
            if let Some((via, _)) = observed {
                let (actor, at) = match via {
                    Via::Quorum => match completing(&written, policy.map(|p| p.approved_by.as_slice())) {
                        Some(w) => (w.by.to_string(), parse_time(w.at).or(observed_at)),
                        None => (SYSTEM_ACTOR.to_string(), observed_at),
                    },
                    Via::Auto => (AUTO_APPROVAL_ACTOR.to_string(), observed_at),
                    Via::BreakGlass => (
                        spec.requester.clone(),
                        spec.break_glass
                            .as_ref()
                            .and_then(|b| parse_time(&b.at))
                            .or(observed_at),
                    ),
                };
                let reason = true_condition(&status, types::POLICY_SATISFIED)
                    .or_else(|| true_condition(&status, types::APPROVED))
                    .map(|c| c.reason.clone());
                push(
                    AuditKind::RequestApproved,
                    None,
                    at,
                    &actor,
                    json!({
                        "ttl_seconds": effective_ttl(ar),
                        "requested_ttl_seconds": spec.ttl_seconds,
                        "via": via.as_str(),
                        "policy": policy_name,
                        "approvers": counted,
                        "approvals_required": policy.map(|p| p.approvals_required),
                        "condition_reason": reason,
                        "start_at": spec.start_at,
                    }),
                );
            }
        }
    }
    if let Some((via, _)) = observed {
        if via == Via::Auto {
            push(
                AuditKind::AutoApproved,
                None,
                observed_at,
                AUTO_APPROVAL_ACTOR,
                json!({
                    "policy": policy_name,
                    "ttl_seconds": effective_ttl(ar),
                    "requester_groups": spec.requester_groups,
                }),
            );
        }
        if let Some(b) = spec.break_glass.as_ref().filter(|_| via == Via::BreakGlass) {
            push(
                AuditKind::BreakGlassActivated,
                None,
                parse_time(&b.at).or(observed_at),
                &spec.requester,
                json!({
                    "reason": spec.reason,
                    "ttl_seconds": effective_ttl(ar),
                    "policy": policy_name,
                    "requester_groups": spec.requester_groups,
                }),
            );
        }
        // Approved ahead of its start: the controller holds it Scheduled until `startAt`.
        if let Some(start) = spec.start_at.as_deref() {
            let scheduled_at = condition_time(&status, types::SCHEDULED);
            let ahead = observed_at.zip(parse_time(start)).is_some_and(|(at, s)| at < s);
            if scheduled_at.is_some() || status.phase == Phase::Scheduled || ahead {
                push(
                    AuditKind::RequestScheduled,
                    None,
                    scheduled_at.or(observed_at),
                    SYSTEM_ACTOR,
                    json!({"start_at": start, "policy": policy_name, "via": via.as_str()}),
                );
            }
        }
    }
    if let Some(r) = &spec.break_glass_review {
        push(
            AuditKind::BreakGlassReviewed,
            None,
            parse_time(&r.at),
            &r.by,
            json!({
                "comment": r.comment,
                "groups": r.groups,
                "policy": policy_name,
                "break_glass_at": spec.break_glass.as_ref().map(|b| &b.at),
            }),
        );
    }
    if let Some(d) = &spec.denial {
        push(
            AuditKind::RequestDenied,
            None,
            parse_time(&d.at).or(ended),
            &d.by,
            json!({"reason": d.reason, "automatic": false}),
        );
    } else if status.phase == Phase::Denied {
        // Denied without a human denial: the controller did it.
        if auto_denied(&status) {
            push(
                AuditKind::PendingAutoDenied,
                None,
                ended,
                SYSTEM_ACTOR,
                json!({"reason": status.message}),
            );
        } else {
            push(
                AuditKind::RequestDenied,
                None,
                ended,
                SYSTEM_ACTOR,
                json!({"reason": status.message, "automatic": true, "condition_reason": status.phase_reason()}),
            );
        }
    }
    if let Some(w) = &spec.withdrawal {
        push(
            AuditKind::RequestWithdrawn,
            None,
            parse_time(&w.at).or(ended),
            &w.by,
            json!({}),
        );
    }
    if let Some(r) = &spec.revocation {
        push(
            AuditKind::RequestRevoked,
            None,
            parse_time(&r.at).or(ended),
            &r.by,
            json!({"reason": r.reason}),
        );
    }
    if let Some(active) = status
        .active_at
        .as_deref()
        .and_then(parse_time)
        .or_else(|| condition_time(&status, types::GRANTED))
    {
        let grants: Vec<_> = status
            .grants
            .iter()
            .map(|g| {
                json!({"namespace": g.namespace, "service_account": g.service_account, "role_binding": g.role_binding})
            })
            .collect();
        push(
            AuditKind::RequestActivated,
            None,
            Some(active),
            SYSTEM_ACTOR,
            json!({"grants": grants, "ttl_seconds": effective_ttl(ar)}),
        );
    }
    for (i, e) in spec.extensions.iter().enumerate() {
        push(
            AuditKind::RequestExtended,
            Some(i),
            parse_time(&e.at).or_else(|| condition_time(&status, types::EXTENDED)),
            &e.by,
            json!({"seconds": e.seconds, "index": i}),
        );
    }
    match status.phase {
        Phase::Expired => push(
            AuditKind::RequestExpired,
            None,
            ended,
            SYSTEM_ACTOR,
            json!({"expires_at": status.expires_at}),
        ),
        Phase::Failed if status.phase_reason() == Some(reasons::SPEC_CHANGED_AFTER_APPROVAL) => push(
            AuditKind::RequestSpecChanged,
            None,
            ended,
            SYSTEM_ACTOR,
            spec_change_details(ar, &status),
        ),
        Phase::Failed => push(
            AuditKind::RequestFailed,
            None,
            ended,
            SYSTEM_ACTOR,
            json!({"message": status.message, "condition_reason": status.phase_reason()}),
        ),
        _ => {}
    }
    if status.phase.is_terminal()
        && let Some(c) = status
            .conditions
            .iter()
            .find(|c| c.type_ == types::CREDENTIALS_REMOVED && c.status == "True")
    {
        push(
            AuditKind::CredentialsRemoved,
            None,
            parse_time(&c.last_transition_time),
            SYSTEM_ACTOR,
            json!({"message": c.message}),
        );
    }
    out.extend(unmatched);
    out.sort_by_key(|e| e.at);
    out
}

/// The `request.deleted` event for a deleted object. `retention_seconds` (0 = retention off) tells
/// whether the deletion was retention's.
pub fn deletion_event(ar: &AccessRequest, retention_seconds: i64, now: DateTime<Utc>) -> NewAuditEvent {
    let status = ar.status.clone().unwrap_or_default();
    let at = ar
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(rules::time::from_k8s)
        .unwrap_or(now);
    let by_retention = retention_seconds > 0
        && status.phase.is_terminal()
        && ended_at(&status)
            .is_some_and(|end| at >= end + chrono::Duration::seconds(retention_seconds) - chrono::Duration::seconds(2));
    NewAuditEvent {
        key: event_key(&identity(ar), AuditKind::RequestDeleted, None),
        kind: AuditKind::RequestDeleted,
        at,
        actor: SYSTEM_ACTOR.into(),
        request: ar.metadata.name.clone(),
        cluster: Some(ar.spec.cluster.clone()),
        namespaces: ar.spec.namespaces.clone(),
        details: json!({"by_retention": by_retention, "phase": status.phase.to_string()}),
    }
}

/// The history row of a request as the object shows it now.
pub fn record_from_request(ar: &AccessRequest) -> RequestRecord {
    let spec = &ar.spec;
    let status = ar.status.clone().unwrap_or_default();
    let created = created_at(ar).unwrap_or_else(Utc::now);
    let decided_by = match (&spec.withdrawal, &spec.revocation, &spec.denial) {
        (Some(w), _, _) => Some(w.by.clone()),
        (None, Some(r), _) => Some(r.by.clone()),
        (None, None, Some(d)) => Some(d.by.clone()),
        (None, None, None) if status.phase == Phase::Denied => Some(SYSTEM_ACTOR.to_string()),
        _ => None,
    };
    let mut times = vec![created];
    let decision_times = [
        spec.approval.as_ref().map(|a| a.at.as_str()),
        spec.denial.as_ref().map(|d| d.at.as_str()),
        spec.revocation.as_ref().map(|r| r.at.as_str()),
        spec.withdrawal.as_ref().map(|w| w.at.as_str()),
        status.approved_at.as_deref(),
        status.active_at.as_deref(),
        status.ended_at.as_deref(),
    ];
    times.extend(decision_times.into_iter().flatten().filter_map(parse_time));
    times.extend(spec.extensions.iter().filter_map(|e| parse_time(&e.at)));
    times.extend(spec.approvals.iter().filter_map(|e| parse_time(&e.at)));
    times.extend(spec.break_glass.iter().filter_map(|b| parse_time(&b.at)));
    times.extend(spec.break_glass_review.iter().filter_map(|r| parse_time(&r.at)));
    times.extend(
        status
            .conditions
            .iter()
            .filter_map(|c| parse_time(&c.last_transition_time)),
    );
    let updated = times.into_iter().max().unwrap_or(created);
    let policy = status.policy.as_ref();
    let via = approval_observed(&status).map(|(via, _)| via);
    let approved_by = match (&spec.approval, policy, via) {
        (Some(a), None, _) => Some(a.by.clone()),
        (_, Some(p), Some(Via::Quorum)) if !p.approved_by.is_empty() => Some(p.approved_by.join(", ")),
        (Some(a), _, Some(Via::Quorum)) => Some(a.by.clone()),
        (_, _, Some(Via::Auto)) => Some(AUTO_APPROVAL_ACTOR.to_string()),
        (_, _, Some(Via::BreakGlass)) => Some(BREAK_GLASS_ACTOR.to_string()),
        _ => None,
    };
    RequestRecord {
        name: ar.metadata.name.clone().unwrap_or_default(),
        requester: spec.requester.clone(),
        cluster: spec.cluster.clone(),
        namespaces: spec.namespaces.clone(),
        reason: spec.reason.clone(),
        ttl_seconds: effective_ttl(ar),
        phase: if ar.status.is_some() {
            status.phase.to_string()
        } else {
            Phase::Pending.to_string()
        },
        message: status.message.clone(),
        created_at: created,
        approved_by,
        decided_by,
        expires_at: status.expires_at.as_deref().and_then(parse_time),
        ended_at: status.ended_at.as_deref().and_then(parse_time),
        updated_at: updated,
        deleted_at: None,
        policy: policy.map(|p| p.name.clone()),
        approvals: written_approvals(spec).iter().map(|w| w.by.to_string()).collect(),
        auto_approved: via == Some(Via::Auto) || policy.is_some_and(|p| p.auto_approved),
        break_glass: via == Some(Via::BreakGlass) || policy.is_some_and(|p| p.break_glass),
        break_glass_reviewed_by: spec.break_glass_review.as_ref().map(|r| r.by.clone()),
        start_at: spec.start_at.as_deref().and_then(parse_time),
    }
}

/// Writes what one object implies: its history row and its events.
pub async fn record_request(store: &Store, ar: &AccessRequest) -> Result<(), StoreError> {
    store
        .upsert_request_with_uid(&record_from_request(ar), ar.metadata.uid.as_deref())
        .await?;
    store.record_audit_batch(&events_from_request(ar)).await?;
    Ok(())
}

/// Work waiting for the database, per request name (only the latest object matters).
enum Work {
    Apply(Arc<AccessRequest>),
    Delete(Arc<AccessRequest>),
}

/// A check, after a full list, for history rows whose object vanished while nobody watched.
struct Sweep {
    seen: HashSet<String>,
}

/// Watches AccessRequests and records their history and audit events; see the module docs.
pub struct Recorder {
    healthy: Arc<AtomicBool>,
    pending: Arc<AtomicUsize>,
    retention_seconds: i64,
    max_pending: usize,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder holding at most 10 000 objects while the database is unreachable.
    pub fn new() -> Self {
        Self {
            healthy: Arc::new(AtomicBool::new(true)),
            pending: Arc::new(AtomicUsize::new(0)),
            retention_seconds: 0,
            max_pending: 10_000,
        }
    }

    /// The configuration's `retentionSeconds`, to tell deletions by retention from others.
    pub fn retention_seconds(mut self, seconds: i64) -> Self {
        self.retention_seconds = seconds.max(0);
        self
    }

    /// How many objects may wait for the database. Beyond that, updates are dropped and everything is
    /// listed again once the database is back (deletions are never dropped).
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n.max(1);
        self
    }

    /// `false` while the database cannot be written (the web reports degraded health).
    pub fn healthy(&self) -> Arc<AtomicBool> {
        self.healthy.clone()
    }

    /// How many objects wait for the database.
    pub fn pending(&self) -> Arc<AtomicUsize> {
        self.pending.clone()
    }

    /// Runs until `shutdown` completes (or the watch ends).
    pub async fn run(self, client: kube::Client, store: Store, shutdown: impl Future) {
        let api: Api<AccessRequest> = Api::all(client);
        let new_stream = || {
            watcher(api.clone(), watcher::Config::default())
                .default_backoff()
                .boxed()
        };
        let mut stream = new_stream();
        let mut queue: BTreeMap<String, Work> = BTreeMap::new();
        let mut done: HashMap<String, String> = HashMap::new();
        let mut sweep: Option<Sweep> = None;
        let mut listing: Option<Sweep> = None;
        let mut relist = false;
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut backoff = Duration::from_millis(250);
        tokio::pin!(shutdown);
        loop {
            let wake = retry_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(wake), if retry_at.is_some() => {}
                ev = stream.next() => match ev {
                    None => break,
                    Some(Err(e)) => tracing::warn!(error = %e, "AccessRequest watch failed; retrying"),
                    Some(Ok(watcher::Event::Init)) => {
                        listing = Some(Sweep { seen: HashSet::new() });
                    }
                    Some(Ok(watcher::Event::InitDone)) => sweep = listing.take(),
                    Some(Ok(watcher::Event::InitApply(ar) | watcher::Event::Apply(ar))) => {
                        let name = ar.metadata.name.clone().unwrap_or_default();
                        if let Some(l) = &mut listing {
                            l.seen.insert(name.clone());
                        }
                        if let Some(s) = &mut sweep {
                            s.seen.insert(name.clone());
                        }
                        let unchanged = ar.metadata.resource_version.is_some()
                            && done.get(&name) == ar.metadata.resource_version.as_ref();
                        if !unchanged {
                            if queue.len() >= self.max_pending && !queue.contains_key(&name) {
                                relist = true;
                            } else {
                                queue.insert(name, Work::Apply(Arc::new(ar)));
                            }
                        }
                    }
                    Some(Ok(watcher::Event::Delete(ar))) => {
                        let name = ar.metadata.name.clone().unwrap_or_default();
                        done.remove(&name);
                        queue.insert(name, Work::Delete(Arc::new(ar)));
                    }
                },
            }
            self.pending.store(queue.len(), Ordering::Relaxed);
            if retry_at.is_some_and(|t| tokio::time::Instant::now() < t) {
                continue;
            }
            match self.flush(&api, &store, &mut queue, &mut done, &mut sweep).await {
                Ok(()) => {
                    retry_at = None;
                    backoff = Duration::from_millis(250);
                    if !self.healthy.swap(true, Ordering::Relaxed) {
                        tracing::info!("audit database reachable again; pending records written");
                    }
                    if relist {
                        relist = false;
                        done.clear();
                        stream = new_stream();
                    }
                }
                Err(e) => {
                    if self.healthy.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %e, pending = queue.len(), "cannot write the audit database; holding records and retrying");
                    }
                    retry_at = Some(tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
            self.pending.store(queue.len(), Ordering::Relaxed);
        }
    }

    async fn flush(
        &self,
        api: &Api<AccessRequest>,
        store: &Store,
        queue: &mut BTreeMap<String, Work>,
        done: &mut HashMap<String, String>,
        sweep: &mut Option<Sweep>,
    ) -> Result<(), StoreError> {
        while let Some((name, work)) = queue.pop_first() {
            let result = match &work {
                Work::Apply(ar) => record_request(store, ar).await,
                Work::Delete(ar) => self.record_deletion(store, ar).await,
            };
            match result {
                Ok(()) => {
                    if let Work::Apply(ar) = &work
                        && let Some(rv) = &ar.metadata.resource_version
                    {
                        done.insert(name, rv.clone());
                    }
                }
                Err(StoreError::Invalid(msg)) => {
                    // Retrying cannot help and would block every other request behind this one.
                    tracing::error!(request = %name, error = %msg, "cannot record this request; skipped");
                }
                Err(e) => {
                    queue.insert(name, work);
                    return Err(e);
                }
            }
        }
        if let Some(s) = sweep.as_ref() {
            self.sweep(api, store, s).await?;
            *sweep = None;
        }
        Ok(())
    }

    async fn record_deletion(&self, store: &Store, ar: &AccessRequest) -> Result<(), StoreError> {
        let ev = deletion_event(ar, self.retention_seconds, Utc::now());
        let mut record = record_from_request(ar);
        record.deleted_at = Some(ev.at);
        record.updated_at = record.updated_at.max(ev.at);
        store
            .upsert_request_with_uid(&record, ar.metadata.uid.as_deref())
            .await?;
        let mut events = events_from_request(ar);
        events.push(ev.clone());
        store.record_audit_batch(&events).await?;
        store.mark_request_deleted(&record.name, ev.at).await
    }

    /// Rows still live in history but absent from a complete list were deleted while nobody watched.
    async fn sweep(&self, api: &Api<AccessRequest>, store: &Store, s: &Sweep) -> Result<(), StoreError> {
        let now = Utc::now();
        for live in store.live_requests().await? {
            if s.seen.contains(&live.name) {
                continue;
            }
            // Another replica may have recorded an object created after this list: ask the API server.
            match api.get_opt(&live.name).await {
                Ok(Some(ar)) if live.uid.is_none() || ar.metadata.uid == live.uid => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(request = %live.name, error = %e, "cannot check whether a request still exists");
                    continue;
                }
            }
            let uid = live.uid.clone().unwrap_or_else(|| format!("name:{}", live.name));
            let record = store.get_request(&live.name).await?;
            let ev = NewAuditEvent {
                key: event_key(&uid, AuditKind::RequestDeleted, None),
                kind: AuditKind::RequestDeleted,
                at: now,
                actor: SYSTEM_ACTOR.into(),
                request: Some(live.name.clone()),
                cluster: record.as_ref().map(|r| r.cluster.clone()),
                namespaces: record.as_ref().map(|r| r.namespaces.clone()).unwrap_or_default(),
                details: json!({
                    "by_retention": serde_json::Value::Null,
                    "phase": record.as_ref().map(|r| r.phase.clone()),
                    "observed": "missing when the recorder listed requests; deleted while nothing was watching",
                }),
            };
            store.record_audit(&ev).await?;
            store.mark_request_deleted(&live.name, now).await?;
        }
        Ok(())
    }
}

/// Deletes audit events older than `days` days, once at start and then hourly, in batches of 1000,
/// until `shutdown` completes. `days <= 0` disables retention.
pub async fn retention_loop(store: Store, days: i64, shutdown: impl Future) {
    if days <= 0 {
        return;
    }
    tokio::pin!(shutdown);
    loop {
        let cutoff = Utc::now() - chrono::Duration::days(days);
        match store.purge_audit(cutoff, 1000).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, days, "audit events past retention purged"),
            Err(e) => tracing::warn!(error = %e, "audit retention purge failed; retrying later"),
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ar(v: serde_json::Value) -> AccessRequest {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> serde_json::Value {
        json!({
            "apiVersion": "k8s-janus.opsmode.io/v1alpha1", "kind": "AccessRequest",
            "metadata": {"name": "r1", "uid": "u-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"requester": "a@x.io", "cluster": "central", "namespaces": ["apps"], "reason": "debug",
                     "ttlSeconds": 600}
        })
    }

    fn kinds(evs: &[NewAuditEvent]) -> Vec<&str> {
        evs.iter().map(|e| e.kind.as_str()).collect()
    }

    #[test]
    fn pending_only_created() {
        let evs = events_from_request(&ar(base()));
        assert_eq!(kinds(&evs), ["request.created"]);
        assert_eq!(evs[0].key, "u-1/request.created");
        assert_eq!(evs[0].actor, "a@x.io");
        assert_eq!(evs[0].at, parse_time("2026-01-01T00:00:00Z").unwrap());
        assert_eq!(evs[0].details["reason"], "debug");
    }

    #[test]
    fn full_lifecycle_with_extensions() {
        let mut v = base();
        v["spec"]["approval"] = json!({"by": "b@x.io", "at": "2026-01-01T00:01:00.250Z", "ttlSeconds": 300});
        v["spec"]["extensions"] = json!([
            {"by": "b@x.io", "at": "2026-01-01T00:03:00Z", "seconds": 60},
            {"by": "c@x.io", "at": "2026-01-01T00:04:00Z", "seconds": 120}
        ]);
        v["status"] = json!({
            "phase": "Expired", "message": "access expired", "approvedAt": "2026-01-01T00:01:01Z",
            "activeAt": "2026-01-01T00:01:02Z", "expiresAt": "2026-01-01T00:09:02Z", "endedAt": "2026-01-01T00:09:02Z",
            "grants": [{"namespace": "apps", "serviceAccount": "sa", "roleBinding": "rb", "tokenSecret": "ts"}],
            "conditions": [
                {"type": "Expired", "status": "True", "reason": "Expired", "message": "", "lastTransitionTime": "2026-01-01T00:09:02Z"},
                {"type": "CredentialsRemoved", "status": "True", "reason": "Removed", "message": "all credentials removed", "lastTransitionTime": "2026-01-01T00:09:03Z"}
            ]
        });
        let evs = events_from_request(&ar(v));
        assert_eq!(
            kinds(&evs),
            [
                "request.created",
                "request.approved",
                "request.activated",
                "request.extended",
                "request.extended",
                "request.expired",
                "request.credentials_removed"
            ]
        );
        let approved = &evs[1];
        assert_eq!(approved.at, parse_time("2026-01-01T00:01:00.250Z").unwrap());
        assert_eq!(approved.details["ttl_seconds"], 300);
        assert_eq!(approved.actor, "b@x.io");
        assert_eq!(evs[2].details["grants"][0]["namespace"], "apps");
        assert_eq!(evs[3].key, "u-1/request.extended/0");
        assert_eq!(evs[4].key, "u-1/request.extended/1");
        assert_eq!(evs[4].actor, "c@x.io");
        assert_eq!(evs[5].at, parse_time("2026-01-01T00:09:02Z").unwrap());
        let keys: HashSet<_> = evs.iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys.len(), evs.len(), "keys are unique");
    }

    #[test]
    fn auto_denial_and_validation_denial_are_told_apart() {
        let mut v = base();
        v["status"] =
            json!({"phase": "Denied", "message": "no decision within 60s", "endedAt": "2026-01-01T00:01:00Z"});
        let evs = events_from_request(&ar(v.clone()));
        assert_eq!(kinds(&evs), ["request.created", "request.auto_denied"]);
        assert_eq!(evs[1].actor, SYSTEM_ACTOR);
        v["status"]["message"] = json!("namespace \"kube-system\" is excluded from k8s-janus access");
        let evs = events_from_request(&ar(v.clone()));
        assert_eq!(kinds(&evs), ["request.created", "request.denied"]);
        assert_eq!(evs[1].details["automatic"], true);
        v["spec"]["denial"] = json!({"by": "b@x.io", "at": "2026-01-01T00:00:30Z", "reason": "<script>no</script>"});
        let evs = events_from_request(&ar(v));
        assert_eq!(kinds(&evs), ["request.created", "request.denied"]);
        assert_eq!(evs[1].actor, "b@x.io");
        assert_eq!(evs[1].details["reason"], "<script>no</script>");
        assert_eq!(evs[1].at, parse_time("2026-01-01T00:00:30Z").unwrap());
    }

    #[test]
    fn auto_denial_is_read_from_the_condition_reason_not_the_message() {
        let mut v = base();
        v["status"] = json!({"phase": "Denied", "message": "nobody decided in time (60s)", "endedAt": "2026-01-01T00:01:00Z",
            "conditions": [{"type": "Denied", "status": "True", "reason": "PendingTimeout",
                            "message": "nobody decided in time (60s)", "lastTransitionTime": "2026-01-01T00:01:00Z"}]});
        let evs = events_from_request(&ar(v.clone()));
        assert_eq!(kinds(&evs), ["request.created", "request.auto_denied"]);
        // The wording of a validation denial cannot make it look like a timeout.
        v["status"]["message"] = json!("no decision within reach: namespace \"k8s-janus\" is excluded");
        v["status"]["conditions"][0]["reason"] = json!("ValidationFailed");
        let evs = events_from_request(&ar(v));
        assert_eq!(kinds(&evs), ["request.created", "request.denied"]);
        assert_eq!(evs[1].details["condition_reason"], "ValidationFailed");
    }

    #[test]
    fn a_removed_approval_record_is_named_when_the_spec_still_matches() {
        let mut v = base();
        v["spec"]["approval"] = json!({"by": "b@x.io", "at": "2026-01-01T00:01:00Z"});
        let approved = ApprovedSpec::of(&ar(v.clone()).spec).unwrap();
        v["status"] = json!({
            "phase": "Failed", "message": "approval record removed (status.approved); credentials removed",
            "approvedAt": "2026-01-01T00:01:01Z", "activeAt": "2026-01-01T00:01:02Z", "endedAt": "2026-01-01T00:02:00Z",
            "approved": approved,
            "conditions": [{"type": "Failed", "status": "True", "reason": "SpecChangedAfterApproval",
                            "message": "", "lastTransitionTime": "2026-01-01T00:02:00Z"}]
        });
        let evs = events_from_request(&ar(v));
        let e = evs.last().unwrap();
        assert_eq!(e.kind.as_str(), "request.spec_changed");
        assert_eq!(e.details["changed"], json!(["status.approved"]));
    }

    #[test]
    fn a_spec_changed_after_approval_is_its_own_event_naming_the_fields() {
        let mut v = base();
        v["spec"]["approval"] = json!({"by": "b@x.io", "at": "2026-01-01T00:01:00Z"});
        let approved = ApprovedSpec::of(&ar(v.clone()).spec).unwrap();
        v["spec"]["namespaces"] = json!(["apps", "k8s-janus"]);
        v["status"] = json!({
            "phase": "Failed", "message": "spec changed after approval (spec.namespaces); credentials removed",
            "approvedAt": "2026-01-01T00:01:01Z", "activeAt": "2026-01-01T00:01:02Z", "endedAt": "2026-01-01T00:02:00Z",
            "approved": approved,
            "conditions": [{"type": "Failed", "status": "True", "reason": "SpecChangedAfterApproval",
                            "message": "", "lastTransitionTime": "2026-01-01T00:02:00Z"}]
        });
        let evs = events_from_request(&ar(v.clone()));
        assert_eq!(
            kinds(&evs),
            [
                "request.created",
                "request.approved",
                "request.activated",
                "request.spec_changed"
            ]
        );
        let e = &evs[3];
        assert_eq!(e.key, "u-1/request.spec_changed");
        assert_eq!(e.actor, SYSTEM_ACTOR);
        assert_eq!(e.at, parse_time("2026-01-01T00:02:00Z").unwrap());
        assert_eq!(e.details["changed"], json!(["spec.namespaces"]));
        assert_eq!(e.details["approved"]["spec.namespaces"], json!(["apps"]));
        assert_eq!(e.details["observed"]["spec.namespaces"], json!(["apps", "k8s-janus"]));
        assert_eq!(events_from_request(&ar(v.clone())), evs, "deterministic");
        // Another failure stays request.failed, with its reason.
        v["status"]["conditions"][0]["reason"] = json!("ValidationFailed");
        let evs = events_from_request(&ar(v));
        assert_eq!(evs.last().unwrap().kind.as_str(), "request.failed");
        assert_eq!(evs.last().unwrap().details["condition_reason"], "ValidationFailed");
    }

    fn cond(type_: &str, reason: &str, at: &str) -> serde_json::Value {
        json!({"type": type_, "status": "True", "reason": reason, "message": "", "lastTransitionTime": at})
    }

    fn keys(evs: &[NewAuditEvent]) -> Vec<&str> {
        evs.iter().map(|e| e.key.as_str()).collect()
    }

    fn find<'a>(evs: &'a [NewAuditEvent], key: &str) -> &'a NewAuditEvent {
        evs.iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no event {key} in {:?}", keys(evs)))
    }

    /// Events are unique by key and the same object gives the same events.
    fn assert_stable(v: &serde_json::Value, evs: &[NewAuditEvent]) {
        let unique: HashSet<_> = evs.iter().map(|e| e.key.clone()).collect();
        assert_eq!(unique.len(), evs.len(), "keys are unique: {:?}", keys(evs));
        assert_eq!(events_from_request(&ar(v.clone())), evs, "deterministic");
    }

    /// A 2-of-n policy: two approvals with comments, the quorum met by the second.
    fn quorum_request() -> serde_json::Value {
        let mut v = base();
        v["spec"]["approvals"] = json!([
            {"by": "b@x.io", "at": "2026-01-01T00:01:00.125Z", "ttlSeconds": 300, "comment": "ok, ticket OPS-1",
             "groups": ["sre", "k8s-janus:admins"]},
            {"by": "C@x.io", "at": "2026-01-01T00:02:00.5Z", "comment": "<b>fine</b>"}
        ]);
        v["status"] = json!({
            "phase": "Active", "approvedAt": "2026-01-01T00:02:01Z", "activeAt": "2026-01-01T00:02:02Z",
            "policy": {"name": "prod", "approvalsRequired": 2, "approvalsGiven": 2, "approvedBy": ["b@x.io", "c@x.io"]},
            "conditions": [
                cond("Approved", "QuorumMet", "2026-01-01T00:02:01Z"),
                cond("PolicySatisfied", "QuorumMet", "2026-01-01T00:02:01Z"),
                cond("Granted", "Granted", "2026-01-01T00:02:02Z")
            ]
        });
        v
    }

    #[test]
    fn each_approval_is_an_event_and_the_quorum_names_its_approvers() {
        let v = quorum_request();
        let evs = events_from_request(&ar(v.clone()));
        assert_eq!(
            kinds(&evs),
            [
                "request.created",
                "request.approval_given",
                "request.approval_given",
                "request.approved",
                "request.activated"
            ]
        );
        let first = find(&evs, "u-1/request.approval_given/0");
        assert_eq!(first.actor, "b@x.io");
        assert_eq!(first.at, parse_time("2026-01-01T00:01:00.125Z").unwrap());
        assert_eq!(first.details["comment"], "ok, ticket OPS-1");
        assert_eq!(first.details["ttl_seconds"], 300);
        assert_eq!(first.details["groups"], json!(["sre", "k8s-janus:admins"]));
        assert_eq!(first.details["index"], 0);
        assert_eq!(first.details["policy"], "prod");
        let second = find(&evs, "u-1/request.approval_given/1");
        assert_eq!(second.details["comment"], "<b>fine</b>");
        // The request became approved when the second counted approval arrived, by that approver.
        let approved = find(&evs, "u-1/request.approved");
        assert_eq!(approved.actor, "C@x.io");
        assert_eq!(approved.at, parse_time("2026-01-01T00:02:00.5Z").unwrap());
        assert_eq!(approved.details["via"], "quorum");
        assert_eq!(approved.details["approvers"], json!(["b@x.io", "c@x.io"]));
        assert_eq!(approved.details["approvals_required"], 2);
        assert_eq!(approved.details["policy"], "prod");
        assert_eq!(approved.details["condition_reason"], "QuorumMet");
        assert_stable(&v, &evs);

        // Halfway (1 of 2): the approval is recorded, the request is not approved.
        let mut half = quorum_request();
        half["spec"]["approvals"].as_array_mut().unwrap().truncate(1);
        half["status"] = json!({"phase": "Pending",
            "policy": {"name": "prod", "approvalsRequired": 2, "approvalsGiven": 1, "approvedBy": ["b@x.io"]},
            "conditions": [{"type": "PolicySatisfied", "status": "False", "reason": "AwaitingApprovals",
                            "message": "1/2 approvals", "lastTransitionTime": "2026-01-01T00:01:01Z"}]});
        let evs_half = events_from_request(&ar(half));
        assert_eq!(kinds(&evs_half), ["request.created", "request.approval_given"]);
        // What was recorded halfway is recorded again, with the same key, time and details.
        assert_eq!(evs_half[1], *find(&evs, "u-1/request.approval_given/0"));
    }

    #[test]
    fn an_approval_that_does_not_count_is_its_own_event() {
        // A direct CRD patch by someone who is not an approver of the policy.
        let mut v = base();
        v["spec"]["approvals"] = json!([{"by": "mallory@x.io", "at": "2026-01-01T00:00:10Z", "groups": ["sre"]}]);
        v["status"] = json!({"phase": "Pending",
            "policy": {"name": "prod", "approvalsRequired": 1, "approvalsGiven": 0,
                       "ignored": ["mallory@x.io: not an approver of policy prod"]}});
        let evs = events_from_request(&ar(v.clone()));
        assert_eq!(
            keys(&evs),
            [
                "u-1/request.created",
                "u-1/request.approval_given/0",
                "u-1/request.approval_ignored/0"
            ]
        );
        let ignored = &evs[2];
        assert_eq!(ignored.kind.as_str(), "request.approval_ignored");
        assert_eq!(ignored.actor, "mallory@x.io");
        assert_eq!(ignored.at, parse_time("2026-01-01T00:00:10Z").unwrap());
        assert_eq!(
            ignored.details["reason"],
            "mallory@x.io: not an approver of policy prod"
        );
        assert_eq!(ignored.details["policy"], "prod");
        assert_stable(&v, &evs);
        // The status lists a person and reason once; each of their approvals is an event.
        v["spec"]["approvals"]
            .as_array_mut()
            .unwrap()
            .push(json!({"by": "Mallory@x.io", "at": "2026-01-01T00:00:40Z"}));
        let evs = events_from_request(&ar(v.clone()));
        let again = find(&evs, "u-1/request.approval_ignored/1");
        assert_eq!(again.actor, "Mallory@x.io");
        assert_eq!(again.at, parse_time("2026-01-01T00:00:40Z").unwrap());
        assert_eq!(
            kinds(&evs).iter().filter(|k| **k == "request.approval_ignored").count(),
            2
        );
        assert_stable(&v, &evs);

        // A second approval by a counted approver: the duplicate (not the first) is the ignored one.
        let mut v = base();
        v["spec"]["approvals"] = json!([
            {"by": "b@x.io", "at": "2026-01-01T00:00:10Z"},
            {"by": "B@x.io", "at": "2026-01-01T00:00:20Z"}
        ]);
        v["status"] = json!({"phase": "Pending",
            "policy": {"name": "prod", "approvalsRequired": 2, "approvalsGiven": 1, "approvedBy": ["b@x.io"],
                       "ignored": ["b@x.io: approved more than once; counted once"]}});
        let evs = events_from_request(&ar(v.clone()));
        let ignored = find(&evs, "u-1/request.approval_ignored/1");
        assert_eq!(ignored.at, parse_time("2026-01-01T00:00:20Z").unwrap());
        assert!(evs.iter().all(|e| e.key != "u-1/request.approval_ignored/0"));
        assert_eq!(
            kinds(&evs).iter().filter(|k| **k == "request.approval_given").count(),
            2
        );
        assert_stable(&v, &evs);
    }

    #[test]
    fn an_approval_state_without_counted_approvers_names_no_approver() {
        // A status claiming approval while the policy counted nobody (only mallory's ignored approval):
        // the approval is recorded as the controller's, never as mallory's.
        let mut v = base();
        v["spec"]["approvals"] = json!([{"by": "mallory@x.io", "at": "2026-01-01T00:00:10Z"}]);
        v["status"] = json!({"phase": "Approved", "approvedAt": "2026-01-01T00:00:11Z",
            "policy": {"name": "prod", "approvalsRequired": 2, "approvalsGiven": 0,
                       "ignored": ["mallory@x.io: not an approver of policy prod"]},
            "conditions": [cond("Approved", "Approved", "2026-01-01T00:00:11Z")]});
        let evs = events_from_request(&ar(v.clone()));
        let approved = find(&evs, "u-1/request.approved");
        assert_eq!(approved.actor, SYSTEM_ACTOR);
        assert_eq!(approved.at, parse_time("2026-01-01T00:00:11Z").unwrap());
        assert_eq!(approved.details["approvers"], json!([]));
        assert_stable(&v, &evs);
    }

    #[test]
    fn auto_approval_is_recorded_as_such() {
        let mut v = base();
        v["spec"]["requesterGroups"] = json!(["oncall"]);
        v["status"] = json!({
            "phase": "Active", "approvedAt": "2026-01-01T00:00:01.5Z", "activeAt": "2026-01-01T00:00:02Z",
            "policy": {"name": "oncall-read", "approvalsRequired": 1, "approvalsGiven": 0, "autoApproved": true},
            "conditions": [
                cond("Approved", "AutoApproved", "2026-01-01T00:00:01.5Z"),
                cond("PolicySatisfied", "AutoApproved", "2026-01-01T00:00:01.5Z")
            ]
        });
        let evs = events_from_request(&ar(v.clone()));
        assert_eq!(
            kinds(&evs),
            [
                "request.created",
                "request.approved",
                "request.auto_approved",
                "request.activated"
            ]
        );
        assert_eq!(evs[0].details["requester_groups"], json!(["oncall"]));
        for e in &evs[1..3] {
            assert_eq!(e.actor, AUTO_APPROVAL_ACTOR);
            assert_eq!(e.at, parse_time("2026-01-01T00:00:01.5Z").unwrap());
            assert_eq!(e.details["policy"], "oncall-read");
        }
        assert_eq!(evs[1].details["via"], "auto_approval");
        assert_eq!(evs[2].key, "u-1/request.auto_approved");
        let r = record_from_request(&ar(v.clone()));
        assert!(r.auto_approved && !r.break_glass);
        assert_eq!(r.approved_by.as_deref(), Some(AUTO_APPROVAL_ACTOR));
        assert_eq!(r.policy.as_deref(), Some("oncall-read"));
        assert_stable(&v, &evs);
    }

    #[test]
    fn break_glass_activation_and_its_review() {
        let mut v = base();
        v["spec"]["reason"] = json!("INC-7 database down");
        v["spec"]["breakGlass"] = json!({"at": "2026-01-01T00:00:00.250Z"});
        v["status"] = json!({
            "phase": "Active", "approvedAt": "2026-01-01T00:00:01Z", "activeAt": "2026-01-01T00:00:02Z",
            "policy": {"name": "prod", "approvalsRequired": 2, "approvalsGiven": 0, "breakGlass": true},
            "conditions": [cond("PolicySatisfied", "BreakGlass", "2026-01-01T00:00:01Z")]
        });
        let evs = events_from_request(&ar(v.clone()));
        assert_eq!(
            kinds(&evs),
            [
                "request.created",
                "request.approved",
                "request.break_glass",
                "request.activated"
            ]
        );
        assert_eq!(evs[0].details["break_glass"], true);
        let bg = find(&evs, "u-1/request.break_glass");
        assert_eq!(bg.actor, "a@x.io");
        assert_eq!(bg.at, parse_time("2026-01-01T00:00:00.250Z").unwrap());
        assert_eq!(bg.details["reason"], "INC-7 database down");
        assert_eq!(bg.details["ttl_seconds"], 600);
        assert_eq!(bg.details["policy"], "prod");
        assert_eq!(find(&evs, "u-1/request.approved").details["via"], "break_glass");
        assert_eq!(find(&evs, "u-1/request.approved").actor, "a@x.io");
        assert_stable(&v, &evs);
        let r = record_from_request(&ar(v.clone()));
        assert!(r.break_glass && r.break_glass_reviewed_by.is_none());
        assert_eq!(r.approved_by.as_deref(), Some(BREAK_GLASS_ACTOR));

        // The review, later: one more event, the earlier ones unchanged.
        v["spec"]["breakGlassReview"] = json!({"by": "lead@x.io", "at": "2026-01-01T01:00:00Z",
                                               "comment": "justified", "groups": ["sre-leads"]});
        let reviewed = events_from_request(&ar(v.clone()));
        assert_eq!(&reviewed[..4], &evs[..]);
        let review = find(&reviewed, "u-1/request.break_glass_reviewed");
        assert_eq!(review.actor, "lead@x.io");
        assert_eq!(review.at, parse_time("2026-01-01T01:00:00Z").unwrap());
        assert_eq!(review.details["comment"], "justified");
        assert_eq!(review.details["groups"], json!(["sre-leads"]));
        assert_stable(&v, &reviewed);
        let r = record_from_request(&ar(v));
        assert_eq!(r.break_glass_reviewed_by.as_deref(), Some("lead@x.io"));
        assert_eq!(r.updated_at, parse_time("2026-01-01T01:00:00Z").unwrap());

        // Asked for but refused by the policy: created says so, the denial is the controller's.
        let mut refused = base();
        refused["spec"]["breakGlass"] = json!({"at": "2026-01-01T00:00:00Z"});
        refused["status"] = json!({"phase": "Denied", "message": "break-glass is not allowed", "endedAt": "2026-01-01T00:00:01Z",
            "policy": {"name": "prod", "approvalsRequired": 2, "approvalsGiven": 0},
            "conditions": [cond("Denied", "ValidationFailed", "2026-01-01T00:00:01Z")]});
        let evs = events_from_request(&ar(refused));
        assert_eq!(kinds(&evs), ["request.created", "request.denied"]);
        assert_eq!(evs[0].details["break_glass"], true);
        assert_eq!(evs[1].details["condition_reason"], "ValidationFailed");
    }

    #[test]
    fn a_request_approved_ahead_is_scheduled() {
        let mut v = base();
        v["spec"]["startAt"] = json!("2026-01-02T09:00:00Z");
        v["spec"]["approvals"] = json!([{"by": "b@x.io", "at": "2026-01-01T00:05:00Z"}]);
        v["status"] = json!({
            "phase": "Scheduled", "approvedAt": "2026-01-01T00:05:01Z",
            "policy": {"name": "default", "approvalsRequired": 1, "approvalsGiven": 1, "approvedBy": ["b@x.io"]},
            "conditions": [
                cond("Approved", "QuorumMet", "2026-01-01T00:05:01Z"),
                cond("PolicySatisfied", "QuorumMet", "2026-01-01T00:05:01Z"),
                cond("Scheduled", "StartsLater", "2026-01-01T00:05:01.750Z")
            ]
        });
        let evs = events_from_request(&ar(v.clone()));
        assert_eq!(
            kinds(&evs),
            [
                "request.created",
                "request.approval_given",
                "request.approved",
                "request.scheduled"
            ]
        );
        assert_eq!(evs[0].details["start_at"], "2026-01-02T09:00:00Z");
        let s = find(&evs, "u-1/request.scheduled");
        assert_eq!(s.actor, SYSTEM_ACTOR);
        assert_eq!(s.at, parse_time("2026-01-01T00:05:01.750Z").unwrap());
        assert_eq!(s.details["start_at"], "2026-01-02T09:00:00Z");
        assert_stable(&v, &evs);
        assert_eq!(
            record_from_request(&ar(v.clone())).start_at,
            parse_time("2026-01-02T09:00:00Z")
        );

        // Started: the Scheduled condition is gone, the event is still derived (same key).
        v["status"]["phase"] = json!("Active");
        v["status"]["activeAt"] = json!("2026-01-02T09:00:00.2Z");
        v["status"]["conditions"].as_array_mut().unwrap().pop();
        let started = events_from_request(&ar(v));
        assert_eq!(
            kinds(&started),
            [
                "request.created",
                "request.approval_given",
                "request.approved",
                "request.scheduled",
                "request.activated"
            ]
        );
        assert_eq!(find(&started, "u-1/request.scheduled").key, s.key);

        // Approved after its start time: not scheduled.
        let mut late = base();
        late["spec"]["startAt"] = json!("2026-01-01T00:00:30Z");
        late["spec"]["approvals"] = json!([{"by": "b@x.io", "at": "2026-01-01T00:05:00Z"}]);
        late["status"] = json!({"phase": "Active", "approvedAt": "2026-01-01T00:05:01Z",
            "policy": {"name": "default", "approvalsRequired": 1, "approvalsGiven": 1, "approvedBy": ["b@x.io"]}});
        assert!(!kinds(&events_from_request(&ar(late))).contains(&"request.scheduled"));
    }

    #[test]
    fn a_legacy_approval_under_policies() {
        // The default policy (one approval): the legacy approval is the approval, once the controller
        // approved; nothing more than before.
        let mut v = base();
        v["spec"]["approval"] = json!({"by": "b@x.io", "at": "2026-01-01T00:01:00Z"});
        v["status"] = json!({"phase": "Pending",
            "policy": {"name": "default", "approvalsRequired": 1, "approvalsGiven": 0}});
        assert_eq!(kinds(&events_from_request(&ar(v.clone()))), ["request.created"]);
        v["status"] = json!({"phase": "Active", "approvedAt": "2026-01-01T00:01:01Z", "activeAt": "2026-01-01T00:01:02Z",
            "policy": {"name": "default", "approvalsRequired": 1, "approvalsGiven": 1, "approvedBy": ["b@x.io"]},
            "conditions": [cond("PolicySatisfied", "QuorumMet", "2026-01-01T00:01:01Z")]});
        let evs = events_from_request(&ar(v.clone()));
        assert_eq!(
            kinds(&evs),
            ["request.created", "request.approved", "request.activated"]
        );
        assert_eq!(evs[1].actor, "b@x.io");
        assert_eq!(evs[1].at, parse_time("2026-01-01T00:01:00Z").unwrap());
        assert_eq!(evs[1].details["via"], "quorum");
        assert_eq!(record_from_request(&ar(v)).approved_by.as_deref(), Some("b@x.io"));

        // Under a policy needing two, it is one approval among others.
        let mut v = base();
        v["spec"]["approval"] = json!({"by": "b@x.io", "at": "2026-01-01T00:01:00Z", "ttlSeconds": 120});
        v["spec"]["approvals"] = json!([{"by": "c@x.io", "at": "2026-01-01T00:03:00Z"}]);
        v["status"] = json!({"phase": "Approved", "approvedAt": "2026-01-01T00:03:01Z",
            "policy": {"name": "prod", "approvalsRequired": 2, "approvalsGiven": 2, "approvedBy": ["b@x.io", "c@x.io"]}});
        let evs = events_from_request(&ar(v.clone()));
        assert_eq!(
            keys(&evs),
            [
                "u-1/request.created",
                "u-1/request.approval_given",
                "u-1/request.approval_given/0",
                "u-1/request.approved"
            ]
        );
        assert_eq!(evs[1].details["ttl_seconds"], 120);
        assert_eq!(evs[1].details["index"], serde_json::Value::Null);
        assert_eq!(evs[3].actor, "c@x.io");
        assert_stable(&v, &evs);
        let r = record_from_request(&ar(v));
        assert_eq!(r.approvals, ["b@x.io", "c@x.io"]);
        assert_eq!(r.approved_by.as_deref(), Some("b@x.io, c@x.io"));

        // A legacy approval the policy ignores (patched in by a non-approver), then the request timed
        // out: both the approval and why it did not count are recorded.
        let mut v = base();
        v["spec"]["approval"] = json!({"by": "mallory@x.io", "at": "2026-01-01T00:01:00Z"});
        v["status"] = json!({"phase": "Denied", "endedAt": "2026-01-01T01:00:00Z",
            "policy": {"name": "default", "approvalsRequired": 1, "approvalsGiven": 0,
                       "ignored": ["mallory@x.io: not an approver of policy default"]},
            "conditions": [cond("Denied", "PendingTimeout", "2026-01-01T01:00:00Z")]});
        let evs = events_from_request(&ar(v.clone()));
        assert_eq!(
            keys(&evs),
            [
                "u-1/request.created",
                "u-1/request.approval_given",
                "u-1/request.approval_ignored",
                "u-1/request.auto_denied"
            ]
        );
        assert_eq!(evs[2].actor, "mallory@x.io");
        assert_stable(&v, &evs);
        let r = record_from_request(&ar(v));
        assert_eq!(r.approved_by, None, "an ignored approval approved nothing");
        assert_eq!(r.approvals, ["mallory@x.io"]);
    }

    #[test]
    fn records_without_policy_fields_keep_their_defaults() {
        let mut v = base();
        v["spec"]["approval"] = json!({"by": "b@x.io", "at": "2026-01-01T00:01:00Z"});
        let r = record_from_request(&ar(v));
        assert_eq!(r.approved_by.as_deref(), Some("b@x.io"));
        assert_eq!(r.policy, None);
        assert_eq!(r.approvals, ["b@x.io"]);
        assert!(!r.auto_approved && !r.break_glass);
        assert_eq!((r.break_glass_reviewed_by, r.start_at), (None, None));
    }

    #[test]
    fn a_spec_change_of_the_policy_fields_names_their_values() {
        let mut v = base();
        v["spec"]["startAt"] = json!("2026-01-02T00:00:00Z");
        v["spec"]["approvals"] = json!([{"by": "b@x.io", "at": "2026-01-01T00:01:00Z", "ttlSeconds": 300}]);
        let spec = ar(v.clone()).spec;
        let approved = ApprovedSpec::record(&spec, &["b@x.io".to_string()], Some(300));
        // Someone rewrote the start and replaced the approval after approval.
        v["spec"]["startAt"] = json!("2026-01-01T00:02:00Z");
        v["spec"]["approvals"] = json!([{"by": "mallory@x.io", "at": "2026-01-01T00:01:00Z"}]);
        v["status"] = json!({
            "phase": "Failed", "message": "spec changed after approval", "endedAt": "2026-01-01T00:03:00Z",
            "approvedAt": "2026-01-01T00:01:01Z", "approved": approved,
            "conditions": [cond("Failed", "SpecChangedAfterApproval", "2026-01-01T00:03:00Z")]
        });
        let evs = events_from_request(&ar(v));
        let e = find(&evs, "u-1/request.spec_changed");
        assert_eq!(
            e.details["changed"],
            json!(["spec.startAt", "spec.approvals", "spec.approvals.ttlSeconds"])
        );
        assert_eq!(e.details["approved"]["spec.startAt"], "2026-01-02T00:00:00Z");
        assert_eq!(e.details["observed"]["spec.startAt"], "2026-01-01T00:02:00Z");
        assert_eq!(e.details["approved"]["spec.approvals"], json!(["b@x.io"]));
        assert_eq!(e.details["observed"]["spec.approvals"], json!(["mallory@x.io"]));
        assert_eq!(e.details["approved"]["spec.approvals.ttlSeconds"], 300);
        assert_eq!(
            e.details["observed"]["spec.approvals.ttlSeconds"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn record_and_deletion() {
        let mut v = base();
        v["spec"]["revocation"] = json!({"by": "b@x.io", "at": "2026-01-01T00:05:00Z", "reason": "done"});
        v["status"] =
            json!({"phase": "Revoked", "message": "revoked by b@x.io: done", "endedAt": "2026-01-01T00:05:01Z"});
        v["metadata"]["deletionTimestamp"] = json!("2026-01-02T00:05:01Z");
        let a = ar(v);
        let r = record_from_request(&a);
        assert_eq!(r.phase, "Revoked");
        assert_eq!(r.decided_by.as_deref(), Some("b@x.io"));
        assert_eq!(r.updated_at, parse_time("2026-01-01T00:05:01Z").unwrap());
        let d = deletion_event(&a, 86400, Utc::now());
        assert_eq!(d.details["by_retention"], true);
        assert_eq!(d.at, parse_time("2026-01-02T00:05:01Z").unwrap());
        assert_eq!(deletion_event(&a, 0, Utc::now()).details["by_retention"], false);
    }
}
