//! Outbound calls in flight, shared: what `POST /v1/calls` knew of a call (numbers, profile,
//! variables) is put in the key-value bucket `callbridge_outbound` under its CallSid, with the
//! bucket's TTL (`cluster_inflight_ttl_s`), so Twilio's status callback on any replica builds
//! the report the placing replica would have.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{bounded, Cluster};
use crate::server::http::outbound::Placed;

/// A [`Placed`] as stored: its creation as wall-clock time (an `Instant` means nothing on
/// another replica).
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    from: String,
    to: String,
    profile: Option<String>,
    variables: BTreeMap<String, String>,
    created_unix_ms: u64,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A KV key is letters, digits and `-_/=.`; a CallSid is letters and digits.
fn key(call_sid: &str) -> Option<&str> {
    (!call_sid.is_empty() && call_sid.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(call_sid)
}

impl Cluster {
    /// Remembers an outbound call for every replica. Best effort: without NATS the placing
    /// replica still has it in memory (logged).
    pub async fn put_placed(&self, call_sid: &str, placed: &Placed) {
        let Some(key) = key(call_sid) else { return };
        let stored = Stored {
            from: placed.from.clone(),
            to: placed.to.clone(),
            profile: placed.profile.clone(),
            variables: placed.variables.clone(),
            created_unix_ms: now_unix_ms()
                .saturating_sub(placed.created.elapsed().as_millis() as u64),
        };
        let result = match (self.shared(), serde_json::to_vec(&stored)) {
            (Ok(shared), Ok(bytes)) => bounded(shared.outbound.put(key, bytes.into()))
                .await
                .map(|_| ()),
            (Err(e), _) => Err(e),
            (_, Err(e)) => Err(super::ClusterError::Nats(e.to_string())),
        };
        if let Err(e) = result {
            warn!(call_sid, error = %e, "cluster: outbound call not shared; only this replica can report it if it never connects");
        }
    }

    /// Takes an outbound call placed by any replica (it is forgotten everywhere).
    pub async fn take_placed(&self, call_sid: &str) -> Option<Placed> {
        let key = key(call_sid)?;
        let shared = match self.shared() {
            Ok(s) => s,
            Err(e) => {
                warn!(call_sid, error = %e, "cluster: cannot look up an outbound call placed by another replica");
                return None;
            }
        };
        let found = match bounded(shared.outbound.get(key)).await {
            Ok(v) => v,
            Err(e) => {
                warn!(call_sid, error = %e, "cluster: outbound call lookup failed");
                return None;
            }
        };
        self.forget_placed(call_sid).await;
        let stored: Stored = match serde_json::from_slice(&found?) {
            Ok(s) => s,
            Err(e) => {
                warn!(call_sid, error = %e, "cluster: unreadable outbound call entry ignored");
                return None;
            }
        };
        let age = Duration::from_millis(now_unix_ms().saturating_sub(stored.created_unix_ms));
        Some(Placed {
            from: stored.from,
            to: stored.to,
            profile: stored.profile,
            variables: stored.variables,
            created: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
        })
    }

    /// Forgets an outbound call everywhere (its final status came).
    pub async fn forget_placed(&self, call_sid: &str) {
        let (Some(key), Ok(shared)) = (key(call_sid), self.shared()) else {
            return;
        };
        if let Err(e) = bounded(shared.outbound.delete(key)).await {
            warn!(call_sid, error = %e, "cluster: outbound call entry not removed (it expires with the bucket's TTL)");
        }
    }
}
