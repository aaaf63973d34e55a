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
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

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
    /// Access role ([`AccessRequestSpec::role_name`]: `spec.role`, else
    /// [`crate::policy::DEFAULT_ROLE`]).
    pub role: &'a str,
    /// Requested TTL.
    pub ttl_seconds: i64,
    /// The reason given.
    pub reason: &'a str,
    /// Requested namespaces with their metadata, in request order.
    pub namespaces: &'a [NamespaceInfo],
    /// When the request was created.
    pub created: DateTime<Utc>,
    /// When access is to start (`spec.startAt`), if set: auto-approval windows are judged at the start
    /// of access ([`RequestFacts::access_starts`]).
    pub start_at: Option<DateTime<Utc>>,
    /// Whether the requester asked for break-glass activation.
    pub break_glass: bool,
}

/// Why a request cannot be governed by any single policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The namespaces fall under different policies; the request must be split.
    #[error("the namespaces fall under different approval policies ({}); request them separately", .0.iter().map(|(ns, p)| format!("{ns}: {p}")).collect::<Vec<_>>().join(", "))]
    Conflict(Vec<(String, String)>),
    /// The governing policy's `allowedRoles` does not list the request's role.
    #[error("policy {policy} allows the roles {}; this request asks for {role}", .allowed.join(", "))]
    RoleNotAllowed {
        /// The governing policy.
        policy: String,
        /// Its `allowedRoles`.
        allowed: Vec<String>,
        /// The role asked for.
        role: String,
    },
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
            role: spec.role_name(),
            ttl_seconds: spec.ttl_seconds,
            reason: &spec.reason,
            namespaces,
            created,
            start_at: super::ttl::starts_at(spec),
            break_glass: spec.break_glass.is_some(),
        }
    }

    /// The instant access starts: `startAt` when set, else creation. A `startAt` already past at
    /// creation (written straight into the CRD; the web refuses it) starts access at creation, so it
    /// cannot date access into a window either.
    pub fn access_starts(&self) -> DateTime<Utc> {
        self.start_at.map_or(self.created, |s| s.max(self.created))
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

/// A compiled policy glob from a process-wide cache (`None`: it does not compile). Globs come only from
/// the configuration, so the cache holds a fixed, small set; evaluation runs on every reconcile and, in
/// the web, for every live event and subscriber, and compiling a glob builds a regex each time.
fn cached_glob(pattern: &str, case_insensitive: bool) -> Option<Arc<GlobMatcher>> {
    type Cache = RwLock<HashMap<(String, bool), Option<Arc<GlobMatcher>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (pattern.to_owned(), case_insensitive);
    // A panic elsewhere while holding the lock leaves the map intact (inserts are single calls).
    if let Some(hit) = cache.read().unwrap_or_else(PoisonError::into_inner).get(&key) {
        return hit.clone();
    }
    let compiled = compile_glob(pattern, case_insensitive).ok().map(Arc::new);
    cache
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_insert(compiled)
        .clone()
}

/// Whether any of `patterns` matches `value`. A pattern that does not compile (only possible when the
/// configuration was not validated) matches only itself, literally.
fn any_glob(patterns: &[String], value: &str, case_insensitive: bool) -> bool {
    patterns.iter().any(|p| match cached_glob(p, case_insensitive) {
        Some(m) => m.is_match(value),
        None if case_insensitive => same_email(p, value),
        None => p == value,
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
        && selector
            .match_expressions
            .iter()
            .all(|r| super::scope::requirement_holds(labels.get(&r.key), &r.operator, &r.values))
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
            let email = normalize_email(entry);
            if !owners.emails.contains(&email) {
                owners.emails.push(email);
            }
        }
    }
    owners
}

/// Parses an `HH:MM` time of day (`24:00` gives `00:00`; windows read it as the end of the day, see
/// [`window_minutes`]).
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

/// A window's `HH:MM` as minutes since midnight, `00:00` to `24:00` (1440, the end of the day).
fn minute_of_day(s: &str) -> Option<u32> {
    if s == "24:00" {
        return Some(24 * 60);
    }
    parse_hhmm(s).map(|t| t.hour() * 60 + t.minute())
}

/// A window's start and end in minutes since midnight (the end `24:00` is 1440, the end of the day);
/// `None` when either is not `HH:MM`. A start after the end runs past midnight; equal ones make no
/// window (refused at start-up).
pub fn window_minutes(window: &TimeWindow) -> Option<(u32, u32)> {
    Some((minute_of_day(&window.start)?, minute_of_day(&window.end)?))
}

/// Parses a window's day name: exactly `Mon` … `Sun`, as the chart's values.schema.json allows.
pub fn parse_day(s: &str) -> Option<Weekday> {
    Some(match s {
        "Mon" => Weekday::Mon,
        "Tue" => Weekday::Tue,
        "Wed" => Weekday::Wed,
        "Thu" => Weekday::Thu,
        "Fri" => Weekday::Fri,
        "Sat" => Weekday::Sat,
        "Sun" => Weekday::Sun,
        _ => return None,
    })
}

/// Whether `at` falls in the weekly `window` of time zone `tz`.
///
/// Judged on the local wall clock, so `09:00`–`17:00` means nine to five local time on both sides of a
/// DST change. Deliberately: during the hour repeated when clocks go back, both occurrences of a wall
/// time inside the window are inside it; a start the spring change skips (`02:30` in Europe/Berlin on
/// its last Sunday of March) opens the window at the first wall time that exists after it (`03:00`).
/// A window whose end is not after its start runs past midnight and belongs to the day it opens on.
pub fn window_contains(window: &TimeWindow, tz: chrono_tz::Tz, at: DateTime<Utc>) -> bool {
    let Some((start, end)) = window_minutes(window) else {
        return false;
    };
    let (start, end) = (start * 60, end * 60);
    let local = at.with_timezone(&tz);
    // Whole seconds since local midnight (a leap second counts as the second it extends).
    let time = local.time().num_seconds_from_midnight();
    let day = local.weekday();
    let opens_on = |d: Weekday| window.days.is_empty() || window.days.iter().any(|n| parse_day(n) == Some(d));
    match start.cmp(&end) {
        std::cmp::Ordering::Less => opens_on(day) && start <= time && time < end,
        std::cmp::Ordering::Greater => (opens_on(day) && time >= start) || (opens_on(day.pred()) && time < end),
        std::cmp::Ordering::Equal => false,
    }
}

/// The one form in which emails are compared everywhere (policies, owners annotations, approvals, the
/// requester): without surrounding whitespace, lower-cased by Unicode rules. One normalisation on both
/// sides, so `Åsa@x` and `åsa@x` are the same person for every check, not only for some.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Whether two emails name the same person ([`normalize_email`]).
pub fn same_email(a: &str, b: &str) -> bool {
    normalize_email(a) == normalize_email(b)
}

/// Whether `email` (any case) is listed in `emails`.
fn has_email(emails: &[String], email: &str) -> bool {
    let email = normalize_email(email);
    emails.iter().any(|e| normalize_email(e) == email)
}

/// Whether any of `groups` is listed in `wanted`.
fn has_group(wanted: &[String], groups: &[String]) -> bool {
    groups.iter().any(|g| wanted.iter().any(|w| w == g))
}

/// Whether `policy` governs namespace `ns` of the request (every criterion given holds).
fn policy_matches(policy: &PolicyConfig, facts: &RequestFacts<'_>, ns: Option<&NamespaceInfo>) -> bool {
    let m = &policy.matches;
    let request_level = (m.clusters.is_empty() || any_glob(&m.clusters, facts.cluster, false))
        && (m.requester_emails.is_empty() || any_glob(&m.requester_emails, &normalize_email(facts.requester), true))
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
    let lower = |v: &[String]| v.iter().map(|e| normalize_email(e)).collect::<Vec<_>>();
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
        if same_email(email, requester) && !self.self_approval {
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
    /// Compatibility: a `spec.approval` (written by clients before approval policies) counts as one
    /// approval, judged like any other but by its email alone, as it records no groups: under the
    /// default policy it counts when its author is in `adminEmails`. An approval patched into the CRD
    /// by anyone else never activates anything, whichever field it is written to.
    pub fn tally(&self, spec: &AccessRequestSpec) -> Tally {
        let legacy = spec.approval.iter().map(|a| (a.by.as_str(), &[][..]));
        let entries = spec.approvals.iter().map(|a| (a.by.as_str(), a.groups.as_slice()));
        let mut tally = Tally {
            required: self.approvals_required,
            ..Default::default()
        };
        let mut owners_met = vec![false; self.owners.len()];
        for (by, groups) in legacy.chain(entries) {
            let email = normalize_email(by);
            let verdict = self.eligibility(&spec.requester, &email, groups);
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

    /// Whether the policy lets a request ask for `role`: its `allowedRoles` lists it, or is empty (the
    /// default policy allows every configured role). For the request form, which offers only these.
    pub fn allows_role(&self, role: &str) -> bool {
        self.policy
            .is_none_or(|p| p.allowed_roles.is_empty() || p.allowed_roles.iter().any(|r| r == role))
    }

    /// The request's role against the policy's `allowedRoles` ([`PolicyError::RoleNotAllowed`]).
    /// [`Governing::check_request`] checks it first; callers that report the field at fault call it on
    /// its own.
    pub fn check_role(&self, facts: &RequestFacts<'_>) -> Result<(), PolicyError> {
        match self.policy {
            Some(p) if !self.allows_role(facts.role) => Err(PolicyError::RoleNotAllowed {
                policy: self.name.clone(),
                allowed: p.allowed_roles.clone(),
                role: facts.role.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// The request's own rules: the role allowed ([`Governing::check_role`]), reason pattern, TTL within
    /// the policy's bounds, break-glass allowed when asked for, and a quorum that someone can reach
    /// ([`Governing::quorum_reachable`]) unless break-glass or auto-approval starts it without
    /// approvals. `Err` is the message shown to the requester and written to the status.
    pub fn check_request(&self, facts: &RequestFacts<'_>, config: &Config) -> Result<(), String> {
        self.check_role(facts).map_err(|e| e.to_string())?;
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
        } else if self.auto_approval(facts, config).is_err() {
            self.quorum_reachable(facts)?;
        }
        Ok(())
    }

    /// Whether the quorum can be reached at all for this request. Groups can always gain members, so
    /// only what is provably impossible is refused, with a message starting `nobody can approve this
    /// request:`
    /// - the approvers are named by email only (the policy's and the namespaces' owners annotations) and
    ///   fewer of them than `approvalsRequired` are not the requester;
    /// - a namespace's owners annotation names only the requester (its owners' approval, required for
    ///   that namespace, can never come);
    /// - the policy's only approvers are namespace owners and a requested namespace names none.
    ///
    /// Refusing at creation (the web answers 422, the controller denies) is better than a request that
    /// stays pending until it expires.
    pub fn quorum_reachable(&self, facts: &RequestFacts<'_>) -> Result<(), String> {
        let nobody = |why: String| Err(format!("nobody can approve this request: {why}"));
        let owners_only = self.policy.is_some_and(|p| p.approvers.namespace_owners)
            && self.approver_emails.is_empty()
            && self.approver_groups.is_empty();
        if owners_only
            && let Some(ns) = facts
                .namespaces
                .iter()
                .find(|ns| !self.owners.iter().any(|o| o.namespace == ns.name))
        {
            return nobody(format!(
                "namespace {} names no approvers ({APPROVERS_ANNOTATION})",
                ns.name
            ));
        }
        let other = |e: &&String| self.self_approval || !same_email(e, facts.requester);
        if let Some(o) = self
            .owners
            .iter()
            .find(|o| o.groups.is_empty() && !o.emails.iter().any(|e| other(&e)))
        {
            return nobody(format!(
                "the owners of namespace {} ({APPROVERS_ANNOTATION}) are only the requester",
                o.namespace
            ));
        }
        let groups = !self.approver_groups.is_empty() || self.owners.iter().any(|o| !o.groups.is_empty());
        if !groups {
            let mut emails: Vec<&String> = self
                .approver_emails
                .iter()
                .chain(self.owners.iter().flat_map(|o| &o.emails))
                .filter(other)
                .collect();
            emails.sort();
            emails.dedup();
            if emails.len() < self.approvals_required as usize {
                return nobody(format!(
                    "policy {} needs {} distinct approvers and names only {} besides the requester{}",
                    self.name,
                    self.approvals_required,
                    emails.len(),
                    if emails.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({})",
                            emails.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    }
                ));
            }
        }
        Ok(())
    }

    /// Whether the policy's `autoApprove` conditions hold for the request. A window must contain the
    /// start of access ([`RequestFacts::access_starts`]: `startAt` when set, else creation), on the wall
    /// clock of `displayTimezone`: judged at creation alone, a request made inside the window could
    /// schedule its access for any time outside it. `Err` says which condition failed.
    pub fn auto_approval(&self, facts: &RequestFacts<'_>, config: &Config) -> Result<(), String> {
        let Some(rule) = self.policy.and_then(|p| p.auto_approve.as_ref()) else {
            return Err(format!("policy {} has no auto-approval", self.name));
        };
        let restricted = !rule.groups.is_empty() || !rule.emails.is_empty();
        if restricted && !has_group(&rule.groups, facts.requester_groups) && !has_email(&rule.emails, facts.requester) {
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
            if !rule
                .windows
                .iter()
                .any(|w| window_contains(w, tz, facts.access_starts()))
            {
                return Err(format!(
                    "policy {} auto-approves only access starting within its time windows ({})",
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
        if !has_group(&rule.groups, facts.requester_groups) && !has_email(&rule.emails, facts.requester) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Approval, ApprovalEntry, BreakGlass};

    const CONFIG: &str = r#"
displayTimezone: Europe/Berlin
adminEmails: [Admin@example.com]
adminGroups: [platform]
minTtlSeconds: 600
maxTtlSeconds: 28800
pendingExpirySeconds: 86400
approvalTtlOptions: [900, 3600]
policies:
- name: prod
  match: {clusters: ["prod-*"]}
  approvers: {emails: [alice@example.com, Bob@Example.com, carol@example.com], groups: [sre]}
  approvalsRequired: 2
  maxTtlSeconds: 7200
  pendingExpirySeconds: 3600
  approvalTtlOptions: [900]
  reason: {pattern: '\bOPS-\d+\b', description: a ticket id such as OPS-1234}
  breakGlass: {groups: [oncall], maxTtlSeconds: 1800}
- name: payments
  match: {namespaces: ["payments-*"], namespaceSelector: {matchLabels: {team: payments}, matchExpressions: [{key: tier, operator: NotIn, values: [sandbox]}]}}
  approvers: {groups: [payments-leads]}
- name: contractors
  match: {requesterEmails: ["*@contractors.example.com"]}
  approvers: {emails: [alice@example.com]}
- name: oncall-readonly
  match: {requesterGroups: [oncall], namespaces: [monitoring], roles: [exec]}
  approvers: {emails: [alice@example.com]}
  autoApprove:
    groups: [oncall]
    maxTtlSeconds: 3600
    windows:
    - {days: [Mon, Tue, Wed, Thu, Fri], start: "09:00", end: "17:00"}
    - {days: [Sat], start: "22:00", end: "01:00"}
    - {days: [Sun], start: "02:30", end: "04:00"}
- name: owned
  match: {namespaces: ["team-*"]}
  approvers: {emails: [lead@example.com], namespaceOwners: true}
- name: pair
  match: {namespaces: ["pair-*"]}
  approvers: {emails: [Ann@example.com, ben@example.com]}
  approvalsRequired: 2
- name: owners-only
  match: {namespaces: ["own-*"]}
  approvers: {namespaceOwners: true}
  autoApprove: {groups: [bots], maxTtlSeconds: 600}
  breakGlass: {groups: [oncall], maxTtlSeconds: 1800}
"#;

    fn config() -> Config {
        Config::from_yaml(CONFIG, "test").unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        crate::rules::time::parse_time(s).unwrap()
    }

    fn ns(name: &str) -> NamespaceInfo {
        NamespaceInfo {
            name: name.into(),
            ..Default::default()
        }
    }

    fn labelled(name: &str, labels: &[(&str, &str)]) -> NamespaceInfo {
        NamespaceInfo {
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..ns(name)
        }
    }

    fn owned(name: &str, owners: &str) -> NamespaceInfo {
        NamespaceInfo {
            annotations: [(APPROVERS_ANNOTATION.to_string(), owners.to_string())].into(),
            ..ns(name)
        }
    }

    fn entry(by: &str, groups: &[&str], ttl: Option<i64>) -> ApprovalEntry {
        ApprovalEntry {
            by: by.into(),
            at: "2026-03-02T10:00:00Z".into(),
            ttl_seconds: ttl,
            comment: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// One request and what evaluating it must give.
    struct Case {
        what: &'static str,
        cluster: &'static str,
        requester: &'static str,
        groups: &'static [&'static str],
        namespaces: Vec<NamespaceInfo>,
        ttl: i64,
        reason: &'static str,
        created: &'static str,
        start_at: Option<&'static str>,
        break_glass: bool,
        legacy: Option<(&'static str, Option<i64>)>,
        approvals: Vec<ApprovalEntry>,
        expect: Expect,
    }

    #[derive(Debug)]
    enum Expect {
        /// Invalid, the message containing this.
        Invalid(&'static str),
        /// Pending under the policy, with these counted approvers and namespaces missing an owner.
        Pending(&'static str, &'static [&'static str], &'static [&'static str]),
        /// Approved under the policy, this way, with these counted approvers.
        Approved(&'static str, ApprovedVia, &'static [&'static str]),
    }

    fn base() -> Case {
        Case {
            what: "",
            cluster: "staging",
            requester: "dev@example.com",
            groups: &[],
            namespaces: vec![ns("app")],
            ttl: 3600,
            reason: "debugging OPS-1",
            // A Monday, 11:00 in Berlin.
            created: "2026-03-02T10:00:00Z",
            start_at: None,
            break_glass: false,
            legacy: None,
            approvals: vec![],
            expect: Expect::Pending("default", &[], &[]),
        }
    }

    fn run(config: &Config, c: &Case) {
        let mut spec = AccessRequestSpec::new(
            c.requester,
            c.cluster,
            c.namespaces.iter().map(|n| n.name.clone()).collect(),
            c.reason,
            c.ttl,
        );
        spec.requester_groups = c.groups.iter().map(|g| g.to_string()).collect();
        spec.approval = c.legacy.map(|(by, ttl)| Approval {
            by: by.into(),
            at: "2026-03-02T10:00:00Z".into(),
            ttl_seconds: ttl,
        });
        spec.approvals = c.approvals.clone();
        spec.start_at = c.start_at.map(str::to_owned);
        spec.break_glass = c.break_glass.then(|| BreakGlass { at: c.created.into() });
        let facts = RequestFacts::of(&spec, &c.namespaces, t(c.created));
        let verdict = evaluate(config, &spec, &facts);
        let governed = govern(config, &facts).map(|g| g.name);
        let strs = |v: &[String]| v.to_vec();
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match (&c.expect, &verdict) {
            (Expect::Invalid(want), Verdict::Invalid(msg)) => assert!(msg.contains(want), "{}: {msg}", c.what),
            (Expect::Pending(policy, counted, missing), Verdict::Pending(tally)) => {
                assert_eq!(governed.as_deref(), Ok(*policy), "{}", c.what);
                assert_eq!(strs(&tally.counted), own(counted), "{}: {tally:?}", c.what);
                assert_eq!(strs(&tally.missing_owners), own(missing), "{}: {tally:?}", c.what);
            }
            (Expect::Approved(policy, via, counted), Verdict::Approved { via: got, tally }) => {
                assert_eq!(governed.as_deref(), Ok(*policy), "{}", c.what);
                assert_eq!(got, via, "{}", c.what);
                assert_eq!(strs(&tally.counted), own(counted), "{}", c.what);
            }
            (want, got) => panic!("{}: expected {want:?}, got {got:?}", c.what),
        }
    }

    #[test]
    fn the_policy_function_over_a_table_of_cases() {
        let cfg = config();
        let pay = || labelled("payments-api", &[("team", "payments")]);
        let cases = vec![
            // Matching order and globs.
            Case {
                what: "no policy matches: the default (admins by email or group, one approval)",
                approvals: vec![entry("x@example.com", &["platform"], None)],
                expect: Expect::Approved("default", ApprovedVia::Quorum, &["x@example.com"]),
                ..base()
            },
            Case {
                what: "the default counts k8s-janus:admins and adminEmails in any case",
                approvals: vec![entry("ADMIN@example.com", &[], None)],
                expect: Expect::Approved("default", ApprovedVia::Quorum, &["admin@example.com"]),
                ..base()
            },
            Case {
                what: "the default: someone who is no admin does not count",
                approvals: vec![entry("mallory@example.com", &["devs"], None)],
                expect: Expect::Pending("default", &[], &[]),
                ..base()
            },
            Case {
                what: "cluster glob prod-*: two of the named approvers are needed",
                cluster: "prod-eu",
                approvals: vec![entry("alice@example.com", &[], None)],
                expect: Expect::Pending("prod", &["alice@example.com"], &[]),
                ..base()
            },
            Case {
                what: "cluster glob prod-*: a group approver completes the quorum",
                cluster: "prod-eu",
                approvals: vec![
                    entry("alice@example.com", &[], None),
                    entry("zed@example.com", &["sre"], None),
                ],
                expect: Expect::Approved("prod", ApprovedVia::Quorum, &["alice@example.com", "zed@example.com"]),
                ..base()
            },
            Case {
                what: "quorum: a duplicate, an ineligible person and the requester do not count",
                cluster: "prod-eu",
                requester: "bob@example.com",
                approvals: vec![
                    entry("alice@example.com", &[], None),
                    entry("Alice@Example.com", &["sre"], None),
                    entry("mallory@example.com", &["devs"], None),
                    entry("bob@example.com", &["sre"], None),
                ],
                expect: Expect::Pending("prod", &["alice@example.com"], &[]),
                ..base()
            },
            Case {
                what: "first match wins: prod is listed before payments",
                cluster: "prod-eu",
                namespaces: vec![pay()],
                expect: Expect::Pending("prod", &[], &[]),
                ..base()
            },
            Case {
                what: "namespace glob and label selector",
                namespaces: vec![pay()],
                approvals: vec![entry("pl@example.com", &["payments-leads"], None)],
                expect: Expect::Approved("payments", ApprovedVia::Quorum, &["pl@example.com"]),
                ..base()
            },
            Case {
                what: "the selector does not hold without the label: default",
                namespaces: vec![ns("payments-api")],
                expect: Expect::Pending("default", &[], &[]),
                ..base()
            },
            Case {
                what: "matchExpressions NotIn excludes the sandbox tier",
                namespaces: vec![labelled("payments-api", &[("team", "payments"), ("tier", "sandbox")])],
                expect: Expect::Pending("default", &[], &[]),
                ..base()
            },
            Case {
                what: "namespaces under different policies are refused",
                namespaces: vec![pay(), ns("app")],
                expect: Expect::Invalid("payments-api: payments, app: default"),
                ..base()
            },
            Case {
                what: "requester email glob, case-insensitive",
                requester: "Eve@Contractors.Example.com",
                approvals: vec![entry("admin@example.com", &["k8s-janus:admins"], None)],
                expect: Expect::Pending("contractors", &[], &[]),
                ..base()
            },
            // Namespace owners from the annotation.
            Case {
                what: "owners: each annotated namespace needs one of its owners",
                namespaces: vec![
                    owned("team-a", "group:team-a-leads, Ann@Example.com"),
                    owned("team-b", " bob@example.com ,, nonsense "),
                    ns("team-c"),
                ],
                approvals: vec![
                    entry("lead@example.com", &[], None),
                    entry("ann@example.com", &[], None),
                ],
                expect: Expect::Pending("owned", &["lead@example.com", "ann@example.com"], &["team-b"]),
                ..base()
            },
            Case {
                what: "owners: approved once every annotated namespace's owners approved",
                namespaces: vec![
                    owned("team-a", "group:team-a-leads, Ann@Example.com"),
                    owned("team-b", " bob@example.com ,, nonsense "),
                ],
                approvals: vec![
                    entry("x@example.com", &["team-a-leads"], None),
                    entry("bob@example.com", &[], None),
                ],
                expect: Expect::Approved("owned", ApprovedVia::Quorum, &["x@example.com", "bob@example.com"]),
                ..base()
            },
            Case {
                what: "owners: the requester cannot satisfy their own namespace",
                requester: "ann@example.com",
                namespaces: vec![owned("team-a", "ann@example.com, zoe@example.com")],
                approvals: vec![
                    entry("ann@example.com", &[], None),
                    entry("lead@example.com", &[], None),
                ],
                expect: Expect::Pending("owned", &["lead@example.com"], &["team-a"]),
                ..base()
            },
            // A quorum nobody can reach is refused at once, not left pending until it expires.
            Case {
                what: "unreachable: the owners annotation names only the requester",
                requester: "Ann@Example.com",
                namespaces: vec![owned("team-a", "ann@example.com")],
                expect: Expect::Invalid(
                    "nobody can approve this request: the owners of namespace team-a \
                     (k8s-janus.opsmode.io/approvers) are only the requester",
                ),
                ..base()
            },
            Case {
                what: "reachable: the requester's namespace also names a group of owners",
                requester: "ann@example.com",
                namespaces: vec![owned("team-a", "ann@example.com, group:team-a-leads")],
                expect: Expect::Pending("owned", &[], &["team-a"]),
                ..base()
            },
            Case {
                what: "unreachable: 2 of 2 named emails, one of them the requester",
                requester: " ANN@example.com",
                namespaces: vec![ns("pair-a")],
                expect: Expect::Invalid(
                    "nobody can approve this request: policy pair needs 2 distinct approvers and names only 1 \
                     besides the requester (ben@example.com)",
                ),
                ..base()
            },
            Case {
                what: "reachable: 2 of 2 named emails, neither the requester",
                namespaces: vec![ns("pair-a")],
                approvals: vec![entry("ben@example.com", &[], None)],
                expect: Expect::Pending("pair", &["ben@example.com"], &[]),
                ..base()
            },
            Case {
                what: "unreachable: only namespace owners approve, and the namespace names none",
                namespaces: vec![owned("own-a", "carl@example.com"), ns("own-b")],
                expect: Expect::Invalid(
                    "nobody can approve this request: namespace own-b names no approvers \
                     (k8s-janus.opsmode.io/approvers)",
                ),
                ..base()
            },
            Case {
                what: "unreachable: only namespace owners approve, and the annotation names nobody",
                namespaces: vec![owned("own-a", "nonsense, group:")],
                expect: Expect::Invalid("namespace own-a names no approvers"),
                ..base()
            },
            Case {
                what: "reachable: every namespace names its owners",
                namespaces: vec![owned("own-a", "carl@example.com"), owned("own-b", "group:b-leads")],
                approvals: vec![entry("carl@example.com", &[], None)],
                expect: Expect::Pending("owners-only", &["carl@example.com"], &["own-b"]),
                ..base()
            },
            Case {
                what: "an unreachable quorum does not stop auto-approval",
                groups: &["bots"],
                ttl: 600,
                namespaces: vec![ns("own-b")],
                expect: Expect::Approved("owners-only", ApprovedVia::Auto, &[]),
                ..base()
            },
            Case {
                what: "an unreachable quorum does not stop break-glass",
                groups: &["oncall"],
                ttl: 1800,
                break_glass: true,
                namespaces: vec![ns("own-b")],
                expect: Expect::Approved("owners-only", ApprovedVia::BreakGlass, &[]),
                ..base()
            },
            // One email normalisation: a non-ASCII case difference is still the requester.
            Case {
                what: "the requester never counts, whatever the case of a non-ASCII letter",
                cluster: "prod-eu",
                requester: "Åsa@example.com",
                approvals: vec![
                    entry("åsa@example.com", &["sre"], None),
                    entry("alice@example.com", &[], None),
                ],
                expect: Expect::Pending("prod", &["alice@example.com"], &[]),
                ..base()
            },
            Case {
                what: "owners: an annotation naming nobody adds no requirement",
                namespaces: vec![owned("team-a", "nobody, group:")],
                approvals: vec![entry("lead@example.com", &[], None)],
                expect: Expect::Approved("owned", ApprovedVia::Quorum, &["lead@example.com"]),
                ..base()
            },
            // Older clients' spec.approval.
            Case {
                what: "default: spec.approval by an admin email counts as it always did",
                legacy: Some(("ADMIN@example.com", None)),
                expect: Expect::Approved("default", ApprovedVia::Quorum, &["admin@example.com"]),
                ..base()
            },
            Case {
                what: "default: spec.approval patched in by someone who is not an admin never counts",
                legacy: Some(("someone@example.com", None)),
                expect: Expect::Pending("default", &[], &[]),
                ..base()
            },
            Case {
                what: "default: the requester's own spec.approval without allowSelfApproval does not",
                legacy: Some(("dev@example.com", None)),
                expect: Expect::Pending("default", &[], &[]),
                ..base()
            },
            Case {
                what: "policy: spec.approval is one approval, judged by its email",
                cluster: "prod-eu",
                legacy: Some(("carol@example.com", None)),
                approvals: vec![
                    entry("mallory@example.com", &[], None),
                    entry("bob@example.com", &[], None),
                ],
                expect: Expect::Approved("prod", ApprovedVia::Quorum, &["carol@example.com", "bob@example.com"]),
                ..base()
            },
            // The request's own rules.
            Case {
                what: "reason pattern",
                cluster: "prod-eu",
                reason: "just looking",
                expect: Expect::Invalid("the reason must contain a ticket id such as OPS-1234"),
                ..base()
            },
            Case {
                what: "TTL above the policy's maximum",
                cluster: "prod-eu",
                ttl: 7201,
                expect: Expect::Invalid("longer than policy prod allows (7200s)"),
                ..base()
            },
            Case {
                what: "an approval TTL above the policy's maximum",
                cluster: "prod-eu",
                approvals: vec![
                    entry("alice@example.com", &[], Some(9000)),
                    entry("bob@example.com", &[], Some(8000)),
                ],
                expect: Expect::Invalid("approved duration of 8000s"),
                ..base()
            },
            Case {
                what: "an approval without a TTL stands for the requested one: within the maximum",
                cluster: "prod-eu",
                approvals: vec![
                    entry("alice@example.com", &[], Some(9000)),
                    entry("bob@example.com", &[], None),
                ],
                expect: Expect::Approved("prod", ApprovedVia::Quorum, &["alice@example.com", "bob@example.com"]),
                ..base()
            },
            // Break-glass.
            Case {
                what: "break-glass within its limits activates at once",
                cluster: "prod-eu",
                groups: &["oncall"],
                ttl: 1800,
                break_glass: true,
                expect: Expect::Approved("prod", ApprovedVia::BreakGlass, &[]),
                ..base()
            },
            Case {
                what: "break-glass longer than allowed",
                cluster: "prod-eu",
                groups: &["oncall"],
                ttl: 1801,
                break_glass: true,
                expect: Expect::Invalid("lasts at most 1800s (1801s asked)"),
                ..base()
            },
            Case {
                what: "break-glass by someone not allowed",
                cluster: "prod-eu",
                groups: &["devs"],
                ttl: 600,
                break_glass: true,
                expect: Expect::Invalid("only members of oncall may break glass"),
                ..base()
            },
            Case {
                what: "break-glass under a policy without it",
                groups: &["oncall"],
                break_glass: true,
                expect: Expect::Invalid("policy default does not allow break-glass"),
                ..base()
            },
            // Auto-approval (windows: see the DST test).
            Case {
                what: "auto-approval in its window",
                groups: &["oncall"],
                namespaces: vec![ns("monitoring")],
                expect: Expect::Approved("oncall-readonly", ApprovedVia::Auto, &[]),
                ..base()
            },
            Case {
                what: "auto-approval: TTL above its maximum waits for a person",
                groups: &["oncall"],
                namespaces: vec![ns("monitoring")],
                ttl: 3601,
                expect: Expect::Pending("oncall-readonly", &[], &[]),
                ..base()
            },
            Case {
                what: "auto-approval outside its windows (Monday 18:00 in Berlin)",
                groups: &["oncall"],
                namespaces: vec![ns("monitoring")],
                created: "2026-03-02T17:00:00Z",
                approvals: vec![entry("alice@example.com", &[], None)],
                expect: Expect::Approved("oncall-readonly", ApprovedVia::Quorum, &["alice@example.com"]),
                ..base()
            },
            // The window must contain the start of access: startAt when set.
            Case {
                what: "auto-approval: made in its window, but access starts outside it (Mon 18:00)",
                groups: &["oncall"],
                namespaces: vec![ns("monitoring")],
                start_at: Some("2026-03-02T17:00:00Z"),
                expect: Expect::Pending("oncall-readonly", &[], &[]),
                ..base()
            },
            Case {
                what: "auto-approval: made outside its window (Sun 23:00), access starts in it (Mon 10:00)",
                groups: &["oncall"],
                namespaces: vec![ns("monitoring")],
                created: "2026-03-01T22:00:00Z",
                start_at: Some("2026-03-02T10:00:00+01:00"),
                expect: Expect::Approved("oncall-readonly", ApprovedVia::Auto, &[]),
                ..base()
            },
            Case {
                what: "auto-approval: a startAt already past at creation starts access at creation",
                groups: &["oncall"],
                namespaces: vec![ns("monitoring")],
                created: "2026-03-02T17:00:00Z",
                start_at: Some("2026-03-02T09:00:00Z"),
                expect: Expect::Pending("oncall-readonly", &[], &[]),
                ..base()
            },
            Case {
                what: "a requester outside the requester groups is not governed by that policy",
                groups: &["devs"],
                namespaces: vec![ns("monitoring")],
                expect: Expect::Pending("default", &[], &[]),
                ..base()
            },
        ];
        for c in &cases {
            run(&cfg, c);
        }
    }

    #[test]
    fn self_approval_follows_allow_self_approval_only_under_the_default() {
        let facts_for = |spec: &AccessRequestSpec| spec.clone();
        let mut spec = AccessRequestSpec::new("admin@example.com", "staging", vec!["app".into()], "r", 3600);
        spec.approvals = vec![entry("admin@example.com", &["k8s-janus:admins"], None)];
        let nss = [ns("app")];
        let mut cfg = config();
        let s = facts_for(&spec);
        let facts = RequestFacts::of(&s, &nss, t("2026-03-02T10:00:00Z"));
        assert!(matches!(evaluate(&cfg, &spec, &facts), Verdict::Pending(_)));
        let g = govern(&cfg, &facts).unwrap();
        assert_eq!(
            g.eligibility("admin@example.com", "ADMIN@example.com", &[]),
            Err(Ineligible::Requester)
        );
        cfg.allow_self_approval = true;
        assert!(matches!(
            evaluate(&cfg, &spec, &facts),
            Verdict::Approved {
                via: ApprovedVia::Quorum,
                ..
            }
        ));
        // A configured policy never lets the requester count.
        let mut spec = spec.clone();
        spec.cluster = "prod-eu".into();
        spec.requester = "alice@example.com".into();
        spec.reason = "OPS-7".into();
        spec.approvals = vec![
            entry("alice@example.com", &[], None),
            entry("bob@example.com", &[], None),
        ];
        let facts = RequestFacts::of(&spec, &nss, t("2026-03-02T10:00:00Z"));
        let Verdict::Pending(tally) = evaluate(&cfg, &spec, &facts) else {
            panic!("pending expected")
        };
        assert_eq!(tally.counted, ["bob@example.com"]);
        assert_eq!(
            tally.ignored,
            [("alice@example.com".to_string(), Ineligible::Requester)]
        );
        assert_eq!(tally.progress(), "1/2");
    }

    #[test]
    fn governing_settings_come_from_the_policy_or_the_globals() {
        let cfg = config();
        let spec = AccessRequestSpec::new("dev@example.com", "prod-eu", vec!["app".into()], "OPS-1", 3600);
        let nss = [ns("app")];
        let facts = RequestFacts::of(&spec, &nss, t("2026-03-02T10:00:00Z"));
        let g = govern(&cfg, &facts).unwrap();
        assert_eq!(
            (
                g.approvals_required,
                g.max_ttl_seconds,
                g.pending_expiry_seconds,
                g.approval_ttl_options.clone()
            ),
            (2, 7200, 3600, vec![900])
        );
        assert_eq!(
            g.describe_approvers(),
            "members of sre or alice@example.com or bob@example.com or carol@example.com"
        );
        let spec = AccessRequestSpec::new("dev@example.com", "staging", vec!["app".into()], "r", 3600);
        let facts = RequestFacts::of(&spec, &nss, t("2026-03-02T10:00:00Z"));
        let d = govern(&cfg, &facts).unwrap();
        assert_eq!(d.name, DEFAULT_POLICY);
        assert!(d.policy.is_none());
        assert_eq!(
            (
                d.approvals_required,
                d.max_ttl_seconds,
                d.pending_expiry_seconds,
                d.approval_ttl_options.clone()
            ),
            (1, 28800, 86400, vec![900, 3600])
        );
        assert_eq!(d.approver_emails, ["admin@example.com"]);
        assert_eq!(d.approver_groups, ["platform", JANUS_ADMINS_GROUP]);
        assert!(!d.self_approval);
    }

    #[test]
    fn owners_annotations_are_parsed_leniently() {
        let o = parse_owners("ns", "group:payments-leads, alice@example.com");
        assert_eq!(
            (o.groups.as_slice(), o.emails.as_slice()),
            (
                &["payments-leads".to_string()][..],
                &["alice@example.com".to_string()][..]
            )
        );
        let o = parse_owners(
            "ns",
            " ,group: x y ,ALICE@Example.com,alice@example.com, bob, group:, a b@c ,\n",
        );
        assert_eq!(o.groups, ["x y"]);
        assert_eq!(o.emails, ["alice@example.com"]);
        assert_eq!(
            parse_owners("ns", ""),
            NamespaceOwners {
                namespace: "ns".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn label_selectors_follow_kubernetes() {
        // k8s.io/apimachinery/pkg/labels/selector.go, Requirement.Matches: NotIn and DoesNotExist hold for
        // an absent label, In and Exists do not.
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "stage"]},
                {"key": "tier", "operator": "NotIn", "values": ["sandbox"]},
                {"key": "owner", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        let l = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert!(selector_matches(&sel, &l(&[("env", "prod"), ("owner", "x")])));
        assert!(!selector_matches(&sel, &l(&[("env", "dev"), ("owner", "x")])));
        assert!(!selector_matches(&sel, &l(&[("owner", "x")])));
        assert!(!selector_matches(
            &sel,
            &l(&[("env", "prod"), ("owner", "x"), ("tier", "sandbox")])
        ));
        assert!(!selector_matches(&sel, &l(&[("env", "prod")])));
        assert!(!selector_matches(
            &sel,
            &l(&[("env", "prod"), ("owner", "x"), ("legacy", "")])
        ));
    }

    #[test]
    fn windows_are_local_wall_time_across_dst_changes() {
        let cfg = config();
        let auto = cfg.policies[3].auto_approve.as_ref().unwrap();
        let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let inside = |at: &str| auto.windows.iter().any(|w| window_contains(w, tz, t(at)));
        for (at, want, why) in [
            // Friday 2026-03-27, CET (+01:00).
            ("2026-03-27T08:00:00Z", true, "Fri 09:00 CET opens"),
            ("2026-03-27T07:59:59Z", false, "Fri 08:59:59 CET"),
            ("2026-03-27T15:59:59Z", true, "Fri 16:59:59 CET"),
            ("2026-03-27T16:00:00Z", false, "Fri 17:00 CET closes"),
            // Monday 2026-03-30, CEST (+02:00) since Sunday: the same wall times, other UTC instants.
            ("2026-03-30T07:00:00Z", true, "Mon 09:00 CEST"),
            ("2026-03-30T07:30:00Z", true, "Mon 09:30 CEST (08:30 under CET)"),
            ("2026-03-30T15:30:00Z", false, "Mon 17:30 CEST (16:30 under CET)"),
            ("2026-03-30T06:59:00Z", false, "Mon 08:59 CEST"),
            // Sunday 2026-03-29: 02:00 CET jumps to 03:00 CEST; the Sunday window starts at 02:30,
            // which does not exist that day: it opens at 03:00.
            ("2026-03-29T00:59:59Z", false, "Sun 01:59:59 CET"),
            (
                "2026-03-29T01:00:00Z",
                true,
                "Sun 03:00 CEST, first wall time after 02:30",
            ),
            ("2026-03-29T01:59:59Z", true, "Sun 03:59:59 CEST"),
            ("2026-03-29T02:00:00Z", false, "Sun 04:00 CEST closes"),
            // Sunday 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:00–03:00 happens twice, and
            // both times 02:30–03:00 are inside the window.
            ("2026-10-25T00:29:00Z", false, "Sun 02:29 CEST"),
            ("2026-10-25T00:30:00Z", true, "Sun 02:30 CEST"),
            (
                "2026-10-25T01:00:00Z",
                false,
                "Sun 02:00 CET, the repeated hour before 02:30",
            ),
            ("2026-10-25T01:30:00Z", true, "Sun 02:30 CET, the repeated 02:30"),
            ("2026-10-25T02:59:59Z", true, "Sun 03:59:59 CET"),
            ("2026-10-25T03:00:00Z", false, "Sun 04:00 CET closes"),
            // Saturday 22:00 to Sunday 01:00 (past midnight): belongs to Saturday.
            ("2026-10-24T19:59:59Z", false, "Sat 21:59:59 CEST"),
            ("2026-10-24T20:00:00Z", true, "Sat 22:00 CEST"),
            ("2026-10-24T22:59:59Z", true, "Sun 00:59:59 CEST, Saturday's window"),
            ("2026-10-24T23:00:00Z", false, "Sun 01:00 CEST closes"),
            ("2026-03-28T23:30:00Z", true, "Sun 00:30 CET, Saturday's window"),
            ("2026-10-23T21:00:00Z", false, "Fri 23:00: only Saturday opens at 22:00"),
        ] {
            assert_eq!(inside(at), want, "{why} ({at})");
        }
        // The same through the policy function: auto-approval is judged at creation.
        let spec = AccessRequestSpec::new("o@example.com", "staging", vec!["monitoring".into()], "r", 600);
        let mut spec = spec;
        spec.requester_groups = vec!["oncall".into()];
        let nss = [ns("monitoring")];
        for (at, want) in [("2026-03-30T07:30:00Z", true), ("2026-03-30T15:30:00Z", false)] {
            let facts = RequestFacts::of(&spec, &nss, t(at));
            let g = govern(&cfg, &facts).unwrap();
            assert_eq!(g.auto_approval(&facts, &cfg).is_ok(), want, "{at}");
        }
        let facts = RequestFacts::of(&spec, &nss, t("2026-03-30T15:30:00Z"));
        let why = govern(&cfg, &facts).unwrap().auto_approval(&facts, &cfg).unwrap_err();
        assert!(
            why.contains("within its time windows (Mon,Tue,Wed,Thu,Fri 09:00-17:00"),
            "{why}"
        );
    }

    #[test]
    fn hh_mm_and_days() {
        assert_eq!(parse_hhmm("09:05"), NaiveTime::from_hms_opt(9, 5, 0));
        assert_eq!(parse_hhmm("24:00"), NaiveTime::from_hms_opt(0, 0, 0));
        for bad in ["9:00", "09:0", "24:01", "25:00", "09:60", "0900", "+9:00", "", "ab:cd"] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
        assert_eq!(parse_day("Mon"), Some(Weekday::Mon));
        assert_eq!(parse_day("Sun"), Some(Weekday::Sun));
        // Exactly as the chart's schema allows (enum Mon … Sun).
        for bad in ["mon", "MON", "Sunday", "Mo", " Mon", ""] {
            assert_eq!(parse_day(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_window_to_24_00_runs_to_the_end_of_the_day() {
        let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let day = TimeWindow {
            days: vec!["Sun".into()],
            start: "00:00".into(),
            end: "24:00".into(),
        };
        assert_eq!(window_minutes(&day), Some((0, 1440)));
        for (at, want, why) in [
            ("2026-03-07T22:59:59Z", false, "Sat 23:59:59 CET"),
            ("2026-03-07T23:00:00Z", true, "Sun 00:00 CET"),
            ("2026-03-08T22:59:59Z", true, "Sun 23:59:59 CET"),
            ("2026-03-08T23:00:00Z", false, "Mon 00:00 CET"),
        ] {
            assert_eq!(window_contains(&day, tz, t(at)), want, "{why}");
        }
        let evening = TimeWindow {
            start: "22:00".into(),
            ..day.clone()
        };
        assert!(window_contains(&evening, tz, t("2026-03-08T22:59:59Z")), "Sun 23:59:59");
        assert!(!window_contains(&evening, tz, t("2026-03-08T23:00:00Z")), "Mon 00:00");
        // No length: never (refused at start-up).
        let empty = TimeWindow {
            start: "24:00".into(),
            ..day
        };
        assert!(!window_contains(&empty, tz, t("2026-03-08T12:00:00Z")));
    }

    #[test]
    fn globs_are_compiled_once() {
        let a = cached_glob("prod-{eu,us}-*", false).unwrap();
        let b = cached_glob("prod-{eu,us}-*", false).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the second lookup compiled the glob again");
        assert!(a.is_match("prod-eu-1") && !a.is_match("prod-ap-1"));
        assert!(!Arc::ptr_eq(&a, &cached_glob("prod-{eu,us}-*", true).unwrap()));
        assert!(cached_glob("prod-[", false).is_none());
        assert!(
            any_glob(&["prod-[".into()], "prod-[", false),
            "an invalid glob matches itself"
        );
    }

    #[test]
    fn reason_patterns_are_compiled_once_and_errors_are_kept() {
        let a = reason_regex(r"^OPS-\d+").unwrap();
        assert!(a.is_match("OPS-12") && !a.is_match("x OPS-12"));
        assert!(reason_regex("(").unwrap_err().contains("does not compile"));
        assert!(reason_regex("(").is_err(), "a cached failure stays a failure");
    }

    /// `match.roles` decides which policy governs; `allowedRoles` refuses a governed request whose role
    /// it does not list (not passing it on to a later policy), with a message naming both.
    #[test]
    fn roles_select_policies_and_allowed_roles_refuse_others() {
        let cfg = Config::from_yaml(
            r#"
adminEmails: [admin@example.com]
policies:
- name: logs-auto
  match: {namespaces: [shop], roles: [logs]}
  approvers: {emails: [alice@example.com]}
  autoApprove: {}
- name: contractors
  match: {requesterEmails: ["*@contractors.example.com"]}
  approvers: {emails: [alice@example.com]}
  allowedRoles: [logs]
- name: shop
  match: {namespaces: [shop]}
  approvers: {emails: [alice@example.com, bob@example.com]}
  approvalsRequired: 2
  allowedRoles: [exec, logs]
"#,
            "t",
        )
        .unwrap();
        let verdict = |requester: &str, role: Option<&str>, namespace: &str| {
            let mut spec = AccessRequestSpec::new(requester, "staging", vec![namespace.into()], "r", 3600);
            spec.role = role.map(str::to_owned);
            let nss = [ns(namespace)];
            let facts = RequestFacts::of(&spec, &nss, t("2026-03-02T10:00:00Z"));
            assert_eq!(facts.role, spec.role_name());
            let governed = govern(&cfg, &facts).map(|g| g.name);
            (governed.unwrap(), evaluate(&cfg, &spec, &facts))
        };
        // A logs request in shop is governed by logs-auto (match.roles) and auto-approved.
        let (p, v) = verdict("dev@example.com", Some("logs"), "shop");
        assert_eq!(p, "logs-auto");
        assert!(
            matches!(
                v,
                Verdict::Approved {
                    via: ApprovedVia::Auto,
                    ..
                }
            ),
            "{v:?}"
        );
        // No role is exec: logs-auto does not match; shop governs and allows exec.
        let (p, v) = verdict("dev@example.com", None, "shop");
        assert_eq!(p, "shop");
        assert!(matches!(v, Verdict::Pending(_)), "{v:?}");
        // debug is configured (built-in roles) but shop does not allow it.
        let (p, v) = verdict("dev@example.com", Some("debug"), "shop");
        assert_eq!(p, "shop");
        assert_eq!(
            v,
            Verdict::Invalid("policy shop allows the roles exec, logs; this request asks for debug".into())
        );
        // A contractor asking for a shell (no role: exec) is refused by the first matching policy; the
        // request is not handed on to a later, laxer one.
        let (p, v) = verdict("c@contractors.example.com", None, "app");
        assert_eq!(p, "contractors");
        assert_eq!(
            v,
            Verdict::Invalid("policy contractors allows the roles logs; this request asks for exec".into())
        );
        // A contractor asking for logs is governed as usual.
        let (_, v) = verdict("c@contractors.example.com", Some("logs"), "app");
        assert!(matches!(v, Verdict::Pending(_)), "{v:?}");
        // The default policy allows every role.
        let (p, v) = verdict("dev@example.com", Some("debug"), "app");
        assert_eq!(p, DEFAULT_POLICY);
        assert!(matches!(v, Verdict::Pending(_)), "{v:?}");
        // check_role is the same refusal as a typed error, and allows_role answers the form.
        let spec = AccessRequestSpec::new("c@contractors.example.com", "staging", vec!["app".into()], "r", 3600);
        let nss = [ns("app")];
        let facts = RequestFacts::of(&spec, &nss, t("2026-03-02T10:00:00Z"));
        let g = govern(&cfg, &facts).unwrap();
        assert_eq!(
            g.check_role(&facts),
            Err(PolicyError::RoleNotAllowed {
                policy: "contractors".into(),
                allowed: vec!["logs".into()],
                role: "exec".into()
            })
        );
        assert!(g.allows_role("logs") && !g.allows_role("exec") && !g.allows_role("debug"));
    }

    #[test]
    fn the_conflict_message_names_each_namespace_and_its_policy() {
        let e = PolicyError::Conflict(vec![("a".into(), "prod".into()), ("b".into(), "default".into())]);
        assert_eq!(
            e.to_string(),
            "the namespaces fall under different approval policies (a: prod, b: default); request them separately"
        );
        assert_eq!(
            Ineligible::NotAnApprover { policy: "prod".into() }.to_string(),
            "not an approver of policy prod"
        );
    }
}
