//! The `janus` command line client: logs in (password, OIDC device flow or a personal API token), creates and
//! decides requests, and opens shells, commands and log streams through the web's terminal socket, so the
//! engineer never holds a Kubernetes credential. It speaks only the public `/api/v1` and `/ws/terminal`.

pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod http;
pub mod output;
pub mod stream;

pub use cli::{ClientCommand, Plugin, run};
pub use error::{CliError, ExitCode};

/// Where the client talks to and with which credential (resolved from flags, `JANUS_URL`/`JANUS_TOKEN` and the
/// config directory).
#[derive(Clone)]
pub struct Target {
    /// Base URL of the web, without a trailing slash (`https://janus.example.com`).
    pub base_url: String,
    /// The bearer credential (`janus_pat_…` or `janus_cli_…`).
    pub token: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the credential.
        f.debug_struct("Target")
            .field("base_url", &self.base_url)
            .field("token", &janus_api::tokens::display_id(&self.token))
            .finish()
    }
}
