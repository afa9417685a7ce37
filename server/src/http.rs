//! The HTTP/1.1 accept loop: a connection cap, a header-read timeout and an idle timeout,
//! so slow or idle clients cannot hold file descriptors forever, and a few connections
//! held back for the probes so liveness keeps answering under connection pressure.
//!
//! Over the cap, a new connection first takes the slot of the oldest connection that has
//! spent more than a second without completing its first request (a slow client, closed);
//! failing that it gets one of `probe_reserve` extra slots where only the ops routes
//! (`/health`, `/ready`, `/metrics`, `/version`) are served, with a short header timeout;
//! when those are taken too it is closed at once. Each is logged (at most once per second)
//! and the last two are counted in `glm_http_connections_refused_total`.

use std::{
    collections::VecDeque,
    pin::pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{http::Request, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// Limits of the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    /// Extra connections beyond the cap that serve only the ops routes.
    pub probe_reserve: usize,
    pub header_read_timeout: Duration,
    /// No bytes either way for this long: the connection is closed once idle.
    pub keep_alive_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            probe_reserve: 8,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
        }
    }
}

/// Header timeout of a probe-reserve connection: a probe sends its request at once.
const PROBE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The routers a connection may be served by.
#[derive(Debug, Clone)]
pub struct Apps {
    /// Everything.
    pub full: Router,
    /// The ops routes only (connections over the cap).
    pub probes: Router,
}

/// Rate-limits a warning to once per second.
#[derive(Debug)]
struct Throttle {
    start: Instant,
    last_ms: AtomicU64,
}

impl Throttle {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn ready(&self) -> bool {
        let now = self.start.elapsed().as_millis() as u64 + 1000;
        let last = self.last_ms.load(Ordering::Relaxed);
        now >= last + 1000
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Over the cap, a connection still without a complete request after this long may be
/// closed to make room (a legitimate client sends its headers in milliseconds).
const EVICT_AFTER: Duration = Duration::from_secs(1);

/// Connections that have not sent a complete request yet, oldest first.
#[derive(Debug, Default)]
struct Pending {
    next_id: AtomicU64,
    conns: Mutex<VecDeque<(u64, Instant, CancellationToken)>>,
}

impl Pending {
    fn register(&self) -> (u64, CancellationToken) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.lock().push_back((id, Instant::now(), token.clone()));
        (id, token)
    }

    fn remove(&self, id: u64) {
        self.lock().retain(|(i, _, _)| *i != id);
    }

    /// Closes the oldest connection that has been sending its first request for at least
    /// [`EVICT_AFTER`]; false when there is none.
    fn evict_oldest(&self) -> bool {
        let mut conns = self.lock();
        match conns.front() {
            Some((_, since, _)) if since.elapsed() >= EVICT_AFTER => {
                if let Some((_, _, token)) = conns.pop_front() {
                    token.cancel();
                }
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Instant, CancellationToken)>> {
        // Plain data: a panic while holding the lock leaves nothing half-done.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What every connection task shares.
#[derive(Debug)]
struct Shared {
    apps: Apps,
    limits: HttpLimits,
    metrics: Metrics,
    main: Arc<Semaphore>,
    reserve: Arc<Semaphore>,
    pending: Pending,
    throttle: Throttle,
    shutdown: CancellationToken,
}

/// Serves `apps` on `listener` until `shutdown` is cancelled, then asks every connection
/// to close once its in-flight request ends and waits for them (the caller bounds the wait).
pub async fn serve(
    listener: TcpListener,
    apps: Apps,
    limits: HttpLimits,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(Shared {
        apps,
        limits,
        metrics,
        main: Arc::new(Semaphore::new(limits.max_connections)),
        reserve: Arc::new(Semaphore::new(limits.probe_reserve)),
        pending: Pending::default(),
        throttle: Throttle::new(),
        shutdown: shutdown.clone(),
    });
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        match accepted {
            Ok((stream, peer)) => {
                conns.spawn(admit(Arc::clone(&shared), stream, peer));
            }
            Err(e) => {
                // Out of descriptors (EMFILE) and the like: back off instead of spinning.
                if shared.throttle.ready() {
                    tracing::warn!(error = %e, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Gives a new connection a slot: a free one; else one freed by closing the oldest
/// connection still sending its headers; else a probe-only reserve slot; else none.
async fn admit(shared: Arc<Shared>, stream: TcpStream, peer: std::net::SocketAddr) {
    let limits = shared.limits;
    let mut permit = Arc::clone(&shared.main).try_acquire_owned().ok();
    if permit.is_none() && shared.pending.evict_oldest() {
        if shared.throttle.ready() {
            tracing::warn!(%peer, max_connections = limits.max_connections, "connection limit reached; closed the oldest connection still sending its request headers");
        }
        let wait = Arc::clone(&shared.main).acquire_owned();
        permit = tokio::time::timeout(EVICT_AFTER, wait)
            .await
            .ok()
            .and_then(Result::ok);
    }
    if let Some(permit) = permit {
        let _permit = permit;
        let app = shared.apps.full.clone();
        return serve_connection(&shared, stream, app, limits.header_read_timeout).await;
    }
    shared.metrics.connection_refused();
    if let Ok(permit) = Arc::clone(&shared.reserve).try_acquire_owned() {
        if shared.throttle.ready() {
            tracing::warn!(%peer, max_connections = limits.max_connections, "connection limit reached; serving only the probe routes on this connection");
        }
        let _permit = permit;
        let app = shared.apps.probes.clone();
        return serve_connection(&shared, stream, app, PROBE_HEADER_TIMEOUT).await;
    }
    if shared.throttle.ready() {
        tracing::warn!(%peer, max_connections = limits.max_connections, probe_reserve = limits.probe_reserve, "connection limit reached; closing new connections");
    }
}

async fn serve_connection(
    shared: &Shared,
    stream: TcpStream,
    app: Router,
    header_timeout: Duration,
) {
    let idle_timeout = shared.limits.keep_alive_timeout;
    let start = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Tracked {
        inner: stream,
        start,
        activity: Arc::clone(&activity),
    });
    let (id, evict) = shared.pending.register();
    let requested = AtomicBool::new(false);
    let service = hyper::service::service_fn(|req: Request<Incoming>| {
        if !requested.swap(true, Ordering::Relaxed) {
            shared.pending.remove(id);
        }
        app.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    let mut conn = pin!(conn);
    let tick = (idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut closing = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = evict.cancelled() => break,
            () = shared.shutdown.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep(tick), if !closing => {
                let idle_ms = (start.elapsed().as_millis() as u64).saturating_sub(activity.load(Ordering::Relaxed));
                if Duration::from_millis(idle_ms) >= idle_timeout {
                    tracing::debug!(idle_ms, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
    shared.pending.remove(id);
}

/// A stream that records when bytes last moved (milliseconds since `start`).
struct Tracked {
    inner: TcpStream,
    start: Instant,
    activity: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        self.activity
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        res
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        res
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
