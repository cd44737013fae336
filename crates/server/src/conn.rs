//! Connections: the accept loop, and each connection served by hyper's own HTTP/1.1 or HTTP/2
//! connection.
//!
//! The protocol is chosen once per connection: over TLS by ALPN (`h2`, else HTTP/1.1, as RFC 9113
//! §3.3 has it), over plain TCP by the first bytes (`PRI * HTTP/2.0…`, the preface of HTTP/2
//! with prior knowledge, read with `peek` so hyper still reads them). hyper-util's auto
//! connection, which `axum::serve` uses, decides the same way but holds room for an HTTP/2
//! connection in every HTTP/1.1 one: about 7 kB more per idle stream subscriber.
//!
//! Shutdown is `axum::serve`'s graceful one: the loop stops accepting, every connection is told
//! to finish the requests in flight and close, and [`serve`] returns once every connection has.

use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// What a client speaking HTTP/2 with prior knowledge sends first (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest a TLS handshake, or the rest of a preface begun, may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// How often a connection that has sent part of the preface is looked at again.
const PREFACE_PAUSE: Duration = Duration::from_millis(5);

/// The router as hyper calls it: one clone per connection (an `Arc`'s; the route table is built
/// once).
type Service = TowerToHyperService<Router>;

/// Serves `listener` (over TLS with `tls`) until `shutdown` resolves, then stops accepting and
/// returns once every connection has finished its requests in flight and closed.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    // `true` once the server stops: connections finish what they are doing and close.
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection holds a receiver; `closed` resolves when the last is gone.
    let (open_tx, open_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, mostly: wait for some to be given back.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let stop = stop_rx.clone();
        let open = open_rx.clone();
        // One task per kind, each as large as what it serves: an HTTP/1.1 connection's task
        // carries no TLS state and no room for an HTTP/2 connection.
        match &tls {
            None => tokio::spawn(async move {
                plain(stream, service, stop).await;
                drop(open);
            }),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    secure(stream, addr, acceptor, service, stop).await;
                    drop(open);
                })
            }
        };
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    drop(open_rx);
    tracing::debug!(
        connections = open_tx.receiver_count(),
        "no new connections; waiting for the open ones to finish"
    );
    open_tx.closed().await;
}

/// A plain TCP connection: HTTP/2 if it begins with the preface, else HTTP/1.1.
async fn plain(stream: TcpStream, service: Service, mut stop: watch::Receiver<bool>) {
    let h2 = tokio::select! {
        h2 = sends_preface(&stream) => match h2 {
            Ok(h2) => h2,
            Err(e) => {
                tracing::debug!(error = %e, "connection lost before its first request");
                return;
            }
        },
        _ = stop.wait_for(|s| *s) => return,
    };
    if h2 {
        // Boxed: the task of an HTTP/1.1 connection keeps no room for an HTTP/2 one.
        Box::pin(serve_h2(TokioIo::new(stream), service, stop)).await;
    } else {
        serve_h1(TokioIo::new(stream), service, stop).await;
    }
}

/// Whether `stream` begins with the HTTP/2 preface, looking without reading. Waits for its first
/// bytes as long as the client likes (an idle connection costs this task and nothing else, as it
/// did under hyper-util), then for the rest of the preface while what came is its start, for
/// [`HANDSHAKE`] at most.
async fn sends_preface(stream: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; PREFACE.len()];
    let mut deadline = None;
    loop {
        let n = stream.peek(&mut first).await?;
        if n == 0 || first[..n] != PREFACE[..n] {
            // Closed (hyper sees the end of it), or not HTTP/2.
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + HANDSHAKE);
        if tokio::time::Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{n} bytes of the HTTP/2 preface and no more"),
            ));
        }
        // `peek` answers at once while bytes wait: look again after a pause.
        tokio::time::sleep(PREFACE_PAUSE).await;
    }
}

/// A TLS connection: the handshake (bounded, and in the connection's own task, so a stalled one
/// holds up no other), then HTTP/2 if ALPN chose it, else HTTP/1.1.
async fn secure(
    stream: TcpStream,
    addr: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    service: Service,
    mut stop: watch::Receiver<bool>,
) {
    let handshake = tokio::select! {
        handshake = tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)) => handshake,
        _ = stop.wait_for(|s| *s) => return,
    };
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "TLS handshake timed out");
            return;
        }
    };
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        Box::pin(serve_h2(TokioIo::new(tls), service, stop)).await;
    } else {
        Box::pin(serve_h1(TokioIo::new(tls), service, stop)).await;
    }
}

/// Serves HTTP/1.1 on `io` until the client closes or, once `stop` turns, the request in flight
/// is answered.
async fn serve_h1<I>(io: TokioIo<I>, service: Service, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Half-close allowed: while a response is in flight (a run's stream, for hours) hyper does
    // not keep reading the socket to spot the client's EOF, which reserved a second 8 kB read
    // buffer in every idle stream. A client that went away is found by the next write instead:
    // a stream's heartbeat (15 s) fails and ends the connection.
    let mut connection = pin!(
        http1::Builder::new()
            .half_close(true)
            .serve_connection(io, service)
    );
    let mut stopping = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "HTTP/1.1 connection ended");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Serves HTTP/2 on `io` until the client closes or, once `stop` turns, the streams in flight
/// are answered (the client is sent GOAWAY).
async fn serve_h2<I>(io: TokioIo<I>, service: Service, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut connection =
        pin!(http2::Builder::new(TokioExecutor::new()).serve_connection(io, service));
    let mut stopping = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "HTTP/2 connection ended");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
