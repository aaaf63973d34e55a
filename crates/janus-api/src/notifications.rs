//! The `notifications:` section of the configuration (chart `notifications.*`): the sinks that tell people
//! about requests (Slack, Microsoft Teams, email) and stream the audit log to other systems (signed
//! webhooks, syslog), each with an event filter.
//!
//! Secrets (webhook URLs, SMTP passwords, HMAC keys) are never in this file: each sink names the
//! environment variables that hold them (the chart fills them from Kubernetes Secrets). [`resolve`] reads
//! them at start-up and refuses a missing variable, a bad URL or an unusable sink with an error naming the
//! configuration key; [`NotificationsConfig::validate`] checks what can be checked without the environment.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// The synthetic event kind of the "access expires soon" notification: it is not an audit event, the
/// delivery loop raises it `expiringSoonSeconds` before a request's `expires_at`.
pub const EXPIRING_SOON: &str = "request.expiring_soon";

/// Every event kind a sink's `events` filter may name: the audit event kinds (docs/security.md, "Audit
/// events"; kept equal to `janus_store::AuditKind::ALL` by a test in janus-notify) and [`EXPIRING_SOON`].
pub const EVENT_KINDS: &[&str] = &[
    "request.created",
    "request.approved",
    "request.approval_given",
    "request.approval_ignored",
    "request.auto_approved",
    "request.break_glass",
    "request.break_glass_reviewed",
    "request.scheduled",
    "request.denied",
    "request.withdrawn",
    "request.revoked",
    "request.extended",
    "request.activated",
    "request.expired",
    "request.failed",
    "request.spec_changed",
    "request.credentials_removed",
    "request.auto_denied",
    "request.deleted",
    "session.opened",
    "session.closed",
    "session.recording_truncated",
    "logs.closed",
    "debug.started",
    "debug.refused",
    "login.succeeded",
    "login.failed",
    "login.locked",
    "user.created",
    "user.changed",
    "user.deleted",
    "cluster.registered",
    "cluster.removed",
    "token.created",
    "token.new_address",
    "token.revoked",
    "login.cli",
    EXPIRING_SOON,
];

/// The kinds that carry a message for people (pending, decision, active, expiring soon, ended,
/// break-glass): the default filter of the chat and email sinks.
pub const MESSAGE_KINDS: &[&str] = &[
    "request.created",
    "request.break_glass",
    "request.approved",
    "request.denied",
    "request.auto_denied",
    "request.activated",
    EXPIRING_SOON,
    "request.expired",
    "request.revoked",
    "request.withdrawn",
    "request.failed",
    "request.spec_changed",
];

/// The `notifications:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationsConfig {
    /// How long before a request's access ends the "expiring soon" message is sent.
    #[serde(default = "default_expiring_soon")]
    pub expiring_soon_seconds: u64,
    /// How long one delivery (connect, send, answer) may take before it is cut and retried.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// How long a delivery is retried before it is dead-lettered (from when it was queued, or retried
    /// by hand).
    #[serde(default = "default_dead_letter_after")]
    pub dead_letter_after_seconds: u64,
    /// Slack incoming webhooks (Block Kit messages).
    #[serde(default)]
    pub slack: Vec<SlackSink>,
    /// Microsoft Teams incoming webhooks (Adaptive Cards).
    #[serde(default)]
    pub teams: Vec<TeamsSink>,
    /// SMTP servers; approvers and requesters are the recipients, by their email.
    #[serde(default)]
    pub email: Vec<EmailSink>,
    /// Generic webhooks: CloudEvents 1.0 JSON signed with HMAC-SHA256.
    #[serde(default)]
    pub webhook: Vec<WebhookSink>,
    /// Syslog receivers (RFC 5424 over TCP with TLS, octet-counted framing): audit streaming to a SIEM.
    #[serde(default)]
    pub syslog: Vec<SyslogSink>,
}

fn default_expiring_soon() -> u64 {
    600
}
fn default_timeout() -> u64 {
    10
}
fn default_dead_letter_after() -> u64 {
    86_400
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            expiring_soon_seconds: default_expiring_soon(),
            timeout_seconds: default_timeout(),
            dead_letter_after_seconds: default_dead_letter_after(),
            slack: Vec::new(),
            teams: Vec::new(),
            email: Vec::new(),
            webhook: Vec::new(),
            syslog: Vec::new(),
        }
    }
}

/// A Slack incoming webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackSink {
    /// Unique among all sinks; part of each delivery's idempotency key.
    pub name: String,
    /// Environment variable holding the webhook URL.
    pub url_env: String,
    /// Event kinds sent (empty: the message kinds, [`MESSAGE_KINDS`]).
    #[serde(default)]
    pub events: Vec<String>,
    /// Channel put in the payload when no route names one (honoured by legacy webhooks only; a modern
    /// Slack app webhook always posts to its own channel: route with `urlEnv` instead).
    #[serde(default)]
    pub channel: String,
    /// Routing per cluster or policy, first match wins; no match: `urlEnv` and `channel`.
    #[serde(default)]
    pub routes: Vec<SlackRoute>,
    /// PEM file of extra CA certificates to trust for this webhook (a private endpoint, tests).
    #[serde(default)]
    pub ca_file: String,
}

/// One Slack route: events about this cluster and/or policy go to this webhook and/or channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackRoute {
    /// Cluster names the route applies to (empty: any).
    #[serde(default)]
    pub clusters: Vec<String>,
    /// Policy names the route applies to (empty: any).
    #[serde(default)]
    pub policies: Vec<String>,
    /// Environment variable of another webhook URL (empty: the sink's).
    #[serde(default)]
    pub url_env: String,
    /// Channel put in the payload (empty: the sink's).
    #[serde(default)]
    pub channel: String,
}

/// A Microsoft Teams incoming webhook (Workflows or the classic connector).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TeamsSink {
    /// Unique among all sinks.
    pub name: String,
    /// Environment variable holding the webhook URL.
    pub url_env: String,
    /// Event kinds sent (empty: [`MESSAGE_KINDS`]).
    #[serde(default)]
    pub events: Vec<String>,
    /// PEM file of extra CA certificates to trust.
    #[serde(default)]
    pub ca_file: String,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption at all; only with `insecure: true`.
    None,
}

/// An SMTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailSink {
    /// Unique among all sinks.
    pub name: String,
    /// SMTP server host name.
    pub host: String,
    /// Port (default: 587 for STARTTLS, 465 for TLS, 25 without encryption).
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// Allows `security: none` (credentials and messages in clear text on the network).
    #[serde(default)]
    pub insecure: bool,
    /// User name for SMTP AUTH (empty: no authentication).
    #[serde(default)]
    pub username: String,
    /// Environment variable holding the SMTP password (required with `username`).
    #[serde(default)]
    pub password_env: String,
    /// Sender address, e.g. `k8s-janus <janus@example.com>`.
    pub from: String,
    /// Reply-To address (empty: none).
    #[serde(default)]
    pub reply_to: String,
    /// Event kinds sent (empty: [`MESSAGE_KINDS`]).
    #[serde(default)]
    pub events: Vec<String>,
    /// PEM file of extra CA certificates to trust.
    #[serde(default)]
    pub ca_file: String,
}

impl EmailSink {
    /// The port in effect.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        })
    }
}

/// A header sent with every webhook delivery: a fixed value or one from the environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookHeader {
    /// Header name.
    pub name: String,
    /// Value (not a secret: it is in the ConfigMap).
    #[serde(default)]
    pub value: String,
    /// Environment variable holding the value (for an authorization header).
    #[serde(default)]
    pub value_env: String,
}

/// A generic webhook receiving CloudEvents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSink {
    /// Unique among all sinks.
    pub name: String,
    /// Environment variable holding the URL.
    pub url_env: String,
    /// Environment variable holding the HMAC-SHA256 key of the `X-Janus-Signature` header.
    pub hmac_key_env: String,
    /// Event kinds sent (empty: every kind, for audit streaming).
    #[serde(default)]
    pub events: Vec<String>,
    /// Extra headers.
    #[serde(default)]
    pub headers: Vec<WebhookHeader>,
    /// PEM file of extra CA certificates to trust.
    #[serde(default)]
    pub ca_file: String,
}

/// A syslog receiver (a SIEM's collector).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyslogSink {
    /// Unique among all sinks.
    pub name: String,
    /// Receiver host name (also the name its TLS certificate must carry).
    pub host: String,
    /// Port (default 6514, syslog over TLS).
    #[serde(default = "default_syslog_port")]
    pub port: u16,
    /// Plain TCP without TLS; only with `insecure: true`.
    #[serde(default)]
    pub tls: Option<bool>,
    /// Allows `tls: false`.
    #[serde(default)]
    pub insecure: bool,
    /// Event kinds sent (empty: every kind).
    #[serde(default)]
    pub events: Vec<String>,
    /// RFC 5424 APP-NAME.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// PEM file of extra CA certificates to trust.
    #[serde(default)]
    pub ca_file: String,
}

impl SyslogSink {
    /// Whether the connection uses TLS (the default).
    pub fn uses_tls(&self) -> bool {
        self.tls.unwrap_or(true)
    }
}

fn default_syslog_port() -> u16 {
    6514
}
fn default_app_name() -> String {
    "k8s-janus".into()
}

/// The event filter in effect for a sink: its own list, else `default`.
fn filter(events: &[String], default: &[&str]) -> HashSet<String> {
    if events.is_empty() {
        default.iter().map(|s| (*s).to_string()).collect()
    } else {
        events.iter().cloned().collect()
    }
}

fn check_events(key: &str, events: &[String]) -> Result<(), String> {
    for (i, e) in events.iter().enumerate() {
        if !EVENT_KINDS.contains(&e.as_str()) {
            return Err(format!(
                "{key}.events[{i}]: unknown event kind {e:?} (known: {})",
                EVENT_KINDS.join(", ")
            ));
        }
    }
    Ok(())
}

fn check_env_name(key: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("{key}: {name:?} is not an environment variable name"))
    }
}

fn check_header_name(key: &str, name: &str) -> Result<(), String> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!("{key}: {name:?} is not a valid HTTP header name"));
    }
    let lower = name.to_ascii_lowercase();
    // These are the ones the sink itself sets; a second value would make the signature or body unreadable.
    if [
        "content-type",
        "content-length",
        "host",
        "x-janus-signature",
        "idempotency-key",
    ]
    .contains(&lower.as_str())
    {
        return Err(format!("{key}: {name:?} is set by k8s-janus itself"));
    }
    Ok(())
}

impl NotificationsConfig {
    /// Whether no sink is configured.
    pub fn is_empty(&self) -> bool {
        self.slack.is_empty()
            && self.teams.is_empty()
            && self.email.is_empty()
            && self.webhook.is_empty()
            && self.syslog.is_empty()
    }

    /// Checks what does not need the environment: names, event kinds, TLS opt-outs, header names.
    /// Errors name the key (`notifications.slack[0].events[1]`).
    pub fn validate(&self) -> Result<(), String> {
        if self.expiring_soon_seconds == 0 {
            return Err("notifications.expiringSoonSeconds must be at least 1".into());
        }
        if self.timeout_seconds == 0 {
            return Err("notifications.timeoutSeconds must be at least 1".into());
        }
        if self.dead_letter_after_seconds == 0 {
            return Err("notifications.deadLetterAfterSeconds must be at least 1".into());
        }
        let mut names = HashSet::new();
        let mut name_ok = |key: &str, name: &str| -> Result<(), String> {
            let valid = !name.is_empty()
                && name.len() <= 63
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(format!("{key}.name: {name:?} must be 1-63 letters, digits, '-' or '_'"));
            }
            if !names.insert(name.to_string()) {
                return Err(format!("{key}.name: sink name {name:?} is used twice"));
            }
            Ok(())
        };
        for (i, s) in self.slack.iter().enumerate() {
            let key = format!("notifications.slack[{i}]");
            name_ok(&key, &s.name)?;
            check_env_name(&format!("{key}.urlEnv"), &s.url_env)?;
            check_events(&key, &s.events)?;
            for (j, r) in s.routes.iter().enumerate() {
                let rkey = format!("{key}.routes[{j}]");
                if r.clusters.is_empty() && r.policies.is_empty() {
                    return Err(format!("{rkey}: a route names clusters, policies or both"));
                }
                if r.url_env.is_empty() && r.channel.is_empty() {
                    return Err(format!("{rkey}: a route sets urlEnv, channel or both"));
                }
                if !r.url_env.is_empty() {
                    check_env_name(&format!("{rkey}.urlEnv"), &r.url_env)?;
                }
            }
        }
        for (i, s) in self.teams.iter().enumerate() {
            let key = format!("notifications.teams[{i}]");
            name_ok(&key, &s.name)?;
            check_env_name(&format!("{key}.urlEnv"), &s.url_env)?;
            check_events(&key, &s.events)?;
        }
        for (i, s) in self.email.iter().enumerate() {
            let key = format!("notifications.email[{i}]");
            name_ok(&key, &s.name)?;
            check_events(&key, &s.events)?;
            if s.host.trim().is_empty() {
                return Err(format!("{key}.host must name the SMTP server"));
            }
            if s.security == SmtpSecurity::None && !s.insecure {
                return Err(format!(
                    "{key}.security: none sends credentials and messages in clear text; set {key}.insecure: true to allow it"
                ));
            }
            if !s.username.is_empty() {
                check_env_name(&format!("{key}.passwordEnv"), &s.password_env)?;
            } else if !s.password_env.is_empty() {
                return Err(format!("{key}.passwordEnv is set but {key}.username is empty"));
            }
            if !plausible_address(&s.from) {
                return Err(format!("{key}.from: {:?} is not an email address", s.from));
            }
            if !s.reply_to.is_empty() && !plausible_address(&s.reply_to) {
                return Err(format!("{key}.replyTo: {:?} is not an email address", s.reply_to));
            }
        }
        for (i, s) in self.webhook.iter().enumerate() {
            let key = format!("notifications.webhook[{i}]");
            name_ok(&key, &s.name)?;
            check_env_name(&format!("{key}.urlEnv"), &s.url_env)?;
            check_env_name(&format!("{key}.hmacKeyEnv"), &s.hmac_key_env)?;
            check_events(&key, &s.events)?;
            for (j, h) in s.headers.iter().enumerate() {
                let hkey = format!("{key}.headers[{j}]");
                check_header_name(&format!("{hkey}.name"), &h.name)?;
                match (h.value.is_empty(), h.value_env.is_empty()) {
                    (false, false) => return Err(format!("{hkey}: set value or valueEnv, not both")),
                    (true, false) => check_env_name(&format!("{hkey}.valueEnv"), &h.value_env)?,
                    (_, true) => {}
                }
            }
        }
        for (i, s) in self.syslog.iter().enumerate() {
            let key = format!("notifications.syslog[{i}]");
            name_ok(&key, &s.name)?;
            check_events(&key, &s.events)?;
            if s.host.trim().is_empty() {
                return Err(format!("{key}.host must name the syslog receiver"));
            }
            if !s.uses_tls() && !s.insecure {
                return Err(format!(
                    "{key}.tls: false streams the audit log in clear text; set {key}.insecure: true to allow it"
                ));
            }
            // RFC 5424 APP-NAME: 1-48 printable US-ASCII characters.
            if s.app_name.is_empty() || s.app_name.len() > 48 || !s.app_name.bytes().all(|b| (33..=126).contains(&b)) {
                return Err(format!(
                    "{key}.appName: {:?} must be 1-48 printable ASCII characters",
                    s.app_name
                ));
            }
        }
        Ok(())
    }
}

/// A user part, one `@` and a domain, optionally in a `Name <address>` form (the SMTP library parses it
/// fully at start-up; this catches the obvious mistakes with the key named).
fn plausible_address(s: &str) -> bool {
    let addr = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    let mut parts = addr.trim().splitn(2, '@');
    matches!((parts.next(), parts.next()), (Some(u), Some(d)) if !u.is_empty() && d.contains('.') && !d.contains(char::is_whitespace) && !u.contains(char::is_whitespace))
}

/// A value read from the environment that must never be shown: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The sinks with their secrets read from the environment, ready to be built.
#[derive(Debug, Clone)]
pub struct ResolvedNotifications {
    /// The configuration as written.
    pub config: NotificationsConfig,
    /// The sinks, in configuration order (slack, teams, email, webhook, syslog).
    pub sinks: Vec<ResolvedSink>,
}

/// One sink with what the environment supplied.
#[derive(Debug, Clone)]
pub struct ResolvedSink {
    /// The sink's name.
    pub name: String,
    /// The event kinds it receives.
    pub events: HashSet<String>,
    /// Kind-specific settings.
    pub kind: ResolvedKind,
}

/// The per-kind part of a [`ResolvedSink`]. URLs are secrets: a Slack or Teams webhook URL is its
/// own credential.
#[derive(Debug, Clone)]
pub enum ResolvedKind {
    /// Slack.
    Slack {
        /// The configuration.
        config: SlackSink,
        /// The default webhook URL.
        url: Secret,
        /// The webhook URL of each route that names one, by route index.
        route_urls: BTreeMap<usize, Secret>,
    },
    /// Teams.
    Teams {
        /// The configuration.
        config: TeamsSink,
        /// The webhook URL.
        url: Secret,
    },
    /// SMTP.
    Email {
        /// The configuration.
        config: EmailSink,
        /// The password (when `username` is set).
        password: Option<Secret>,
    },
    /// Generic webhook.
    Webhook {
        /// The configuration.
        config: WebhookSink,
        /// The URL.
        url: Secret,
        /// The HMAC key.
        hmac_key: Secret,
        /// Every extra header with its value.
        headers: Vec<(String, Secret)>,
    },
    /// Syslog.
    Syslog {
        /// The configuration.
        config: SyslogSink,
    },
}

fn env_value(env: &dyn Fn(&str) -> Option<String>, key: &str, var: &str) -> Result<Secret, String> {
    match env(var) {
        Some(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_string())),
        Some(_) => Err(format!("{key}: environment variable {var} is empty")),
        None => Err(format!("{key}: environment variable {var} is not set")),
    }
}

/// Reads an HTTPS (or, for a local receiver, HTTP) URL from the environment. The error names the key
/// and the variable, never the value (a webhook URL is a credential).
fn env_url(env: &dyn Fn(&str) -> Option<String>, key: &str, var: &str) -> Result<Secret, String> {
    let v = env_value(env, key, var)?;
    let u = url::Url::parse(v.expose())
        .map_err(|e| format!("{key}: the URL in environment variable {var} is not a valid URL ({e})"))?;
    if !matches!(u.scheme(), "https" | "http") || u.host_str().is_none() {
        return Err(format!(
            "{key}: the URL in environment variable {var} must be an http(s) URL with a host"
        ));
    }
    Ok(v)
}

fn check_ca_file(key: &str, path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{key}.caFile: cannot read {path}: {e}"))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("{key}.caFile: {path} holds no PEM certificate"));
    }
    Ok(())
}

/// Validates the section and reads every secret it names from `env` (the process environment at start:
/// `&|k| std::env::var(k).ok()`). The web process calls it at start and refuses to run on an error; the
/// error names the configuration key and the variable, never a secret's value.
pub fn resolve(
    config: &NotificationsConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedNotifications, String> {
    config.validate()?;
    let mut sinks = Vec::new();
    for (i, s) in config.slack.iter().enumerate() {
        let key = format!("notifications.slack[{i}]");
        let url = env_url(env, &format!("{key}.urlEnv"), &s.url_env)?;
        let mut route_urls = BTreeMap::new();
        for (j, r) in s.routes.iter().enumerate() {
            if !r.url_env.is_empty() {
                route_urls.insert(j, env_url(env, &format!("{key}.routes[{j}].urlEnv"), &r.url_env)?);
            }
        }
        check_ca_file(&key, &s.ca_file)?;
        sinks.push(ResolvedSink {
            name: s.name.clone(),
            events: filter(&s.events, MESSAGE_KINDS),
            kind: ResolvedKind::Slack {
                config: s.clone(),
                url,
                route_urls,
            },
        });
    }
    for (i, s) in config.teams.iter().enumerate() {
        let key = format!("notifications.teams[{i}]");
        let url = env_url(env, &format!("{key}.urlEnv"), &s.url_env)?;
        check_ca_file(&key, &s.ca_file)?;
        sinks.push(ResolvedSink {
            name: s.name.clone(),
            events: filter(&s.events, MESSAGE_KINDS),
            kind: ResolvedKind::Teams { config: s.clone(), url },
        });
    }
    for (i, s) in config.email.iter().enumerate() {
        let key = format!("notifications.email[{i}]");
        let password = if s.username.is_empty() {
            None
        } else {
            Some(env_value(env, &format!("{key}.passwordEnv"), &s.password_env)?)
        };
        check_ca_file(&key, &s.ca_file)?;
        sinks.push(ResolvedSink {
            name: s.name.clone(),
            events: filter(&s.events, MESSAGE_KINDS),
            kind: ResolvedKind::Email {
                config: s.clone(),
                password,
            },
        });
    }
    for (i, s) in config.webhook.iter().enumerate() {
        let key = format!("notifications.webhook[{i}]");
        let url = env_url(env, &format!("{key}.urlEnv"), &s.url_env)?;
        let hmac_key = env_value(env, &format!("{key}.hmacKeyEnv"), &s.hmac_key_env)?;
        let mut headers = Vec::new();
        for (j, h) in s.headers.iter().enumerate() {
            let value = if h.value_env.is_empty() {
                Secret(h.value.clone())
            } else {
                env_value(env, &format!("{key}.headers[{j}].valueEnv"), &h.value_env)?
            };
            if value.expose().contains(['\r', '\n']) {
                return Err(format!("{key}.headers[{j}]: the value holds a line break"));
            }
            headers.push((h.name.clone(), value));
        }
        check_ca_file(&key, &s.ca_file)?;
        sinks.push(ResolvedSink {
            name: s.name.clone(),
            events: filter(&s.events, EVENT_KINDS),
            kind: ResolvedKind::Webhook {
                config: s.clone(),
                url,
                hmac_key,
                headers,
            },
        });
    }
    for (i, s) in config.syslog.iter().enumerate() {
        check_ca_file(&format!("notifications.syslog[{i}]"), &s.ca_file)?;
        sinks.push(ResolvedSink {
            name: s.name.clone(),
            events: filter(&s.events, EVENT_KINDS),
            kind: ResolvedKind::Syslog { config: s.clone() },
        });
    }
    Ok(ResolvedNotifications {
        config: config.clone(),
        sinks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    const FULL: &str = r##"
notifications:
  expiringSoonSeconds: 300
  slack:
    - name: ops
      urlEnv: JANUS_SLACK_OPS_URL
      channel: "#access"
      routes:
        - clusters: [prod]
          urlEnv: JANUS_SLACK_PROD_URL
        - policies: [db]
          channel: "#db"
  teams:
    - name: teams
      urlEnv: JANUS_TEAMS_URL
      events: [request.created, request.break_glass]
  email:
    - name: mail
      host: smtp.example.com
      username: janus
      passwordEnv: JANUS_SMTP_PASSWORD
      from: "k8s-janus <janus@example.com>"
      replyTo: platform@example.com
  webhook:
    - name: siem-hook
      urlEnv: JANUS_WEBHOOK_URL
      hmacKeyEnv: JANUS_WEBHOOK_KEY
      headers:
        - {name: X-Tenant, value: platform}
        - {name: Authorization, valueEnv: JANUS_WEBHOOK_AUTH}
  syslog:
    - name: siem
      host: siem.example.com
"##;

    fn full_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("JANUS_SLACK_OPS_URL", "https://hooks.slack.com/services/T/B/secretpart"),
            (
                "JANUS_SLACK_PROD_URL",
                "https://hooks.slack.com/services/T/P/secretprod",
            ),
            ("JANUS_TEAMS_URL", "https://example.webhook.office.com/x"),
            ("JANUS_SMTP_PASSWORD", "hunter2hunter2"),
            ("JANUS_WEBHOOK_URL", "https://siem.example.com/in"),
            ("JANUS_WEBHOOK_KEY", "k3y"),
            ("JANUS_WEBHOOK_AUTH", "Bearer abc"),
        ]
    }

    #[test]
    fn a_full_section_parses_and_resolves_with_its_defaults() {
        let c = Config::from_yaml(FULL, "t").unwrap();
        let n = &c.notifications;
        assert_eq!(n.expiring_soon_seconds, 300);
        assert_eq!(n.email[0].port(), 587);
        assert_eq!(n.syslog[0].port, 6514);
        assert!(n.syslog[0].uses_tls());
        let r = resolve(n, &env(&full_env())).unwrap();
        assert_eq!(r.sinks.len(), 5);
        assert_eq!(r.sinks[0].events.len(), MESSAGE_KINDS.len());
        assert_eq!(r.sinks[1].events.len(), 2);
        assert_eq!(
            r.sinks[3].events.len(),
            EVENT_KINDS.len(),
            "a webhook streams every kind by default"
        );
        match &r.sinks[0].kind {
            ResolvedKind::Slack { route_urls, .. } => assert_eq!(route_urls.len(), 1),
            other => panic!("{other:?}"),
        }
        // No secret in a Debug rendering (it ends up in logs when someone prints the config).
        let shown = format!("{r:?}");
        for (_, secret) in full_env() {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert_eq!(Config::default().notifications.expiring_soon_seconds, 600);
    }

    #[test]
    fn every_mistake_is_a_start_up_error_naming_the_key() {
        let c = Config::from_yaml(FULL, "t").unwrap();
        let n = &c.notifications;
        // A missing variable, an empty one, a bad URL: named by key and variable, the value never shown.
        for (drop, want) in [
            (
                "JANUS_SLACK_OPS_URL",
                "notifications.slack[0].urlEnv: environment variable JANUS_SLACK_OPS_URL is not set",
            ),
            (
                "JANUS_SLACK_PROD_URL",
                "notifications.slack[0].routes[0].urlEnv: environment variable JANUS_SLACK_PROD_URL",
            ),
            (
                "JANUS_SMTP_PASSWORD",
                "notifications.email[0].passwordEnv: environment variable JANUS_SMTP_PASSWORD",
            ),
            ("JANUS_WEBHOOK_KEY", "notifications.webhook[0].hmacKeyEnv"),
            ("JANUS_WEBHOOK_AUTH", "notifications.webhook[0].headers[1].valueEnv"),
        ] {
            let e: Vec<_> = full_env().into_iter().filter(|(k, _)| *k != drop).collect();
            let err = resolve(n, &env(&e)).unwrap_err();
            assert!(err.contains(want), "{drop}: {err}");
        }
        let mut e = full_env();
        e[2] = ("JANUS_TEAMS_URL", "not a url secretvalue");
        let err = resolve(n, &env(&e)).unwrap_err();
        assert!(
            err.contains(
                "notifications.teams[0].urlEnv: the URL in environment variable JANUS_TEAMS_URL is not a valid URL"
            ),
            "{err}"
        );
        assert!(!err.contains("secretvalue"), "{err}");
        e[2] = ("JANUS_TEAMS_URL", "ftp://example.com/x");
        assert!(resolve(n, &env(&e)).unwrap_err().contains("must be an http(s) URL"));
        e[2] = ("JANUS_TEAMS_URL", "  ");
        assert!(resolve(n, &env(&e)).unwrap_err().contains("JANUS_TEAMS_URL is empty"));

        // Static mistakes are refused when the file is loaded.
        for (yaml, want) in [
            (
                "notifications: {slack: [{name: a, urlEnv: X, events: [request.created, request.aproved]}]}",
                "notifications.slack[0].events[1]: unknown event kind \"request.aproved\"",
            ),
            (
                "notifications: {syslog: [{name: s, host: h, tls: false}]}",
                "notifications.syslog[0].tls: false streams the audit log in clear text; set notifications.syslog[0].insecure: true",
            ),
            (
                "notifications: {email: [{name: m, host: h, from: a@b.c, security: none}]}",
                "notifications.email[0].insecure: true",
            ),
            (
                "notifications: {email: [{name: m, host: h, from: nobody}]}",
                "notifications.email[0].from",
            ),
            (
                "notifications: {email: [{name: m, host: h, from: a@b.c, username: u}]}",
                "notifications.email[0].passwordEnv: \"\" is not an environment variable name",
            ),
            (
                "notifications: {teams: [{name: a, urlEnv: X}], slack: [{name: a, urlEnv: Y}]}",
                "notifications.teams[0].name: sink name \"a\" is used twice",
            ),
            (
                "notifications: {webhook: [{name: w, urlEnv: 'bad-name', hmacKeyEnv: K}]}",
                "notifications.webhook[0].urlEnv: \"bad-name\" is not an environment variable name",
            ),
            (
                "notifications: {webhook: [{name: w, urlEnv: U, hmacKeyEnv: K, headers: [{name: X-Janus-Signature, value: v}]}]}",
                "notifications.webhook[0].headers[0].name",
            ),
            (
                "notifications: {slack: [{name: a, urlEnv: X, routes: [{channel: '#x'}]}]}",
                "notifications.slack[0].routes[0]: a route names clusters, policies or both",
            ),
            (
                "notifications: {expiringSoonSeconds: 0}",
                "notifications.expiringSoonSeconds",
            ),
            (
                "notifications: {slack: [{name: a, urlEnv: X, url: https://x}]}",
                "unknown field",
            ),
        ] {
            let err = Config::from_yaml(&format!("{yaml}\n"), "t").unwrap_err().to_string();
            assert!(err.contains(want), "{yaml}: {err}");
        }
        // The opt-ins make them valid.
        Config::from_yaml(
            "notifications: {syslog: [{name: s, host: h, tls: false, insecure: true}]}\n",
            "t",
        )
        .unwrap();
        Config::from_yaml(
            "notifications: {email: [{name: m, host: h, from: a@b.c, security: none, insecure: true}]}\n",
            "t",
        )
        .unwrap();
    }

    #[test]
    fn the_commented_example_in_janus_example_yaml_is_valid() {
        let example = include_str!("../../../config/janus.example.yaml");
        let block = example
            .split("\n# notifications:\n")
            .nth(1)
            .expect("the example has a notifications block");
        let yaml: String = std::iter::once("notifications:".to_string())
            .chain(block.lines().map(|l| l.strip_prefix("# ").unwrap_or(l).to_string()))
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::from_yaml(&yaml, "example").unwrap();
        let n = &c.notifications;
        assert_eq!(
            (
                n.slack.len(),
                n.teams.len(),
                n.email.len(),
                n.webhook.len(),
                n.syslog.len()
            ),
            (1, 1, 1, 1, 1)
        );
        let vars = [
            "JANUS_SLACK_URL",
            "JANUS_SLACK_PROD_URL",
            "JANUS_TEAMS_URL",
            "JANUS_WEBHOOK_URL",
        ];
        let mut pairs: Vec<(&str, &str)> = vars.iter().map(|v| (*v, "https://hooks.example.com/x")).collect();
        pairs.extend([
            ("JANUS_SMTP_PASSWORD", "pw"),
            ("JANUS_WEBHOOK_KEY", "k"),
            ("JANUS_WEBHOOK_AUTH", "Bearer t"),
        ]);
        assert_eq!(resolve(n, &env(&pairs)).unwrap().sinks.len(), 5);
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("janus-notif-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "nothing").unwrap();
        let yaml = format!(
            "notifications: {{syslog: [{{name: s, host: h, caFile: {}}}]}}\n",
            bad.display()
        );
        let c = Config::from_yaml(&yaml, "t").unwrap();
        let err = resolve(&c.notifications, &env(&[])).unwrap_err();
        assert!(
            err.contains("notifications.syslog[0].caFile") && err.contains("no PEM certificate"),
            "{err}"
        );
        let yaml = "notifications: {syslog: [{name: s, host: h, caFile: /nonexistent/ca.pem}]}\n";
        let c = Config::from_yaml(yaml, "t").unwrap();
        assert!(
            resolve(&c.notifications, &env(&[]))
                .unwrap_err()
                .contains("cannot read /nonexistent/ca.pem")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
