//! What can go wrong in the client, and the documented exit code of each (docs/cli.md).

/// The documented exit codes of client commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Success.
    Ok = 0,
    /// Bad flags or arguments (clap's own code).
    Usage = 2,
    /// Not logged in, or the token is invalid, expired or revoked.
    NotAuthenticated = 3,
    /// The server refused: not an approver, the token lacks a scope, the role offers no shell, …
    Forbidden = 4,
    /// No such request, pod or token.
    NotFound = 5,
    /// The request is in the wrong phase for this, or was already decided.
    Conflict = 6,
    /// The server cannot be reached or answered something unexpected.
    Unreachable = 7,
    /// The server ended the session (revoked, expired, idle, user disabled, token revoked).
    SessionEnded = 8,
    /// `--wait` gave up, or the request ended without becoming Active.
    WaitFailed = 9,
    /// `janus exec` failed itself (not the remote command), as ssh does.
    ExecFailed = 255,
}

/// A client failure: what happened and what to do, shown on stderr; never a credential.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    /// The exit code.
    pub code: ExitCode,
    /// One or two sentences: what happened and what to do ("no active request for cluster prod; run: janus
    /// request …").
    pub message: String,
}

impl CliError {
    /// An error with a code.
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
