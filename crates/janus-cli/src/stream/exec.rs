//! `janus exec REQUEST POD -- COMMAND…`: a command in the pod without a TTY, through the terminal socket's
//! exec mode (recorded like a shell): stdin goes up as binary frames then `{"type":"eof"}`, frames prefixed
//! 1 go to stdout and 2 to stderr, and the remote exit code becomes ours. Works in pipes.

use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use super::ws::{self, ServerMsg};
use super::{resolve, stdin_reader, write_now};
use crate::{CliError, ExitCode, Target};

/// Limits of the socket's `command` parameters (issue 18 contract), checked here for a clear message.
const MAX_ARGS: usize = 64;
const MAX_ARG_BYTES: usize = 4096;
const MAX_TOTAL_BYTES: usize = 16 * 1024;

/// What `janus exec` was asked for.
#[derive(Debug, Clone, Default)]
pub struct ExecArgs {
    /// The access request's name.
    pub request: String,
    /// The pod.
    pub pod: String,
    /// The container; the server picks a pod's only container.
    pub container: Option<String>,
    /// The namespace; `None` picks the request's only one, or lists them.
    pub namespace: Option<String>,
    /// The command and its arguments (run as given, not through a shell).
    pub command: Vec<String>,
}

/// Runs the command and returns its exit code. Every failure of janus itself (not logged in, forbidden, the
/// server unreachable, the session ended by the server before the command finished) is a [`CliError`] with
/// exit code 255, as ssh does, so a script can tell it from the command's own codes.
pub async fn exec(t: &Target, a: &ExecArgs) -> Result<i32, CliError> {
    run(t, a)
        .await
        .map_err(|e| CliError::new(ExitCode::ExecFailed, e.message))
}

fn check_command(command: &[String]) -> Result<(), CliError> {
    let bad = |m: String| CliError::new(ExitCode::ExecFailed, m);
    if command.is_empty() {
        return Err(bad(
            "no command given; usage: janus exec REQUEST POD -- COMMAND [ARG…]".into()
        ));
    }
    if command.len() > MAX_ARGS {
        return Err(bad(format!(
            "the command has {} arguments; at most {MAX_ARGS} are allowed",
            command.len()
        )));
    }
    if let Some(long) = command.iter().find(|a| a.len() > MAX_ARG_BYTES) {
        return Err(bad(format!(
            "an argument is {} bytes long; at most {MAX_ARG_BYTES} are allowed",
            long.len()
        )));
    }
    let total: usize = command.iter().map(String::len).sum();
    if total > MAX_TOTAL_BYTES {
        return Err(bad(format!(
            "the command is {total} bytes long; at most {MAX_TOTAL_BYTES} are allowed"
        )));
    }
    Ok(())
}

async fn run(t: &Target, a: &ExecArgs) -> Result<i32, CliError> {
    check_command(&a.command)?;
    let place = resolve(t, &a.request, a.namespace.as_deref(), Some(&a.pod)).await?;
    let mut query = vec![("namespace", place.namespace.as_str()), ("pod", place.pod.as_str())];
    if let Some(c) = &a.container {
        query.push(("container", c.as_str()));
    }
    query.extend(a.command.iter().map(|c| ("command", c.as_str())));
    let socket = ws::connect(t, &a.request, &query).await?;
    let (mut tx, mut rx) = socket.split();
    let mut input = stdin_reader();
    let mut input_open = true;
    let mut keepalive = tokio::time::interval(ws::KEEPALIVE);
    keepalive.reset();
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let mut exit: Option<i32> = None;
    let mut closed: Option<String> = None;
    let mut failed: Option<String> = None;
    loop {
        tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(frame))) => {
                    let written = match frame.split_first() {
                        Some((1, data)) => write_now(&mut stdout, data),
                        Some((2, data)) => write_now(&mut stderr, data),
                        _ => Ok(()),
                    };
                    if let Err(e) = written {
                        // A closed pipe (`janus exec … | head -1`): stop like the command would.
                        let _ = tx.close().await;
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            return Ok(141);
                        }
                        return Err(CliError::new(ExitCode::ExecFailed, format!("cannot write the output: {e}")));
                    }
                }
                Some(Ok(Message::Text(text))) => match ServerMsg::parse(&text) {
                    ServerMsg::Exit { code } => {
                        exit.get_or_insert(code);
                    }
                    ServerMsg::Closed { reason } => {
                        closed.get_or_insert(reason);
                    }
                    ServerMsg::Error { message } => {
                        failed.get_or_insert(message);
                    }
                    ServerMsg::IdleWarning { seconds } => {
                        eprintln!("janus: no input for a while; the session ends in {seconds} s");
                    }
                    ServerMsg::Connected {} | ServerMsg::Unknown => {}
                },
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "terminal socket failed");
                    break;
                }
            },
            data = input.recv(), if input_open && exit.is_none() => {
                let frame = match data {
                    Some(data) => Message::Binary(data.into()),
                    None => {
                        input_open = false;
                        Message::Text(r#"{"type":"eof"}"#.into())
                    }
                };
                if tx.send(frame).await.is_err() {
                    break;
                }
            }
            _ = keepalive.tick() => {
                if tx.send(Message::Text(ws::PING.into())).await.is_err() {
                    break;
                }
            }
        }
    }
    match (exit, failed, closed) {
        (Some(code), _, _) => Ok(code),
        (None, Some(message), _) => Err(CliError::new(ExitCode::ExecFailed, message)),
        (None, None, Some(reason)) => Err(CliError::new(ExitCode::ExecFailed, format!("session ended: {reason}"))),
        (None, None, None) => Err(CliError::new(
            ExitCode::ExecFailed,
            "the connection to the janus server was lost before the command finished",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_outside_the_socket_limits_are_refused_with_a_reason() {
        assert!(check_command(&["ls".into(), "-l".into()]).is_ok());
        let e = check_command(&[]).unwrap_err();
        assert_eq!(e.code, ExitCode::ExecFailed);
        assert!(e.message.contains("no command"), "{}", e.message);
        assert!(
            check_command(&vec!["x".to_string(); 65])
                .unwrap_err()
                .message
                .contains("65 arguments")
        );
        assert!(
            check_command(&["x".repeat(4097)])
                .unwrap_err()
                .message
                .contains("4097 bytes")
        );
        assert!(
            check_command(&vec!["x".repeat(4000); 5])
                .unwrap_err()
                .message
                .contains("20000 bytes")
        );
    }
}
