//! The janus configuration file (`--config`): the chart's `janus.*` values, clusters, web and database settings.
//!
//! The Helm chart's ConfigMap template is the one place that writes this format; unknown keys are an
//! error so a typo never silently falls back to a default.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// A cluster k8s-janus grants access on. The first entry is the central cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    /// Identifier, used in AccessRequests and to find the kubeconfig Secret.
    pub name: String,
    /// Name shown in the web UI.
    #[serde(default)]
    pub display_name: String,
    /// Kubeconfig Secret name (default `<name>-kubeconfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

impl ClusterConfig {
    /// The kubeconfig Secret of this cluster.
    pub fn kubeconfig_secret(&self) -> String {
        self.secret_name
            .clone()
            .unwrap_or_else(|| format!("{}-kubeconfig", self.name))
    }
}

/// OIDC settings of the web UI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConfig {
    /// Issuer URL.
    pub issuer_url: String,
    /// Client id (the secret comes from `JANUS_OIDC_CLIENT_SECRET`).
    pub client_id: String,
    /// Email domains allowed to log in (empty: any).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Groups whose members are admins.
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// Claim holding the groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
}

fn default_groups_claim() -> String {
    "groups".into()
}

/// How the web UI authenticates people.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Local accounts with argon2 hashes.
    #[default]
    Local,
    /// Trusted headers from an authenticating proxy (oauth2-proxy).
    Proxy,
    /// Native OpenID Connect.
    Oidc,
}

/// Names of the identity headers an authenticating proxy injects in proxy mode (`web.proxyHeaders`).
///
/// Identity comes from these headers only. The defaults are what oauth2-proxy sends upstream with
/// `--pass-user-headers` (and strips from clients by default); see docs/security.md, "Proxy-header
/// contract", for other proxies. An empty name means the proxy sends no such header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyHeaders {
    /// The signed-in person's email (required).
    #[serde(default = "default_proxy_email")]
    pub email: String,
    /// The user name or subject the proxy reports (used to check other identity headers against).
    #[serde(default = "default_proxy_user")]
    pub user: String,
    /// Comma-separated groups.
    #[serde(default = "default_proxy_groups")]
    pub groups: String,
    /// The name to show.
    #[serde(default = "default_proxy_preferred_username")]
    pub preferred_username: String,
}

fn default_proxy_email() -> String {
    "X-Forwarded-Email".into()
}
fn default_proxy_user() -> String {
    "X-Forwarded-User".into()
}
fn default_proxy_groups() -> String {
    "X-Forwarded-Groups".into()
}
fn default_proxy_preferred_username() -> String {
    "X-Forwarded-Preferred-Username".into()
}

impl Default for ProxyHeaders {
    fn default() -> Self {
        Self {
            email: default_proxy_email(),
            user: default_proxy_user(),
            groups: default_proxy_groups(),
            preferred_username: default_proxy_preferred_username(),
        }
    }
}

/// Headers that carry something other than an identity; naming one of them as an identity header is a
/// configuration mistake that could hand identity to whatever sets them.
const NOT_IDENTITY_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "host",
    "origin",
    "proxy-authorization",
    "referer",
    "transfer-encoding",
    "upgrade",
    "x-csrf-token",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

impl ProxyHeaders {
    /// The configured names as `(setting, header)`, lowercased; empty ones are left out.
    pub fn named(&self) -> Vec<(&'static str, String)> {
        [
            ("email", &self.email),
            ("user", &self.user),
            ("groups", &self.groups),
            ("preferredUsername", &self.preferred_username),
        ]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim().to_ascii_lowercase()))
        .collect()
    }

    /// Checks that every name is a valid HTTP header name, the email header is set, no name is used
    /// twice and none is a header with another meaning.
    pub fn validate(&self) -> Result<(), String> {
        if self.email.trim().is_empty() {
            return Err("web.proxyHeaders.email must name the header that carries the email".into());
        }
        let named = self.named();
        for (key, name) in &named {
            // RFC 9110 field names are tokens: visible ASCII without separators.
            let token = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                return Err(format!(
                    "web.proxyHeaders.{key}: {name:?} is not a valid HTTP header name"
                ));
            }
            if NOT_IDENTITY_HEADERS.contains(&name.as_str()) {
                return Err(format!(
                    "web.proxyHeaders.{key}: {name:?} does not carry an identity and cannot be used"
                ));
            }
        }
        for (i, (key, name)) in named.iter().enumerate() {
            if let Some((other, _)) = named[..i].iter().find(|(_, n)| n == name) {
                return Err(format!(
                    "web.proxyHeaders.{key} and web.proxyHeaders.{other} name the same header {name:?}"
                ));
            }
        }
        Ok(())
    }
}

/// Web UI settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebConfig {
    /// Public URL used in links and callbacks.
    #[serde(default)]
    pub base_url: String,
    /// Identity source.
    #[serde(default)]
    pub auth_mode: AuthMode,
    /// Addresses (CIDRs) whose identity headers are trusted in proxy mode.
    #[serde(default = "default_trusted_proxies")]
    pub trusted_proxies: Vec<String>,
    /// The identity headers the proxy injects (and strips from clients) in proxy mode.
    #[serde(default)]
    pub proxy_headers: ProxyHeaders,
    /// Proxy mode: requests refused for conflicting identity headers are audited once per client
    /// address and asserted identity per this many seconds; the refusals in between are counted and
    /// recorded together at its end.
    #[serde(default = "default_identity_conflict_audit_interval")]
    pub identity_conflict_audit_interval_seconds: u64,
    /// A second address that serves only the JSON API and the terminal socket (`/api/v1/…`, `/ws/…`)
    /// and accepts only `Authorization: Bearer janus_…` credentials: no cookies, no proxy headers,
    /// whoever the peer. For the CLI in proxy mode, where the authenticating proxy in front of `listen`
    /// would refuse a request without its own login. Off when absent (`janus web --bearer-listen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_listen: Option<std::net::SocketAddr>,
    /// OIDC settings when `authMode: oidc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
    /// How long a login session lasts without activity being required.
    #[serde(default = "default_session_ttl")]
    pub session_ttl_seconds: i64,
    /// HTTP connections one web replica holds open at once (WebSockets included); further clients
    /// wait in the listen backlog until a connection closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time a client has to send a complete request head, from the connection's start or from the first
    /// byte of a further request on a kept-alive connection.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_seconds: u64,
    /// Time a kept-alive HTTP connection may wait, with no request in progress, for its next request.
    /// Longer than the usual proxy/load balancer upstream idle timeout (60 s), so they close first.
    #[serde(default = "default_idle_connection_timeout")]
    pub idle_connection_timeout_seconds: u64,
    /// Time a connection may go without taking any of the output waiting for it (a client that does
    /// not read, or keeps its HTTP/2 flow-control window shut) before it is closed. Quiet streams
    /// (server-sent events, followed logs, WebSockets) wait on themselves, not on the client: never cut.
    #[serde(default = "default_write_stall_timeout")]
    pub write_stall_timeout_seconds: u64,
    /// Time a request body (at most 256 KiB) may take to arrive completely, from the end of its head.
    #[serde(default = "default_request_body_timeout")]
    pub request_body_timeout_seconds: u64,
    /// Time an ordinary request (a page, an API call) may take until its answer starts; after it the
    /// client gets a 503 and the work is dropped. Long-lived streams (terminals, live updates, followed
    /// logs) are not bound by it, nor are writes (see the web server). Must be at least the body timeout
    /// (validated), so a slow upload gets its own error first.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Open (not yet ended) requests one user may have at once.
    #[serde(default = "default_max_open")]
    pub max_open_requests_per_user: usize,
    /// Requests one user may create per hour.
    #[serde(default = "default_max_per_hour")]
    pub max_requests_per_hour: usize,
    /// Failed logins before a local account is locked.
    #[serde(default = "default_login_failures")]
    pub login_max_failures: i64,
    /// How long a locked local account stays locked.
    #[serde(default = "default_lockout")]
    pub login_lockout_seconds: i64,
    /// Failed logins of one account from all client addresses together before the account is locked for
    /// everyone (`loginMaxFailures` locks one address out of one account).
    #[serde(default = "default_login_failures_per_account")]
    pub login_max_failures_per_account: i64,
    /// Failed logins one client address may make, over all accounts, per `loginLockoutSeconds` (per
    /// web replica) before its further attempts are refused with 429.
    #[serde(default = "default_login_failures_per_address")]
    pub login_max_failures_per_address: u32,
    /// Terminal sessions one user may have open at once.
    #[serde(default = "default_terminals_per_user")]
    pub max_terminals_per_user: usize,
    /// Terminal sessions one web replica serves at once.
    #[serde(default = "default_terminals_per_replica")]
    pub max_terminals_per_replica: usize,
    /// Whether admins may open terminals on other people's active requests.
    #[serde(default)]
    pub admin_terminal_access: bool,
    /// Largest recording kept per terminal session; output beyond it is not recorded (the session goes on).
    #[serde(default = "default_recording_max")]
    pub recording_max_bytes: usize,
    /// Keystrokes (and resizes) kept per recording, counted apart from the output: input goes on being
    /// recorded after the output reached `recordingMaxBytes`, up to this many bytes.
    #[serde(default = "default_recording_max_input")]
    pub recording_max_input_bytes: usize,
    /// Container log streams (`…/logs` follows) one user may have open at once on a replica.
    #[serde(default = "default_log_streams_per_user")]
    pub max_log_streams_per_user: usize,
    /// Container log streams one web replica serves at once (apart from terminal sessions).
    #[serde(default = "default_log_streams_per_replica")]
    pub max_log_streams_per_replica: usize,
    /// Personal API tokens for tools and CI jobs ([`crate::tokens`]).
    #[serde(default)]
    pub api_tokens: ApiTokensConfig,
    /// Lifetime of a CLI session (`janus login`, by password or the OIDC device flow), in seconds.
    #[serde(default = "default_cli_session_ttl")]
    pub cli_session_ttl_seconds: i64,
}

/// Personal API tokens (`web.apiTokens`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiTokensConfig {
    /// Whether users may create personal API tokens (existing tokens stop working when false).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The longest expiry a token may be given, in days (1..=3650).
    #[serde(default = "default_token_max_days")]
    pub max_lifetime_days: u32,
    /// The expiry a new token gets when none is chosen, in days (at most `maxLifetimeDays`).
    #[serde(default = "default_token_days")]
    pub default_lifetime_days: u32,
    /// Tokens one user may hold at once (unrevoked and unexpired).
    #[serde(default = "default_tokens_per_user")]
    pub max_per_user: u32,
}

impl Default for ApiTokensConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_lifetime_days: default_token_max_days(),
            default_lifetime_days: default_token_days(),
            max_per_user: default_tokens_per_user(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_token_max_days() -> u32 {
    90
}
fn default_token_days() -> u32 {
    30
}
fn default_tokens_per_user() -> u32 {
    20
}
fn default_cli_session_ttl() -> i64 {
    43200
}

fn default_session_ttl() -> i64 {
    43200
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_read_timeout() -> u64 {
    10
}
fn default_idle_connection_timeout() -> u64 {
    75
}
fn default_identity_conflict_audit_interval() -> u64 {
    60
}
fn default_write_stall_timeout() -> u64 {
    30
}
fn default_request_body_timeout() -> u64 {
    60
}
fn default_request_timeout() -> u64 {
    90
}
fn default_max_open() -> usize {
    5
}
fn default_max_per_hour() -> usize {
    30
}
fn default_login_failures() -> i64 {
    5
}
fn default_login_failures_per_account() -> i64 {
    100
}
fn default_login_failures_per_address() -> u32 {
    20
}
fn default_lockout() -> i64 {
    900
}
fn default_terminals_per_user() -> usize {
    4
}
fn default_terminals_per_replica() -> usize {
    1000
}
fn default_recording_max() -> usize {
    10 * 1024 * 1024
}
fn default_recording_max_input() -> usize {
    32 * 1024 * 1024
}
fn default_log_streams_per_user() -> usize {
    8
}
fn default_log_streams_per_replica() -> usize {
    1000
}

fn default_trusted_proxies() -> Vec<String> {
    vec!["127.0.0.1/32".into()]
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            auth_mode: AuthMode::Local,
            trusted_proxies: default_trusted_proxies(),
            proxy_headers: ProxyHeaders::default(),
            identity_conflict_audit_interval_seconds: default_identity_conflict_audit_interval(),
            bearer_listen: None,
            oidc: None,
            session_ttl_seconds: default_session_ttl(),
            max_connections: default_max_connections(),
            header_read_timeout_seconds: default_header_read_timeout(),
            idle_connection_timeout_seconds: default_idle_connection_timeout(),
            write_stall_timeout_seconds: default_write_stall_timeout(),
            request_body_timeout_seconds: default_request_body_timeout(),
            request_timeout_seconds: default_request_timeout(),
            max_open_requests_per_user: default_max_open(),
            max_requests_per_hour: default_max_per_hour(),
            login_max_failures: default_login_failures(),
            login_lockout_seconds: default_lockout(),
            login_max_failures_per_account: default_login_failures_per_account(),
            login_max_failures_per_address: default_login_failures_per_address(),
            max_terminals_per_user: default_terminals_per_user(),
            max_terminals_per_replica: default_terminals_per_replica(),
            admin_terminal_access: false,
            recording_max_bytes: default_recording_max(),
            recording_max_input_bytes: default_recording_max_input(),
            max_log_streams_per_user: default_log_streams_per_user(),
            max_log_streams_per_replica: default_log_streams_per_replica(),
            api_tokens: ApiTokensConfig::default(),
            cli_session_ttl_seconds: default_cli_session_ttl(),
        }
    }
}

/// Database settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://user@host:port/db` (password from `JANUS_DATABASE_PASSWORD`).
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://janus.db".into(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Namespace of the central install (token and kubeconfig Secrets, Lease).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Admins by email.
    #[serde(default)]
    pub admin_emails: Vec<String>,
    /// Admins by identity-provider group.
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// TTL preselected in the request form.
    #[serde(default = "default_ttl")]
    pub default_ttl_seconds: i64,
    /// Shortest TTL a request may ask for.
    #[serde(default = "default_min_ttl")]
    pub min_ttl_seconds: i64,
    /// Longest TTL a request may ask for; also the cap on total lifetime with extensions.
    #[serde(default = "default_max_ttl")]
    pub max_ttl_seconds: i64,
    /// Let extensions push the total lifetime past `maxTtlSeconds` from activation.
    #[serde(default)]
    pub allow_extension_beyond_max_ttl: bool,
    /// Idle terminal sessions are closed and the grant revoked after this long (0 disables).
    #[serde(default = "default_idle")]
    pub idle_timeout_seconds: i64,
    /// Namespaces nobody may request.
    #[serde(default)]
    pub excluded_namespaces: Vec<String>,
    /// IANA timezone for times in the UI.
    #[serde(default = "default_tz")]
    pub display_timezone: String,
    /// Pending requests are denied automatically after this long (0 disables).
    #[serde(default = "default_pending_expiry")]
    pub pending_expiry_seconds: i64,
    /// Requests in a terminal phase are deleted this long after they ended (0 disables).
    #[serde(default = "default_retention")]
    pub retention_seconds: i64,
    /// TTLs an approver can pick.
    #[serde(default)]
    pub approval_ttl_options: Vec<i64>,
    /// Whether an admin may approve their own request.
    #[serde(default)]
    pub allow_self_approval: bool,
    /// Audit retention in the database.
    #[serde(default = "default_audit_retention")]
    pub audit_retention_days: i64,
    /// Clusters; the first is the central one.
    #[serde(default = "default_clusters")]
    pub clusters: Vec<ClusterConfig>,
    /// Web UI settings.
    #[serde(default)]
    pub web: WebConfig,
    /// Database settings.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// Approval policies, evaluated in order (see [`crate::rules::policy`]); none: admins approve,
    /// one approval.
    #[serde(default)]
    pub policies: Vec<crate::policy::PolicyConfig>,
    /// Access roles a request can name (see [`crate::roles`]); none given: the shipped `exec`, `logs`
    /// and `debug` ([`crate::roles::builtin_roles`]).
    #[serde(default = "crate::roles::builtin_roles")]
    pub roles: Vec<crate::roles::RoleConfig>,
    /// Notification and audit-streaming sinks (see [`crate::notifications`]).
    #[serde(default)]
    pub notifications: crate::notifications::NotificationsConfig,
}

fn default_namespace() -> String {
    "k8s-janus".into()
}
fn default_ttl() -> i64 {
    3600
}
fn default_min_ttl() -> i64 {
    600
}
fn default_max_ttl() -> i64 {
    28800
}
fn default_idle() -> i64 {
    900
}
fn default_tz() -> String {
    "Europe/Berlin".into()
}
fn default_pending_expiry() -> i64 {
    86400
}
fn default_retention() -> i64 {
    86400
}
fn default_audit_retention() -> i64 {
    365
}
fn default_clusters() -> Vec<ClusterConfig> {
    vec![ClusterConfig {
        name: "central".into(),
        display_name: "Central".into(),
        secret_name: None,
    }]
}

impl Default for Config {
    #[allow(
        clippy::expect_used,
        reason = "a constant empty document takes every field's default; the unit tests parse it too"
    )]
    fn default() -> Self {
        yaml_serde::from_str("{}").expect("an empty document takes every default")
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed or has unknown keys.
    #[error("invalid configuration {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: yaml_serde::Error,
    },
    /// Values contradict each other.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses and validates YAML.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let c: Config = yaml_serde::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.into(),
            source,
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Checks the relations between values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.min_ttl_seconds < 1 {
            return bad(format!(
                "minTtlSeconds must be at least 1, got {}",
                self.min_ttl_seconds
            ));
        }
        if self.max_ttl_seconds > crate::access_request::MAX_TTL_SECONDS {
            // The API server would refuse every request or approval asking for more, long after start-up.
            return bad(format!(
                "maxTtlSeconds ({}) is above {} (7 days), the most an AccessRequest's ttlSeconds may hold",
                self.max_ttl_seconds,
                crate::access_request::MAX_TTL_SECONDS
            ));
        }
        let t = &self.web.api_tokens;
        if !(1..=3650).contains(&t.max_lifetime_days) {
            return bad(format!(
                "web.apiTokens.maxLifetimeDays must be within 1..=3650, got {}",
                t.max_lifetime_days
            ));
        }
        if t.default_lifetime_days < 1 || t.default_lifetime_days > t.max_lifetime_days {
            return bad(format!(
                "web.apiTokens.defaultLifetimeDays ({}) is outside 1..=maxLifetimeDays ({})",
                t.default_lifetime_days, t.max_lifetime_days
            ));
        }
        if t.max_per_user < 1 {
            return bad("web.apiTokens.maxPerUser must be at least 1".into());
        }
        if !(60..=30 * 86400).contains(&self.web.cli_session_ttl_seconds) {
            return bad(format!(
                "web.cliSessionTtlSeconds must be within 60..=2592000 (30 days), got {}",
                self.web.cli_session_ttl_seconds
            ));
        }
        if self.max_ttl_seconds < self.min_ttl_seconds {
            return bad(format!(
                "maxTtlSeconds ({}) is below minTtlSeconds ({})",
                self.max_ttl_seconds, self.min_ttl_seconds
            ));
        }
        if !(self.min_ttl_seconds..=self.max_ttl_seconds).contains(&self.default_ttl_seconds) {
            return bad(format!(
                "defaultTtlSeconds ({}) is outside [minTtlSeconds, maxTtlSeconds] = [{}, {}]",
                self.default_ttl_seconds, self.min_ttl_seconds, self.max_ttl_seconds
            ));
        }
        for o in &self.approval_ttl_options {
            if !(self.min_ttl_seconds..=self.max_ttl_seconds).contains(o) {
                return bad(format!(
                    "approvalTtlOptions entry {o} is outside [minTtlSeconds, maxTtlSeconds]"
                ));
            }
        }
        if self.clusters.is_empty() {
            return bad("clusters must list at least the central cluster".into());
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.clusters {
            if !crate::names::is_dns_label(&c.name) {
                return bad(format!("cluster name {:?} must be a DNS-1123 label", c.name));
            }
            if !seen.insert(&c.name) {
                return bad(format!("cluster {:?} is listed twice", c.name));
            }
        }
        for v in [
            self.idle_timeout_seconds,
            self.pending_expiry_seconds,
            self.retention_seconds,
        ] {
            if v < 0 {
                return bad(
                    "idleTimeoutSeconds, pendingExpirySeconds and retentionSeconds must not be negative".into(),
                );
            }
        }
        if self.web.max_connections == 0
            || self.web.header_read_timeout_seconds == 0
            || self.web.idle_connection_timeout_seconds == 0
            || self.web.write_stall_timeout_seconds == 0
            || self.web.request_body_timeout_seconds == 0
            || self.web.request_timeout_seconds == 0
        {
            return bad(
                "web.maxConnections, web.headerReadTimeoutSeconds, web.idleConnectionTimeoutSeconds, \
                 web.writeStallTimeoutSeconds, web.requestBodyTimeoutSeconds and web.requestTimeoutSeconds must be \
                 at least 1"
                    .into(),
            );
        }
        // The body deadline runs inside the request's; a shorter request timeout would answer a slow
        // upload with a generic 503 instead of its own error.
        if self.web.request_timeout_seconds < self.web.request_body_timeout_seconds {
            return bad(format!(
                "web.requestTimeoutSeconds ({}) must be at least web.requestBodyTimeoutSeconds ({})",
                self.web.request_timeout_seconds, self.web.request_body_timeout_seconds
            ));
        }
        if self.web.identity_conflict_audit_interval_seconds == 0 {
            return bad("web.identityConflictAuditIntervalSeconds must be at least 1".into());
        }
        if self.web.auth_mode == AuthMode::Oidc && self.web.oidc.is_none() {
            return bad("web.authMode is oidc but web.oidc is missing".into());
        }
        self.web.proxy_headers.validate().map_err(ConfigError::Invalid)?;
        // A policy nobody can satisfy is refused here, with the reason, not left as requests pending forever.
        crate::rules::scope::validate_roles(&self.roles).map_err(ConfigError::Invalid)?;
        crate::policy::validate_policies(self).map_err(ConfigError::Invalid)?;
        self.notifications.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// Whether a namespace may never be requested (the Janus namespace always is excluded).
    pub fn is_excluded(&self, ns: &str) -> bool {
        ns == self.namespace || self.excluded_namespaces.iter().any(|e| e == ns)
    }

    /// The central cluster's name.
    pub fn central(&self) -> &str {
        self.clusters.first().map(|c| c.name.as_str()).unwrap_or("central")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_example_parse() {
        let c = Config::default();
        assert_eq!(c.max_ttl_seconds, 28800);
        assert_eq!(c.min_ttl_seconds, 600);
        assert_eq!(c.retention_seconds, 86400);
        let example = include_str!("../../../config/janus.example.yaml");
        let e = Config::from_yaml(example, "example").unwrap();
        assert_eq!(e.clusters[0].kubeconfig_secret(), "central-kubeconfig");
    }

    #[test]
    fn unknown_keys_and_bad_relations_are_errors() {
        let e = Config::from_yaml("maxTtlSecond: 5\n", "t").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = Config::from_yaml("minTtlSeconds: 100\nmaxTtlSeconds: 50\ndefaultTtlSeconds: 60\n", "t").unwrap_err();
        assert!(e.to_string().contains("maxTtlSeconds"), "{e}");
        assert!(Config::from_yaml("clusters: [{name: Bad_Name}]\n", "t").is_err());
        assert!(Config::from_yaml("clusters: [{name: a}, {name: a}]\n", "t").is_err());
        assert!(Config::from_yaml("clusters: []\n", "t").is_err());
    }

    #[test]
    fn write_stall_body_and_audit_interval_settings() {
        let c = Config::default();
        assert_eq!(
            (
                c.web.write_stall_timeout_seconds,
                c.web.request_body_timeout_seconds,
                c.web.identity_conflict_audit_interval_seconds
            ),
            (30, 60, 60)
        );
        for zero in [
            "writeStallTimeoutSeconds",
            "requestBodyTimeoutSeconds",
            "identityConflictAuditIntervalSeconds",
        ] {
            let e = Config::from_yaml(&format!("web: {{{zero}: 0}}\n"), "t").unwrap_err();
            assert!(e.to_string().contains(zero), "{zero}: {e}");
        }
    }

    #[test]
    fn the_request_timeout_is_at_least_the_body_timeout() {
        let e = Config::from_yaml("web: {requestTimeoutSeconds: 30}\n", "t").unwrap_err();
        assert!(
            e.to_string()
                .contains("web.requestTimeoutSeconds (30) must be at least web.requestBodyTimeoutSeconds (60)"),
            "{e}"
        );
        let e = Config::from_yaml("web: {requestTimeoutSeconds: 4, requestBodyTimeoutSeconds: 5}\n", "t").unwrap_err();
        assert!(e.to_string().contains("requestBodyTimeoutSeconds (5)"), "{e}");
        let c = Config::from_yaml("web: {requestTimeoutSeconds: 5, requestBodyTimeoutSeconds: 5}\n", "t").unwrap();
        assert_eq!(c.web.request_timeout_seconds, 5);
        assert!(Config::from_yaml("web: {requestTimeoutSeconds: 1, requestBodyTimeoutSeconds: 1}\n", "t").is_ok());
    }

    #[test]
    fn proxy_header_names_are_checked() {
        let c = Config::default();
        assert_eq!(c.web.proxy_headers.email, "X-Forwarded-Email");
        assert_eq!(c.web.proxy_headers.named().len(), 4);
        let c = Config::from_yaml(
            "web: {proxyHeaders: {email: Remote-Email, user: Remote-User, groups: Remote-Groups, preferredUsername: ''}}\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            c.web.proxy_headers.named(),
            vec![
                ("email", "remote-email".to_string()),
                ("user", "remote-user".to_string()),
                ("groups", "remote-groups".to_string())
            ]
        );
        for (bad, why) in [
            ("{email: ''}", "must name"),
            ("{email: 'X Email'}", "not a valid HTTP header name"),
            ("{email: 'X-Email:'}", "not a valid HTTP header name"),
            ("{email: 'Caf\u{e9}'}", "not a valid HTTP header name"),
            ("{email: Cookie}", "does not carry an identity"),
            ("{email: X-Forwarded-For}", "does not carry an identity"),
            ("{email: X-Email, user: x-email}", "name the same header"),
            ("{emial: X-Email}", "unknown field"),
        ] {
            let e = Config::from_yaml(&format!("web: {{proxyHeaders: {bad}}}\n"), "t").unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn max_ttl_above_the_crd_cap_is_refused() {
        let e = Config::from_yaml("maxTtlSeconds: 604801\n", "t").unwrap_err();
        assert!(e.to_string().contains("maxTtlSeconds (604801) is above 604800"), "{e}");
        let c = Config::from_yaml("maxTtlSeconds: 604800\n", "t").unwrap();
        assert_eq!(c.max_ttl_seconds, crate::access_request::MAX_TTL_SECONDS);
    }

    #[test]
    fn the_janus_namespace_is_always_excluded() {
        let c = Config::from_yaml("namespace: janus\nexcludedNamespaces: [kube-system]\n", "t").unwrap();
        assert!(c.is_excluded("janus") && c.is_excluded("kube-system") && !c.is_excluded("apps"));
    }
}
