//! Connections the server can cut: the mechanism behind [`FaultKind::Cut`](crate::FaultKind::Cut).
//!
//! A handler cannot reach its TCP stream through axum, so every accepted stream carries a shared
//! flag that the handler receives as connect info. Once the flag is set, writes fail, hyper drops
//! the connection, and the client sees it close before any response byte arrives.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::stats::StatsRecorder;

/// A TCP listener whose streams can be cut from a request handler.
pub(crate) struct CutListener {
    inner: TcpListener,
    stats: Arc<StatsRecorder>,
}

impl CutListener {
    pub(crate) fn new(inner: TcpListener, stats: Arc<StatsRecorder>) -> CutListener {
        CutListener { inner, stats }
    }
}

impl Listener for CutListener {
    type Io = CutStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CutStream, SocketAddr) {
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        self.stats.record_connection();
        // Replies are small and latency-sensitive; Nagle would only delay them.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!("mock: cannot set TCP_NODELAY: {err}");
        }
        let stream = CutStream {
            stream,
            cut: Arc::default(),
        };
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted TCP stream that fails all writes once cut.
pub(crate) struct CutStream {
    stream: TcpStream,
    cut: Arc<AtomicBool>,
}

impl CutStream {
    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }
}

fn cut_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection cut by mock fault",
    )
}

impl AsyncRead for CutStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_cut() {
            // End of stream: nothing more is read from a cut connection.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CutStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Per-connection handle given to handlers as connect info.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    cut: Arc<AtomicBool>,
}

impl Connection {
    /// Makes the connection fail before the current response is written.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }
}

impl Connected<IncomingStream<'_, CutListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, CutListener>) -> Self {
        Connection {
            cut: Arc::clone(&stream.io().cut),
        }
    }
}
