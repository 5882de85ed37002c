//! Realtime events. Server events are parsed leniently (unknown fields ignored, unknown types
//! become [`ServerEvent::Unknown`]); both dialects' names map to one enum, since only the names
//! differ for what we act on (`response.output_audio.delta` in GA is `response.audio.delta` in
//! beta). Client events are written per dialect.

use std::borrow::Cow;

use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::items::Item;
use super::session::{Dialect, SessionConfig};

/// A server event we act on. Strings borrow from the message text where they can.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ServerEvent<'a> {
    #[serde(rename = "session.created")]
    SessionCreated {
        #[serde(default)]
        session: SessionInfo,
    },
    #[serde(rename = "session.updated")]
    SessionUpdated {
        #[serde(default)]
        session: SessionInfo,
    },
    #[serde(rename = "error")]
    Error { error: ErrorDetail },
    #[serde(rename = "input_audio_buffer.speech_started")]
    SpeechStarted {
        #[serde(default)]
        audio_start_ms: u64,
        #[serde(default)]
        item_id: Option<String>,
    },
    #[serde(rename = "input_audio_buffer.speech_stopped")]
    SpeechStopped {
        #[serde(default)]
        audio_end_ms: u64,
    },
    #[serde(rename = "response.created")]
    ResponseCreated { response: ResponseRef },
    #[serde(rename = "response.output_audio.delta", alias = "response.audio.delta")]
    AudioDelta(#[serde(borrow)] AudioDelta<'a>),
    #[serde(rename = "response.output_audio.done", alias = "response.audio.done")]
    AudioDone {
        #[serde(default)]
        response_id: Option<String>,
        #[serde(default)]
        item_id: Option<String>,
    },
    #[serde(
        rename = "response.output_audio_transcript.done",
        alias = "response.audio_transcript.done"
    )]
    AgentTranscript {
        #[serde(default)]
        item_id: Option<String>,
        #[serde(default)]
        transcript: String,
    },
    /// A piece of the agent's transcript while it speaks: what a session that drops mid-answer
    /// leaves of the answer.
    #[serde(
        rename = "response.output_audio_transcript.delta",
        alias = "response.audio_transcript.delta"
    )]
    AgentTranscriptDelta {
        #[serde(default)]
        item_id: Option<String>,
        #[serde(default)]
        delta: String,
    },
    #[serde(rename = "conversation.item.input_audio_transcription.completed")]
    CallerTranscript {
        /// The caller's item, as named by its `speech_started` (which says when it began).
        #[serde(default)]
        item_id: Option<String>,
        #[serde(default)]
        transcript: String,
    },
    #[serde(rename = "response.done")]
    ResponseDone { response: ResponseRef },
    /// The model finished the arguments of a function call (`name` is missing on older
    /// servers; it is read from the output item then).
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone(FunctionCall),
    /// An output item is complete; `function_call` and `mcp_call` items matter to the bridge.
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        #[serde(default)]
        response_id: Option<String>,
        item: OutputItem,
    },
    /// OpenAI started calling a remote MCP server's tool (`response_mcp_call_in_progress.py`):
    /// when the call's time starts.
    #[serde(rename = "response.mcp_call.in_progress")]
    McpCallInProgress {
        #[serde(default)]
        item_id: String,
    },
    /// Any other event (deltas of transcripts, rate limits, item bookkeeping, new events):
    /// nothing in the call depends on it.
    #[serde(other)]
    Unknown,
}

/// One pass over any event: its `type` and, should it be an audio delta, the delta's fields
/// (everything else is skipped without being stored). Peeking at the tag in a pass of its
/// own and then parsing again read each delta's audio twice.
#[derive(Deserialize)]
struct HotEvent<'a> {
    #[serde(
        rename = "type",
        default,
        borrow,
        deserialize_with = "crate::twilio::media::opt_cow"
    )]
    ty: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "crate::twilio::media::opt_cow")]
    response_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "crate::twilio::media::opt_cow")]
    item_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "crate::twilio::media::opt_cow")]
    delta: Option<Cow<'a, str>>,
}

/// An audio delta (both dialects). [`ServerEvent::parse`] reads it directly: serde's
/// internally tagged enum would first buffer every field (the base64 audio included) into an
/// allocated `Content` tree to find the tag.
#[derive(Debug, Deserialize)]
pub struct AudioDelta<'a> {
    #[serde(borrow)]
    pub response_id: Cow<'a, str>,
    #[serde(borrow)]
    pub item_id: Cow<'a, str>,
    #[serde(borrow)]
    pub delta: Cow<'a, str>,
}

impl<'a> ServerEvent<'a> {
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        // The one hot event in one pass; the rest are rare and take the generic path (so does
        // anything malformed, which also words the error).
        if let Ok(HotEvent {
            ty: Some(ty),
            response_id,
            item_id,
            delta,
        }) = serde_json::from_str::<HotEvent<'a>>(text)
        {
            if matches!(&*ty, "response.output_audio.delta" | "response.audio.delta") {
                if let (Some(response_id), Some(item_id), Some(delta)) =
                    (response_id, item_id, delta)
                {
                    return Ok(ServerEvent::AudioDelta(AudioDelta {
                        response_id,
                        item_id,
                        delta,
                    }));
                }
                // A delta lacking a field: the direct parse says which.
                return Ok(ServerEvent::AudioDelta(serde_json::from_str(text)?));
            }
        }
        serde_json::from_str(text)
    }
}

/// Audio for one `input_audio_buffer.append`. Taken from its call's [`AudioPool`] and given
/// back when dropped (after the shell has written the JSON), so the steady-state uplink
/// reuses the same few buffers instead of allocating one per 20 ms frame.
pub struct AudioBytes {
    buf: Vec<u8>,
    pool: Option<std::sync::Arc<AudioPool>>,
}

/// A call's spare [`AudioBytes`] buffers. The mutex is only ever taken by the call's own task
/// (uncontended); it is there because outputs must be `Send`.
#[derive(Default)]
pub struct AudioPool(std::sync::Mutex<Vec<Vec<u8>>>);

/// More spare buffers than this are freed: one or two are in flight in steady state.
const POOL_KEEP: usize = 4;
/// Largest spare buffer kept: a 20 ms frame is 160 bytes in pcmu, 960 in pcm (PCM16 24 kHz).
const POOL_MAX_CAPACITY: usize = 2048;

impl AudioPool {
    /// An empty buffer, reused when one is spare.
    pub fn take(self: &std::sync::Arc<Self>) -> AudioBytes {
        let buf = match self.0.lock() {
            Ok(mut spare) => spare.pop(),
            Err(_) => None,
        };
        AudioBytes {
            buf: buf.unwrap_or_default(),
            pool: Some(self.clone()),
        }
    }
}

impl AudioBytes {
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
    pub fn reserve(&mut self, n: usize) {
        self.buf.reserve(n);
    }
}

impl Drop for AudioBytes {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            if let Ok(mut spare) = pool.0.lock() {
                // A buffer that once held a long stretch (the prebuffer sent at session
                // start) is not kept: every later 20 ms frame would hold its capacity.
                if spare.len() < POOL_KEEP && self.buf.capacity() <= POOL_MAX_CAPACITY {
                    let mut buf = std::mem::take(&mut self.buf);
                    buf.clear();
                    spare.push(buf);
                }
            }
        }
    }
}

impl std::ops::Deref for AudioBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl From<Vec<u8>> for AudioBytes {
    fn from(buf: Vec<u8>) -> Self {
        AudioBytes { buf, pool: None }
    }
}

/// A clone is a plain copy of the bytes, outside any pool.
impl Clone for AudioBytes {
    fn clone(&self) -> Self {
        AudioBytes::from(self.buf.clone())
    }
}

impl PartialEq for AudioBytes {
    fn eq(&self, other: &Self) -> bool {
        self.buf == other.buf
    }
}

impl std::fmt::Debug for AudioBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.buf.fmt(f)
    }
}

/// What the bridge reads of a `session` object.
#[derive(Debug, Deserialize, Default)]
pub struct SessionInfo {
    /// When the server will end the session (epoch seconds; GA only).
    #[serde(default)]
    pub expires_at: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
pub struct ErrorDetail {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ResponseRef {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub status_details: Option<serde_json::Value>,
    /// The response's output items (only in `response.done`): function calls are read from
    /// here too, in case their own events were missed.
    #[serde(default)]
    pub output: Vec<OutputItem>,
    /// Tokens billed for this response (see [`super::usage`]); odd or missing usage is `None`.
    #[serde(default, deserialize_with = "super::usage::lenient")]
    pub usage: Option<super::usage::TokenUsage>,
}

impl ResponseRef {
    /// Whether the response ran to its end (not cancelled, interrupted or failed). A server
    /// that sends no status is taken at its word.
    pub fn completed(&self) -> bool {
        matches!(self.status.as_deref(), None | Some("completed"))
    }
}

/// `response.function_call_arguments.done`. `arguments` is a JSON document as a string.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionCall {
    #[serde(default)]
    pub response_id: Option<String>,
    #[serde(default)]
    pub item_id: Option<String>,
    pub call_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: String,
}

/// An item of a response's output. Messages and audio items carry none of the optional
/// fields the bridge reads; a `function_call` carries all of them.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputItem {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub call_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub arguments: Option<String>,
    /// An `mcp_call`'s server, output and error (`realtime_mcp_tool_call.py`). `output` is a
    /// string there; kept as any JSON so another item type's `output` can never make a whole
    /// `response.done` unreadable.
    #[serde(default)]
    pub server_label: Option<String>,
    #[serde(default)]
    pub output: Option<serde_json::Value>,
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

impl OutputItem {
    /// `(call_id, name, arguments)` if this item is a complete function call.
    pub fn function_call(&self) -> Option<(&str, &str, &str)> {
        if self.kind.as_deref() != Some("function_call") {
            return None;
        }
        Some((
            self.call_id.as_deref()?,
            self.name.as_deref()?,
            self.arguments.as_deref().unwrap_or("{}"),
        ))
    }
}

/// A client event the bridge sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `session.update` for the configured dialect.
    SessionUpdate(Box<SessionConfig>),
    /// `input_audio_buffer.append`: raw bytes in the session's input format (μ-law, or PCM16 LE).
    AppendAudio(AudioBytes),
    /// `response.create`, optionally with instructions (the greeting).
    ResponseCreate { instructions: Option<String> },
    /// `response.cancel`.
    ResponseCancel,
    /// `conversation.item.truncate` at what the caller actually heard.
    Truncate { item_id: String, audio_end_ms: u64 },
    /// `conversation.item.create` of a user text message (e.g. keys the caller pressed).
    UserText(String),
    /// `conversation.item.create` of any item (a conversation replayed into a new session).
    CreateItem(Item),
    /// `conversation.item.create` of a `function_call_output` (`output` is a JSON string).
    FunctionCallOutput { call_id: String, output: String },
}

impl ClientEvent {
    /// The event's `type`, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            ClientEvent::SessionUpdate(_) => "session.update",
            ClientEvent::AppendAudio(_) => "input_audio_buffer.append",
            ClientEvent::ResponseCreate { .. } => "response.create",
            ClientEvent::ResponseCancel => "response.cancel",
            ClientEvent::Truncate { .. } => "conversation.item.truncate",
            ClientEvent::UserText(_)
            | ClientEvent::CreateItem(_)
            | ClientEvent::FunctionCallOutput { .. } => "conversation.item.create",
        }
    }

    /// Writes the event's JSON into `out` (cleared first).
    pub fn write_json(&self, dialect: Dialect, out: &mut String) {
        out.clear();
        match self {
            // The hot path: written by hand, no intermediate `Value`.
            ClientEvent::AppendAudio(bytes) => {
                out.push_str(r#"{"type":"input_audio_buffer.append","audio":""#);
                base64::engine::general_purpose::STANDARD.encode_string(&bytes[..], out);
                out.push_str("\"}");
            }
            ClientEvent::SessionUpdate(cfg) => {
                let v = json!({"type": "session.update", "session": cfg.to_json(dialect)});
                out.push_str(&v.to_string());
            }
            ClientEvent::ResponseCreate { instructions } => {
                let v = match instructions {
                    Some(i) => json!({"type": "response.create", "response": {"instructions": i}}),
                    None => json!({"type": "response.create"}),
                };
                out.push_str(&v.to_string());
            }
            ClientEvent::ResponseCancel => out.push_str(r#"{"type":"response.cancel"}"#),
            ClientEvent::UserText(text) => {
                // Same shape in GA and beta.
                let v = json!({"type": "conversation.item.create", "item": {"type": "message",
                    "role": "user", "content": [{"type": "input_text", "text": text}]}});
                out.push_str(&v.to_string());
            }
            ClientEvent::CreateItem(item) => {
                let v = json!({"type": "conversation.item.create", "item": item.to_json(dialect)});
                out.push_str(&v.to_string());
            }
            ClientEvent::FunctionCallOutput { call_id, output } => {
                // Same shape in GA and beta.
                let v = json!({"type": "conversation.item.create", "item": {
                    "type": "function_call_output", "call_id": call_id, "output": output}});
                out.push_str(&v.to_string());
            }
            ClientEvent::Truncate {
                item_id,
                audio_end_ms,
            } => {
                let v = json!({"type": "conversation.item.truncate", "item_id": item_id,
                               "content_index": 0, "audio_end_ms": audio_end_ms});
                out.push_str(&v.to_string());
            }
        }
    }

    pub fn to_json(&self, dialect: Dialect) -> String {
        let mut s = String::new();
        self.write_json(dialect, &mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_audio_deltas_parse_to_one_event() {
        for t in ["response.output_audio.delta", "response.audio.delta"] {
            let text = format!(
                r#"{{"type":"{t}","event_id":"e1","response_id":"r1","item_id":"i1","output_index":0,"content_index":0,"delta":"AAAA","new_field":[1]}}"#
            );
            match ServerEvent::parse(&text) {
                Ok(ServerEvent::AudioDelta(AudioDelta {
                    response_id,
                    item_id,
                    delta,
                })) => {
                    assert_eq!((&*response_id, &*item_id, &*delta), ("r1", "i1", "AAAA"));
                }
                other => panic!("{t}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_events_and_fields_are_tolerated() {
        for text in [
            r#"{"type":"rate_limits.updated","rate_limits":[]}"#,
            r#"{"type":"conversation.item.input_audio_transcription.delta","delta":"hi"}"#,
            r#"{"type":"brand.new.event"}"#,
        ] {
            assert!(matches!(ServerEvent::parse(text), Ok(ServerEvent::Unknown)));
        }
        let e = ServerEvent::parse(
            r#"{"type":"error","error":{"type":"invalid_request_error","code":"response_cancel_not_active","message":"no","param":null}}"#,
        );
        match e {
            Ok(ServerEvent::Error { error }) => {
                assert_eq!(error.code.as_deref(), Some("response_cancel_not_active"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_we_need_are_strict() {
        // A delta without its item id cannot be tracked for truncation: it is an error.
        assert!(
            ServerEvent::parse(r#"{"type":"response.output_audio.delta","delta":"AA"}"#).is_err()
        );
        assert!(ServerEvent::parse("not json").is_err());
    }

    #[test]
    fn function_calls_parse_from_all_three_events() {
        match ServerEvent::parse(
            r#"{"type":"response.function_call_arguments.done","event_id":"e","response_id":"r1","item_id":"i1","output_index":0,"call_id":"call_1","name":"lookup","arguments":"{\"a\":1}"}"#,
        ) {
            Ok(ServerEvent::FunctionCallArgumentsDone(f)) => {
                assert_eq!(f.call_id, "call_1");
                assert_eq!(f.name.as_deref(), Some("lookup"));
                assert_eq!(f.arguments, r#"{"a":1}"#);
            }
            other => panic!("{other:?}"),
        }
        match ServerEvent::parse(
            r#"{"type":"response.output_item.done","response_id":"r1","output_index":0,"item":{"id":"i1","type":"function_call","status":"completed","name":"lookup","call_id":"call_1","arguments":"{}"}}"#,
        ) {
            Ok(ServerEvent::OutputItemDone { item, .. }) => {
                assert_eq!(item.function_call(), Some(("call_1", "lookup", "{}")));
            }
            other => panic!("{other:?}"),
        }
        match ServerEvent::parse(
            r#"{"type":"response.done","response":{"id":"r1","status":"completed","output":[{"type":"message","id":"i0","content":[]},{"type":"function_call","id":"i1","name":"x","call_id":"c","arguments":"{}"}]}}"#,
        ) {
            Ok(ServerEvent::ResponseDone { response }) => {
                let calls: Vec<_> = response
                    .output
                    .iter()
                    .filter_map(OutputItem::function_call)
                    .collect();
                assert_eq!(calls, [("c", "x", "{}")]);
            }
            other => panic!("{other:?}"),
        }
        let v: serde_json::Value = serde_json::from_str(
            &ClientEvent::FunctionCallOutput {
                call_id: "call_1".into(),
                output: r#"{"ok":true}"#.into(),
            }
            .to_json(Dialect::Beta),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"conversation.item.create","item":{"type":"function_call_output","call_id":"call_1","output":"{\"ok\":true}"}})
        );
    }

    #[test]
    fn client_events_have_the_documented_shapes() {
        let v: serde_json::Value = serde_json::from_str(
            &ClientEvent::AppendAudio(vec![0xFF, 0x7F, 0].into()).to_json(Dialect::Ga),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"input_audio_buffer.append","audio":"/38A"})
        );
        let v: serde_json::Value = serde_json::from_str(
            &ClientEvent::Truncate {
                item_id: "item_1".into(),
                audio_end_ms: 1234,
            }
            .to_json(Dialect::Beta),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":1234})
        );
        let v: serde_json::Value = serde_json::from_str(
            &ClientEvent::ResponseCreate {
                instructions: Some("Say hi".into()),
            }
            .to_json(Dialect::Ga),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"response.create","response":{"instructions":"Say hi"}})
        );
    }
}
