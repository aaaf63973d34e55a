//! The records the store reads and writes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an audit event is about. The string forms (`as_str`) are what is stored and exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// An AccessRequest was created.
    RequestCreated,
    /// A request became approved: by its approvals (a quorum under a policy), by auto-approval or by
    /// break-glass; details say how (`via`) and carry the TTL.
    RequestApproved,
    /// One approval written into `spec.approvals` (details carry the comment, TTL and groups).
    ApprovalGiven,
    /// An approval the controller does not count (not an eligible approver, the requester, a
    /// duplicate): details carry why. A direct CRD patch by a non-approver shows up here.
    ApprovalIgnored,
    /// The policy's auto-approval rule approved the request without a person.
    AutoApproved,
    /// The requester activated access at once under the policy's break-glass rule.
    BreakGlassActivated,
    /// An approver reviewed (acknowledged) a break-glass activation.
    BreakGlassReviewed,
    /// The request was approved ahead of its `startAt`; access begins then.
    RequestScheduled,
    /// A request was denied, by an admin or by the controller's validation.
    RequestDenied,
    /// The requester withdrew the request.
    RequestWithdrawn,
    /// Active access was taken back early (by an admin or the idle timeout).
    RequestRevoked,
    /// An admin granted more time.
    RequestExtended,
    /// Credentials were issued and work.
    RequestActivated,
    /// Access ran out.
    RequestExpired,
    /// Credentials could not be issued, or a live request no longer passes the configuration's rules.
    RequestFailed,
    /// The spec of an approved request changed (requester, cluster, namespaces, TTL or the approval);
    /// the controller ended it. Details name the fields, with the approved and the observed values.
    RequestSpecChanged,
    /// Every credential of a finished request is gone.
    CredentialsRemoved,
    /// Nobody decided within the pending timeout; the controller denied the request.
    PendingAutoDenied,
    /// The AccessRequest object was deleted (by retention or by someone).
    RequestDeleted,
    /// A browser terminal session started.
    SessionOpened,
    /// A browser terminal session ended (details carry the reason).
    SessionClosed,
    /// A terminal session's recording reached a size limit (details say which: output or input).
    RecordingTruncated,
    /// The server ended a container log stream (details carry the reason, e.g. the user signed out).
    LogStreamClosed,
    /// A debug container was started in a pod with a request's access (`debug` roles).
    DebugContainerStarted,
    /// A debug container was refused: its image is not in the role's `debugImages`.
    DebugImageRefused,
    /// A login succeeded.
    LoginSucceeded,
    /// A login failed.
    LoginFailed,
    /// Repeated failed logins locked a client address out of an account, or the whole account.
    LoginLocked,
    /// A local user account was created.
    UserCreated,
    /// A local user account was changed.
    UserChanged,
    /// A local user account was deleted.
    UserDeleted,
    /// A cluster was registered.
    ClusterRegistered,
    /// A cluster was removed.
    ClusterRemoved,
    /// A personal API token was created (details: its display id, name, scopes, expiry; never the token).
    ApiTokenCreated,
    /// A personal API token was used from an address it had not been used from before.
    ApiTokenNewAddress,
    /// A personal API token was revoked (by its owner or an admin).
    ApiTokenRevoked,
    /// A CLI session was started (`janus login`, by password or the OIDC device flow).
    CliLogin,
}

impl AuditKind {
    /// Every kind, in catalogue order.
    pub const ALL: &'static [AuditKind] = &[
        AuditKind::RequestCreated,
        AuditKind::RequestApproved,
        AuditKind::ApprovalGiven,
        AuditKind::ApprovalIgnored,
        AuditKind::AutoApproved,
        AuditKind::BreakGlassActivated,
        AuditKind::BreakGlassReviewed,
        AuditKind::RequestScheduled,
        AuditKind::RequestDenied,
        AuditKind::RequestWithdrawn,
        AuditKind::RequestRevoked,
        AuditKind::RequestExtended,
        AuditKind::RequestActivated,
        AuditKind::RequestExpired,
        AuditKind::RequestFailed,
        AuditKind::RequestSpecChanged,
        AuditKind::CredentialsRemoved,
        AuditKind::PendingAutoDenied,
        AuditKind::RequestDeleted,
        AuditKind::SessionOpened,
        AuditKind::SessionClosed,
        AuditKind::RecordingTruncated,
        AuditKind::LogStreamClosed,
        AuditKind::DebugContainerStarted,
        AuditKind::DebugImageRefused,
        AuditKind::LoginSucceeded,
        AuditKind::LoginFailed,
        AuditKind::LoginLocked,
        AuditKind::UserCreated,
        AuditKind::UserChanged,
        AuditKind::UserDeleted,
        AuditKind::ClusterRegistered,
        AuditKind::ClusterRemoved,
        AuditKind::ApiTokenCreated,
        AuditKind::ApiTokenNewAddress,
        AuditKind::ApiTokenRevoked,
        AuditKind::CliLogin,
    ];

    /// The stored form, e.g. `request.approved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::RequestCreated => "request.created",
            AuditKind::RequestApproved => "request.approved",
            AuditKind::ApprovalGiven => "request.approval_given",
            AuditKind::ApprovalIgnored => "request.approval_ignored",
            AuditKind::AutoApproved => "request.auto_approved",
            AuditKind::BreakGlassActivated => "request.break_glass",
            AuditKind::BreakGlassReviewed => "request.break_glass_reviewed",
            AuditKind::RequestScheduled => "request.scheduled",
            AuditKind::RequestDenied => "request.denied",
            AuditKind::RequestWithdrawn => "request.withdrawn",
            AuditKind::RequestRevoked => "request.revoked",
            AuditKind::RequestExtended => "request.extended",
            AuditKind::RequestActivated => "request.activated",
            AuditKind::RequestExpired => "request.expired",
            AuditKind::RequestFailed => "request.failed",
            AuditKind::RequestSpecChanged => "request.spec_changed",
            AuditKind::CredentialsRemoved => "request.credentials_removed",
            AuditKind::PendingAutoDenied => "request.auto_denied",
            AuditKind::RequestDeleted => "request.deleted",
            AuditKind::SessionOpened => "session.opened",
            AuditKind::SessionClosed => "session.closed",
            AuditKind::RecordingTruncated => "session.recording_truncated",
            AuditKind::LogStreamClosed => "logs.closed",
            AuditKind::DebugContainerStarted => "debug.started",
            AuditKind::DebugImageRefused => "debug.refused",
            AuditKind::LoginSucceeded => "login.succeeded",
            AuditKind::LoginFailed => "login.failed",
            AuditKind::LoginLocked => "login.locked",
            AuditKind::UserCreated => "user.created",
            AuditKind::UserChanged => "user.changed",
            AuditKind::UserDeleted => "user.deleted",
            AuditKind::ClusterRegistered => "cluster.registered",
            AuditKind::ClusterRemoved => "cluster.removed",
            AuditKind::ApiTokenCreated => "token.created",
            AuditKind::ApiTokenNewAddress => "token.new_address",
            AuditKind::ApiTokenRevoked => "token.revoked",
            AuditKind::CliLogin => "login.cli",
        }
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuditKind {
    type Err = crate::StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| crate::StoreError::Invalid(format!("unknown audit event kind {s:?}")))
    }
}

impl Serialize for AuditKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AuditKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An audit event to record. `key` makes recording idempotent: the same key is stored once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    /// Unique, deterministic key (e.g. `<request uid>/request.approved`).
    pub key: String,
    /// What happened.
    pub kind: AuditKind,
    /// When it happened (the real time, not when it was recorded).
    pub at: DateTime<Utc>,
    /// Who did it (an email, or `system` for the controller and retention).
    pub actor: String,
    /// The AccessRequest it concerns.
    pub request: Option<String>,
    /// The cluster it concerns.
    pub cluster: Option<String>,
    /// The namespaces it concerns.
    pub namespaces: Vec<String>,
    /// Kind-specific details (see docs/security.md, "Audit events").
    pub details: serde_json::Value,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// Insertion order; used for keyset pagination.
    pub id: i64,
    /// The idempotency key.
    pub key: String,
    /// The kind's string form (kept as stored, so unknown future kinds still read).
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
    /// Kind-specific details.
    pub details: serde_json::Value,
    /// Its place in the tamper-evident chain (1, 2, 3, …); absent only for an event written by a
    /// replica that is not upgraded yet, until the next insert chains it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// SHA-256 (hex) of its canonical form (docs/security.md, "Tamper-evident audit log").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The hash of the event before it in the chain (64 zeros for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
}

/// Filters for [`crate::Store::audit_events`]. All filters are exact matches; `limit` is clamped to
/// 1..=1000 (0 or less means 100).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Events before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this request.
    pub request: Option<String>,
    /// Only this cluster.
    pub cluster: Option<String>,
    /// Only this kind (string form).
    pub kind: Option<String>,
    /// Page: events with an id below this one (the last id of the previous page).
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// One AccessRequest as history, kept after the object is deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// Object name.
    pub name: String,
    /// Requester email.
    pub requester: String,
    /// Target cluster.
    pub cluster: String,
    /// Namespaces asked for.
    pub namespaces: Vec<String>,
    /// Why.
    pub reason: String,
    /// Duration in effect (the approver's override, else the requested one).
    pub ttl_seconds: i64,
    /// Phase as last observed.
    pub phase: String,
    /// Status message as last observed.
    pub message: String,
    /// Creation time of the object.
    pub created_at: DateTime<Utc>,
    /// Who approved: the approver of `spec.approval`; under a policy the counted approvers (comma
    /// separated), `system:auto-approval` or `system:break-glass`.
    pub approved_by: Option<String>,
    /// Who made the decision that ended it (denial, revocation, withdrawal).
    pub decided_by: Option<String>,
    /// When access ends or ended.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it reached a terminal phase.
    pub ended_at: Option<DateTime<Utc>>,
    /// Latest time known on the object; an older record never overwrites a newer one.
    pub updated_at: DateTime<Utc>,
    /// When the object was deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// The approval policy that governed it (`default` when none matched); `None` until the controller
    /// evaluated it, and for requests recorded before policies existed.
    #[serde(default)]
    pub policy: Option<String>,
    /// Everyone who wrote an approval, in order (`spec.approval` first, then `spec.approvals`), counted
    /// or not.
    #[serde(default)]
    pub approvals: Vec<String>,
    /// Approved by the policy's auto-approval rule.
    #[serde(default)]
    pub auto_approved: bool,
    /// Activated under the policy's break-glass rule.
    #[serde(default)]
    pub break_glass: bool,
    /// Who reviewed the break-glass activation (`None`: not reviewed, or no break-glass).
    #[serde(default)]
    pub break_glass_reviewed_by: Option<String>,
    /// When access was to begin (`spec.startAt`), for scheduled requests.
    #[serde(default)]
    pub start_at: Option<DateTime<Utc>>,
}

/// Filters for [`crate::Store::list_requests`] (newest created first). `limit` is clamped to 1..=1000
/// (0 or less means 100).
#[derive(Debug, Clone, Default)]
pub struct RequestQuery {
    /// Only this requester.
    pub requester: Option<String>,
    /// Only this cluster.
    pub cluster: Option<String>,
    /// Only this phase.
    pub phase: Option<String>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// Page size.
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
}

/// A local account to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name (unique, compared exactly).
    pub username: String,
    /// Email (the identity used in AccessRequests).
    pub email: String,
    /// Admin rights.
    pub is_admin: bool,
    /// Password hash (PHC string); the store never sees a password.
    pub password_hash: String,
}

/// A local account.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Login name.
    pub username: String,
    /// Email.
    pub email: String,
    /// Admin rights.
    pub is_admin: bool,
    /// Disabled accounts cannot log in.
    pub disabled: bool,
    /// Password hash; never serialized.
    #[serde(skip_serializing)]
    pub password_hash: String,
    /// Consecutive failed logins.
    pub failed_logins: i64,
    /// Logins are refused until then.
    pub locked_until: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A change to a local account; `None` leaves a field as it is. A new password hash also clears the
/// failed-login counter and any lockout.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    /// New password hash.
    pub password_hash: Option<String>,
    /// New admin flag.
    pub is_admin: Option<bool>,
    /// New disabled flag.
    pub disabled: Option<bool>,
}

/// A server-side web session. The cookie holds a random id; only its SHA-256 hex is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebSession {
    /// SHA-256 hex of the cookie's id.
    pub id_hash: String,
    /// Email of the user.
    pub subject: String,
    /// Name to show.
    pub display_name: String,
    /// Admin rights at login.
    pub is_admin: bool,
    /// Groups (OIDC/proxy).
    pub groups: Vec<String>,
    /// `local`, `proxy` or `oidc`.
    pub auth: String,
    /// CSRF token bound to the session.
    pub csrf_token: String,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// Last request.
    pub last_seen: DateTime<Utc>,
    /// Absolute expiry (the store returns expired sessions too; callers check, `purge_sessions` removes).
    pub expires_at: DateTime<Utc>,
}

/// A browser terminal session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TerminalSession {
    /// Unique id.
    pub id: String,
    /// AccessRequest used.
    pub request: String,
    /// Email of the user.
    pub user: String,
    /// Cluster.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Container.
    pub container: String,
    /// Web replica serving it.
    pub replica: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended: user, idle, revoked, expired, …
    pub end_reason: Option<String>,
    /// Bytes sent to the browser.
    pub bytes_out: i64,
}

/// One command line typed in a terminal session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CommandLine {
    /// Terminal session.
    pub session_id: String,
    /// When it was entered.
    pub at: DateTime<Utc>,
    /// The line, verbatim.
    pub line: String,
    /// Email of the user (from the session).
    pub user: String,
    /// AccessRequest (from the session).
    pub request: String,
}

/// A saved command for one user and cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct QuickCommand {
    /// Id.
    pub id: i64,
    /// Owner email.
    pub user: String,
    /// Cluster.
    pub cluster: String,
    /// Button label.
    pub label: String,
    /// Command text.
    pub command: String,
}

/// Format of [`crate::Store::audit_export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    /// One JSON object per line.
    #[default]
    Jsonl,
    /// RFC 4180 CSV with a header row; namespaces joined with spaces, details as JSON.
    Csv,
}

impl std::str::FromStr for ExportFormat {
    type Err = crate::StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" | "json" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            other => Err(crate::StoreError::Invalid(format!(
                "unknown export format {other:?} (jsonl or csv)"
            ))),
        }
    }
}
