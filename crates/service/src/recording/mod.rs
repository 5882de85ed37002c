//! Recorded calls: the file format and the recorder behind `serve --record-dir`, with the
//! listening copy (stereo WAV) and transcript written beside each recording. Below `server/`,
//! which records; what runs the server over recordings (replay, fixture generation) is
//! `fixture/`, above it.
//!
//! A recording is JSON Lines: a [`Header`], then one [`Line`] per WebSocket message on either
//! of the bridge's sockets, in the order the bridge saw them. `fixtures/README.md` is the
//! format's documentation (the recordings kept in `fixtures/` are the test fixtures).

pub mod recorder;
pub mod render;
pub mod wav;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::call::CallConfig;
use crate::realtime::session::TurnDetection;
use crate::realtime::{AudioFormat, Dialect};

/// Written in every header; bumped when a reader of the old format would misread the new one.
/// Version 2 numbers the Realtime sessions of a call that re-dialled (`session` on a line, and
/// `dial_failed` lines): a version 1 reader would replay them as one session.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this build reads (version 1 is version 2 with one session).
pub const OLDEST_READABLE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Which socket a message travelled on, and which way, seen from the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// Twilio → bridge.
    TwilioIn,
    /// Bridge → Twilio.
    TwilioOut,
    /// Realtime API → bridge.
    RealtimeIn,
    /// Bridge → Realtime API.
    RealtimeOut,
}

impl Dir {
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::TwilioIn => "twilio_in",
            Dir::TwilioOut => "twilio_out",
            Dir::RealtimeIn => "realtime_in",
            Dir::RealtimeOut => "realtime_out",
        }
    }

    /// Whether the bridge sent it (what a replay compares) rather than received it (what a
    /// replay plays).
    pub fn is_out(self) -> bool {
        matches!(self, Dir::TwilioOut | Dir::RealtimeOut)
    }
}

/// The first line of a fixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Format version ([`FORMAT_VERSION`]).
    pub callbridge_fixture: u32,
    /// `ga` or `beta`.
    pub dialect: String,
    /// `pcmu` or `pcm`.
    pub audio_mode: String,
    /// The bridge's per-call configuration as config keys (`instructions`, `voice`, `vad_*`,
    /// `greeting`, ...): a replay runs the bridge with exactly these. Never a secret.
    pub config: BTreeMap<String, String>,
    /// The `session` object the bridge sends in `session.update` (for the reader; the replay
    /// compares the actual `session.update` message).
    pub session: Value,
    /// Free text: what happens in this call.
    pub description: String,
    /// Tools, `end_call` and transfer targets the bridge offered (see [`tools::header_value`]);
    /// absent when it offered none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Value>,
}

impl Header {
    pub fn new(call: &CallConfig, description: impl Into<String>) -> Header {
        Header {
            callbridge_fixture: FORMAT_VERSION,
            dialect: dialect_name(call.dialect).into(),
            audio_mode: audio_mode_name(call.session.audio_format).into(),
            config: config_pairs(call),
            session: crate::realtime::settings::redact_session(&call.session.to_json(call.dialect)),
            description: description.into(),
            tools: tools_header(&call.tools),
        }
    }
}

/// One WebSocket message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Milliseconds since the media socket opened.
    pub t_ms: u64,
    pub dir: Dir,
    /// The Realtime session a `realtime_*` line belongs to: the bridge's upstream generation,
    /// 1 for the call's first session (written only when it is not 1; always 1 on Twilio lines).
    #[serde(default = "first_session", skip_serializing_if = "is_first_session")]
    pub session: u64,
    /// The message as JSON. A close is `{"close": {"code": N, "reason": ".."}}`, or
    /// `{"close": null}` when the socket ended without a close frame; a text message that was
    /// not JSON is kept as a JSON string. A Realtime session whose connection failed is
    /// `{"dial_failed": {"status": N}}` (the HTTP status the upgrade was refused with) or
    /// `{"dial_failed": {"status": null}}` (TCP, TLS or the handshake failed).
    pub msg: Value,
}

fn first_session() -> u64 {
    1
}

fn is_first_session(session: &u64) -> bool {
    *session == 1
}

impl Line {
    /// A line of the call's first Realtime session, or of the Twilio socket.
    pub fn new(t_ms: u64, dir: Dir, msg: Value) -> Line {
        Line {
            t_ms,
            dir,
            session: 1,
            msg,
        }
    }

    /// `Some(status)` if this line says its Realtime session could not be dialled (`status`:
    /// the HTTP status the upgrade was refused with, `None` when there was no HTTP answer).
    pub fn dial_failed(&self) -> Option<Option<u16>> {
        let o = self.msg.as_object()?;
        let failed = o.get("dial_failed").filter(|_| o.len() == 1)?;
        Some(
            failed
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok()),
        )
    }

    /// `Some((code, reason))` if this line is a socket close (`code` is `None` for a drop).
    pub fn close(&self) -> Option<(Option<u16>, &str)> {
        let c = self.msg.as_object()?.get("close")?;
        if self.msg.as_object().is_some_and(|o| o.len() != 1) {
            return None;
        }
        Some((
            c.get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok()),
            c.get("reason").and_then(Value::as_str).unwrap_or(""),
        ))
    }

    /// Twilio's `event` or Realtime's `type`.
    pub fn kind(&self) -> &str {
        if self.close().is_some() {
            return "close";
        }
        if self.dial_failed().is_some() {
            return "dial_failed";
        }
        let key = match self.dir {
            Dir::TwilioIn | Dir::TwilioOut => "event",
            Dir::RealtimeIn | Dir::RealtimeOut => "type",
        };
        self.msg.get(key).and_then(Value::as_str).unwrap_or("?")
    }
}

/// A whole recorded call in memory: a file of `fixtures/` or of `--record-dir` (the same format).
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub path: PathBuf,
    pub header: Header,
    pub lines: Vec<Line>,
}

impl RecordedCall {
    pub fn load(path: &Path) -> Result<RecordedCall, RecordingError> {
        let text = std::fs::read_to_string(path).map_err(|source| RecordingError::Io {
            path: path.to_owned(),
            source,
        })?;
        RecordedCall::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<RecordedCall, RecordingError> {
        let err = |line: usize, message: String| RecordingError::Parse {
            path: path.to_owned(),
            line,
            message,
        };
        let mut it = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, first) = it.next().ok_or_else(|| err(1, "empty file".into()))?;
        let header: Header =
            serde_json::from_str(first).map_err(|e| err(1, format!("header: {e}")))?;
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&header.callbridge_fixture) {
            return Err(err(
                1,
                format!(
                    "format version {} (this callbridge reads {OLDEST_READABLE_VERSION} to {FORMAT_VERSION})",
                    header.callbridge_fixture
                ),
            ));
        }
        let mut lines = Vec::new();
        for (i, l) in it {
            let line: Line = serde_json::from_str(l).map_err(|e| err(i + 1, e.to_string()))?;
            lines.push(line);
        }
        Ok(RecordedCall {
            path: path.to_owned(),
            header,
            lines,
        })
    }

    /// The fixture as JSON Lines.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        out.push_str(&serde_json::to_string(&self.header).unwrap_or_default());
        out.push('\n');
        for l in &self.lines {
            out.push_str(&serde_json::to_string(l).unwrap_or_default());
            out.push('\n');
        }
        out
    }

    /// Every `twilio_in` media payload, decoded, in order: the caller's audio.
    pub fn caller_audio(&self) -> Vec<u8> {
        use base64::Engine;
        let mut out = Vec::new();
        for l in &self.lines {
            if l.dir == Dir::TwilioIn && l.kind() == "media" {
                if let Some(p) = l.msg.pointer("/media/payload").and_then(Value::as_str) {
                    if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(p) {
                        out.extend_from_slice(&b);
                    }
                }
            }
        }
        out
    }
}

pub fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::Ga => "ga",
        Dialect::Beta => "beta",
    }
}

pub fn audio_mode_name(f: AudioFormat) -> &'static str {
    match f {
        AudioFormat::Pcmu => "pcmu",
        AudioFormat::Pcm24k => "pcm",
    }
}

/// The per-call configuration written back as config keys, so a replay configures the bridge
/// as the recording bridge was (the inverse of `Config::validate` for these keys).
pub fn config_pairs(c: &CallConfig) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_owned(), v);
    };
    let s = &c.session;
    put("dialect", dialect_name(c.dialect).into());
    put("audio_mode", audio_mode_name(s.audio_format).into());
    put("instructions", s.instructions.clone());
    put("voice", s.voice.clone());
    if let Some(v) = &s.model {
        put("model", v.clone());
    }
    match &s.turn_detection {
        TurnDetection::ServerVad {
            threshold,
            prefix_padding_ms,
            silence_duration_ms,
            idle_timeout_ms,
            ..
        } => {
            put("vad", "server_vad".into());
            put("vad_threshold", threshold.to_string());
            put("vad_prefix_padding_ms", prefix_padding_ms.to_string());
            put("vad_silence_duration_ms", silence_duration_ms.to_string());
            if let Some(ms) = idle_timeout_ms {
                put("vad_idle_timeout_ms", ms.to_string());
            }
        }
        TurnDetection::SemanticVad { eagerness, .. } => {
            put("vad", "semantic_vad".into());
            put("vad_eagerness", eagerness.clone());
        }
    }
    // The two response switches belong to both kinds of turn detection.
    let (TurnDetection::ServerVad {
        create_response,
        interrupt_response,
        ..
    }
    | TurnDetection::SemanticVad {
        create_response,
        interrupt_response,
        ..
    }) = &s.turn_detection;
    put("vad_create_response", create_response.to_string());
    put("vad_interrupt_response", interrupt_response.to_string());
    if let Some(v) = &s.transcription_model {
        put("transcription_model", v.clone());
    }
    match s.max_output_tokens {
        Some(None) => put("max_output_tokens", "inf".into()),
        Some(Some(n)) => put("max_output_tokens", n.to_string()),
        None => {}
    }
    if let Some(v) = s.speed {
        put("speed", v.to_string());
    }
    if let Some(v) = &s.noise_reduction {
        put("noise_reduction", v.clone());
    }
    if let Some(v) = s.temperature {
        put("temperature", v.to_string());
    }
    for (k, v) in crate::config::settings_config_pairs(s, c.dialect) {
        put(k, v);
    }
    if let Some(g) = &c.greeting {
        put("greeting", g.clone());
    }
    put("barge_in", c.barge_in.to_string());
    put("max_gap_fill_ms", c.max_gap_fill_ms.to_string());
    put("prebuffer_limit_ms", c.prebuffer_limit_ms.to_string());
    put(
        "twilio_idle_timeout_ms",
        c.twilio_idle_timeout.as_millis().to_string(),
    );
    put(
        "upstream_connect_timeout_ms",
        c.upstream_ready_timeout.as_millis().to_string(),
    );
    put("upstream_retry_s", c.upstream_retry.as_secs().to_string());
    put(
        "session_rotate_after_secs",
        c.session_rotate_after.as_secs().to_string(),
    );
    m
}

/// The tools part of a header, or `None` when the call had no tools: a replay declares the
/// same tools.
pub fn tools_header(t: &crate::call::tools::ToolsConfig) -> Option<Value> {
    if t.tools.is_empty() && !t.end_call && t.transfer_targets.is_empty() {
        return None;
    }
    let tools: Vec<Value> = t
        .tools
        .iter()
        .map(|s| {
            serde_json::json!({"name": s.name, "description": s.description, "parameters": s.parameters,
                   "url": s.url, "timeout_ms": s.timeout.as_millis() as u64,
                   "filler_after_ms": s.filler_after.as_millis() as u64})
        })
        .collect();
    let targets: serde_json::Map<String, Value> = t
        .transfer_targets
        .iter()
        .map(|(n, v)| (n.clone(), serde_json::json!(v)))
        .collect();
    let mut v = serde_json::json!({"tools": tools, "end_call": t.end_call, "transfer_targets": targets,
                       "goodbye_timeout_ms": t.goodbye_timeout.as_millis() as u64});
    if let (Some(c), Some(o)) = (&t.transfer_caller_id, v.as_object_mut()) {
        o.insert("transfer_caller_id".into(), serde_json::json!(c));
    }
    Some(v)
}
