//! Session configuration and its JSON in each dialect.
//!
//! GA (`session.type = "realtime"`, nested `audio.input` / `audio.output`) is the default.
//! Beta (flat `input_audio_format`, `modalities`, `temperature`, ...) is only for self-hosted
//! Realtime-compatible servers: OpenAI closes beta-shaped sessions with
//! `beta_api_shape_disabled` since May 2026 (protocol.md).

use serde_json::{json, Map, Value};

use super::settings::SessionSettings;

/// Which shape of the Realtime protocol the upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Ga,
    Beta,
}

/// The audio format on the upstream socket (both directions use the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// G.711 μ-law at 8 kHz: Twilio's bytes pass through untouched.
    Pcmu,
    /// PCM16 little-endian mono at 24 kHz: the bridge transcodes and resamples.
    Pcm24k,
}

impl AudioFormat {
    /// Upstream bytes per millisecond of audio.
    pub const fn bytes_per_ms(self) -> u64 {
        match self {
            AudioFormat::Pcmu => 8,
            AudioFormat::Pcm24k => 48,
        }
    }

    fn ga_json(self) -> Value {
        match self {
            AudioFormat::Pcmu => json!({"type": "audio/pcmu"}),
            AudioFormat::Pcm24k => json!({"type": "audio/pcm", "rate": 24000}),
        }
    }

    fn beta_name(self) -> &'static str {
        match self {
            AudioFormat::Pcmu => "g711_ulaw",
            AudioFormat::Pcm24k => "pcm16",
        }
    }
}

/// Voice activity detection on the server side.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnDetection {
    ServerVad {
        threshold: f32,
        prefix_padding_ms: u32,
        silence_duration_ms: u32,
        idle_timeout_ms: Option<u32>,
        create_response: bool,
        interrupt_response: bool,
    },
    SemanticVad {
        /// low | medium | high | auto
        eagerness: String,
        create_response: bool,
        interrupt_response: bool,
    },
}

impl Default for TurnDetection {
    fn default() -> Self {
        TurnDetection::ServerVad {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
            idle_timeout_ms: None,
            create_response: true,
            interrupt_response: true,
        }
    }
}

impl TurnDetection {
    fn to_json(&self) -> Value {
        match self {
            TurnDetection::ServerVad {
                threshold,
                prefix_padding_ms,
                silence_duration_ms,
                idle_timeout_ms,
                create_response,
                interrupt_response,
            } => {
                let mut v = json!({"type": "server_vad", "threshold": threshold,
                    "prefix_padding_ms": prefix_padding_ms, "silence_duration_ms": silence_duration_ms,
                    "create_response": create_response, "interrupt_response": interrupt_response});
                if let (Some(ms), Some(obj)) = (idle_timeout_ms, v.as_object_mut()) {
                    obj.insert("idle_timeout_ms".into(), json!(ms));
                }
                v
            }
            TurnDetection::SemanticVad {
                eagerness,
                create_response,
                interrupt_response,
            } => json!({"type": "semantic_vad", "eagerness": eagerness,
                        "create_response": create_response, "interrupt_response": interrupt_response}),
        }
    }
}

/// What the bridge asks of the model's session. Validated at start-up (see `config`).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    pub model: Option<String>,
    pub instructions: String,
    pub voice: String,
    pub audio_format: AudioFormat,
    pub turn_detection: TurnDetection,
    pub transcription_model: Option<String>,
    /// `None` = server default; `Some(None)` = "inf"; `Some(Some(n))` = n (1..=4096).
    pub max_output_tokens: Option<Option<u32>>,
    pub speed: Option<f32>,
    /// near_field | far_field
    pub noise_reduction: Option<String>,
    /// Beta only (GA has no temperature).
    pub temperature: Option<f32>,
    /// Function tools declared to the model (`{"type":"function","name",..}`; the same shape
    /// in both dialects), with `tool_choice: "auto"` when there are any.
    pub tools: Vec<Value>,
    /// Reasoning, parallel tool calls, stored prompt, truncation, tool choice, tracing, MCP
    /// servers (`settings.rs`); unset by default.
    pub settings: SessionSettings,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            model: None,
            instructions: "You are a helpful, concise voice assistant on a phone call.".into(),
            voice: "marin".into(),
            audio_format: AudioFormat::Pcmu,
            turn_detection: TurnDetection::default(),
            transcription_model: None,
            max_output_tokens: None,
            speed: None,
            noise_reduction: None,
            temperature: None,
            tools: Vec::new(),
            settings: SessionSettings::default(),
        }
    }
}

impl SessionConfig {
    /// Whether the server cancels its own response when the caller starts speaking.
    pub fn interrupt_response(&self) -> bool {
        match &self.turn_detection {
            TurnDetection::ServerVad {
                interrupt_response, ..
            }
            | TurnDetection::SemanticVad {
                interrupt_response, ..
            } => *interrupt_response,
        }
    }

    /// Whether the server answers a caller turn by itself (`create_response`).
    pub fn create_response(&self) -> bool {
        match &self.turn_detection {
            TurnDetection::ServerVad {
                create_response, ..
            }
            | TurnDetection::SemanticVad {
                create_response, ..
            } => *create_response,
        }
    }

    /// The server neither cancels its answer on a caller onset nor answers a turn by itself:
    /// the bridge decides both (confirmed barge-in). Both flags exist in both dialects'
    /// `turn_detection` (`server_vad` and `semantic_vad`; shared/protocol.md, the SDK's
    /// `RealtimeAudioInputTurnDetection` / beta `TurnDetection`).
    pub fn bridge_decides_turns(&mut self) {
        match &mut self.turn_detection {
            TurnDetection::ServerVad {
                create_response,
                interrupt_response,
                ..
            }
            | TurnDetection::SemanticVad {
                create_response,
                interrupt_response,
                ..
            } => {
                *create_response = false;
                *interrupt_response = false;
            }
        }
    }

    /// The `session` object of a `session.update` in the given dialect.
    pub fn to_json(&self, dialect: Dialect) -> Value {
        let max_tokens = self.max_output_tokens.map(|m| match m {
            Some(n) => json!(n),
            None => json!("inf"),
        });
        let mut s = Map::new();
        match dialect {
            Dialect::Ga => {
                s.insert("type".into(), json!("realtime"));
                if let Some(m) = &self.model {
                    s.insert("model".into(), json!(m));
                }
                s.insert("output_modalities".into(), json!(["audio"]));
                // With a stored prompt and no instructions of our own, the prompt's apply.
                if !(self.instructions.is_empty() && self.settings.prompt.is_some()) {
                    s.insert("instructions".into(), json!(self.instructions));
                }
                let mut input = Map::new();
                input.insert("format".into(), self.audio_format.ga_json());
                input.insert("turn_detection".into(), self.turn_detection.to_json());
                if let Some(t) = &self.transcription_model {
                    input.insert("transcription".into(), json!({"model": t}));
                }
                if let Some(n) = &self.noise_reduction {
                    input.insert("noise_reduction".into(), json!({"type": n}));
                }
                let mut output = Map::new();
                output.insert("format".into(), self.audio_format.ga_json());
                output.insert("voice".into(), json!(self.voice));
                if let Some(sp) = self.speed {
                    output.insert("speed".into(), json!(sp));
                }
                s.insert("audio".into(), json!({"input": input, "output": output}));
                if let Some(m) = max_tokens {
                    s.insert("max_output_tokens".into(), m);
                }
                self.settings.write_ga(&mut s);
            }
            Dialect::Beta => {
                // Beta needs "text" alongside "audio" in modalities.
                s.insert("modalities".into(), json!(["audio", "text"]));
                if let Some(m) = &self.model {
                    s.insert("model".into(), json!(m));
                }
                s.insert("instructions".into(), json!(self.instructions));
                s.insert("voice".into(), json!(self.voice));
                s.insert(
                    "input_audio_format".into(),
                    json!(self.audio_format.beta_name()),
                );
                s.insert(
                    "output_audio_format".into(),
                    json!(self.audio_format.beta_name()),
                );
                s.insert("turn_detection".into(), self.turn_detection.to_json());
                if let Some(t) = &self.transcription_model {
                    s.insert("input_audio_transcription".into(), json!({"model": t}));
                }
                if let Some(t) = self.temperature {
                    s.insert("temperature".into(), json!(t));
                }
                if let Some(sp) = self.speed {
                    s.insert("speed".into(), json!(sp));
                }
                if let Some(m) = max_tokens {
                    s.insert("max_response_output_tokens".into(), m);
                }
                self.settings.write_beta(&mut s);
            }
        }
        let mut tools = self.tools.clone();
        if dialect == Dialect::Ga {
            // Remote MCP servers are GA only (the beta `SessionTool` is a function).
            tools.extend(self.settings.mcp_servers.iter().map(|m| m.to_json()));
        }
        let choice = self.settings.tool_choice_json(dialect == Dialect::Beta);
        if !tools.is_empty() {
            s.insert("tools".into(), Value::Array(tools));
            s.insert(
                "tool_choice".into(),
                choice.unwrap_or_else(|| json!("auto")),
            );
        } else if let Some(c) = choice {
            s.insert("tool_choice".into(), c);
        }
        Value::Object(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ga_session_has_the_documented_shape() {
        let cfg = SessionConfig {
            transcription_model: Some("gpt-4o-transcribe".into()),
            max_output_tokens: Some(None),
            temperature: Some(0.8),
            ..Default::default()
        };
        let v = cfg.to_json(Dialect::Ga);
        assert_eq!(v["type"], "realtime");
        assert_eq!(v["audio"]["input"]["format"], json!({"type":"audio/pcmu"}));
        assert_eq!(v["audio"]["output"]["voice"], "marin");
        assert_eq!(v["audio"]["input"]["turn_detection"]["type"], "server_vad");
        assert_eq!(
            v["audio"]["input"]["transcription"]["model"],
            "gpt-4o-transcribe"
        );
        assert_eq!(v["max_output_tokens"], "inf");
        assert_eq!(v["output_modalities"], json!(["audio"]));
        // GA has no temperature and no beta-only flat fields.
        for beta_only in ["temperature", "input_audio_format", "modalities", "voice"] {
            assert!(v.get(beta_only).is_none(), "{beta_only}");
        }
        let pcm = SessionConfig {
            audio_format: AudioFormat::Pcm24k,
            ..Default::default()
        };
        assert_eq!(
            pcm.to_json(Dialect::Ga)["audio"]["output"]["format"],
            json!({"type":"audio/pcm","rate":24000})
        );
    }

    #[test]
    fn beta_session_is_flat() {
        let cfg = SessionConfig {
            audio_format: AudioFormat::Pcm24k,
            temperature: Some(0.7),
            turn_detection: TurnDetection::SemanticVad {
                eagerness: "high".into(),
                create_response: true,
                interrupt_response: false,
            },
            ..Default::default()
        };
        let v = cfg.to_json(Dialect::Beta);
        assert_eq!(v["input_audio_format"], "pcm16");
        assert_eq!(v["output_audio_format"], "pcm16");
        assert_eq!(v["modalities"], json!(["audio", "text"]));
        assert_eq!(v["turn_detection"]["eagerness"], "high");
        assert!((v["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
        assert!(v.get("type").is_none() && v.get("audio").is_none());
        assert!(!cfg.interrupt_response());
    }

    #[test]
    fn tools_are_declared_in_both_dialects() {
        let tool = json!({"type":"function","name":"lookup","description":"d",
            "parameters":{"type":"object","properties":{}}});
        let cfg = SessionConfig {
            tools: vec![tool.clone()],
            ..Default::default()
        };
        for d in [Dialect::Ga, Dialect::Beta] {
            let v = cfg.to_json(d);
            assert_eq!(v["tools"], json!([tool]), "{d:?}");
            assert_eq!(v["tool_choice"], "auto", "{d:?}");
        }
        let none = SessionConfig::default().to_json(Dialect::Ga);
        assert!(none.get("tools").is_none() && none.get("tool_choice").is_none());
    }
}
