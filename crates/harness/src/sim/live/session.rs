//! One simulated Live session's protocol: synchronous, it only fills an outbox and a pending
//! log; `connection.rs` moves bytes. Client events are checked the way the real server does
//! (first `session.start`, unknown fields refused), then `input.rs` hears the caller and
//! `reply.rs` speaks, delegates and reports.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{lock, ClosedBy, LiveSessionLog, LiveShared};
use crate::sim::vad::Vad;

mod checks;
mod connection;
mod input;
mod reply;
pub(super) use connection::run;
use reply::Reply;

/// Something for the socket.
pub(super) enum Out {
    Event(Value),
    Close(CloseCode, &'static str),
}

pub(super) struct Session {
    shared: Arc<LiveShared>,
    n: u64,
    /// The resolved session once `session.start` was accepted.
    session: Option<Value>,
    started_at: Option<Instant>,
    next_usage: Option<Instant>,
    expires: Option<Instant>,
    seq: u64,
    /// Input samples (8 kHz) appended so far: the caller's side of the session timeline.
    in_samples: u64,
    vad: Vad,
    speech_start_ms: Option<u64>,
    caller_turns: usize,
    reply: Option<Reply>,
    /// Replies begun (picks the text and the scripted tool calls).
    reply_idx: usize,
    /// Delegated calls waiting for their `function_call_output`, and the ones answered.
    pending_calls: Vec<String>,
    answered_calls: Vec<String>,
    out: Vec<Out>,
    log: LiveSessionLog,
}

fn text<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

impl Session {
    pub(super) fn new(shared: Arc<LiveShared>, n: u64) -> Session {
        let vad = Vad::new(shared.cfg.vad_threshold, 8000);
        Session {
            shared,
            n,
            session: None,
            started_at: None,
            next_usage: None,
            expires: None,
            seq: 0,
            in_samples: 0,
            vad,
            speech_start_ms: None,
            caller_turns: 0,
            reply: None,
            reply_idx: 0,
            pending_calls: Vec::new(),
            answered_calls: Vec::new(),
            out: Vec::new(),
            log: LiveSessionLog::default(),
        }
    }

    /// Moves what happened since the last call into the shared log (one lock).
    pub(super) fn publish(&mut self, log: &Mutex<LiveSessionLog>) {
        let mut l = lock(log);
        let mine = &mut self.log;
        if self.shared.cfg.record_events {
            l.received.append(&mut mine.received);
            l.sent.append(&mut mine.sent);
        } else {
            mine.received.clear();
            mine.sent.clear();
        }
        l.tool_outputs.append(&mut mine.tool_outputs);
        l.appended_audio_bytes += std::mem::take(&mut mine.appended_audio_bytes);
        l.sent_audio_bytes += std::mem::take(&mut mine.sent_audio_bytes);
        l.replies += std::mem::take(&mut mine.replies);
        l.replies_interrupted += std::mem::take(&mut mine.replies_interrupted);
        l.errors_sent += std::mem::take(&mut mine.errors_sent);
        if let Some(s) = &self.session {
            if l.session != *s {
                l.id = text(s, "id").unwrap_or_default().to_string();
                l.session = s.clone();
            }
        }
        if let Some(by) = mine.closed_by.take() {
            l.closed_by = Some(by);
        }
    }

    pub(super) fn take_out(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.out)
    }

    fn event_id(&mut self) -> String {
        self.seq += 1;
        format!("event_live{}_{}", self.n, self.seq)
    }

    /// Sends `v` with a fresh `event_id`.
    fn send(&mut self, mut v: Value) {
        let id = self.event_id();
        if let Value::Object(m) = &mut v {
            m.insert("event_id".into(), Value::String(id));
        }
        self.log.sent.push(v.clone());
        self.out.push(Out::Event(v));
    }

    /// An `error` event (`openai/types/live/error_event.py`, `error.py`).
    fn error(&mut self, code: &str, message: &str, param: Option<&str>, client_event_id: &Value) {
        self.log.errors_sent += 1;
        let mut e = json!({"type": "invalid_request_error", "code": code, "message": message});
        if let Some(p) = param {
            e["param"] = json!(p);
        }
        if let Some(id) = client_event_id.as_str() {
            e["client_event_id"] = json!(id);
        }
        self.send(json!({"type": "error", "error": e}));
    }

    /// Cumulative usage: whole seconds since `session.started` (a float in the SDK's
    /// `session_usage.py`).
    fn usage(&self, now: Instant) -> Value {
        let secs = self
            .started_at
            .map_or(0, |t| now.duration_since(t).as_secs());
        json!({"seconds": secs as f64})
    }

    /// Ends the session with `session.closed` and a normal close.
    fn close_session(&mut self, reason: &'static str, by: ClosedBy) {
        let usage = self.usage(Instant::now());
        let session = self.session.clone().unwrap_or_else(|| json!({}));
        self.send(
            json!({"type": "session.closed", "reason": reason, "session": session,
            "usage": usage}),
        );
        self.log.closed_by = Some(by);
        self.out.push(Out::Close(CloseCode::Normal, reason));
    }

    /// A fatal error: the `error` event, then the socket closes (1011).
    pub(super) fn fatal(&mut self, code: &str) {
        self.log.errors_sent += 1;
        let e = json!({"type": code, "code": code, "message": format!("Fatal: {code}.")});
        self.send(json!({"type": "error", "error": e}));
        self.log.closed_by = Some(ClosedBy::Fault(format!("fatal {code}")));
        self.out.push(Out::Close(CloseCode::Error, "fatal error"));
    }

    pub(super) fn expire(&mut self) {
        self.close_session("expired", ClosedBy::Fault("expired".into()));
    }

    /// The next instant something is due: an audio delta, a usage report, expiry.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let pace = self.shared.cfg.pace;
        let delta = self.reply.as_ref().map(|r| r.next_due(pace));
        [delta, self.next_usage, self.expires]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn on_timer(&mut self, now: Instant) {
        if self.expires.is_some_and(|t| t <= now) {
            self.expires = None;
            return self.expire();
        }
        if let Some(t) = self.next_usage.filter(|t| *t <= now) {
            // At least 10 ms apart: a zero interval must not spin.
            let every = self.shared.cfg.usage_every.max(Duration::from_millis(10));
            self.next_usage = Some(t + every);
            let usage = self.usage(now);
            self.send(json!({"type": "session.usage.updated", "usage": usage}));
        }
        self.speak_due(now);
    }

    /// One client text frame.
    pub(super) fn on_text(&mut self, frame: &str) {
        let Ok(v) = serde_json::from_str::<Value>(frame) else {
            return self.error("invalid_json", "The event is not JSON.", None, &Value::Null);
        };
        let ty = text(&v, "type").unwrap_or_default().to_string();
        let mut logged = v.clone();
        if ty == "session.input_audio.append" {
            if let Some(m) = logged.as_object_mut() {
                m.remove("audio");
            }
        }
        self.log.received.push(logged);
        let eid = v.get("event_id").cloned().unwrap_or(Value::Null);
        if let Err((code, msg, param)) = checks::event_fields(&v, &ty) {
            return self.error(code, &msg, param.as_deref(), &eid);
        }
        if self.session.is_none() && ty != "session.start" {
            let msg = "Send session.start first and wait for session.started.";
            return self.error("session_not_started", msg, None, &eid);
        }
        match ty.as_str() {
            "session.start" => self.on_start(&v, &eid),
            "session.input_audio.append" => self.on_append(&v, &eid),
            "session.update" => self.on_update(&v, &eid),
            "response.item.create" => self.on_item(&v, &eid),
            "response.create" => self.on_response_create(&eid),
            "session.commentary.append" => self.on_commentary(&v, &eid),
            "session.output_audio.fixture.play" => self.on_fixture(&v, &eid),
            "session.close" => self.close_session("close_requested", ClosedBy::Client),
            // The rest of the ClientEvent union (mute, thinking, decisions): logged, ignored.
            _ => {}
        }
    }

    fn on_start(&mut self, v: &Value, eid: &Value) {
        if self.session.is_some() {
            return self.error("session_already_started", "The session started.", None, eid);
        }
        let given = v.get("session").cloned().unwrap_or(Value::Null);
        if let Err((code, msg, param)) = checks::session_start(&given) {
            return self.error(code, &msg, param.as_deref(), eid);
        }
        let now = Instant::now();
        let limit = self.shared.cfg.session_limit;
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut s: Map<String, Value> = given.as_object().cloned().unwrap_or_default();
        s.insert("id".into(), json!(format!("sess_live_SIM{:012}", self.n)));
        s.insert("expires_at".into(), json!(unix + limit.as_secs()));
        s.insert("status".into(), json!("active"));
        let audio = s.entry("audio").or_insert_with(|| json!({}));
        if audio.get("format").is_none() {
            audio["format"] = json!({"type": "audio/pcmu", "rate": 8000});
        }
        if audio.pointer("/output/voice").is_none() {
            audio["output"] = json!({"voice": "marin"});
        }
        let session = Value::Object(s);
        self.session = Some(session.clone());
        self.started_at = Some(now);
        self.next_usage = Some(now + self.shared.cfg.usage_every);
        self.expires = Some(now + limit);
        self.send(json!({"type": "session.started", "session": session}));
    }

    fn delegates_to_responses(&self) -> bool {
        self.session
            .as_ref()
            .and_then(|s| s.pointer("/delegation/type"))
            .and_then(Value::as_str)
            == Some("responses")
    }

    fn on_update(&mut self, v: &Value, eid: &Value) {
        let update = v.get("session").cloned().unwrap_or(Value::Null);
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let current = session.pointer("/delegation/type").cloned();
        if let Err((code, msg, param)) = checks::session_update(&update, current.as_ref()) {
            return self.error(code, &msg, param.as_deref(), eid);
        }
        if let Some(d) = update.get("delegation") {
            let target = session
                .as_object_mut()
                .map(|m| m.entry("delegation").or_insert_with(|| json!({})));
            if let (Some(Value::Object(t)), Value::Object(d)) = (target, d) {
                for (k, val) in d {
                    match (t.get_mut(k), val) {
                        (Some(Value::Object(old)), Value::Object(new)) => {
                            old.extend(new.clone());
                        }
                        _ => {
                            t.insert(k.clone(), val.clone());
                        }
                    }
                }
            }
        }
        let session = session.clone();
        self.send(json!({"type": "session.updated", "session": session}));
    }
}
