//! Strict checks of client-supplied session and response parameters, per dialect, the way the
//! real server refuses them: an `error` event of type `invalid_request_error`, and the update
//! is not applied.

use serde_json::{Map, Value};

use super::voice::AudioFormat;

mod settings;

/// An error to report in an `error` event.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    pub(crate) fn invalid(
        code: &'static str,
        message: impl Into<String>,
        param: Option<&str>,
    ) -> Self {
        ApiError {
            kind: "invalid_request_error",
            code,
            message: message.into(),
            param: param.map(str::to_string),
        }
    }
}

pub(crate) const VOICES: [&str; 10] = [
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
];

fn unknown(param: &str, hint: &str) -> ApiError {
    ApiError::invalid(
        "unknown_parameter",
        format!("Unknown parameter: '{param}'.{hint}"),
        Some(param),
    )
}

fn missing(param: &str) -> ApiError {
    ApiError::invalid(
        "missing_required_parameter",
        format!("Missing required parameter: '{param}'."),
        Some(param),
    )
}

fn bad_type(param: &str, want: &str) -> ApiError {
    ApiError::invalid(
        "invalid_type",
        format!("Invalid type for '{param}': expected {want}."),
        Some(param),
    )
}

fn bad_value(param: &str, v: &Value, supported: &str) -> ApiError {
    ApiError::invalid(
        "invalid_value",
        format!("Invalid value: {v} for '{param}'. {supported}"),
        Some(param),
    )
}

fn obj<'a>(v: &'a Value, param: &str) -> Result<&'a Map<String, Value>, ApiError> {
    v.as_object().ok_or_else(|| bad_type(param, "an object"))
}

fn string(v: &Value, param: &str) -> Result<(), ApiError> {
    if v.is_string() {
        Ok(())
    } else {
        Err(bad_type(param, "a string"))
    }
}

fn boolean(v: &Value, param: &str) -> Result<(), ApiError> {
    if v.is_boolean() {
        Ok(())
    } else {
        Err(bad_type(param, "a boolean"))
    }
}

/// Function tool declarations: `{"type":"function","name":..,"description":..,"parameters":{..}}`
/// (the same shape in both dialects).
/// GA also takes remote MCP servers (`{"type":"mcp",..}`, `validate/settings.rs`).
fn tools(v: &Value, param: &str, beta: bool) -> Result<(), ApiError> {
    let Some(list) = v.as_array() else {
        return Err(bad_type(param, "an array"));
    };
    for (i, t) in list.iter().enumerate() {
        let p = format!("{param}[{i}]");
        let Some(o) = t.as_object() else {
            return Err(bad_type(&p, "an object"));
        };
        if !beta && o.get("type").and_then(Value::as_str) == Some("mcp") {
            settings::mcp_tool(o, &p)?;
            continue;
        }
        if o.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad_value(
                &format!("{p}.type"),
                o.get("type").unwrap_or(&Value::Null),
                if beta {
                    "Supported values are: 'function'."
                } else {
                    "Supported values are: 'function' and 'mcp'."
                },
            ));
        }
        let name_ok = o.get("name").and_then(Value::as_str).is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        if !name_ok {
            return Err(bad_type(
                &format!("{p}.name"),
                "a string matching ^[a-zA-Z0-9_-]{1,64}$",
            ));
        }
        if let Some(params) = o.get("parameters") {
            if !params.is_object() {
                return Err(bad_type(&format!("{p}.parameters"), "an object"));
            }
        }
        for k in o.keys() {
            if !matches!(k.as_str(), "type" | "name" | "description" | "parameters") {
                return Err(unknown(&format!("{p}.{k}"), ""));
            }
        }
    }
    Ok(())
}

fn array(v: &Value, param: &str) -> Result<(), ApiError> {
    if v.is_array() {
        Ok(())
    } else {
        Err(bad_type(param, "an array"))
    }
}

fn int_range(v: &Value, param: &str, lo: u64, hi: u64) -> Result<(), ApiError> {
    match v.as_u64() {
        Some(n) if (lo..=hi).contains(&n) => Ok(()),
        Some(_) => Err(ApiError::invalid(
            "integer_out_of_range",
            format!("Invalid '{param}': integer {v} out of range {lo}..={hi}."),
            Some(param),
        )),
        None => Err(bad_type(param, "a non-negative integer")),
    }
}

fn num_range(v: &Value, param: &str, lo: f64, hi: f64) -> Result<(), ApiError> {
    match v.as_f64() {
        Some(n) if n >= lo && n <= hi => Ok(()),
        Some(_) => Err(ApiError::invalid(
            "decimal_out_of_range",
            format!("Invalid '{param}': {v} out of range {lo}..={hi}."),
            Some(param),
        )),
        None => Err(bad_type(param, "a number")),
    }
}

fn max_tokens(v: &Value, param: &str) -> Result<(), ApiError> {
    if v.as_str() == Some("inf") {
        return Ok(());
    }
    int_range(v, param, 1, 4096)
}

fn voice(v: &Value, param: &str) -> Result<(), ApiError> {
    match v.as_str() {
        Some(s) if VOICES.contains(&s) => Ok(()),
        Some(_) => Err(bad_value(
            param,
            v,
            &format!("Supported values are: {}.", VOICES.join(", ")),
        )),
        None => Err(bad_type(param, "a string")),
    }
}

fn modalities_ga(v: &Value, param: &str) -> Result<(), ApiError> {
    let ok = matches!(v.as_array().map(Vec::as_slice), Some([m]) if m == "audio" || m == "text");
    if ok {
        Ok(())
    } else {
        Err(bad_value(
            param,
            v,
            "Supported values are ['audio'] or ['text'] (not both).",
        ))
    }
}

fn modalities_beta(v: &Value, param: &str) -> Result<(), ApiError> {
    let mut m: Vec<&str> = match v.as_array() {
        Some(a) => a.iter().filter_map(Value::as_str).collect(),
        None => return Err(bad_type(param, "an array")),
    };
    m.sort_unstable();
    if m == ["text"] || m == ["audio", "text"] {
        Ok(())
    } else {
        Err(bad_value(
            param,
            v,
            "Supported combinations are: ['text'] and ['audio', 'text'].",
        ))
    }
}

/// Parses a GA format object (`{"type":"audio/pcm","rate":24000}`, `audio/pcmu`, `audio/pcma`).
pub(crate) fn ga_format(v: &Value, param: &str) -> Result<AudioFormat, ApiError> {
    let o = match v.as_object() {
        Some(o) => o,
        None if v.is_string() => {
            return Err(ApiError::invalid(
                "invalid_type",
                format!(
                    "Invalid type for '{param}': expected an object like {{\"type\":\"audio/pcmu\"}}, got a string (the beta interface used strings such as 'g711_ulaw')."
                ),
                Some(param),
            ))
        }
        None => return Err(bad_type(param, "an object")),
    };
    let ty = o
        .get("type")
        .ok_or_else(|| missing(&format!("{param}.type")))?;
    let fmt = match ty.as_str() {
        Some("audio/pcm") => AudioFormat::Pcm16,
        Some("audio/pcmu") => AudioFormat::Pcmu,
        Some("audio/pcma") => AudioFormat::Pcma,
        _ => {
            return Err(bad_value(
                &format!("{param}.type"),
                ty,
                "Supported values are: 'audio/pcm', 'audio/pcmu', and 'audio/pcma'.",
            ))
        }
    };
    for (k, val) in o {
        match (k.as_str(), fmt) {
            ("type", _) => {}
            ("rate", AudioFormat::Pcm16) => {
                if val.as_f64() != Some(24000.0) {
                    return Err(bad_value(
                        &format!("{param}.rate"),
                        val,
                        "audio/pcm supports only rate 24000.",
                    ));
                }
            }
            _ => return Err(unknown(&format!("{param}.{k}"), "")),
        }
    }
    Ok(fmt)
}

/// Parses a beta format string.
pub(crate) fn beta_format(v: &Value, param: &str) -> Result<AudioFormat, ApiError> {
    match v.as_str() {
        Some("pcm16") => Ok(AudioFormat::Pcm16),
        Some("g711_ulaw") => Ok(AudioFormat::Pcmu),
        Some("g711_alaw") => Ok(AudioFormat::Pcma),
        _ => Err(bad_value(
            param,
            v,
            "Supported values are: 'pcm16', 'g711_ulaw', and 'g711_alaw'.",
        )),
    }
}

fn turn_detection(v: &Value, param: &str) -> Result<(), ApiError> {
    if v.is_null() {
        return Ok(());
    }
    let o = obj(v, param)?;
    let ty = o
        .get("type")
        .ok_or_else(|| missing(&format!("{param}.type")))?;
    let semantic = match ty.as_str() {
        Some("server_vad") => false,
        Some("semantic_vad") => true,
        _ => {
            return Err(bad_value(
                &format!("{param}.type"),
                ty,
                "Supported values are: 'server_vad' and 'semantic_vad'.",
            ))
        }
    };
    for (k, val) in o {
        let p = format!("{param}.{k}");
        match (k.as_str(), semantic) {
            ("type", _) => {}
            ("create_response" | "interrupt_response", _) => boolean(val, &p)?,
            ("threshold", false) => num_range(val, &p, 0.0, 1.0)?,
            ("prefix_padding_ms" | "silence_duration_ms", false) => int_range(val, &p, 0, 10_000)?,
            ("idle_timeout_ms", false) => {
                if !val.is_null() {
                    int_range(val, &p, 0, 3_600_000)?
                }
            }
            ("eagerness", true) => match val.as_str() {
                Some("low" | "medium" | "high" | "auto") => {}
                _ => {
                    return Err(bad_value(
                        &p,
                        val,
                        "Supported values are: 'low', 'medium', 'high', 'auto'.",
                    ))
                }
            },
            _ => return Err(unknown(&p, "")),
        }
    }
    Ok(())
}

fn transcription(v: &Value, param: &str) -> Result<(), ApiError> {
    if v.is_null() {
        return Ok(());
    }
    for (k, val) in obj(v, param)? {
        let p = format!("{param}.{k}");
        match k.as_str() {
            "model" | "language" | "prompt" => string(val, &p)?,
            _ => return Err(unknown(&p, "")),
        }
    }
    Ok(())
}

fn noise_reduction(v: &Value, param: &str) -> Result<(), ApiError> {
    if v.is_null() {
        return Ok(());
    }
    for (k, val) in obj(v, param)? {
        let p = format!("{param}.{k}");
        match (k.as_str(), val.as_str()) {
            ("type", Some("near_field" | "far_field")) => {}
            ("type", _) => {
                return Err(bad_value(
                    &p,
                    val,
                    "Supported values are: 'near_field', 'far_field'.",
                ))
            }
            _ => return Err(unknown(&p, "")),
        }
    }
    Ok(())
}

fn beta_only_hint(k: &str) -> Option<&'static str> {
    Some(match k {
        "temperature" => " The GA interface has no temperature (beta-only field).",
        "modalities" => " Beta-only field; GA uses 'output_modalities'.",
        "input_audio_format" => " Beta-only field; GA uses 'audio.input.format'.",
        "output_audio_format" => " Beta-only field; GA uses 'audio.output.format'.",
        "voice" => " Beta-only field; GA uses 'audio.output.voice'.",
        "turn_detection" => " Beta-only field; GA uses 'audio.input.turn_detection'.",
        "input_audio_transcription" => " Beta-only field; GA uses 'audio.input.transcription'.",
        "input_audio_noise_reduction" => " Beta-only field; GA uses 'audio.input.noise_reduction'.",
        "max_response_output_tokens" => " Beta-only field; GA uses 'max_output_tokens'.",
        "speed" => " Beta-only placement; GA uses 'audio.output.speed'.",
        _ => return None,
    })
}

fn ga_only_hint(k: &str) -> Option<&'static str> {
    Some(match k {
        "type" => " 'session.type' is a GA field; this connection speaks the beta interface (OpenAI-Beta: realtime=v1).",
        "audio" => " GA-only field; the beta interface uses 'input_audio_format'/'output_audio_format', 'voice', 'turn_detection'.",
        "output_modalities" => " GA-only field; the beta interface uses 'modalities'.",
        "max_output_tokens" => " GA-only field; the beta interface uses 'max_response_output_tokens'.",
        "include" | "truncation" | "prompt" | "reasoning" | "parallel_tool_calls" => {
            " GA-only field."
        }
        _ => return None,
    })
}

/// Validates the `session` of a GA `session.update`.
pub(crate) fn ga_session(s: &Value) -> Result<(), ApiError> {
    let o = obj(s, "session")?;
    let ty = o.get("type").ok_or_else(|| missing("session.type"))?;
    match ty.as_str() {
        Some("realtime") => {}
        Some("transcription") => {
            return Err(bad_value(
                "session.type",
                ty,
                "The simulator only serves 'realtime' sessions.",
            ))
        }
        _ => {
            return Err(bad_value(
                "session.type",
                ty,
                "Supported values are: 'realtime' and 'transcription'.",
            ))
        }
    }
    for (k, v) in o {
        let p = format!("session.{k}");
        match k.as_str() {
            "type" => {}
            "model" | "instructions" => string(v, &p)?,
            "output_modalities" => modalities_ga(v, &p)?,
            "tools" => tools(v, &p, false)?,
            "tool_choice" => settings::tool_choice(v, &p, false)?,
            "max_output_tokens" => max_tokens(v, &p)?,
            "reasoning" => settings::reasoning(v, &p)?,
            "parallel_tool_calls" => settings::parallel_tool_calls(v, &p)?,
            "prompt" => settings::prompt(v, &p)?,
            "truncation" => settings::truncation(v, &p)?,
            "tracing" => settings::tracing(v, &p)?,
            "include" => {}
            "audio" => ga_audio(v)?,
            _ => return Err(unknown(&p, beta_only_hint(k).unwrap_or(""))),
        }
    }
    Ok(())
}

fn ga_audio(v: &Value) -> Result<(), ApiError> {
    for (k, val) in obj(v, "session.audio")? {
        match k.as_str() {
            "input" => {
                for (k2, v2) in obj(val, "session.audio.input")? {
                    let p = format!("session.audio.input.{k2}");
                    match k2.as_str() {
                        "format" => ga_format(v2, &p).map(|_| ())?,
                        "turn_detection" => turn_detection(v2, &p)?,
                        "transcription" => transcription(v2, &p)?,
                        "noise_reduction" => noise_reduction(v2, &p)?,
                        _ => return Err(unknown(&p, "")),
                    }
                }
            }
            "output" => {
                for (k2, v2) in obj(val, "session.audio.output")? {
                    let p = format!("session.audio.output.{k2}");
                    match k2.as_str() {
                        "format" => ga_format(v2, &p).map(|_| ())?,
                        "voice" => voice(v2, &p)?,
                        "speed" => num_range(v2, &p, 0.25, 1.5)?,
                        _ => return Err(unknown(&p, "")),
                    }
                }
            }
            _ => return Err(unknown(&format!("session.audio.{k}"), "")),
        }
    }
    Ok(())
}

/// Validates the `session` of a beta `session.update`.
pub(crate) fn beta_session(s: &Value) -> Result<(), ApiError> {
    for (k, v) in obj(s, "session")? {
        let p = format!("session.{k}");
        match k.as_str() {
            "model" | "instructions" => string(v, &p)?,
            "modalities" => modalities_beta(v, &p)?,
            "voice" => voice(v, &p)?,
            "input_audio_format" | "output_audio_format" => beta_format(v, &p).map(|_| ())?,
            "input_audio_transcription" => transcription(v, &p)?,
            "input_audio_noise_reduction" => noise_reduction(v, &p)?,
            "turn_detection" => turn_detection(v, &p)?,
            "tools" => tools(v, &p, true)?,
            "tool_choice" => settings::tool_choice(v, &p, true)?,
            "temperature" => num_range(v, &p, 0.6, 1.2)?,
            "max_response_output_tokens" => max_tokens(v, &p)?,
            "speed" => num_range(v, &p, 0.25, 1.5)?,
            "tracing" => settings::tracing(v, &p)?,
            _ => return Err(unknown(&p, ga_only_hint(k).unwrap_or(""))),
        }
    }
    Ok(())
}

/// Validates the optional `response` of a `response.create`.
pub(crate) fn response_params(beta: bool, r: &Value) -> Result<(), ApiError> {
    for (k, v) in obj(r, "response")? {
        let p = format!("response.{k}");
        match (k.as_str(), beta) {
            ("instructions", _) => string(v, &p)?,
            ("tools" | "input", _) => array(v, &p)?,
            ("tool_choice" | "metadata", _) => {}
            ("conversation", _) => match v.as_str() {
                Some("auto" | "none") => {}
                _ => return Err(bad_value(&p, v, "Supported values are: 'auto' and 'none'.")),
            },
            ("output_modalities", false) => modalities_ga(v, &p)?,
            ("max_output_tokens", false) => max_tokens(v, &p)?,
            ("prompt", false) => {}
            ("audio", false) => {
                for (k2, v2) in obj(v, &p)? {
                    if k2 != "output" {
                        return Err(unknown(&format!("{p}.{k2}"), ""));
                    }
                    for (k3, v3) in obj(v2, &format!("{p}.output"))? {
                        let p3 = format!("{p}.output.{k3}");
                        match k3.as_str() {
                            "format" => ga_format(v3, &p3).map(|_| ())?,
                            "voice" => voice(v3, &p3)?,
                            _ => return Err(unknown(&p3, "")),
                        }
                    }
                }
            }
            ("modalities", true) => modalities_beta(v, &p)?,
            ("voice", true) => voice(v, &p)?,
            ("output_audio_format", true) => beta_format(v, &p).map(|_| ())?,
            ("temperature", true) => num_range(v, &p, 0.6, 1.2)?,
            ("max_response_output_tokens", true) => max_tokens(v, &p)?,
            (_, false) => return Err(unknown(&p, beta_only_hint(k).unwrap_or(""))),
            (_, true) => return Err(unknown(&p, ga_only_hint(k).unwrap_or(""))),
        }
    }
    Ok(())
}
