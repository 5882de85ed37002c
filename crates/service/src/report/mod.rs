//! Call reports: what an integrator receives at the end of every call, and the small event a
//! Twilio-side recording produces. Plain types and pure functions only — the spool and the
//! delivery live in `server::reports`. The JSON shape is pinned by `schemas/*.schema.json`
//! (tests validate real reports against them).

pub mod analysis;
pub mod builder;
pub mod redact;
pub mod time;
pub mod usage;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `type` of a call report.
pub const CALL_COMPLETED: &str = "call.completed";
/// `type` of a Twilio recording event.
pub const RECORDING_COMPLETED: &str = "recording.completed";

/// One report per call, whatever happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallReport {
    /// Always [`CALL_COMPLETED`]: lets a receiver tell reports from recording events.
    #[serde(rename = "type")]
    pub kind: String,
    /// Unique per report; also sent as `Idempotency-Key`, so a receiver that saw it stores
    /// nothing twice when a retry crosses its 2xx. Derived from the CallSid for a call that
    /// never connected (a replayed status callback is the same report), random otherwise.
    pub report_id: String,
    pub call_sid: Option<String>,
    pub stream_sid: Option<String>,
    pub account_sid: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub profile: Option<String>,
    pub variables: BTreeMap<String, String>,
    /// RFC 3339, UTC, milliseconds.
    pub started_at: String,
    pub ended_at: String,
    pub duration_s: f64,
    /// The same words as the `call ended` log line (`caller_hung_up`, `upstream_failed`,
    /// `no_answer`, `busy`, ...).
    pub outcome: String,
    pub transcript: Vec<TranscriptLine>,
    pub tool_calls: Vec<ToolCall>,
    pub transfer: Option<Transfer>,
    /// Keys the caller pressed, in order.
    pub dtmf: Vec<String>,
    pub barge_ins: u32,
    /// From the end of the caller's speech to the agent's first audio, per turn; `None` when
    /// no turn completed.
    pub turn_latency_ms: Option<TurnLatency>,
    pub recording: Vec<Recording>,
    /// Tokens the Realtime API reported, summed over the call's sessions ([`usage`]). Boxed:
    /// the report is held in the call's task all call long (`the_call_task_stays_small`).
    #[serde(default)]
    pub usage: Box<usage::Usage>,
    /// `usage` priced for the call's model; absent when the model has no price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// The profile's post-call analysis: the model's answer, valid against its schema
    /// ([`analysis`]); absent without one. Boxed, like `usage`: the call's task holds the
    /// report all call long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Box<serde_json::Value>>,
    /// Why the analysis is missing (timeout, HTTP error, an answer not matching the schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_error: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptLine {
    /// `caller` or `agent`.
    pub role: String,
    pub text: String,
    /// Since the media socket opened.
    pub at_ms: u64,
    /// The caller interrupted this agent line after this much of its audio was played.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub interrupted_after_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    pub arguments: serde_json::Value,
    pub output: serde_json::Value,
    pub ms: u64,
    pub ok: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub target: String,
    pub to: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TurnLatency {
    pub p50: u64,
    pub max: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    /// `file` (the bridge's own `record_dir`) or `twilio`.
    pub kind: String,
    pub location: String,
}

/// Twilio finished a recording of the call (`twilio_recording = "dual"`): sent as a follow-up
/// event through the same spool, to where the call's report went, naming that report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingEvent {
    #[serde(rename = "type")]
    pub kind: String,
    /// Derived from the RecordingSid: a replayed callback is the same event.
    pub report_id: String,
    pub call_sid: String,
    pub recording_sid: String,
    pub recording_url: String,
    pub duration_s: Option<u64>,
    /// The `report_id`s of the call's reports (one per media stream): the recording belongs
    /// to them. Empty when this replica did not run the call lately (a restart, another
    /// replica); `call_sid` still names the call.
    pub call_report_ids: Vec<String>,
}

/// A fresh report id (`rpt_` + 32 hex digits from the system's CSPRNG), for a report about
/// something only the bridge saw (a media stream's conversation).
pub fn new_report_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    // The system RNG does not fail on the platforms we build for; should it, a time-based id
    // is still unique enough for idempotency within one bridge.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    report_id_of(&bytes)
}

/// The id of the report of a call that never connected, from Twilio's status callback: one
/// per CallSid, so a replayed (or retried) callback is the same report, not a second one.
pub fn unconnected_report_id(call_sid: &str) -> String {
    derived_report_id(CALL_COMPLETED, call_sid)
}

/// The id of a `recording.completed` event: one per RecordingSid, for the same reason.
pub fn recording_report_id(recording_sid: &str) -> String {
    derived_report_id(RECORDING_COMPLETED, recording_sid)
}

/// `rpt_` + the first 128 bits of SHA-256 over a domain-separated `kind` and `subject`: the
/// prefix keeps these ids apart from any other hash of a SID, and the NUL after `kind` (a
/// constant without one) keeps (`kind`, `subject`) pairs apart from each other.
fn derived_report_id(kind: &str, subject: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"callbridge report_id v1\0");
    ctx.update(kind.as_bytes());
    ctx.update(b"\0");
    ctx.update(subject.as_bytes());
    let digest = ctx.finish();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    report_id_of(&bytes)
}

fn report_id_of(bytes: &[u8; 16]) -> String {
    let mut id = String::with_capacity(36);
    id.push_str("rpt_");
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// The outcome word for a Twilio `CallStatus` of a call that never reached the bridge.
pub fn outcome_for_status(status: &str) -> Option<&'static str> {
    match status {
        "no-answer" => Some("no_answer"),
        "busy" => Some("busy"),
        "failed" => Some("failed"),
        "canceled" => Some("canceled"),
        _ => None,
    }
}

/// p50 and max of a set of latencies.
pub fn turn_latency(samples: &[u64]) -> Option<TurnLatency> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    Some(TurnLatency {
        p50: s[(s.len() - 1) / 2],
        max: s[s.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_shaped() {
        let a = new_report_id();
        let b = new_report_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert!(a.starts_with("rpt_"));
    }

    #[test]
    fn derived_ids_are_stable_shaped_and_domain_separated() {
        let a = unconnected_report_id("CA0123");
        assert_eq!(
            a,
            unconnected_report_id("CA0123"),
            "a replay has the same id"
        );
        // Pinned (SHA-256 of "callbridge report_id v1\0call.completed\0CA0123", by Python's
        // hashlib): a changed derivation would send a report again under a new key after an
        // upgrade, and the receiver could not tell it was the same.
        assert_eq!(a, "rpt_1e47dc3f2351efbfac6972b13ef1f5bc");
        assert_eq!(
            recording_report_id("RE1"),
            "rpt_cf8e25bb905313cf27378844f0026c1f"
        );
        assert_ne!(a, unconnected_report_id("CA0124"));
        assert_ne!(
            recording_report_id("CA0123"),
            a,
            "the same SID in another kind is another report"
        );
        assert_ne!(a, new_report_id(), "random ids are not derived");
    }

    #[test]
    fn latency_summary() {
        assert_eq!(turn_latency(&[]), None);
        assert_eq!(
            turn_latency(&[900, 300, 500]),
            Some(TurnLatency { p50: 500, max: 900 })
        );
        assert_eq!(
            turn_latency(&[400, 200]),
            Some(TurnLatency { p50: 200, max: 400 })
        );
    }

    #[test]
    fn status_words() {
        assert_eq!(outcome_for_status("no-answer"), Some("no_answer"));
        assert_eq!(outcome_for_status("busy"), Some("busy"));
        assert_eq!(outcome_for_status("completed"), None);
    }
}
