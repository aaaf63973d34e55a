//! The HTTP listener: a cap on open connections, a deadline for each request head and an idle timeout
//! for kept-alive connections, around hyper's HTTP/1.1 and HTTP/2 server (with upgrades, for WebSockets).
//!
//! hyper's own `header_read_timeout` is not used: it also times the wait for the *next* request on a
//! kept-alive connection (so keep-alive would be as short as the header deadline, shorter than the
//! upstream idle timeout of ingresses and load balancers, which then race the close and answer 502),
//! and it does not cover hyper-util's protocol sniffing, where a client that connects and sends nothing
//! would wait forever. The watchdog here times both phases separately and covers the whole connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
}

impl Limits {
    /// The limits set in the `web` section of the configuration.
    pub fn from_config(web: &janus_api::config::WebConfig) -> Self {
        Self {
            max_connections: web.max_connections.max(1),
            header_read_timeout: Duration::from_secs(web.header_read_timeout_seconds.max(1)),
            idle_timeout: Duration::from_secs(web.idle_connection_timeout_seconds.max(1)),
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
    /// Request bodies still being received; while there are any, bytes must keep arriving.
    bodies_open: AtomicUsize,
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

/// Why the watchdog ends a connection.
#[derive(Debug, PartialEq, Eq)]
enum Expired {
    /// A request head was not complete in time: closed at once.
    Head,
    /// A request body stopped arriving: closed at once.
    Body,
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
            bodies_open: AtomicUsize::new(0),
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

    /// A request head is complete and handed to the router.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.reading_head.store(false, Ordering::SeqCst);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// When the current phase ends, if it has a deadline: a request in progress has none once its body
    /// is in (its response may stream for hours), but its body must keep arriving, a byte at least every
    /// header deadline.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            if self.bodies_open.load(Ordering::SeqCst) > 0 {
                let last = self.start + Duration::from_millis(self.last_read_ms.load(Ordering::SeqCst));
                return Some(last + limits.header_read_timeout);
            }
            return None;
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
        let deadline = self.deadline(limits)?;
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

/// A request body being received; counted in [`Activity::bodies_open`] until its end or until the
/// handler drops it.
struct RequestBody {
    inner: Incoming,
    open: Option<Arc<Activity>>,
}

impl RequestBody {
    fn new(inner: Incoming, activity: &Arc<Activity>) -> Self {
        use hyper::body::Body as _;
        let open = (!inner.is_end_stream()).then(|| {
            activity.bodies_open.fetch_add(1, Ordering::SeqCst);
            activity.last_read_ms.store(activity.now_ms(), Ordering::SeqCst);
            activity.changed.notify_one();
            activity.clone()
        });
        Self { inner, open }
    }

    fn finish(&mut self) {
        if let Some(a) = self.open.take() {
            a.bodies_open.fetch_sub(1, Ordering::SeqCst);
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
/// (server-sent events, a followed log) is never cut for being idle.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
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

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
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
                Ok::<_, Infallible>(response.map(|inner| Tracked {
                    inner,
                    _in_flight: in_flight,
                }))
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
                            tracing::debug!(%peer, "request body stopped arriving: connection closed");
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
}
