//! The view model of a request: what the pages render and the JSON API returns, for one identity,
//! including the explanation of its approval policy (which policy, who approves, how far the approval
//! has come, and why this person cannot approve). Every time has a `…Display` twin in
//! `displayTimezone` ([`crate::timefmt`]), so no page shows a raw UTC timestamp.

use janus_api::AccessRequest;
use janus_api::access_request::{Approval, Decision, Denial, Extension, Phase, Revocation};
use janus_api::config::Config;
use janus_api::policy::JANUS_ADMINS_GROUP;
use janus_api::rules::policy::{Governing, NamespaceInfo, PolicyError};
use janus_api::rules::{self, Actions};
use serde::Serialize;

use super::clusters::display_name;
use super::policy as web_policy;
use super::requests::created;
use crate::auth::Identity;
use crate::timefmt;

/// A request as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    /// Object name.
    pub name: String,
    /// Requester email.
    pub requester: String,
    /// Cluster name.
    pub cluster: String,
    /// Cluster display name.
    pub cluster_display_name: String,
    /// Namespaces asked for.
    pub namespaces: Vec<String>,
    /// Why.
    pub reason: String,
    /// Requested TTL.
    pub ttl_seconds: i64,
    /// The TTL in effect: the approver's override, else the requested one.
    pub effective_ttl_seconds: i64,
    /// Current phase.
    pub phase: Phase,
    /// Controller message.
    pub message: String,
    /// Creation time.
    pub created_at: Option<String>,
    /// Human decisions.
    pub approval: Option<Approval>,
    /// Denial.
    pub denial: Option<Denial>,
    /// Revocation.
    pub revocation: Option<Revocation>,
    /// Withdrawal.
    pub withdrawal: Option<Decision>,
    /// Extensions.
    pub extensions: Vec<Extension>,
    /// When the controller saw the approval.
    pub approved_at: Option<String>,
    /// When access started.
    pub active_at: Option<String>,
    /// When access ends.
    pub expires_at: Option<String>,
    /// When the request ended.
    pub ended_at: Option<String>,
    /// Namespaces with live credentials.
    pub granted_namespaces: Vec<String>,
    /// Controller conditions (the timeline).
    pub conditions: Vec<janus_api::access_request::Condition>,
    /// What the caller may do.
    pub actions: Actions,
    /// Whether the caller may acknowledge (review) this break-glass activation now.
    pub acknowledge: bool,
    /// The most seconds an extension may still add (the maximum lifetime under the request's policy, or
    /// its break-glass rule, minus what was granted); none: no bound applies or nothing is active.
    pub extension_room_seconds: Option<i64>,
    /// `createdAt` in `displayTimezone`.
    pub created_at_display: Option<String>,
    /// `approvedAt` in `displayTimezone`.
    pub approved_at_display: Option<String>,
    /// `activeAt` in `displayTimezone`.
    pub active_at_display: Option<String>,
    /// `expiresAt` in `displayTimezone`.
    pub expires_at_display: Option<String>,
    /// `endedAt` in `displayTimezone`.
    pub ended_at_display: Option<String>,
    /// When access is to start (`spec.startAt`, RFC 3339); none: as soon as approved.
    pub start_at: Option<String>,
    /// `startAt` in `displayTimezone`.
    pub start_at_display: Option<String>,
    /// Approved ahead of its start time and waiting for it (phase `Scheduled`).
    pub scheduled: bool,
    /// The approvals given, in order (a legacy `spec.approval` first), each saying whether it counts.
    pub approvals: Vec<ApprovalView>,
    /// The approval policy and where the approval stands, explained for the caller.
    pub policy: PolicyView,
    /// Approved by the policy's auto-approval rule, without a person.
    pub auto_approved: bool,
    /// The requester activated it under the policy's break-glass rule.
    pub break_glass: bool,
    /// When break-glass was asked for (RFC 3339), and in `displayTimezone`.
    pub break_glass_at: Option<String>,
    /// `breakGlassAt` in `displayTimezone`.
    pub break_glass_at_display: Option<String>,
    /// A break-glass activation nobody acknowledged yet.
    pub awaiting_review: bool,
    /// The acknowledgement of a break-glass activation.
    pub break_glass_review: Option<ReviewView>,
    /// The access role asked for (`spec.role`, default `exec`), with what its terminal offers.
    pub role: super::scope::RoleView,
    /// The pod scope as asked for; none: every pod of the namespaces.
    pub pod_scope: Option<janus_api::access_request::PodScope>,
    /// The scope as people read it: "pods of deployment payments-api", "pods with app=checkout"; none:
    /// every pod.
    pub scope: Option<String>,
    /// Per granted namespace, the label selector (Kubernetes syntax) the grant follows, as the controller
    /// resolved it (a workload's own selector).
    pub pod_selectors: std::collections::BTreeMap<String, String>,
    /// Role and scope in one line: "Shell · pods of deployment payments-api", "Logs (read-only) · all pods".
    pub access: String,
}

/// One approval as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalView {
    /// Who approved.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
    /// `at` in `displayTimezone`.
    pub at_display: String,
    /// The duration this approver chose, if any.
    pub ttl_seconds: Option<i64>,
    /// The approver's comment.
    pub comment: String,
    /// The approver's groups as the web recorded them.
    pub groups: Vec<String>,
    /// Whether it counts towards the quorum (false: see `policy.ignored` for why).
    pub counted: bool,
}

/// The acknowledgement of a break-glass activation, as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewView {
    /// Who acknowledged it.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
    /// `at` in `displayTimezone`.
    pub at_display: String,
    /// Their comment.
    pub comment: String,
}

/// Who may approve under a policy.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApproversSummary {
    /// Admins approve (the default policy, or a policy naming `k8s-janus:admins`).
    pub admins: bool,
    /// Approvers by email.
    pub emails: Vec<String>,
    /// Approvers by identity-provider group.
    pub groups: Vec<String>,
    /// Owners named by the namespaces' approvers annotation (with `approvers.namespaceOwners`).
    pub owners: Vec<OwnersView>,
}

/// The owners of one namespace.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnersView {
    /// The namespace.
    pub namespace: String,
    /// Owner emails.
    pub emails: Vec<String>,
    /// Owner groups.
    pub groups: Vec<String>,
}

/// A reason pattern and what it asks for.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReasonHint {
    /// The regular expression the reason must contain a match of.
    pub pattern: String,
    /// What it asks for, e.g. "a ticket id such as OPS-1234".
    pub description: String,
}

/// The approval policy of a request and where its approval stands, for one viewer.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    /// The policy's name (`default`: admins approve, one approval); empty when the namespaces fall under
    /// different policies (`error` says which).
    pub name: String,
    /// What the policy is for.
    pub description: String,
    /// Who may approve.
    pub approvers: ApproversSummary,
    /// Distinct eligible approvals needed.
    pub approvals_required: u32,
    /// Distinct eligible approvals given (the controller's count when it has made one).
    pub approvals_given: u32,
    /// The approvers counted, in order.
    pub approved_by: Vec<String>,
    /// Approvals that do not count, each with why.
    pub ignored: Vec<String>,
    /// Namespaces whose owners have not approved yet.
    pub missing_owners: Vec<String>,
    /// Why the caller cannot approve right now (none: they can, or approving is over).
    pub why_not: Option<String>,
    /// The reason pattern the request had to match.
    pub reason: Option<ReasonHint>,
    /// Longest TTL under the policy.
    pub max_ttl_seconds: i64,
    /// TTLs an approver can pick.
    pub approval_ttl_options: Vec<i64>,
    /// Whether the counts come from the controller (`status.policy`) rather than the web's own reading.
    pub from_controller: bool,
    /// Why the policy cannot be determined (namespaces under different policies).
    pub error: Option<String>,
}

impl PolicyView {
    /// The explanation of `gov` (or its error) for `ar` and the caller `id`.
    pub fn of(gov: &Result<Governing<'_>, PolicyError>, ar: &AccessRequest, id: &Identity) -> Self {
        // Once approving is over, there is nothing to explain to anyone.
        let why_not = if web_policy::open_for_approval(ar) {
            web_policy::approve_refusal(gov, ar, id).map(|r| r.message().to_string())
        } else {
            None
        };
        let mut v = match gov {
            Ok(g) => {
                let tally = g.tally(&ar.spec);
                PolicyView {
                    name: g.name.clone(),
                    description: g.policy.map(|p| p.description.clone()).unwrap_or_default(),
                    approvers: ApproversSummary::of(g),
                    approvals_required: g.approvals_required,
                    approvals_given: u32::try_from(tally.counted.len()).unwrap_or(u32::MAX),
                    approved_by: tally.counted.clone(),
                    ignored: tally.ignored.iter().map(|(who, why)| format!("{who}: {why}")).collect(),
                    missing_owners: tally.missing_owners.clone(),
                    why_not,
                    reason: g.reason.map(|r| ReasonHint {
                        pattern: r.pattern.clone(),
                        description: r.description.clone(),
                    }),
                    max_ttl_seconds: g.max_ttl_seconds,
                    approval_ttl_options: g.approval_ttl_options.clone(),
                    from_controller: false,
                    error: None,
                }
            }
            Err(e) => PolicyView {
                why_not,
                error: Some(e.to_string()),
                ..Default::default()
            },
        };
        // The controller is the authority on the count: prefer what it wrote.
        if let Some(p) = ar.status.as_ref().and_then(|s| s.policy.as_ref()) {
            if v.name.is_empty() {
                v.name = p.name.clone();
            }
            v.approvals_required = p.approvals_required;
            v.approvals_given = p.approvals_given;
            v.approved_by = p.approved_by.clone();
            v.ignored = p.ignored.clone();
            v.from_controller = true;
        }
        v
    }
}

impl ApproversSummary {
    /// Who may approve under `gov`.
    pub fn of(gov: &Governing<'_>) -> Self {
        ApproversSummary {
            admins: gov.approver_groups.iter().any(|g| g == JANUS_ADMINS_GROUP),
            emails: gov.approver_emails.clone(),
            groups: gov
                .approver_groups
                .iter()
                .filter(|g| g.as_str() != JANUS_ADMINS_GROUP)
                .cloned()
                .collect(),
            owners: gov
                .owners
                .iter()
                .map(|o| OwnersView {
                    namespace: o.namespace.clone(),
                    emails: o.emails.clone(),
                    groups: o.groups.clone(),
                })
                .collect(),
        }
    }
}

impl RequestView {
    /// The view of `ar` for `id` under `config`, with the metadata of its namespaces (labels and owners
    /// annotation, in `spec.namespaces` order) for its approval policy.
    pub fn of(config: &Config, id: &Identity, ar: &AccessRequest, namespaces: &[NamespaceInfo]) -> Self {
        let gov = web_policy::governing(config, ar, namespaces);
        Self::with_policy(config, id, ar, &gov)
    }

    /// The view of `ar` for `id` under its governing policy `gov`.
    pub fn with_policy(
        config: &Config,
        id: &Identity,
        ar: &AccessRequest,
        gov: &Result<Governing<'_>, PolicyError>,
    ) -> Self {
        let tz = timefmt::parse_zone(&config.display_timezone).unwrap_or(chrono_tz::UTC);
        let show = |t: &Option<String>| t.as_deref().map(|t| timefmt::format_str(tz, t));
        let st = ar.status.clone().unwrap_or_default();
        let policy = PolicyView::of(gov, ar, id);
        let counted = |by: &str| policy.approved_by.iter().any(|c| c.eq_ignore_ascii_case(by));
        let mut approvals: Vec<ApprovalView> = Vec::new();
        if let Some(a) = &ar.spec.approval {
            approvals.push(ApprovalView {
                by: a.by.clone(),
                at: a.at.clone(),
                at_display: timefmt::format_str(tz, &a.at),
                ttl_seconds: a.ttl_seconds,
                comment: String::new(),
                groups: vec![],
                counted: false,
            });
        }
        approvals.extend(ar.spec.approvals.iter().map(|a| ApprovalView {
            by: a.by.clone(),
            at: a.at.clone(),
            at_display: timefmt::format_str(tz, &a.at),
            ttl_seconds: a.ttl_seconds,
            comment: a.comment.clone(),
            groups: a.groups.clone(),
            counted: false,
        }));
        // A person counts once: their first approval is the one marked.
        let mut seen: Vec<String> = Vec::new();
        for a in &mut approvals {
            let who = a.by.to_ascii_lowercase();
            if counted(&who) && !seen.contains(&who) {
                a.counted = true;
                seen.push(who);
            }
        }
        let created_at = created(ar).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let mut actions = rules::actions::allowed_under(
            super::requests::actor(id),
            &web_policy::id_groups(id),
            ar,
            gov.as_ref().ok(),
            rules::ActionPolicy::of(config),
        );
        // Acknowledging also needs an activation that really happened, and never by the requester.
        let acknowledge = actions.acknowledge && web_policy::why_not_acknowledge(gov, ar, id).is_none();
        actions.acknowledge = acknowledge;
        let auto_approved = st.policy.as_ref().is_some_and(|p| p.auto_approved);
        RequestView {
            name: ar.metadata.name.clone().unwrap_or_default(),
            requester: ar.spec.requester.clone(),
            cluster: ar.spec.cluster.clone(),
            cluster_display_name: display_name(config, &ar.spec.cluster),
            namespaces: ar.spec.namespaces.clone(),
            reason: ar.spec.reason.clone(),
            ttl_seconds: ar.spec.ttl_seconds,
            effective_ttl_seconds: rules::ttl::effective_ttl(&ar.spec),
            phase: st.phase,
            message: st.message.clone(),
            created_at_display: show(&created_at),
            created_at,
            approval: ar.spec.approval.clone(),
            denial: ar.spec.denial.clone(),
            revocation: ar.spec.revocation.clone(),
            withdrawal: ar.spec.withdrawal.clone(),
            extensions: ar.spec.extensions.clone(),
            approved_at_display: show(&st.approved_at),
            approved_at: st.approved_at.clone(),
            active_at_display: show(&st.active_at),
            active_at: st.active_at.clone(),
            expires_at_display: show(&st.expires_at),
            expires_at: st.expires_at.clone(),
            ended_at_display: show(&st.ended_at),
            ended_at: st.ended_at.clone(),
            granted_namespaces: st.grants.iter().map(|g| g.namespace.clone()).collect(),
            conditions: st.conditions.clone(),
            extension_room_seconds: web_policy::extension_room(config, ar),
            actions,
            acknowledge,
            start_at_display: show(&ar.spec.start_at),
            start_at: ar.spec.start_at.clone(),
            scheduled: st.phase == Phase::Scheduled,
            approvals,
            policy,
            auto_approved,
            break_glass: ar.spec.break_glass.is_some(),
            break_glass_at: ar.spec.break_glass.as_ref().map(|b| b.at.clone()),
            break_glass_at_display: ar.spec.break_glass.as_ref().map(|b| timefmt::format_str(tz, &b.at)),
            awaiting_review: web_policy::awaiting_review(ar),
            break_glass_review: ar.spec.break_glass_review.as_ref().map(|r| ReviewView {
                by: r.by.clone(),
                at: r.at.clone(),
                at_display: timefmt::format_str(tz, &r.at),
                comment: r.comment.clone(),
            }),
            role: super::scope::RoleView::named(config, ar.spec.role_name()),
            pod_scope: ar.spec.pod_scope.clone(),
            scope: ar.spec.pod_scope.as_ref().map(janus_api::rules::scope::describe),
            pod_selectors: st
                .grants
                .iter()
                .filter_map(|g| g.pod_selector.clone().map(|s| (g.namespace.clone(), s)))
                .collect(),
            access: access_line(config, ar),
        }
    }
}

/// Role and scope in one line, as every list and page shows them: "Shell · pods of deployment
/// payments-api", "Logs (read-only) · all pods".
pub fn access_line(config: &Config, ar: &AccessRequest) -> String {
    let role = super::scope::RoleView::named(config, ar.spec.role_name());
    let scope = ar
        .spec
        .pod_scope
        .as_ref()
        .map_or_else(|| "all pods".to_string(), janus_api::rules::scope::describe);
    format!("{} · {scope}", role.display_name)
}

/// A page of requests.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListPage {
    /// The requests of the page.
    pub items: Vec<RequestView>,
    /// How many match.
    pub total: usize,
    /// Offset of the page.
    pub offset: usize,
    /// Page size.
    pub limit: usize,
}

/// What a person may decide: pending requests they may approve now, and break-glass activations
/// awaiting their review.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalsView {
    /// Pending requests the caller may approve now (oldest first): an eligible approver of the request's
    /// policy who has not approved it yet. Admins may also deny any pending request from its page.
    pub pending: Vec<RequestView>,
    /// Break-glass activations the caller may acknowledge (oldest first).
    pub awaiting_review: Vec<RequestView>,
    /// Whether the caller approves anything at all (an admin, or named by a policy or a namespace's
    /// owners annotation): the pages show the approvals page to them.
    pub approver: bool,
}

/// What the request form shows before submitting: the policy that would govern a request for these
/// namespaces, and what it means for the caller.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPreview {
    /// The cluster asked about.
    pub cluster: String,
    /// The namespaces asked about.
    pub namespaces: Vec<String>,
    /// The governing policy's name (`default`: admins approve, one approval); empty on a conflict.
    pub policy: String,
    /// What the policy is for.
    pub description: String,
    /// Distinct eligible approvals needed.
    pub approvals_required: u32,
    /// Who may approve.
    pub approvers: ApproversSummary,
    /// Longest TTL under the policy.
    pub max_ttl_seconds: i64,
    /// TTLs an approver can pick.
    pub approval_ttl_options: Vec<i64>,
    /// The reason pattern and what it asks for.
    pub reason: Option<ReasonHint>,
    /// Whether the caller may break glass here (for the TTL asked, else for the rule's longest).
    pub break_glass_allowed: bool,
    /// The longest break-glass access, when the policy has a break-glass rule.
    pub break_glass_max_ttl_seconds: Option<i64>,
    /// Why the caller may not break glass.
    pub break_glass_why_not: Option<String>,
    /// Whether a request by the caller, made now, would be approved without a person.
    pub auto_approval: AutoApprovalPreview,
    /// The namespaces fall under different policies: the message a request would be refused with.
    pub conflict: Option<String>,
    /// The role the preview was evaluated for (`exec` when none was asked).
    pub role: String,
    /// The governing policy's `allowedRoles` refuses that role: the message a request would be refused
    /// with.
    pub role_why_not: Option<String>,
}

/// Whether a request would be auto-approved now.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoApprovalPreview {
    /// Yes, it would.
    pub would_approve: bool,
    /// Why not (the condition that fails; none when the policy has no auto-approval).
    pub why_not: Option<String>,
}
