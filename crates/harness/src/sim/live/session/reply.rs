//! The model's side: replies spoken as μ-law deltas paced in real time (the Realtime
//! simulator's voice, `sim/voice.rs`) with output transcript deltas timed on the session
//! timeline; commentary spoken; fixtures played; scripted tool calls delegated to "Responses"
//! (`session.delegation.created`, then `response.event` wrapping `response.output_item.done`),
//! answered by `response.item.create` outputs and one `response.create` per batch.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{text, Session};
use crate::sim::voice::{AudioFormat, VoiceCache};

/// Fixture audio is PCM16 LE 24 kHz, at most 30 s (`output_audio_fixture_play_event.py`).
const MAX_FIXTURE_MS: usize = 30_000;

pub(super) struct Reply {
    audio: Arc<Vec<u8>>,
    /// Bytes of `audio` this reply speaks (the shared voice buffer may be longer).
    len: usize,
    sent: usize,
    text: String,
    text_sent: usize,
    start: Instant,
    /// Where the reply starts on the session timeline (ms).
    start_ms: u64,
    pub(super) fixture: bool,
    calls: Vec<(String, String)>,
}

impl Reply {
    /// When the next delta is due: `pace` times real time from the reply's start.
    pub(super) fn next_due(&self, pace: f32) -> Instant {
        let sent_ms = self.sent as f64 / 8.0;
        let pace = if pace.is_finite() && pace > 0.0 {
            pace as f64
        } else {
            1.0
        };
        self.start + Duration::from_secs_f64(sent_ms / 1000.0 / pace)
    }
}

fn voice(cache: &VoiceCache, ms: u32) -> Arc<Vec<u8>> {
    cache.get(AudioFormat::Pcmu, ms)
}

impl Session {
    /// Starts reply `reply_idx` (or speaks `said`, commentary) at `at_ms` on the timeline.
    pub(super) fn start_reply(&mut self, said: Option<String>, at_ms: u64) {
        let cfg = &self.shared.cfg;
        let (text, calls) = match said {
            Some(t) => (t, Vec::new()),
            None => {
                let i = self.reply_idx;
                self.reply_idx += 1;
                let texts = &cfg.reply_texts;
                let text = texts
                    .get(i % texts.len().max(1))
                    .cloned()
                    .unwrap_or_default();
                let calls = match self.delegates_to_responses() {
                    true => cfg.reply_tool_calls.get(i).cloned().unwrap_or_default(),
                    false => Vec::new(),
                };
                (text, calls)
            }
        };
        let ms = match cfg.reply_audio_ms {
            0 => (text.chars().count() as u32 * 65).max(500),
            ms => ms,
        };
        let audio = voice(&self.shared.voice, ms);
        self.log.replies += 1;
        self.reply = Some(Reply {
            len: (ms as usize * 8).min(audio.len()),
            audio,
            sent: 0,
            text,
            text_sent: 0,
            start: Instant::now(),
            start_ms: at_ms,
            fixture: false,
            calls,
        });
    }

    /// Sends every delta that is due; finishes the reply when its audio is out.
    pub(super) fn speak_due(&mut self, now: Instant) {
        let pace = self.shared.cfg.pace;
        let chunk = (self.shared.cfg.delta_ms.max(1) as usize) * 8;
        while let Some(r) = self.reply.as_mut().filter(|r| r.next_due(pace) <= now) {
            let from = r.sent;
            let to = (from + chunk).min(r.len);
            let delta = B64.encode(&r.audio[from..to]);
            r.sent = to;
            // The words spoken by now, in proportion to the audio.
            let mut upto = r.text.len() * to / r.len.max(1);
            while !r.text.is_char_boundary(upto) {
                upto -= 1;
            }
            let words = r.text[r.text_sent..upto].to_string();
            r.text_sent = upto;
            let (start_ms, end_ms) = (r.start_ms + from as u64 / 8, r.start_ms + to as u64 / 8);
            let (done, fixture) = (to >= r.len, r.fixture);
            // The words of a chunk go just before its audio.
            if !words.is_empty() && !fixture {
                self.send(
                    json!({"type": "session.output_transcript.delta", "delta": words,
                    "start_ms": start_ms, "end_ms": end_ms}),
                );
            }
            self.log.sent_audio_bytes += to - from;
            self.out.push(super::Out::Event(
                json!({"type": "session.output_audio.delta", "delta": delta}),
            ));
            self.log
                .sent
                .push(json!({"type": "session.output_audio.delta", "audio_bytes": to - from}));
            if done {
                let r = self.reply.take();
                if fixture {
                    self.send(json!({"type": "session.output_audio.fixture.played"}));
                } else if let Some(r) = r.filter(|r| !r.calls.is_empty()) {
                    self.delegate(r.calls, end_ms);
                }
            }
        }
    }

    /// The model hands the scripted calls to the Responses backend.
    fn delegate(&mut self, calls: Vec<(String, String)>, at_ms: u64) {
        let n = self.reply_idx;
        let id = format!("del_{n}");
        self.send(
            json!({"type": "session.delegation.created", "offset_ms": at_ms,
            "delegation": {"id": id, "target": "responses", "type": "delegation",
                "response_id": format!("resp_{n}")}}),
        );
        for (i, (name, arguments)) in calls.into_iter().enumerate() {
            let call_id = format!("call_{n}_{i}");
            self.pending_calls.push(call_id.clone());
            self.send(
                json!({"type": "response.event", "delegation_id": id, "event": {
                "type": "response.output_item.done", "output_index": i, "sequence_number": i + 1,
                "item": {"type": "function_call", "id": format!("fc_{n}_{i}"), "call_id": call_id,
                    "name": name, "arguments": arguments, "status": "completed"}}}),
            );
        }
    }

    pub(super) fn on_item(&mut self, v: &Value, eid: &Value) {
        if !self.delegates_to_responses() {
            let msg = "response.item.create requires Responses delegation.";
            return self.error("invalid_request", msg, Some("type"), eid);
        }
        let item = v.get("item").cloned().unwrap_or(Value::Null);
        let output = text(&item, "output");
        let call_id = text(&item, "call_id").unwrap_or_default().to_string();
        if text(&item, "type") != Some("function_call_output") || output.is_none() {
            let msg = "Expected a function_call_output item with call_id and output.";
            return self.error("invalid_value", msg, Some("item"), eid);
        }
        if !self.pending_calls.contains(&call_id) {
            let msg = format!("No pending function call '{call_id}'.");
            return self.error("invalid_value", &msg, Some("item.call_id"), eid);
        }
        let output = output.unwrap_or_default().to_string();
        self.log.tool_outputs.push((call_id.clone(), output));
        self.answered_calls.push(call_id);
    }

    pub(super) fn on_response_create(&mut self, eid: &Value) {
        let missing = self
            .pending_calls
            .iter()
            .any(|c| !self.answered_calls.contains(c));
        if missing {
            // The service refuses a partial batch (shared/protocol.md); the code is the
            // simulator's own, not a documented one.
            let msg = "Send every function_call_output of the batch before response.create.";
            return self.error("incomplete_tool_outputs", msg, None, eid);
        }
        self.pending_calls.clear();
        self.answered_calls.clear();
        let at = self.input_ms();
        self.start_reply(None, at);
    }

    pub(super) fn on_commentary(&mut self, v: &Value, eid: &Value) {
        let Some(content) = text(v, "content").map(str::to_string) else {
            return self.error(
                "invalid_value",
                "content is required.",
                Some("content"),
                eid,
            );
        };
        // "Required, nullable"; non-null ids are refused with Responses delegation
        // (`commentary_append_event.py`).
        let delegation_id = v.get("delegation_id");
        if delegation_id.is_none() {
            let msg = "Missing 'delegation_id' (send null for general context).";
            return self.error(
                "missing_required_parameter",
                msg,
                Some("delegation_id"),
                eid,
            );
        }
        if self.delegates_to_responses() && delegation_id.is_some_and(|d| !d.is_null()) {
            let msg = "delegation_id must be null with Responses delegation.";
            return self.error("invalid_value", msg, Some("delegation_id"), eid);
        }
        if self.reply.as_ref().is_some_and(|r| r.fixture) {
            let msg = "Commentary is rejected while an audio fixture plays.";
            return self.error("fixture_active", msg, None, eid);
        }
        let at = self.input_ms();
        self.send(json!({"type": "session.commentary.appended", "start_ms": at, "end_ms": at}));
        if self.reply.is_none() {
            self.start_reply(Some(content), at);
        }
    }

    pub(super) fn on_fixture(&mut self, v: &Value, eid: &Value) {
        let pcm = text(v, "audio").and_then(|a| B64.decode(a).ok());
        let Some(pcm) = pcm.filter(|p| p.len() % 2 == 0 && p.len() <= MAX_FIXTURE_MS * 48) else {
            let msg = "audio must be base64 PCM16 24 kHz, at most 30 s.";
            return self.error("invalid_value", msg, Some("audio"), eid);
        };
        // To the session's μ-law 8 kHz: every third sample (a test tone, not a resampler).
        let ulaw: Vec<u8> = pcm
            .chunks_exact(6)
            .map(|c| audio_codec_algorithms::encode_ulaw(i16::from_le_bytes([c[0], c[1]])))
            .collect();
        if self.reply.take().is_some() {
            self.log.replies_interrupted += 1;
        }
        self.send(json!({"type": "session.output_audio.fixture.playing"}));
        self.reply = Some(Reply {
            len: ulaw.len(),
            audio: Arc::new(ulaw),
            sent: 0,
            text: String::new(),
            text_sent: 0,
            start: Instant::now(),
            start_ms: self.input_ms(),
            fixture: true,
            calls: Vec::new(),
        });
    }
}
