//! Streams through the web's terminal socket and log endpoint: an interactive shell, a command run without a
//! TTY (`janus exec`), and container logs.
//!
//! Each command is a plain async function the command line calls with its [`Target`] and an argument
//! struct; it returns the process exit code (docs/cli.md, "Exit codes") or a [`CliError`].

mod exec;
mod http;
mod logs;
mod shell;
mod tty;
mod ws;

pub use exec::{ExecArgs, exec};
pub use logs::{LogsArgs, logs};
pub use shell::{ShellArgs, shell};

use serde::Deserialize;

use crate::{CliError, ExitCode, Target};

/// Where a stream goes once namespace and pod are known.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// A namespace the request grants.
    pub namespace: String,
    /// The pod.
    pub pod: String,
}

#[derive(Deserialize)]
struct RequestView {
    #[serde(default)]
    namespaces: Vec<String>,
}

#[derive(Deserialize)]
struct PodList {
    #[serde(default)]
    pods: Vec<PodItem>,
}

#[derive(Deserialize)]
struct PodItem {
    name: String,
}

/// A refused look-up of what the person left out: a token with only the `request` scope may open the socket
/// but not read the request or list its pods, so say how to do without the look-up.
fn lookup_hint(e: CliError, what: &str) -> CliError {
    if e.code != ExitCode::Forbidden {
        return e;
    }
    CliError::new(
        ExitCode::Forbidden,
        format!(
            "{}; janus looks up {what} only when it is left out, and that needs a token with the `read` scope: give \
             -n NAMESPACE and POD, or use a token with read",
            e.message.trim_end_matches('.')
        ),
    )
}

/// Fills in what the person left out: the request's only namespace, and (when `pod` is `None`) the only pod
/// the grant reaches there. Several candidates are an error that lists them, never a guess.
pub(crate) async fn resolve(
    t: &Target,
    request: &str,
    namespace: Option<&str>,
    pod: Option<&str>,
) -> Result<Place, CliError> {
    let namespace = match namespace {
        Some(ns) => ns.to_string(),
        None => {
            let view: RequestView = http::get_json(t, &["api", "v1", "requests", request], &[])
                .await
                .map_err(|e| lookup_hint(e, "the namespace"))?;
            only_one(view.namespaces, || {
                (
                    format!("request {request} grants no namespace"),
                    format!("request {request} grants several namespaces; choose one with -n"),
                )
            })?
        }
    };
    let pod = match pod {
        Some(p) => p.to_string(),
        None => {
            let list: PodList = http::get_json(
                t,
                &["api", "v1", "requests", request, "pods"],
                &[("namespace", namespace.as_str())],
            )
            .await
            .map_err(|e| lookup_hint(e, "the pod"))?;
            only_one(list.pods.into_iter().map(|p| p.name).collect(), || {
                (
                    format!("request {request} reaches no pod in namespace {namespace}"),
                    format!("request {request} reaches several pods in namespace {namespace}; choose one"),
                )
            })?
        }
    };
    Ok(Place { namespace, pod })
}

/// The only candidate; none is "not found", several are a usage error that lists them (never a guess).
/// `what` gives the two messages (the list is appended to the second after `: `).
fn only_one(mut candidates: Vec<String>, what: impl FnOnce() -> (String, String)) -> Result<String, CliError> {
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        0 => Err(CliError::new(ExitCode::NotFound, what().0)),
        _ => Err(CliError::new(
            ExitCode::Usage,
            format!("{}: {}", what().1, candidates.join(", ")),
        )),
    }
}

/// Reads stdin on a thread of its own and hands the bytes over; the channel closes at end of input.
///
/// Not `tokio::io::stdin`: its read runs on the runtime's blocking pool and cannot be cancelled, so the
/// runtime's shutdown would wait for one more key press after the session ended. A plain thread ends with
/// the process.
pub(crate) fn stdin_reader() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    use std::io::Read as _;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let spawned = std::thread::Builder::new().name("janus-stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, "stdin read failed; treated as end of input");
                    return;
                }
            }
        }
    });
    if let Err(e) = spawned {
        // Without the thread the sender is gone and the receiver reports end of input at once.
        tracing::warn!(error = %e, "cannot start the stdin reader");
    }
    rx
}

/// Writes to stdout or stderr at once (a shell's screen and a command's output must not wait in a buffer).
pub(crate) fn write_now(to: &mut impl std::io::Write, data: &[u8]) -> std::io::Result<()> {
    to.write_all(data)?;
    to.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_look_up_says_how_to_do_without_it() {
        let e = lookup_hint(
            CliError::new(ExitCode::Forbidden, "this token lacks the `read` scope"),
            "the pod",
        );
        assert_eq!(e.code, ExitCode::Forbidden);
        assert!(e.message.contains("give -n NAMESPACE and POD"), "{}", e.message);
        let other = lookup_hint(CliError::new(ExitCode::NotFound, "no such request"), "the pod");
        assert_eq!(other.message, "no such request");
    }
}
