//! Bearer credentials for tools (the `janus` CLI, CI jobs): their formats, scopes and which API route
//! needs which scope. The web enforces these rules; the CLI shows them.
//!
//! Two kinds exist, told apart by a prefix that secret scanners can match:
//! - personal API tokens (`janus_pat_…`): created in the UI, scoped, expiring (at most
//!   `web.apiTokens.maxLifetimeDays`), stored hashed, shown once, revocable;
//! - CLI sessions (`janus_cli_…`): what `janus login` obtains (password or OIDC device flow); a login
//!   session like a browser's (a `web_sessions` row, expiry `web.cliSessionTtlSeconds`), carried as a
//!   bearer token instead of a cookie, with every scope.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Prefix of a personal API token.
pub const PAT_PREFIX: &str = "janus_pat_";
/// Prefix of a CLI session token.
pub const CLI_SESSION_PREFIX: &str = "janus_cli_";
/// Random characters after the prefix (base62: about 238 bits).
pub const SECRET_CHARS: usize = 40;

/// What a personal API token may do. A CLI session may do all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Read requests, clusters, policies, the audit log (what the owner may read in the UI).
    Read,
    /// Create and withdraw own requests, use granted access (terminal socket, exec, logs, debug).
    Request,
    /// Approve, deny, revoke and extend others' requests (when the owner is an approver).
    Approve,
}

impl TokenScope {
    /// Every scope.
    pub const ALL: [TokenScope; 3] = [TokenScope::Read, TokenScope::Request, TokenScope::Approve];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Request => "request",
            Self::Approve => "approve",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of bearer credential a string is, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerKind {
    /// `janus_pat_…`
    PersonalToken,
    /// `janus_cli_…`
    CliSession,
}

/// The kind of a bearer credential, if it is well-formed: a known prefix followed by exactly
/// [`SECRET_CHARS`] ASCII alphanumerics. Anything else is not looked up at all.
pub fn bearer_kind(token: &str) -> Option<BearerKind> {
    let (kind, rest) = if let Some(r) = token.strip_prefix(PAT_PREFIX) {
        (BearerKind::PersonalToken, r)
    } else if let Some(r) = token.strip_prefix(CLI_SESSION_PREFIX) {
        (BearerKind::CliSession, r)
    } else {
        return None;
    };
    (rest.len() == SECRET_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(kind)
}

/// SHA-256 hex of a bearer credential: the only form the database holds (and the key of a CLI
/// session's `web_sessions` row, like a cookie's id hash).
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The public id of a token: the prefix and the first 8 secret characters, what lists show and what
/// revocation names (`janus_pat_Ab12Cd34`). It identifies without being usable.
pub fn display_id(token: &str) -> String {
    let cut = token
        .find('_')
        .and_then(|i| token[i + 1..].find('_').map(|j| i + j + 2));
    match cut {
        Some(c) => token.chars().take(c + 8).collect(),
        None => token.chars().take(8).collect(),
    }
}

/// The scope an API call needs when made with a personal API token, or `None` when no personal
/// token may make it at all. `path` is the request path without the query.
///
/// Every route the server has is listed here explicitly, method by method; anything else (a route
/// added later without a decision here, an unknown action, a page) is `None`, so a new route is closed
/// to tokens until someone decides which scope it needs (the route-table test in
/// `crates/janus-web/tests/bearer.rs` fails until then).
///
/// - `read`: what the owner may read in the UI about requests, clusters, policies, the audit log and
///   recordings (stored records, not the cluster itself).
/// - `request`: creating and withdrawing own requests and everything that uses granted access to the
///   cluster: the terminal socket (shells, exec), `…/debug`, pod logs and pod events.
/// - `approve`: decisions on requests (approve, deny, revoke, extend, acknowledge).
/// - none: token, account and notification management, signing in, and quick-command writes (a quick
///   command later runs in the owner's browser terminal, so a leaked token must not plant one).
pub fn required_scope(method: &str, path: &str) -> Option<TokenScope> {
    use TokenScope::{Approve, Read, Request};
    // HEAD is answered by every GET route.
    let method = if method == "HEAD" { "GET" } else { method };
    let seg: Vec<&str> = path.split('/').collect();
    let rest = match seg.as_slice() {
        ["", "api", "v1", rest @ ..] => rest,
        ["", "ws", "terminal", name] if method == "GET" && !name.is_empty() => return Some(Request),
        _ => return None,
    };
    match (method, rest) {
        ("GET", ["openapi.yaml" | "openapi.json"]) => Some(Read),
        ("GET", ["session"]) => Some(Read),
        // Ends the CLI session the call is made with; for a personal token it changes nothing.
        ("POST", ["logout"]) => Some(Read),
        ("GET", ["events"]) => Some(Read),
        ("GET", ["requests"]) => Some(Read),
        ("POST", ["requests"]) => Some(Request),
        ("GET", ["requests", _]) => Some(Read),
        ("GET", ["requests", _, "timeline" | "pods" | "sessions"]) => Some(Read),
        // Pod logs and events are read from the cluster with the request's grant: using access.
        ("GET", ["requests", _, "logs" | "events"]) => Some(Request),
        ("POST", ["requests", _, "withdraw" | "debug"]) => Some(Request),
        ("POST", ["requests", _, "approve" | "deny" | "revoke" | "extend" | "acknowledge"]) => Some(Approve),
        ("GET", ["policy"] | ["approvals"] | ["roles"]) => Some(Read),
        ("GET", ["clusters"]) => Some(Read),
        ("GET", ["clusters", _, "namespaces" | "workloads" | "pods"]) => Some(Read),
        ("GET", ["audit"] | ["audit", "export"]) => Some(Read),
        ("GET", ["users"]) => Some(Read),
        ("GET", ["notifications", "dead"]) => Some(Read),
        ("GET", ["quick-commands"]) => Some(Read),
        ("GET", ["recordings", _] | ["commands"]) => Some(Read),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_kinds() {
        let secret = "a".repeat(SECRET_CHARS);
        assert_eq!(
            bearer_kind(&format!("{PAT_PREFIX}{secret}")),
            Some(BearerKind::PersonalToken)
        );
        assert_eq!(
            bearer_kind(&format!("{CLI_SESSION_PREFIX}{secret}")),
            Some(BearerKind::CliSession)
        );
        for bad in [
            String::new(),
            secret.clone(),
            format!("{PAT_PREFIX}{}", "a".repeat(SECRET_CHARS - 1)),
            format!("{PAT_PREFIX}{secret}x"),
            format!("{PAT_PREFIX}{}-", "a".repeat(SECRET_CHARS - 1)),
            format!("janus_xyz_{secret}"),
        ] {
            assert_eq!(bearer_kind(&bad), None, "{bad}");
        }
    }

    #[test]
    fn display_ids_do_not_reveal_the_secret() {
        let t = format!("{PAT_PREFIX}Ab12Cd34{}", "z".repeat(SECRET_CHARS - 8));
        assert_eq!(display_id(&t), "janus_pat_Ab12Cd34");
        assert_eq!(hash("x").len(), 64);
    }

    #[test]
    fn scopes_per_route() {
        use TokenScope::*;
        assert_eq!(required_scope("GET", "/api/v1/requests"), Some(Read));
        assert_eq!(required_scope("GET", "/api/v1/requests/r1/logs"), Some(Request));
        assert_eq!(required_scope("GET", "/api/v1/requests/r1/events"), Some(Request));
        assert_eq!(required_scope("HEAD", "/api/v1/requests/r1/logs"), Some(Request));
        assert_eq!(required_scope("GET", "/api/v1/requests/r1/pods"), Some(Read));
        assert_eq!(required_scope("POST", "/api/v1/quick-commands"), None);
        assert_eq!(required_scope("DELETE", "/api/v1/quick-commands/3"), None);
        assert_eq!(required_scope("GET", "/api/v1/somethingnew"), None);
        assert_eq!(required_scope("GET", "/api/v1"), None);
        assert_eq!(required_scope("POST", "/api/v1/requests"), Some(Request));
        assert_eq!(required_scope("POST", "/api/v1/requests/r1/withdraw"), Some(Request));
        assert_eq!(required_scope("POST", "/api/v1/requests/r1/debug"), Some(Request));
        assert_eq!(required_scope("GET", "/ws/terminal/r1"), Some(Request));
        for a in ["approve", "deny", "revoke", "extend"] {
            assert_eq!(
                required_scope("POST", &format!("/api/v1/requests/r1/{a}")),
                Some(Approve)
            );
        }
        assert_eq!(required_scope("POST", "/api/v1/tokens"), None);
        assert_eq!(required_scope("GET", "/api/v1/tokens"), None);
        assert_eq!(required_scope("DELETE", "/api/v1/tokens/x"), None);
        assert_eq!(required_scope("POST", "/api/v1/cli/login"), None);
        assert_eq!(required_scope("POST", "/api/v1/users"), None);
        assert_eq!(required_scope("PATCH", "/api/v1/users/bob"), None);
        assert_eq!(required_scope("GET", "/api/v1/users"), Some(Read));
        assert_eq!(required_scope("POST", "/api/v1/notifications/dead/1/retry"), None);
        assert_eq!(required_scope("POST", "/api/v1/requests/r1/unknown"), None);
        assert_eq!(required_scope("GET", "/requests"), None);
    }
}
