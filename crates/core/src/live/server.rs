//! Server events GPT-Live sends, parsed from JSON text. Shapes from the SDK's models in
//! `openai/types/live/` (file named beside each variant). An event type this module does not
//! know (the API adds some; sideband-only `transport.*`, `decision.*`) parses as
//! [`ServerEvent::Unknown`], not as an error: the bridge logs and ignores it.

use serde::Deserialize;
use serde_json::Value;

/// One server event (`server_event.py`, the `ServerEvent` union, discriminated by `type`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub enum ServerEvent {
    /// `session_started_event.py`: the resolved config with the session's id and `expires_at`
    /// (nested in `session`, a `SessionResource`).
    #[serde(rename = "session.started")]
    SessionStarted { session: SessionResource },
    /// `session_updated_event.py`: a `session.update` was accepted.
    #[serde(rename = "session.updated")]
    SessionUpdated { session: SessionResource },
    /// `output_audio_delta_event.py`: base64 audio in the session's format. On the primary
    /// WebSocket it carries no item/response id and no `start_ms`/`end_ms` (those are only on
    /// reflected sideband events); the server paces it in real time.
    #[serde(rename = "session.output_audio.delta")]
    OutputAudioDelta { delta: String },
    /// `input_transcript_delta_event.py`: the caller's words, with their place on the session
    /// timeline. No "done" event and no turns.
    #[serde(rename = "session.input_transcript.delta")]
    InputTranscriptDelta(TranscriptDelta),
    /// `output_transcript_delta_event.py`: the model's words, timed the same way.
    #[serde(rename = "session.output_transcript.delta")]
    OutputTranscriptDelta(TranscriptDelta),
    /// `delegation_created_event.py`: the model handed a task to `target` (metadata only, no
    /// task text).
    #[serde(rename = "session.delegation.created")]
    DelegationCreated {
        delegation: DelegationInfo,
        offset_ms: u64,
    },
    /// `response_event.py`: one event of the Responses backend's stream, wrapped. The
    /// `delegation_id` "may be null or omitted" when it cannot be correlated.
    #[serde(rename = "response.event")]
    ResponseEvent {
        #[serde(default)]
        delegation_id: Option<String>,
        event: Value,
    },
    /// `output_audio_fixture_playing_event.py`: the fixture was accepted.
    #[serde(rename = "session.output_audio.fixture.playing")]
    FixturePlaying,
    /// `output_audio_fixture_played_event.py`: drained from the server mixer (not proof the
    /// listener heard it).
    #[serde(rename = "session.output_audio.fixture.played")]
    FixturePlayed,
    /// `commentary_appended_event.py`: commentary accepted onto the timeline.
    #[serde(rename = "session.commentary.appended")]
    CommentaryAppended { start_ms: u64, end_ms: u64 },
    /// `session_usage_updated_event.py`: cumulative usage; do not sum successive events.
    #[serde(rename = "session.usage.updated")]
    UsageUpdated { usage: SessionUsage },
    /// `session_closed_event.py`: terminal, with the reason and final usage.
    #[serde(rename = "session.closed")]
    SessionClosed {
        reason: CloseReason,
        usage: SessionUsage,
    },
    /// `error_event.py`.
    #[serde(rename = "error")]
    Error { error: LiveError },
    /// `info_event.py`: an informational notice.
    #[serde(rename = "info")]
    Info { code: String, message: String },
    /// Any other `type`; [`parse`] reports which.
    #[serde(other)]
    Unknown,
}

/// `session_resource.py` `SessionResource` (the parts the bridge reads; the rest is ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SessionResource {
    pub id: String,
    /// Unix time in seconds at which the session expires.
    pub expires_at: i64,
    pub model: String,
}

/// A transcript fragment. `start_ms`/`end_ms` are session-relative; for appended context
/// `end_ms` may equal `start_ms`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TranscriptDelta {
    pub delta: String,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// `delegation_created_event.py` `Delegation`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DelegationInfo {
    pub id: String,
    /// `client`, `responses` or `decisions`.
    pub target: String,
    #[serde(default)]
    pub response_id: Option<String>,
}

/// `session_usage.py` `SessionUsage`. `seconds` is a float in the SDK's model (described as
/// whole seconds); the active/paused breakdown is optional integers (WebRTC sessions).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct SessionUsage {
    pub seconds: f64,
    #[serde(default)]
    pub active_seconds: Option<u64>,
    #[serde(default)]
    pub paused_seconds: Option<u64>,
}

/// `session_closed_event.py` `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The application (or a hang-up request) closed it.
    CloseRequested,
    /// The session duration limit.
    Expired,
    /// A safety filter.
    Content,
    /// A graceful remote disconnect.
    RemoteHangup,
    /// An unexpected primary or upstream disconnection.
    ConnectionLost,
    /// A reason newer than this module.
    #[serde(other)]
    Other,
}

/// `error.py` `Error`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LiveError {
    #[serde(rename = "type")]
    pub kind: String,
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub client_event_id: Option<String>,
}

/// Error codes after which the session cannot go on: the call ends at once. The SDK types
/// `code` as a free string and lists none; these are the account-level codes OpenAI's API uses
/// (shared/protocol.md, "OpenAI GPT-Live", Errors).
pub const FATAL_CODES: [&str; 4] = [
    "invalid_api_key",
    "insufficient_quota",
    "account_deactivated",
    "billing_hard_limit_reached",
];

impl LiveError {
    /// Whether this error ends the call.
    pub fn is_fatal(&self) -> bool {
        FATAL_CODES.contains(&self.code.as_str())
    }
}

/// A function call the delegated Responses backend made: the inner
/// `response.output_item.done` whose `item` is a `function_call`
/// (`openai/types/responses/response_output_item_done_event.py`,
/// `response_function_tool_call.py`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall {
    pub delegation_id: Option<String>,
    pub call_id: String,
    pub name: String,
    /// JSON text, as the model wrote it.
    pub arguments: String,
}

impl ServerEvent {
    /// The function call this event carries, if it is a `response.event` wrapping a finished
    /// `function_call` output item. Missing fields mean "not a call" (logged by the caller).
    pub fn function_call(&self) -> Option<FunctionCall> {
        let ServerEvent::ResponseEvent {
            delegation_id,
            event,
        } = self
        else {
            return None;
        };
        if event.get("type")?.as_str()? != "response.output_item.done" {
            return None;
        }
        let item = event.get("item")?;
        if item.get("type")?.as_str()? != "function_call" {
            return None;
        }
        let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
        Some(FunctionCall {
            delegation_id: delegation_id.clone(),
            call_id: text("call_id")?,
            name: text("name")?,
            arguments: text("arguments")?,
        })
    }
}

/// Why a text is not a server event.
#[derive(Debug, thiserror::Error)]
#[error("not a GPT-Live server event: {0}")]
pub struct ParseError(#[from] serde_json::Error);

/// A parsed event, and for [`ServerEvent::Unknown`] the type it named (for the log).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub event: ServerEvent,
    pub unknown_type: Option<String>,
}

/// Parses one text frame. Malformed JSON, or a known type with a wrong shape, is an error;
/// an unknown type is [`ServerEvent::Unknown`].
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let event: ServerEvent = serde_json::from_str(text)?;
    let unknown_type = if event == ServerEvent::Unknown {
        #[derive(Deserialize)]
        struct TypeOnly {
            #[serde(rename = "type")]
            ty: String,
        }
        Some(serde_json::from_str::<TypeOnly>(text)?.ty)
    } else {
        None
    };
    Ok(Parsed {
        event,
        unknown_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_type_is_unknown_and_named() {
        let p = parse(r#"{"type":"transport.ringing","event_id":"e","session_id":"s"}"#)
            .expect("parses");
        assert_eq!(p.event, ServerEvent::Unknown);
        assert_eq!(p.unknown_type.as_deref(), Some("transport.ringing"));
    }

    #[test]
    fn a_known_type_with_a_wrong_shape_is_an_error() {
        assert!(parse(r#"{"type":"session.output_transcript.delta","delta":"hi"}"#).is_err());
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"no_type":1}"#).is_err());
    }

    #[test]
    fn a_wrapped_function_call_is_read_and_other_wrapped_events_are_not() {
        let call = parse(
            r#"{"type":"response.event","event_id":"e1","delegation_id":"del_1","event":
            {"type":"response.output_item.done","output_index":0,"sequence_number":3,
             "item":{"type":"function_call","call_id":"call_1","name":"lookup","arguments":"{\"q\":1}"}}}"#,
        )
        .expect("parses");
        assert_eq!(
            call.event.function_call(),
            Some(FunctionCall {
                delegation_id: Some("del_1".into()),
                call_id: "call_1".into(),
                name: "lookup".into(),
                arguments: "{\"q\":1}".into(),
            })
        );
        let text = parse(
            r#"{"type":"response.event","event_id":"e2","event":{"type":"response.output_text.delta","delta":"x"}}"#,
        )
        .expect("parses");
        assert_eq!(text.event.function_call(), None);
    }

    #[test]
    fn fatal_codes_end_the_call_and_others_do_not() {
        let e = |code: &str| LiveError {
            kind: "invalid_request_error".into(),
            code: code.into(),
            message: String::new(),
            param: None,
            client_event_id: None,
        };
        assert!(e("insufficient_quota").is_fatal());
        assert!(!e("unknown_parameter").is_fatal());
    }

    #[test]
    fn a_newer_close_reason_is_other() {
        let p = parse(
            r#"{"type":"session.closed","event_id":"e","reason":"moved","usage":{"seconds":3.0},
            "session":{"id":"s","expires_at":1,"model":"gpt-live-1","status":"active"}}"#,
        )
        .expect("parses");
        assert!(matches!(
            p.event,
            ServerEvent::SessionClosed {
                reason: CloseReason::Other,
                ..
            }
        ));
    }
}
