//! The HTTP edge: the accept loop and HTTP/1.1 on each connection, with what a public
//! listener needs and `axum::serve` does not give (a hostile probe held 300 sockets open for
//! 50 s by sending a byte every 5 s, and with a low fd limit `/healthz` stopped answering):
//! - a **header-read timeout** (hyper's, on a tokio timer): a request head must arrive within
//!   `http_header_timeout_ms`. hyper starts that timer whenever the connection waits for a
//!   request head, so it also closes a **keep-alive connection left idle** that long;
//! - a **cap on HTTP connections** (`max_http_connections`), separate from `max_calls`: past
//!   it the loop stops accepting and new connections wait in the kernel's backlog. A media
//!   socket leaves the cap once it upgrades (hyper hands the socket over and the connection
//!   task ends); from then on it is a call, bounded by `max_calls`;
//! - an accept loop that **survives `EMFILE`/`ENFILE`**: logged (at most once a second),
//!   counted (`callbridge_http_accept_errors_total{kind="fd_limit"}`), and retried after a
//!   short pause instead of spinning;
//! - TCP_NODELAY on every socket (the media task writes bursts of small frames; with Nagle
//!   on, each burst after the first waits for the peer's delayed ACK);
//! - graceful shutdown: stop accepting, let each connection finish its request, wait for them.
//!
//! Request bodies are bounded where they are read ([`read_body`]), in size and in time.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, error};

use crate::metrics::Metrics;

/// How long after an out-of-descriptors accept failure the loop tries again (each try that
/// fails costs a syscall; the descriptors come back as connections close or time out).
const FD_RETRY: Duration = Duration::from_millis(100);

/// The edge's limits (from `max_http_connections` and `http_header_timeout_ms`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, asks every
/// connection to end after its current request, and returns once they have.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut last_logged: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _peer)) => tcp,
                Err(e) => {
                    accept_failed(&e, &metrics, &mut last_logged).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        conns.spawn(connection(
            tcp,
            app.clone(),
            limits,
            metrics.clone(),
            closing.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

async fn connection(
    tcp: tokio::net::TcpStream,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut closing: watch::Receiver<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let conn = http
        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app))
        .with_upgrades();
    tokio::pin!(conn);
    metrics.http.connections.inc();
    let closed = async move {
        // The guard `wait_for` returns must not live across an await (it is not Send).
        let _ = closing.wait_for(|c| *c).await.map(|_| ());
    };
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        () = closed => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    metrics.http.connections.dec();
    drop(permit);
    if let Err(e) = ended {
        let kind = if e.is_timeout() {
            "header_timeout"
        } else {
            "other"
        };
        metrics
            .http
            .connection_errors
            .with_label_values(&[kind])
            .inc();
        debug!(kind, error = %e, "HTTP connection ended with an error");
    }
}

async fn accept_failed(e: &std::io::Error, metrics: &Metrics, last_logged: &mut Option<Instant>) {
    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
    // A peer that gave up before we accepted it is its own business, not the listener's.
    if !out_of_fds
        && matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
        )
    {
        return;
    }
    let kind = if out_of_fds { "fd_limit" } else { "other" };
    metrics.http.accept_errors.with_label_values(&[kind]).inc();
    if last_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        *last_logged = Some(Instant::now());
        error!(
            kind,
            error = %e,
            "cannot accept a connection; the listener retries (raise the fd limit, or lower max_http_connections)"
        );
    }
    tokio::time::sleep(if out_of_fds {
        FD_RETRY
    } else {
        Duration::from_millis(10)
    })
    .await;
}

/// Why a request body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    TimedOut,
    Broken,
}

impl BodyError {
    /// The answer to the client: only a body that did not arrive in time is a 408; one that
    /// broke off or was malformed at the HTTP level is the client's bad request (400).
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads a request body of at most `limit` bytes within `within` (a body sent a byte at a
/// time must not hold the connection and its buffer for long).
pub async fn read_body(
    body: axum::body::Body,
    limit: usize,
    within: Duration,
) -> Result<axum::body::Bytes, BodyError> {
    match tokio::time::timeout(within, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(BodyError::TimedOut),
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => {
            // axum wraps http-body's LengthLimitError; anything else is a broken body.
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = src {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Err(BodyError::TooLarge);
                }
                src = s.source();
            }
            Err(BodyError::Broken)
        }
    }
}
