//! `pods/exec` over WebSocket (v5.channel.k8s.io and v4.channel.k8s.io) into a real local process, in a PTY when tty.
//!
//! The wire protocol is the one of the Kubernetes API server: every binary WebSocket message starts
//! with a channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error (a JSON `metav1.Status` once the
//! command ended), 4 resize (`{"Width":W,"Height":H}`); `v5.channel.k8s.io` adds 255, "close
//! stream", whose payload is the channel the client will not write any more (stdin EOF).
//!
//! The command runs as a real local process in the pod's working directory, in a process group of
//! its own (a new session with the PTY as controlling terminal when `tty=true`). The group is
//! registered with the [`Kubelet`] so deleting the pod kills it, and it is SIGKILLed when the client
//! goes away or the command ends, so no exec leaves processes behind on the host.
//!
//! The process side ([`ExecProcess`]) and the session loop ([`run_session`], generic over any
//! message sink and stream) are usable without HTTP, which is how they are tested.

use std::collections::VecDeque;
use std::fmt::Display;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::http::HeaderValue;
use axum::response::Response;
use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::pty::{Winsize, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::Mode;
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::Cluster;
use crate::auth::{self, Attributes, UserInfo};
use crate::errors::{ApiError, ApiResult};
use crate::kubelet::{Kubelet, ensure_pod_dir, kill_group, wait_group_gone};
use crate::store::ns_name;

/// The newest channel protocol: v4 plus the close-stream signal.
pub const V5_PROTOCOL: &str = "v5.channel.k8s.io";
/// Binary channel protocol with a JSON `Status` on the error channel.
pub const V4_PROTOCOL: &str = "v4.channel.k8s.io";

/// Client → process input.
pub const STDIN_CHANNEL: u8 = 0;
/// Process output (and, with a tty, its merged error output).
pub const STDOUT_CHANNEL: u8 = 1;
/// Process error output (never used with a tty).
pub const STDERR_CHANNEL: u8 = 2;
/// The final `metav1.Status` of the command.
pub const ERROR_CHANNEL: u8 = 3;
/// Terminal size changes from the client, JSON `{"Width":W,"Height":H}`.
pub const RESIZE_CHANNEL: u8 = 4;
/// v5 only: "I will not write to channel N any more"; payload `[255, N]`.
pub const CLOSE_SIGNAL: u8 = 255;

/// Channels 0..=4 exist; a close signal for anything else is a protocol error, as upstream.
const CHANNEL_COUNT: u8 = 5;
/// Largest output frame; also the read buffer, so a chatty process never fills memory.
const READ_CHUNK: usize = 32 * 1024;
/// Output frames queued for the socket; a slow client stalls the process's pipe, not our memory.
const OUTGOING_FRAMES: usize = 16;
/// Stdin frames queued for the process.
const STDIN_FRAMES: usize = 16;
/// Stdin bytes held while the process is not reading; beyond this we stop reading the socket.
const STDIN_PENDING_BYTES: usize = 1 << 20;
/// With a tty, how long to wait for the client's first resize before starting at 80x24, so that
/// `kubectl exec -t -- stty size` sees the real terminal size.
const FIRST_RESIZE_WAIT: Duration = Duration::from_millis(200);
/// How long output may keep draining after the command exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long we wait for the client to answer our close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a killed process gets to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long killed children of the command get to disappear before the session is unregistered.
const GROUP_GONE_TIMEOUT: Duration = Duration::from_secs(2);

/// Terminal size when the client sent none.
pub const DEFAULT_TERM_SIZE: TermSize = TermSize { width: 80, height: 24 };

/// Which channel protocol the client and server agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `v4.channel.k8s.io`.
    V4,
    /// `v5.channel.k8s.io` (adds the close-stream signal).
    V5,
}

impl Protocol {
    /// The subprotocol name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V4 => V4_PROTOCOL,
            Protocol::V5 => V5_PROTOCOL,
        }
    }

    /// Picks the newest protocol the client offered; `None` if it offered none we speak.
    pub fn negotiate<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let offered: Vec<&str> = offered.into_iter().map(str::trim).collect();
        if offered.contains(&V5_PROTOCOL) {
            Some(Protocol::V5)
        } else if offered.contains(&V4_PROTOCOL) {
            Some(Protocol::V4)
        } else {
            None
        }
    }
}

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// One decoded client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// Bytes for the process's stdin.
    Stdin(Bytes),
    /// New terminal size.
    Resize(TermSize),
    /// v5: the client closed its side of a channel (stdin EOF for channel 0).
    CloseStream(u8),
    /// A frame for a channel the client must not write (stdout, stderr, error) or an unknown one;
    /// upstream ignores these.
    Ignored(u8),
}

/// Encodes one server → client message: the channel byte, then the payload.
pub fn encode_frame(channel: u8, payload: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(payload.len() + 1);
    v.push(channel);
    v.extend_from_slice(payload);
    Bytes::from(v)
}

/// Decodes one client → server message. `Ok(None)` for messages without content (upstream skips
/// them); `Err` for protocol errors, after which the session ends with a Status on channel 3.
pub fn decode_client_frame(protocol: Protocol, data: &Bytes) -> Result<Option<ClientFrame>, String> {
    let Some(&channel) = data.first() else {
        return Ok(None);
    };
    if channel == CLOSE_SIGNAL && protocol == Protocol::V5 {
        if data.len() != 2 {
            return Err(format!(
                "single channel byte should follow stream close signal, got {} bytes",
                data.len() - 1
            ));
        }
        let target = data[1];
        if target >= CHANNEL_COUNT {
            return Err(format!("close is targeted for a channel {target} that is not valid"));
        }
        return Ok(Some(ClientFrame::CloseStream(target)));
    }
    match channel {
        STDIN_CHANNEL => Ok(Some(ClientFrame::Stdin(data.slice(1..)))),
        RESIZE_CHANNEL if data.len() == 1 => Ok(None),
        RESIZE_CHANNEL => decode_resize(&data[1..]).map(|s| Some(ClientFrame::Resize(s))),
        other => Ok(Some(ClientFrame::Ignored(other))),
    }
}

/// Parses a resize payload. Go's JSON decoder matches field names case-insensitively, leaves absent
/// fields at 0 and accepts several objects in a row (it reads a stream); the last one wins.
pub fn decode_resize(payload: &[u8]) -> Result<TermSize, String> {
    let mut last = None;
    for v in serde_json::Deserializer::from_slice(payload).into_iter::<Value>() {
        let v = v.map_err(|e| format!("invalid resize message: {e}"))?;
        let obj = v
            .as_object()
            .ok_or_else(|| format!("invalid resize message: expected an object, got {v}"))?;
        let mut size = TermSize { width: 0, height: 0 };
        for (k, val) in obj {
            let field = if k.eq_ignore_ascii_case("width") {
                &mut size.width
            } else if k.eq_ignore_ascii_case("height") {
                &mut size.height
            } else {
                continue;
            };
            *field = val
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| format!("invalid resize message: {k} must be an integer 0-65535, got {val}"))?;
        }
        last = Some(size);
    }
    last.ok_or_else(|| "invalid resize message: empty".to_string())
}

#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
struct WireCause<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    message: String,
}

#[derive(Serialize)]
struct WireDetails<'a> {
    causes: Vec<WireCause<'a>>,
}

/// `metav1.Status` as the kubelet writes it on the error channel: no kind/apiVersion, Go's field order.
#[derive(Serialize)]
struct WireStatus<'a> {
    metadata: EmptyObject,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<WireDetails<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

fn render(s: &WireStatus<'_>) -> String {
    // Serialising these plain structs cannot fail; the fallback only keeps this panic-free.
    serde_json::to_string(s).unwrap_or_else(|_| r#"{"metadata":{},"status":"Failure"}"#.to_string())
}

/// The error-channel Status of a command that exited 0.
pub fn status_success() -> String {
    render(&WireStatus {
        metadata: EmptyObject {},
        status: "Success",
        message: None,
        reason: None,
        details: None,
        code: None,
    })
}

/// The error-channel Status of a command that exited with `code` (kubectl exits with it).
pub fn status_exit_code(argv: &[String], code: i32) -> String {
    render(&WireStatus {
        metadata: EmptyObject {},
        status: "Failure",
        // Go's %v of a []string: space-separated inside brackets, no quoting.
        message: Some(format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            argv.join(" ")
        )),
        reason: Some("NonZeroExitCode"),
        details: Some(WireDetails {
            causes: vec![WireCause {
                reason: Some("ExitCode"),
                message: code.to_string(),
            }],
        }),
        code: None,
    })
}

/// The error-channel Status of a command that could not run, as `apierrors.NewInternalError`.
pub fn status_internal_error(err: &str) -> String {
    render(&WireStatus {
        metadata: EmptyObject {},
        status: "Failure",
        message: Some(format!("Internal error occurred: {err}")),
        reason: Some("InternalError"),
        details: Some(WireDetails {
            causes: vec![WireCause {
                reason: None,
                message: err.to_string(),
            }],
        }),
        code: Some(500),
    })
}

/// The error-channel Status of a client that broke the protocol.
pub fn status_bad_request(message: &str) -> String {
    render(&WireStatus {
        metadata: EmptyObject {},
        status: "Failure",
        message: Some(message.to_string()),
        reason: Some("BadRequest"),
        details: None,
        code: Some(400),
    })
}

/// The exit code a shell would report: the code, or 128 + signal for a killed process.
pub fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// The message for a command that could not be started, in the wording of runc.
pub fn spawn_error_message(program: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound if program.contains('/') => {
            format!("exec: \"{program}\": stat {program}: no such file or directory")
        }
        io::ErrorKind::NotFound => {
            format!("exec: \"{program}\": executable file not found in $PATH")
        }
        io::ErrorKind::PermissionDenied => format!("exec: \"{program}\": permission denied"),
        _ => format!("exec: \"{program}\": {e}"),
    }
}

/// `pods/exec` query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// The command and its arguments (repeated `command`).
    pub command: Vec<String>,
    /// `container`, if given and not empty.
    pub container: Option<String>,
    /// Attach stdin.
    pub stdin: bool,
    /// Attach stdout.
    pub stdout: bool,
    /// Attach stderr (ignored with a tty: its output is merged into stdout).
    pub stderr: bool,
    /// Run in a terminal.
    pub tty: bool,
}

/// A query boolean as the API server converts it: only `0` and `false` (any case) are false, the
/// first value counts.
pub fn query_bool(query: &[(String, String)], key: &str) -> bool {
    query
        .iter()
        .find(|(k, _)| k == key)
        .is_some_and(|(_, v)| !(v == "0" || v.eq_ignore_ascii_case("false")))
}

impl ExecOptions {
    /// Reads the decoded query pairs.
    pub fn from_query(query: &[(String, String)]) -> Self {
        Self {
            command: query
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect(),
            container: query
                .iter()
                .find(|(k, _)| k == "container")
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty()),
            stdin: query_bool(query, "stdin"),
            stdout: query_bool(query, "stdout"),
            stderr: query_bool(query, "stderr"),
            tty: query_bool(query, "tty"),
        }
    }
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

/// Resolves the container of an exec or log request as the API server does: the only container
/// when none is named, else the named one if the pod has it (regular, init or ephemeral).
pub fn select_container(pod: &Value, requested: Option<&str>) -> ApiResult<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let spec = &pod["spec"];
    let containers = names(&spec["containers"]);
    match requested.filter(|c| !c.is_empty()) {
        None => match containers.as_slice() {
            [only] => Ok((*only).to_string()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            several => {
                let mut msg = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    several.join(" ")
                );
                let init = names(&spec["initContainers"]);
                if !init.is_empty() {
                    msg.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
                }
                Err(ApiError::bad_request(msg))
            }
        },
        Some(c) => {
            let known = containers
                .iter()
                .chain(names(&spec["initContainers"]).iter())
                .chain(names(&spec["ephemeralContainers"]).iter())
                .any(|n| *n == c);
            if known {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
    }
}

/// Checks an exec request against the pod and returns the container it runs in.
pub fn validate(pod: &Value, opts: &ExecOptions) -> ApiResult<String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    if opts.command.is_empty() {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let container = select_container(pod, opts.container.as_deref())?;
    if !opts.stdin && !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    if phase != "Running" {
        return Err(ApiError::bad_request(format!(
            "container not found (\"{container}\"): pod {name} is not running, current phase is {phase}"
        )));
    }
    Ok(container)
}

/// The process environment: the host's PATH, the pod identity, and the container's literal `env`.
pub fn process_env(pod: &Value, container: &str, tty: bool) -> Vec<(String, String)> {
    let (namespace, name) = ns_name(pod);
    let path =
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    let mut env = vec![("PATH".to_string(), path), ("HOSTNAME".to_string(), name.clone())];
    env.push(("POD_NAME".into(), name));
    env.push(("POD_NAMESPACE".into(), namespace));
    if tty {
        env.push(("TERM".into(), "xterm-256color".into()));
    }
    let spec_env = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|list| pod["spec"][*list].as_array())
        .flatten()
        .find(|c| c["name"] == container)
        .and_then(|c| c["env"].as_array());
    // Only literal values: valueFrom would need the kubelet's secret/configmap/fieldRef resolution.
    for e in spec_env.into_iter().flatten() {
        if let (Some(k), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
    }
    env
}

/// What to run for an exec session.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// The complete environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Give the process a stdin to write to (otherwise /dev/null, or the idle terminal).
    pub stdin: bool,
    /// Forward stdout.
    pub stdout: bool,
    /// Forward stderr (without a tty).
    pub stderr: bool,
    /// Run in a new PTY of this initial size.
    pub tty: Option<TermSize>,
}

/// The master side of a PTY, readable and writable without blocking the runtime.
#[derive(Debug)]
pub struct Pty {
    master: AsyncFd<OwnedFd>,
}

nix::ioctl_write_ptr_bad!(
    /// `ioctl(fd, TIOCSWINSZ, &winsize)`: sets a terminal's size.
    tiocswinsz,
    nix::libc::TIOCSWINSZ,
    Winsize
);

impl Pty {
    /// Opens a PTY pair of the given size. Both ends are close-on-exec from the start so that a
    /// process spawned concurrently for another session never inherits them (an inherited slave
    /// would keep this terminal open after its shell exited).
    pub fn open(size: TermSize) -> io::Result<(Self, OwnedFd)> {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let slave_path = ptsname_r(&master)?;
        let slave = nix::fcntl::open(
            slave_path.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let master: OwnedFd = master.into();
        set_winsize(&master, size)?;
        let flags = OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL)?);
        fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: the OwnedFd is an open descriptor that only this AsyncFd owns, so it stays open and
        // the same until the AsyncFd drops it.
        #[allow(
            unsafe_code,
            reason = "AsyncFd::register is unsafe; the descriptor's ownership is argued above"
        )]
        let master = unsafe { AsyncFd::register(master) }.map_err(|e| e.into_parts().1)?;
        Ok((Self { master }, slave))
    }

    /// Sets the terminal size; the kernel sends SIGWINCH to the terminal's foreground process group.
    pub fn resize(&self, size: TermSize) -> io::Result<()> {
        set_winsize(self.master.get_ref(), size)
    }

    /// Reads output. `Ok(0)` once no process has the terminal open any more (Linux reports EIO).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all bytes as terminal input.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

fn set_winsize(fd: &OwnedFd, size: TermSize) -> io::Result<()> {
    let ws = Winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which outlives the call.
    #[allow(
        unsafe_code,
        reason = "the window-size ioctl has no safe wrapper; the pointer is argued above"
    )]
    unsafe { tiocswinsz(fd.as_raw_fd(), &ws) }?;
    Ok(())
}

/// Where stdin goes: a pipe, or the terminal.
#[derive(Debug)]
pub enum ProcessInput {
    /// The process's stdin pipe; dropping it is EOF.
    Pipe(ChildStdin),
    /// The PTY master (a terminal has no EOF to give; closing stdin just stops input).
    Pty(Arc<Pty>),
}

impl ProcessInput {
    /// Writes all bytes.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            ProcessInput::Pipe(p) => {
                p.write_all(data).await?;
                p.flush().await
            }
            ProcessInput::Pty(p) => p.write_all(data).await,
        }
    }
}

/// Where output comes from: a pipe, or the terminal.
#[derive(Debug)]
pub enum ProcessOutput {
    /// The stdout pipe.
    Stdout(ChildStdout),
    /// The stderr pipe.
    Stderr(ChildStderr),
    /// The PTY master (stdout and stderr merged, as on a terminal).
    Pty(Arc<Pty>),
}

impl ProcessOutput {
    /// Reads some output; `Ok(0)` at end.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        match self {
            ProcessOutput::Stdout(p) => p.read(buf).await,
            ProcessOutput::Stderr(p) => p.read(buf).await,
            ProcessOutput::Pty(p) => p.read(buf).await,
        }
    }

    /// Reads everything up to end of output (tests and small commands only).
    pub async fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }
}

/// Puts every catchable signal back to its default action in a child about to exec. An ignored
/// signal stays ignored across exec, so without this an exec process inherits whatever kubesim's own
/// parent ignored: under `nohup` that is SIGHUP, and a shell's foreground job then outlives the hang-up
/// that ends the session. A container runtime starts container processes with default dispositions
/// (runc's init resets them), so kubesim does too. Only `sigaction`, which is async-signal-safe.
/// `last` is `SIGRTMAX()`, read before the fork: that libc call is not on the async-signal-safe list.
fn default_signal_dispositions(last: i32) {
    for sig in 1..=last {
        if sig == nix::libc::SIGKILL || sig == nix::libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no handler code; an invalid number only returns an error.
        #[allow(unsafe_code, reason = "signal(2) is unsafe in libc; SIG_DFL installs no handler")]
        unsafe {
            nix::libc::signal(sig, nix::libc::SIG_DFL);
        }
    }
}

/// A running exec process in a process group of its own.
#[derive(Debug)]
pub struct ExecProcess {
    child: Child,
    pgid: i32,
    /// Input, if the spec asked for stdin (or it runs in a terminal).
    pub stdin: Option<ProcessInput>,
    /// Output (with a tty: the terminal, which must be drained even when not forwarded).
    pub stdout: Option<ProcessOutput>,
    /// Error output (never with a tty).
    pub stderr: Option<ProcessOutput>,
    pty: Option<Arc<Pty>>,
}

impl ExecProcess {
    /// Starts the process: in a new process group, or with a tty in a new session whose
    /// controlling terminal is a fresh PTY. Must run inside a Tokio runtime.
    pub fn spawn(spec: &ProcessSpec) -> io::Result<Self> {
        let Some(program) = spec.argv.first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        let mut cmd = Command::new(program);
        cmd.args(&spec.argv[1..])
            .current_dir(&spec.cwd)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // A safety net only: the group kill is what ends children too.
            .kill_on_drop(true);
        match spec.tty {
            None => {
                cmd.stdin(if spec.stdin { Stdio::piped() } else { Stdio::null() })
                    .stdout(if spec.stdout { Stdio::piped() } else { Stdio::null() })
                    .stderr(if spec.stderr { Stdio::piped() } else { Stdio::null() })
                    .process_group(0);
                // SAFETY: only async-signal-safe calls (sigaction) between fork and exec.
                #[allow(
                    unsafe_code,
                    reason = "pre_exec is unsafe; only async-signal-safe calls run in the child"
                )]
                unsafe {
                    let last = nix::libc::SIGRTMAX();
                    cmd.pre_exec(move || {
                        default_signal_dispositions(last);
                        Ok(())
                    });
                }
                let mut child = cmd.spawn()?;
                let pgid = child_pgid(&child)?;
                Ok(Self {
                    pgid,
                    stdin: child.stdin.take().map(ProcessInput::Pipe),
                    stdout: child.stdout.take().map(ProcessOutput::Stdout),
                    stderr: child.stderr.take().map(ProcessOutput::Stderr),
                    child,
                    pty: None,
                })
            }
            Some(size) => {
                let (pty, slave) = Pty::open(size)?;
                cmd.stdin(Stdio::from(slave.try_clone()?))
                    .stdout(Stdio::from(slave.try_clone()?))
                    .stderr(Stdio::from(slave));
                // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
                #[allow(
                    unsafe_code,
                    reason = "pre_exec is unsafe; only async-signal-safe calls run in the child"
                )]
                unsafe {
                    let last = nix::libc::SIGRTMAX();
                    cmd.pre_exec(move || {
                        default_signal_dispositions(last);
                        // A new session makes the process a group leader with no controlling tty…
                        if nix::libc::setsid() < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        // …and stdin, already the slave, becomes it; job control and ^C work.
                        if nix::libc::ioctl(0, nix::libc::TIOCSCTTY as _, 0) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                let child = cmd.spawn();
                // Our copies of the slave must go now: the master reports end of output only when
                // no process holds the slave open.
                drop(cmd);
                let child = child?;
                let pgid = child_pgid(&child)?;
                let pty = Arc::new(pty);
                Ok(Self {
                    child,
                    pgid,
                    stdin: Some(ProcessInput::Pty(pty.clone())),
                    stdout: Some(ProcessOutput::Pty(pty.clone())),
                    stderr: None,
                    pty: Some(pty),
                })
            }
        }
    }

    /// The process group (equal to the process id).
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// The terminal, when running with a tty.
    pub fn pty(&self) -> Option<Arc<Pty>> {
        self.pty.clone()
    }

    /// Resizes the terminal; without one there is nothing to do.
    pub fn resize(&self, size: TermSize) -> io::Result<()> {
        match &self.pty {
            Some(p) => p.resize(size),
            None => Ok(()),
        }
    }

    /// SIGKILLs the whole process group.
    pub fn kill_group(&self) {
        kill_group(self.pgid);
    }

    /// Waits for the process (not its children) to exit.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }
}

fn child_pgid(child: &Child) -> io::Result<i32> {
    child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| io::Error::other("spawned process has no pid"))
}

/// One exec session, ready to run once the connection is upgraded.
#[derive(Debug, Clone)]
pub struct Session {
    /// Pod namespace (for process registration).
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Negotiated channel protocol.
    pub protocol: Protocol,
    /// What to run.
    pub spec: ProcessSpec,
    /// When the request was accepted; a pod deleted after this kills the process as it registers.
    pub requested_at: std::time::Instant,
}

/// Validates the exec parameters against the pod (command required; container required when the pod
/// has several) and upgrades the connection. Errors are returned before the upgrade, as Status.
pub fn exec(
    cluster: Arc<Cluster>,
    pod: Value,
    query: Vec<(String, String)>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    let requested_at = std::time::Instant::now();
    let opts = ExecOptions::from_query(&query);
    let container = validate(&pod, &opts)?;
    let offered: Vec<&HeaderValue> = ws.requested_protocols().collect();
    let protocol = Protocol::negotiate(offered.iter().filter_map(|h| h.to_str().ok())).ok_or_else(|| {
        let offered: Vec<&str> = offered.iter().filter_map(|h| h.to_str().ok()).collect();
        ApiError::bad_request(format!(
            "requested protocol(s) are not supported: [{}]; supports [{V5_PROTOCOL} {V4_PROTOCOL}]",
            offered.join(" ")
        ))
    })?;
    let (namespace, name) = ns_name(&pod);
    // The directory normally exists since admission; a restored state or a manual store write may
    // have skipped that.
    let cwd = ensure_pod_dir(&cluster, &namespace, &name)
        .map_err(|e| ApiError::internal(format!("cannot prepare the working directory of pod {name}: {e}")))?;
    let mut env = process_env(&pod, &container, opts.tty);
    env.push(("HOME".into(), cwd.display().to_string()));
    let spec = ProcessSpec {
        argv: opts.command,
        cwd,
        env,
        stdin: opts.stdin,
        stdout: opts.stdout,
        // With a tty the terminal merges stderr into stdout; upstream drops the stderr stream.
        stderr: opts.stderr && !opts.tty,
        tty: opts.tty.then_some(DEFAULT_TERM_SIZE),
    };
    tracing::info!(namespace, pod = name, container, protocol = protocol.name(), argv = ?spec.argv, tty = opts.tty, "exec");
    let session = Session {
        namespace,
        pod: name,
        protocol,
        spec,
        requested_at,
    };
    Ok(ws.protocols([protocol.name()]).on_upgrade(move |socket| async move {
        let (sink, stream) = socket.split();
        run_session(&cluster.kubelet, session, sink, stream).await;
    }))
}

/// The answer to an exec request that is not a WebSocket upgrade (SPDY from kubectl before 1.30, or
/// the SPDY fallback newer kubectl tries after a failed WebSocket upgrade): the same validation
/// error the WebSocket request got, so kubectl shows the server's reason; otherwise a 400 saying
/// that only WebSockets are served.
pub fn reject_non_websocket(pod: &Value, query: &[(String, String)]) -> ApiError {
    match validate(pod, &ExecOptions::from_query(query)) {
        Err(e) => e,
        Ok(_) => ApiError::bad_request(format!(
            "Upgrade request required: kubesim serves exec over WebSocket only ({V5_PROTOCOL} or {V4_PROTOCOL}; kubectl 1.30 or newer)"
        )),
    }
}

/// Pod subresources a client connects to (SPDY POST or WebSocket GET) rather than reads or writes.
pub const CONNECT_SUBRESOURCES: [&str; 3] = ["exec", "attach", "portforward"];

/// The first Kubernetes minor release (of major 1) that also asks for `create` when a client
/// connects to a [`CONNECT_SUBRESOURCES`] entry with a WebSocket GET: the feature gate
/// `AuthorizePodWebsocketUpgradeCreatePermission` is beta and on by default from 1.35 (KEP-4006,
/// kubernetes/kubernetes#133515; `pkg/features/kube_features.go`).
pub const UPGRADE_NEEDS_CREATE_SINCE_MINOR: u64 = 35;

/// A Kubernetes version kubesim cannot report or follow.
#[derive(Debug, thiserror::Error)]
#[error("Kubernetes version {version:?} is not a version like v1.35.0")]
pub struct VersionError {
    version: String,
    #[source]
    source: semver::Error,
}

/// Whether a server reporting `version` (`v1.35.0`, `1.34.2+k3s1`, `v1.36.0-rc.1`) authorizes a
/// WebSocket GET of `pods/exec`, `pods/attach` or `pods/portforward` as `create` too, not only as
/// `get`.
pub fn upgrade_needs_create(version: &str) -> Result<bool, VersionError> {
    version_since(version, UPGRADE_NEEDS_CREATE_SINCE_MINOR)
}

/// Whether `version` (`v1.35.0`, `1.34.2+k3s1`, `v1.36.0-rc.1`) is Kubernetes 1.`minor` or later.
pub fn version_since(version: &str, minor: u64) -> Result<bool, VersionError> {
    let v = semver::Version::parse(version.strip_prefix('v').unwrap_or(version)).map_err(|source| VersionError {
        version: version.to_string(),
        source,
    })?;
    Ok(v.major > 1 || (v.major == 1 && v.minor >= minor))
}

/// The second authorization of a connect request, after the request's own verb (`get` for a
/// WebSocket GET, `create` for a SPDY POST, from the request-info verb mapping in
/// `staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`) passed the authorization
/// filter. From 1.35 the pod registry's `ExecREST`/`AttachREST`/`PortForwardREST.Connect`
/// (`pkg/registry/core/pod/rest/subresources.go`) call `ensureAuthorizedForVerb(ctx, a, "create")`
/// (`pkg/registry/core/pod/rest/authorize.go`) before looking at the pod: the same attributes with
/// the verb `create`, refused with `apierrors.NewForbidden(pods, name, reason)`, whose message is
/// `pods "NAME" is forbidden: ` and the authorizer's reason (empty for a plain RBAC refusal).
pub fn authorize_connect(cluster: &Cluster, user: &UserInfo, attrs: &Attributes<'_>) -> ApiResult<()> {
    let connect = attrs.group.is_empty()
        && attrs.resource == "pods"
        && attrs.subresource.is_some_and(|s| CONNECT_SUBRESOURCES.contains(&s));
    if !connect || attrs.verb == "create" {
        return Ok(());
    }
    // The version was checked when the cluster was built; one that cannot be read keeps the stricter
    // rule rather than opening a path a real server would close.
    if !upgrade_needs_create(&cluster.config.version).unwrap_or(true) {
        return Ok(());
    }
    let create = Attributes {
        verb: "create",
        ..attrs.clone()
    };
    let decision = auth::decide(cluster, user, &create);
    if decision.allowed {
        return Ok(());
    }
    let name = attrs.name.unwrap_or_default();
    let mut e = ApiError::new(
        403,
        "Forbidden",
        format!("pods \"{name}\" is forbidden: {}", decision.reason),
    );
    e.details = Some(serde_json::json!({"name": name, "kind": "pods"}));
    Err(e)
}

/// Aborts the helper tasks of a session however it ends.
struct AbortOnDrop(Vec<AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Why the socket reader stopped.
#[derive(Debug)]
enum ReaderEnd {
    /// The client closed the connection, or it broke.
    ClientGone,
    /// The client sent something the protocol does not allow.
    ProtocolError(String),
}

/// Runs one exec session over an upgraded connection: spawns the process, pumps the channels, and
/// ends with the Status on channel 3 and a close frame — or, if the client goes away first, by
/// killing the process group. Generic over the message transport so it is testable without HTTP.
pub async fn run_session<Si, St, E>(kubelet: &Kubelet, session: Session, sink: Si, stream: St)
where
    Si: Sink<Message> + Unpin + Send + 'static,
    Si::Error: Display,
    St: Stream<Item = Result<Message, E>> + Unpin + Send + 'static,
    E: Display + Send + 'static,
{
    let Session {
        namespace,
        pod,
        protocol,
        mut spec,
        requested_at,
    } = session;
    let client_gone = CancellationToken::new();
    let (out_tx, out_rx) = mpsc::channel::<Message>(OUTGOING_FRAMES);
    let writer = tokio::spawn(write_frames(sink, out_rx, client_gone.clone()));

    // Like upstream, an empty frame on the lowest output channel tells the client the streams are up.
    let first = if spec.stdout {
        STDOUT_CHANNEL
    } else if spec.stderr {
        STDERR_CHANNEL
    } else {
        ERROR_CHANNEL
    };
    let _ = out_tx.send(Message::Binary(encode_frame(first, &[]))).await;

    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(STDIN_FRAMES);
    let (resize_tx, mut resize_rx) = watch::channel::<Option<TermSize>>(None);
    let mut reader = tokio::spawn(read_frames(stream, protocol, spec.stdin.then_some(stdin_tx), resize_tx));
    let mut tasks = AbortOnDrop(vec![writer.abort_handle(), reader.abort_handle()]);

    if let Some(size) = spec.tty.as_mut() {
        if resize_rx.borrow().is_none() {
            // Err means the reader ended (client gone) or no resize came in time: start at 80x24.
            let _ = tokio::time::timeout(FIRST_RESIZE_WAIT, resize_rx.changed()).await;
        }
        let first = *resize_rx.borrow_and_update();
        if let Some(s) = first
            && s.width > 0
            && s.height > 0
        {
            *size = s;
        }
    }

    let mut proc = match ExecProcess::spawn(&spec) {
        Ok(p) => p,
        Err(e) => {
            let program = spec.argv.first().map(String::as_str).unwrap_or_default();
            let msg = format!(
                "error executing command in container: {}",
                spawn_error_message(program, &e)
            );
            tracing::info!(namespace, pod, error = %e, "exec could not start the command");
            finish(out_tx, writer, reader, status_internal_error(&msg)).await;
            return;
        }
    };
    let guard = kubelet.register(&namespace, &pod, proc.pgid(), requested_at);

    let mut pumps = JoinSet::new();
    if let Some(out) = proc.stdout.take() {
        // A terminal must be drained even when its output is not wanted, or the process blocks.
        pumps.spawn(pump(out, STDOUT_CHANNEL, spec.stdout, out_tx.clone()));
    }
    if let Some(err) = proc.stderr.take() {
        pumps.spawn(pump(err, STDERR_CHANNEL, true, out_tx.clone()));
    }
    match proc.stdin.take() {
        Some(input) if spec.stdin => tasks.0.push(tokio::spawn(feed_stdin(input, stdin_rx)).abort_handle()),
        _ => drop(stdin_rx),
    }
    if let Some(pty) = proc.pty() {
        tasks
            .0
            .push(tokio::spawn(follow_resizes(pty, resize_rx)).abort_handle());
    }

    let exited = tokio::select! {
        st = proc.wait() => Ok(st),
        end = &mut reader => Err(match end {
            Ok(ReaderEnd::ProtocolError(m)) => Some(m),
            _ => None,
        }),
        _ = client_gone.cancelled() => Err(None),
    };

    match exited {
        Err(None) => {
            tracing::info!(
                namespace,
                pod,
                pgid = proc.pgid(),
                "exec client went away; killing the process group"
            );
            proc.kill_group();
            let _ = tokio::time::timeout(REAP_TIMEOUT, proc.wait()).await;
            wait_group_gone(proc.pgid(), GROUP_GONE_TIMEOUT).await;
            drop(guard);
        }
        Err(Some(msg)) => {
            tracing::info!(
                namespace,
                pod,
                error = msg,
                "exec protocol error; killing the process group"
            );
            proc.kill_group();
            let _ = tokio::time::timeout(REAP_TIMEOUT, proc.wait()).await;
            pumps.abort_all();
            wait_group_gone(proc.pgid(), GROUP_GONE_TIMEOUT).await;
            drop(guard);
            finish_after_reader(out_tx, writer, status_bad_request(&msg)).await;
        }
        Ok(status) => {
            // Leftover background children would hold the output open and outlive the session.
            proc.kill_group();
            let drained =
                tokio::time::timeout(DRAIN_TIMEOUT, async { while pumps.join_next().await.is_some() {} }).await;
            if drained.is_err() {
                tracing::warn!(namespace, pod, "exec output did not end after the command exited");
                pumps.abort_all();
            }
            wait_group_gone(proc.pgid(), GROUP_GONE_TIMEOUT).await;
            drop(guard);
            let status = match status {
                Ok(s) if s.success() => status_success(),
                Ok(s) => status_exit_code(&spec.argv, exit_code(s)),
                Err(e) => status_internal_error(&format!("error executing command in container: {e}")),
            };
            tracing::debug!(namespace, pod, status, "exec finished");
            finish(out_tx, writer, reader, status).await;
        }
    }
    drop(tasks);
}

/// Sends the final Status and a normal close, then waits (briefly) for the client's close reply so
/// the connection is not reset under data it has not read yet.
async fn finish(
    out_tx: mpsc::Sender<Message>,
    writer: JoinHandle<()>,
    mut reader: JoinHandle<ReaderEnd>,
    status: String,
) {
    finish_after_reader(out_tx, writer, status).await;
    if tokio::time::timeout(CLOSE_TIMEOUT, &mut reader).await.is_err() {
        reader.abort();
    }
}

async fn finish_after_reader(out_tx: mpsc::Sender<Message>, writer: JoinHandle<()>, status: String) {
    let _ = out_tx
        .send(Message::Binary(encode_frame(ERROR_CHANNEL, status.as_bytes())))
        .await;
    let _ = out_tx
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    drop(out_tx);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, writer).await;
}

/// Forwards queued messages to the socket; a failed send means the client is gone.
async fn write_frames<Si>(mut sink: Si, mut rx: mpsc::Receiver<Message>, client_gone: CancellationToken)
where
    Si: Sink<Message> + Unpin,
    Si::Error: Display,
{
    while let Some(msg) = rx.recv().await {
        let closing = matches!(msg, Message::Close(_));
        if let Err(e) = sink.send(msg).await {
            tracing::debug!(error = %e, "exec socket write failed");
            client_gone.cancel();
            return;
        }
        if closing {
            break;
        }
    }
    let _ = sink.close().await;
}

/// Reads process output and queues it as frames of `channel` (or discards it).
async fn pump(mut out: ProcessOutput, channel: u8, forward: bool, tx: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match out.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                if forward
                    && tx
                        .send(Message::Binary(encode_frame(channel, &buf[..n])))
                        .await
                        .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(channel, error = %e, "exec output read failed");
                return;
            }
        }
    }
}

/// Writes client input to the process until the client closes stdin or the process stops reading.
async fn feed_stdin(mut input: ProcessInput, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(data) = rx.recv().await {
        if let Err(e) = input.write_all(&data).await {
            tracing::debug!(error = %e, "exec stdin closed by the process");
            return;
        }
    }
    // Dropping a pipe is the EOF the client asked for.
}

async fn follow_resizes(pty: Arc<Pty>, mut rx: watch::Receiver<Option<TermSize>>) {
    while rx.changed().await.is_ok() {
        let size = *rx.borrow_and_update();
        if let Some(size) = size
            && let Err(e) = pty.resize(size)
        {
            tracing::debug!(error = %e, "terminal resize failed");
        }
    }
}

async fn reserve(tx: Option<mpsc::Sender<Bytes>>) -> Option<mpsc::OwnedPermit<Bytes>> {
    tx?.reserve_owned().await.ok()
}

/// The client side of an attach session: [`read_frames`] for a process another task owns.
pub(crate) async fn read_client_frames<St, E>(
    stream: St,
    protocol: Protocol,
    stdin_tx: Option<mpsc::Sender<Bytes>>,
    resize_tx: watch::Sender<Option<TermSize>>,
) where
    St: Stream<Item = Result<Message, E>> + Unpin,
    E: Display,
{
    if let ReaderEnd::ProtocolError(e) = read_frames(stream, protocol, stdin_tx, resize_tx).await {
        tracing::debug!(error = e, "attach client broke the protocol");
    }
}

/// Reads client messages: stdin to the process (buffered up to a bound, so a process that does not
/// read stdin cannot make us stop noticing a disconnect until that bound), resizes, v5 close.
async fn read_frames<St, E>(
    mut stream: St,
    protocol: Protocol,
    mut stdin_tx: Option<mpsc::Sender<Bytes>>,
    resize_tx: watch::Sender<Option<TermSize>>,
) -> ReaderEnd
where
    St: Stream<Item = Result<Message, E>> + Unpin,
    E: Display,
{
    let mut pending: VecDeque<Bytes> = VecDeque::new();
    let mut pending_bytes = 0usize;
    let mut stdin_closing = false;
    loop {
        let room = pending_bytes < STDIN_PENDING_BYTES;
        tokio::select! {
            permit = reserve(stdin_tx.clone()), if !pending.is_empty() => {
                match (permit, pending.pop_front()) {
                    (Some(p), Some(data)) => {
                        pending_bytes -= data.len();
                        p.send(data);
                    }
                    _ => {
                        // The process no longer takes input; what it did not read is dropped.
                        pending.clear();
                        pending_bytes = 0;
                        stdin_tx = None;
                    }
                }
                if pending.is_empty() && stdin_closing {
                    stdin_tx = None;
                }
            }
            msg = stream.next(), if room => {
                let data = match msg {
                    None | Some(Ok(Message::Close(_))) => return ReaderEnd::ClientGone,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "exec socket read failed");
                        return ReaderEnd::ClientGone;
                    }
                    Some(Ok(Message::Binary(b))) => b,
                    // The binary protocols have no text frames; take the bytes as a lenient peer would.
                    Some(Ok(Message::Text(t))) => Bytes::from(t),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                };
                match decode_client_frame(protocol, &data) {
                    Err(e) => return ReaderEnd::ProtocolError(e),
                    Ok(None) => {}
                    Ok(Some(ClientFrame::Stdin(d))) => {
                        if stdin_tx.is_some() && !stdin_closing && !d.is_empty() {
                            pending_bytes += d.len();
                            pending.push_back(d);
                        }
                    }
                    Ok(Some(ClientFrame::Resize(size))) => {
                        resize_tx.send_replace(Some(size));
                    }
                    Ok(Some(ClientFrame::CloseStream(STDIN_CHANNEL))) => {
                        stdin_closing = true;
                        if pending.is_empty() {
                            stdin_tx = None;
                        }
                    }
                    Ok(Some(ClientFrame::CloseStream(ch))) => tracing::debug!(channel = ch, "client closed a channel"),
                    Ok(Some(ClientFrame::Ignored(ch))) => tracing::trace!(channel = ch, "ignoring a frame for a channel the client cannot write"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Instant;

    fn spec(argv: &[&str], tty: Option<TermSize>) -> ProcessSpec {
        let cwd = std::env::temp_dir();
        ProcessSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd,
            env: vec![
                ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
                ("TERM".into(), "xterm-256color".into()),
            ],
            stdin: true,
            stdout: true,
            stderr: true,
            tty,
        }
    }

    fn pod(containers: &[&str], phase: &str) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"containers": containers.iter().map(|c| json!({"name": c, "image": "x", "env": [{"name": "GREETING", "value": "hello"}]})).collect::<Vec<_>>()},
            "status": {"phase": phase},
        })
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn frames_encode_and_decode() {
        assert_eq!(&encode_frame(1, b"hi")[..], &[1, b'h', b'i']);
        assert_eq!(&encode_frame(3, b"")[..], &[3]);
        let d = |b: &[u8], p| decode_client_frame(p, &Bytes::copy_from_slice(b));
        assert_eq!(d(b"", Protocol::V5), Ok(None));
        assert_eq!(
            d(b"\x00ls\n", Protocol::V4),
            Ok(Some(ClientFrame::Stdin(Bytes::from_static(b"ls\n"))))
        );
        assert_eq!(
            d(b"\x04{\"Width\":100,\"Height\":40}", Protocol::V4),
            Ok(Some(ClientFrame::Resize(TermSize { width: 100, height: 40 })))
        );
        assert_eq!(d(&[255, 0], Protocol::V5), Ok(Some(ClientFrame::CloseStream(0))));
        // v4 has no close signal; 255 is just an unknown channel.
        assert_eq!(d(&[255, 0], Protocol::V4), Ok(Some(ClientFrame::Ignored(255))));
        assert!(d(&[255, 0, 1], Protocol::V5).is_err());
        assert!(d(&[255], Protocol::V5).is_err());
        assert!(d(&[255, 9], Protocol::V5).is_err());
        assert_eq!(d(b"\x01out", Protocol::V5), Ok(Some(ClientFrame::Ignored(1))));
        assert!(d(b"\x04{not json", Protocol::V5).is_err());
        assert_eq!(d(b"\x04", Protocol::V5), Ok(None));
    }

    #[test]
    fn resize_is_lenient_like_go() {
        assert_eq!(
            decode_resize(br#"{"width":10,"HEIGHT":5}"#),
            Ok(TermSize { width: 10, height: 5 })
        );
        assert_eq!(decode_resize(br#"{"Width":10}"#), Ok(TermSize { width: 10, height: 0 }));
        assert_eq!(
            decode_resize(br#"{"Width":1,"Height":1}{"Width":2,"Height":3}"#),
            Ok(TermSize { width: 2, height: 3 })
        );
        assert!(decode_resize(br#"{"Width":70000,"Height":1}"#).is_err());
        assert!(decode_resize(br#"[1]"#).is_err());
    }

    #[test]
    fn statuses_match_the_kubelet() {
        assert_eq!(status_success(), r#"{"metadata":{},"status":"Success"}"#);
        let argv = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        assert_eq!(
            status_exit_code(&argv, 3),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
        let e: Value = serde_json::from_str(&status_internal_error("boom")).unwrap();
        assert_eq!(e["reason"], "InternalError");
        assert_eq!(e["code"], 500);
        assert_eq!(e["message"], "Internal error occurred: boom");
        assert_eq!(e["details"]["causes"][0]["message"], "boom");
        let e: Value = serde_json::from_str(&status_bad_request("bad")).unwrap();
        assert_eq!(e["code"], 400);
    }

    #[test]
    fn spawn_errors_read_like_runc() {
        let nf = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(
            spawn_error_message("nope", &nf),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(
            spawn_error_message("/x/nope", &nf),
            "exec: \"/x/nope\": stat /x/nope: no such file or directory"
        );
    }

    #[test]
    fn options_from_query() {
        let o = ExecOptions::from_query(&q(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo hi"),
            ("stdout", "true"),
            ("stderr", "1"),
            ("stdin", "false"),
            ("tty", "0"),
            ("container", ""),
        ]));
        assert_eq!(o.command, vec!["sh", "-c", "echo hi"]);
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        assert_eq!(o.container, None);
        // Go's converter: anything but 0/false is true, even an empty value.
        assert!(query_bool(&q(&[("tty", "")]), "tty"));
        assert!(!query_bool(&q(&[("tty", "1")]), "stdin"));
        assert!(!query_bool(&q(&[("tty", "False")]), "tty"));
    }

    #[test]
    fn validation_messages_match_upstream() {
        let with = |pairs: &[(&str, &str)]| ExecOptions::from_query(&q(pairs));
        let one = pod(&["app"], "Running");
        let e = validate(&one, &with(&[("stdout", "1")])).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "you must specify at least one command for the container")
        );
        assert_eq!(
            validate(&one, &with(&[("command", "ls"), ("stdout", "1")])).unwrap(),
            "app"
        );

        let two = pod(&["a", "b"], "Running");
        let e = validate(&two, &with(&[("command", "ls"), ("stdout", "1")])).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(e.reason, "BadRequest");
        assert_eq!(
            e.message,
            "a container name must be specified for pod web, choose one of: [a b]"
        );
        let e = validate(&two, &with(&[("command", "ls"), ("stdout", "1"), ("container", "c")])).unwrap_err();
        assert_eq!(e.message, "container c is not valid for pod web");
        assert_eq!(
            validate(&two, &with(&[("command", "ls"), ("stdout", "1"), ("container", "b")])).unwrap(),
            "b"
        );

        let e = validate(&one, &with(&[("command", "ls")])).unwrap_err();
        assert_eq!(e.message, "you must specify at least 1 of stdin, stdout, stderr");

        let pending = pod(&["app"], "Pending");
        let e = validate(&pending, &with(&[("command", "ls"), ("stdout", "1")])).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("Pending"), "{}", e.message);
    }

    #[test]
    fn env_has_identity_and_literal_container_env() {
        let env = process_env(&pod(&["app"], "Running"), "app", true);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("POD_NAME"), Some("web"));
        assert_eq!(get("POD_NAMESPACE"), Some("ns"));
        assert_eq!(get("HOSTNAME"), Some("web"));
        assert_eq!(get("TERM"), Some("xterm-256color"));
        assert_eq!(get("GREETING"), Some("hello"));
        assert!(get("PATH").is_some());
        assert!(
            process_env(&pod(&["app"], "Running"), "app", false)
                .iter()
                .all(|(k, _)| k != "TERM")
        );
    }

    /// 1.35 is where `AuthorizePodWebsocketUpgradeCreatePermission` became beta and on by default
    /// (kubernetes/website `feature-gates/AuthorizePodWebsocketUpgradeCreatePermission.md`).
    #[test]
    fn create_on_upgrade_from_1_35() {
        for (v, needs) in [
            ("v1.33.1", false),
            ("v1.34.9", false),
            ("1.34.2+k3s1", false),
            ("v1.35.0", true),
            ("v1.35.0-rc.1", true),
            ("v1.36.2-gke.100", true),
            ("v2.0.0", true),
        ] {
            assert_eq!(upgrade_needs_create(v).unwrap(), needs, "{v}");
        }
        for bad in ["", "v1.35", "latest", "v1.x.0"] {
            let e = upgrade_needs_create(bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("Kubernetes version {bad:?} is not a version like v1.35.0")
            );
            // What is wrong with it is the source (anyhow prints it as "Caused by").
            assert!(std::error::Error::source(&e).is_some(), "{bad}");
        }
    }

    #[test]
    fn protocol_negotiation_prefers_v5() {
        assert_eq!(
            Protocol::negotiate(["v4.channel.k8s.io", "v5.channel.k8s.io"]),
            Some(Protocol::V5)
        );
        assert_eq!(Protocol::negotiate(["v4.channel.k8s.io"]), Some(Protocol::V4));
        assert_eq!(Protocol::negotiate(["channel.k8s.io"]), None);
    }

    #[tokio::test]
    async fn pipes_without_tty() {
        let mut p = ExecProcess::spawn(&spec(&["sh", "-c", "echo out; echo err >&2; exit 7"], None)).unwrap();
        let mut out = p.stdout.take().unwrap();
        let mut err = p.stderr.take().unwrap();
        let (o, e) = tokio::join!(out.read_to_end(), err.read_to_end());
        assert_eq!(o.unwrap(), b"out\n");
        assert_eq!(e.unwrap(), b"err\n");
        assert_eq!(exit_code(p.wait().await.unwrap()), 7);
    }

    #[tokio::test]
    async fn stdin_pipe_gets_eof_when_dropped() {
        let mut p = ExecProcess::spawn(&spec(&["cat"], None)).unwrap();
        let mut input = p.stdin.take().unwrap();
        input.write_all(b"abc").await.unwrap();
        drop(input);
        assert_eq!(p.stdout.take().unwrap().read_to_end().await.unwrap(), b"abc");
        assert!(p.wait().await.unwrap().success());
    }

    #[tokio::test]
    async fn tty_merges_output_and_is_a_terminal() {
        let mut p = ExecProcess::spawn(&spec(
            &[
                "sh",
                "-c",
                "test -t 0 && test -t 1 && echo tty; echo err >&2; stty size",
            ],
            Some(TermSize { width: 100, height: 30 }),
        ))
        .unwrap();
        assert!(p.stderr.is_none());
        let out = String::from_utf8(p.stdout.take().unwrap().read_to_end().await.unwrap()).unwrap();
        // The terminal turns \n into \r\n.
        assert_eq!(out, "tty\r\nerr\r\n30 100\r\n");
        assert!(p.wait().await.unwrap().success());
    }

    async fn read_until(out: &mut ProcessOutput, acc: &mut String, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 4096];
        while !acc.contains(needle) {
            assert!(Instant::now() < deadline, "timed out waiting for {needle:?} in {acc:?}");
            let n = tokio::time::timeout(Duration::from_secs(10), out.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "output ended before {needle:?}: {acc:?}");
            acc.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    #[tokio::test]
    async fn resize_changes_stty_size() {
        let mut p = ExecProcess::spawn(&spec(
            &["sh", "-c", "stty size; read x; stty size"],
            Some(DEFAULT_TERM_SIZE),
        ))
        .unwrap();
        let mut out = p.stdout.take().unwrap();
        let mut acc = String::new();
        read_until(&mut out, &mut acc, "24 80").await;
        p.resize(TermSize { width: 132, height: 50 }).unwrap();
        p.stdin.as_mut().unwrap().write_all(b"go\n").await.unwrap();
        read_until(&mut out, &mut acc, "50 132").await;
        assert!(p.wait().await.unwrap().success());
    }

    #[tokio::test]
    async fn killing_the_group_ends_children_too() {
        let kubelet = Kubelet::default();
        let mut p = ExecProcess::spawn(&spec(&["sh", "-c", "sleep 100 & sleep 100; wait"], None)).unwrap();
        let guard = kubelet.register("ns", "pod", p.pgid(), std::time::Instant::now());
        let deadline = Instant::now() + Duration::from_secs(10);
        while kubelet.active_processes("ns", "pod") < 3 {
            assert!(Instant::now() < deadline, "children did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        kubelet.kill_pod("ns", "pod");
        let st = tokio::time::timeout(Duration::from_secs(5), p.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exit_code(st), 137);
        assert!(started.elapsed() < Duration::from_secs(5));
        while kubelet.active_processes("ns", "pod") > 0 {
            assert!(Instant::now() < deadline, "background sleep survived the group kill");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(guard);
        assert_eq!(kubelet.sessions("ns", "pod"), 0);
    }

    #[tokio::test]
    async fn missing_program_is_not_found() {
        let e = ExecProcess::spawn(&spec(&["definitely-not-a-command-kubesim"], None)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    // --- whole sessions over an in-memory transport ---

    type Incoming = futures::channel::mpsc::Sender<Result<Message, axum::Error>>;
    type Outgoing = futures::channel::mpsc::Receiver<Message>;

    struct Harness {
        kubelet: Arc<Kubelet>,
        to_server: Incoming,
        from_server: Outgoing,
        done: JoinHandle<()>,
    }

    fn start(protocol: Protocol, spec: ProcessSpec) -> Harness {
        let kubelet = Arc::new(Kubelet::default());
        let (to_server, server_in) = futures::channel::mpsc::channel::<Result<Message, axum::Error>>(16);
        let (server_out, from_server) = futures::channel::mpsc::channel::<Message>(16);
        let k = kubelet.clone();
        let session = Session {
            namespace: "ns".into(),
            pod: "pod".into(),
            protocol,
            spec,
            requested_at: Instant::now(),
        };
        let done = tokio::spawn(async move { run_session(&k, session, server_out, server_in).await });
        Harness {
            kubelet,
            to_server,
            from_server,
            done,
        }
    }

    impl Harness {
        async fn send(&mut self, channel: u8, payload: &[u8]) {
            self.to_server
                .send(Ok(Message::Binary(encode_frame(channel, payload))))
                .await
                .unwrap();
        }

        /// Collects frames until the server closes: (stdout, stderr, status, saw close frame).
        async fn collect(&mut self) -> (Vec<u8>, Vec<u8>, Option<Value>, bool) {
            let (mut out, mut err, mut status, mut closed) = (Vec::new(), Vec::new(), None, false);
            while let Some(m) = tokio::time::timeout(Duration::from_secs(10), self.from_server.next())
                .await
                .unwrap()
            {
                match m {
                    Message::Binary(b) => match b[0] {
                        STDOUT_CHANNEL => out.extend_from_slice(&b[1..]),
                        STDERR_CHANNEL => err.extend_from_slice(&b[1..]),
                        ERROR_CHANNEL if b.len() > 1 => status = Some(serde_json::from_slice(&b[1..]).unwrap()),
                        ERROR_CHANNEL => {}
                        c => panic!("unexpected channel {c}"),
                    },
                    Message::Close(f) => {
                        assert_eq!(f.unwrap().code, 1000);
                        closed = true;
                        // Answer the close like a client library does.
                        let _ = self.to_server.send(Ok(Message::Close(None))).await;
                    }
                    other => panic!("unexpected message {other:?}"),
                }
            }
            (out, err, status, closed)
        }
    }

    #[tokio::test]
    async fn session_runs_command_and_reports_success() {
        let mut h = start(Protocol::V5, spec(&["sh", "-c", "echo hi; echo oops >&2"], None));
        let (out, err, status, closed) = h.collect().await;
        assert_eq!(out, b"hi\n");
        assert_eq!(err, b"oops\n");
        assert_eq!(status.unwrap(), json!({"metadata": {}, "status": "Success"}));
        assert!(closed);
        tokio::time::timeout(Duration::from_secs(5), h.done)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn session_reports_exit_code() {
        let mut h = start(Protocol::V4, spec(&["sh", "-c", "exit 42"], None));
        let (_, _, status, _) = h.collect().await;
        let status = status.unwrap();
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(
            status["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "42"})
        );
    }

    #[tokio::test]
    async fn session_reports_missing_command() {
        let mut h = start(Protocol::V5, spec(&["no-such-cmd-kubesim"], None));
        let (_, _, status, closed) = h.collect().await;
        let status = status.unwrap();
        assert_eq!(status["reason"], "InternalError");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("exec: \"no-such-cmd-kubesim\": executable file not found in $PATH"),
            "{status}"
        );
        assert!(closed);
    }

    #[tokio::test]
    async fn v5_close_gives_stdin_eof() {
        let mut h = start(Protocol::V5, spec(&["cat"], None));
        h.send(STDIN_CHANNEL, b"one ").await;
        h.send(STDIN_CHANNEL, b"two").await;
        h.to_server
            .send(Ok(Message::Binary(Bytes::from_static(&[255, 0]))))
            .await
            .unwrap();
        let (out, _, status, _) = h.collect().await;
        assert_eq!(out, b"one two");
        assert_eq!(status.unwrap()["status"], "Success");
    }

    #[tokio::test]
    async fn tty_session_uses_first_resize_and_follows_later_ones() {
        let mut s = spec(&["sh", "-c", "stty size; read x; stty size"], Some(DEFAULT_TERM_SIZE));
        s.stderr = false;
        let mut h = start(Protocol::V5, s);
        h.send(RESIZE_CHANNEL, br#"{"Width":120,"Height":40}"#).await;
        // The first resize arrives before the shell reads it; the next one after.
        let mut acc = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&acc).contains("40 120") {
            assert!(Instant::now() < deadline);
            if let Some(Message::Binary(b)) = tokio::time::timeout(Duration::from_secs(10), h.from_server.next())
                .await
                .unwrap()
            {
                assert_eq!(b[0], STDOUT_CHANNEL);
                acc.extend_from_slice(&b[1..]);
            }
        }
        h.send(RESIZE_CHANNEL, br#"{"Width":90,"Height":20}"#).await;
        // Give the resize a moment to land before the shell asks again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.send(STDIN_CHANNEL, b"\n").await;
        let (out, _, status, _) = h.collect().await;
        assert!(
            String::from_utf8_lossy(&out).contains("20 90"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(status.unwrap()["status"], "Success");
    }

    #[tokio::test]
    async fn client_going_away_kills_the_shell() {
        let h = start(Protocol::V5, spec(&["sh", "-c", "sleep 100 & sleep 100"], None));
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.kubelet.active_processes("ns", "pod") < 2 {
            assert!(Instant::now() < deadline, "shell did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The transport ends, as when a TCP connection drops.
        drop(h.to_server);
        tokio::time::timeout(Duration::from_secs(5), h.done)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(h.kubelet.active_processes("ns", "pod"), 0);
        assert_eq!(h.kubelet.sessions("ns", "pod"), 0);
    }

    #[tokio::test]
    async fn pod_deletion_ends_the_session_with_an_exit_status() {
        let mut h = start(Protocol::V5, spec(&["sleep", "100"], None));
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.kubelet.active_processes("ns", "pod") < 1 {
            assert!(Instant::now() < deadline, "process did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        h.kubelet.kill_pod("ns", "pod");
        let (_, _, status, closed) = h.collect().await;
        assert_eq!(status.unwrap()["details"]["causes"][0]["message"], "137");
        assert!(closed);
        assert_eq!(h.kubelet.active_processes("ns", "pod"), 0);
    }

    #[tokio::test]
    async fn pod_deleted_while_exec_starts_kills_at_registration() {
        let kubelet = Kubelet::default();
        let requested_at = Instant::now();
        // The pod is deleted after the request was accepted but before the process registered.
        kubelet.kill_pod("ns", "pod");
        let mut p = ExecProcess::spawn(&spec(&["sleep", "100"], None)).unwrap();
        let _guard = kubelet.register("ns", "pod", p.pgid(), requested_at);
        let st = tokio::time::timeout(Duration::from_secs(5), p.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exit_code(st), 137);
        // A request accepted after the deletion (a recreated pod) is left alone.
        let mut p = ExecProcess::spawn(&spec(&["sleep", "100"], None)).unwrap();
        let guard = kubelet.register("ns", "pod", p.pgid(), Instant::now());
        assert!(
            tokio::time::timeout(Duration::from_millis(300), p.wait())
                .await
                .is_err()
        );
        drop(guard);
        let st = tokio::time::timeout(Duration::from_secs(5), p.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exit_code(st), 137);
    }

    #[tokio::test]
    async fn protocol_error_reports_and_kills() {
        let mut h = start(Protocol::V5, spec(&["sleep", "100"], None));
        h.send(RESIZE_CHANNEL, b"{broken").await;
        let (_, _, status, closed) = h.collect().await;
        let status = status.unwrap();
        assert_eq!(status["code"], 400);
        assert!(
            status["message"].as_str().unwrap().contains("invalid resize"),
            "{status}"
        );
        assert!(closed);
        tokio::time::timeout(Duration::from_secs(5), h.done)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(h.kubelet.active_processes("ns", "pod"), 0);
    }

    #[tokio::test]
    async fn large_output_streams_in_bounded_frames() {
        // 4 MiB through a channel of 16 frames: must arrive whole and in order.
        let mut h = start(
            Protocol::V4,
            spec(&["sh", "-c", "head -c 4194304 /dev/zero | tr '\\0' 'a'"], None),
        );
        let mut total = 0usize;
        let mut max_frame = 0usize;
        let mut status = None;
        while let Some(m) = tokio::time::timeout(Duration::from_secs(20), h.from_server.next())
            .await
            .unwrap()
        {
            match m {
                Message::Binary(b) if b[0] == STDOUT_CHANNEL => {
                    assert!(b[1..].iter().all(|&c| c == b'a'));
                    total += b.len() - 1;
                    max_frame = max_frame.max(b.len() - 1);
                }
                Message::Binary(b) if b[0] == ERROR_CHANNEL && b.len() > 1 => status = Some(b),
                Message::Close(_) => {
                    let _ = h.to_server.send(Ok(Message::Close(None))).await;
                }
                _ => {}
            }
        }
        assert_eq!(total, 4 * 1024 * 1024);
        assert!(max_frame <= READ_CHUNK);
        assert!(status.is_some());
    }

    /// Exec through a real HTTP server and real clients: kube-rs always, kubectl in an ignored test.
    mod e2e {
        use super::*;
        use crate::resources::GroupResource;
        use axum::Router;
        use axum::extract::{Path, Query, State};
        use axum::response::IntoResponse;
        use axum::routing::{any, get};
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::{Api, AttachParams, TerminalSize};
        use std::net::SocketAddr;
        use tokio::io::AsyncReadExt;

        use crate::kubelet::test_support::cluster;

        fn add_pod(cluster: &Cluster, name: &str, containers: &[&str]) {
            let mut pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect::<Vec<_>>()},
            });
            crate::kubelet::admit_pod(cluster, &mut pod);
            cluster.store.create(&GroupResource::new("", "pods"), pod).unwrap();
        }

        async fn get_pod(
            State(c): State<Arc<Cluster>>,
            Path((ns, name)): Path<(String, String)>,
        ) -> axum::response::Response {
            let gr = GroupResource::new("", "pods");
            match c.store.get(&gr, &ns, &name) {
                Some(p) => axum::Json(p).into_response(),
                None => ApiError::not_found(&gr, &name).into_response(),
            }
        }

        async fn exec_route(
            State(c): State<Arc<Cluster>>,
            Path((ns, name)): Path<(String, String)>,
            Query(query): Query<Vec<(String, String)>>,
            ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
        ) -> axum::response::Response {
            let gr = GroupResource::new("", "pods");
            let Some(pod) = c.store.get(&gr, &ns, &name) else {
                return ApiError::not_found(&gr, &name).into_response();
            };
            let Ok(ws) = ws else {
                return reject_non_websocket(&pod, &query).into_response();
            };
            match exec(c.clone(), pod, query, ws) {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        }

        async fn log_route(
            State(c): State<Arc<Cluster>>,
            Path((ns, name)): Path<(String, String)>,
            Query(query): Query<Vec<(String, String)>>,
        ) -> axum::response::Response {
            let gr = GroupResource::new("", "pods");
            let Some(pod) = c.store.get(&gr, &ns, &name) else {
                return ApiError::not_found(&gr, &name).into_response();
            };
            match crate::logs::serve_log(c.clone(), pod, query).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        }

        /// Just enough of an API server for `kubectl exec` and kube-rs: version, discovery, pod get, exec.
        async fn serve(cluster: Arc<Cluster>) -> SocketAddr {
            let app = Router::new()
                .route(
                    "/version",
                    // The version the cluster follows in its rules, as the real discovery reports it.
                    get(|State(c): State<Arc<Cluster>>| async move {
                        crate::discovery::serve(&c, "/version", &Default::default(), &Default::default())
                    }),
                )
                .route(
                    "/api",
                    get(|| async { axum::Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})) }),
                )
                .route(
                    "/apis",
                    get(|| async { axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})) }),
                )
                .route(
                    "/api/v1",
                    get(|| async {
                        axum::Json(json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": ["get", "list"], "shortNames": ["po"]},
                            {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]},
                        ]}))
                    }),
                )
                .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod))
                .route("/api/v1/namespaces/{ns}/pods/{name}/exec", any(exec_route))
                .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(log_route))
                .with_state(cluster);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            addr
        }

        async fn client(addr: SocketAddr) -> kube::Client {
            let cfg = kube::Config::new(format!("http://{addr}").parse().unwrap());
            kube::Client::try_from(cfg).unwrap()
        }

        async fn read_all(r: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
            let mut s = String::new();
            r.unwrap().read_to_string(&mut s).await.unwrap();
            s
        }

        #[tokio::test]
        async fn kube_rs_exec_exit_codes_stdin_and_errors() {
            let c = cluster();
            add_pod(&c, "web", &["app"]);
            add_pod(&c, "two", &["a", "b"]);
            let addr = serve(c.clone()).await;
            let pods: Api<Pod> = Api::namespaced(client(addr).await, "default");

            let mut p = pods
                .exec(
                    "web",
                    ["sh", "-c", "echo $POD_NAME in $PWD; echo err >&2; exit 3"],
                    &AttachParams::default().stderr(true),
                )
                .await
                .unwrap();
            let status = p.take_status().unwrap();
            let (out, err) = tokio::join!(read_all(p.stdout()), read_all(p.stderr()));
            let dir = crate::kubelet::pod_dir(&c, "default", "web");
            assert_eq!(out, format!("web in {}\n", dir.display()));
            assert_eq!(err, "err\n");
            let status = status.await.unwrap();
            assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
            let causes = status.details.unwrap().causes.unwrap();
            assert_eq!(causes[0].message.as_deref(), Some("3"));

            // stdin, closed with the v5 close signal.
            let mut p = pods
                .exec("web", ["cat"], &AttachParams::default().stdin(true).stderr(false))
                .await
                .unwrap();
            let mut stdin = p.stdin().unwrap();
            stdin.write_all(b"through stdin").await.unwrap();
            stdin.shutdown().await.unwrap();
            drop(stdin);
            let status = p.take_status().unwrap();
            assert_eq!(read_all(p.stdout()).await, "through stdin");
            assert_eq!(status.await.unwrap().status.as_deref(), Some("Success"));

            // A tty follows the client's terminal size.
            let mut p = pods
                .exec(
                    "web",
                    ["sh", "-c", "read x; stty size"],
                    &AttachParams::interactive_tty(),
                )
                .await
                .unwrap();
            let mut size = p.terminal_size().unwrap();
            size.send(TerminalSize { width: 111, height: 33 }).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut stdin = p.stdin().unwrap();
            stdin.write_all(b"\n").await.unwrap();
            let out = read_all(p.stdout()).await;
            assert!(out.contains("33 111"), "{out:?}");

            // Errors before the upgrade are Status objects with upstream's wording.
            let Err(e) = pods.exec("two", ["ls"], &AttachParams::default()).await else {
                panic!("exec without a container in a two-container pod must fail");
            };
            assert!(
                e.to_string()
                    .contains("a container name must be specified for pod two, choose one of: [a b]"),
                "{e}"
            );
        }

        #[tokio::test]
        async fn kube_rs_dropping_the_connection_kills_the_shell() {
            let c = cluster();
            add_pod(&c, "web", &["app"]);
            let addr = serve(c.clone()).await;
            let pods: Api<Pod> = Api::namespaced(client(addr).await, "default");
            let p = pods
                .exec(
                    "web",
                    ["sh", "-c", "sleep 300 & sleep 300"],
                    &AttachParams::interactive_tty(),
                )
                .await
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.kubelet.active_processes("default", "web") < 2 {
                assert!(Instant::now() < deadline, "shell did not start");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            p.abort();
            while c.kubelet.active_processes("default", "web") > 0 {
                assert!(Instant::now() < deadline, "shell survived its connection");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }

        fn kubeconfig(addr: SocketAddr) -> tempfile::NamedTempFile {
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(
                f.path(),
                format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: t\n    namespace: default\ncurrent-context: t\nusers:\n- name: t\n  user: {{}}\n"
                ),
            )
            .unwrap();
            f
        }

        async fn kubectl(bin: &str, kc: &std::path::Path, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
            let mut cmd = tokio::process::Command::new(bin);
            cmd.arg("--kubeconfig").arg(kc).args(args);
            cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let mut child = cmd.spawn().unwrap();
            if let Some(data) = stdin {
                let mut w = child.stdin.take().unwrap();
                w.write_all(data).await.unwrap();
            }
            tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
                .await
                .unwrap()
                .unwrap()
        }

        /// The real kubectl (1.30+ speak WebSockets); scripts/test.sh requires kubectl on the PATH.
        #[tokio::test]
        async fn real_kubectl_exec() {
            let c = cluster();
            add_pod(&c, "web", &["app"]);
            add_pod(&c, "two", &["a", "b"]);
            let addr = serve(c.clone()).await;
            let kc = kubeconfig(addr);
            // The image's kubectl is a dispatcher; the versioned binaries sit beside its real path.
            let path = std::env::var("PATH").unwrap_or_default();
            let kubectl_path = std::env::split_paths(&path)
                .map(|d| d.join("kubectl"))
                .find(|p| p.exists())
                .expect("kubectl on the PATH");
            let dir = std::fs::canonicalize(&kubectl_path)
                .unwrap()
                .parent()
                .unwrap()
                .to_path_buf();
            let bins: Vec<String> = ["kubectl", "kubectl.1.30", "kubectl.1.33"]
                .iter()
                .map(|b| dir.join(b))
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect();
            assert!(!bins.is_empty());
            for bin in &bins {
                let bin = bin.as_str();
                let out = kubectl(
                    bin,
                    kc.path(),
                    &["exec", "web", "--", "sh", "-c", "echo hi; echo err >&2; exit 3"],
                    None,
                )
                .await;
                assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{bin}: {out:?}");
                assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"), "{bin}: {out:?}");
                assert_eq!(out.status.code(), Some(3), "{bin}: {out:?}");

                let out = kubectl(
                    bin,
                    kc.path(),
                    &["exec", "-i", "web", "--", "sh", "-c", "cat; echo done"],
                    Some(b"piped\n"),
                )
                .await;
                assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\ndone\n", "{bin}: {out:?}");
                assert!(out.status.success(), "{bin}: {out:?}");

                // kubectl picks the first container itself; an unknown one is the server's error.
                let out = kubectl(bin, kc.path(), &["exec", "two", "--", "true"], None).await;
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains("Defaulted container \"a\" out of: a, b"),
                    "{bin}: {out:?}"
                );
                assert!(out.status.success(), "{bin}: {out:?}");
                let out = kubectl(bin, kc.path(), &["exec", "two", "-c", "zz", "--", "true"], None).await;
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains("container zz is not valid for pod two"),
                    "{bin}: {out:?}"
                );
                assert!(!out.status.success(), "{bin}: {out:?}");

                let out = kubectl(bin, kc.path(), &["exec", "web", "--", "no-such-cmd-kubesim"], None).await;
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains("executable file not found in $PATH"),
                    "{bin}: {out:?}"
                );
                assert!(!out.status.success());

                // -it needs a terminal on kubectl's side: `script` provides one.
                let line = format!(
                    "stty cols 77 rows 22; {bin} --kubeconfig {} exec -it web -- sh -c 'stty size; exit 5'",
                    kc.path().display()
                );
                let mut cmd = tokio::process::Command::new("script");
                cmd.args(["-qec", &line, "/dev/null"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
                    .await
                    .unwrap()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(text.contains("22 77"), "{bin}: {text:?}");
                assert_eq!(out.status.code(), Some(5), "{bin}: {out:?}");
            }
        }

        /// `kubectl logs` with tail, timestamps, container choice and `-f` until the pod is deleted.
        #[tokio::test]
        async fn real_kubectl_logs() {
            let c = cluster();
            add_pod(&c, "web", &["app"]);
            add_pod(&c, "two", &["a", "b"]);
            let addr = serve(c.clone()).await;
            let kc = kubeconfig(addr);
            for i in 1..=5 {
                c.logs.append("default", "web", "app", &format!("line {i}"));
            }
            c.logs.append("default", "two", "b", "from b");
            let out = kubectl("kubectl", kc.path(), &["logs", "web", "--tail=2"], None).await;
            assert_eq!(String::from_utf8_lossy(&out.stdout), "line 4\nline 5\n", "{out:?}");
            let out = kubectl("kubectl", kc.path(), &["logs", "web", "--tail=1", "--timestamps"], None).await;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let (ts, rest) = text.split_once(' ').unwrap();
            assert!(
                chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.len() == 30,
                "{text:?}"
            );
            assert_eq!(rest, "line 5\n");
            let out = kubectl("kubectl", kc.path(), &["logs", "two", "-c", "b"], None).await;
            assert_eq!(String::from_utf8_lossy(&out.stdout), "from b\n", "{out:?}");
            let out = kubectl("kubectl", kc.path(), &["logs", "web", "--previous"], None).await;
            assert!(
                String::from_utf8_lossy(&out.stderr)
                    .contains("previous terminated container \"app\" in pod \"web\" not found"),
                "{out:?}"
            );

            let mut follow = tokio::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(kc.path())
                .args(["logs", "-f", "web", "--tail=1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut stdout = tokio::io::BufReader::new(follow.stdout.take().unwrap());
            let mut line = String::new();
            use tokio::io::AsyncBufReadExt;
            tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(line, "line 5\n");
            c.logs.append("default", "web", "app", "live");
            line.clear();
            tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(line, "live\n");
            c.store.remove(&GroupResource::new("", "pods"), "default", "web");
            crate::kubelet::pod_deleted(&c, "default", "web");
            let st = tokio::time::timeout(Duration::from_secs(30), follow.wait())
                .await
                .unwrap()
                .unwrap();
            assert!(
                st.success(),
                "kubectl logs -f should end cleanly when the pod goes away"
            );
        }
    }
}
