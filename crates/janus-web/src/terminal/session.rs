//! One terminal session: authorization before the upgrade, then the pump between the browser's WebSocket
//! and `pods/exec` on the target cluster with the request's token, with recording, idle timeout and
//! closing on revoke/expiry/withdrawal.
//!
//! With `command` query parameters the socket runs that command without a terminal instead of a shell
//! (`janus exec`): stdout and stderr apart, stdin until `eof`, and the exit code at the end. It is the
//! same session in every other respect: the same checks before, the same loop with the same cut-offs
//! (revocation, expiry, owner, idle timeout), recorded and audited alike.

use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::{SinkExt as _, StreamExt as _};
use janus_api::roles::TerminalMode;
use janus_api::rules::scope;
use janus_api::{AccessRequest, names};
use janus_store::{AuditKind, TerminalSession};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, Patch, PatchParams, TerminalSize};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, ReadHalf, SimplexStream, WriteHalf};

use crate::audit;
use crate::auth::{Authenticated, Identity, constant_time_eq, origin_ok};
use crate::error::WebError;
use crate::extract::{Path, Query};
use crate::state::AppState;
use crate::terminal::protocol::{ClientControl, STDERR, STDOUT, ServerControl};
use crate::terminal::recording::{Recording, Truncation};
use crate::terminal::{EndReason, Owner, StreamKind, access, debug};

/// Where to open the shell. Unknown parameters are refused by [`exec_command`], which also reads the
/// repeated `command` ones (this struct cannot hold a repeated parameter).
#[derive(Debug, Deserialize)]
pub struct Params {
    /// Granted namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Container (required when the pod has several).
    #[serde(default)]
    pub container: Option<String>,
    /// Initial columns.
    #[serde(default)]
    pub cols: Option<u16>,
    /// Initial rows.
    #[serde(default)]
    pub rows: Option<u16>,
    /// The session's CSRF token (WebSockets carry no custom headers from browsers). Required with a
    /// session cookie; a bearer credential (`Authorization` header, which browsers cannot set on a
    /// WebSocket) needs none.
    #[serde(default)]
    pub csrf: Option<String>,
}

/// Pod names are DNS-1123 subdomains, namespaces and containers DNS-1123 labels.
fn valid_target(namespace: &str, pod: &str, container: Option<&str>) -> bool {
    names::is_dns_label(namespace) && names::is_dns_subdomain(pod) && container.is_none_or(names::is_dns_label)
}

/// The shell command: bash when present, else sh, with a coloured prompt; the user's rc files still load.
pub fn shell_command(pod: &str) -> Vec<String> {
    let script = format!(
        "JANUS_POD='{pod}'; export JANUS_POD; \
         if command -v bash >/dev/null 2>&1; then \
           PS1='\\[\\e[1;32m\\]janus\\[\\e[0m\\]@\\[\\e[1;34m\\]{pod}\\[\\e[0m\\]:\\w\\$ ' exec bash -i; \
         else \
           PS1=\"$(printf '\\033[1;32m')janus$(printf '\\033[0m')@{pod} \\$ \" exec sh -i; \
         fi"
    );
    vec!["/bin/sh".into(), "-c".into(), script]
}

/// `GET /ws/terminal/{name}`: checks everything, then upgrades.
pub async fn upgrade(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
    Path(name): Path<String>,
    q: Result<Query<Params>, WebError>,
    ws: WebSocketUpgrade,
) -> Result<Response, WebError> {
    // Browsers always send Origin on WebSockets; a missing or foreign one is a cross-site attempt. A
    // bearer credential is no ambient browser credential: neither Origin nor csrf is asked for.
    let bearer = id.token.is_some();
    if !bearer && (!headers.contains_key(axum::http::header::ORIGIN) || !origin_ok(&state, &headers)) {
        return Err(WebError::Csrf);
    }
    let Query(p) = q?;
    let csrf_ok = |c: &str| constant_time_eq(c.as_bytes(), id.csrf.as_bytes());
    if !bearer && !p.csrf.as_deref().is_some_and(csrf_ok) {
        return Err(WebError::Csrf);
    }
    if !valid_target(&p.namespace, &p.pod, p.container.as_deref()) {
        return Err(WebError::invalid("pod", "invalid namespace, pod or container name"));
    }
    let command = exec_command(raw_query.as_deref().unwrap_or_default())?;
    let (ar, client) = access::client_for(&state, &id, &name, &p.namespace).await?;
    // What the socket opens follows the request's role: a shell (exec) under `shell` roles, an attach to
    // one of the web's debug containers under `debug` roles, nothing under `logs` roles.
    let role = debug::role_of(&state, &ar)?;
    let attach = match role.terminal {
        TerminalMode::Shell => false,
        // A debug role grants an attach to the web's debug container, not running commands in the
        // pod's containers: a command given here would be exec, which the role does not grant.
        TerminalMode::Debug if command.is_some() => {
            tracing::info!(request = %name, user = %id.email, role = %role.name, "exec refused: not a shell role");
            return Err(WebError::Forbidden(format!(
                "exec runs commands only under shell roles; role {} attaches to debug containers",
                role.name
            )));
        }
        TerminalMode::Debug => true,
        TerminalMode::Logs => {
            tracing::info!(request = %name, user = %id.email, role = %role.name, "terminal refused: the role offers no shell");
            return Err(WebError::Forbidden(format!(
                "role {} offers no shell: its terminal shows logs and events only",
                role.name
            )));
        }
    };
    let pod = debug::scoped_pod(&client, &ar, &p.namespace, &p.pod).await?;
    if attach {
        // Only the debug containers the web started for THIS request (their name carries its tag):
        // attaching to a pod's regular containers, or to another request's debug container, is not
        // what the role grants through the web.
        let own = debug::request_containers(&pod, &name);
        let container = match &p.container {
            Some(c) if c.starts_with(debug::DEBUG_CONTAINER_PREFIX) => {
                let Some((found, image)) = own.iter().find(|(n, _)| *n == c.as_str()) else {
                    return Err(WebError::invalid(
                        "container",
                        format!(
                            "pod {} has no debug container {c} of this request; start one first",
                            p.pod
                        ),
                    ));
                };
                // The name alone proves nothing: anyone who may patch pods/ephemeralcontainers can
                // choose it. The image as the pod spec has it must still be one the role allows.
                if !image.is_some_and(|i| scope::image_allowed(role, i)) {
                    tracing::info!(request = %name, user = %id.email, container = %found, "attach refused: image not allowed");
                    return Err(WebError::invalid(
                        "container",
                        format!(
                            "debug container {found} does not run an image role {} allows",
                            role.name
                        ),
                    ));
                }
                found.to_string()
            }
            _ => {
                return Err(WebError::invalid(
                    "container",
                    format!(
                        "under role {} the terminal attaches to a debug container ({}…) started for this request",
                        role.name,
                        debug::DEBUG_CONTAINER_PREFIX
                    ),
                ));
            }
        };
        return open(state, id, ar, client, p, container, Mode::Attach, ws);
    }
    let containers: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let container = match (&p.container, containers.len()) {
        (Some(c), _) if containers.contains(c) => c.clone(),
        (Some(c), _) => {
            return Err(WebError::invalid(
                "container",
                format!("pod {} has no container {c}", p.pod),
            ));
        }
        (None, 1) => containers[0].clone(),
        (None, _) => {
            return Err(WebError::invalid(
                "container",
                format!(
                    "pod {} has several containers; choose one of: {}",
                    p.pod,
                    containers.join(", ")
                ),
            ));
        }
    };
    let mode = match command {
        Some(argv) => Mode::Exec(argv),
        None => Mode::Shell,
    };
    open(state, id, ar, client, p, container, mode, ws)
}

/// Most arguments of one command, and the largest argument and total (bytes): a command line is
/// small, and these bound what one socket makes the web hold and send to the API server.
const MAX_ARGS: usize = 64;
const MAX_ARG_BYTES: usize = 4096;
const MAX_COMMAND_BYTES: usize = 16 * 1024;
/// The query parameters the socket knows; any other is refused, as a typo must not be ignored.
const KNOWN_PARAMS: [&str; 7] = ["namespace", "pod", "container", "cols", "rows", "csrf", "command"];

/// The command of exec mode from the repeated `command` query parameters (`None`: a shell), after
/// refusing unknown parameters and commands out of bounds.
fn exec_command(raw_query: &str) -> Result<Option<Vec<String>>, WebError> {
    let mut argv = Vec::new();
    for (key, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        if key == "command" {
            argv.push(value.into_owned());
        } else if !KNOWN_PARAMS.contains(&key.as_ref()) {
            return Err(WebError::invalid(
                "query",
                format!("unknown query parameter {:?}", truncated(&key, 64)),
            ));
        }
    }
    if argv.is_empty() {
        return Ok(None);
    }
    let bad = |m: String| Err(WebError::invalid("command", m));
    if argv.len() > MAX_ARGS {
        return bad(format!(
            "a command has at most {MAX_ARGS} arguments, not {}",
            argv.len()
        ));
    }
    if argv[0].is_empty() {
        return bad("the command's first argument (the program) is empty".into());
    }
    if let Some(i) = argv.iter().position(|a| a.len() > MAX_ARG_BYTES) {
        return bad(format!(
            "argument {} of the command is longer than {MAX_ARG_BYTES} bytes",
            i + 1
        ));
    }
    // The kubelet passes arguments to execve, where a NUL would silently cut the argument short.
    if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
        return bad(format!("argument {} of the command contains a NUL character", i + 1));
    }
    let total: usize = argv.iter().map(String::len).sum();
    if total > MAX_COMMAND_BYTES {
        return bad(format!(
            "the command's arguments total {total} bytes, more than {MAX_COMMAND_BYTES}"
        ));
    }
    Ok(Some(argv))
}

/// At most `max` characters of `s`, for quoting input back in an error.
fn truncated(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A command as a shell would read it back, for the command log and the recording's title.
fn command_line(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| format!("{argv:?}"))
}

/// What the socket runs in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// An interactive shell in a terminal.
    Shell,
    /// An attach to the container's own process (a debug container), in its terminal.
    Attach,
    /// A command without a terminal: stdin, stdout and stderr apart, and its exit code (`janus exec`).
    Exec(Vec<String>),
}

impl Mode {
    /// The `pods/…` subresource used.
    fn verb(&self) -> &'static str {
        match self {
            Mode::Attach => "attach",
            Mode::Shell | Mode::Exec(_) => "exec",
        }
    }
}

/// Registers the session and upgrades.
#[allow(clippy::too_many_arguments)]
fn open(
    state: AppState,
    id: Identity,
    ar: AccessRequest,
    client: kube::Client,
    p: Params,
    container: String,
    mode: Mode,
    ws: WebSocketUpgrade,
) -> Result<Response, WebError> {
    let name = ar.metadata.name.clone().unwrap_or_default();
    let session_id = uuid::Uuid::new_v4().to_string();
    let close_rx = state
        .terminals
        .register(
            &session_id,
            StreamKind::Terminal,
            &name,
            Owner::of(&id, &ar),
            state.config.web.max_terminals_per_user,
            state.config.web.max_terminals_per_replica,
        )
        .map_err(WebError::TooMany)?;
    let cols = p.cols.unwrap_or(80).clamp(1, 1000);
    let rows = p.rows.unwrap_or(24).clamp(1, 1000);
    let target = Target {
        session_id,
        namespace: p.namespace,
        pod: p.pod,
        container,
        cols,
        rows,
        mode,
    };
    Ok(ws
        .max_message_size(1024 * 1024)
        // The browser's side carries keystrokes, pastes and control messages; a larger message is still
        // read whole, in more reads. tungstenite's default (128 KiB) is zero-filled on the first read
        // (tungstenite src/protocol/frame/mod.rs, `FrameCodec::read_in`), so every idle session held
        // 128 KiB of resident memory for it (docs/benchmarks.md, "Terminal cost").
        .read_buffer_size(BROWSER_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let sid = target.session_id.clone();
            run(state.clone(), id, ar, client, target, socket, close_rx).await;
            state.terminals.unregister(&sid);
        })
        .into_response())
}

/// Read buffer of the browser's WebSocket, bytes.
const BROWSER_READ_BUFFER: usize = 4 * 1024;

/// The most output one frame to the browser carries, bytes.
const OUTPUT_CHUNK: usize = 32 * 1024;

struct Target {
    session_id: String,
    namespace: String,
    pod: String,
    container: String,
    cols: u16,
    rows: u16,
    mode: Mode,
}

/// The remote process's streams as the pump uses them: a terminal (shell, attach) or a command's pipes.
struct Remote {
    /// `None` once the client sent `eof` (exec mode).
    stdin: Option<WriteHalf<SimplexStream>>,
    stdout: Option<ReadHalf<SimplexStream>>,
    /// Exec mode only (a terminal merges its error output into stdout).
    stderr: Option<ReadHalf<SimplexStream>>,
    /// Terminal modes only.
    size: Option<futures::channel::mpsc::Sender<TerminalSize>>,
}

impl Remote {
    /// The next chunk of output: its stream ([`STDOUT`] or [`STDERR`]) and how many bytes were
    /// appended to `out` (stdout) or `err` (stderr); `None` once every stream has ended.
    /// Cancel-safe, as the pump's other branches may win: a read either completed or took nothing.
    async fn next(&mut self, out: &mut bytes::BytesMut, err: &mut bytes::BytesMut) -> Option<(u8, usize)> {
        loop {
            if self.stdout.is_none() && self.stderr.is_none() {
                return None;
            }
            let (stream, read) = tokio::select! {
                r = read_some(self.stdout.as_mut(), out) => (STDOUT, r),
                r = read_some(self.stderr.as_mut(), err) => (STDERR, r),
            };
            match read {
                Ok(n) if n > 0 => return Some((stream, n)),
                // The end of one stream is not the end of the other's output.
                _ if stream == STDOUT => self.stdout = None,
                _ => self.stderr = None,
            }
        }
    }
}

/// Reads from `r` into `buf`'s spare capacity (made [`OUTPUT_CHUNK`] first), or never completes when
/// there is no such stream. The capacity is only reserved, never zeroed: an idle session's buffer
/// costs no resident memory until output arrives, and the bytes read become the frame without a copy.
async fn read_some(r: Option<&mut ReadHalf<SimplexStream>>, buf: &mut bytes::BytesMut) -> std::io::Result<usize> {
    match r {
        Some(r) => {
            buf.reserve(OUTPUT_CHUNK);
            // `read_buf` fills the spare capacity, which `reserve` may have made larger than a frame.
            let mut chunk = bytes::BufMut::limit(&mut *buf, OUTPUT_CHUNK);
            r.read_buf(&mut chunk).await
        }
        None => std::future::pending().await,
    }
}

/// The exit code in an exec's final `Status`, read as kubectl does (client-go
/// tools/remotecommand/v4.go, `errorDecoderV4`): `Success` is 0; a `NonZeroExitCode` failure carries
/// the code as the message of its `ExitCode` cause, as the kubelet's ServeExec
/// (pkg/kubelet/cri/streaming/remotecommand/exec.go) writes it. `None`: the command did not run, or
/// the status does not say how it ended.
fn exit_code(status: &Status) -> Option<i32> {
    if status.status.as_deref() == Some("Success") {
        return Some(0);
    }
    status
        .details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))
        .and_then(|c| c.message.as_deref()?.trim().parse().ok())
}

async fn send_control(tx: &mut futures::stream::SplitSink<WebSocket, Message>, c: ServerControl) -> bool {
    tx.send(Message::Text(c.to_text().into())).await.is_ok()
}

/// How long the last words to the browser (the `closed` message and the Close frame) may take: a browser
/// that stopped reading must not keep the session from being recorded and audited as ended.
const FAREWELL: Duration = Duration::from_secs(2);

/// Why a wait on the browser or the shell gave way.
enum Interrupted {
    /// The stream was told to end (logout, disabling, revocation, shutdown, …).
    Ended(EndReason),
    /// No input for the idle timeout.
    Idle,
}

impl Interrupted {
    /// The reason the session ends with; `idle` makes the idle-timeout reason.
    fn reason(self, idle: impl FnOnce() -> EndReason) -> EndReason {
        match self {
            Interrupted::Ended(r) => r,
            Interrupted::Idle => idle(),
        }
    }
}

/// Runs `fut` (a send to the browser, a write to the shell) unless the stream must end first: the close
/// signal and the idle deadline always win, so a browser that stops reading while the shell floods its
/// output cannot keep the exec stream open past logout, disabling, revocation or the idle timeout.
async fn unless_ended<F: std::future::Future>(
    fut: F,
    close_rx: &mut tokio::sync::watch::Receiver<Option<EndReason>>,
    idle_at: Option<Instant>,
) -> Result<F::Output, Interrupted> {
    let idle = async {
        match idle_at {
            Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        r = close_rx.wait_for(Option::is_some) => {
            let shutdown = || EndReason::from_message("the web server is shutting down");
            Err(Interrupted::Ended(r.map(|r| r.clone().unwrap_or_else(shutdown)).unwrap_or_else(|_| shutdown())))
        }
        _ = idle => Err(Interrupted::Idle),
        out = fut => Ok(out),
    }
}

async fn run(
    state: AppState,
    id: Identity,
    ar: AccessRequest,
    client: kube::Client,
    t: Target,
    socket: WebSocket,
    mut close_rx: tokio::sync::watch::Receiver<Option<EndReason>>,
) {
    let name = ar.metadata.name.clone().unwrap_or_default();
    let (mut tx, mut rx) = socket.split();
    let pods: Api<Pod> = Api::namespaced(client, &t.namespace);
    let piped = matches!(t.mode, Mode::Exec(_));
    // Bounded buffers: a large output streams through with the browser's pace, it is never held whole.
    let ap = if piped {
        AttachParams::default().stdin(true).stdout(true).stderr(true).tty(false)
    } else {
        AttachParams::interactive_tty()
    }
    .container(t.container.clone())
    .max_stdout_buf_size(64 * 1024)
    .max_stderr_buf_size(64 * 1024)
    .max_stdin_buf_size(64 * 1024);
    let opening = match &t.mode {
        Mode::Attach => access::bounded(pods.attach(&t.pod, &ap)).await,
        Mode::Shell => access::bounded(pods.exec(&t.pod, shell_command(&t.pod), &ap)).await,
        Mode::Exec(argv) => access::bounded(pods.exec(&t.pod, argv.clone(), &ap)).await,
    };
    let verb = t.mode.verb();
    let opened = match opening {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(request = %name, verb, "the stream did not open in time");
            let message = "the target cluster did not answer in time; try again shortly".to_string();
            send_control(&mut tx, ServerControl::Error { message }).await;
            let _ = tx.send(Message::Close(None)).await;
            return;
        }
    };
    let mut proc = match opened {
        Ok(p) => p,
        Err(e) => {
            let message = match &e {
                kube::Error::Api(s) if s.code == 403 => {
                    format!("the API server refused {verb} for this request's access")
                }
                kube::Error::Api(s) => format!("{verb} failed: {}", s.message),
                _ => "cannot reach the target cluster".to_string(),
            };
            tracing::warn!(request = %name, verb, error = %e, "the stream could not be opened");
            send_control(&mut tx, ServerControl::Error { message }).await;
            let _ = tx.send(Message::Close(None)).await;
            return;
        }
    };
    let mut remote = Remote {
        stdin: proc.stdin(),
        stdout: proc.stdout(),
        stderr: if piped { proc.stderr() } else { None },
        size: proc.terminal_size(),
    };
    let status = proc.take_status();
    let complete = remote.stdin.is_some()
        && remote.stdout.is_some()
        && status.is_some()
        && if piped {
            remote.stderr.is_some()
        } else {
            remote.size.is_some()
        };
    if !complete {
        send_control(
            &mut tx,
            ServerControl::Error {
                message: "exec stream incomplete".into(),
            },
        )
        .await;
        let _ = tx.send(Message::Close(None)).await;
        return;
    }
    if let Some(size) = remote.size.as_mut() {
        let _ = size
            .send(TerminalSize {
                width: t.cols,
                height: t.rows,
            })
            .await;
    }
    let started = Utc::now();
    let record = TerminalSession {
        id: t.session_id.clone(),
        request: name.clone(),
        user: id.email.clone(),
        cluster: ar.spec.cluster.clone(),
        namespace: t.namespace.clone(),
        pod: t.pod.clone(),
        container: t.container.clone(),
        replica: state.replica.clone(),
        started_at: started,
        ended_at: None,
        end_reason: None,
        bytes_out: 0,
    };
    if let Err(e) = state.store.open_terminal(&record).await {
        tracing::error!(error = %e, "terminal session could not be stored");
    }
    let namespaces = vec![t.namespace.clone()];
    let mut opened_details = json!({"session": t.session_id, "pod": t.pod, "container": t.container, "mode": verb});
    if let Mode::Exec(argv) = &t.mode {
        // The command exactly as run (an array: no quoting to misread); its presence marks exec mode.
        opened_details["command"] = json!(argv);
    }
    audit::record(
        &state,
        AuditKind::SessionOpened,
        &id.email,
        Some(&name),
        Some(&ar.spec.cluster),
        &namespaces,
        opened_details,
    )
    .await;
    state.metrics.terminal_opened();
    send_control(
        &mut tx,
        ServerControl::Connected {
            session: t.session_id.clone(),
            container: t.container.clone(),
        },
    )
    .await;

    let title = format!("{name} {}/{}/{}", t.namespace, t.pod, t.container);
    let mut rec = match &t.mode {
        Mode::Exec(argv) => {
            let line = command_line(argv);
            let mut rec = Recording::new(
                t.cols,
                t.rows,
                &format!("{title}: {line}"),
                state.config.web.recording_max_bytes,
                state.config.web.recording_max_input_bytes,
            )
            .without_terminal();
            rec.command(&line);
            rec
        }
        Mode::Shell | Mode::Attach => Recording::new(
            t.cols,
            t.rows,
            &title,
            state.config.web.recording_max_bytes,
            state.config.web.recording_max_input_bytes,
        ),
    };
    let idle_timeout = state.config.idle_timeout_seconds;
    let warn_before = (idle_timeout / 2).min(60);
    let mut last_input = Instant::now();
    let mut warned = false;
    let mut bytes_out: i64 = 0;
    // Allocated when output first arrives (see `read_some`); only exec mode reads an error stream.
    let mut out_buf = bytes::BytesMut::new();
    let mut err_buf = bytes::BytesMut::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut idle_revoke = false;
    let mut pending_lines: Vec<(chrono::DateTime<Utc>, String)> = Vec::new();
    // The reason may already be set if access ended while we connected.
    let lost = || EndReason::from_message("the connection was lost");
    let exited = || EndReason::from_message(if piped { "the command ended" } else { "the shell exited" });
    // Set when the remote side ended by itself (its output is complete): only then is there an exit code.
    let mut finished = false;
    let idle_end = || EndReason::from_message(&format!("idle for {idle_timeout} seconds; access was revoked"));
    let reason: EndReason = loop {
        if let Some(r) = close_rx.borrow_and_update().clone() {
            break r;
        }
        // Waits on the browser or the shell below give way to the close signal and to this deadline.
        let idle_at = u64::try_from(idle_timeout)
            .ok()
            .filter(|s| *s > 0)
            .and_then(|s| last_input.checked_add(Duration::from_secs(s)));
        tokio::select! {
            changed = close_rx.changed() => {
                if changed.is_err() {
                    break EndReason::from_message("the web server is shutting down");
                }
            }
            msg = rx.next() => {
                // Input the session cannot take is answered with an error message, and the session goes on.
                let complaint = match msg {
                    Some(Ok(Message::Binary(data))) => {
                        last_input = Instant::now();
                        warned = false;
                        match remote.stdin.as_mut() {
                            Some(stdin) => {
                                if piped {
                                    rec.stdin(&data);
                                } else {
                                    rec.input(&data);
                                }
                                match unless_ended(stdin.write_all(&data), &mut close_rx, None).await {
                                    Ok(Ok(())) => None,
                                    // The process no longer reads: its output and exit are still to come.
                                    Ok(Err(_)) if piped => {
                                        remote.stdin = None;
                                        None
                                    }
                                    Ok(Err(_)) => break exited(),
                                    Err(i) => {
                                        idle_revoke = matches!(i, Interrupted::Idle);
                                        break i.reason(idle_end);
                                    }
                                }
                            }
                            None => Some("the command's stdin is closed (eof was sent); input is dropped".to_string()),
                        }
                    }
                    Some(Ok(Message::Text(text))) => {
                        match ClientControl::parse(&text) {
                            Ok(ClientControl::Resize { cols, rows }) => {
                                // A command without a terminal has no size: nothing to resize.
                                if let Some(size) = remote.size.as_mut() {
                                    rec.resize(cols, rows);
                                    let _ = size.send(TerminalSize { width: cols, height: rows }).await;
                                }
                                None
                            }
                            Ok(ClientControl::Ping {}) => None,
                            Ok(ClientControl::Eof {}) if piped => {
                                // Dropping the pipe alone would not close it; shutting it down makes kube-rs
                                // send the v5 close signal for stdin, so the command reads its end.
                                if let Some(mut stdin) = remote.stdin.take() {
                                    let _ = stdin.shutdown().await;
                                }
                                None
                            }
                            Ok(ClientControl::Eof {}) => {
                                Some("eof is for commands run without a terminal; a shell ends with exit or Ctrl-D".to_string())
                            }
                            Err(e) => Some(e),
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break EndReason::from_message("closed by the user"),
                    Some(Ok(_)) => None,
                    Some(Err(_)) => break lost(),
                };
                if let Some(message) = complaint {
                    let sent = send_control(&mut tx, ServerControl::Error { message });
                    match unless_ended(sent, &mut close_rx, idle_at).await {
                        Ok(true) => {}
                        Ok(false) => break lost(),
                        Err(i) => {
                            idle_revoke = matches!(i, Interrupted::Idle);
                            break i.reason(idle_end);
                        }
                    }
                }
            }
            chunk = remote.next(&mut out_buf, &mut err_buf) => match chunk {
                None => {
                    finished = true;
                    break exited();
                }
                Some((stream, n)) => {
                    // The bytes read, taken out of the buffer (which keeps its allocation for the next
                    // read once the frame is written).
                    let data = if stream == STDOUT { out_buf.split() } else { err_buf.split() };
                    rec.output(&data);
                    bytes_out += n as i64;
                    // Exec mode tells stdout from stderr by the frame's first byte; a terminal's frames
                    // are its raw bytes, sent without a copy.
                    let frame = if piped {
                        let mut framed = Vec::with_capacity(n + 1);
                        framed.push(stream);
                        framed.extend_from_slice(&data);
                        bytes::Bytes::from(framed)
                    } else {
                        data.freeze()
                    };
                    // Awaiting the browser here is the backpressure: a slow reader slows the shell down. But
                    // a reader that stopped must not keep the stream open: closing and idleness win.
                    let frame = Message::Binary(frame);
                    match unless_ended(tx.send(frame), &mut close_rx, idle_at).await {
                        // Exec mode: a command that works without reading input (a long build, a
                        // tail) is not idle while its output reaches the client. A shell's output is
                        // no activity: a prompt left open under `top` or `watch` would never end.
                        Ok(Ok(())) if piped => {
                            last_input = Instant::now();
                            warned = false;
                        }
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break lost(),
                        Err(i) => {
                            idle_revoke = matches!(i, Interrupted::Idle);
                            break i.reason(idle_end);
                        }
                    }
                }
            },
            _ = tick.tick() => {
                if idle_timeout > 0 {
                    let idle = last_input.elapsed().as_secs() as i64;
                    if idle >= idle_timeout {
                        idle_revoke = true;
                        break idle_end();
                    }
                    if !warned && idle >= idle_timeout - warn_before {
                        warned = true;
                        let sent = send_control(&mut tx, ServerControl::IdleWarning { seconds: idle_timeout - idle });
                        if let Err(i) = unless_ended(sent, &mut close_rx, idle_at).await {
                            idle_revoke = matches!(i, Interrupted::Idle);
                            break i.reason(idle_end);
                        }
                    }
                }
                flush_commands(&state, &t.session_id, &mut pending_lines, rec.take_lines()).await;
                audit_truncations(&state, &id, &ar, &t, &namespaces, rec.take_truncations()).await;
            }
        }
    };
    // How the command ended, when it ended by itself: its output is complete, so the status has come
    // (kube-rs ends the output streams after reading it) or the connection broke without one.
    let outcome = match (finished && piped, status) {
        (true, Some(status)) => Some(match tokio::time::timeout(FAREWELL, status).await {
            Ok(Some(s)) => match exit_code(&s) {
                Some(code) => ServerControl::Exit { code },
                None => {
                    tracing::info!(request = %name, session = %t.session_id, message = %s.message.as_deref().unwrap_or_default(), "the command did not run");
                    ServerControl::Error {
                        message: format!(
                            "the command did not run: {}",
                            s.message.as_deref().unwrap_or("the API server gave no reason")
                        ),
                    }
                }
            },
            _ => ServerControl::Error {
                message: "the connection to the command ended before it reported its exit code".into(),
            },
        }),
        _ => None,
    };
    let exit = match &outcome {
        Some(ServerControl::Exit { code }) => Some(*code),
        _ => None,
    };
    // Ending the exec stream ends the shell in the pod (the API server closes its PTY).
    drop(remote);
    proc.abort();
    // Bounded: a browser that stopped reading gets no last words, and the end is still recorded.
    let farewell = async {
        if let Some(outcome) = outcome {
            send_control(&mut tx, outcome).await;
        }
        send_control(
            &mut tx,
            ServerControl::Closed {
                reason: reason.message.clone(),
            },
        )
        .await;
        let _ = tx.send(Message::Close(None)).await;
    };
    let _ = tokio::time::timeout(FAREWELL, farewell).await;
    state.metrics.terminal_closed();
    if idle_revoke {
        revoke_idle(&state, &name, idle_timeout).await;
    }
    flush_commands(&state, &t.session_id, &mut pending_lines, rec.take_lines()).await;
    // A last attempt for lines a busy database refused: the command log must not lose them quietly.
    for _ in 0..20 {
        if pending_lines.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        flush_commands(&state, &t.session_id, &mut pending_lines, Vec::new()).await;
    }
    if !pending_lines.is_empty() {
        tracing::error!(session = %t.session_id, lines = pending_lines.len(), "command lines could not be stored");
    }
    audit_truncations(&state, &id, &ar, &t, &namespaces, rec.take_truncations()).await;
    let truncated = rec.truncated();
    let cast = rec.finish();
    if let Err(e) = state.store.save_recording(&t.session_id, &cast).await {
        tracing::error!(error = %e, session = %t.session_id, "recording could not be stored");
    }
    if let Err(e) = state
        .store
        .close_terminal(&t.session_id, Utc::now(), reason.category, bytes_out)
        .await
    {
        tracing::error!(error = %e, "terminal session end could not be stored");
    }
    let mut closed_details = json!({"session": t.session_id, "reason": reason.category, "message": reason.message, "bytesOut": bytes_out, "recordingTruncated": truncated});
    if let Some(code) = exit {
        closed_details["exitCode"] = json!(code);
    }
    audit::record(
        &state,
        AuditKind::SessionClosed,
        &id.email,
        Some(&name),
        Some(&ar.spec.cluster),
        &namespaces,
        closed_details,
    )
    .await;
}

/// Audits each recording limit reached: a recording that stops short must not do so silently.
async fn audit_truncations(
    state: &AppState,
    id: &Identity,
    ar: &AccessRequest,
    t: &Target,
    namespaces: &[String],
    truncations: Vec<Truncation>,
) {
    for tr in truncations {
        let (stream, limit) = match tr {
            Truncation::Output => ("output", state.config.web.recording_max_bytes),
            Truncation::Input => ("input", state.config.web.recording_max_input_bytes),
        };
        tracing::info!(session = %t.session_id, stream, limit, "recording limit reached");
        audit::record(
            state,
            AuditKind::RecordingTruncated,
            &id.email,
            ar.metadata.name.as_deref(),
            Some(&ar.spec.cluster),
            namespaces,
            json!({"session": t.session_id, "stream": stream, "limitBytes": limit}),
        )
        .await;
    }
}

/// Stores completed command lines; lines the database refused (e.g. busy) are kept for the next attempt.
async fn flush_commands(
    state: &AppState,
    session: &str,
    pending: &mut Vec<(chrono::DateTime<Utc>, String)>,
    new: Vec<(chrono::DateTime<Utc>, String)>,
) {
    pending.extend(new);
    if pending.is_empty() {
        return;
    }
    match state.store.add_commands(session, pending).await {
        Ok(()) => pending.clear(),
        Err(e) => {
            tracing::warn!(session, error = %e, "command lines not stored yet; retrying");
            // Bounded: a long outage must not grow memory without limit.
            if pending.len() > 10_000 {
                let excess = pending.len() - 10_000;
                pending.drain(..excess);
            }
        }
    }
}

/// Revokes a request whose terminal sat idle (the requester must ask again).
async fn revoke_idle(state: &AppState, name: &str, idle: i64) {
    let api: Api<AccessRequest> = Api::all(state.client.clone());
    // Only when nobody decided otherwise meanwhile: the resourceVersion makes a concurrent change a 409.
    match api.get(name).await {
        Ok(ar) if ar.spec.revocation.is_none() && ar.spec.withdrawal.is_none() => {
            let patch = json!({
                "metadata": {"resourceVersion": ar.metadata.resource_version},
                "spec": {"revocation": {
                    "by": "system:idle-timeout",
                    "at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "reason": format!("terminal idle for {idle} seconds"),
                }},
            });
            if let Err(e) = api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                tracing::error!(request = name, error = %e, "idle revocation failed");
            } else {
                tracing::info!(request = name, "revoked after idle timeout");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::error!(request = name, error = %e, "idle revocation failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_reasons() {
        use crate::terminal::reason_category;
        assert!(valid_target("app-1", "web-0.x", Some("app")) && valid_target("ns", "p", None));
        assert!(!valid_target("a b", "p", None) && !valid_target("", "p", None) && !valid_target("A", "p", None));
        assert!(
            !valid_target("ns", "p", Some("a.b"))
                && !valid_target("a.b", "p", None)
                && !valid_target("ns", "a..b", None)
        );
        assert_eq!(reason_category("access was revoked"), "revoked");
        assert_eq!(reason_category("idle for 5 seconds; access was revoked"), "idle");
        assert_eq!(reason_category("access expired"), "expired");
        assert_eq!(reason_category("closed by the user"), "user");
        let cmd = shell_command("app");
        assert_eq!(cmd[0], "/bin/sh");
        assert!(cmd[2].contains("exec bash -i") && cmd[2].contains("exec sh -i"));
    }

    #[test]
    fn exec_commands_are_read_from_the_query_and_bounded() {
        let ok = |q: &str| exec_command(q).unwrap();
        assert_eq!(ok("namespace=a&pod=b&csrf=c&cols=1&rows=2&container=d"), None);
        assert_eq!(
            ok("namespace=a&command=sh&pod=b&command=-c&command=echo+%27a+b%27%3B%26"),
            Some(vec!["sh".to_string(), "-c".into(), "echo 'a b';&".into()])
        );
        let refused = |q: &str| match exec_command(q) {
            Err(WebError::Invalid { message, .. }) => message,
            other => panic!("{q}: {other:?}"),
        };
        assert!(refused("namespace=a&nope=1").contains("unknown query parameter \"nope\""));
        assert!(refused("command=a%00b").contains("NUL"));
        assert!(refused("command=&command=x").contains("program"));
        assert!(refused(&"command=x&".repeat(65)).contains("at most 64"));
        assert!(refused(&format!("command={}", "y".repeat(4097))).contains("4096"));
        assert!(
            refused(
                &format!("command={}", "y".repeat(4096))
                    .repeat(5)
                    .replace("ycommand", "y&command")
            )
            .contains("16384")
        );
        assert_eq!(ok(&"command=x&".repeat(64)).map(|a| a.len()), Some(64));
        assert_eq!(
            command_line(&["sh".into(), "-c".into(), "echo 'a'".into()]),
            r#"sh -c "echo 'a'""#
        );
    }

    #[test]
    fn exit_codes_are_read_as_kubectl_reads_them() {
        let status = |v: serde_json::Value| serde_json::from_value::<Status>(v).unwrap();
        assert_eq!(exit_code(&status(json!({"status": "Success"}))), Some(0));
        let nonzero = json!({"status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}});
        assert_eq!(exit_code(&status(nonzero)), Some(3));
        // A command that could not start has no exit code: the client is told why instead.
        let internal = json!({"status": "Failure", "reason": "InternalError", "message": "executable file not found"});
        assert_eq!(exit_code(&status(internal)), None);
        let garbled = json!({"status": "Failure", "details": {"causes": [{"reason": "ExitCode", "message": "x"}]}});
        assert_eq!(exit_code(&status(garbled)), None);
    }
}
