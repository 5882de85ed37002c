//! Delivering call reports so that none is lost: each is written to the spool before the first
//! try and removed only after the receiver answered 2xx. Failures (no answer, 5xx, 408, 429) are
//! retried with exponential backoff and jitter until `report_retry_max` after the report was
//! written; any other 4xx is final and the report moves to `dead/` with the answer. At start-up
//! whatever is in the spool is sent again. The receiver dedupes on `Idempotency-Key`; a report
//! id submitted again while remembered (a replayed callback) is not spooled at all. `dead/` is
//! bounded by count, bytes and age.

pub mod calls;
mod cluster;
pub mod dead;
pub mod recent;
pub mod spool;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::{debug, error, info, warn};

use crate::config::{Config, Secret};
use crate::integrator::{signature, unix_now, SIGNATURE_HEADER};
use crate::metrics::Metrics;
use calls::{CallLinks, RecentCalls, RECENT_CALLS};
use dead::{Dead, DeadLimits, PruneReason};
use recent::{RecentIds, RECENT_REPORT_IDS};
use spool::{report_id_in, Entry, Spool};

/// A receiver that takes longer than this to answer is retried later.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two tries (before jitter).
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Reports sent at the same time (a backlog after an outage is worked through, not flooded).
const CONCURRENT_SENDS: usize = 8;
/// Of a refusing answer, this much is kept beside the dead report.
const MAX_KEPT_ANSWER: usize = 4096;

/// The report service; a no-op when no `report_url` is configured.
#[derive(Clone)]
pub struct Reports {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    spool: Spool,
    default_url: String,
    secret: Secret,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    retry_min: Duration,
    retry_max: Duration,
    max_spooled: usize,
    /// Names of spooled reports (mirrors the directory; guards the bound).
    pending: Mutex<BTreeSet<String>>,
    /// Ids of the reports submitted lately (and of those in the spool at start-up).
    recent: Mutex<RecentIds>,
    /// The reports of recent calls, by CallSid (for events that come after a call).
    calls: Mutex<RecentCalls>,
    /// What `dead/` holds, to keep it within its bounds.
    dead: Mutex<Dead>,
    sends: Semaphore,
    /// With `cluster_url`: reports go to the cluster's stream first (`cluster.rs`).
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

/// What [`Reports::submit`] did with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// On disk (or in the cluster's stream), and being delivered.
    Spooled,
    /// Its id was submitted before (a replayed callback): not spooled or sent again.
    Duplicate,
    /// Reports are off, or it could not be spooled (logged).
    NotSpooled,
}

/// What one try came to.
enum Try {
    Delivered,
    /// Worth another try later.
    Retry(String),
    /// Final refusal: the status and (the start of) the answer.
    Refused(u16, String),
}

impl Reports {
    /// Off: `submit` does nothing.
    pub fn disabled() -> Reports {
        Reports { inner: None }
    }

    /// Opens the spool and starts resending what a previous run left in it. Fails if the spool
    /// directory cannot be created (start-up then stops, naming it).
    pub fn start(
        cfg: &Config,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Reports> {
        let cc = &cfg.callcenter;
        let (Some(url), Some(dir), Some(secret)) = (
            cc.report_url.clone(),
            cc.report_spool_dir.as_deref(),
            cfg.tool_secret.clone(),
        ) else {
            return Ok(Reports::disabled());
        };
        let spool = Spool::open(dir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("report_spool_dir {}: {e}", dir.display()))
        })?;
        let left = spool.list()?;
        let limits = DeadLimits {
            max_count: cc.report_dead_max,
            max_bytes: cc.report_dead_max_bytes,
            max_age: cc.report_dead_max_age,
        };
        let dead = Dead::scan(&spool.dead_dir(), limits)?;
        // Oldest first, so the memory forgets them in that order; what was buried or is still
        // pending is a report a replay must not write again.
        let mut recent = RecentIds::new(RECENT_REPORT_IDS);
        for name in dead.names().chain(left.iter().map(String::as_str)) {
            if let Some(id) = report_id_in(name) {
                recent.insert(id);
            }
        }
        let inner = Arc::new(Inner {
            spool,
            default_url: url,
            secret,
            http,
            metrics,
            retry_min: cc.report_retry_min,
            retry_max: cc.report_retry_max,
            max_spooled: cc.report_spool_max,
            pending: Mutex::new(left.iter().cloned().collect()),
            recent: Mutex::new(recent),
            calls: Mutex::new(RecentCalls::new(RECENT_CALLS)),
            dead: Mutex::new(dead),
            sends: Semaphore::new(CONCURRENT_SENDS),
            cluster: std::sync::OnceLock::new(),
        });
        inner.prune_dead();
        inner.metrics.report_backlog.set(left.len() as i64);
        if !left.is_empty() {
            info!(
                reports = left.len(),
                spool = %dir.display(),
                "resending reports left in the spool"
            );
        }
        for name in left {
            tokio::spawn(deliver(inner.clone(), name));
        }
        Ok(Reports { inner: Some(inner) })
    }

    /// Hands reports to the cluster's stream from now on (the spool takes them while NATS is
    /// unreachable), and takes this replica's share of delivering everyone's.
    pub fn join_cluster(&self, c: Arc<crate::cluster::Cluster>) {
        if let Some(inner) = &self.inner {
            if inner.cluster.set(c.clone()).is_ok() {
                cluster::start(inner.clone(), c);
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Remembers that call `call_sid` has the report `report_id`, going to `url` (see
    /// [`calls`]).
    pub fn link_call(&self, call_sid: &str, report_id: &str, url: Option<&str>) {
        if let Some(Ok(mut c)) = self.inner.as_ref().map(|i| i.calls.lock()) {
            c.insert(call_sid, report_id, url);
        }
    }

    /// The reports of call `call_sid`, if this replica ran it lately.
    pub fn call_links(&self, call_sid: &str) -> Option<CallLinks> {
        let inner = self.inner.as_ref()?;
        inner.calls.lock().ok()?.get(call_sid).cloned()
    }

    /// Spools `doc` (durably) and starts delivering it to `url` (or the top-level `report_url`).
    /// Returns once the report is on disk. A `report_id` submitted lately is a replay of the same
    /// report: it is counted and logged, not written or sent again.
    pub async fn submit<T: Serialize>(
        &self,
        url: Option<&str>,
        report_id: &str,
        doc: &T,
    ) -> Submitted {
        let Some(inner) = &self.inner else {
            return Submitted::NotSpooled;
        };
        // Claimed before the write: replays arriving together must not all pass.
        let first = inner
            .recent
            .lock()
            .map_or(true, |mut r| r.insert(report_id));
        if !first {
            info!(
                report_id,
                "report already submitted (a replayed callback); not sent again"
            );
            inner
                .metrics
                .reports_total
                .with_label_values(&["duplicate"])
                .inc();
            return Submitted::Duplicate;
        }
        let unspooled = |inner: &Inner| {
            if let Ok(mut r) = inner.recent.lock() {
                r.remove(report_id);
            }
            Submitted::NotSpooled
        };
        let body = match serde_json::to_string(doc) {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, report_id, "cannot encode a report");
                return unspooled(inner);
            }
        };
        let entry = Entry {
            report_id: report_id.to_owned(),
            url: url.unwrap_or(&inner.default_url).to_owned(),
            created_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            body,
        };
        if let Some(c) = inner.cluster.get() {
            match cluster::store(c, &entry).await {
                Ok(()) => return Submitted::Spooled,
                Err(e) => {
                    warn!(report_id, error = %e, "report not stored in the cluster; spooled here until NATS is back")
                }
            }
        }
        let writer = inner.clone();
        let written =
            tokio::task::spawn_blocking(move || writer.spool.write(&entry).map(|n| (n, entry)))
                .await;
        let name = match written {
            Ok(Ok((name, _))) => name,
            Ok(Err(e)) => {
                // Sending without a spool file would break the promise (a failure would lose
                // it silently); the error log and the metric say it is lost.
                error!(error = %e, report_id, "cannot write a report to the spool; report lost");
                inner
                    .metrics
                    .reports_total
                    .with_label_values(&["unspooled"])
                    .inc();
                return unspooled(inner);
            }
            Err(e) => {
                error!(error = %e, report_id, "report spool task failed");
                return unspooled(inner);
            }
        };
        inner.admit(&name);
        tokio::spawn(deliver(inner.clone(), name));
        Submitted::Spooled
    }
}

impl Inner {
    /// Counts a new spool file, dropping the oldest past the bound.
    fn admit(&self, name: &str) {
        let dropped: Vec<String> = {
            let Ok(mut pending) = self.pending.lock() else {
                return;
            };
            pending.insert(name.to_owned());
            let mut out = Vec::new();
            while pending.len() > self.max_spooled {
                match pending.pop_first() {
                    Some(oldest) => out.push(oldest),
                    None => break,
                }
            }
            self.metrics.report_backlog.set(pending.len() as i64);
            out
        };
        for old in dropped {
            error!(
                report = old,
                max = self.max_spooled,
                "report spool full (report_spool_max): dropping the oldest undelivered report"
            );
            let _ = self.spool.remove(&old);
            self.metrics
                .reports_total
                .with_label_values(&["dropped"])
                .inc();
        }
    }

    /// Removes the earliest burials past `dead/`'s bounds, with a warning and the metric.
    fn prune_dead(&self) {
        let removed = match self.dead.lock() {
            Ok(mut dead) => dead.prune(std::time::SystemTime::now()),
            Err(_) => return,
        };
        for reason in PruneReason::ALL {
            let names: Vec<&str> = removed
                .iter()
                .filter(|(_, r)| *r == reason)
                .map(|(n, _)| n.as_str())
                .collect();
            let (Some(oldest), Some(newest)) = (names.first(), names.last()) else {
                continue;
            };
            warn!(
                reports = names.len(),
                oldest,
                newest,
                bound = reason.setting(),
                "dead/ over its bound: removed the earliest refused reports and their answers"
            );
            self.metrics
                .reports_dead_pruned
                .with_label_values(&[reason.as_str()])
                .inc_by(names.len() as u64);
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(name);
            self.metrics.report_backlog.set(pending.len() as i64);
        }
    }

    async fn send(&self, entry: &Entry) -> Try {
        let _permit = self.sends.acquire().await;
        let sig = signature(self.secret.0.as_bytes(), unix_now(), entry.body.as_bytes());
        let resp = self
            .http
            .post(&entry.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sig)
            .header("Idempotency-Key", &entry.report_id)
            .body(entry.body.clone())
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Try::Retry(super::twilio_rest::describe(&e)),
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Try::Delivered;
        }
        if resp.status().is_redirection() {
            // Never followed (the signed report would go to a host nobody configured). Kept
            // and retried like an outage, so a receiver fixed within report_retry_max_s still
            // gets it; each try's warning says what to fix.
            return Try::Retry(format!(
                "HTTP {status}: a redirect (to host {}), not followed; set report_url to the final URL",
                super::twilio_rest::redirect_host(&resp).as_deref().unwrap_or("-")
            ));
        }
        let answer = super::twilio_rest::read_limited(resp, 64 * 1024)
            .await
            .map(|b| {
                let mut s = String::from_utf8_lossy(&b).into_owned();
                if s.len() > MAX_KEPT_ANSWER {
                    let mut cut = MAX_KEPT_ANSWER;
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    s.truncate(cut);
                }
                s
            })
            .unwrap_or_default();
        if (400..500).contains(&status) && status != 408 && status != 429 {
            Try::Refused(status, answer)
        } else {
            Try::Retry(format!("HTTP {status}"))
        }
    }
}

/// Sends one spooled report until it is delivered, refused, expired or dropped.
async fn deliver(inner: Arc<Inner>, name: String) {
    let entry = match inner.spool.read(&name) {
        Ok(e) => e,
        Err(e) => {
            error!(report = name, error = %e, "unreadable report in the spool; moved to dead/");
            bury(
                &inner,
                &name,
                serde_json::json!({"error": format!("unreadable: {e}")}),
            );
            return;
        }
    };
    let mut attempt: u32 = 0;
    loop {
        if !inner.spool.exists(&name) {
            return; // dropped past the spool bound
        }
        match inner.try_once(&entry, attempt, "dead/").await {
            Next::Delivered => {
                if let Err(e) = inner.spool.remove(&name) {
                    warn!(report = name, error = %e, "delivered report could not be removed");
                }
                inner.forget(&name);
                return;
            }
            Next::Dead(why) => {
                bury(&inner, &name, why);
                return;
            }
            Next::RetryIn(wait) => {
                tokio::time::sleep(wait).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// What follows one try at delivering a report. The rules are one for the local spool and the
/// cluster's stream ([`Inner::try_once`]); only how each carries them out differs.
pub(super) enum Next {
    Delivered,
    /// To the dead letters, with why.
    Dead(serde_json::Value),
    /// Tried again after this long.
    RetryIn(Duration),
}

impl Inner {
    /// Sends `entry` (its `attempt`th try, from 0) and decides what follows: a 4xx is dead at
    /// once, a failure is retried with backoff and jitter until `report_retry_max_s` after the
    /// report was made, then dead. Logged and counted here; `dead_letters` names where dead
    /// reports go, for the log.
    pub(super) async fn try_once(&self, entry: &Entry, attempt: u32, dead_letters: &str) -> Next {
        let count = |what: &str| self.metrics.reports_total.with_label_values(&[what]).inc();
        match self.send(entry).await {
            Try::Delivered => {
                count("delivered");
                debug!(report_id = entry.report_id, attempt, "report delivered");
                Next::Delivered
            }
            Try::Refused(status, answer) => {
                error!(
                    report_id = entry.report_id,
                    status,
                    dead_letters,
                    "report refused by the receiver; moved to the dead letters"
                );
                count("dead");
                Next::Dead(serde_json::json!({"status": status, "answer": answer}))
            }
            Try::Retry(why) => {
                let deadline_ms = entry.created_unix_ms + self.retry_max.as_millis() as u64;
                let now_ms = now_unix_ms();
                if now_ms >= deadline_ms {
                    error!(
                        report_id = entry.report_id,
                        attempts = attempt + 1,
                        why,
                        dead_letters,
                        "report not delivered within report_retry_max_s; moved to the dead letters"
                    );
                    count("expired");
                    return Next::Dead(
                        serde_json::json!({"gave_up_after_attempts": attempt + 1, "last_error": why}),
                    );
                }
                count("retried");
                let wait = backoff(self.retry_min, attempt, jitter())
                    .min(Duration::from_millis(deadline_ms - now_ms));
                warn!(
                    report_id = entry.report_id,
                    attempt,
                    why,
                    retry_in_ms = wait.as_millis() as u64,
                    "report delivery failed; will retry"
                );
                Next::RetryIn(wait)
            }
        }
    }
}

fn bury(inner: &Inner, name: &str, why: serde_json::Value) {
    match inner.spool.bury(name, &why) {
        Ok(()) => {
            if let Ok(mut dead) = inner.dead.lock() {
                dead.buried(name, std::time::SystemTime::now());
            }
            inner.prune_dead();
        }
        Err(e) => error!(report = name, error = %e, "cannot move a report to dead/"),
    }
    inner.forget(name);
}

/// `min · 2^attempt`, capped, scaled by `jitter` in [0.5, 1] so that reports failing together
/// do not retry together.
fn backoff(min: Duration, attempt: u32, jitter: f64) -> Duration {
    let exp = min.saturating_mul(1u32 << attempt.min(20));
    exp.min(MAX_BACKOFF).mul_f64(jitter.clamp(0.5, 1.0))
}

fn jitter() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    let r = ring::rand::SystemRandom::new().fill(&mut b);
    let x = if r.is_ok() { u16::from_le_bytes(b) } else { 0 };
    0.5 + 0.5 * (x as f64 / u16::MAX as f64)
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let min = Duration::from_millis(100);
        assert_eq!(backoff(min, 0, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(min, 3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(min, 3, 0.5), Duration::from_millis(400));
        assert_eq!(backoff(min, 30, 1.0), MAX_BACKOFF);
        for _ in 0..100 {
            let j = jitter();
            assert!((0.5..=1.0).contains(&j));
        }
    }
}
