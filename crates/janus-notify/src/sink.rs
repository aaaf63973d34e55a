//! The sinks: HTTP (Slack, Teams, signed webhook), SMTP and syslog over TLS, behind one [`Sink`] trait.
//!
//! A sink sends one notification once and says how it went: [`Delivered`], or a [`SendError`] that is
//! either retryable (network errors, timeouts, 429, 5xx, SMTP 4xx; with the receiver's `Retry-After`) or
//! permanent (any other answer, with its status and an excerpt of its body). Retries, backoff and dead
//! letters belong to the delivery loop, not here.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use janus_api::notifications::{ResolvedKind, ResolvedNotifications, ResolvedSink, Secret, SmtpSecurity};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::model::Notification;
use crate::redact::scrub_text;
use crate::render;

/// A delivery the receiver accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The HTTP or SMTP status of the answer (`None` for syslog: TCP has no answer).
    pub status: Option<u16>,
}

/// Why a delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later: a network error, a timeout, 429, 5xx or an SMTP 4xx answer.
    #[error("retryable: {reason}")]
    Retryable {
        /// The wait the receiver asked for (`Retry-After`), if any.
        retry_after: Option<Duration>,
        /// What happened (no URL, no secret).
        reason: String,
    },
    /// Retrying will not help: the receiver refused the message (4xx other than 408/429, SMTP 5xx, a
    /// redirect, an address it does not take).
    #[error("permanent: status {status:?}: {body}")]
    Permanent {
        /// The HTTP or SMTP status, when there was an answer.
        status: Option<u16>,
        /// The first 512 characters of the answer (scrubbed), or what was wrong.
        body: String,
    },
}

/// A sink could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("notifications sink {sink}: {reason}")]
pub struct BuildError {
    /// The sink's name.
    pub sink: String,
    /// Why.
    pub reason: String,
}

/// One configured receiver.
pub trait Sink: Send + Sync {
    /// The sink's configured name (part of the idempotency key).
    fn name(&self) -> &str;

    /// Whether this sink sends `n`: its event filter takes the kind, and, for chat and email, the
    /// notification carries a message (with a recipient, for email).
    fn accepts(&self, n: &Notification) -> bool;

    /// Sends `n` once. `idempotency_key` (from [`Notification::idempotency_key`]) goes with the delivery
    /// (an HTTP header, the CloudEvents id, the email's Message-ID, the syslog structured data) so a
    /// receiver can drop a repeat after a crash between send and commit.
    fn send<'a>(&'a self, n: &'a Notification, idempotency_key: &'a str)
    -> BoxFuture<'a, Result<Delivered, SendError>>;
}

fn build_err(sink: &ResolvedSink, reason: impl Into<String>) -> BuildError {
    BuildError {
        sink: sink.name.clone(),
        reason: reason.into(),
    }
}

/// Builds every configured sink. `hostname` is the sender's name in syslog lines (the pod name).
pub fn build(resolved: &ResolvedNotifications, hostname: &str) -> Result<Vec<Box<dyn Sink>>, BuildError> {
    let timeout = Duration::from_secs(resolved.config.timeout_seconds);
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for s in &resolved.sinks {
        sinks.push(match &s.kind {
            ResolvedKind::Slack { config, .. } => Box::new(HttpSink::new(s, &config.ca_file, timeout)?),
            ResolvedKind::Teams { config, .. } => Box::new(HttpSink::new(s, &config.ca_file, timeout)?),
            ResolvedKind::Webhook { config, .. } => Box::new(HttpSink::new(s, &config.ca_file, timeout)?),
            ResolvedKind::Email { .. } => Box::new(EmailSink::new(s, timeout)?),
            ResolvedKind::Syslog { .. } => Box::new(SyslogSink::new(s, hostname, timeout)?),
        });
    }
    Ok(sinks)
}

fn read_ca(sink: &ResolvedSink, path: &str) -> Result<Option<Vec<u8>>, BuildError> {
    if path.is_empty() {
        return Ok(None);
    }
    std::fs::read(path)
        .map(Some)
        .map_err(|e| build_err(sink, format!("cannot read caFile {path}: {e}")))
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// One HTTP POST to make: URL (a secret), body, content type, extra headers.
type Outgoing = (Secret, Vec<u8>, &'static str, Vec<(String, String)>);

/// Slack, Teams and the generic webhook: one JSON POST.
struct HttpSink {
    sink: ResolvedSink,
    client: reqwest::Client,
}

impl HttpSink {
    fn new(sink: &ResolvedSink, ca_file: &str, timeout: Duration) -> Result<Self, BuildError> {
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would send the signed body (or the webhook's secret path) somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("k8s-janus/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = read_ca(sink, ca_file)? {
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| build_err(sink, format!("caFile {ca_file}: {e}")))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let client = b.build().map_err(|e| build_err(sink, e.to_string()))?;
        Ok(Self {
            sink: sink.clone(),
            client,
        })
    }

    /// The URL and the body (with content type and extra headers) for `n`.
    fn request(&self, n: &Notification, key: &str) -> Option<Outgoing> {
        match &self.sink.kind {
            ResolvedKind::Slack {
                config,
                url,
                route_urls,
            } => {
                let message = n.message.as_ref()?;
                let route = config.routes.iter().enumerate().find(|(_, r)| {
                    let cluster_ok = r.clusters.is_empty()
                        || n.event
                            .cluster
                            .as_ref()
                            .is_some_and(|c| r.clusters.iter().any(|x| x == c));
                    let policy_ok =
                        r.policies.is_empty() || n.policy.as_ref().is_some_and(|p| r.policies.iter().any(|x| x == p));
                    cluster_ok && policy_ok
                });
                let target = route.and_then(|(i, _)| route_urls.get(&i)).unwrap_or(url).clone();
                let channel = route
                    .map(|(_, r)| r.channel.as_str())
                    .filter(|c| !c.is_empty())
                    .unwrap_or(&config.channel);
                let body = render::slack(message, Some(channel)).to_string().into_bytes();
                Some((target, body, "application/json", Vec::new()))
            }
            ResolvedKind::Teams { url, .. } => {
                let body = render::teams(n.message.as_ref()?).to_string().into_bytes();
                Some((url.clone(), body, "application/json", Vec::new()))
            }
            ResolvedKind::Webhook {
                url, hmac_key, headers, ..
            } => {
                let body = render::cloudevent(n, key).to_string().into_bytes();
                let t = chrono::Utc::now().timestamp();
                let mut h: Vec<(String, String)> = headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string()))
                    .collect();
                h.push((
                    render::SIGNATURE_HEADER.into(),
                    render::signature(hmac_key.expose().as_bytes(), t, &body),
                ));
                Some((url.clone(), body, "application/cloudevents+json", h))
            }
            _ => None,
        }
    }
}

impl Sink for HttpSink {
    fn name(&self) -> &str {
        &self.sink.name
    }

    fn accepts(&self, n: &Notification) -> bool {
        if !self.sink.events.contains(&n.event.kind) {
            return false;
        }
        match self.sink.kind {
            ResolvedKind::Webhook { .. } => true,
            _ => n.message.is_some(),
        }
    }

    fn send<'a>(&'a self, n: &'a Notification, key: &'a str) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            let Some((url, body, content_type, headers)) = self.request(n, key) else {
                return Err(SendError::Permanent {
                    status: None,
                    body: "this sink has nothing to send for this event".into(),
                });
            };
            let mut req = self
                .client
                .post(url.expose())
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .header(render::IDEMPOTENCY_HEADER, key)
                .body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                // The URL is a credential (Slack, Teams): never in an error.
                Err(e) => {
                    let what = if e.is_timeout() { "timed out" } else { "request failed" };
                    return Err(SendError::Retryable {
                        retry_after: None,
                        reason: format!("{what}: {}", e.without_url()),
                    });
                }
            };
            let status = resp.status();
            if status.is_success() {
                return Ok(Delivered {
                    status: Some(status.as_u16()),
                });
            }
            let wait = retry_after(resp.headers());
            let text = match tokio::time::timeout(Duration::from_secs(5), resp.text()).await {
                Ok(Ok(t)) => t,
                _ => String::new(),
            };
            let excerpt = scrub_text(&text.chars().take(512).collect::<String>());
            if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
                Err(SendError::Retryable {
                    retry_after: wait,
                    reason: format!("HTTP {}: {excerpt}", status.as_u16()),
                })
            } else {
                Err(SendError::Permanent {
                    status: Some(status.as_u16()),
                    body: excerpt,
                })
            }
        })
    }
}

/// SMTP with lettre: one connection per message (the delivery loop sends few).
struct EmailSink {
    sink: ResolvedSink,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    timeout: Duration,
}

impl EmailSink {
    fn new(sink: &ResolvedSink, timeout: Duration) -> Result<Self, BuildError> {
        let ResolvedKind::Email { config, password } = &sink.kind else {
            return Err(build_err(sink, "not an email sink"));
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
            .port(config.port())
            .timeout(Some(timeout));
        let tls = || -> Result<TlsParameters, BuildError> {
            let mut p = TlsParameters::builder(config.host.clone());
            if let Some(pem) = read_ca(sink, &config.ca_file)? {
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| build_err(sink, format!("caFile {}: {e}", config.ca_file)))?;
                p = p.add_root_certificate(cert);
            }
            p.build_rustls().map_err(|e| build_err(sink, e.to_string()))
        };
        b = match config.security {
            SmtpSecurity::Starttls => b.tls(Tls::Required(tls()?)),
            SmtpSecurity::Tls => b.tls(Tls::Wrapper(tls()?)),
            SmtpSecurity::None => b.tls(Tls::None),
        };
        if let Some(pw) = password {
            b = b.credentials(Credentials::new(config.username.clone(), pw.expose().to_string()));
        }
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| build_err(sink, format!("from {:?}: {e}", config.from)))?;
        let reply_to = if config.reply_to.is_empty() {
            None
        } else {
            Some(
                config
                    .reply_to
                    .parse()
                    .map_err(|e| build_err(sink, format!("replyTo {:?}: {e}", config.reply_to)))?,
            )
        };
        Ok(Self {
            sink: sink.clone(),
            transport: b.build(),
            from,
            reply_to,
            timeout,
        })
    }
}

impl Sink for EmailSink {
    fn name(&self) -> &str {
        &self.sink.name
    }

    fn accepts(&self, n: &Notification) -> bool {
        self.sink.events.contains(&n.event.kind) && n.message.as_ref().is_some_and(|m| !m.to.emails.is_empty())
    }

    fn send<'a>(&'a self, n: &'a Notification, key: &'a str) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            let permanent = |body: String| SendError::Permanent { status: None, body };
            let message = n
                .message
                .as_ref()
                .ok_or_else(|| permanent("no message for this event".into()))?;
            let body = render::email(message);
            let domain = self.from.email.domain().to_string();
            let digest = hex::encode(Sha256::digest(key.as_bytes()));
            let mut b = lettre::Message::builder()
                .from(self.from.clone())
                .subject(body.subject)
                // The same delivery always has the same Message-ID: mail systems drop the repeat.
                .message_id(Some(format!("<{}@{domain}>", &digest[..32])))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("X-Janus-Idempotency-Key"),
                    key.to_string(),
                ));
            if let Some(r) = &self.reply_to {
                b = b.reply_to(r.clone());
            }
            if message.urgent {
                b = b
                    .raw_header(HeaderValue::new(
                        HeaderName::new_from_ascii_str("Importance"),
                        "high".into(),
                    ))
                    .raw_header(HeaderValue::new(
                        HeaderName::new_from_ascii_str("X-Priority"),
                        "1".into(),
                    ));
            }
            for to in &message.to.emails {
                let mbox: Mailbox = to
                    .parse()
                    .map_err(|e| permanent(format!("recipient {to:?} is not an address: {e}")))?;
                b = b.to(mbox);
            }
            let email = b
                .multipart(
                    MultiPart::alternative()
                        .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(body.text))
                        .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(body.html)),
                )
                .map_err(|e| permanent(format!("cannot build the message: {e}")))?;
            // lettre's own timeout bounds each socket operation, not the conversation: a server that
            // keeps a refused login waiting holds it for minutes (seen with aiosmtpd). Bound the whole.
            let sent = tokio::time::timeout(self.timeout, self.transport.send(email)).await;
            let Ok(sent) = sent else {
                return Err(SendError::Retryable {
                    retry_after: None,
                    reason: format!("timed out after {:?}", self.timeout),
                });
            };
            match sent {
                Ok(r) => Ok(Delivered {
                    status: r.code().to_string().parse().ok(),
                }),
                Err(e) if e.is_permanent() => Err(SendError::Permanent {
                    status: e.status().and_then(|c| c.to_string().parse().ok()),
                    body: scrub_text(&e.to_string()),
                }),
                Err(e) => Err(SendError::Retryable {
                    retry_after: None,
                    reason: scrub_text(&e.to_string()),
                }),
            }
        })
    }
}

/// Syslog over TCP (TLS unless `insecure`), one connection per message, octet-counted.
struct SyslogSink {
    sink: ResolvedSink,
    host: String,
    port: u16,
    app_name: String,
    hostname: String,
    tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
}

impl SyslogSink {
    fn new(sink: &ResolvedSink, hostname: &str, timeout: Duration) -> Result<Self, BuildError> {
        let ResolvedKind::Syslog { config } = &sink.kind else {
            return Err(build_err(sink, "not a syslog sink"));
        };
        let tls = if config.uses_tls() {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(pem) = read_ca(sink, &config.ca_file)? {
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| build_err(sink, format!("caFile {}: {e}", config.ca_file)))?;
                    roots
                        .add(c)
                        .map_err(|e| build_err(sink, format!("caFile {}: {e}", config.ca_file)))?;
                }
            }
            let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| build_err(sink, e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
        } else {
            None
        };
        Ok(Self {
            sink: sink.clone(),
            host: config.host.clone(),
            port: config.port,
            app_name: config.app_name.clone(),
            hostname: hostname.to_string(),
            tls,
            timeout,
        })
    }

    async fn deliver(&self, frame: &[u8]) -> Result<(), SendError> {
        let retry = |what: &str, e: &dyn std::fmt::Display| SendError::Retryable {
            retry_after: None,
            reason: format!("{what} {}:{}: {e}", self.host, self.port),
        };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| retry("cannot connect to", &e))?;
        match &self.tls {
            Some(connector) => {
                let name = ServerName::try_from(self.host.clone()).map_err(|e| SendError::Permanent {
                    status: None,
                    body: format!("host {:?} is not a TLS server name: {e}", self.host),
                })?;
                let mut s = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| retry("TLS handshake with", &e))?;
                s.write_all(frame).await.map_err(|e| retry("cannot write to", &e))?;
                // close_notify, so the receiver reads everything before the connection ends.
                s.shutdown().await.map_err(|e| retry("cannot close", &e))?;
            }
            None => {
                let mut s = tcp;
                s.write_all(frame).await.map_err(|e| retry("cannot write to", &e))?;
                s.shutdown().await.map_err(|e| retry("cannot close", &e))?;
            }
        }
        Ok(())
    }
}

impl Sink for SyslogSink {
    fn name(&self) -> &str {
        &self.sink.name
    }

    fn accepts(&self, n: &Notification) -> bool {
        self.sink.events.contains(&n.event.kind)
    }

    fn send<'a>(&'a self, n: &'a Notification, key: &'a str) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            let frame = render::octet_frame(&render::syslog_line(n, &self.hostname, &self.app_name, key));
            match tokio::time::timeout(self.timeout, self.deliver(&frame)).await {
                Ok(r) => r.map(|()| Delivered { status: None }),
                Err(_) => Err(SendError::Retryable {
                    retry_after: None,
                    reason: format!(
                        "timed out after {:?} sending to {}:{}",
                        self.timeout, self.host, self.port
                    ),
                }),
            }
        })
    }
}
