//! `prewarm`, `prewarm_ttl_s`: warming a call up at the TwiML webhook (see
//! `server/prewarm.rs`).
//!
//! On by default for a single instance. With a cluster (`cluster_url`) it is off unless set:
//! Twilio opens the media socket to the public URL, and behind a load balancer that spreads
//! connections it lands on another replica most of the time, where the warm session (and the
//! greeting the model already spoke into it) is paid for and thrown away.

use std::time::Duration;

use super::keys::Raw;
use super::{invalid, ConfigError};

/// Twilio usually opens the media socket well within a second of our TwiML answer; a warm
/// session unclaimed this long after it is given up.
const DEFAULT_TTL_S: i64 = 8;
/// Longer than this a warm session would only hold a `max_calls` slot (and a model session).
const MAX_TTL_S: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prewarm {
    pub on: bool,
    /// `prewarm` was set (the cluster's default does not apply).
    pub explicit: bool,
    /// A warm session no media socket claimed within this is closed.
    pub ttl: Duration,
}

pub(super) fn prewarm(r: &Raw) -> Result<Prewarm, ConfigError> {
    let ttl = match r.prewarm_ttl_s {
        None => DEFAULT_TTL_S,
        Some(n) if (1..=MAX_TTL_S).contains(&n) => n,
        Some(n) => {
            return Err(invalid(
                "prewarm_ttl_s",
                format!("{n}; allowed: 1 to {MAX_TTL_S}"),
            ))
        }
    };
    Ok(Prewarm {
        on: r.prewarm.unwrap_or(true),
        explicit: r.prewarm.is_some(),
        ttl: Duration::from_secs(ttl as u64),
    })
}

impl Prewarm {
    /// With a cluster, off unless `prewarm` was set.
    pub(super) fn with_cluster(mut self, cluster: bool) -> Prewarm {
        if cluster && !self.explicit {
            self.on = false;
        }
        self
    }
}
