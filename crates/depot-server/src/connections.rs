//! The connection cap: at most `--max-connections` client connections at once, over HTTP and
//! HTTPS, so that the registry never runs out of file descriptors for its database, its blobs and
//! the connections it serves.
//!
//! At the cap, a new connection takes the place of the oldest one that has no request in
//! progress: one still in its TLS handshake or sending its first request's header (a slow or
//! silent client) first, then one idle between requests. A request in progress (an upload, a
//! download until its last byte is flushed, a blocking query) is never cut to make room. When
//! every connection has one, an answer that its client has not read for `--header-timeout` (a
//! full TCP window, an HTTP/2 window held at zero) gives way, the longest stalled first; failing
//! that, the new connection is closed as it arrives. So neither a flood of silent connections
//! nor clients that stop reading can lock other clients out.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::{Request, Response, StatusCode, header};
use axum_server::accept::Accept;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::Service;

use crate::metrics::Metrics;

/// An acceptor that holds one permit per open connection (before any TLS handshake, so a client
/// that stalls the handshake counts too) and knows which connections have a request in progress.
#[derive(Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    /// How long an answer may go without being read before, with every connection busy, its
    /// connection may be evicted (`--header-timeout`).
    stall: Duration,
    epoch: Instant,
    /// The open connections, oldest first.
    open: Arc<Mutex<BTreeMap<u64, Arc<Connection>>>>,
    next: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

/// One open connection's state, shared by its stream and its service.
struct Connection {
    /// Requests whose answer is not yet sent in full, plus one while written bytes wait for a
    /// flush, or [`EVICTED`].
    busy: AtomicUsize,
    /// Whether a request on it has been answered: such a connection (a client's keep-alive) is
    /// evicted only after every silent or slow one.
    served: AtomicBool,
    /// Given to a newer connection on eviction.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// Cancelled on eviction: the stream then fails its next read or write, which closes it.
    evicted: CancellationToken,
    /// Answers whose body is not yet handed over.
    answering: AtomicUsize,
    /// Whether written bytes wait for a flush (an answer's last bytes in hyper's or rustls'
    /// buffer behind a full socket).
    writing: AtomicBool,
    /// When an answer last moved (its body polled, or bytes written), in milliseconds since
    /// the limit's epoch.
    moved_ms: AtomicU64,
    epoch: Instant,
}

impl Connection {
    fn moved(&self) {
        self.moved_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// [`Connection::busy`] of an evicted connection: no request may start on it.
const EVICTED: usize = usize::MAX;

impl ConnectionLimit {
    pub fn new(max_connections: usize, stall: Duration, metrics: Arc<Metrics>) -> Self {
        ConnectionLimit {
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            stall,
            epoch: Instant::now(),
            open: Arc::default(),
            next: Arc::default(),
            metrics,
        }
    }

    /// A permit for a new connection: a free one, or the one of the oldest connection with no
    /// request in progress, which is then closed.
    fn permit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        // Silent and slow connections first (oldest first), then idle keep-alive ones.
        for served in [false, true] {
            for connection in open.values() {
                if connection.served.load(Ordering::Relaxed) != served || connection.busy.load(Ordering::Relaxed) != 0 {
                    continue;
                }
                // From 0 only: a request that starts later finds the connection evicted.
                if connection.busy.compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire).is_err() {
                    continue;
                }
                let permit = connection.permit.lock().unwrap_or_else(PoisonError::into_inner).take();
                connection.evicted.cancel();
                if let Some(permit) = permit {
                    self.metrics.connections_evicted.inc();
                    return Some(permit);
                }
            }
        }
        // Every connection busy: an answer its client has not read for `stall` (a full TCP or
        // HTTP/2 window) is not progress, and its connection goes, the longest stalled first.
        // Blocking queries and uploads have no answer yet and are never chosen here.
        let now = self.epoch.elapsed().as_millis() as u64;
        let stall = self.stall.as_millis() as u64;
        let stalled = open
            .values()
            .filter(|c| c.answering.load(Ordering::Relaxed) > 0 || c.writing.load(Ordering::Relaxed))
            .map(|c| (c.moved_ms.load(Ordering::Relaxed), c))
            .filter(|(moved, _)| now.saturating_sub(*moved) >= stall)
            .min_by_key(|(moved, _)| *moved);
        if let Some((_, connection)) = stalled
            && let Some(permit) = connection.permit.lock().unwrap_or_else(PoisonError::into_inner).take()
        {
            connection.evicted.cancel();
            self.metrics.connections_evicted.inc();
            return Some(permit);
        }
        None
    }
}

/// Every accepted connection also gets TCP_NODELAY: hyper writes an answer's head and body
/// separately, and with Nagle's algorithm the body of a small answer waits for the client's
/// delayed acknowledgement of the head (40 ms on Linux) on a reused connection.
impl<S> Accept<TcpStream, S> for ConnectionLimit {
    type Stream = Limited<TcpStream>;
    type Service = Tracked<S>;
    type Future = std::future::Ready<io::Result<(Limited<TcpStream>, Tracked<S>)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        if let Err(error) = stream.set_nodelay(true) {
            return std::future::ready(Err(error));
        }
        let Some(permit) = self.permit() else {
            // Dropping the stream closes it; the count says how often it happens.
            self.metrics.connections_refused.inc();
            return std::future::ready(Err(io::Error::other(
                "--max-connections connections are open, each with a request in progress",
            )));
        };
        let connection = Arc::new(Connection {
            busy: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            permit: Mutex::new(Some(permit)),
            evicted: CancellationToken::new(),
            answering: AtomicUsize::new(0),
            writing: AtomicBool::new(false),
            moved_ms: AtomicU64::new(0),
            epoch: self.epoch,
        });
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(id, connection.clone());
        self.metrics.connections.inc();
        let limited = Limited {
            stream,
            evicted: Box::pin(connection.evicted.clone().cancelled_owned()),
            unflushed: None,
            connection: connection.clone(),
            id,
            open: self.open.clone(),
            metrics: self.metrics.clone(),
        };
        std::future::ready(Ok((limited, Tracked { inner: service, connection })))
    }
}

/// A connection that leaves the table (and so gives its permit back) when it closes, and fails
/// its reads and writes once evicted.
pub struct Limited<I> {
    stream: I,
    evicted: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Held from a write until the flush after it: an answer whose last bytes sit in a buffer
    /// (hyper's, rustls') is not finished, though its body is.
    unflushed: Option<Busy>,
    connection: Arc<Connection>,
    id: u64,
    open: Arc<Mutex<BTreeMap<u64, Arc<Connection>>>>,
    metrics: Arc<Metrics>,
}

impl<I> Limited<I> {
    /// An error once the connection has been evicted; otherwise registers the task to be woken
    /// on eviction.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.evicted.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for a new connection at --max-connections",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl<I> Drop for Limited<I> {
    fn drop(&mut self) {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
        self.metrics.connections.dec();
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Limited<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<I> Limited<I> {
    /// Marks the connection busy until the next flush once `written` bytes went out.
    fn wrote(&mut self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.connection.moved();
            if self.unflushed.is_none() {
                self.unflushed = Busy::start(&self.connection, false);
                self.connection.writing.store(true, Ordering::Relaxed);
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Limited<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(&written);
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) && self.unflushed.take().is_some() {
            self.connection.writing.store(false, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A connection's service: marks the connection busy from a request's arrival (its header read)
/// until its answer's body is sent in full or dropped.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    connection: Arc<Connection>,
}

/// One unit of work in progress on a connection: a request, or bytes written and not yet
/// flushed.
pub struct Busy {
    connection: Arc<Connection>,
    /// A request: once done, the connection has served one.
    request: bool,
}

impl Busy {
    /// `None` if the connection was evicted.
    fn start(connection: &Arc<Connection>, request: bool) -> Option<Busy> {
        connection
            .busy
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n != EVICTED).then_some(n + 1))
            .ok()
            .map(|_| Busy { connection: connection.clone(), request })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.request {
            self.connection.served.store(true, Ordering::Relaxed);
        }
        // Never EVICTED here: eviction needs the count at 0.
        self.connection.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, R, B> Service<Request<R>> for Tracked<S>
where
    S: Service<Request<R>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<R>) -> Self::Future {
        let Some(busy) = Busy::start(&self.connection, true) else {
            // The connection was chosen for eviction before this request reached the service
            // (hyper reads a header before it calls the service): not handled, so that nothing
            // is done for an answer that cannot be sent.
            let refused = Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .header(header::CONNECTION, "close")
                .body(TrackedBody { inner: None, _busy: None })
                .expect("a static answer");
            return Box::pin(std::future::ready(Ok(refused)));
        };
        let answer = self.inner.call(request);
        let connection = self.connection.clone();
        Box::pin(async move {
            let response = answer.await?;
            connection.answering.fetch_add(1, Ordering::Relaxed);
            connection.moved();
            Ok(response.map(|inner| TrackedBody { inner: Some(inner), _busy: Some(busy) }))
        })
    }
}

/// An answer's body that keeps its connection busy until it is sent or dropped; empty for a
/// request refused on an evicted connection.
pub struct TrackedBody<B> {
    inner: Option<B>,
    _busy: Option<Busy>,
}

impl<B> Drop for TrackedBody<B> {
    fn drop(&mut self) {
        if let Some(busy) = &self._busy {
            busy.connection.answering.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Some(busy) = &self._busy {
            busy.connection.moved();
        }
        match &mut self.inner {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
