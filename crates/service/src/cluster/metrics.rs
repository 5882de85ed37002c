//! The cluster's metrics, registered in the process's registry (names get its `callbridge_`
//! prefix) only when `cluster_url` is set. Alerts on them: `deploy/prometheus/alerts.yml`.

use prometheus::core::Collector;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct ClusterMetrics {
    /// 1 while the NATS connection is up.
    pub connected: IntGauge,
    /// Callbacks for calls not running here, by what became of them: `delivered` (a replica
    /// took it), `no_responder` (no replica runs that call), `failed` (NATS down or slow).
    pub forwarded: IntCounterVec,
    /// Reports in the stream, not yet delivered (all replicas).
    pub reports_waiting: IntGauge,
    /// Age of the oldest of them, in seconds (0 when none waits).
    pub reports_oldest_seconds: IntGauge,
    /// Reports in the dead-letter stream.
    pub reports_dead: IntGauge,
    /// Calls running on every replica, as this replica last counted them.
    pub calls: IntGauge,
}

/// `collector`, registered in `registry`: each metric is registered where it is made, so none
/// is made and forgotten.
fn registered<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, prometheus::Error> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

impl ClusterMetrics {
    pub fn register(registry: &Registry) -> Result<ClusterMetrics, prometheus::Error> {
        let gauge = |name: &str, help: &str| registered(registry, IntGauge::new(name, help)?);
        let forwarded = IntCounterVec::new(
            Opts::new(
                "cluster_callbacks_forwarded_total",
                "Twilio callbacks for calls not running here, forwarded over NATS, by result",
            ),
            &["result"],
        )?;
        let m = ClusterMetrics {
            connected: gauge("cluster_connected", "1 while the NATS connection is up")?,
            forwarded: registered(registry, forwarded)?,
            reports_waiting: gauge(
                "cluster_reports_waiting",
                "Reports in the JetStream stream, not yet delivered",
            )?,
            reports_oldest_seconds: gauge(
                "cluster_reports_oldest_seconds",
                "Age of the oldest report waiting in the stream",
            )?,
            reports_dead: gauge(
                "cluster_reports_dead",
                "Reports in the dead-letter stream (refused or expired)",
            )?,
            calls: gauge(
                "cluster_calls",
                "Calls running on every replica (heartbeats), as this replica counts them",
            )?,
        };
        for result in ["delivered", "no_responder", "failed"] {
            m.forwarded.with_label_values(&[result]);
        }
        Ok(m)
    }
}
