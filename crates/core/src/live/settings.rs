//! What a profile says about a GPT-Live session, and the `session.start` built from it. Pure:
//! the same settings always give the same event; a wrong setting is an error that names it.

use serde_json::{Map, Value};

use super::client::{
    Audio, AudioFormat, AudioOutput, ClientEvent, Delegation, InitialItem, ResponsesDelegation,
    Role, SessionConfig,
};

/// The Live model used when a profile names none.
pub const DEFAULT_MODEL: &str = "gpt-live-1";
/// The server's default voice (`session_config.py` `AudioOutput.voice`: "Defaults to `marin`").
pub const DEFAULT_VOICE: &str = "marin";
/// At most this many `input` history messages (`session_config.py` `input`).
pub const MAX_INPUT_MESSAGES: usize = 128;
/// Function names the Responses API accepts: letters, digits, `_` and `-`, at most 64
/// (the same rule the bridge already enforces for Realtime tools).
const MAX_TOOL_NAME: usize = 64;
/// The keys `function_tool.py` `FunctionTool` declares; anything else would be refused.
const FUNCTION_TOOL_KEYS: [&str; 5] = ["type", "name", "description", "parameters", "strict"];

/// The settings of one Live session.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSettings {
    pub model: String,
    pub voice: String,
    /// Frontend instructions (voice, conversation, when to delegate); `None`: server default.
    pub instructions: Option<String>,
    /// Tools through a Responses backend; `None`: no tools.
    pub delegation: Option<DelegationSettings>,
    /// Conversation so far, seeding a new session (a reconnect).
    pub history: Vec<(Role, String)>,
}

/// Responses delegation: the backend model and the functions it may call.
#[derive(Debug, Clone, PartialEq)]
pub struct DelegationSettings {
    pub model: String,
    /// Backend instructions (business rules, tool workflows).
    pub instructions: Option<String>,
    /// Function declarations, `{"type":"function","name",..}` (the shape the Realtime session
    /// declares too, so one list serves both upstreams).
    pub tools: Vec<Value>,
    /// `auto`, `none` or `required`.
    pub tool_choice: Option<String>,
    pub parallel_tool_calls: Option<bool>,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            model: DEFAULT_MODEL.to_string(),
            voice: DEFAULT_VOICE.to_string(),
            instructions: None,
            delegation: None,
            history: Vec::new(),
        }
    }
}

/// A setting that cannot make a valid `session.start`; the text names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("live_model: must not be empty")]
    NoModel,
    #[error("voice: must not be empty")]
    NoVoice,
    #[error("live_delegation.model: must not be empty")]
    NoDelegationModel,
    #[error("tools[{index}]: {why}")]
    BadTool { index: usize, why: String },
    #[error("tools: `{0}` is declared twice")]
    DuplicateTool(String),
    #[error("tool_choice: `{0}` is not auto, none or required")]
    BadToolChoice(String),
    #[error("input: {0} history messages, at most {MAX_INPUT_MESSAGES}")]
    TooMuchHistory(usize),
}

impl LiveSettings {
    /// The `session.start` event: μ-law 8 kHz both ways, the voice, the instructions, Responses
    /// delegation with the declared functions, and the history as `input`.
    pub fn session_start(&self) -> Result<ClientEvent, SettingsError> {
        if self.model.trim().is_empty() {
            return Err(SettingsError::NoModel);
        }
        if self.voice.trim().is_empty() {
            return Err(SettingsError::NoVoice);
        }
        if self.history.len() > MAX_INPUT_MESSAGES {
            return Err(SettingsError::TooMuchHistory(self.history.len()));
        }
        let delegation = match &self.delegation {
            Some(d) => Some(d.to_delegation()?),
            None => None,
        };
        Ok(ClientEvent::SessionStart {
            session: SessionConfig {
                model: self.model.clone(),
                instructions: self.instructions.clone().filter(|s| !s.trim().is_empty()),
                audio: Audio {
                    format: AudioFormat::PCMU_8K,
                    output: AudioOutput {
                        voice: self.voice.clone(),
                    },
                },
                delegation,
                input: self
                    .history
                    .iter()
                    .map(|(role, text)| InitialItem::new(*role, text))
                    .collect(),
            },
        })
    }
}

impl DelegationSettings {
    fn to_delegation(&self) -> Result<Delegation, SettingsError> {
        if self.model.trim().is_empty() {
            return Err(SettingsError::NoDelegationModel);
        }
        if let Some(c) = &self.tool_choice {
            if !matches!(c.as_str(), "auto" | "none" | "required") {
                return Err(SettingsError::BadToolChoice(c.clone()));
            }
        }
        let mut names: Vec<&str> = Vec::new();
        let mut tools = Vec::with_capacity(self.tools.len());
        for (index, tool) in self.tools.iter().enumerate() {
            let bad = |why: &str| SettingsError::BadTool {
                index,
                why: why.to_string(),
            };
            let t = function_tool(tool).map_err(bad)?;
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
            if names.contains(&name) {
                return Err(SettingsError::DuplicateTool(name.to_string()));
            }
            names.push(name);
            tools.push(t);
        }
        Ok(Delegation::Responses {
            responses: ResponsesDelegation {
                model: self.model.clone(),
                instructions: self.instructions.clone(),
                tools,
                tool_choice: self.tool_choice.clone(),
                parallel_tool_calls: self.parallel_tool_calls,
            },
        })
    }
}

/// A function declaration cut to `FunctionTool`'s keys, or why it is not one.
fn function_tool(tool: &Value) -> Result<Value, &'static str> {
    let obj = tool.as_object().ok_or("not an object")?;
    if obj.get("type").and_then(Value::as_str) != Some("function") {
        return Err("type is not \"function\"");
    }
    let name = obj.get("name").and_then(Value::as_str).ok_or("no name")?;
    let name_ok = !name.is_empty()
        && name.len() <= MAX_TOOL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_ok {
        return Err("name must be 1-64 letters, digits, _ or -");
    }
    if obj.get("parameters").is_some_and(|p| !p.is_object()) {
        return Err("parameters is not a JSON Schema object");
    }
    let kept: Map<String, Value> = obj
        .iter()
        .filter(|(k, v)| FUNCTION_TOOL_KEYS.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Value::Object(kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_tools(tools: Vec<Value>) -> LiveSettings {
        LiveSettings {
            delegation: Some(DelegationSettings {
                model: "gpt-5-mini".into(),
                instructions: None,
                tools,
                tool_choice: Some("auto".into()),
                parallel_tool_calls: Some(true),
            }),
            ..LiveSettings::default()
        }
    }

    #[test]
    fn the_start_event_asks_for_pcmu_both_ways_with_the_voice() {
        let v = serde_json::to_value(LiveSettings::default().session_start().expect("valid"))
            .expect("json");
        assert_eq!(v["type"], "session.start");
        assert_eq!(
            v["session"]["audio"],
            json!({"format": {"type": "audio/pcmu", "rate": 8000}, "output": {"voice": "marin"}})
        );
        assert!(v["session"].get("delegation").is_none());
        assert!(v["session"].get("input").is_none());
    }

    #[test]
    fn tools_keep_only_the_keys_the_api_declares() {
        let tool = json!({"type": "function", "name": "lookup", "description": "d",
            "parameters": {"type": "object"}, "x-extra": 1});
        let v = serde_json::to_value(with_tools(vec![tool]).session_start().expect("valid"))
            .expect("json");
        assert_eq!(
            v["session"]["delegation"]["responses"]["tools"],
            json!([{"type": "function", "name": "lookup", "description": "d",
                "parameters": {"type": "object"}}])
        );
    }

    #[test]
    fn wrong_settings_name_the_key() {
        let s = LiveSettings {
            model: " ".into(),
            ..LiveSettings::default()
        };
        assert!(s
            .session_start()
            .unwrap_err()
            .to_string()
            .starts_with("live_model"));
        let dup = json!({"type": "function", "name": "a"});
        assert_eq!(
            with_tools(vec![dup.clone(), dup]).session_start(),
            Err(SettingsError::DuplicateTool("a".into()))
        );
        let bad = with_tools(vec![json!({"type": "function", "name": "a b"})]);
        assert!(matches!(
            bad.session_start(),
            Err(SettingsError::BadTool { index: 0, .. })
        ));
        let mut choice = with_tools(vec![]);
        if let Some(d) = choice.delegation.as_mut() {
            d.tool_choice = Some("sometimes".into());
        }
        assert!(choice
            .session_start()
            .unwrap_err()
            .to_string()
            .starts_with("tool_choice"));
        let long = LiveSettings {
            history: vec![(Role::User, "hi".into()); MAX_INPUT_MESSAGES + 1],
            ..LiveSettings::default()
        };
        assert_eq!(
            long.session_start(),
            Err(SettingsError::TooMuchHistory(MAX_INPUT_MESSAGES + 1))
        );
    }
}
