//! Client events the bridge sends to GPT-Live. Field names and shapes follow the SDK's models
//! in `openai/types/live/` (file named beside each type). The real server rejects unknown
//! fields, so optional ones are left out rather than sent as `null`, except where the SDK says
//! "required, nullable".

use serde::Serialize;
use serde_json::Value;

/// One client event (`client_event.py`, the `ClientEvent` union, discriminated by `type`).
/// Only the events the bridge needs; mute/unmute, instructions/thinking append and the
/// `decision.*` commands exist in the API but are not built here.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ClientEvent {
    /// `session_start_event.py`: first message on the socket; wait for `session.started`
    /// before anything else.
    #[serde(rename = "session.start")]
    SessionStart { session: SessionConfig },
    /// `input_audio_append_event.py`: base64 audio in the startup format, no container, no
    /// acknowledgement. Stream continuously (silence included).
    #[serde(rename = "session.input_audio.append")]
    InputAudioAppend { audio: String },
    /// `session_update_event.py`: only delegation (and triggers) can change mid-session.
    #[serde(rename = "session.update")]
    SessionUpdate { session: SessionUpdateConfig },
    /// `response_item_create_event.py`: an input item for the Responses backend; the bridge
    /// sends function-call results.
    #[serde(rename = "response.item.create")]
    ResponseItemCreate { item: FunctionCallOutput },
    /// `response_create_event.py`: continue the delegated response once a batch of tool
    /// results is in (peers send it once per batch).
    #[serde(rename = "response.create")]
    ResponseCreate,
    /// `commentary_append_event.py`: speakable context (≤ 500 tokens). `delegation_id` is
    /// "required, nullable": null for general context, and non-null ids are refused with
    /// Responses delegation, so it is always sent, usually as null.
    #[serde(rename = "session.commentary.append")]
    CommentaryAppend {
        content: String,
        delegation_id: Option<String>,
    },
    /// `output_audio_fixture_play_event.py`: prerecorded raw PCM16 LE 24 kHz mono (whatever
    /// the session's format), ≤ 30 s, base64. Interrupts model speech; input is dropped while
    /// it plays.
    #[serde(rename = "session.output_audio.fixture.play")]
    FixturePlay { audio: String },
    /// `session_close_event.py`: ask for `session.closed` with the final usage.
    #[serde(rename = "session.close")]
    SessionClose,
}

impl ClientEvent {
    /// `session.input_audio.append` for raw audio bytes (μ-law here).
    pub fn append(audio: &[u8]) -> ClientEvent {
        use base64::Engine as _;
        ClientEvent::InputAudioAppend {
            audio: base64::engine::general_purpose::STANDARD.encode(audio),
        }
    }

    /// `session.output_audio.fixture.play` for PCM16 LE 24 kHz samples.
    pub fn fixture_play(pcm16_24k: &[i16]) -> ClientEvent {
        use base64::Engine as _;
        let bytes: Vec<u8> = pcm16_24k.iter().flat_map(|s| s.to_le_bytes()).collect();
        ClientEvent::FixturePlay {
            audio: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// A function call's result, as `response.item.create`.
    pub fn function_output(call_id: &str, output: &str) -> ClientEvent {
        ClientEvent::ResponseItemCreate {
            item: FunctionCallOutput {
                kind: FunctionCallOutputType::FunctionCallOutput,
                call_id: call_id.to_string(),
                output: output.to_string(),
            },
        }
    }

    /// Spoken context for the model (greeting, fixed lines): `session.commentary.append`
    /// with a null `delegation_id`.
    pub fn commentary(content: &str) -> ClientEvent {
        ClientEvent::CommentaryAppend {
            content: content.to_string(),
            delegation_id: None,
        }
    }

    /// The JSON text to send.
    pub fn to_text(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys, no floats.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `session_config.py` `SessionConfig`: what `session.start` carries. Model, instructions,
/// audio and input are immutable after startup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionConfig {
    pub model: String,
    /// Limited to 16,384 client-supplied tokens; blank uses server defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    pub audio: Audio,
    /// Omitted: tasks are delegated to the application (`client`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegation: Option<Delegation>,
    /// Text-only history seeding the session (≤ 128 messages, ~8,192 rendered tokens).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub input: Vec<InitialItem>,
}

/// `session_config.py` `Audio`: the format (primary WebSockets only) and the output voice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Audio {
    pub format: AudioFormat,
    pub output: AudioOutput,
}

/// `audio_format.py`: one format for both directions. `audio/pcmu` and `audio/pcma` take any
/// integer rate in the schema ("G.711 audio uses 8000 Hz"); `audio/pcm` only 16000 or 24000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AudioFormat {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub rate: u32,
}

impl AudioFormat {
    /// G.711 μ-law 8 kHz: Twilio's own format, so no transcoding either way.
    pub const PCMU_8K: AudioFormat = AudioFormat {
        kind: "audio/pcmu",
        rate: 8000,
    };
}

/// `session_config.py` `AudioOutput`: a built-in voice name (defaults to `marin`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioOutput {
    pub voice: String,
}

/// `session_config.py` `DelegationResponses`: tasks go to a Responses model the session runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum Delegation {
    #[serde(rename = "responses")]
    Responses { responses: ResponsesDelegation },
}

/// `responses_delegation_config.py` `ResponsesDelegationConfig` (the subset the bridge sets).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponsesDelegation {
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// `function_tool.py` `FunctionTool` objects: `{type:"function", name, description,
    /// parameters, strict}` and nothing else.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
    /// `"auto" | "none" | "required"` (the SDK also allows tool objects; not built here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
}

/// `session_update_config.py` `SessionUpdateConfig`: sparse; the delegation type cannot change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionUpdateConfig {
    pub delegation: DelegationUpdate,
}

/// `session_update_config.py` `DelegationResponses` (update form: `responses` optional).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum DelegationUpdate {
    #[serde(rename = "responses")]
    Responses {
        responses: ResponsesDelegationUpdate,
    },
}

/// `responses_delegation_update_config.py`: omitted settings keep their values.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResponsesDelegationUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
}

/// `initial_item.py` `InitialItem`: one text part per message, discriminated by `role`.
/// User and developer text is `input_text`, assistant text `output_text`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InitialItem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: Role,
    pub content: [TextPart; 1],
}

/// Who said a history message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Developer,
    User,
    Assistant,
}

/// One text part of an [`InitialItem`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextPart {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
}

impl InitialItem {
    /// A history message from `role` saying `text`.
    pub fn new(role: Role, text: &str) -> InitialItem {
        let kind = match role {
            Role::Assistant => "output_text",
            Role::Developer | Role::User => "input_text",
        };
        InitialItem {
            kind: "message",
            role,
            content: [TextPart {
                kind,
                text: text.to_string(),
            }],
        }
    }
}

/// `openai/types/responses/response_input_item.py` `FunctionCallOutput` (what
/// `response.item.create` carries for a tool result).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCallOutput {
    #[serde(rename = "type")]
    pub kind: FunctionCallOutputType,
    pub call_id: String,
    pub output: String,
}

/// The only item type the bridge creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FunctionCallOutputType {
    #[serde(rename = "function_call_output")]
    FunctionCallOutput,
}
