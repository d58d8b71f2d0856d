//! The connection cap: at most `--max-connections` client connections at once, over HTTP and
//! HTTPS. A connection past the cap is closed as soon as it is accepted, so that the registry
//! never runs out of file descriptors for its database, its blobs and the connections it serves.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// An acceptor that holds one permit per open connection (before any TLS handshake, so a client
/// that stalls the handshake counts too).
#[derive(Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl ConnectionLimit {
    pub fn new(max_connections: usize, metrics: Arc<Metrics>) -> Self {
        ConnectionLimit { permits: Arc::new(Semaphore::new(max_connections.max(1))), metrics }
    }
}

impl<I, S> Accept<I, S> for ConnectionLimit {
    type Stream = Limited<I>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Limited<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        std::future::ready(match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                self.metrics.connections.inc();
                Ok((Limited { stream, _permit: permit, metrics: self.metrics.clone() }, service))
            }
            Err(_) => {
                // Dropping the stream closes it; the count says how often it happens.
                self.metrics.connections_refused.inc();
                Err(io::Error::other("--max-connections connections are open"))
            }
        })
    }
}

/// A connection that gives its permit back when it closes.
pub struct Limited<I> {
    stream: I,
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl<I> Drop for Limited<I> {
    fn drop(&mut self) {
        self.metrics.connections.dec();
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Limited<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Limited<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
