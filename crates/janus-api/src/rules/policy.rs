//! Approval policy evaluation: which policy governs a request, who may approve it, whether its quorum
//! is met, and whether it may start without a person (auto-approval, break-glass). One pure function
//! family used by the web (to authorize and explain) and the controller (the authority).
//!
//! Rules (docs/policies.md tells operators the same):
//! - Each requested namespace is governed by the first configured policy whose criteria all hold for it;
//!   with none, the built-in [`DEFAULT_POLICY`]. Namespaces under different policies are refused
//!   ([`PolicyError::Conflict`]), so a lax namespace never carries a strict one along.
//! - Quorum counts distinct eligible approvers; the requester never counts unless the default policy
//!   allows self-approval. With `approvers.namespaceOwners`, each namespace whose annotation names owners
//!   also needs one counted approval from them.
//! - A denial, withdrawal or revocation is not judged here: the caller applies
//!   [`super::lifecycle::ending`] first and evaluates only requests it leaves open.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Datelike as _, NaiveTime, Timelike as _, Utc, Weekday};
use globset::{Glob, GlobBuilder, GlobMatcher};
use regex::Regex;

use crate::AccessRequestSpec;
use crate::config::Config;
use crate::policy::{
    APPROVERS_ANNOTATION, DEFAULT_POLICY, JANUS_ADMINS_GROUP, LabelSelector, PolicyConfig, ReasonRule, TimeWindow,
};

/// A requested namespace as read from the target cluster: the metadata policies match on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// The namespace's name.
    pub name: String,
    /// Its labels (for `match.namespaceSelector`).
    pub labels: BTreeMap<String, String>,
    /// Its annotations (for [`crate::policy::APPROVERS_ANNOTATION`]).
    pub annotations: BTreeMap<String, String>,
}

/// What policy evaluation reads of a request.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    /// Target cluster.
    pub cluster: &'a str,
    /// Requester email.
    pub requester: &'a str,
    /// Requester groups recorded at creation.
    pub requester_groups: &'a [String],
    /// Access role ([`crate::policy::DEFAULT_ROLE`] until access scopes land).
    pub role: &'a str,
    /// Requested TTL.
    pub ttl_seconds: i64,
    /// The reason given.
    pub reason: &'a str,
    /// Requested namespaces with their metadata, in request order.
    pub namespaces: &'a [NamespaceInfo],
    /// When the request was created: auto-approval windows are judged at this instant.
    pub created: DateTime<Utc>,
    /// Whether the requester asked for break-glass activation.
    pub break_glass: bool,
}

/// Why a request cannot be governed by any single policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The namespaces fall under different policies; the request must be split.
    #[error("the namespaces fall under different approval policies ({}); request them separately", .0.iter().map(|(ns, p)| format!("{ns}: {p}")).collect::<Vec<_>>().join(", "))]
    Conflict(Vec<(String, String)>),
}

/// The owners one namespace names in its approvers annotation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceOwners {
    /// The namespace.
    pub namespace: String,
    /// Owner emails (lower-cased).
    pub emails: Vec<String>,
    /// Owner groups.
    pub groups: Vec<String>,
}

/// The policy governing one request, resolved against its namespaces.
#[derive(Debug, Clone)]
pub struct Governing<'a> {
    /// The policy's name, or [`crate::policy::DEFAULT_POLICY`].
    pub name: String,
    /// The configured policy; `None` for the default.
    pub policy: Option<&'a PolicyConfig>,
    /// Distinct eligible approvals needed.
    pub approvals_required: u32,
    /// Approvers by email (lower-cased); for the default policy `adminEmails`.
    pub approver_emails: Vec<String>,
    /// Approvers by group; for the default policy `adminGroups` and [`crate::policy::JANUS_ADMINS_GROUP`].
    pub approver_groups: Vec<String>,
    /// Per-namespace owners (only with `approvers.namespaceOwners`, only namespaces with the annotation).
    pub owners: Vec<NamespaceOwners>,
    /// Longest TTL allowed.
    pub max_ttl_seconds: i64,
    /// TTLs an approver can pick.
    pub approval_ttl_options: Vec<i64>,
    /// Pending expiry in seconds (0 disables).
    pub pending_expiry_seconds: i64,
    /// The reason pattern, if any.
    pub reason: Option<&'a ReasonRule>,
    /// The requester may approve their own request (only the default policy, `allowSelfApproval`).
    pub self_approval: bool,
}

/// Why a person's approval does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ineligible {
    /// The requester never counts (unless the default policy allows self-approval).
    Requester,
    /// Not named by the policy, its groups, or an owners annotation.
    NotAnApprover {
        /// The policy's name.
        policy: String,
    },
    /// Already approved this request; a second approval by the same person does not count.
    AlreadyApproved,
}

/// The approvals of a request counted against its policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Distinct eligible approvers, in order (lower-cased emails).
    pub counted: Vec<String>,
    /// Approvals that do not count, with why.
    pub ignored: Vec<(String, Ineligible)>,
    /// Distinct eligible approvals needed.
    pub required: u32,
    /// Namespaces with owners none of whom approved yet.
    pub missing_owners: Vec<String>,
}

/// How a request came to be approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovedVia {
    /// The quorum of eligible approvals is present.
    Quorum,
    /// The policy's `autoApprove` conditions held at creation.
    Auto,
    /// The requester broke glass under the policy's `breakGlass` rule.
    BreakGlass,
}

/// What the controller does with a request, by its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The request breaks a rule of its policy (reason pattern, TTL above the policy's maximum, namespaces
    /// under different policies, break-glass not allowed): deny it while pending, fail it once approved.
    Invalid(String),
    /// Waiting for approvals.
    Pending(Tally),
    /// May start (at `startAt` if set).
    Approved {
        /// Why.
        via: ApprovedVia,
        /// The approvals counted (empty for auto-approval and break-glass).
        tally: Tally,
    },
}

impl<'a> RequestFacts<'a> {
    /// The facts of `spec`, with its namespaces' metadata (in `spec.namespaces` order) and creation time.
    pub fn of(spec: &'a AccessRequestSpec, namespaces: &'a [NamespaceInfo], created: DateTime<Utc>) -> Self {
        Self {
            cluster: &spec.cluster,
            requester: &spec.requester,
            requester_groups: &spec.requester_groups,
            role: crate::policy::DEFAULT_ROLE,
            ttl_seconds: spec.ttl_seconds,
            reason: &spec.reason,
            namespaces,
            created,
            break_glass: spec.break_glass.is_some(),
        }
    }
}

impl Tally {
    /// Whether the quorum is met: enough distinct eligible approvers, and every namespace with owners has
    /// one of its owners among them.
    pub fn satisfied(&self) -> bool {
        self.counted.len() >= self.required as usize && self.missing_owners.is_empty()
    }

    /// Progress as shown in the status and the pages, e.g. `1/2`.
    pub fn progress(&self) -> String {
        format!("{}/{}", self.counted.len(), self.required)
    }
}

impl std::fmt::Display for Ineligible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ineligible::Requester => f.write_str("the requester does not count as an approver"),
            Ineligible::NotAnApprover { policy } => write!(f, "not an approver of policy {policy}"),
            Ineligible::AlreadyApproved => f.write_str("already approved; counted once"),
        }
    }
}

/// Compiles a policy glob (`prod-*`, `team-{a,b}`); emails are matched case-insensitively. Globs are
/// checked at start-up ([`Config::validate`]), so evaluation never meets one that does not compile.
pub fn compile_glob(pattern: &str, case_insensitive: bool) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .build()
        .map(|g: Glob| g.compile_matcher())
        .map_err(|e| format!("{pattern:?} is not a valid glob: {}", e.kind()))
}

/// Whether any of `patterns` matches `value`. A pattern that does not compile (only possible when the
/// configuration was not validated) matches only itself, literally.
fn any_glob(patterns: &[String], value: &str, case_insensitive: bool) -> bool {
    patterns.iter().any(|p| match compile_glob(p, case_insensitive) {
        Ok(m) => m.is_match(value),
        Err(_) if case_insensitive => p.eq_ignore_ascii_case(value),
        Err(_) => p == value,
    })
}

/// The compiled reason pattern, from a process-wide cache: policies are few and fixed at start-up,
/// while evaluation runs on every reconcile and every page.
pub fn reason_regex(pattern: &str) -> Result<Regex, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Result<Regex, String>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    // A panic elsewhere while holding the lock leaves the map intact (inserts are single calls).
    let mut map = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(pattern.to_owned())
        .or_insert_with(|| {
            Regex::new(pattern).map_err(|e| format!("the reason pattern {pattern:?} does not compile: {e}"))
        })
        .clone()
}

/// Whether a Kubernetes label selector matches `labels`, with the semantics of
/// k8s.io/apimachinery/pkg/labels/selector.go (`Requirement.Matches`): `NotIn` and `DoesNotExist` hold
/// for a missing label. An unknown operator matches nothing (refused at start-up anyway).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().all(|r| {
            let value = labels.get(&r.key);
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| r.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Parses an [`APPROVERS_ANNOTATION`] value: comma-separated `group:<name>` entries and emails, with any
/// whitespace around them. Entries that are neither (no `@`, empty group) are ignored.
pub fn parse_owners(namespace: &str, value: &str) -> NamespaceOwners {
    let mut owners = NamespaceOwners {
        namespace: namespace.to_owned(),
        ..Default::default()
    };
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if let Some(group) = entry.strip_prefix("group:") {
            let group = group.trim();
            if !group.is_empty() && !owners.groups.iter().any(|g| g == group) {
                owners.groups.push(group.to_owned());
            }
        } else if entry.contains('@') && !entry.contains(char::is_whitespace) {
            let email = entry.to_lowercase();
            if !owners.emails.contains(&email) {
                owners.emails.push(email);
            }
        }
    }
    owners
}

/// Parses a window's `HH:MM` (`24:00` is accepted as the end of the day, the same as `00:00`).
pub fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    if (h, m) == (24, 0) {
        return NaiveTime::from_hms_opt(0, 0, 0);
    }
    NaiveTime::from_hms_opt(h, m, 0)
}

/// Parses a window's day name (`Mon` … `Sun`, or the full English name, any case).
pub fn parse_day(s: &str) -> Option<Weekday> {
    s.trim().parse().ok()
}

/// Whether `at` falls in the weekly `window` of time zone `tz`.
///
/// Judged on the local wall clock, so `09:00`–`17:00` means nine to five local time on both sides of a
/// DST change. Deliberately: during the hour repeated when clocks go back, both occurrences of a wall
/// time inside the window are inside it; a start the spring change skips (`02:30` in Europe/Berlin on
/// its last Sunday of March) opens the window at the first wall time that exists after it (`03:00`).
/// A window whose end is not after its start runs past midnight and belongs to the day it opens on.
pub fn window_contains(window: &TimeWindow, tz: chrono_tz::Tz, at: DateTime<Utc>) -> bool {
    let (Some(start), Some(end)) = (parse_hhmm(&window.start), parse_hhmm(&window.end)) else {
        return false;
    };
    let local = at.with_timezone(&tz);
    let time = local.time();
    let time = NaiveTime::from_hms_opt(time.hour(), time.minute(), time.second()).unwrap_or(time);
    let day = local.weekday();
    let opens_on = |d: Weekday| window.days.is_empty() || window.days.iter().any(|n| parse_day(n) == Some(d));
    if start < end {
        opens_on(day) && start <= time && time < end
    } else {
        (opens_on(day) && time >= start) || (opens_on(day.pred()) && time < end)
    }
}

/// Whether `email` (any case) is listed in `emails`.
fn has_email(emails: &[String], email: &str) -> bool {
    emails.iter().any(|e| e.trim().eq_ignore_ascii_case(email))
}

/// Whether any of `groups` is listed in `wanted`.
fn has_group(wanted: &[String], groups: &[String]) -> bool {
    groups.iter().any(|g| wanted.iter().any(|w| w == g))
}

/// Whether `policy` governs namespace `ns` of the request (every criterion given holds).
fn policy_matches(policy: &PolicyConfig, facts: &RequestFacts<'_>, ns: Option<&NamespaceInfo>) -> bool {
    let m = &policy.matches;
    let request_level = (m.clusters.is_empty() || any_glob(&m.clusters, facts.cluster, false))
        && (m.requester_emails.is_empty() || any_glob(&m.requester_emails, facts.requester.trim(), true))
        && (m.requester_groups.is_empty() || has_group(&m.requester_groups, facts.requester_groups))
        && (m.roles.is_empty() || m.roles.iter().any(|r| r == facts.role));
    if !request_level {
        return false;
    }
    match ns {
        Some(ns) => {
            (m.namespaces.is_empty() || any_glob(&m.namespaces, &ns.name, false))
                && m.namespace_selector
                    .as_ref()
                    .is_none_or(|s| selector_matches(s, &ns.labels))
        }
        // No namespace to judge: only policies without namespace criteria can apply.
        None => m.namespaces.is_empty() && m.namespace_selector.is_none(),
    }
}

/// The policy governing a request: for each namespace the first configured policy whose criteria all
/// hold, else the default. Namespaces under different policies are a [`PolicyError::Conflict`].
pub fn govern<'a>(config: &'a Config, facts: &RequestFacts<'_>) -> Result<Governing<'a>, PolicyError> {
    let first = |ns: Option<&NamespaceInfo>| config.policies.iter().find(|p| policy_matches(p, facts, ns));
    let chosen: Option<&PolicyConfig> = if facts.namespaces.is_empty() {
        first(None)
    } else {
        let per_ns: Vec<(&NamespaceInfo, Option<&PolicyConfig>)> =
            facts.namespaces.iter().map(|ns| (ns, first(Some(ns)))).collect();
        let name = |p: Option<&PolicyConfig>| p.map_or(DEFAULT_POLICY, |p| p.name.as_str()).to_owned();
        let first_name = name(per_ns[0].1);
        if per_ns.iter().any(|(_, p)| name(*p) != first_name) {
            return Err(PolicyError::Conflict(
                per_ns.iter().map(|(ns, p)| (ns.name.clone(), name(*p))).collect(),
            ));
        }
        per_ns[0].1
    };
    let lower = |v: &[String]| v.iter().map(|e| e.trim().to_lowercase()).collect::<Vec<_>>();
    Ok(match chosen {
        None => Governing {
            name: DEFAULT_POLICY.to_owned(),
            policy: None,
            approvals_required: 1,
            approver_emails: lower(&config.admin_emails),
            approver_groups: config
                .admin_groups
                .iter()
                .cloned()
                .chain([JANUS_ADMINS_GROUP.to_owned()])
                .collect(),
            owners: vec![],
            max_ttl_seconds: config.max_ttl_seconds,
            approval_ttl_options: config.approval_ttl_options.clone(),
            pending_expiry_seconds: config.pending_expiry_seconds,
            reason: None,
            self_approval: config.allow_self_approval,
        },
        Some(p) => Governing {
            name: p.name.clone(),
            policy: Some(p),
            // Validation refuses 0; a quorum of nobody must never approve anything.
            approvals_required: p.approvals_required.max(1),
            approver_emails: lower(&p.approvers.emails),
            approver_groups: p.approvers.groups.clone(),
            owners: if p.approvers.namespace_owners {
                facts
                    .namespaces
                    .iter()
                    .filter_map(|ns| {
                        ns.annotations
                            .get(APPROVERS_ANNOTATION)
                            .map(|v| parse_owners(&ns.name, v))
                    })
                    // An annotation naming nobody adds no requirement (it could never be met).
                    .filter(|o| !o.emails.is_empty() || !o.groups.is_empty())
                    .collect()
            } else {
                vec![]
            },
            // A policy only narrows the global bound (validated); min() keeps that true regardless.
            max_ttl_seconds: p
                .max_ttl_seconds
                .unwrap_or(config.max_ttl_seconds)
                .min(config.max_ttl_seconds),
            approval_ttl_options: p
                .approval_ttl_options
                .clone()
                .unwrap_or_else(|| config.approval_ttl_options.clone()),
            pending_expiry_seconds: p.pending_expiry_seconds.unwrap_or(config.pending_expiry_seconds),
            reason: p.reason.as_ref(),
            self_approval: false,
        },
    })
}

impl Governing<'_> {
    /// Whether a person with `email` and `groups` may approve a request by `requester` under this policy.
    /// (Whether they already approved is the caller's to judge: see [`Governing::tally`].)
    pub fn eligibility(&self, requester: &str, email: &str, groups: &[String]) -> Result<(), Ineligible> {
        let email = email.trim();
        if email.eq_ignore_ascii_case(requester.trim()) && !self.self_approval {
            return Err(Ineligible::Requester);
        }
        let named = has_email(&self.approver_emails, email)
            || has_group(&self.approver_groups, groups)
            || self
                .owners
                .iter()
                .any(|o| has_email(&o.emails, email) || has_group(&o.groups, groups));
        if named {
            Ok(())
        } else {
            Err(Ineligible::NotAnApprover {
                policy: self.name.clone(),
            })
        }
    }

    /// Who may approve, for people: `members of payments-leads or alice@example.com, and for namespace
    /// team-a one of its owners (members of team-a-leads)`.
    pub fn describe_approvers(&self) -> String {
        let own = (!self.approver_emails.is_empty() || !self.approver_groups.is_empty())
            .then(|| describe(&self.approver_emails, &self.approver_groups));
        let owners: Vec<String> = self
            .owners
            .iter()
            .map(|o| {
                format!(
                    "for namespace {} one of its owners ({})",
                    o.namespace,
                    describe(&o.emails, &o.groups)
                )
            })
            .collect();
        match (own, owners.is_empty()) {
            (None, true) => "nobody".to_owned(),
            (Some(own), true) => own,
            (None, false) => owners.join("; "),
            (Some(own), false) => format!("{own}; and {}", owners.join("; ")),
        }
    }

    /// The approvals of `spec` (`spec.approval` first, then `spec.approvals`) counted against this policy.
    ///
    /// Compatibility: under the default policy a `spec.approval` (written by clients before approval
    /// policies, with no groups) counts as it always did, unless it is the requester's own without
    /// `allowSelfApproval`: the controller never judged who wrote it, and writing the CRD is
    /// approver-equivalent (threat model). Under a configured policy it is judged like any approval, by
    /// its email alone.
    pub fn tally(&self, spec: &AccessRequestSpec) -> Tally {
        let legacy = spec.approval.iter().map(|a| (a.by.as_str(), &[][..], true));
        let entries = spec
            .approvals
            .iter()
            .map(|a| (a.by.as_str(), a.groups.as_slice(), false));
        let mut tally = Tally {
            required: self.approvals_required,
            ..Default::default()
        };
        let mut owners_met = vec![false; self.owners.len()];
        for (by, groups, is_legacy) in legacy.chain(entries) {
            let email = by.trim().to_lowercase();
            let verdict = if is_legacy && self.policy.is_none() {
                if email.eq_ignore_ascii_case(spec.requester.trim()) && !self.self_approval {
                    Err(Ineligible::Requester)
                } else {
                    Ok(())
                }
            } else {
                self.eligibility(&spec.requester, &email, groups)
            };
            match verdict {
                Ok(()) => {
                    for (met, o) in owners_met.iter_mut().zip(&self.owners) {
                        *met |= has_email(&o.emails, &email) || has_group(&o.groups, groups);
                    }
                    if tally.counted.contains(&email) {
                        push_once(&mut tally.ignored, email, Ineligible::AlreadyApproved);
                    } else {
                        tally.counted.push(email);
                    }
                }
                Err(why) => push_once(&mut tally.ignored, email, why),
            }
        }
        // Someone counted through a later entry (with the groups an earlier one lacked) is not also
        // "not an approver"; a duplicate stays listed.
        let counted = tally.counted.clone();
        tally
            .ignored
            .retain(|(e, why)| *why == Ineligible::AlreadyApproved || !counted.contains(e));
        tally.missing_owners = self
            .owners
            .iter()
            .zip(&owners_met)
            .filter(|(_, met)| !**met)
            .map(|(o, _)| o.namespace.clone())
            .collect();
        tally
    }

    /// The request's own rules: reason pattern, TTL within the policy's bounds, break-glass allowed when
    /// asked for. `Err` is the message shown to the requester and written to the status.
    pub fn check_request(&self, facts: &RequestFacts<'_>, config: &Config) -> Result<(), String> {
        let _ = config;
        if let Some(rule) = self.reason {
            let re = reason_regex(&rule.pattern).map_err(|e| format!("policy {}: {e}", self.name))?;
            if !re.is_match(facts.reason) {
                let wanted = if rule.description.is_empty() {
                    format!("match the pattern {}", rule.pattern)
                } else {
                    format!("contain {}", rule.description)
                };
                return Err(format!("under policy {} the reason must {wanted}", self.name));
            }
        }
        if facts.ttl_seconds > self.max_ttl_seconds {
            return Err(format!(
                "a duration of {}s is longer than policy {} allows ({}s)",
                facts.ttl_seconds, self.name, self.max_ttl_seconds
            ));
        }
        if facts.break_glass {
            self.break_glass(facts)?;
        }
        Ok(())
    }

    /// Whether the policy's `autoApprove` conditions hold for the request (window judged at creation in
    /// `displayTimezone`). `Err` says which condition failed.
    pub fn auto_approval(&self, facts: &RequestFacts<'_>, config: &Config) -> Result<(), String> {
        let Some(rule) = self.policy.and_then(|p| p.auto_approve.as_ref()) else {
            return Err(format!("policy {} has no auto-approval", self.name));
        };
        let restricted = !rule.groups.is_empty() || !rule.emails.is_empty();
        if restricted
            && !has_group(&rule.groups, facts.requester_groups)
            && !has_email(&rule.emails, facts.requester.trim())
        {
            return Err(format!(
                "policy {} auto-approves only requests by {}",
                self.name,
                describe(&rule.emails, &rule.groups)
            ));
        }
        if let Some(max) = rule.max_ttl_seconds
            && facts.ttl_seconds > max
        {
            return Err(format!(
                "policy {} auto-approves only requests of at most {max}s ({}s asked)",
                self.name, facts.ttl_seconds
            ));
        }
        if !rule.windows.is_empty() {
            let tz: chrono_tz::Tz = config
                .display_timezone
                .parse()
                .map_err(|_| format!("displayTimezone {:?} is not a known time zone", config.display_timezone))?;
            if !rule.windows.iter().any(|w| window_contains(w, tz, facts.created)) {
                return Err(format!(
                    "policy {} auto-approves only requests made within its time windows ({})",
                    self.name,
                    rule.windows
                        .iter()
                        .map(|w| {
                            let days = if w.days.is_empty() {
                                "daily".to_owned()
                            } else {
                                w.days.join(",")
                            };
                            format!("{days} {}-{}", w.start, w.end)
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
        }
        Ok(())
    }

    /// Whether the requester may break glass under this policy for the TTL asked. `Err` says why not.
    pub fn break_glass(&self, facts: &RequestFacts<'_>) -> Result<(), String> {
        let Some(rule) = self.policy.and_then(|p| p.break_glass.as_ref()) else {
            return Err(format!("policy {} does not allow break-glass access", self.name));
        };
        if !has_group(&rule.groups, facts.requester_groups) && !has_email(&rule.emails, facts.requester.trim()) {
            return Err(format!(
                "under policy {} only {} may break glass",
                self.name,
                describe(&rule.emails, &rule.groups)
            ));
        }
        if facts.ttl_seconds > rule.max_ttl_seconds {
            return Err(format!(
                "break-glass access under policy {} lasts at most {}s ({}s asked)",
                self.name, rule.max_ttl_seconds, facts.ttl_seconds
            ));
        }
        Ok(())
    }
}

/// `members of a or b or x@y` for messages.
fn describe(emails: &[String], groups: &[String]) -> String {
    let mut parts: Vec<String> = vec![];
    if !groups.is_empty() {
        parts.push(format!("members of {}", groups.join(" or ")));
    }
    parts.extend(emails.iter().cloned());
    if parts.is_empty() {
        "nobody".to_owned()
    } else {
        parts.join(" or ")
    }
}

fn push_once(ignored: &mut Vec<(String, Ineligible)>, email: String, why: Ineligible) {
    if !ignored.iter().any(|(e, w)| *e == email && *w == why) {
        ignored.push((email, why));
    }
}

/// The verdict on a request: invalid, pending with its tally, or approved (by quorum, auto-approval or
/// break-glass). The controller activates only on [`Verdict::Approved`], re-evaluated on every reconcile.
///
/// A denial, withdrawal or revocation is not looked at: the caller handles those first
/// ([`super::lifecycle::ending`]), and evaluates only a request no such decision ended.
pub fn evaluate(config: &Config, spec: &AccessRequestSpec, facts: &RequestFacts<'_>) -> Verdict {
    let governing = match govern(config, facts) {
        Ok(g) => g,
        Err(e) => return Verdict::Invalid(e.to_string()),
    };
    if let Err(e) = governing.check_request(facts, config) {
        return Verdict::Invalid(e);
    }
    let effective = super::ttl::effective_ttl(spec);
    if effective > governing.max_ttl_seconds {
        return Verdict::Invalid(format!(
            "the approved duration of {effective}s is longer than policy {} allows ({}s)",
            governing.name, governing.max_ttl_seconds
        ));
    }
    let nobody = Tally {
        required: governing.approvals_required,
        ..Default::default()
    };
    if facts.break_glass {
        // check_request refused it above unless the policy allows it.
        return Verdict::Approved {
            via: ApprovedVia::BreakGlass,
            tally: nobody,
        };
    }
    if governing.auto_approval(facts, config).is_ok() {
        return Verdict::Approved {
            via: ApprovedVia::Auto,
            tally: nobody,
        };
    }
    let tally = governing.tally(spec);
    if tally.satisfied() {
        Verdict::Approved {
            via: ApprovedVia::Quorum,
            tally,
        }
    } else {
        Verdict::Pending(tally)
    }
}
