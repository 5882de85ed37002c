//! What can be set: every key of the file with its type, the environment's short aliases, the
//! file as written ([`Raw`]), and how a text from the environment becomes a typed value.

use serde::Deserialize;

use super::{invalid, settings, tools, ConfigError};

#[derive(Clone, Copy)]
pub(super) enum Kind {
    Str,
    Int,
    Float,
    Bool,
    /// Text, or (starting with `{` or `[`) JSON for a table or list the file would hold.
    StrOrJson,
}

/// Every key of the file; each also reads `CALLBRIDGE_<KEY>` from the environment.
pub(super) const KEYS: &[(&str, Kind)] = &[
    ("listen", Kind::Str),
    ("public_url", Kind::Str),
    ("realtime_url", Kind::Str),
    ("openai_api_key", Kind::Str),
    ("auth", Kind::Str),
    ("audio_mode", Kind::Str),
    ("dialect", Kind::Str),
    ("model", Kind::Str),
    ("instructions", Kind::Str),
    ("voice", Kind::Str),
    ("vad", Kind::Str),
    ("vad_threshold", Kind::Float),
    ("vad_prefix_padding_ms", Kind::Int),
    ("vad_silence_duration_ms", Kind::Int),
    ("vad_idle_timeout_ms", Kind::Int),
    ("vad_eagerness", Kind::Str),
    ("vad_create_response", Kind::Bool),
    ("vad_interrupt_response", Kind::Bool),
    ("transcription_model", Kind::Str),
    ("max_output_tokens", Kind::Str),
    ("speed", Kind::Float),
    ("noise_reduction", Kind::Str),
    ("temperature", Kind::Float),
    ("greeting", Kind::Str),
    ("say_before_connect", Kind::Str),
    ("apology", Kind::Str),
    ("twiml_template", Kind::Str),
    ("barge_in", Kind::Str),
    ("bargein_min_speech_ms", Kind::Int),
    ("bargein_max_backchannel_ms", Kind::Int),
    ("echo_suppression", Kind::Bool),
    ("max_calls", Kind::Int),
    ("max_http_connections", Kind::Int),
    ("http_header_timeout_ms", Kind::Int),
    ("max_gap_fill_ms", Kind::Int),
    ("prebuffer_limit_ms", Kind::Int),
    ("upstream_connect_timeout_ms", Kind::Int),
    ("twilio_idle_timeout_ms", Kind::Int),
    ("record_dir", Kind::Str),
    ("log_format", Kind::Str),
    ("twilio_auth_token", Kind::Str),
    ("dtmf_to_model", Kind::Bool),
    ("dtmf_gap_ms", Kind::Int),
    ("upstream_retry_s", Kind::Int),
    ("session_rotate_after_secs", Kind::Int),
    ("twilio_webhook_shared_key", Kind::Str),
    ("end_call", Kind::Bool),
    ("send_dtmf", Kind::Bool),
    ("transfer_targets", Kind::Str),
    ("transfer_caller_id", Kind::Str),
    ("filler_audio", Kind::Str),
    ("goodbye_timeout_ms", Kind::Int),
    ("allow_unsigned", Kind::Bool),
    ("reject_reason", Kind::Str),
    ("twilio_api_base", Kind::Str),
    ("twilio_api_key", Kind::Str),
    ("twilio_api_secret", Kind::Str),
    ("twilio_account_sid", Kind::Str),
    ("softphone", Kind::Bool),
    ("softphone_token", Kind::Str),
    ("console_token", Kind::Str),
    ("tool_secret", Kind::Str),
    ("report_url", Kind::Str),
    ("report_spool_dir", Kind::Str),
    ("report_retry_max_s", Kind::Int),
    ("report_retry_min_ms", Kind::Int),
    ("report_spool_max", Kind::Int),
    ("report_dead_max", Kind::Int),
    ("report_dead_max_bytes", Kind::Int),
    ("report_dead_max_age_s", Kind::Int),
    ("api_token", Kind::Str),
    ("twilio_recording", Kind::Str),
    ("setup_timeout_ms", Kind::Int),
    ("max_call_seconds", Kind::Int),
    ("drain_goodbye", Kind::Str),
    ("drain_goodbye_timeout_ms", Kind::Int),
    ("prewarm", Kind::Bool),
    ("prewarm_ttl_s", Kind::Int),
    ("voicemail_message", Kind::Str),
    ("silence_reprompt_s", Kind::Int),
    ("silence_hangup_s", Kind::Int),
    ("silence_reprompt_instructions", Kind::Str),
    ("silence_goodbye_instructions", Kind::Str),
    ("reasoning_effort", Kind::Str),
    ("parallel_tool_calls", Kind::Bool),
    ("prompt_id", Kind::Str),
    ("prompt_version", Kind::Str),
    ("prompt_variables", Kind::StrOrJson),
    ("truncation", Kind::StrOrJson),
    ("tool_choice", Kind::StrOrJson),
    ("tracing", Kind::StrOrJson),
    ("mcp_servers", Kind::StrOrJson),
    ("redact", Kind::StrOrJson),
];

/// Short names operators already use, read as well as the `CALLBRIDGE_*` form.
pub(super) const ALIASES: &[(&str, &str)] = &[
    ("OPENAI_API_KEY", "openai_api_key"),
    ("REALTIME_URL", "realtime_url"),
    ("PUBLIC_URL", "public_url"),
    ("TWILIO_AUTH_TOKEN", "twilio_auth_token"),
    ("TWILIO_ACCOUNT_SID", "twilio_account_sid"),
];

/// Every configuration key with its environment variable, for `serve --help`.
pub fn keys_help() -> String {
    let mut s = String::from(
        "Configuration keys (TOML file key / environment variable; see callbridge.toml.example):\n",
    );
    for (key, kind) in KEYS.iter().chain(super::cluster::KEYS) {
        let kind = match kind {
            Kind::Str => "text",
            Kind::Int => "integer",
            Kind::Float => "number",
            Kind::Bool => "true|false",
            Kind::StrOrJson => "text or JSON",
        };
        let alias = ALIASES
            .iter()
            .find(|(_, k)| k == key)
            .map(|(var, _)| format!(" or {var}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "  {key:<28} CALLBRIDGE_{}{alias} ({kind})\n",
            key.to_ascii_uppercase()
        ));
    }
    s
}

/// The file as written: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) listen: Option<String>,
    pub(super) public_url: Option<String>,
    pub(super) realtime_url: Option<String>,
    pub(super) openai_api_key: Option<String>,
    pub(super) auth: Option<String>,
    pub(super) audio_mode: Option<String>,
    pub(super) dialect: Option<String>,
    pub(super) model: Option<String>,
    pub(super) instructions: Option<String>,
    pub(super) voice: Option<String>,
    pub(super) vad: Option<String>,
    pub(super) vad_threshold: Option<f64>,
    pub(super) vad_prefix_padding_ms: Option<i64>,
    pub(super) vad_silence_duration_ms: Option<i64>,
    pub(super) vad_idle_timeout_ms: Option<i64>,
    pub(super) vad_eagerness: Option<String>,
    pub(super) vad_create_response: Option<bool>,
    pub(super) vad_interrupt_response: Option<bool>,
    pub(super) transcription_model: Option<String>,
    pub(super) max_output_tokens: Option<toml::Value>,
    pub(super) speed: Option<f64>,
    pub(super) noise_reduction: Option<String>,
    pub(super) temperature: Option<f64>,
    pub(super) greeting: Option<String>,
    pub(super) say_before_connect: Option<String>,
    pub(super) apology: Option<String>,
    pub(super) twiml_template: Option<String>,
    /// `"confirm"`, `"server"`, `"off"`, or the older boolean (see `bargein.rs`).
    pub(super) barge_in: Option<toml::Value>,
    pub(super) bargein_min_speech_ms: Option<i64>,
    pub(super) bargein_max_backchannel_ms: Option<i64>,
    pub(super) echo_suppression: Option<bool>,
    pub(super) max_calls: Option<i64>,
    pub(super) max_http_connections: Option<i64>,
    pub(super) http_header_timeout_ms: Option<i64>,
    pub(super) max_gap_fill_ms: Option<i64>,
    pub(super) prebuffer_limit_ms: Option<i64>,
    pub(super) upstream_connect_timeout_ms: Option<i64>,
    pub(super) twilio_idle_timeout_ms: Option<i64>,
    pub(super) record_dir: Option<String>,
    pub(super) log_format: Option<String>,
    pub(super) twilio_auth_token: Option<String>,
    pub(super) twilio_webhook_shared_key: Option<String>,
    pub(super) dtmf_to_model: Option<bool>,
    pub(super) dtmf_gap_ms: Option<i64>,
    pub(super) tools: Option<Vec<tools::RawTool>>,
    pub(super) end_call: Option<bool>,
    pub(super) send_dtmf: Option<bool>,
    pub(super) transfer_targets: Option<toml::Value>,
    pub(super) transfer_caller_id: Option<String>,
    pub(super) filler_audio: Option<String>,
    pub(super) goodbye_timeout_ms: Option<i64>,
    pub(super) allow_unsigned: Option<bool>,
    pub(super) reject_reason: Option<String>,
    pub(super) twilio_api_base: Option<String>,
    pub(super) twilio_api_key: Option<String>,
    pub(super) twilio_api_secret: Option<String>,
    pub(super) twilio_account_sid: Option<String>,
    pub(super) softphone: Option<bool>,
    pub(super) softphone_token: Option<String>,
    pub(super) console_token: Option<String>,
    pub(super) tool_secret: Option<String>,
    pub(super) report_url: Option<String>,
    pub(super) report_spool_dir: Option<String>,
    pub(super) report_retry_max_s: Option<i64>,
    pub(super) report_retry_min_ms: Option<i64>,
    pub(super) report_spool_max: Option<i64>,
    pub(super) report_dead_max: Option<i64>,
    pub(super) report_dead_max_bytes: Option<i64>,
    pub(super) report_dead_max_age_s: Option<i64>,
    pub(super) api_token: Option<String>,
    pub(super) twilio_recording: Option<String>,
    pub(super) setup_timeout_ms: Option<i64>,
    pub(super) upstream_retry_s: Option<i64>,
    pub(super) session_rotate_after_secs: Option<i64>,
    pub(super) max_call_seconds: Option<i64>,
    pub(super) drain_goodbye: Option<String>,
    pub(super) drain_goodbye_timeout_ms: Option<i64>,
    pub(super) prewarm: Option<bool>,
    pub(super) prewarm_ttl_s: Option<i64>,
    pub(super) voicemail_message: Option<String>,
    pub(super) silence_reprompt_s: Option<i64>,
    pub(super) silence_hangup_s: Option<i64>,
    pub(super) silence_reprompt_instructions: Option<String>,
    pub(super) silence_goodbye_instructions: Option<String>,
    pub(super) reasoning_effort: Option<String>,
    pub(super) parallel_tool_calls: Option<bool>,
    pub(super) prompt_id: Option<String>,
    pub(super) prompt_version: Option<String>,
    pub(super) prompt_variables: Option<toml::Value>,
    pub(super) truncation: Option<toml::Value>,
    pub(super) tool_choice: Option<toml::Value>,
    pub(super) tracing: Option<toml::Value>,
    pub(super) mcp_servers: Option<Vec<settings::RawMcp>>,
}

pub(super) fn typed(name: &str, v: &str, kind: Kind) -> Result<toml::Value, ConfigError> {
    Ok(match kind {
        Kind::Str => toml::Value::String(v.to_owned()),
        Kind::Int => toml::Value::Integer(
            v.trim()
                .parse()
                .map_err(|_| invalid(name, format!("{v:?} is not a whole number")))?,
        ),
        Kind::Float => toml::Value::Float(
            v.trim()
                .parse()
                .map_err(|_| invalid(name, format!("{v:?} is not a number")))?,
        ),
        Kind::StrOrJson if v.trim_start().starts_with(['{', '[']) => {
            serde_json::from_str::<serde_json::Value>(v)
                .ok()
                .and_then(|j| toml::Value::try_from(j).ok())
                .ok_or_else(|| {
                    invalid(
                        name,
                        format!("{v:?} is not JSON (without null) for a table or list"),
                    )
                })?
        }
        Kind::StrOrJson => toml::Value::String(v.to_owned()),
        Kind::Bool => toml::Value::Boolean(match v.trim() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(invalid(name, format!("{v:?}; allowed: true, false"))),
        }),
    })
}
