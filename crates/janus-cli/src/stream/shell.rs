//! `janus shell REQUEST [POD]`: an interactive shell in the pod through the web's recorded terminal socket,
//! with the local terminal in raw mode (restored however the session ends) and window resizes passed on.

use futures::{SinkExt as _, StreamExt as _};
use tokio::signal::unix::{SignalKind, signal};
use tokio_tungstenite::tungstenite::Message;

use super::ws::{self, ServerMsg};
use super::{resolve, stdin_reader, tty, write_now};
use crate::{CliError, ExitCode, Target};

/// What `janus shell` was asked for.
#[derive(Debug, Clone, Default)]
pub struct ShellArgs {
    /// The access request's name.
    pub request: String,
    /// The pod; `None` picks the only pod the grant reaches, or lists them.
    pub pod: Option<String>,
    /// The container; the server picks a pod's only container.
    pub container: Option<String>,
    /// The namespace; `None` picks the request's only one, or lists them.
    pub namespace: Option<String>,
}

/// How the session ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The shell exited, or the person ended it: exit 0.
    ByUser,
    /// The server ended it with a reason (revoked, expired, idle, token revoked, …): exit 8.
    ByServer(String),
    /// The server refused or failed: exit 7 with its message.
    Failed(String),
    /// The connection dropped without a word from the server.
    Lost,
    /// A signal to this process (SIGTERM, SIGHUP, SIGINT from outside): 128 + its number, like a shell.
    Signal(i32),
}

/// The reason the web gives when the remote shell exits (crates/janus-web/src/terminal/session.rs); the
/// person ended the session themselves, which is not an error.
const SHELL_EXITED: &str = "the shell exited";

/// Runs the shell and returns the exit code: 0 when the shell exited, 8 when the server ended the session
/// (the reason is printed as "janus: session ended: …").
pub async fn shell(t: &Target, a: &ShellArgs) -> Result<i32, CliError> {
    if !tty::is_tty() {
        return Err(CliError::new(
            ExitCode::Usage,
            "janus shell needs a terminal on stdin and stdout; to run a command from a script or a pipe use: \
             janus exec REQUEST POD -- COMMAND…",
        ));
    }
    let place = resolve(t, &a.request, a.namespace.as_deref(), a.pod.as_deref()).await?;
    let (cols, rows) = tty::size().unwrap_or((80, 24));
    let (cols_s, rows_s) = (cols.to_string(), rows.to_string());
    let mut query = vec![
        ("namespace", place.namespace.as_str()),
        ("pod", place.pod.as_str()),
        ("cols", cols_s.as_str()),
        ("rows", rows_s.as_str()),
    ];
    if let Some(c) = &a.container {
        query.push(("container", c.as_str()));
    }
    let socket = ws::connect(t, &a.request, &query).await?;
    let signals = Signals::new()?;
    let raw = tty::RawMode::enter()?;
    let end = pump(socket, signals).await;
    // Restored before anything is printed, so the message lands on a normal terminal.
    drop(raw);
    Ok(report(&end))
}

/// Prints why the session ended (on stderr) and returns the exit code.
fn report(end: &End) -> i32 {
    match end {
        End::ByUser => 0,
        End::ByServer(reason) => {
            eprintln!("\njanus: session ended: {}", crate::output::clean(reason));
            ExitCode::SessionEnded as i32
        }
        End::Failed(message) => {
            eprintln!("\njanus: {}", crate::output::clean_text(message));
            ExitCode::Unreachable as i32
        }
        End::Lost => {
            eprintln!("\njanus: the connection to the janus server was lost");
            ExitCode::Unreachable as i32
        }
        End::Signal(n) => {
            eprintln!("\njanus: terminated by signal {n}; the session was closed");
            128 + n
        }
    }
}

/// The signals a shell session reacts to.
struct Signals {
    winch: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registered before raw mode starts: once a handler exists, SIGTERM/SIGHUP/SIGINT no longer kill the
    /// process outright, so the terminal is always restored.
    fn new() -> Result<Self, CliError> {
        let reg = |k: SignalKind| {
            signal(k).map_err(|e| CliError::new(ExitCode::Unreachable, format!("cannot watch signals: {e}")))
        };
        Ok(Self {
            winch: reg(SignalKind::window_change())?,
            term: reg(SignalKind::terminate())?,
            hup: reg(SignalKind::hangup())?,
            int: reg(SignalKind::interrupt())?,
        })
    }
}

async fn pump(socket: ws::Socket, mut sig: Signals) -> End {
    let (mut tx, mut rx) = socket.split();
    let mut input = stdin_reader();
    let mut input_open = true;
    let mut keepalive = tokio::time::interval(ws::KEEPALIVE);
    keepalive.reset();
    let mut stdout = std::io::stdout();
    // Set once the server said why it ends; the socket closes right after.
    let mut ended: Option<End> = None;
    loop {
        tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(data))) => {
                    if write_now(&mut stdout, &data).is_err() {
                        let _ = tx.close().await;
                        return End::Lost;
                    }
                }
                Some(Ok(Message::Text(text))) => match ServerMsg::parse(&text) {
                    ServerMsg::IdleWarning { seconds } => {
                        // Raw mode: "\r\n" starts a clean line; the shell's next output redraws its prompt.
                        let warning = format!(
                            "\r\njanus: no input for a while; the session ends in {seconds} s unless you type something\r\n"
                        );
                        let _ = write_now(&mut std::io::stderr(), warning.as_bytes());
                    }
                    ServerMsg::Closed { reason } => {
                        ended.get_or_insert(if reason == SHELL_EXITED {
                            End::ByUser
                        } else {
                            End::ByServer(reason)
                        });
                    }
                    ServerMsg::Error { message } => {
                        ended.get_or_insert(End::Failed(message));
                    }
                    ServerMsg::Connected {} | ServerMsg::Exit { .. } | ServerMsg::Unknown => {}
                },
                Some(Ok(Message::Close(_))) | None => return ended.unwrap_or(End::Lost),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "terminal socket failed");
                    return ended.unwrap_or(End::Lost);
                }
            },
            data = input.recv(), if input_open => match data {
                Some(data) => {
                    if tx.send(Message::Binary(data.into())).await.is_err() {
                        return ended.unwrap_or(End::Lost);
                    }
                }
                // In raw mode Ctrl-D is a byte; the end of input means the terminal went away.
                None => input_open = false,
            },
            _ = sig.winch.recv() => {
                if let Some((cols, rows)) = tty::size() {
                    let resize = format!(r#"{{"type":"resize","cols":{cols},"rows":{rows}}}"#);
                    if tx.send(Message::Text(resize.into())).await.is_err() {
                        return ended.unwrap_or(End::Lost);
                    }
                }
            }
            _ = sig.term.recv() => return close(tx, End::Signal(15)).await,
            _ = sig.hup.recv() => return close(tx, End::Signal(1)).await,
            _ = sig.int.recv() => return close(tx, End::Signal(2)).await,
            _ = keepalive.tick() => {
                if tx.send(Message::Text(ws::PING.into())).await.is_err() {
                    return ended.unwrap_or(End::Lost);
                }
            }
        }
    }
}

/// Closes the socket (the server ends the remote shell and records the end) without waiting long for it.
async fn close<S>(mut tx: S, end: End) -> End
where
    S: futures::Sink<Message> + Unpin,
{
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), tx.close()).await;
    end
}
