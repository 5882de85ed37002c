//! One simulated Realtime session: the handshake, then a loop over client frames and timers.
//!
//! The protocol logic ([`Session`]) is synchronous and only fills an outbox; the loop in
//! [`run`] sends the outbox, publishes the log (one lock per loop turn) and waits for the next
//! frame or deadline.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::vad::{Vad, VadEdge};
use super::validate::{self, ApiError};
use super::voice::{self, AudioFormat};
use super::{
    lock, next_session_id, ClosedBy, Fault, SessionLog, SessionProbe, Shared, SimDialect, Truncate,
};

mod connection;
mod respond;
pub(crate) use connection::run;
use connection::{Out, MAX_DURATION_REASON};

#[derive(Debug, Clone, Copy)]
struct TurnDetection {
    prefix_ms: u64,
    silence_ms: u64,
    create_response: bool,
    interrupt_response: bool,
}

struct Item {
    id: String,
    assistant: bool,
    /// The `call_id` of a `function_call` item.
    call_id: Option<String>,
    /// Audio length that counts for truncation (ms of output audio sent, or truncated to).
    audio_ms: u64,
}

struct Resp {
    id: String,
    item_id: String,
    text: String,
    text_sent: usize,
    text_only: bool,
    in_conversation: bool,
    format: AudioFormat,
    voice: String,
    audio: Option<Arc<Vec<u8>>>,
    total_bytes: usize,
    sent_bytes: usize,
    delta_idx: usize,
    start: Instant,
    /// `Some(drop)` when a Close/DropAfterResponses fault fires halfway through.
    fault_close: Option<bool>,
    /// Scripted function calls `(name, arguments)` that end the response.
    calls: Vec<(String, String)>,
}

struct Session {
    shared: Arc<Shared>,
    beta: bool,
    id: String,
    config: Value,
    in_fmt: AudioFormat,
    out_fmt: AudioFormat,
    text_only: bool,
    transcribe: bool,
    td: Option<TurnDetection>,
    audio_sent_ever: bool,
    seq: u64,
    // Input audio position: ms before the last format change + samples since.
    in_base_ms: u64,
    in_samples: u64,
    buffer_start_ms: u64,
    carry: Option<u8>,
    vad: Vad,
    /// Item id and window start (ms) of the speech in progress.
    speech: Option<(String, u64)>,
    edges: Vec<VadEdge>,
    scratch: Vec<u8>,
    items: Vec<Item>,
    resp: Option<Resp>,
    responses_finished: u32,
    reply_idx: usize,
    /// Committed user turns so far (picks the scripted caller transcript).
    caller_turns: usize,
    error_fault_fired: bool,
    expires: Option<Instant>,
    // Pending log material, published by `publish`.
    out: Vec<Out>,
    received: Vec<Value>,
    sent: Vec<Value>,
    truncates: Vec<Truncate>,
    appended_bytes: usize,
    sent_audio_bytes: usize,
    completed: u32,
    cancelled: u32,
    errors: u32,
    session_changed: bool,
    // Load-tool probe: when the frame being handled was read, responses that carried audio.
    probe: Option<Box<dyn SessionProbe>>,
    recv_at: std::time::Instant,
    audio_responses: u32,
}

fn get_str<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// Deep merge for session updates; formats, turn detection and similar unions are replaced.
fn merge(base: &mut Value, upd: &Value) {
    let (Some(b), Some(u)) = (base.as_object_mut(), upd.as_object()) else {
        *base = upd.clone();
        return;
    };
    for (k, v) in u {
        let replace = matches!(
            k.as_str(),
            "format"
                | "turn_detection"
                | "transcription"
                | "noise_reduction"
                | "tool_choice"
                | "prompt"
                | "tracing"
        );
        match b.get_mut(k) {
            Some(bv) if !replace && bv.is_object() && v.is_object() => merge(bv, v),
            _ => {
                b.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Fills server defaults into a turn_detection object, as the real server reports it.
fn normalize_td(td: &mut Value) {
    let Some(o) = td.as_object_mut() else { return };
    let semantic = o.get("type").and_then(Value::as_str) == Some("semantic_vad");
    let mut put = |k: &str, v: Value| {
        o.entry(k.to_string()).or_insert(v);
    };
    if semantic {
        put("eagerness", json!("auto"));
    } else {
        put("threshold", json!(0.5));
        put("prefix_padding_ms", json!(300));
        put("silence_duration_ms", json!(500));
        put("idle_timeout_ms", Value::Null);
    }
    put("create_response", json!(true));
    put("interrupt_response", json!(true));
}

fn parse_td(v: Option<&Value>) -> Option<TurnDetection> {
    let v = v?;
    let o = v.as_object()?;
    let semantic = o.get("type").and_then(Value::as_str) == Some("semantic_vad");
    let num = |k: &str, d: u64| o.get(k).and_then(Value::as_u64).unwrap_or(d);
    let flag = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(true);
    let silence_ms = if semantic {
        match o.get("eagerness").and_then(Value::as_str) {
            Some("high") => 250,
            Some("low") => 1500,
            _ => 500,
        }
    } else {
        num("silence_duration_ms", 500)
    };
    Some(TurnDetection {
        prefix_ms: if semantic {
            300
        } else {
            num("prefix_padding_ms", 300)
        },
        silence_ms: silence_ms.max(20),
        create_response: flag("create_response"),
        interrupt_response: flag("interrupt_response"),
    })
}

fn ga_format_json(f: AudioFormat) -> Value {
    match f {
        AudioFormat::Pcm16 => json!({"type": "audio/pcm", "rate": 24000}),
        AudioFormat::Pcmu => json!({"type": "audio/pcmu"}),
        AudioFormat::Pcma => json!({"type": "audio/pcma"}),
    }
}

fn beta_format_name(f: AudioFormat) -> &'static str {
    match f {
        AudioFormat::Pcm16 => "pcm16",
        AudioFormat::Pcmu => "g711_ulaw",
        AudioFormat::Pcma => "g711_alaw",
    }
}

impl Session {
    fn new(shared: Arc<Shared>, beta: bool, id: String) -> Session {
        let td = json!({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": 500, "idle_timeout_ms": null, "create_response": true,
            "interrupt_response": true});
        let config = if beta {
            json!({"id": id, "object": "realtime.session", "model": super::DEFAULT_MODEL,
                "modalities": ["text", "audio"], "instructions": "", "voice": "alloy",
                "input_audio_format": "pcm16", "output_audio_format": "pcm16",
                "input_audio_transcription": null, "input_audio_noise_reduction": null,
                "turn_detection": td, "tools": [], "tool_choice": "auto", "temperature": 0.8,
                "max_response_output_tokens": "inf", "speed": 1.0, "tracing": null})
        } else {
            json!({"type": "realtime", "object": "realtime.session", "id": id,
                "model": super::DEFAULT_MODEL, "output_modalities": ["audio"], "instructions": "",
                "tools": [], "tool_choice": "auto", "max_output_tokens": "inf", "tracing": null,
                "truncation": "auto", "prompt": null, "include": null,
                "audio": {"input": {"format": ga_format_json(AudioFormat::Pcm16), "transcription": null,
                                    "noise_reduction": null, "turn_detection": td},
                          "output": {"format": ga_format_json(AudioFormat::Pcm16), "voice": "marin", "speed": 1.0}}})
        };
        let expires = shared.cfg.faults.iter().find_map(|f| match f {
            Fault::MaxDuration(d) => Some(Instant::now() + *d),
            _ => None,
        });
        let vad = Vad::new(shared.cfg.vad_threshold, AudioFormat::Pcm16.rate());
        let mut s = Session {
            shared,
            beta,
            id,
            config,
            in_fmt: AudioFormat::Pcm16,
            out_fmt: AudioFormat::Pcm16,
            text_only: false,
            transcribe: false,
            td: None,
            audio_sent_ever: false,
            seq: 0,
            in_base_ms: 0,
            in_samples: 0,
            buffer_start_ms: 0,
            carry: None,
            vad,
            speech: None,
            edges: Vec::new(),
            scratch: Vec::new(),
            items: Vec::new(),
            resp: None,
            responses_finished: 0,
            reply_idx: 0,
            caller_turns: 0,
            error_fault_fired: false,
            expires,
            out: Vec::new(),
            received: Vec::new(),
            sent: Vec::new(),
            truncates: Vec::new(),
            appended_bytes: 0,
            sent_audio_bytes: 0,
            completed: 0,
            cancelled: 0,
            errors: 0,
            session_changed: true,
            probe: None,
            recv_at: std::time::Instant::now(),
            audio_responses: 0,
        };
        s.derive();
        s
    }

    /// Moves pending log material into the shared log (one lock).
    fn publish(&mut self, log: &Mutex<SessionLog>) {
        let mut l = lock(log);
        l.received.append(&mut self.received);
        l.sent.append(&mut self.sent);
        l.truncates.append(&mut self.truncates);
        l.appended_audio_bytes = self.appended_bytes;
        l.sent_audio_bytes = self.sent_audio_bytes;
        l.responses_completed = self.completed;
        l.responses_cancelled = self.cancelled;
        l.errors_sent = self.errors;
        if self.session_changed {
            l.session = self.config.clone();
            self.session_changed = false;
        }
    }

    fn new_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!(
            "{prefix}SIM{:06}{}",
            self.seq,
            &self.id[self.id.len().saturating_sub(6)..]
        )
    }

    fn send(&mut self, mut v: Value) {
        let eid = self.new_id("event_");
        if let Some(m) = v.as_object_mut() {
            m.insert("event_id".into(), Value::String(eid));
        }
        self.out.push(Out::Event(v));
    }

    fn error(&mut self, e: ApiError, client_event_id: Option<Value>) {
        self.errors += 1;
        tracing::trace!(session = %self.id, code = e.code, "sim error event");
        self.send(
            json!({"type": "error", "error": {"type": e.kind, "code": e.code, "message": e.message,
            "param": e.param, "event_id": client_event_id}}),
        );
    }

    /// Recomputes the typed view of `config`.
    fn derive(&mut self) {
        let c = &self.config;
        let (in_fmt, out_fmt, td, text_only, transcribe) = if self.beta {
            let f = |k: &str| {
                c.get(k)
                    .and_then(|v| validate::beta_format(v, k).ok())
                    .unwrap_or(AudioFormat::Pcm16)
            };
            (
                f("input_audio_format"),
                f("output_audio_format"),
                parse_td(c.get("turn_detection")),
                c.get("modalities") == Some(&json!(["text"])),
                c.get("input_audio_transcription")
                    .is_some_and(|v| !v.is_null()),
            )
        } else {
            let input = c.pointer("/audio/input");
            let f = |v: Option<&Value>| {
                v.and_then(|v| validate::ga_format(v, "").ok())
                    .unwrap_or(AudioFormat::Pcm16)
            };
            (
                f(c.pointer("/audio/input/format")),
                f(c.pointer("/audio/output/format")),
                parse_td(input.and_then(|i| i.get("turn_detection"))),
                c.get("output_modalities") == Some(&json!(["text"])),
                input
                    .and_then(|i| i.get("transcription"))
                    .is_some_and(|v| !v.is_null()),
            )
        };
        if in_fmt != self.in_fmt {
            self.in_base_ms = self.current_ms();
            self.in_samples = 0;
            self.carry = None;
            self.vad.set_rate(in_fmt.rate());
            self.in_fmt = in_fmt;
        }
        self.out_fmt = out_fmt;
        self.td = td;
        if td.is_none() {
            self.vad.reset();
        }
        self.text_only = text_only;
        self.transcribe = transcribe;
    }

    fn current_ms(&self) -> u64 {
        self.in_base_ms + self.in_samples * 1000 / self.in_fmt.rate() as u64
    }

    fn voice(&self) -> String {
        let v = if self.beta {
            self.config.get("voice")
        } else {
            self.config.pointer("/audio/output/voice")
        };
        v.and_then(Value::as_str).unwrap_or("marin").to_string()
    }

    fn on_connect(&mut self) {
        let session = self.config.clone();
        self.send(json!({"type": "session.created", "session": session}));
    }

    fn next_deadline(&self) -> Option<Instant> {
        let r = self.resp.as_ref().map(|r| {
            let pace = self.shared.cfg.pace;
            let paced = pace.is_finite() && pace > 0.0;
            if r.text_only || !paced {
                r.start
            } else {
                let sent_ms = (r.sent_bytes / r.format.bytes_per_ms()) as f64;
                r.start + Duration::from_secs_f64(sent_ms / 1000.0 / pace as f64)
            }
        });
        match (r, self.expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timer(&mut self, now: Instant) {
        if self.expires.is_some_and(|e| e <= now) {
            self.expires = None;
            self.out.push(Out::Close(
                CloseCode::Away,
                MAX_DURATION_REASON,
                ClosedBy::Fault("max_duration".into()),
            ));
            return;
        }
        if self.resp.as_ref().is_some_and(|r| r.start <= now) {
            self.step_response();
        }
    }

    // ---- client events ----

    fn on_text(&mut self, text: &str) {
        // Lean mode (load runs): an append in the exact shape a bridge writes skips the
        // `Value` tree; anything else takes the full path below. Same effect either way.
        if !self.shared.cfg.record_events {
            if let Some(b64) = text
                .strip_prefix(r#"{"type":"input_audio_buffer.append","audio":""#)
                .and_then(|t| t.strip_suffix(r#""}"#))
                .filter(|b| !b.contains(['"', '\\']))
            {
                if let Some(p) = self.probe.as_mut() {
                    p.event_received("input_audio_buffer.append", self.recv_at);
                }
                self.on_append_b64(b64, None);
                return;
            }
        }
        let mut ev: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                self.error(
                    ApiError::invalid("invalid_json", "Expected a JSON object event.", None),
                    None,
                );
                return;
            }
            Err(e) => {
                self.error(
                    ApiError::invalid(
                        "invalid_json",
                        format!("We could not parse the JSON body of your request: {e}"),
                        None,
                    ),
                    None,
                );
                return;
            }
        };
        let eid = ev.get("event_id").cloned();
        let ty = get_str(&ev, "type").unwrap_or("").to_string();
        if let Some(p) = self.probe.as_mut() {
            p.event_received(&ty, self.recv_at);
        }
        match ty.as_str() {
            "" => self.error(
                ApiError::invalid(
                    "missing_required_parameter",
                    "Missing required parameter: 'type'.",
                    Some("type"),
                ),
                eid,
            ),
            "session.update" => self.on_session_update(&ev, eid),
            "input_audio_buffer.append" => {
                let n = self.on_append(&ev, eid);
                if let Some(m) = ev.as_object_mut() {
                    m.remove("audio");
                    if let Some(n) = n {
                        m.insert("audio_bytes".into(), n.into());
                    }
                }
            }
            "input_audio_buffer.commit" => self.on_commit(eid),
            "input_audio_buffer.clear" => {
                self.buffer_start_ms = self.current_ms();
                self.speech = None;
                self.vad.reset();
                self.send(json!({"type": "input_audio_buffer.cleared"}));
            }
            "conversation.item.create" => self.on_item_create(&ev, eid),
            "conversation.item.delete" => self.on_item_delete(&ev, eid),
            "conversation.item.truncate" => self.on_truncate(&ev, eid),
            "response.create" => self.on_response_create(&ev, eid),
            "response.cancel" => self.on_response_cancel(&ev, eid),
            other => {
                let msg = format!("Invalid value: '{other}'. Unknown client event type.");
                self.error(ApiError::invalid("unknown_event", msg, Some("type")), eid)
            }
        }
        if self.shared.cfg.record_events {
            self.received.push(ev);
        }
    }

    fn on_session_update(&mut self, ev: &Value, eid: Option<Value>) {
        let Some(upd) = ev.get("session") else {
            let e = ApiError::invalid(
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                Some("session"),
            );
            return self.error(e, eid);
        };
        let checked = if self.beta {
            validate::beta_session(upd)
        } else {
            validate::ga_session(upd)
        };
        if let Err(e) = checked {
            return self.error(e, eid);
        }
        let old_voice = self.voice();
        let mut new = self.config.clone();
        merge(&mut new, upd);
        let td = if self.beta {
            new.get_mut("turn_detection")
        } else {
            new.pointer_mut("/audio/input/turn_detection")
        };
        if let Some(td) = td {
            normalize_td(td);
        }
        let new_voice = {
            let v = if self.beta {
                new.get("voice")
            } else {
                new.pointer("/audio/output/voice")
            };
            v.and_then(Value::as_str).unwrap_or("").to_string()
        };
        if self.audio_sent_ever && new_voice != old_voice {
            let e = ApiError::invalid(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                Some(if self.beta {
                    "session.voice"
                } else {
                    "session.audio.output.voice"
                }),
            );
            return self.error(e, eid);
        }
        self.config = new;
        self.session_changed = true;
        self.derive();
        let session = self.config.clone();
        self.send(json!({"type": "session.updated", "session": session}));
    }

    /// Returns the decoded length when the audio was valid base64.
    fn on_append(&mut self, ev: &Value, eid: Option<Value>) -> Option<usize> {
        let Some(b64) = get_str(ev, "audio") else {
            let e = ApiError::invalid(
                "missing_required_parameter",
                "Missing required parameter: 'audio'.",
                Some("audio"),
            );
            self.error(e, eid);
            return None;
        };
        self.on_append_b64(b64, eid)
    }

    fn on_append_b64(&mut self, b64: &str, eid: Option<Value>) -> Option<usize> {
        let mut data = std::mem::take(&mut self.scratch);
        data.clear();
        if B64.decode_vec(b64, &mut data).is_err() {
            self.scratch = data;
            let e = ApiError::invalid(
                "invalid_value",
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                Some("audio"),
            );
            self.error(e, eid);
            return None;
        }
        let n = data.len();
        self.appended_bytes += n;
        if let Some(p) = self.probe.as_mut() {
            p.append(&data, self.recv_at);
        }
        match self.in_fmt {
            AudioFormat::Pcmu => {
                self.feed(data.iter().map(|&b| audio_codec_algorithms::decode_ulaw(b)))
            }
            AudioFormat::Pcma => {
                self.feed(data.iter().map(|&b| audio_codec_algorithms::decode_alaw(b)))
            }
            AudioFormat::Pcm16 => {
                let mut bytes: &[u8] = &data;
                if let Some(c) = self.carry.take() {
                    match bytes.split_first() {
                        Some((&b, rest)) => {
                            self.feed(std::iter::once(i16::from_le_bytes([c, b])));
                            bytes = rest;
                        }
                        None => self.carry = Some(c),
                    }
                }
                let chunks = bytes.chunks_exact(2);
                if let [b] = chunks.remainder() {
                    self.carry = Some(*b);
                }
                self.feed(chunks.map(|c| i16::from_le_bytes([c[0], c[1]])));
            }
        }
        self.scratch = data;
        let mut edges = std::mem::take(&mut self.edges);
        for e in edges.drain(..) {
            self.on_edge(e);
        }
        self.edges = edges;
        Some(n)
    }

    fn feed(&mut self, samples: impl Iterator<Item = i16>) {
        let rate = self.in_fmt.rate() as u64;
        let base = self.in_base_ms;
        let Some(td) = self.td else {
            self.in_samples += samples.count() as u64;
            return;
        };
        for s in samples {
            self.in_samples += 1;
            let n = self.in_samples;
            if let Some(e) = self.vad.push(s, || base + n * 1000 / rate, td.silence_ms) {
                self.edges.push(e);
            }
        }
    }

    fn on_edge(&mut self, e: VadEdge) {
        let Some(td) = self.td else { return };
        match e {
            VadEdge::Started { window_start_ms } => {
                if self.speech.is_some() {
                    return;
                }
                let item_id = self.new_id("item_");
                let start = window_start_ms
                    .saturating_sub(td.prefix_ms)
                    .max(self.buffer_start_ms);
                self.speech = Some((item_id.clone(), window_start_ms));
                self.send(json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": start, "item_id": item_id}));
                if td.interrupt_response && self.resp.is_some() {
                    self.finish_response(Some("turn_detected"));
                }
            }
            VadEdge::Stopped { end_ms } => {
                let Some((item_id, speech_start)) = self.speech.take() else {
                    return;
                };
                self.send(json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": end_ms, "item_id": item_id}));
                let speech_ms = end_ms
                    .saturating_sub(speech_start)
                    .saturating_sub(td.silence_ms);
                self.commit_user_item(item_id, speech_ms);
                self.buffer_start_ms = end_ms;
                if td.create_response && self.resp.is_none() {
                    self.start_response(None);
                }
            }
        }
    }

    fn last_item_id(&self) -> Value {
        self.items
            .last()
            .map(|i| Value::String(i.id.clone()))
            .unwrap_or(Value::Null)
    }

    fn item_added(&mut self, previous: Value, item: Value) {
        if self.beta {
            self.send(json!({"type": "conversation.item.created", "previous_item_id": previous, "item": item}));
        } else {
            self.send(json!({"type": "conversation.item.added", "previous_item_id": previous, "item": item.clone()}));
            self.send(json!({"type": "conversation.item.done", "previous_item_id": previous, "item": item}));
        }
    }

    fn commit_user_item(&mut self, item_id: String, speech_ms: u64) {
        let previous = self.last_item_id();
        self.send(json!({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": previous}));
        let item = json!({"id": item_id, "object": "realtime.item", "type": "message", "status": "completed",
            "role": "user", "content": [{"type": "input_audio", "transcript": null}]});
        self.item_added(previous, item);
        self.items.push(Item {
            id: item_id.clone(),
            assistant: false,
            call_id: None,
            audio_ms: 0,
        });
        if self.transcribe || self.shared.cfg.always_transcribe {
            let scripted = self.shared.cfg.caller_transcripts.get(self.caller_turns);
            let transcript = match scripted {
                Some(t) => t.clone(),
                None => format!("caller spoke for {:.1} s", speech_ms as f64 / 1000.0),
            };
            self.caller_turns += 1;
            self.send(
                json!({"type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id, "content_index": 0, "transcript": transcript}),
            );
        }
    }

    fn on_commit(&mut self, eid: Option<Value>) {
        let now = self.current_ms();
        let have = now.saturating_sub(self.buffer_start_ms);
        if have < 100 {
            let msg = format!(
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has {have}.00ms of audio."
            );
            return self.error(
                ApiError::invalid("input_audio_buffer_commit_empty", msg, None),
                eid,
            );
        }
        let item_id = match self.speech.take() {
            Some((id, _)) => id,
            None => self.new_id("item_"),
        };
        self.vad.reset();
        self.commit_user_item(item_id, have);
        self.buffer_start_ms = now;
    }

    fn on_item_create(&mut self, ev: &Value, eid: Option<Value>) {
        let Some(item) = ev.get("item").and_then(Value::as_object) else {
            let e = ApiError::invalid(
                "missing_required_parameter",
                "Missing required parameter: 'item'.",
                Some("item"),
            );
            return self.error(e, eid);
        };
        let ty = item.get("type").and_then(Value::as_str);
        let role = item.get("role").and_then(Value::as_str);
        let ok = match ty {
            Some("message") => matches!(role, Some("user" | "assistant" | "system")),
            Some("function_call" | "function_call_output") => true,
            _ => false,
        };
        if !ok {
            let e = ApiError::invalid(
                "invalid_value",
                "Invalid 'item': type must be 'message' (role user|assistant|system), 'function_call' or 'function_call_output'.",
                Some("item.type"),
            );
            return self.error(e, eid);
        }
        let previous = match ev.get("previous_item_id") {
            None | Some(Value::Null) => self.last_item_id(),
            Some(Value::String(p)) if p == "root" || self.items.iter().any(|i| &i.id == p) => {
                Value::String(p.clone())
            }
            Some(p) => {
                let e = ApiError::invalid(
                    "invalid_value",
                    format!("Invalid 'previous_item_id': item {p} not found."),
                    Some("previous_item_id"),
                );
                return self.error(e, eid);
            }
        };
        let id = match item.get("id").and_then(Value::as_str) {
            Some(id) if self.items.iter().any(|i| i.id == id) => {
                let e = ApiError::invalid(
                    "invalid_value",
                    format!("Item with id '{id}' already exists."),
                    Some("item.id"),
                );
                return self.error(e, eid);
            }
            Some(id) => id.to_string(),
            None => self.new_id("item_"),
        };
        let call_id = item
            .get("call_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if ty == Some("function_call_output") {
            let known = call_id
                .as_deref()
                .is_some_and(|c| self.items.iter().any(|i| i.call_id.as_deref() == Some(c)));
            if !known || !item.get("output").is_some_and(Value::is_string) {
                let e = ApiError::invalid(
                    "invalid_value",
                    format!(
                        "Invalid 'item.call_id': no function call with call_id {:?} in the conversation (and 'output' must be a string).",
                        call_id.unwrap_or_default()
                    ),
                    Some("item.call_id"),
                );
                return self.error(e, eid);
            }
        }
        let mut full: Map<String, Value> = item.clone();
        full.insert("id".into(), Value::String(id.clone()));
        full.insert("object".into(), json!("realtime.item"));
        full.insert("status".into(), json!("completed"));
        self.items.push(Item {
            id,
            assistant: role == Some("assistant"),
            call_id: if ty == Some("function_call") {
                call_id
            } else {
                None
            },
            audio_ms: 0,
        });
        self.item_added(previous, Value::Object(full));
    }

    fn on_item_delete(&mut self, ev: &Value, eid: Option<Value>) {
        let Some(id) = get_str(ev, "item_id") else {
            let e = ApiError::invalid(
                "missing_required_parameter",
                "Missing required parameter: 'item_id'.",
                Some("item_id"),
            );
            return self.error(e, eid);
        };
        match self.items.iter().position(|i| i.id == id) {
            Some(p) => {
                let item = self.items.remove(p);
                self.send(json!({"type": "conversation.item.deleted", "item_id": item.id}));
            }
            None => {
                let e = ApiError::invalid(
                    "invalid_value",
                    format!("Item with item_id '{id}' not found."),
                    Some("item_id"),
                );
                self.error(e, eid)
            }
        }
    }

    fn on_truncate(&mut self, ev: &Value, eid: Option<Value>) {
        let (Some(item_id), Some(content_index), Some(audio_end_ms)) = (
            get_str(ev, "item_id"),
            ev.get("content_index").and_then(Value::as_u64),
            ev.get("audio_end_ms").and_then(Value::as_u64),
        ) else {
            let e = ApiError::invalid(
                "missing_required_parameter",
                "conversation.item.truncate needs 'item_id' (string), 'content_index' and 'audio_end_ms' (non-negative integers).",
                None,
            );
            return self.error(e, eid);
        };
        let item_id = item_id.to_string();
        let verdict = self.check_truncate(&item_id, content_index, audio_end_ms);
        self.truncates.push(Truncate {
            item_id: item_id.clone(),
            content_index,
            audio_end_ms,
            accepted: verdict.is_ok(),
        });
        match verdict {
            Err(e) => self.error(e, eid),
            Ok(()) => {
                if let Some(it) = self.items.iter_mut().rev().find(|i| i.id == item_id) {
                    it.audio_ms = audio_end_ms;
                }
                self.send(
                    json!({"type": "conversation.item.truncated", "item_id": item_id,
                    "content_index": content_index, "audio_end_ms": audio_end_ms}),
                );
            }
        }
    }

    fn check_truncate(
        &self,
        item_id: &str,
        content_index: u64,
        audio_end_ms: u64,
    ) -> Result<(), ApiError> {
        let active = self.resp.as_ref().filter(|r| r.item_id == item_id);
        let (assistant, have_ms) = match (active, self.items.iter().rev().find(|i| i.id == item_id))
        {
            (Some(r), _) => (true, (r.sent_bytes / r.format.bytes_per_ms()) as u64),
            (None, Some(i)) => (i.assistant, i.audio_ms),
            (None, None) => {
                return Err(ApiError::invalid(
                    "invalid_value",
                    format!("Item with item_id '{item_id}' not found."),
                    Some("item_id"),
                ))
            }
        };
        if !assistant {
            return Err(ApiError::invalid(
                "invalid_value",
                "Only assistant messages can be truncated.",
                Some("item_id"),
            ));
        }
        if content_index != 0 {
            return Err(ApiError::invalid(
                "invalid_value",
                format!("Invalid 'content_index': {content_index}; item '{item_id}' has one content part (index 0)."),
                Some("content_index"),
            ));
        }
        if audio_end_ms > have_ms {
            return Err(ApiError::invalid(
                "invalid_value",
                format!("audio_end_ms {audio_end_ms} is beyond the audio of item '{item_id}' ({have_ms} ms sent)."),
                Some("audio_end_ms"),
            ));
        }
        Ok(())
    }
}
