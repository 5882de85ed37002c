//! The caller's side: μ-law appended continuously, heard by the energy VAD the Realtime
//! simulator uses (`sim/vad.rs`). Speech over the model's reply stops the reply (the Live model
//! decides that itself: the protocol has no cancel or truncate); the end of speech brings the
//! caller's transcript, timed on the session timeline, and a reply.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::Session;
use crate::sim::vad::VadEdge;

impl Session {
    /// Input position in ms (8 kHz μ-law: 8 samples a ms).
    pub(super) fn input_ms(&self) -> u64 {
        self.in_samples / 8
    }

    pub(super) fn on_append(&mut self, v: &Value, eid: &Value) {
        let decoded = v
            .get("audio")
            .and_then(Value::as_str)
            .and_then(|a| B64.decode(a).ok());
        let Some(audio) = decoded else {
            let msg = "audio is not base64.";
            return self.error("invalid_value", msg, Some("audio"), eid);
        };
        self.log.appended_audio_bytes += audio.len();
        // Input arriving while a fixture plays is dropped and not replayed
        // (`output_audio_fixture_play_event.py`).
        let fixture = self.reply.as_ref().is_some_and(|r| r.fixture);
        let silence_ms = self.shared.cfg.vad_silence_ms;
        let mut edges = Vec::new();
        for b in audio {
            self.in_samples += 1;
            if fixture {
                continue;
            }
            let pos = self.in_samples;
            let s = audio_codec_algorithms::decode_ulaw(b);
            if let Some(e) = self.vad.push(s, || pos / 8, silence_ms) {
                edges.push(e);
            }
        }
        for e in edges {
            match e {
                VadEdge::Started { window_start_ms } => self.caller_started(window_start_ms),
                VadEdge::Stopped { end_ms } => self.caller_stopped(end_ms),
            }
        }
    }

    fn caller_started(&mut self, at_ms: u64) {
        self.speech_start_ms = Some(at_ms);
        if self.reply.as_ref().is_some_and(|r| !r.fixture) {
            // The model stops talking by itself; what it said so far stays said.
            self.reply = None;
            self.log.replies_interrupted += 1;
        }
    }

    fn caller_stopped(&mut self, end_ms: u64) {
        let start_ms = self.speech_start_ms.take().unwrap_or(end_ms);
        let said = self
            .shared
            .cfg
            .caller_transcripts
            .get(self.caller_turns)
            .cloned()
            .unwrap_or_else(|| format!("caller spoke for {} ms", end_ms - start_ms));
        self.caller_turns += 1;
        self.send(
            json!({"type": "session.input_transcript.delta", "delta": said,
            "start_ms": start_ms, "end_ms": end_ms}),
        );
        if self.pending_calls.is_empty() && self.reply.is_none() {
            self.start_reply(None, end_ms);
        }
    }
}
