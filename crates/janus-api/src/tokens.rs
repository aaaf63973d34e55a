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
/// token may make it at all (managing tokens, managing users and notifications; pages are refused
/// before this is asked). `path` is the request path without the query.
///
/// Reads need `read`. Creating and withdrawing requests and everything that uses granted access
/// (`/ws/terminal/…`, `…/debug`, quick commands) need `request`. Decisions on requests (approve, deny,
/// revoke, extend) need `approve`.
pub fn required_scope(method: &str, path: &str) -> Option<TokenScope> {
    let safe = matches!(method, "GET" | "HEAD" | "OPTIONS");
    let seg: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    // Token and account management stays with a login session: a leaked token must not mint tokens
    // or change accounts.
    if path.starts_with("/api/v1/tokens") || path.starts_with("/api/v1/cli/") {
        return None;
    }
    if path.starts_with("/api/v1/users") || path.starts_with("/api/v1/notifications") {
        return safe.then_some(TokenScope::Read);
    }
    if path.starts_with("/ws/terminal/") {
        return Some(TokenScope::Request);
    }
    if safe {
        return (path.starts_with("/api/v1/") || path == "/api/v1").then_some(TokenScope::Read);
    }
    match seg.as_slice() {
        ["", "api", "v1", "requests"] => Some(TokenScope::Request),
        ["", "api", "v1", "requests", _, "withdraw" | "debug"] => Some(TokenScope::Request),
        ["", "api", "v1", "requests", _, "approve" | "deny" | "revoke" | "extend"] => Some(TokenScope::Approve),
        ["", "api", "v1", "quick-commands", ..] => Some(TokenScope::Request),
        ["", "api", "v1", "logout"] => Some(TokenScope::Read),
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
        assert_eq!(required_scope("GET", "/api/v1/requests/r1/logs"), Some(Read));
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
