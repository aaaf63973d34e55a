//! The HTTP listener: a cap on open connections, a deadline for each request head and an idle timeout
//! for kept-alive connections, around hyper's HTTP/1.1 and HTTP/2 server (with upgrades, for WebSockets).
//!
//! hyper's own `header_read_timeout` is not used: it also times the wait for the *next* request on a
//! kept-alive connection (so keep-alive would be as short as the header deadline, shorter than the
//! upstream idle timeout of ingresses and load balancers, which then race the close and answer 502),
//! and it does not cover hyper-util's protocol sniffing, where a client that connects and sends nothing
//! would wait forever. The watchdog here times both phases separately and covers the whole connection.
//!
//! It also ends connections that stop taking output (a client that does not read, or an HTTP/2 client
//! that keeps its flow-control window shut): a response whose bytes cannot go out for
//! `writeStall` holds a connection slot for nothing. A response that is merely quiet (server-sent
//! events, a followed log, a WebSocket) waits on its own body, not on the client, and is never cut.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Limits of one HTTP listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections held open at once (upgraded WebSockets included); further clients wait in the
    /// kernel's listen backlog until one closes.
    pub max_connections: usize,
    /// Time to send a complete request head, from the connection's start or from the first byte of a
    /// further request.
    pub header_read_timeout: Duration,
    /// Time a connection may wait for its next request when none is in progress.
    pub idle_timeout: Duration,
    /// Time a connection may go without taking any of the output waiting for it (its socket refuses
    /// writes, or a response's data waits for the client's HTTP/2 flow-control window).
    pub write_stall_timeout: Duration,
    /// Time a request body may take to arrive completely, from the end of its request head.
    pub request_body_timeout: Duration,
}

impl Limits {
    /// The limits set in the `web` section of the configuration.
    pub fn from_config(web: &janus_api::config::WebConfig) -> Self {
        Self {
            max_connections: web.max_connections.max(1),
            header_read_timeout: Duration::from_secs(web.header_read_timeout_seconds.max(1)),
            idle_timeout: Duration::from_secs(web.idle_connection_timeout_seconds.max(1)),
            write_stall_timeout: Duration::from_secs(web.write_stall_timeout_seconds.max(1)),
            request_body_timeout: Duration::from_secs(web.request_body_timeout_seconds.max(1)),
        }
    }
}

/// What a connection is doing, shared by its socket wrapper, its requests and its watchdog.
struct Activity {
    start: Instant,
    /// Requests whose response has not been sent completely.
    in_flight: AtomicUsize,
    /// Whether a request head is being received (from the start, or since a byte arrived while idle).
    reading_head: AtomicBool,
    /// Milliseconds after `start` when the current phase (reading a head, or idle) began.
    since_ms: AtomicU64,
    /// Request bodies still being received, by id, with when each began (milliseconds after `start`):
    /// while there are any, bytes must keep arriving, and each must be complete in time.
    bodies: Mutex<HashMap<u64, u64>>,
    /// Response bodies whose output has not been taken by the connection yet, by id, with since when
    /// (milliseconds after `start`): from the response's start, or from the frame it last produced,
    /// until the connection asks for more. A body that has nothing to send is not in here.
    waiting_output: Mutex<HashMap<u64, u64>>,
    /// Ids for `bodies` and `waiting_output`.
    next_id: AtomicU64,
    /// Milliseconds after `start` since when writes to the socket have been refused without a byte
    /// going out in between ([`NEVER`]: the last write went through).
    write_blocked_since_ms: AtomicU64,
    /// Milliseconds after `start` of the latest refused write ([`NEVER`]: none yet).
    last_blocked_ms: AtomicU64,
    /// Milliseconds after `start` of the last byte received.
    last_read_ms: AtomicU64,
    /// Set once a request came over HTTP/2: there, bytes between requests are control frames (window
    /// updates, pings, settings), not the start of a request head, so they do not start a head deadline.
    http2: AtomicBool,
    /// Set once a request asked to switch protocols over HTTP/2 (a WebSocket on a stream): such a
    /// connection keeps its WebSocket's own rules and is never closed for being idle.
    upgraded: AtomicBool,
    /// Wakes the watchdog when the phase changes.
    changed: Notify,
}

/// No such moment (yet).
const NEVER: u64 = u64::MAX;

/// The smallest `since` of a map of timers.
fn earliest(timers: &Mutex<HashMap<u64, u64>>) -> Option<u64> {
    timers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .copied()
        .min()
}

fn set_timer(timers: &Mutex<HashMap<u64, u64>>, id: u64, since: Option<u64>) {
    let mut t = timers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match since {
        Some(s) => {
            t.insert(id, s);
        }
        None => {
            t.remove(&id);
        }
    }
}

/// Why the watchdog ends a connection.
#[derive(Debug, PartialEq, Eq)]
enum Expired {
    /// A request head was not complete in time: closed at once.
    Head,
    /// A request body stopped arriving, or was not complete in time: closed at once.
    Body,
    /// The connection took none of its waiting output for the write-stall timeout: closed at once.
    WriteStall,
    /// No request for the idle timeout: closed gracefully.
    Idle,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            reading_head: AtomicBool::new(true),
            since_ms: AtomicU64::new(0),
            bodies: Mutex::new(HashMap::new()),
            waiting_output: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            write_blocked_since_ms: AtomicU64::new(NEVER),
            last_blocked_ms: AtomicU64::new(NEVER),
            last_read_ms: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes arrived: when idle, a new request head has begun and its deadline starts now.
    fn read(&self) {
        self.last_read_ms.store(self.now_ms(), Ordering::SeqCst);
        if self.http2.load(Ordering::SeqCst) {
            return;
        }
        if self.in_flight.load(Ordering::SeqCst) == 0 && !self.reading_head.load(Ordering::SeqCst) {
            self.since_ms.store(self.now_ms(), Ordering::SeqCst);
            self.reading_head.store(true, Ordering::SeqCst);
            self.changed.notify_one();
        }
    }

    /// A write to the socket was refused (the client's receive window is full).
    fn write_refused(&self) {
        let now = self.now_ms();
        self.last_blocked_ms.store(now, Ordering::SeqCst);
        if self
            .write_blocked_since_ms
            .compare_exchange(NEVER, now, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// Bytes went out: the socket is taking output again. (The watchdog finds out when it next wakes.)
    fn wrote(&self) {
        self.write_blocked_since_ms.store(NEVER, Ordering::SeqCst);
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// When the connection counts as stalled, if output is waiting for it: the socket has refused every
    /// write for the write-stall timeout, or a response's output has waited that long while the socket
    /// refused nothing (the client's HTTP/2 flow-control window is shut). A client reading slowly
    /// has writes refused and accepted in turn, and is not stalled while any get through.
    fn write_deadline(&self, limits: &Limits) -> Option<Instant> {
        let at = |ms: u64| self.start + Duration::from_millis(ms);
        let blocked = self.write_blocked_since_ms.load(Ordering::SeqCst);
        if blocked != NEVER {
            return Some(at(blocked) + limits.write_stall_timeout);
        }
        let waiting = earliest(&self.waiting_output)?;
        let from = match self.last_blocked_ms.load(Ordering::SeqCst) {
            NEVER => waiting,
            last => waiting.max(last),
        };
        Some(at(from) + limits.write_stall_timeout)
    }

    /// A request head is complete and handed to the router.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.reading_head.store(false, Ordering::SeqCst);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// When the connection must end: at the end of the current phase, or when it stalls
    /// ([`Activity::write_deadline`]), whichever comes first.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match (self.phase_deadline(limits), self.write_deadline(limits)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the current phase ends, if it has a deadline: a request in progress has none once its body
    /// is in (its response may stream for hours, as long as the client takes it), but its body must
    /// keep arriving, a byte at least every header deadline, and be complete within the body deadline.
    fn phase_deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            let first = earliest(&self.bodies)?;
            let last = self.start + Duration::from_millis(self.last_read_ms.load(Ordering::SeqCst));
            let whole = self.start + Duration::from_millis(first) + limits.request_body_timeout;
            return Some((last + limits.header_read_timeout).min(whole));
        }
        let since = self.start + Duration::from_millis(self.since_ms.load(Ordering::SeqCst));
        if self.reading_head.load(Ordering::SeqCst) {
            Some(since + limits.header_read_timeout)
        } else if self.upgraded.load(Ordering::SeqCst) {
            None
        } else {
            Some(since + limits.idle_timeout)
        }
    }

    fn expired(&self, limits: &Limits) -> Option<Expired> {
        if self.write_deadline(limits).is_some_and(|d| Instant::now() >= d) {
            return Some(Expired::WriteStall);
        }
        let deadline = self.phase_deadline(limits)?;
        if Instant::now() < deadline {
            return None;
        }
        Some(if self.in_flight.load(Ordering::SeqCst) > 0 {
            Expired::Body
        } else if self.reading_head.load(Ordering::SeqCst) {
            Expired::Head
        } else {
            Expired::Idle
        })
    }
}

/// A request in progress; dropped when its response body has been sent (or the request abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        if a.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            a.since_ms.store(a.now_ms(), Ordering::SeqCst);
            a.changed.notify_one();
        }
    }
}

/// A request body being received; timed in [`Activity::bodies`] until its end or until the
/// handler drops it.
struct RequestBody {
    inner: Incoming,
    open: Option<(Arc<Activity>, u64)>,
}

impl RequestBody {
    fn new(inner: Incoming, activity: &Arc<Activity>) -> Self {
        use hyper::body::Body as _;
        // An upgrade's request (a WebSocket handshake, also an HTTP/2 extended CONNECT) has no body:
        // the WebSocket's traffic is never timed as one.
        let open = (!inner.is_end_stream()).then(|| {
            let id = activity.id();
            let now = activity.now_ms();
            activity.last_read_ms.store(now, Ordering::SeqCst);
            set_timer(&activity.bodies, id, Some(now));
            activity.changed.notify_one();
            (activity.clone(), id)
        });
        Self { inner, open }
    }

    fn finish(&mut self) {
        if let Some((a, id)) = self.open.take() {
            set_timer(&a.bodies, id, None);
            a.changed.notify_one();
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) || this.inner.is_end_stream() {
            this.finish();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as in progress until it is sent: a long stream
/// (server-sent events, a followed log) is never cut for being idle. It also notes when output waits
/// for the connection: from its start, and from each frame it produces, until the connection asks for
/// the next one; while the body itself has nothing to send (a quiet stream), nothing waits.
struct Tracked {
    inner: Body,
    activity: Arc<Activity>,
    id: u64,
    _in_flight: InFlight,
}

impl Tracked {
    fn new(inner: Body, in_flight: InFlight) -> Self {
        use hyper::body::Body as _;
        let activity = in_flight.0.clone();
        let id = activity.id();
        if !inner.is_end_stream() {
            set_timer(&activity.waiting_output, id, Some(activity.now_ms()));
            activity.changed.notify_one();
        }
        Self {
            inner,
            activity,
            id,
            _in_flight: in_flight,
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        set_timer(&self.activity.waiting_output, self.id, None);
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        // A frame now waits to be taken, the last one too (HTTP/2 holds it, and this body, until the
        // client's window lets it out; HTTP/1 drops the body once it has the last frame); otherwise
        // nothing waits.
        let waiting = matches!(r, Poll::Ready(Some(Ok(_))));
        set_timer(
            &this.activity.waiting_output,
            this.id,
            waiting.then(|| this.activity.now_ms()),
        );
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client socket: notes incoming bytes, and holds the connection's slot under the cap for as long as
/// the socket lives, also after an upgrade hands it to a WebSocket.
struct Socket {
    tcp: TcpStream,
    activity: Arc<Activity>,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read();
        }
        r
    }
}

impl Socket {
    /// Notes whether a write got through or was refused.
    fn note_write(&self, r: &Poll<std::io::Result<usize>>) {
        match r {
            Poll::Pending => self.activity.write_refused(),
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.wrote(),
            Poll::Ready(_) => {}
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.note_write(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.note_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish.
///
/// Handlers get the peer address as `ConnectInfo<SocketAddr>`, as with axum's
/// `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let cancel = CancellationToken::new();
    // Every connection task holds a sender; the receiver ends when the last one has finished.
    let (alive, mut finished) = tokio::sync::mpsc::channel::<()>(1);
    let mut builder = Builder::new(TokioExecutor::new());
    // The watchdog below replaces hyper's header timeout (see the module documentation).
    builder.http1().header_read_timeout(None);
    // WebSockets over HTTP/2 (RFC 8441), as axum::serve allows them.
    builder.http2().enable_connect_protocol();
    let builder = Arc::new(builder);
    let local = listener.local_addr()?;
    let mut last_full_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // The slot is taken before accepting: at the cap, new clients wait in the listen backlog and are
        // served as soon as a connection closes, instead of being accepted and starved.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(
                        %local,
                        max = limits.max_connections,
                        "connection limit reached; new clients wait until a connection closes"
                    );
                    last_full_warning = Some(Instant::now());
                }
                tokio::select! {
                    s = slots.clone().acquire_owned() => match s {
                        Ok(s) => s,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%local, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Keystrokes are single bytes: Nagle's algorithm would hold them back.
        let _ = tcp.set_nodelay(true);
        let conn = Connection {
            builder: builder.clone(),
            router: router.clone(),
            limits,
            cancel: cancel.clone(),
            _alive: alive.clone(),
        };
        tokio::spawn(conn.run(tcp, peer, slot));
    }
    cancel.cancel();
    drop(alive);
    let _ = finished.recv().await;
    Ok(())
}

/// One accepted connection and what it needs.
struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    router: Router,
    limits: Limits,
    cancel: CancellationToken,
    _alive: tokio::sync::mpsc::Sender<()>,
}

impl Connection {
    async fn run(self, tcp: TcpStream, peer: SocketAddr, slot: OwnedSemaphorePermit) {
        let activity = Arc::new(Activity::new());
        let socket = Socket {
            tcp,
            activity: activity.clone(),
            _slot: slot,
        };
        let router = self.router.clone();
        let service_activity = activity.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let in_flight = service_activity.begin();
            let mut req = req.map(|b| RequestBody::new(b, &service_activity));
            req.extensions_mut().insert(ConnectInfo(peer));
            // An extended CONNECT on HTTP/2 is a WebSocket on a stream of this connection.
            let http2 = req.version() == http::Version::HTTP_2;
            let websocket = req.method() == http::Method::CONNECT && http2;
            if http2 {
                service_activity.http2.store(true, Ordering::SeqCst);
            }
            let activity = service_activity.clone();
            let router = router.clone();
            async move {
                let response = match router.oneshot(req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                if websocket && response.status().is_success() {
                    activity.upgraded.store(true, Ordering::SeqCst);
                }
                Ok::<_, Infallible>(response.map(|inner| Tracked::new(inner, in_flight)))
            }
        });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(socket), service);
        tokio::pin!(conn);
        let limits = self.limits;
        let mut closing = false;
        // A connection closing gracefully for being idle gets a last deadline to finish.
        let mut close_by: Option<Instant> = None;
        loop {
            let wake = match (activity.deadline(&limits), close_by) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                // Busy: the phase change wakes the loop.
                (None, None) => Instant::now() + limits.idle_timeout.max(limits.header_read_timeout),
            };
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = activity.changed.notified() => {}
                () = tokio::time::sleep_until(wake) => {
                    if close_by.is_some_and(|d| Instant::now() >= d) {
                        tracing::debug!(%peer, "idle connection did not close in time: dropped");
                        return;
                    }
                    match activity.expired(&limits) {
                        Some(Expired::Head) => {
                            tracing::debug!(%peer, "request head not received in time: connection closed");
                            return;
                        }
                        Some(Expired::Body) => {
                            tracing::debug!(%peer, "request body not received in time: connection closed");
                            return;
                        }
                        Some(Expired::WriteStall) => {
                            tracing::debug!(%peer, "client took no output for the write-stall timeout: connection closed");
                            return;
                        }
                        Some(Expired::Idle) if !closing => {
                            tracing::debug!(%peer, "idle connection closed");
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                            close_by = Some(Instant::now() + limits.header_read_timeout);
                        }
                        _ => {}
                    }
                }
                () = self.cancel.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(header: Duration, idle: Duration) -> Limits {
        Limits {
            max_connections: 1,
            header_read_timeout: header,
            idle_timeout: idle,
            write_stall_timeout: Duration::from_secs(30),
            request_body_timeout: Duration::from_secs(60),
        }
    }

    /// `at` is `expected` give or take the time the test itself takes.
    fn near(at: Option<Instant>, expected: Instant) -> bool {
        at.is_some_and(|at| at <= expected && at + Duration::from_secs(1) > expected)
    }

    #[tokio::test]
    async fn phases_have_their_own_deadlines() {
        let l = limits(Duration::from_secs(10), Duration::from_secs(75));
        let a = Arc::new(Activity::new());
        // A new connection must send its first head within the header deadline.
        assert_eq!(a.deadline(&l), Some(a.start + l.header_read_timeout));
        let req = a.begin();
        assert_eq!(a.deadline(&l), None, "no deadline while a request is in progress");
        drop(req);
        assert!(
            near(a.deadline(&l), Instant::now() + l.idle_timeout),
            "idle after the response"
        );
        // A byte of the next request switches to the (shorter) header deadline, from that byte.
        a.read();
        assert!(near(a.deadline(&l), Instant::now() + l.header_read_timeout));
        // Further bytes of the same head do not extend it.
        let head = a.deadline(&l);
        a.read();
        assert_eq!(a.deadline(&l), head);
        assert_eq!(a.expired(&l), None);
    }

    #[tokio::test]
    async fn expiry_by_phase_and_never_for_upgraded_streams() {
        let l = limits(Duration::from_millis(10), Duration::from_millis(10));
        let a = Arc::new(Activity::new());
        drop(a.begin());
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(a.expired(&l), Some(Expired::Idle));
        a.read();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(a.expired(&l), Some(Expired::Head));
        // On HTTP/2, frames between requests do not start a head deadline; idleness still counts.
        let h2 = Arc::new(Activity::new());
        h2.http2.store(true, Ordering::SeqCst);
        drop(h2.begin());
        h2.read();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(h2.expired(&l), Some(Expired::Idle));
        drop(a.begin());
        a.upgraded.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            a.expired(&l),
            None,
            "a WebSocket on an HTTP/2 stream keeps its own rules"
        );
    }

    fn stall_limits(stall: Duration) -> Limits {
        Limits {
            write_stall_timeout: stall,
            ..limits(Duration::from_secs(10), Duration::from_secs(75))
        }
    }

    #[tokio::test]
    async fn output_that_is_not_taken_stalls_the_connection() {
        let l = stall_limits(Duration::from_millis(20));
        // A socket that refuses every write, whatever the phase.
        let a = Arc::new(Activity::new());
        let req = a.begin();
        a.write_refused();
        tokio::time::sleep(Duration::from_millis(40)).await;
        a.write_refused();
        assert_eq!(a.expired(&l), Some(Expired::WriteStall));
        // A byte got through: not stalled (a slow reader).
        a.wrote();
        assert_eq!(a.expired(&l), None);
        drop(req);
        a.write_refused();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(a.expired(&l), Some(Expired::WriteStall), "also when idle");

        // A response's output waiting while the socket takes everything (a shut HTTP/2 window).
        let h2 = Arc::new(Activity::new());
        h2.http2.store(true, Ordering::SeqCst);
        let body = Tracked::new(Body::from("page"), h2.begin());
        assert_eq!(h2.expired(&l), None);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(h2.expired(&l), Some(Expired::WriteStall));
        drop(body);
        assert_eq!(h2.expired(&l), None, "a response sent ends the wait");
    }

    #[tokio::test]
    async fn a_quiet_stream_or_a_slow_reader_is_not_stalled() {
        use hyper::body::Body as _;
        let l = stall_limits(Duration::from_millis(30));
        let a = Arc::new(Activity::new());
        // A stream that has nothing to send: waiting on itself, not on the client.
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, Infallible>>();
        let mut body = Box::pin(Tracked::new(Body::from_stream(rx), a.begin()));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(body.as_mut().poll_frame(&mut cx).is_pending());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(a.expired(&l), None, "a quiet stream");
        assert_eq!(a.deadline(&l), None);
        // An event is produced and taken at once (the connection polls again).
        tx.unbounded_send(Ok(Bytes::from_static(b"data: x\n\n"))).expect("send");
        assert!(matches!(body.as_mut().poll_frame(&mut cx), Poll::Ready(Some(Ok(_)))));
        assert!(a.deadline(&l).is_some(), "the frame waits to be taken");
        assert!(body.as_mut().poll_frame(&mut cx).is_pending());
        assert_eq!(a.deadline(&l), None);
        // A frame not taken while the socket keeps refusing writes now and then: a slow reader, who is
        // timed by the socket (it is stalled only when every write is refused for the whole timeout).
        tx.unbounded_send(Ok(Bytes::from_static(b"data: y\n\n"))).expect("send");
        assert!(matches!(body.as_mut().poll_frame(&mut cx), Poll::Ready(Some(Ok(_)))));
        for _ in 0..4 {
            a.write_refused();
            tokio::time::sleep(Duration::from_millis(10)).await;
            a.wrote();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(a.expired(&l), None, "a slow reader still taking output");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(a.expired(&l), Some(Expired::WriteStall), "and then nothing");
    }

    #[tokio::test]
    async fn request_bodies_have_an_overall_deadline() {
        let l = Limits {
            request_body_timeout: Duration::from_millis(50),
            ..limits(Duration::from_millis(30), Duration::from_secs(75))
        };
        let a = Arc::new(Activity::new());
        let _req = a.begin();
        set_timer(&a.bodies, 7, Some(a.now_ms()));
        // A byte every 20 ms keeps the per-byte rule happy, but not the overall one.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            a.read();
            if a.expired(&l).is_some() {
                break;
            }
        }
        assert_eq!(a.expired(&l), Some(Expired::Body));
        set_timer(&a.bodies, 7, None);
        assert_eq!(a.expired(&l), None, "no deadline once the body is in");
    }
}
