//! The async shell, by what it serves: `http/` the edge and the HTTP routes (webhooks,
//! callbacks, the outbound API, the web pages); the call's task (`media` and the files beside
//! it: setup, effect tasks, upstream sockets, latency stamps, the registry of running calls, the
//! drain) feeds each call's [`crate::call::Call`] and does what it asks, deciding nothing about
//! the call itself (`call_setup` only chooses the profile and runs the integrator's setup
//! lookup, which is IO; the call decides what to do once they are known); `twilio_rest` and
//! `reports/` are clients both sides use. This file holds what they share: [`AppState`], the
//! [`router`], and starting and stopping the server ([`spawn`], [`serve_on`]).

pub mod call_setup;
pub mod drain;
pub mod effect_tasks;
pub mod http;
pub mod latency;
pub mod links;
pub mod media;
pub mod prewarm;
pub mod running;
pub mod upstream;

// Clients, not routes: the Twilio REST client is used by the call's effects (hang up,
// transfer) and by `POST /v1/calls` (its bounded answer reading by the setup lookup and report
// delivery too); report delivery by the callbacks and by every call's end. So they sit here,
// below both the routes and the call's task.
pub mod reports;
pub mod twilio_rest;

// The call's task still names these by their old paths (`super::console`, ...); kept until it
// moves too.
pub use self::http::{console, signature, web};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use self::http::{callbacks, edge, outbound, twiml, unsigned};
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
    /// When the webhook last answered with a stream (the drain waits for its media socket).
    pub recent_twiml: Arc<drain::RecentTwiml>,
    /// Flips to `true` when running calls must end (after the drain period).
    pub stop_calls: watch::Receiver<bool>,
    /// The live console's hub, when `console_token` or the softphone is set.
    pub console: Option<Arc<console::Hub>>,
    /// The one HTTP client of the process (pooled), for tools, integrators and Twilio REST.
    pub http: reqwest::Client,
    pub twilio_rest: Arc<twilio_rest::TwilioRest>,
    /// Call reports: spooled, signed, retried (a no-op without `report_url`).
    pub reports: reports::Reports,
    /// Outbound calls placed by `POST /v1/calls`, until Twilio's final status.
    pub outbound: Arc<outbound::OutboundCalls>,
    /// Running calls by CallSid, for callbacks that act on a call (answering machine).
    pub running: Arc<running::RunningCalls>,
    /// Softphone tickets that already opened `/media` (each opens it once).
    pub tickets: Arc<web::ticket::UsedTickets>,
    /// The other replicas, over NATS (`cluster_url`); `None`: this process alone.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Calls warmed up at the webhook, until their media socket claims them.
    pub warm: Arc<prewarm::WarmCalls>,
}

pub fn router(state: AppState) -> Router {
    // Only what Twilio calls is signed; health and metrics are for the platform.
    let twilio = Router::new()
        .route("/twiml", get(twiml::handle).post(twiml::handle))
        .route("/incoming-call", get(twiml::handle).post(twiml::handle))
        .route("/media", get(media::upgrade))
        .route("/twilio/status", post(callbacks::status))
        .route("/twilio/amd", post(callbacks::amd))
        .route("/twilio/recording", post(callbacks::recording))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            signature::require_twilio_signature,
        ));
    Router::new()
        .merge(twilio)
        .merge(web::routes(&state))
        // Bearer-token API (not Twilio-signed): the token is checked before the body is read.
        .route(
            "/v1/calls",
            post(outbound::create).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                outbound::require_api_token,
            )),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // No route takes more than Twilio's webhook forms (the signature check reads at most
        // that much before it verifies); axum's default would buffer 2 MB per request.
        .layer(axum::extract::DefaultBodyLimit::max(
            signature::MAX_WEBHOOK_BODY,
        ))
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let (status, text) = if s.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ready")
    };
    // Ready without NATS too (calls are served); the detail says what is degraded.
    match &s.cluster {
        Some(c) => (status, format!("{text}\n{}", c.readiness())),
        None => (status, text.to_owned()),
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

    /// Graceful stop: the webhook turns new calls away (503), calls already answered and running
    /// are served (up to `drain`), then whatever is left is ended.
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
    unsigned::check(&cfg).map_err(std::io::Error::other)?;
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

/// Serves until `signal` resolves, then drains for the duration it resolved with, still
/// listening: `/readyz` and the TwiML webhook answer 503 so the load balancer and Twilio's
/// fallback URL send new calls elsewhere; a media socket arriving now is accepted (its TwiML
/// was served before the signal); running calls get up to that long to finish, and whatever is
/// left is ended (Twilio then plays the apology after `</Connect>`). Then the listener closes.
pub async fn serve_on(
    listener: TcpListener,
    cfg: Config,
    metrics: Arc<Metrics>,
    signal: impl std::future::Future<Output = Duration> + Send + 'static,
) -> std::io::Result<()> {
    init_tls();
    // Secure by default: refuse unsigned webhooks in front of a remote (paid) upstream.
    let decision = unsigned::check(&cfg).map_err(std::io::Error::other)?;
    unsigned::log(decision);
    let (stop_tx, stop_rx) = watch::channel(false);
    let http = twilio_rest::http_client();
    // The softphone shows its own call's transcript from the same hub.
    let console =
        (cfg.console_token.is_some() || cfg.softphone_token.is_some()).then(console::Hub::new);
    let reports = reports::Reports::start(&cfg, http.clone(), metrics.clone())?;
    let running = Arc::<running::RunningCalls>::default();
    let active_calls = Arc::new(AtomicUsize::new(0));
    let cluster = match cfg.cluster.clone() {
        None => None,
        Some(cc) => {
            let retention = (
                cfg.callcenter.report_dead_max,
                cfg.callcenter.report_dead_max_age,
            );
            let c = crate::cluster::Cluster::start(
                cc,
                &metrics.registry,
                &running,
                active_calls.clone(),
                retention,
            )
            .await
            .map_err(std::io::Error::other)?;
            reports.join_cluster(c.clone());
            Some(c)
        }
    };
    if let (Some(hub), Some(c)) = (&console, &cluster) {
        crate::cluster::console::start(hub, c);
    }
    let state = AppState {
        reports,
        cluster,
        outbound: Arc::default(),
        running,
        tickets: Arc::default(),
        warm: Arc::default(),
        twilio_rest: Arc::new(twilio_rest::TwilioRest::new(http.clone(), &cfg)),
        http,
        call_cfg: Arc::new(cfg.call.clone()),
        cfg: Arc::new(cfg),
        metrics,
        active_calls,
        call_ids: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        draining: Arc::new(AtomicBool::new(false)),
        recent_twiml: Arc::new(drain::RecentTwiml::default()),
        stop_calls: stop_rx,
        console,
    };
    let draining = state.draining.clone();
    let member = state.cluster.clone();
    let hub = state.console.clone();
    let active = state.active_calls.clone();
    let recent = state.recent_twiml.clone();
    let goodbye = state.cfg.drain_goodbye_timeout;
    let cfg_limits = (
        state.cfg.max_http_connections,
        state.cfg.http_header_timeout,
    );
    let edge_metrics = state.metrics.clone();
    let app = router(state);
    // The listener stays open through the drain; it closes only once the drain is over.
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = edge::Limits {
        max_connections: cfg_limits.0,
        header_timeout: cfg_limits.1,
    };
    let server = edge::serve(listener, app, limits, edge_metrics, async move {
        let _ = close_rx.await;
    });
    let mut served = tokio::spawn(server);
    let drain = tokio::select! {
        d = signal => d,
        r = &mut served => {
            return match r {
                Ok(r) => r,
                Err(e) => Err(std::io::Error::other(e)),
            };
        }
    };
    draining.store(true, Ordering::Relaxed);
    tracing::info!(
        calls = active.load(Ordering::Relaxed),
        drain_s = drain.as_secs_f64(),
        "draining: /readyz and /twiml answer 503; running calls and their media sockets are served"
    );
    drain::wait(&active, &recent, drain, goodbye, &stop_tx).await;
    // Open console feeds would hold the graceful shutdown forever: end them first.
    if let Some(h) = hub {
        h.close();
    }
    if let Some(c) = member {
        c.leave().await;
    }
    let _ = close_tx.send(());
    match served.await {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e)),
    }
}
