//! The async shell: axum routes, the media socket, the upstream client, shutdown.
//!
//! No call logic lives here: a call's socket task only pumps messages between the two sockets
//! and its [`crate::call::Call`].

pub mod effects;
pub mod latency;
pub mod media;
pub mod signature;
pub mod twilio_rest;
pub mod twiml;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::call::CallConfig;
use crate::config::Config;
use crate::metrics::Metrics;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub call_cfg: Arc<CallConfig>,
    pub metrics: Arc<Metrics>,
    pub active_calls: Arc<AtomicUsize>,
    /// Numbers calls in the logs.
    pub call_ids: Arc<std::sync::atomic::AtomicU64>,
    pub draining: Arc<AtomicBool>,
    /// Flips to `true` when running calls must end (after the drain period).
    pub stop_calls: watch::Receiver<bool>,
    /// The one HTTP client of the process (pooled), for tools, integrators and Twilio REST.
    pub http: reqwest::Client,
    pub twilio_rest: Arc<twilio_rest::TwilioRest>,
}

pub fn router(state: AppState) -> Router {
    // Only what Twilio calls is signed; health and metrics are for the platform.
    let twilio = Router::new()
        .route("/twiml", get(twiml::handle).post(twiml::handle))
        .route("/incoming-call", get(twiml::handle).post(twiml::handle))
        .route("/media", get(media::upgrade))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            signature::require_twilio_signature,
        ));
    Router::new()
        .merge(twilio)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ready")
    }
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.metrics.render(),
    )
}

/// A server running in the background (tests, demo, load tool).
pub struct Running {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<Duration>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Graceful stop: refuse new calls, let running calls end (up to `drain`), then end them.
    pub async fn stop(mut self, drain: Duration) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(drain);
        }
        let _ = (&mut self.task).await;
    }
}

/// Installs the TLS crypto provider once (rustls is built without a default one).
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Binds `cfg.listen` and serves in the background until [`Running::stop`].
pub async fn spawn(cfg: Config, metrics: Arc<Metrics>) -> std::io::Result<Running> {
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<Duration>();
    let task = tokio::spawn(serve_on(listener, cfg, metrics, async move {
        rx.await.unwrap_or(Duration::ZERO)
    }));
    Ok(Running {
        addr,
        shutdown: Some(tx),
        task,
    })
}

/// Serves until `signal` resolves, then drains for the duration it resolved with: `/readyz`
/// turns 503 so the load balancer stops sending calls, new media sockets are refused, running
/// calls get up to that long to finish, and whatever is left is ended (Twilio then plays the
/// apology after `</Connect>`).
pub async fn serve_on(
    listener: TcpListener,
    cfg: Config,
    metrics: Arc<Metrics>,
    signal: impl std::future::Future<Output = Duration> + Send + 'static,
) -> std::io::Result<()> {
    init_tls();
    if cfg.twilio_auth_token.is_none() {
        tracing::warn!(
            "twilio_auth_token is not set: /twiml and /media accept unsigned requests (set TWILIO_AUTH_TOKEN in production)"
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let http = twilio_rest::http_client();
    let state = AppState {
        twilio_rest: Arc::new(twilio_rest::TwilioRest::new(http.clone(), &cfg)),
        http,
        call_cfg: Arc::new(cfg.call.clone()),
        cfg: Arc::new(cfg),
        metrics,
        active_calls: Arc::new(AtomicUsize::new(0)),
        call_ids: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        draining: Arc::new(AtomicBool::new(false)),
        stop_calls: stop_rx,
    };
    let draining = state.draining.clone();
    let active = state.active_calls.clone();
    let app = router(state);
    // Nagle off on every accepted socket: the media task writes a burst of 20 ms frames and
    // marks as separate WebSocket messages; with Nagle on, each burst after the first segment
    // waits for the peer's (delayed, up to 40 ms) ACK. Replays made that visible.
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (signalled_tx, mut signalled_rx) = watch::channel(None::<Duration>);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let drain = signal.await;
        draining.store(true, Ordering::Relaxed);
        let _ = signalled_tx.send(Some(drain));
    });
    let served = tokio::spawn(async move { server.await });
    let drain = match signalled_rx.wait_for(|s| s.is_some()).await {
        Ok(d) => d.unwrap_or(Duration::ZERO),
        Err(_) => Duration::ZERO,
    };
    // The listener stops at once; upgraded media sockets live on in their own tasks.
    let deadline = tokio::time::Instant::now() + drain;
    while active.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = active.load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(
            calls = left,
            "drain period over; ending the remaining calls"
        );
        let _ = stop_tx.send(true);
        let hard = tokio::time::Instant::now() + Duration::from_secs(5);
        while active.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < hard {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    match served.await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e)),
    }
}
