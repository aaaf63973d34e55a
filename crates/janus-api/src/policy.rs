//! The `policies:` configuration: who approves which requests, how many must, and when access may start
//! without a person (auto-approval, break-glass). Evaluation lives in [`crate::rules::policy`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Namespace annotation naming a namespace's owners, who approve requests for it under a policy with
/// `approvers.namespaceOwners: true`. A comma-separated list of emails and `group:<name>` entries, e.g.
/// `"group:payments-leads, alice@example.com"`.
pub const APPROVERS_ANNOTATION: &str = "k8s-janus.opsmode.io/approvers";

/// The group the web records for a person it judged an admin by means the controller cannot see (a local
/// admin account, `adminGroups`). The default policy's approvers include it; configured policies may name
/// it. The web never takes it from an identity provider.
pub const JANUS_ADMINS_GROUP: &str = "k8s-janus:admins";

/// Name under which the behaviour without a matching policy is shown: admins approve, one approval.
pub const DEFAULT_POLICY: &str = "default";

/// The access role of a request that names none (`spec.role` absent): every request before access
/// roles was an `exec` grant.
pub const DEFAULT_ROLE: &str = "exec";

/// The largest `approvalsRequired`: `spec.approvals` holds at most this many entries (the CRD's
/// `maxItems`), so a larger quorum could never be met.
pub const MAX_APPROVALS_REQUIRED: u32 = 50;

/// The prefix of groups the web reserves for itself: it drops every identity-provider group starting
/// with it and records only [`JANUS_ADMINS_GROUP`], and only with decisions (approvals, reviews), never
/// as a requester's group.
pub const RESERVED_GROUP_PREFIX: &str = "k8s-janus:";

/// Whether `name` is a valid policy name: 1 to 63 characters, letters, digits, `-`, `_` and `.`,
/// starting and ending with a letter or digit (the pattern of the chart's values.schema.json).
pub fn valid_policy_name(name: &str) -> bool {
    let b = name.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    (1..=63).contains(&b.len())
        && b.iter().all(inner)
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// One approval policy. Policies are evaluated in order per requested namespace; the first that matches
/// governs that namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unique name, shown on the request page and recorded in the status (`default` is reserved).
    pub name: String,
    /// What the policy is for, shown to requesters and approvers.
    #[serde(default)]
    pub description: String,
    /// Which requests it governs. Every criterion given must hold; an empty list matches anything.
    #[serde(default, rename = "match")]
    pub matches: PolicyMatch,
    /// Who may approve.
    #[serde(default)]
    pub approvers: Approvers,
    /// Distinct eligible approvals needed (the requester never counts).
    #[serde(default = "one")]
    pub approvals_required: u32,
    /// Longest TTL under this policy, instead of the global `maxTtlSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ttl_seconds: Option<i64>,
    /// TTLs an approver can pick, instead of the global `approvalTtlOptions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_ttl_options: Option<Vec<i64>>,
    /// Pending requests are denied after this long, instead of the global `pendingExpirySeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_expiry_seconds: Option<i64>,
    /// A pattern the request's reason must match (e.g. a ticket id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonRule>,
    /// Approval without a person, under conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve: Option<AutoApprove>,
    /// Immediate activation by given requesters, reviewed afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlassRule>,
    /// The roles (`roles:` names) a request governed by this policy may ask for; empty: any configured
    /// role. Unlike `match.roles` (which only decides whether the policy governs), a request this
    /// policy governs with another role is refused, not passed on to a later policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_roles: Vec<String>,
}

fn one() -> u32 {
    1
}

static EMPTY: Vec<String> = Vec::new();

/// The criteria of a policy. Empty lists match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyMatch {
    /// Cluster names or globs (`prod-*`).
    #[serde(default)]
    pub clusters: Vec<String>,
    /// Namespace names or globs.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// A label selector on the Namespace objects (ANDed with `namespaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Requester emails or globs (`*@contractors.example.com`), case-insensitive.
    #[serde(default)]
    pub requester_emails: Vec<String>,
    /// Requester groups (any of them).
    #[serde(default)]
    pub requester_groups: Vec<String>,
    /// Access roles (`roles:` names; a request without `spec.role` has [`DEFAULT_ROLE`]).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A Kubernetes label selector: `matchLabels` and `matchExpressions`, ANDed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must have exactly these values.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One set-based requirement of a [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` and `NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// Who may approve under a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approvers {
    /// Approvers by email (case-insensitive).
    #[serde(default)]
    pub emails: Vec<String>,
    /// Approvers by group.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Also the owners named by each requested namespace's [`APPROVERS_ANNOTATION`]; a request across
    /// several namespaces then needs an approval from the owners of each.
    #[serde(default)]
    pub namespace_owners: bool,
}

/// A pattern the reason must match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReasonRule {
    /// A regular expression (Rust `regex` syntax) searched in the reason.
    pub pattern: String,
    /// What the pattern asks for, shown in the form (e.g. "a ticket id such as OPS-1234").
    #[serde(default)]
    pub description: String,
}

/// Conditions under which a request is approved without a person. All given conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoApprove {
    /// Requesters in any of these groups qualify.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Requesters with these emails qualify.
    #[serde(default)]
    pub emails: Vec<String>,
    /// Only requests asking for at most this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ttl_seconds: Option<i64>,
    /// Only requests created within one of these weekly windows (in `displayTimezone`); empty: any time.
    #[serde(default)]
    pub windows: Vec<TimeWindow>,
}

/// A weekly time window in `displayTimezone`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeWindow {
    /// Days it opens on: `Mon` … `Sun`; empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// Local opening time, `HH:MM`.
    pub start: String,
    /// Local closing time, `HH:MM` (exclusive); earlier than `start` means the window runs past midnight.
    pub end: String,
}

/// Who may activate at once, and for how long.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakGlassRule {
    /// Requesters in any of these groups may break glass.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Requesters with these emails may break glass.
    #[serde(default)]
    pub emails: Vec<String>,
    /// The longest break-glass access.
    #[serde(default = "default_break_glass_ttl")]
    pub max_ttl_seconds: i64,
}

fn default_break_glass_ttl() -> i64 {
    3600
}

impl PolicyConfig {
    /// Checks one policy against the global settings: every problem that would make it unusable, or
    /// impossible to satisfy, is refused at start-up with the reason instead of leaving requests
    /// pending forever. `Err` is the reason, without the policy's name (see [`validate_policies`]).
    pub fn validate(&self, config: &crate::config::Config) -> Result<(), String> {
        use crate::rules::policy::{compile_glob, parse_day, reason_regex, window_minutes};
        if self.approvals_required == 0 {
            return Err(
                "approvalsRequired is 0; at least one approval is needed (use autoApprove for \
                        approval without a person)"
                    .into(),
            );
        }
        if self.approvals_required > MAX_APPROVALS_REQUIRED {
            return Err(format!(
                "approvalsRequired is {}, but a request holds at most {MAX_APPROVALS_REQUIRED} approvals \
                 (spec.approvals); nobody could satisfy it",
                self.approvals_required
            ));
        }
        // The web never records a `k8s-janus:` group from an identity provider, and records
        // k8s-janus:admins only with an admin's decisions: any other such group can never match.
        let group_lists = [
            ("approvers.groups", &self.approvers.groups, true),
            ("match.requesterGroups", &self.matches.requester_groups, false),
            (
                "autoApprove.groups",
                self.auto_approve.as_ref().map_or(&EMPTY, |a| &a.groups),
                false,
            ),
            (
                "breakGlass.groups",
                self.break_glass.as_ref().map_or(&EMPTY, |b| &b.groups),
                false,
            ),
        ];
        for (field, groups, admins_ok) in group_lists {
            let never =
                |g: &&String| g.starts_with(RESERVED_GROUP_PREFIX) && !(admins_ok && g.as_str() == JANUS_ADMINS_GROUP);
            if let Some(g) = groups.iter().find(never) {
                let recorded = if admins_ok {
                    format!("only {JANUS_ADMINS_GROUP} is recorded, for people the web judged admins")
                } else {
                    format!("{JANUS_ADMINS_GROUP} is recorded only with an admin's decisions, never for a requester")
                };
                return Err(format!(
                    "{field}: {g:?} can never match: the web drops identity-provider groups starting with \
                     {RESERVED_GROUP_PREFIX:?} ({recorded})"
                ));
            }
        }
        let a = &self.approvers;
        if a.emails.is_empty() && a.groups.is_empty() && !a.namespace_owners {
            return Err(
                "names no approvers: set approvers.emails, approvers.groups or approvers.namespaceOwners".into(),
            );
        }
        let mut distinct: Vec<String> = a
            .emails
            .iter()
            .map(|e| crate::rules::policy::normalize_email(e))
            .collect();
        distinct.sort();
        distinct.dedup();
        if a.groups.is_empty() && !a.namespace_owners && distinct.len() < self.approvals_required as usize {
            return Err(format!(
                "approvalsRequired is {} but approvers.emails names only {} distinct approver(s); nobody could \
                 satisfy it",
                self.approvals_required,
                distinct.len()
            ));
        }
        if let Some(e) = a.emails.iter().find(|e| !e.contains('@')) {
            return Err(format!("approvers.emails entry {e:?} is not an email"));
        }
        if let Some(rule) = &self.reason {
            reason_regex(&rule.pattern).map_err(|e| format!("reason.pattern: {e}"))?;
        }
        let m = &self.matches;
        for (field, globs, ci) in [
            ("match.clusters", &m.clusters, false),
            ("match.namespaces", &m.namespaces, false),
            ("match.requesterEmails", &m.requester_emails, true),
        ] {
            for g in globs {
                compile_glob(g, ci).map_err(|e| format!("{field}: {e}"))?;
            }
        }
        // A role the configuration does not list can never be requested (the web and the controller
        // refuse it), so naming one is a typo that would silently never match or never allow.
        for (field, names) in [("match.roles", &m.roles), ("allowedRoles", &self.allowed_roles)] {
            if let Some(r) = names.iter().find(|r| !config.roles.iter().any(|c| &c.name == *r)) {
                return Err(format!(
                    "{field}: unknown role {r:?}; the configured roles are: {}",
                    config
                        .roles
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some((i, r)) = names.iter().enumerate().find(|(i, r)| names[..*i].contains(r)) {
                return Err(format!("{field} lists {r:?} twice (entry {i})"));
            }
        }
        if !m.roles.is_empty()
            && !self.allowed_roles.is_empty()
            && !m.roles.iter().any(|r| self.allowed_roles.contains(r))
        {
            return Err(format!(
                "allowedRoles ({}) allows none of the roles it matches (match.roles: {}); every request it \
                 governs would be refused",
                self.allowed_roles.join(", "),
                m.roles.join(", ")
            ));
        }
        if let Some(sel) = &m.namespace_selector {
            for r in &sel.match_expressions {
                if r.key.is_empty() {
                    return Err("match.namespaceSelector.matchExpressions: a requirement has an empty key".into());
                }
                let needs_values = match r.operator.as_str() {
                    "In" | "NotIn" => true,
                    "Exists" | "DoesNotExist" => false,
                    other => {
                        return Err(format!(
                            "match.namespaceSelector: unknown operator {other:?} for key {:?} (In, NotIn, Exists, \
                             DoesNotExist)",
                            r.key
                        ));
                    }
                };
                if needs_values == r.values.is_empty() {
                    return Err(format!(
                        "match.namespaceSelector: operator {} for key {:?} {}",
                        r.operator,
                        r.key,
                        if needs_values {
                            "needs values"
                        } else {
                            "takes no values"
                        }
                    ));
                }
            }
        }
        let (min, global_max) = (config.min_ttl_seconds, config.max_ttl_seconds);
        if let Some(max) = self.max_ttl_seconds {
            if max > global_max {
                return Err(format!(
                    "maxTtlSeconds ({max}) is above the global maxTtlSeconds ({global_max}); a policy can only \
                     narrow it: raise the global maxTtlSeconds instead"
                ));
            }
            if max < min {
                return Err(format!(
                    "maxTtlSeconds ({max}) is below the global minTtlSeconds ({min})"
                ));
            }
        }
        let max = self.max_ttl_seconds.unwrap_or(global_max);
        if let Some(options) = &self.approval_ttl_options {
            if options.is_empty() {
                return Err("approvalTtlOptions is empty: leave it out to use the global approvalTtlOptions".into());
            }
            if let Some((i, o)) = options.iter().enumerate().find(|(i, o)| options[..*i].contains(o)) {
                return Err(format!("approvalTtlOptions lists {o} twice (entry {i})"));
            }
        }
        for o in self.approval_ttl_options.iter().flatten() {
            if !(min..=max).contains(o) {
                return Err(format!(
                    "approvalTtlOptions entry {o} is outside [minTtlSeconds, maxTtlSeconds] = [{min}, {max}]"
                ));
            }
        }
        if let Some(p) = self.pending_expiry_seconds
            && p < 0
        {
            return Err(format!(
                "pendingExpirySeconds ({p}) must not be negative (0 disables it)"
            ));
        }
        if let Some(bg) = &self.break_glass {
            if bg.groups.is_empty() && bg.emails.is_empty() {
                return Err("breakGlass names nobody: set breakGlass.groups or breakGlass.emails".into());
            }
            if !(min..=max).contains(&bg.max_ttl_seconds) {
                return Err(format!(
                    "breakGlass.maxTtlSeconds ({}) is outside [minTtlSeconds, maxTtlSeconds] = [{min}, {max}]",
                    bg.max_ttl_seconds
                ));
            }
        }
        if let Some(auto) = &self.auto_approve {
            if let Some(t) = auto.max_ttl_seconds
                && t < min
            {
                return Err(format!(
                    "autoApprove.maxTtlSeconds ({t}) is below minTtlSeconds ({min}): no request could qualify"
                ));
            }
            for (i, w) in auto.windows.iter().enumerate() {
                let Some((start, end)) = window_minutes(w) else {
                    return Err(format!(
                        "autoApprove.windows[{i}]: start {:?} and end {:?} must be HH:MM (00:00 to 24:00)",
                        w.start, w.end
                    ));
                };
                if start == end {
                    return Err(format!(
                        "autoApprove.windows[{i}]: start and end are both {}; a window needs a length",
                        w.start
                    ));
                }
                if let Some(d) = w.days.iter().find(|d| parse_day(d).is_none()) {
                    return Err(format!(
                        "autoApprove.windows[{i}]: {d:?} is not a day (Mon, Tue, Wed, Thu, Fri, Sat or Sun)"
                    ));
                }
            }
            if !auto.windows.is_empty() && config.display_timezone.parse::<chrono_tz::Tz>().is_err() {
                return Err(format!(
                    "autoApprove.windows are in displayTimezone, and {:?} is not a known IANA time zone",
                    config.display_timezone
                ));
            }
        }
        Ok(())
    }
}

/// Checks every configured policy ([`PolicyConfig::validate`]) and their names: each is non-empty,
/// unique and not the reserved [`DEFAULT_POLICY`]. `Err` names the policy and the reason.
pub fn validate_policies(config: &crate::config::Config) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (i, p) in config.policies.iter().enumerate() {
        if p.name.trim().is_empty() {
            return Err(format!("policies[{i}] has no name"));
        }
        if !valid_policy_name(&p.name) {
            return Err(format!(
                "policies[{i}]: the name {:?} is not valid: 1 to 63 letters, digits, '-', '_' or '.', starting \
                 and ending with a letter or digit",
                p.name
            ));
        }
        if p.name == DEFAULT_POLICY {
            return Err(format!(
                "policies[{i}]: the name {DEFAULT_POLICY:?} is reserved for the behaviour when no policy matches"
            ));
        }
        if !seen.insert(p.name.as_str()) {
            return Err(format!(
                "policy {:?} is defined twice; policy names must be unique",
                p.name
            ));
        }
        p.validate(config).map_err(|e| format!("policy {:?}: {e}", p.name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// The start-up error for `policies:` holding `policy` (YAML flow mapping), with `globals` before it.
    fn refused(globals: &str, policy: &str) -> String {
        let yaml = format!("{globals}\npolicies:\n- {policy}\n");
        match Config::from_yaml(&yaml, "t") {
            Ok(_) => panic!("accepted: {yaml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_policy_problem_is_a_start_up_error_naming_the_policy() {
        let ok = "{name: p, approvers: {emails: [a@x.io]}}";
        assert!(Config::from_yaml(&format!("policies:\n- {ok}\n"), "t").is_ok());
        for (globals, policy, want) in [
            (
                "",
                "{name: '', approvers: {emails: [a@x.io]}}",
                "policies[0] has no name",
            ),
            (
                "",
                "{name: default, approvers: {emails: [a@x.io]}}",
                "the name \"default\" is reserved",
            ),
            (
                "",
                "{name: p, approvalsRequired: 0, approvers: {emails: [a@x.io]}}",
                "policy \"p\": approvalsRequired is 0",
            ),
            ("", "{name: p}", "policy \"p\": names no approvers"),
            (
                "",
                "{name: p, approvalsRequired: 3, approvers: {emails: [a@x.io, A@x.io, b@x.io]}}",
                "approvalsRequired is 3 but approvers.emails names only 2 distinct approver(s)",
            ),
            (
                "",
                "{name: p, approvers: {emails: [alice]}}",
                "approvers.emails entry \"alice\" is not an email",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, reason: {pattern: 'OPS-(\\d+'}}",
                "policy \"p\": reason.pattern: the reason pattern \"OPS-(\\\\d+\" does not compile",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, match: {clusters: ['prod-[']}}",
                "match.clusters: \"prod-[\" is not a valid glob",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, match: {namespaces: ['{a,b']}}",
                "match.namespaces:",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, match: {requesterEmails: ['[*@x.io']}}",
                "match.requesterEmails:",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, match: {namespaceSelector: {matchExpressions: [{key: t, operator: Equals, values: [a]}]}}}",
                "unknown operator \"Equals\" for key \"t\"",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, match: {namespaceSelector: {matchExpressions: [{key: t, operator: In}]}}}",
                "operator In for key \"t\" needs values",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, match: {namespaceSelector: {matchExpressions: [{key: t, operator: Exists, values: [a]}]}}}",
                "operator Exists for key \"t\" takes no values",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, match: {roles: [admin]}}",
                "policy \"p\": match.roles: unknown role \"admin\"; the configured roles are: exec, logs, debug",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, allowedRoles: [logs, shell]}",
                "policy \"p\": allowedRoles: unknown role \"shell\"; the configured roles are: exec, logs, debug",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, allowedRoles: [logs, logs]}",
                "allowedRoles lists \"logs\" twice (entry 1)",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, match: {roles: [debug, debug]}}",
                "match.roles lists \"debug\" twice",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, match: {roles: [exec, debug]}, allowedRoles: [logs]}",
                "allowedRoles (logs) allows none of the roles it matches (match.roles: exec, debug)",
            ),
            (
                // Only the roles the configuration lists count: with roles: given, the built-in ones
                // not listed are unknown.
                "roles: [{name: ro, clusterRole: view, terminal: logs}]",
                "{name: p, approvers: {emails: [a@x.io]}, allowedRoles: [logs]}",
                "allowedRoles: unknown role \"logs\"; the configured roles are: ro",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, autoApprove: {windows: [{start: '9:00', end: '17:00'}]}}",
                "autoApprove.windows[0]: start \"9:00\" and end \"17:00\" must be HH:MM",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, autoApprove: {windows: [{start: '09:00', end: '09:00'}]}}",
                "a window needs a length",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, autoApprove: {windows: [{days: [Mon, Funday], start: '09:00', end: '17:00'}]}}",
                "\"Funday\" is not a day",
            ),
            (
                "displayTimezone: Mars/Olympus",
                "{name: p, approvers: {emails: [a@x.io]}, autoApprove: {windows: [{start: '09:00', end: '17:00'}]}}",
                "\"Mars/Olympus\" is not a known IANA time zone",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, autoApprove: {maxTtlSeconds: 60}}",
                "autoApprove.maxTtlSeconds (60) is below minTtlSeconds (600)",
            ),
            (
                "maxTtlSeconds: 28800",
                "{name: p, approvers: {emails: [a@x.io]}, maxTtlSeconds: 28801}",
                "maxTtlSeconds (28801) is above the global maxTtlSeconds (28800); a policy can only narrow it: raise the global maxTtlSeconds instead",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, maxTtlSeconds: 599}",
                "maxTtlSeconds (599) is below the global minTtlSeconds (600)",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, maxTtlSeconds: 3600, approvalTtlOptions: [600, 7200]}",
                "approvalTtlOptions entry 7200 is outside [minTtlSeconds, maxTtlSeconds] = [600, 3600]",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, approvalTtlOptions: [60]}",
                "approvalTtlOptions entry 60",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, breakGlass: {maxTtlSeconds: 900}}",
                "breakGlass names nobody",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, maxTtlSeconds: 3600, breakGlass: {groups: [oncall], maxTtlSeconds: 7200}}",
                "breakGlass.maxTtlSeconds (7200) is outside [minTtlSeconds, maxTtlSeconds] = [600, 3600]",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, breakGlass: {groups: [oncall], maxTtlSeconds: 60}}",
                "breakGlass.maxTtlSeconds (60) is outside",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, pendingExpirySeconds: -1}",
                "pendingExpirySeconds (-1) must not be negative",
            ),
            (
                "",
                "{name: p, approvers: {emails: [a@x.io]}, approver: {emails: [a@x.io]}}",
                "unknown field `approver`",
            ),
        ] {
            let e = refused(globals, policy);
            assert!(e.contains(want), "{policy}: {e}");
        }
        let e = refused("", &format!("{ok}\n- {ok}"));
        assert!(e.contains("policy \"p\" is defined twice"), "{e}");
    }

    #[test]
    fn policies_that_can_never_be_satisfied_or_disagree_with_the_schema_are_refused() {
        for policy in [
            // A quorum above what spec.approvals can hold (maxItems 50).
            "{name: p, approvalsRequired: 51, approvers: {groups: [sre]}}",
            // k8s-janus: groups never reach the controller from an identity provider.
            "{name: p, approvers: {groups: [sre, 'k8s-janus:sre']}}",
            "{name: p, approvers: {groups: [sre]}, match: {requesterGroups: ['k8s-janus:admins']}}",
            "{name: p, approvers: {groups: [sre]}, match: {requesterGroups: ['k8s-janus:devs']}}",
            "{name: p, approvers: {groups: [sre]}, autoApprove: {groups: ['k8s-janus:oncall']}}",
            "{name: p, approvers: {groups: [sre]}, breakGlass: {groups: ['k8s-janus:admins']}}",
            // values.schema.json: days Mon … Sun exactly, approvalTtlOptions minItems 1 and unique,
            // the name pattern and length.
            "{name: p, approvers: {groups: [sre]}, autoApprove: {windows: [{days: [Monday], start: '09:00', end: '17:00'}]}}",
            "{name: p, approvers: {groups: [sre]}, autoApprove: {windows: [{days: [mon], start: '09:00', end: '17:00'}]}}",
            "{name: p, approvers: {groups: [sre]}, autoApprove: {windows: [{days: [' Mon'], start: '09:00', end: '17:00'}]}}",
            "{name: p, approvers: {groups: [sre]}, approvalTtlOptions: []}",
            "{name: p, approvers: {groups: [sre]}, approvalTtlOptions: [900, 900]}",
            "{name: 'prod eu', approvers: {groups: [sre]}}",
            "{name: -prod, approvers: {groups: [sre]}}",
            "{name: prod., approvers: {groups: [sre]}}",
            "{name: prod/eu, approvers: {groups: [sre]}}",
            "{name: abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl, approvers: {groups: [sre]}}",
            "{name: 'prodé', approvers: {groups: [sre]}}",
        ] {
            let yaml = format!("policies:\n- {policy}\n");
            assert!(Config::from_yaml(&yaml, "t").is_err(), "accepted: {policy}");
        }
        for (policy, want) in [
            (
                "{name: p, approvalsRequired: 51, approvers: {groups: [sre]}}",
                "policy \"p\": approvalsRequired is 51, but a request holds at most 50 approvals",
            ),
            (
                "{name: p, approvers: {groups: ['k8s-janus:sre']}}",
                "approvers.groups: \"k8s-janus:sre\" can never match: the web drops identity-provider groups \
                 starting with \"k8s-janus:\" (only k8s-janus:admins is recorded",
            ),
            (
                "{name: p, approvers: {groups: [sre]}, breakGlass: {groups: ['k8s-janus:admins']}}",
                "breakGlass.groups: \"k8s-janus:admins\" can never match",
            ),
            (
                "{name: p, approvers: {groups: [sre]}, autoApprove: {windows: [{days: [Monday], start: '09:00', end: '17:00'}]}}",
                "\"Monday\" is not a day (Mon, Tue, Wed, Thu, Fri, Sat or Sun)",
            ),
            (
                "{name: p, approvers: {groups: [sre]}, approvalTtlOptions: []}",
                "approvalTtlOptions is empty",
            ),
            (
                "{name: p, approvers: {groups: [sre]}, approvalTtlOptions: [900, 900]}",
                "approvalTtlOptions lists 900 twice",
            ),
            (
                "{name: 'prod eu', approvers: {groups: [sre]}}",
                "policies[0]: the name \"prod eu\" is not valid: 1 to 63 letters",
            ),
            (
                "{name: p, approvers: {groups: [sre]}, autoApprove: {windows: [{start: '24:00', end: '24:00'}]}}",
                "a window needs a length",
            ),
        ] {
            let e = refused("", policy);
            assert!(e.contains(want), "{policy}: {e}");
        }
    }

    #[test]
    fn the_quorum_limit_is_the_crds() {
        // spec.approvals' maxItems in the generated CRD is the limit validation applies.
        use kube::CustomResourceExt as _;
        let crd = serde_json::to_value(crate::AccessRequest::crd()).unwrap();
        let max = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["approvals"]
            ["maxItems"];
        assert_eq!(max.as_u64(), Some(u64::from(super::MAX_APPROVALS_REQUIRED)), "{max}");
    }

    #[test]
    fn satisfiable_policies_are_accepted() {
        for policy in [
            // A quorum over a group, or over namespace owners, is not counted at start-up.
            "{name: p, approvalsRequired: 5, approvers: {groups: [sre]}}",
            "{name: p, approvalsRequired: 2, approvers: {namespaceOwners: true}}",
            "{name: p, approvalsRequired: 2, approvers: {emails: [a@x.io, b@x.io]}}",
            "{name: p, approvers: {emails: [a@x.io]}, autoApprove: {windows: [{days: [Sat, Sun], start: '22:00', end: '24:00'}]}}",
            // The whole day: 24:00 is its end, not 00:00 again.
            "{name: p, approvers: {emails: [a@x.io]}, autoApprove: {windows: [{days: [Sun], start: '00:00', end: '24:00'}]}}",
            // The quorum the CRD can hold; the web records k8s-janus:admins for admins' decisions.
            "{name: p, approvalsRequired: 50, approvers: {groups: [sre, k8s-janus:admins]}}",
            // Names as the chart's schema allows them.
            "{name: a, approvers: {emails: [a@x.io]}}",
            "{name: Prod_EU.2-x, approvers: {emails: [a@x.io]}}",
            "{name: abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk, approvers: {emails: [a@x.io]}}",
            "{name: p, approvers: {emails: [a@x.io]}, match: {namespaceSelector: {matchExpressions: [{key: t, operator: DoesNotExist}]}}}",
            "{name: p, approvers: {emails: [a@x.io]}, maxTtlSeconds: 3600, breakGlass: {emails: [o@x.io], maxTtlSeconds: 3600}}",
            "{name: p, approvers: {emails: [a@x.io]}, match: {roles: [exec], clusters: ['prod-{eu,us}-*']}}",
            "{name: p, approvers: {emails: [a@x.io]}, match: {roles: [logs, debug]}, allowedRoles: [logs]}",
            "{name: p, approvers: {emails: [a@x.io]}, allowedRoles: [exec, logs, debug]}",
        ] {
            let yaml = format!("policies:\n- {policy}\n");
            if let Err(e) = Config::from_yaml(&yaml, "t") {
                panic!("{policy}: {e}");
            }
        }
    }
}
