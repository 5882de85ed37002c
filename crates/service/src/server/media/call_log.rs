//! What a call's events do outside the call: log lines (anomalies rate-limited per call) and
//! the metrics they count.

use std::borrow::Cow;

use callbridge_core::redact::Redact;
use tracing::{debug, info, warn};

use crate::call::CallEvent;
use crate::server::AppState;

/// `ev` with the words in it redacted (`redact`), before anything stores or logs it: the
/// console, the report and the log lines all get the event from here. Transcripts, and the
/// details of anomalies and model errors (they may quote what was said); the rest holds no
/// words of the call. A text with nothing to redact is passed on as it is (no copy).
pub(super) fn redacted(redact: Redact, ev: CallEvent) -> CallEvent {
    if redact.is_empty() {
        return ev;
    }
    let arc = |t: std::sync::Arc<str>| match redact.apply(&t) {
        Cow::Borrowed(_) => t,
        Cow::Owned(r) => r.into(),
    };
    let owned = |t: String| match redact.apply(&t) {
        Cow::Borrowed(_) => t,
        Cow::Owned(r) => r,
    };
    match ev {
        CallEvent::CallerTranscript(t) => CallEvent::CallerTranscript(arc(t)),
        CallEvent::AgentTranscript(t) => CallEvent::AgentTranscript(arc(t)),
        CallEvent::Anomaly { kind, detail } => CallEvent::Anomaly {
            kind,
            detail: owned(detail),
        },
        CallEvent::UpstreamError {
            code,
            message,
            harmless,
        } => CallEvent::UpstreamError {
            code,
            message: message.map(owned),
            harmless,
        },
        other => other,
    }
}

/// Per-call count of handled anomalies by kind: a peer repeating one mistake 50 times a second
/// is logged at the 1st, 2nd, 4th, 8th, … occurrence (each line gives the count), not 50 lines a
/// second. The metric counts every one.
#[derive(Default)]
pub(super) struct AnomalyCounts(Vec<(&'static str, u64)>);

impl AnomalyCounts {
    fn bump(&mut self, kind: &'static str) -> u64 {
        if let Some(entry) = self.0.iter_mut().find(|(k, _)| *k == kind) {
            entry.1 += 1;
            return entry.1;
        }
        self.0.push((kind, 1));
        1
    }
}

pub(super) fn log_event(s: &AppState, anomalies: &mut AnomalyCounts, ev: CallEvent) {
    match ev {
        CallEvent::Started {
            stream_sid,
            call_sid,
            from,
        } => {
            let span = tracing::Span::current();
            span.record("stream_sid", stream_sid.as_str());
            if let Some(c) = &call_sid {
                span.record("call_sid", c.as_str());
            }
            info!(
                stream_sid,
                call_sid = call_sid.as_deref().unwrap_or("-"),
                from = from.as_deref().unwrap_or("-"),
                "call started"
            )
        }
        CallEvent::UpstreamReady { buffered_ms } => {
            info!(buffered_ms, "Realtime session configured")
        }
        CallEvent::SpeechStarted => debug!("caller speech started"),
        CallEvent::BargeIn {
            cleared,
            cancelled,
            truncated,
        } => {
            s.metrics.barge_ins.inc();
            // The first item is the one the caller was hearing; later ones were only queued.
            if let Some((_, heard_ms)) = truncated.first() {
                s.metrics
                    .latency
                    .truncate_heard
                    .observe(*heard_ms as f64 / 1000.0);
            }
            info!(cleared, cancelled, ?truncated, "barge-in");
        }
        CallEvent::BargeInPaused { onset_to_clear } => {
            s.metrics
                .bargein_onset_to_clear_seconds
                .observe(onset_to_clear.as_secs_f64());
            debug!(
                onset_to_clear_ms = onset_to_clear.as_millis() as u64,
                "caller speech over the agent: paused"
            );
        }
        CallEvent::BargeInDecided(decision) => {
            s.metrics
                .bargein_total
                .with_label_values(&[decision.as_str()])
                .inc();
            debug!(decision = decision.as_str(), "barge-in decided");
        }
        CallEvent::Usage { generation, usage } => {
            for (kind, n) in usage.by_kind().filter(|(_, n)| *n > 0) {
                s.metrics.model_tokens.with_label_values(&[kind]).inc_by(n);
            }
            debug!(generation, tokens = usage.total(), "response usage");
        }
        CallEvent::ResponseDone { id, status } => {
            debug!(
                id,
                status = status.as_deref().unwrap_or("-"),
                "response done"
            )
        }
        // Transcripts are the caller's words: kept out of logs above debug.
        CallEvent::CallerTranscript(t) => debug!(transcript = &*t, "caller said"),
        CallEvent::AgentTranscript(t) => debug!(transcript = &*t, "agent said"),
        CallEvent::Dtmf(d) => info!(digit = d, "dtmf"),
        CallEvent::Labels { profile, direction } => debug!(
            profile = profile.as_deref().unwrap_or("-"),
            direction = direction.as_deref().unwrap_or("-"),
            "stream labels"
        ),
        CallEvent::PlayoutDone => debug!("caller heard the whole answer"),
        CallEvent::UpstreamError {
            code,
            message,
            harmless,
        } => {
            let code_s = code.as_deref().unwrap_or("unknown");
            s.metrics.upstream_errors.with_label_values(&[code_s]).inc();
            if harmless {
                debug!(
                    code = code_s,
                    "expected upstream error (cancel raced the server)"
                );
            } else {
                warn!(
                    code = code_s,
                    message = message.as_deref().unwrap_or(""),
                    "Realtime error event"
                );
            }
        }
        CallEvent::ToolCall {
            tool,
            call_id,
            result,
            seconds,
        } => {
            s.metrics
                .tool_calls
                .with_label_values(&[tool.as_str(), result])
                .inc();
            if let Some(secs) = seconds {
                s.metrics
                    .tool_seconds
                    .with_label_values(&[tool.as_str()])
                    .observe(secs);
            }
            info!(
                tool,
                call_id,
                result,
                ms = seconds.map(|s| (s * 1000.0) as u64),
                "tool call"
            );
        }
        CallEvent::ToolSkipped {
            call_id,
            tool,
            response_status,
        } => info!(
            tool,
            call_id, response_status, "tool call of an unfinished response not run"
        ),
        CallEvent::EndRequested { reason } => info!(reason, "the agent ends the call"),
        CallEvent::CallUpdated {
            action,
            ok,
            seconds,
        } => info!(
            action,
            ok,
            ms = (seconds * 1000.0) as u64,
            "Twilio REST call update answered"
        ),
        CallEvent::Transferring { destination } => {
            info!(destination, "call handed over; the stream ends")
        }
        CallEvent::FillerPlayed => debug!("filler playing while a tool runs"),
        CallEvent::ToolStarted { tool, call_id } => debug!(tool, call_id, "tool running"),
        // Observed by the write timer, which knows when the frames went out.
        CallEvent::AgentAudio { .. } => {}
        CallEvent::UpstreamReconnecting {
            generation,
            reason,
            detail,
        } => {
            s.metrics
                .upstream_reconnects
                .with_label_values(&[reason])
                .inc();
            warn!(generation, reason, detail, "upstream lost; reconnecting");
        }
        CallEvent::UpstreamRestored {
            generation,
            previous,
            gap_ms,
            replayed_items,
            resent_ms,
        } => info!(
            generation,
            previous, gap_ms, replayed_items, resent_ms, "upstream session restored"
        ),
        CallEvent::SessionRotated { generation, forced } => {
            s.metrics.session_rotations.inc();
            info!(generation, forced, "Realtime session rotated");
        }
        CallEvent::Anomaly { kind, detail } => {
            s.metrics.anomalies.with_label_values(&[kind]).inc();
            let count = anomalies.bump(kind);
            if count.is_power_of_two() {
                warn!(kind, detail, count, "handled bad or unexpected input");
            }
        }
    }
}
