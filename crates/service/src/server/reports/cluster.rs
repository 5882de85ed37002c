//! Reports that survive their replica: with a cluster, a finished report is stored in the
//! JetStream stream `CALLBRIDGE_REPORTS` (file storage, `cluster_replicas` copies) before the
//! call lets it go, and one durable work-queue consumer shared by every replica delivers it
//! with the same rules as the spool (signature, one Idempotency-Key, backoff with jitter until
//! `report_retry_max_s`, 4xx → the dead-letter stream with the answer). When NATS cannot take
//! a report the local spool does, as without a cluster, and it is moved into the stream once
//! NATS is back. At least once end to end: a report moved while it was being sent from the
//! spool may reach the receiver twice, with the same Idempotency-Key.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{AckKind, Message};
use futures_util::StreamExt;
use tracing::{debug, error, info, warn};

use super::spool::Entry;
use super::{backoff, jitter, now_unix_ms, Inner, Try};
use crate::cluster::{
    bounded, Cluster, ClusterError, DEAD_SUBJECT, REPORTS_CONSUMER, REPORTS_SUBJECT,
};

/// Reports one replica takes from the stream at a time.
const BATCH: usize = 16;
/// A pull waits this long for reports before asking again.
const PULL_WAIT: Duration = Duration::from_secs(5);

/// Stores `entry` in the stream; Ok once JetStream acknowledged it. Its report id is the
/// message id: stored twice within the stream's duplicate window, it is kept once.
pub(super) async fn store(c: &Cluster, entry: &Entry) -> Result<(), ClusterError> {
    c.shared()?;
    let body = serde_json::to_vec(entry).map_err(|e| ClusterError::Nats(e.to_string()))?;
    let ack = bounded(
        c.js.send_publish(
            REPORTS_SUBJECT,
            PublishMessage::build()
                .payload(body.into())
                .message_id(&entry.report_id),
        ),
    )
    .await?;
    bounded(std::future::IntoFuture::into_future(ack)).await?;
    Ok(())
}

/// Starts this replica's share of the cluster's report work: pulling from the stream, moving
/// spooled reports into it, and the stream's metrics.
pub(super) fn start(inner: Arc<Inner>, c: Arc<Cluster>) {
    tokio::spawn(consume(inner.clone(), c.clone()));
    tokio::spawn(move_spooled(inner, c.clone()));
    tokio::spawn(stream_metrics(c));
}

async fn consume(inner: Arc<Inner>, c: Arc<Cluster>) {
    // Kept between pulls; looked up again after a failed pull (the server may have lost it).
    let mut held: Option<async_nats::jetstream::consumer::Consumer<pull::Config>> = None;
    while !c.is_leaving() {
        let shared = match c.shared() {
            Ok(s) => s,
            Err(_) => {
                c.pause(Duration::from_millis(500)).await;
                continue;
            }
        };
        let consumer = match held.take() {
            Some(consumer) => Ok(consumer),
            None => {
                bounded(shared.reports.get_or_create_consumer(
                    REPORTS_CONSUMER,
                    pull::Config {
                        durable_name: Some(REPORTS_CONSUMER.into()),
                        description: Some("callbridge replicas delivering call reports".into()),
                        ack_policy: AckPolicy::Explicit,
                        ack_wait: c.cfg.report_ack_wait,
                        max_ack_pending: 1024,
                        ..Default::default()
                    },
                ))
                .await
            }
        };
        let consumer = match consumer {
            Ok(consumer) => consumer,
            Err(e) => {
                warn!(error = %e, "cluster: report consumer not available; retrying");
                c.pause(Duration::from_secs(1)).await;
                continue;
            }
        };
        let batch = bounded(
            consumer
                .batch()
                .max_messages(BATCH)
                .expires(PULL_WAIT)
                .messages(),
        )
        .await;
        let mut batch = match batch {
            Ok(b) => {
                held = Some(consumer);
                b
            }
            Err(e) => {
                debug!(error = %e, "cluster: report pull failed; retrying");
                c.pause(Duration::from_millis(500)).await;
                continue;
            }
        };
        // The pull ends by itself after PULL_WAIT; the margin covers a server that hangs.
        let end = tokio::time::Instant::now() + PULL_WAIT + Duration::from_secs(2);
        while let Ok(Some(next)) = tokio::time::timeout_at(end, batch.next()).await {
            if c.is_leaving() {
                // Not acknowledged: offered to another replica after the ack wait.
                return;
            }
            match next {
                Ok(msg) => {
                    tokio::spawn(deliver(inner.clone(), c.clone(), msg));
                }
                Err(e) => {
                    debug!(error = %e, "cluster: report pull interrupted");
                    break;
                }
            }
        }
    }
}

/// One try at one report taken from the stream; what follows is told to JetStream (ack,
/// delayed nak for a retry), so any replica makes the next try.
async fn deliver(inner: Arc<Inner>, c: Arc<Cluster>, msg: Message) {
    let attempt = msg.info().map_or(0, |i| {
        u32::try_from(i.delivered.saturating_sub(1)).unwrap_or(0)
    });
    let entry: Entry = match serde_json::from_slice(&msg.payload) {
        Ok(e) => e,
        Err(e) => {
            error!(error = %e, "cluster: unreadable report in the stream; moved to the dead letters");
            let raw = String::from_utf8_lossy(&msg.payload).into_owned();
            let why = serde_json::json!({"error": format!("unreadable: {e}"), "raw": raw});
            finish(&c, &msg, "unreadable", why, None).await;
            return;
        }
    };
    let deadline_ms = entry.created_unix_ms + inner.retry_max.as_millis() as u64;
    match inner.send(&entry).await {
        Try::Delivered => {
            if let Err(e) = bounded(msg.double_ack()).await {
                // Redelivered after cluster_report_ack_wait_ms: the receiver dedupes.
                warn!(report_id = entry.report_id, error = %e, "cluster: delivered report not acknowledged to NATS");
            }
            count(&inner, "delivered");
            debug!(
                report_id = entry.report_id,
                attempt, "report delivered (cluster)"
            );
        }
        Try::Refused(status, answer) => {
            error!(
                report_id = entry.report_id,
                status, "report refused by the receiver; moved to the dead letters"
            );
            let why = serde_json::json!({"status": status, "answer": answer});
            finish(&c, &msg, &entry.report_id, why, Some(&entry)).await;
            count(&inner, "dead");
        }
        Try::Retry(why) => {
            let now_ms = now_unix_ms();
            if now_ms >= deadline_ms {
                error!(
                    report_id = entry.report_id,
                    attempts = attempt + 1,
                    why,
                    "report not delivered within report_retry_max_s; moved to the dead letters"
                );
                let why =
                    serde_json::json!({"gave_up_after_attempts": attempt + 1, "last_error": why});
                finish(&c, &msg, &entry.report_id, why, Some(&entry)).await;
                count(&inner, "expired");
                return;
            }
            count(&inner, "retried");
            let wait = backoff(inner.retry_min, attempt, jitter())
                .min(Duration::from_millis(deadline_ms - now_ms));
            warn!(
                report_id = entry.report_id,
                attempt,
                why,
                retry_in_ms = wait.as_millis() as u64,
                "report delivery failed; will retry (any replica)"
            );
            if let Err(e) = bounded(msg.ack_with(AckKind::Nak(Some(wait)))).await {
                debug!(error = %e, "cluster: retry not told to NATS; redelivered after the ack wait");
            }
        }
    }
}

/// Moves a report to the dead-letter stream with why, then acknowledges it; if the dead
/// letter cannot be stored, the report stays in the stream (retried later), never lost.
async fn finish(
    c: &Cluster,
    msg: &Message,
    report_id: &str,
    why: serde_json::Value,
    entry: Option<&Entry>,
) {
    let doc = serde_json::json!({"report": entry, "why": why, "pod": c.cfg.pod});
    let stored = match serde_json::to_vec(&doc) {
        Ok(body) => match bounded(
            c.js.send_publish(
                DEAD_SUBJECT,
                PublishMessage::build()
                    .payload(body.into())
                    .message_id(report_id),
            ),
        )
        .await
        {
            Ok(ack) => bounded(std::future::IntoFuture::into_future(ack))
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        },
        Err(e) => Err(ClusterError::Nats(e.to_string())),
    };
    let ack = match stored {
        Ok(()) => AckKind::Ack,
        Err(e) => {
            error!(report_id, error = %e, "cluster: dead letter not stored; the report stays in the stream");
            AckKind::Nak(Some(Duration::from_secs(30)))
        }
    };
    if let Err(e) = bounded(msg.ack_with(ack)).await {
        debug!(report_id, error = %e, "cluster: acknowledgement not sent");
    }
}

fn count(inner: &Inner, what: &str) {
    inner.metrics.reports_total.with_label_values(&[what]).inc();
}

/// Reports the spool took while NATS was unreachable go into the stream once it is back;
/// each is removed from the spool only after JetStream acknowledged it.
async fn move_spooled(inner: Arc<Inner>, c: Arc<Cluster>) {
    loop {
        if c.pause(Duration::from_millis(500)).await {
            return;
        }
        if c.shared().is_err() {
            continue;
        }
        let names: Vec<String> = match inner.pending.lock() {
            Ok(p) => p.iter().cloned().collect(),
            Err(_) => continue,
        };
        for name in names {
            let Ok(entry) = inner.spool.read(&name) else {
                continue; // delivered or dropped meanwhile
            };
            if let Err(e) = store(&c, &entry).await {
                warn!(error = %e, "cluster: spooled reports not moved to the stream yet");
                break;
            }
            if let Err(e) = inner.spool.remove(&name) {
                warn!(report = name, error = %e, "cluster: moved report left in the spool");
            }
            inner.forget(&name);
            info!(
                report_id = entry.report_id,
                "cluster: spooled report moved to the stream"
            );
        }
    }
}

/// Reports waiting in the stream (every replica's), the oldest one's age, and the dead
/// letters, for the metrics page and its alerts.
async fn stream_metrics(c: Arc<Cluster>) {
    loop {
        if let Ok(shared) = c.shared() {
            if let Ok(info) = bounded(shared.reports.get_info()).await {
                let st = info.state;
                c.metrics.reports_waiting.set(st.messages as i64);
                let oldest = if st.messages == 0 {
                    0
                } else {
                    let now = now_unix_ms() as i64 / 1000;
                    (now - st.first_timestamp.unix_timestamp()).max(0)
                };
                c.metrics.reports_oldest_seconds.set(oldest);
            }
            if let Ok(info) = bounded(shared.dead.get_info()).await {
                c.metrics.reports_dead.set(info.state.messages as i64);
            }
        }
        if c.pause(Duration::from_secs(5)).await {
            return;
        }
    }
}
