//! Replicas of the bridge as one service, over NATS with JetStream (`cluster_url`). What one
//! process keeps in memory or on disk otherwise is shared here:
//! - `routing`: a Twilio callback for a call running on another replica reaches it (each
//!   running call listens on `callbridge.call.<CallSid>`);
//! - `inflight`: outbound calls placed by `POST /v1/calls`, in the key-value bucket
//!   `callbridge_outbound`, so a status callback on any replica builds the same report;
//! - `server::reports::cluster`: finished reports in the stream `CALLBRIDGE_REPORTS`, delivered
//!   by one durable work-queue consumer all replicas share;
//! - `cap`: the deployment-wide `cluster_max_calls`, from per-replica heartbeats;
//! - `console`: every replica's calls on `/console`.
//!
//! Nothing on the media path goes through NATS. Without NATS every feature falls back to what a
//! single process does (logged, and said in `/readyz`); a call never waits on NATS for longer
//! than [`OP_TIMEOUT`].

pub mod cap;
pub mod console;
pub mod inflight;
pub mod metrics;
pub mod routing;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream;
use tracing::{info, warn};

use crate::config::ClusterConfig;
use crate::server::running::RunningCalls;

pub use metrics::ClusterMetrics;

/// The stream reports wait in until one replica delivered them (a work queue).
pub const REPORTS_STREAM: &str = "CALLBRIDGE_REPORTS";
pub const REPORTS_SUBJECT: &str = "callbridge.reports.new";
/// Reports a receiver refused (4xx) or that expired, with the answer.
pub const DEAD_STREAM: &str = "CALLBRIDGE_REPORTS_DEAD";
pub const DEAD_SUBJECT: &str = "callbridge.reports.dead";
/// The durable consumer every replica pulls reports from.
pub const REPORTS_CONSUMER: &str = "deliver";
/// Outbound calls in flight, by CallSid.
pub const OUTBOUND_BUCKET: &str = "callbridge_outbound";
/// Each replica's running calls, by replica name (heartbeats that expire with their replica).
pub const PODS_BUCKET: &str = "callbridge_pods";

/// The longest any request handler or call waits on NATS; then it goes on without it.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster_creds {path}: {source}")]
    Creds {
        path: String,
        source: std::io::Error,
    },
    #[error("cluster metrics: {0}")]
    Metrics(String),
    #[error("cluster: NATS not connected")]
    NotConnected,
    #[error("cluster: NATS did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("cluster: {0}")]
    Nats(String),
    #[error(
        "cluster: JetStream not set up yet (streams and buckets are created once NATS is reached)"
    )]
    NotSetUp,
}

/// The servers as logs show them (credentials in a URL redacted).
fn logged_urls(urls: &[String]) -> String {
    urls.iter()
        .map(|u| crate::config::redacted_url(u))
        .collect::<Vec<_>>()
        .join(",")
}

/// Creating a stream or bucket (file storage, replicated) may take a busy server longer than a
/// request; nothing waits on it but the set-up task.
const SET_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// `op`, bounded by [`OP_TIMEOUT`], its error as text (NATS errors are many types).
pub async fn bounded<T, E: std::fmt::Display>(
    op: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ClusterError> {
    bounded_by(OP_TIMEOUT, op).await
}

async fn bounded_by<T, E: std::fmt::Display>(
    limit: Duration,
    op: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(limit, op).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(ClusterError::Nats(e.to_string())),
        Err(_) => Err(ClusterError::TimedOut(limit)),
    }
}

/// The streams and buckets, once created or found on the NATS server.
#[derive(Clone)]
pub struct Shared {
    pub outbound: jetstream::kv::Store,
    pub pods: jetstream::kv::Store,
    pub reports: jetstream::stream::Stream,
    pub dead: jetstream::stream::Stream,
}

/// This replica's membership of the cluster.
pub struct Cluster {
    pub cfg: ClusterConfig,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub metrics: ClusterMetrics,
    shared: RwLock<Option<Shared>>,
    /// Wakes the set-up task on every (re)connection.
    connected_again: Arc<tokio::sync::Notify>,
    pub routes: routing::Routes,
    pub cap: cap::Cap,
    /// The other replicas' calls, for this replica's console.
    pub console: console::RemoteCalls,
    /// Turns `true` when this replica leaves (its server stopped): the cluster's tasks end.
    leaving: tokio::sync::watch::Sender<bool>,
}

impl Cluster {
    /// Connects in the background (a NATS server down at start-up does not stop the bridge:
    /// the client keeps trying) and starts the set-up, routing and heartbeat tasks. Fails only
    /// on what the operator must fix: an unreadable credentials file.
    pub async fn start(
        cfg: ClusterConfig,
        registry: &prometheus::Registry,
        running: &Arc<RunningCalls>,
        active_calls: Arc<AtomicUsize>,
        report_retention: (usize, Duration),
    ) -> Result<Arc<Cluster>, ClusterError> {
        let metrics =
            ClusterMetrics::register(registry).map_err(|e| ClusterError::Metrics(e.to_string()))?;
        let connected_again = Arc::new(tokio::sync::Notify::new());
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("callbridge {}", cfg.pod))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            // A server that hangs is noticed within two pings, not the default two minutes.
            .ping_interval(Duration::from_secs(10))
            .request_timeout(Some(OP_TIMEOUT));
        if let Some(path) = &cfg.creds {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|source| ClusterError::Creds {
                    path: path.display().to_string(),
                    source,
                })?;
        }
        if let Some(t) = &cfg.token {
            opts = opts.token(t.0.clone());
        }
        if let Some(ca) = &cfg.tls_ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        let gauge = metrics.connected.clone();
        let wake = connected_again.clone();
        opts = opts.event_callback(move |event| {
            let (gauge, wake) = (gauge.clone(), wake.clone());
            async move {
                match event {
                    async_nats::Event::Connected => {
                        gauge.set(1);
                        info!("cluster: connected to NATS");
                        wake.notify_one();
                    }
                    async_nats::Event::Disconnected => {
                        gauge.set(0);
                        warn!("cluster: NATS connection lost; callbacks for calls on other replicas are dropped, reports spool locally, the call cap is this replica's max_calls until it is back");
                    }
                    other => info!(event = %other, "cluster: NATS event"),
                }
            }
        });
        let servers: Vec<async_nats::ServerAddr> =
            cfg.urls.iter().filter_map(|u| u.parse().ok()).collect();
        let client = opts
            .connect(servers)
            .await
            .map_err(|e| ClusterError::Nats(e.to_string()))?;
        let js = jetstream::new(client.clone());
        info!(
            servers = logged_urls(&cfg.urls),
            pod = cfg.pod,
            "cluster: connecting to NATS (in the background)"
        );
        let cluster = Arc::new(Cluster {
            routes: routing::Routes::new(client.clone(), metrics.clone()),
            cap: cap::Cap::new(active_calls),
            console: console::RemoteCalls::default(),
            cfg,
            client,
            js,
            metrics,
            shared: RwLock::new(None),
            connected_again,
            leaving: tokio::sync::watch::channel(false).0,
        });
        running.observe(cluster.routes.observer());
        tokio::spawn(set_up_on_every_connection(
            Arc::downgrade(&cluster),
            report_retention,
        ));
        tokio::spawn(cap::heartbeats(Arc::downgrade(&cluster)));
        Ok(cluster)
    }

    /// Waits `d`; true when this replica is leaving (the caller's task should end).
    pub async fn pause(&self, d: Duration) -> bool {
        let mut leaving = self.leaving.subscribe();
        if *leaving.borrow() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = leaving.changed() => true,
        }
    }

    pub fn is_leaving(&self) -> bool {
        *self.leaving.borrow()
    }

    /// The server stopped: this replica's call count goes at once (not after its TTL), its
    /// tasks end, and what it published is flushed before the connection closes.
    pub async fn leave(&self) {
        self.leaving.send_replace(true);
        if let Ok(shared) = self.shared() {
            if let Err(e) = bounded(shared.pods.delete(&self.cfg.pod)).await {
                warn!(error = %e, "cluster: call count not removed; it expires with its TTL");
            }
        }
        self.routes.close();
        if let Err(e) = bounded(self.client.drain()).await {
            info!(error = %e, "cluster: NATS connection not drained");
        }
        info!(pod = self.cfg.pod, "cluster: left");
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The streams and buckets, when NATS is reachable and they were set up.
    pub fn shared(&self) -> Result<Shared, ClusterError> {
        if !self.connected() {
            return Err(ClusterError::NotConnected);
        }
        self.shared
            .read()
            .ok()
            .and_then(|s| s.clone())
            .ok_or(ClusterError::NotSetUp)
    }

    /// What `/readyz` adds about the cluster (the bridge is ready either way).
    pub fn readiness(&self) -> String {
        match self.shared() {
            Ok(_) => format!("cluster: connected as {}", self.cfg.pod),
            Err(e) => format!(
                "cluster degraded ({e}): callbacks reach calls on this replica only, reports spool locally, max_calls is per replica"
            ),
        }
    }

    fn set_shared(&self, shared: Shared) {
        if let Ok(mut s) = self.shared.write() {
            *s = Some(shared);
        }
    }
}

/// Creates (or finds) the streams and buckets each time the connection comes up: the server
/// may have been replaced by one with an empty store since.
async fn set_up_on_every_connection(
    cluster: std::sync::Weak<Cluster>,
    report_retention: (usize, Duration),
) {
    let started = std::time::Instant::now();
    let mut said_unreachable = false;
    loop {
        let Some(c) = cluster.upgrade() else { return };
        if c.is_leaving() {
            return;
        }
        let wake = c.connected_again.clone();
        if c.connected() {
            match set_up(&c, report_retention).await {
                Ok(shared) => {
                    let first = c.shared.read().map(|s| s.is_none()).unwrap_or(false);
                    c.set_shared(shared);
                    if first {
                        info!(
                            replicas = c.cfg.replicas,
                            "cluster: JetStream streams and buckets ready"
                        );
                    }
                    drop(c);
                    // Until the next (re)connection, or a minute (a server that lost its store
                    // while the connection held).
                    let _ = tokio::time::timeout(Duration::from_secs(60), wake.notified()).await;
                    continue;
                }
                Err(e) => warn!(error = %e, "cluster: cannot set up JetStream; retrying"),
            }
        }
        if !c.connected() && !said_unreachable && started.elapsed() > Duration::from_secs(5) {
            said_unreachable = true;
            warn!(
                servers = logged_urls(&c.cfg.urls),
                "cluster: NATS not reachable; serving calls degraded (callbacks reach calls on this replica only, reports spool locally, max_calls is per replica) until it is"
            );
        }
        drop(c);
        let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
    }
}

async fn set_up(
    c: &Cluster,
    (dead_max, dead_max_age): (usize, Duration),
) -> Result<Shared, ClusterError> {
    use jetstream::stream::{Config, RetentionPolicy, StorageType};
    // Both streams: on disk (they outlive a NATS restart), replicated as configured.
    let on_disk = |name: &str, subject: &str| Config {
        name: name.into(),
        subjects: vec![subject.into()],
        storage: StorageType::File,
        num_replicas: c.cfg.replicas,
        ..Default::default()
    };
    let reports = bounded_by(
        SET_UP_TIMEOUT,
        c.js.get_or_create_stream(Config {
            retention: RetentionPolicy::WorkQueue,
            // A report stored twice within this window (a replay on another replica, a spooled
            // report moved after a lost acknowledgement) is stored once.
            duplicate_window: Duration::from_secs(600),
            ..on_disk(REPORTS_STREAM, REPORTS_SUBJECT)
        }),
    )
    .await?;
    let dead = bounded_by(
        SET_UP_TIMEOUT,
        c.js.get_or_create_stream(Config {
            max_messages: dead_max as i64,
            max_age: dead_max_age,
            ..on_disk(DEAD_STREAM, DEAD_SUBJECT)
        }),
    )
    .await?;
    let outbound = kv(
        c,
        OUTBOUND_BUCKET,
        c.cfg.inflight_ttl,
        "outbound calls placed by POST /v1/calls, until their final status",
    )
    .await?;
    let pods = kv(
        c,
        PODS_BUCKET,
        c.cfg.heartbeat * 5,
        "each replica's running calls (heartbeats; a dead replica's expire)",
    )
    .await?;
    Ok(Shared {
        outbound,
        pods,
        reports,
        dead,
    })
}

async fn kv(
    c: &Cluster,
    bucket: &str,
    max_age: Duration,
    description: &str,
) -> Result<jetstream::kv::Store, ClusterError> {
    if let Ok(s) = bounded_by(SET_UP_TIMEOUT, c.js.get_key_value(bucket)).await {
        return Ok(s);
    }
    bounded_by(
        SET_UP_TIMEOUT,
        c.js.create_key_value(jetstream::kv::Config {
            bucket: bucket.into(),
            description: description.into(),
            history: 1,
            max_age,
            storage: jetstream::stream::StorageType::File,
            num_replicas: c.cfg.replicas,
            ..Default::default()
        }),
    )
    .await
}
