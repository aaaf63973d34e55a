//! The view model of a request: what the pages render and the JSON API returns, for one identity.

use janus_api::AccessRequest;
use janus_api::access_request::{Approval, Decision, Denial, Extension, Phase, Revocation};
use janus_api::config::Config;
use janus_api::rules::{self, ActionPolicy, Actions};
use serde::Serialize;

use super::clusters::display_name;
use super::requests::{actor, created};
use crate::auth::Identity;

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
}

impl RequestView {
    /// The view of `ar` for `id` under `config` (display names, the action switches).
    pub fn of(config: &Config, id: &Identity, ar: &AccessRequest) -> Self {
        let st = ar.status.clone().unwrap_or_default();
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
            created_at: created(ar).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            approval: ar.spec.approval.clone(),
            denial: ar.spec.denial.clone(),
            revocation: ar.spec.revocation.clone(),
            withdrawal: ar.spec.withdrawal.clone(),
            extensions: ar.spec.extensions.clone(),
            approved_at: st.approved_at.clone(),
            active_at: st.active_at.clone(),
            expires_at: st.expires_at.clone(),
            ended_at: st.ended_at.clone(),
            granted_namespaces: st.grants.iter().map(|g| g.namespace.clone()).collect(),
            conditions: st.conditions.clone(),
            actions: rules::actions::allowed(actor(id), ar, ActionPolicy::of(config)),
        }
    }
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
