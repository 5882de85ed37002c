//! The deployment-wide call cap (`cluster_max_calls`). Each replica puts its running calls in
//! the key-value bucket `callbridge_pods` under its name every `cluster_heartbeat_ms`, and sums
//! the others' entries. The bucket's TTL is five heartbeats, so a replica that dies stops
//! counting within that time: no count leaks. Counts are as old as one heartbeat, so a burst
//! can pass the cap by the calls answered within it; the per-replica `max_calls` still holds.
//! Without fresh counts (NATS unreachable) a replica falls back to its own `max_calls`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tracing::{info, warn};

use super::{bounded, Cluster};

pub struct Cap {
    active: Arc<AtomicUsize>,
    /// Calls on the other replicas at the last heartbeat.
    others: AtomicUsize,
    /// When `others` was counted (ms since `epoch`); 0: never.
    counted_ms: AtomicU64,
    epoch: Instant,
}

impl Cap {
    pub fn new(active: Arc<AtomicUsize>) -> Cap {
        Cap {
            active,
            others: AtomicUsize::new(0),
            counted_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn fresh_within(&self, within: Duration) -> bool {
        let at = self.counted_ms.load(Ordering::Relaxed);
        at != 0
            && (self.epoch.elapsed().as_millis() as u64).saturating_sub(at)
                <= within.as_millis() as u64
    }
}

impl Cluster {
    /// Whether the deployment is at `cluster_max_calls`: `None` when no such cap is set or the
    /// counts are stale (the caller applies `max_calls` alone then).
    pub fn at_cap(&self) -> Option<bool> {
        let max = self.cfg.max_calls?;
        if !self.connected() || !self.cap.fresh_within(self.cfg.heartbeat * 3) {
            return None;
        }
        let total =
            self.cap.others.load(Ordering::Relaxed) + self.cap.active.load(Ordering::Relaxed);
        Some(total >= max)
    }
}

/// Publishes this replica's count and reads the others', every heartbeat, while the cluster
/// lives.
pub async fn heartbeats(cluster: Weak<Cluster>) {
    let mut warned = false;
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let period = c.cfg.heartbeat;
        match beat(&c).await {
            Ok(others) => {
                if warned {
                    info!("cluster: call counts shared again");
                    warned = false;
                }
                c.cap.others.store(others, Ordering::Relaxed);
                c.cap.counted_ms.store(
                    (c.cap.epoch.elapsed().as_millis() as u64).max(1),
                    Ordering::Relaxed,
                );
                c.metrics
                    .calls
                    .set((others + c.cap.active.load(Ordering::Relaxed)) as i64);
            }
            Err(e) => {
                if !warned && c.cfg.max_calls.is_some() {
                    warn!(error = %e, "cluster: call counts not shared; cluster_max_calls falls back to this replica's max_calls");
                    warned = true;
                }
            }
        }
        if c.pause(period).await {
            return;
        }
    }
}

async fn beat(c: &Cluster) -> Result<usize, super::ClusterError> {
    let shared = c.shared()?;
    let mine = c.cap.active.load(Ordering::Relaxed);
    bounded(shared.pods.put(&c.cfg.pod, mine.to_string().into())).await?;
    let mut keys = bounded(shared.pods.keys()).await?;
    let mut others = 0usize;
    let mut alive = std::collections::HashSet::from([c.cfg.pod.clone()]);
    loop {
        let next = tokio::time::timeout(super::OP_TIMEOUT, keys.next())
            .await
            .map_err(|_| super::ClusterError::TimedOut(super::OP_TIMEOUT))?;
        let Some(key) = next else { break };
        let key = key.map_err(|e| super::ClusterError::Nats(e.to_string()))?;
        if key == c.cfg.pod {
            continue;
        }
        alive.insert(key.clone());
        if let Some(v) = bounded(shared.pods.get(&key)).await? {
            others += std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .unwrap_or(0);
        }
    }
    c.console.retain_pods(&alive);
    Ok(others)
}
