//! The client commands' arguments (clap derive), shared by `janus <command>` and the `kubectl janus` plugin,
//! and the dispatcher that runs one and returns the process exit code.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;
use crate::{CliError, ExitCode, commands, stream};

/// The server to talk to: `--url`, else `JANUS_URL`, else `config.toml`.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// Base URL of the janus web (default: JANUS_URL, then the URL saved by `janus login`).
    #[arg(long, env = "JANUS_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Allow a plain http:// URL to a host other than localhost: the token would cross the network unencrypted.
    #[arg(long, env = "JANUS_INSECURE_HTTP")]
    pub insecure_http: bool,
}

/// `-o`.
#[derive(Debug, Clone, Args)]
pub struct Out {
    /// Output format: a table for people, or the API's JSON objects unchanged (docs/cli.md).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Log in: with a password (local accounts), in the browser (--oidc) or with a personal API token.
    Login(LoginArgs),
    /// Log out: end the CLI session on the server and delete the saved token.
    Logout(LogoutArgs),
    /// Show who you are logged in as, and with which credential.
    Whoami {
        /// The server.
        #[command(flatten)]
        conn: Conn,
        /// The output format.
        #[command(flatten)]
        out: Out,
    },
    /// Ask for access to namespaces of a cluster.
    Request(RequestArgs),
    /// List your requests (--all: everyone's, for admins).
    Requests(ListArgs),
    /// Show one request.
    Show {
        /// The request's name.
        request: String,
        /// The server.
        #[command(flatten)]
        conn: Conn,
        /// The output format.
        #[command(flatten)]
        out: Out,
    },
    /// Approve a request (approvers).
    Approve {
        /// The request's name.
        request: String,
        /// Grant access for this long instead of what was asked (2h, 30m, 1h30m).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<u64>,
        /// A comment, shown with the request and kept in the audit log.
        #[arg(long)]
        comment: Option<String>,
        /// The server.
        #[command(flatten)]
        conn: Conn,
        /// The output format.
        #[command(flatten)]
        out: Out,
    },
    /// Deny a pending request.
    Deny {
        /// The request's name.
        request: String,
        /// Why (shown to the requester).
        #[arg(long)]
        reason: String,
        /// The server.
        #[command(flatten)]
        conn: Conn,
        /// The output format.
        #[command(flatten)]
        out: Out,
    },
    /// Revoke access before it expires (admins).
    Revoke {
        /// The request's name.
        request: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        /// The server.
        #[command(flatten)]
        conn: Conn,
        /// The output format.
        #[command(flatten)]
        out: Out,
    },
    /// Extend active access (admins).
    Extend {
        /// The request's name.
        request: String,
        /// How much longer (30m, 1h).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: u64,
        /// Why (shown in the output; the server records the extension and who made it).
        #[arg(long)]
        reason: Option<String>,
        /// The server.
        #[command(flatten)]
        conn: Conn,
        /// The output format.
        #[command(flatten)]
        out: Out,
    },
    /// Withdraw your own request.
    Withdraw {
        /// The request's name.
        request: String,
        /// The server.
        #[command(flatten)]
        conn: Conn,
        /// The output format.
        #[command(flatten)]
        out: Out,
    },
    /// Open an interactive shell in a pod, through the recorded terminal.
    Shell(ShellCmd),
    /// Run a command in a pod without a terminal: stdin, stdout, stderr and the exit code pass through.
    Exec(ExecCmd),
    /// Print a container's logs (-f: follow).
    Logs(LogsCmd),
    /// Personal API tokens: list, create, revoke.
    Tokens {
        /// The subcommand.
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Print a shell completion script (bash, zsh or fish).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `janus login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
    /// Local account name (asked for when left out).
    #[arg(long, short = 'u', conflicts_with_all = ["oidc", "token"])]
    pub username: Option<String>,
    /// Read the password from the first line of stdin instead of asking.
    #[arg(long, conflicts_with_all = ["oidc", "token"])]
    pub password_stdin: bool,
    /// Sign in with the identity provider in a browser (OAuth device flow).
    #[arg(long, conflicts_with = "token")]
    pub oidc: bool,
    /// Use a personal API token (janus_pat_…) created in the web UI; `-` reads it from stdin.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// `janus logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
}

/// `janus request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The cluster.
    #[arg(long)]
    pub cluster: String,
    /// Namespaces, comma-separated or repeated.
    #[arg(
        short = 'n',
        long = "namespace",
        value_delimiter = ',',
        required = true,
        value_name = "NS"
    )]
    pub namespaces: Vec<String>,
    /// For how long (2h, 30m, 1h30m; default: the server's default).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<u64>,
    /// Why you need access.
    #[arg(long)]
    pub reason: String,
    /// The access role (`exec` when left out).
    #[arg(long)]
    pub role: Option<String>,
    /// When access should start: RFC 3339 (2030-01-02T09:00:00Z) or from now (+1h).
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// Only pods matching this label selector (app=checkout,tier in (a,b)).
    #[arg(long, conflicts_with = "workload")]
    pub selector: Option<String>,
    /// Only the pods of one workload: KIND/NAME (deployment/checkout); one namespace only.
    #[arg(long, value_name = "KIND/NAME")]
    pub workload: Option<String>,
    /// Activate at once under the policy's break-glass rule (reviewed afterwards).
    #[arg(long)]
    pub break_glass: bool,
    /// Wait until access is active (exit 0), or ended without (exit 9).
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (exit 9).
    #[arg(long, value_name = "DURATION", value_parser = parse_wait_timeout, default_value = "30m")]
    pub wait_timeout: u64,
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
    /// The output format.
    #[command(flatten)]
    pub out: Out,
}

/// `janus requests`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Everyone's requests (admins).
    #[arg(long)]
    pub all: bool,
    /// Only this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Only this phase (Pending, Active, …).
    #[arg(long)]
    pub phase: Option<String>,
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
    /// The output format.
    #[command(flatten)]
    pub out: Out,
}

/// `janus shell`.
#[derive(Debug, Args)]
pub struct ShellCmd {
    /// The request's name.
    pub request: String,
    /// The pod (default: the only one the grant reaches).
    pub pod: Option<String>,
    /// The container (default: the pod's first).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// The namespace (default: the request's only one).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
}

/// `janus exec`.
#[derive(Debug, Args)]
pub struct ExecCmd {
    /// The request's name.
    pub request: String,
    /// The pod.
    pub pod: String,
    /// The container (default: the pod's first).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// The namespace (default: the request's only one).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `janus logs`.
#[derive(Debug, Args)]
pub struct LogsCmd {
    /// The request's name.
    pub request: String,
    /// The pod.
    pub pod: String,
    /// The container (default: the pod's first).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// The namespace (default: the request's only one).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Keep printing new lines until access ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<i64>,
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
}

/// `janus tokens …`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// List your personal API tokens (--all: everyone's, for admins).
    List {
        /// Everyone's (admins).
        #[arg(long)]
        all: bool,
        /// The server.
        #[command(flatten)]
        conn: Conn,
        /// The output format.
        #[command(flatten)]
        out: Out,
    },
    /// Create a token; it is printed once, on stdout.
    Create {
        /// A label for it (1 to 64 characters).
        #[arg(long)]
        name: String,
        /// What it may do: read, request, approve (comma-separated).
        #[arg(long, value_delimiter = ',', required = true, value_parser = ["read", "request", "approve"])]
        scopes: Vec<String>,
        /// Days until it expires (default: the server's).
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
        /// The server.
        #[command(flatten)]
        conn: Conn,
        /// The output format.
        #[command(flatten)]
        out: Out,
    },
    /// Revoke a token by its display id (janus_pat_abcd1234).
    Revoke {
        /// The display id `janus tokens list` shows.
        display_id: String,
        /// The server.
        #[command(flatten)]
        conn: Conn,
    },
}

/// `kubectl janus …`: the client commands alone, as a kubectl plugin.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl janus",
    bin_name = "kubectl janus",
    version,
    about = "k8s-janus: just-in-time access to pods, as a kubectl plugin",
    after_long_help = EXIT_CODES_HELP
)]
pub struct Plugin {
    /// The command.
    #[command(subcommand)]
    pub command: ClientCommand,
}

/// The exit codes, for `--help` (docs/cli.md has the same table).
pub const EXIT_CODES_HELP: &str = "Exit codes of the client commands:
  0  success
  2  bad flags or arguments, or a value the server refused (422)
  3  not logged in, or the token is invalid, expired or revoked
  4  forbidden (not an approver, the token lacks a scope, the role offers no shell)
  5  not found (request, pod, token)
  6  wrong phase or conflict (not Active, already decided, a limit reached)
  7  cannot reach the server, or an unexpected answer
  8  the server ended the session (revoked, expired, idle, user disabled, token revoked)
  9  --wait gave up, or the request ended without becoming Active
  exec: the remote command's exit code, or 255 when janus exec itself failed";

/// A duration like `2h`, `90m`, `1h30m`, `45s`, in whole seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); write it like 2h, 30m or 1h30m"))?;
    if d.as_secs() == 0 {
        return Err(format!("{s:?} is shorter than a second"));
    }
    Ok(d.as_secs())
}

/// Longest `--wait-timeout`: a year; anything longer is a typo (and would overflow the clock's arithmetic).
pub const MAX_WAIT_SECS: u64 = 366 * 24 * 3600;

/// `--wait-timeout`: a duration of at most [`MAX_WAIT_SECS`].
pub fn parse_wait_timeout(s: &str) -> Result<u64, String> {
    let secs = parse_duration(s)?;
    if secs > MAX_WAIT_SECS {
        return Err(format!("{s:?} is longer than a year; give at most 366d"));
    }
    Ok(secs)
}

/// Runs a client command; `root` is the whole command line (for completions). Returns the exit code; the
/// message of a failure is already printed.
pub async fn run(cmd: ClientCommand, root: clap::Command) -> i32 {
    match dispatch(cmd, root).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("janus: {}", crate::output::clean_text(&e.message));
            e.code as i32
        }
    }
}

async fn dispatch(cmd: ClientCommand, root: clap::Command) -> Result<i32, CliError> {
    use crate::config::resolve_target;
    match cmd {
        ClientCommand::Login(a) => commands::login::login(a).await,
        ClientCommand::Logout(a) => commands::login::logout(a).await,
        ClientCommand::Whoami { conn, out } => commands::login::whoami(&resolve_target(&conn)?, out.format).await,
        ClientCommand::Request(a) => {
            let t = resolve_target(&a.conn)?;
            commands::requests::create(&t, a).await
        }
        ClientCommand::Requests(a) => {
            let t = resolve_target(&a.conn)?;
            commands::requests::list(&t, &a).await
        }
        ClientCommand::Show { request, conn, out } => {
            commands::requests::show(&resolve_target(&conn)?, &request, out.format).await
        }
        ClientCommand::Approve {
            request,
            duration,
            comment,
            conn,
            out,
        } => {
            let body = decision_body([
                ("ttlSeconds", duration.map(serde_json::Value::from)),
                ("comment", comment.map(serde_json::Value::from)),
            ]);
            let t = resolve_target(&conn)?;
            commands::requests::decide(&t, &request, "approve", body, out.format).await
        }
        ClientCommand::Deny {
            request,
            reason,
            conn,
            out,
        } => {
            let body = decision_body([("reason", Some(reason.into()))]);
            let t = resolve_target(&conn)?;
            commands::requests::decide(&t, &request, "deny", body, out.format).await
        }
        ClientCommand::Revoke {
            request,
            reason,
            conn,
            out,
        } => {
            let body = decision_body([("reason", reason.map(serde_json::Value::from))]);
            let t = resolve_target(&conn)?;
            commands::requests::decide(&t, &request, "revoke", body, out.format).await
        }
        ClientCommand::Extend {
            request,
            duration,
            reason,
            conn,
            out,
        } => {
            let body = decision_body([("seconds", Some(duration.into()))]);
            // The API's extend takes no reason; say it here so the person sees it was not recorded.
            if reason.is_some() {
                eprintln!("janus: note: the server records who extended and by how much, not a reason");
            }
            let t = resolve_target(&conn)?;
            commands::requests::decide(&t, &request, "extend", body, out.format).await
        }
        ClientCommand::Withdraw { request, conn, out } => {
            let t = resolve_target(&conn)?;
            commands::requests::decide(&t, &request, "withdraw", serde_json::Map::new(), out.format).await
        }
        ClientCommand::Shell(a) => {
            let t = resolve_target(&a.conn)?;
            stream::shell(
                &t,
                &stream::ShellArgs {
                    request: a.request,
                    pod: a.pod,
                    container: a.container,
                    namespace: a.namespace,
                },
            )
            .await
        }
        ClientCommand::Exec(a) => {
            // janus exec's own failures are 255 (ssh's convention), so scripts tell them from the command's.
            let t = resolve_target(&a.conn).map_err(exec_failure)?;
            stream::exec(
                &t,
                &stream::ExecArgs {
                    request: a.request,
                    pod: a.pod,
                    container: a.container,
                    namespace: a.namespace,
                    command: a.command,
                },
            )
            .await
        }
        ClientCommand::Logs(a) => {
            let t = resolve_target(&a.conn)?;
            stream::logs(
                &t,
                &stream::LogsArgs {
                    request: a.request,
                    pod: a.pod,
                    container: a.container,
                    namespace: a.namespace,
                    follow: a.follow,
                    tail: a.tail,
                },
            )
            .await
        }
        ClientCommand::Tokens { command } => commands::tokens::run(command).await,
        ClientCommand::Completion { shell } => {
            let mut root = root;
            let name = root.get_bin_name().unwrap_or(root.get_name()).to_string();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut root, name, &mut buf);
            crate::output::out(&String::from_utf8_lossy(&buf));
            Ok(0)
        }
    }
}

/// The JSON body of a decision: only the fields that were given (the API reads a missing field as "not
/// said", e.g. approve without a duration keeps the requested TTL).
fn decision_body<const N: usize>(
    fields: [(&str, Option<serde_json::Value>); N],
) -> serde_json::Map<String, serde_json::Value> {
    fields
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?)))
        .collect()
}

fn exec_failure(e: CliError) -> CliError {
    CliError::new(ExitCode::ExecFailed, e.message)
}

/// Whether the program was started as the kubectl plugin (`kubectl-janus` on the PATH, argv\[0\]'s file name).
pub fn started_as_plugin(argv0: Option<&std::ffi::OsStr>) -> bool {
    argv0
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n == "kubectl-janus")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("45s"), Ok(45));
        assert!(parse_duration("2 fortnights").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_wait_timeout("366d"), Ok(MAX_WAIT_SECS));
        assert!(parse_wait_timeout("300000000y").is_err());
    }

    #[test]
    fn the_plugin_is_recognised_by_its_file_name() {
        assert!(started_as_plugin(Some("/usr/local/bin/kubectl-janus".as_ref())));
        assert!(started_as_plugin(Some("kubectl-janus".as_ref())));
        assert!(!started_as_plugin(Some("/usr/bin/janus".as_ref())));
        assert!(!started_as_plugin(None));
    }

    #[test]
    fn the_plugin_definition_is_consistent() {
        use clap::CommandFactory as _;
        Plugin::command().debug_assert();
    }
}
