//! The terminal socket (`/ws/terminal/{name}`, crates/janus-web/src/terminal/session.rs): the connection with
//! the bearer credential, and the control messages (JSON text frames; data travels only in binary frames).

use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite};

use super::http;
use crate::{CliError, ExitCode, Target};

/// An open terminal socket.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How often an idle socket sends `{"type":"ping"}`, so proxies between us and the web (which close idle
/// connections, often after 60 s) keep it open. Pings are not input: the server's idle timeout still runs.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(25);

/// The keepalive message.
pub(crate) const PING: &str = r#"{"type":"ping"}"#;

/// Control messages from the server (crates/janus-web/src/terminal/protocol.rs `ServerControl`).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub(crate) enum ServerMsg {
    /// The shell or command started.
    Connected {},
    /// No input for a while: the session ends in `seconds` unless there is some.
    IdleWarning {
        /// Seconds left.
        seconds: i64,
    },
    /// The remote command ended with this code (exec mode), before the socket closes.
    Exit {
        /// The remote exit code.
        code: i32,
    },
    /// The session ended; the reason is a sentence for the person.
    Closed {
        /// Why.
        reason: String,
    },
    /// Something failed before or while connecting.
    Error {
        /// What.
        message: String,
    },
    /// A message a newer server sends that this client does not know: ignored.
    #[serde(other)]
    Unknown,
}

impl ServerMsg {
    /// Parses a text frame; a frame that is not a control message is ignored rather than fatal.
    pub(crate) fn parse(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or(Self::Unknown)
    }
}

/// Opens `/ws/terminal/{request}` with `query`, authenticated by the bearer (no cookie, no Origin, no csrf:
/// the web exempts bearer requests from both, issue 18 contract).
pub(crate) async fn connect(t: &Target, request: &str, query: &[(&str, &str)]) -> Result<Socket, CliError> {
    // rustls needs one crypto provider for the process; the workspace builds it with ring only. Installing
    // twice (a second stream in one process) is refused and harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let u = http::url(
        t,
        &["ws", "terminal", request],
        query,
        Some(|s| match s {
            "https" => Some("wss"),
            "http" => Some("ws"),
            _ => None,
        }),
    )?;
    let mut req = u
        .as_str()
        .into_client_request()
        .map_err(|e| CliError::new(ExitCode::Unreachable, format!("cannot open the terminal socket: {e}")))?;
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", t.token)).map_err(|_| {
        CliError::new(
            ExitCode::NotAuthenticated,
            "the stored token contains characters no token has; run: janus login",
        )
    })?;
    auth.set_sensitive(true);
    req.headers_mut().insert("authorization", auth);
    let config = WebSocketConfig::default().max_message_size(Some(4 << 20));
    let connector = tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(tls_config()?));
    let connecting = tokio_tungstenite::connect_async_tls_with_config(req, Some(config), true, Some(connector));
    let (socket, _) = tokio::time::timeout(Duration::from_secs(60), connecting)
        .await
        .map_err(|_| {
            CliError::new(
                ExitCode::Unreachable,
                format!("the janus server at {} did not open the terminal in 60 s", t.base_url),
            )
        })?
        .map_err(|e| handshake_error(t, e))?;
    Ok(socket)
}

/// The socket's TLS: the same trust as the HTTP client (reqwest with `rustls-tls` and `rustls-tls-native-roots`):
/// the bundled web PKI roots and the system's trust store, so a company CA installed on the machine works for
/// shells as it does for the API.
fn tls_config() -> Result<rustls::ClientConfig, CliError> {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(trust_roots()).with_no_client_auth())
        .map_err(|e| CliError::new(ExitCode::Unreachable, format!("cannot set up TLS: {e}")))
}

/// The bundled web PKI roots plus the system's readable ones.
fn trust_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!(
            errors = native.errors.len(),
            "some system root certificates could not be read"
        );
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system root certificates for the terminal socket");
    roots
}

/// An upgrade refused with an HTTP answer carries the web's JSON error; anything else is a connection problem.
fn handshake_error(t: &Target, e: tungstenite::Error) -> CliError {
    match e {
        tungstenite::Error::Http(resp) => {
            let body = resp.body().as_deref().unwrap_or_default();
            http::status_error(t, resp.status().as_u16(), body)
        }
        other => CliError::new(
            ExitCode::Unreachable,
            format!("cannot reach the janus server at {}: {other}", t.base_url),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_trusts_the_bundled_roots_and_builds_a_tls_config() {
        // At least every bundled web PKI root (docs/security.md), whatever the machine's store holds.
        assert!(trust_roots().len() >= webpki_roots::TLS_SERVER_ROOTS.len());
        assert!(tls_config().is_ok());
    }

    #[test]
    fn server_messages_parse_and_unknown_ones_are_ignored() {
        assert!(matches!(
            ServerMsg::parse(r#"{"type":"closed","reason":"access was revoked"}"#),
            ServerMsg::Closed { reason } if reason == "access was revoked"
        ));
        assert!(matches!(
            ServerMsg::parse(r#"{"type":"exit","code":3}"#),
            ServerMsg::Exit { code: 3 }
        ));
        assert!(matches!(
            ServerMsg::parse(r#"{"type":"idleWarning","seconds":30}"#),
            ServerMsg::IdleWarning { seconds: 30 }
        ));
        assert!(matches!(
            ServerMsg::parse(r#"{"type":"connected","session":"s","container":"c"}"#),
            ServerMsg::Connected {}
        ));
        assert!(matches!(ServerMsg::parse(r#"{"type":"future"}"#), ServerMsg::Unknown));
        assert!(matches!(ServerMsg::parse("not json"), ServerMsg::Unknown));
    }
}
