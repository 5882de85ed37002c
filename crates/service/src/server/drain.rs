//! The drain that drops nothing: on SIGTERM the server keeps listening, `/readyz` and the
//! TwiML webhook answer 503 (so the load balancer and Twilio's fallback URL send new calls
//! elsewhere), media sockets whose TwiML was served before the signal are still accepted, and
//! running calls go on until they end or the drain period does.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How long after answering a webhook Twilio may take to open its media socket. While one may
/// still come, the drain does not end early just because no call is running.
pub const MEDIA_ARRIVAL_GRACE: Duration = Duration::from_secs(3);

/// When the TwiML webhook last answered `<Connect><Stream>`.
#[derive(Debug)]
pub struct RecentTwiml {
    origin: Instant,
    /// Milliseconds since `origin` + 1 (0: never).
    last: AtomicU64,
}

impl Default for RecentTwiml {
    fn default() -> Self {
        RecentTwiml {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl RecentTwiml {
    /// A webhook was answered with a stream to open.
    pub fn served(&self) {
        let ms = self.origin.elapsed().as_millis() as u64 + 1;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Whether a media socket for a webhook answered lately may still arrive.
    fn media_may_arrive(&self, now: Instant) -> bool {
        match self.last.load(Ordering::Relaxed) {
            0 => false,
            ms => {
                let at = self.origin + Duration::from_millis(ms - 1);
                now.saturating_duration_since(at) < MEDIA_ARRIVAL_GRACE
            }
        }
    }
}

/// After a call's drain goodbye timed out, it gets this much longer to hang up (Twilio REST)
/// before it ends regardless (the call keeps that deadline: `Call::on_drain`).
pub const GOODBYE_MARGIN: Duration = crate::call::DRAIN_HANGUP_MARGIN;

/// Waits out the drain: until no call runs and no media socket is still expected, or `drain`
/// has passed. Then, if calls are left, tells them to wrap up (`stop_calls`: each says its
/// goodbye and hangs up, see [`Call::on_drain`](crate::call::Call::on_drain)),
/// and gives them `goodbye` + a few seconds to close their sockets.
pub async fn wait(
    active: &AtomicUsize,
    recent: &RecentTwiml,
    drain: Duration,
    goodbye: Duration,
    stop_calls: &watch::Sender<bool>,
) {
    let deadline = tokio::time::Instant::now() + drain;
    loop {
        let now = tokio::time::Instant::now();
        let idle = active.load(Ordering::Relaxed) == 0 && !recent.media_may_arrive(now.into());
        if idle || now >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = active.load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(
            calls = left,
            "drain period over; the remaining calls say goodbye and end"
        );
        let _ = stop_calls.send(true);
        let hard = tokio::time::Instant::now() + goodbye + GOODBYE_MARGIN + Duration::from_secs(3);
        while active.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < hard {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        // Nothing runs: a media socket arriving from here on is too late.
        let _ = stop_calls.send(true);
    }
}
