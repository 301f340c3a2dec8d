//! Serving connections: the one place that decides how long and how much a
//! client may hold of the server before sending a request, between requests,
//! and while not reading its answer.
//!
//! Every listener (HTTP, gRPC, metrics) accepts here, and each connection
//! runs under a [`ConnectionPolicy`]:
//! - at most `max_connections` at once; at the cap a new connection takes the
//!   place of the one idle the longest (so idle sockets can never lock new
//!   clients out), and only when every connection is busy is it closed at
//!   once (HTTP/1 clients get a `503` first) instead of waiting in the
//!   backlog;
//! - a request head (HTTP/1) must arrive within `header_read_timeout`, and a
//!   head larger than `max_header_bytes` is refused (slowloris);
//! - a connection with no request in flight and no bytes moving for
//!   `idle_timeout` is closed gracefully (HTTP/2 `GOAWAY`, HTTP/1 close), so
//!   idle sockets cannot lock new clients out;
//! - a write that makes no progress for `write_timeout` fails the connection,
//!   freeing the reply a client never reads;
//! - HTTP/2 pings every `keepalive_interval` and drops a peer that does not
//!   answer within `keepalive_timeout` (dead peers, half-open sockets).
//!
//! On shutdown every connection is asked to close gracefully: idle ones close
//! at once, busy ones after their in-flight requests answer. [`Listener::serve`]
//! returns when the last connection is gone; the caller bounds that wait.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;

use crate::log_limit::RateLimitedLog;

/// Which HTTP version a listener speaks. Each port speaks one, so no
/// connection sits in a version-sniffing phase that no timeout covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// HTTP/1.1 (the KServe REST API and metrics).
    Http1,
    /// HTTP/2 with prior knowledge (gRPC).
    Http2,
}

/// HTTP/2 settings of a gRPC listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Http2Settings {
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
    pub max_concurrent_streams: u32,
    pub stream_window: u32,
    pub connection_window: u32,
    pub max_frame_size: u32,
}

/// How connections of one listener are held (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionPolicy {
    pub wire: Wire,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    /// A connection older than this is asked to close (HTTP/2 `GOAWAY`), and
    /// closed `max_connection_age_grace` later: clients spread over replicas
    /// again (Triton's `--grpc-max-connection-age`).
    pub max_connection_age: Option<Duration>,
    pub max_connection_age_grace: Option<Duration>,
    pub http2: Http2Settings,
}

/// Nagle's algorithm against the client's delayed ACKs costs ~40 ms per
/// request/response exchange of a few hundred KB (measured on the H100 box
/// with ResNet-50 inputs: 43 ms p50 with it, see BENCHMARKS.md).
const NODELAY: bool = true;

/// How long a connection asked to close may take once nothing is in flight.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A coarse clock for activity stamps: milliseconds since the first use.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

/// What the watchdog of one connection needs to know.
#[derive(Debug)]
struct ConnState {
    /// Last time bytes moved either way (ms on [`EPOCH`]).
    last_activity: AtomicU64,
    /// Requests whose response body has not finished (a gRPC stream counts
    /// until it ends).
    in_flight: AtomicUsize,
    /// Closes the connection now (it was idle when a new one needed its slot).
    evict: tokio::sync::Notify,
}

impl ConnState {
    fn new() -> Self {
        Self {
            last_activity: AtomicU64::new(now_ms()),
            in_flight: AtomicUsize::new(0),
            evict: tokio::sync::Notify::new(),
        }
    }

    fn touch(&self) {
        self.last_activity.store(now_ms(), Ordering::Relaxed);
    }

    /// How long the connection has had nothing in flight and no traffic.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = self.last_activity.load(Ordering::Relaxed);
        Some(Duration::from_millis(now_ms().saturating_sub(last)))
    }
}

/// Ends one in-flight request when dropped (with its response body).
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn begin(state: &Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.touch();
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket that records activity and fails writes that stall.
struct GuardedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
    write_timeout: Duration,
    /// Armed while a write is pending; firing fails the connection.
    write_stall: Option<Pin<Box<Sleep>>>,
}

impl GuardedIo {
    /// Maps one poll of a write-side operation through the stall timer.
    /// Only bytes written count as progress (and activity): hyper flushes on
    /// every poll, and neither a flush nor the watchdog's own polls may reset
    /// the timer of a client that reads nothing.
    fn guard_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        wrote: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                if result.as_ref().is_ok_and(wrote) {
                    self.write_stall = None;
                    self.state.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let stall = self
                    .write_stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        // Reset rather than close: the kernel drops what is
                        // still queued for this client instead of holding it.
                        #[allow(deprecated)]
                        let _ = self.inner.set_linger(Some(Duration::ZERO));
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("client read nothing for {timeout:?} (write timeout)"),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.touch();
        }
        polled
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard_write(cx, polled, |&n| n > 0)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard_write(cx, polled, |&n| n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard_write(cx, polled, |_| false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that holds its request's [`InFlight`] until it ends.
pub struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> Body for TrackedBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The hyper service of one connection: counts requests in flight.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a listener serves: a tower service of HTTP requests (an axum
/// router), answering with bodies of [`ResponseBody`].
pub trait HttpService<B>:
    tower::Service<
        http::Request<Incoming>,
        Response = http::Response<B>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: tower::Service<
            http::Request<Incoming>,
            Response = http::Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A response body a listener can write.
pub trait ResponseBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static {}

impl<B> ResponseBody for B where
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{
}

// `Response = ...<B>` again: it is what ties B to S for the compiler.
impl<S, B> hyper::service::Service<http::Request<Incoming>> for Tracked<S>
where
    S: HttpService<B> + tower::Service<http::Request<Incoming>, Response = http::Response<B>>,
    B: ResponseBody,
{
    type Response = http::Response<TrackedBody<B>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::begin(&self.state);
        let mut inner = self.inner.clone();
        Box::pin(async move {
            use tower::ServiceExt;
            let response = inner
                .ready()
                .await
                .map_err(Into::into)?
                .call(request)
                .await
                .map_err(Into::into)?;
            Ok(response.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A bound listener and the policy its connections run under.
pub struct Listener {
    pub what: &'static str,
    listener: TcpListener,
    policy: ConnectionPolicy,
}

impl Listener {
    pub fn new(what: &'static str, listener: TcpListener, policy: ConnectionPolicy) -> Self {
        Self {
            what,
            listener,
            policy,
        }
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until `stop` turns true, then asks every connection to close
    /// and returns once all are gone.
    pub async fn serve<S: HttpService<B>, B: ResponseBody>(
        self,
        service: S,
        mut stop: watch::Receiver<bool>,
    ) {
        let Self {
            what,
            listener,
            policy,
        } = self;
        let policy = Arc::new(policy);
        let builder = Arc::new(builder(&policy));
        let slots = Arc::new(Semaphore::new(policy.max_connections));
        let live = Arc::new(LiveConnections::default());
        let refused = RateLimitedLog::default();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => break,
            };
            let tcp = match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before
                    // accept: not fatal; back off so the loop does not spin.
                    refused.warn(what, format_args!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                // At the cap: the connection idle the longest makes room.
                Err(_) if live.evict_most_idle() => {
                    tokio::time::timeout(EVICTION_WAIT, slots.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                Err(_) => None,
            };
            let Some(slot) = slot else {
                refused.warn(
                    what,
                    format_args!(
                        "connection refused: {} connections open and busy (--max-connections)",
                        policy.max_connections
                    ),
                );
                refuse(tcp, policy.wire);
                continue;
            };
            let _ = tcp.set_nodelay(NODELAY);
            let state = Arc::new(ConnState::new());
            let id = live.add(&state);
            let live = live.clone();
            let io = GuardedIo {
                inner: tcp,
                state: state.clone(),
                write_timeout: policy.write_timeout,
                write_stall: None,
            };
            let service = Tracked {
                inner: service.clone(),
                state: state.clone(),
            };
            let builder = builder.clone();
            let policy = policy.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                run_connection(&builder, io, service, state, &policy, stop).await;
                live.remove(id);
                drop(slot);
            });
        }
        drop(listener);
        // Every connection holds a slot until it is gone.
        let _ = slots.acquire_many(policy.max_connections as u32).await;
        tracing::debug!("{what}: all connections closed");
    }
}

/// How long a new connection at the cap waits for an evicted one's slot.
const EVICTION_WAIT: Duration = Duration::from_millis(500);

/// The open connections of a listener, for eviction at the cap.
#[derive(Default)]
struct LiveConnections {
    next: AtomicU64,
    conns: parking_lot::Mutex<std::collections::HashMap<u64, Arc<ConnState>>>,
}

impl LiveConnections {
    fn add(&self, state: &Arc<ConnState>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().insert(id, state.clone());
        id
    }

    fn remove(&self, id: u64) {
        self.conns.lock().remove(&id);
    }

    /// Tells the connection idle the longest (nothing in flight) to close;
    /// false when every connection is busy.
    fn evict_most_idle(&self) -> bool {
        let mut conns = self.conns.lock();
        let victim = conns
            .iter()
            .filter_map(|(&id, c)| c.idle_for().map(|idle| (idle, id)))
            .max_by_key(|&(idle, _)| idle);
        // Out of the list at once: the next new connection picks another.
        match victim.and_then(|(_, id)| conns.remove(&id)) {
            Some(c) => {
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

fn builder(policy: &ConnectionPolicy) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    match policy.wire {
        Wire::Http1 => {
            builder = builder.http1_only();
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(policy.header_read_timeout)
                .max_buf_size(policy.max_header_bytes.max(8192));
        }
        Wire::Http2 => {
            builder = builder.http2_only();
            let h2 = &policy.http2;
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(h2.keepalive_interval)
                .keep_alive_timeout(h2.keepalive_timeout)
                .max_concurrent_streams(h2.max_concurrent_streams)
                .initial_stream_window_size(h2.stream_window)
                .initial_connection_window_size(h2.connection_window)
                .max_frame_size(h2.max_frame_size)
                .max_header_list_size(policy.max_header_bytes as u32);
        }
    }
    builder
}

async fn run_connection<S: HttpService<B>, B: ResponseBody>(
    builder: &auto::Builder<TokioExecutor>,
    io: GuardedIo,
    service: Tracked<S>,
    state: Arc<ConnState>,
    policy: &ConnectionPolicy,
    mut stop: watch::Receiver<bool>,
) {
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // Coarse on purpose: thousands of idle connections each wake this often.
    let check_every = (policy.idle_timeout / 4).clamp(Duration::from_millis(50), CLOSE_GRACE);
    let mut watchdog = tokio::time::interval(check_every);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the connection was asked to close; once it has nothing in flight
    // it gets CLOSE_GRACE more to go on its own (an HTTP/2 GOAWAY waits for
    // the peer's ping ack, an HTTP/1 close for a request head to finish), then
    // it is dropped.
    let mut closing: Option<Instant> = None;
    let far = Duration::from_secs(100 * 365 * 24 * 3600);
    let aged = tokio::time::sleep(policy.max_connection_age.unwrap_or(far));
    tokio::pin!(aged);
    let mut cut_off: Option<Pin<Box<Sleep>>> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = &mut aged, if cut_off.is_none() => {
                closing.get_or_insert_with(Instant::now);
                connection.as_mut().graceful_shutdown();
                let grace = policy.max_connection_age_grace.unwrap_or(far);
                cut_off = Some(Box::pin(tokio::time::sleep(grace)));
            }
            _ = async { cut_off.as_mut().expect("armed").await }, if cut_off.is_some() => {
                tracing::debug!("closing a connection past its maximum age and grace");
                return;
            }
            _ = state.evict.notified() => {
                tracing::debug!("closing an idle connection to make room for a new one");
                return;
            }
            _ = stop.wait_for(|s| *s), if closing.is_none() => {
                closing = Some(Instant::now());
                connection.as_mut().graceful_shutdown();
            }
            _ = watchdog.tick() => match closing {
                None => {
                    if state.idle_for().is_some_and(|idle| idle >= policy.idle_timeout) {
                        tracing::debug!("closing a connection idle for {:?}", policy.idle_timeout);
                        closing = Some(Instant::now());
                        connection.as_mut().graceful_shutdown();
                    }
                }
                Some(since) => {
                    if since.elapsed() >= CLOSE_GRACE && state.idle_for().is_some() {
                        return;
                    }
                }
            },
        }
    }
}

/// Closes a connection over the cap; an HTTP/1 client is told why.
fn refuse(tcp: TcpStream, wire: Wire) {
    if wire == Wire::Http1 {
        const BODY: &str = r#"{"error":"server has too many open connections; retry later"}"#;
        let reply = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
            BODY.len()
        );
        // Best effort, never blocking: a fresh socket's send buffer takes it.
        let _ = tcp.try_write(reply.as_bytes());
    }
}
