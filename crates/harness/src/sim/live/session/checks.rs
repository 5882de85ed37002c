//! What the simulated Live server refuses, as the real one does: unknown fields anywhere it
//! knows the shape (shared/protocol.md: "Unknown fields are rejected"; field lists from the
//! SDK's `openai/types/live/*_event.py` and `session_config.py`), a missing model, a format
//! the simulator cannot speak, a change of delegation type.

use serde_json::Value;

/// `(code, message, param)` of the `error` event to send.
pub(super) type Refusal = (&'static str, String, Option<String>);

fn unknown(param: String) -> Refusal {
    let msg = format!("Unknown parameter: '{param}'.");
    ("unknown_parameter", msg, Some(param))
}

fn invalid(param: &str, msg: &str) -> Refusal {
    ("invalid_value", msg.to_string(), Some(param.to_string()))
}

/// Refuses any key of `obj` outside `allowed`, naming it as `prefix.key`.
fn only(obj: &Value, allowed: &[&str], prefix: &str) -> Result<(), Refusal> {
    let Some(m) = obj.as_object() else {
        return Err(invalid(prefix, "Expected an object."));
    };
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) if prefix.is_empty() => Err(unknown(k.clone())),
        Some(k) => Err(unknown(format!("{prefix}.{k}"))),
        None => Ok(()),
    }
}

/// The top-level fields of each client event the simulator acts on.
pub(super) fn event_fields(v: &Value, ty: &str) -> Result<(), Refusal> {
    let fields: &[&str] = match ty {
        "session.start" | "session.update" => &["type", "event_id", "session"],
        "session.input_audio.append" | "session.output_audio.fixture.play" => {
            &["type", "event_id", "audio"]
        }
        "response.item.create" => &["type", "event_id", "item"],
        "response.create" | "session.close" => &["type", "event_id"],
        "session.commentary.append" => &["type", "event_id", "content", "delegation_id"],
        "session.input_audio.mute"
        | "session.input_audio.unmute"
        | "session.instructions.append"
        | "session.thinking.append"
        | "decision.create"
        | "decision.item.create"
        | "decision.item.delete" => return Ok(()),
        _ => {
            let msg = format!("Unknown event type '{ty}'.");
            return Err(("invalid_value", msg, Some("type".into())));
        }
    };
    only(v, fields, "")
}

const SESSION_KEYS: [&str; 9] = [
    "model",
    "instructions",
    "audio",
    "delegation",
    "input",
    "store",
    "safety_identifier",
    "triggers",
    "client",
];
const DELEGATION_KEYS: [&str; 4] = ["type", "responses", "decisions", "acknowledgement_delay_ms"];
const RESPONSES_KEYS: [&str; 9] = [
    "model",
    "instructions",
    "max_output_tokens",
    "parallel_tool_calls",
    "reasoning",
    "service_tier",
    "text",
    "tool_choice",
    "tools",
];
const FUNCTION_TOOL_KEYS: [&str; 5] = ["type", "name", "description", "parameters", "strict"];

/// `session.start`'s `session`.
pub(super) fn session_start(s: &Value) -> Result<(), Refusal> {
    only(s, &SESSION_KEYS, "session")?;
    if !s.get("model").is_some_and(Value::is_string) {
        return Err((
            "missing_required_parameter",
            "Missing 'session.model'.".into(),
            Some("session.model".into()),
        ));
    }
    if let Some(audio) = s.get("audio") {
        only(audio, &["format", "output"], "session.audio")?;
        if let Some(f) = audio.get("format") {
            only(f, &["type", "rate"], "session.audio.format")?;
            let pcmu = f.get("type").and_then(Value::as_str) == Some("audio/pcmu")
                && f.get("rate").and_then(Value::as_u64) == Some(8000);
            if !pcmu {
                // The real server also takes pcma and pcm 16/24 kHz; this simulator speaks
                // only μ-law 8 kHz, what a phone line needs.
                return Err(invalid(
                    "session.audio.format",
                    "The simulator speaks audio/pcmu 8000 only.",
                ));
            }
        }
        if let Some(o) = audio.get("output") {
            only(o, &["voice"], "session.audio.output")?;
        }
    }
    if let Some(d) = s.get("delegation").filter(|d| !d.is_null()) {
        delegation(d, "session.delegation", true)?;
    }
    Ok(())
}

fn delegation(d: &Value, prefix: &str, starting: bool) -> Result<(), Refusal> {
    only(d, &DELEGATION_KEYS, prefix)?;
    let ty = d.get("type").and_then(Value::as_str).unwrap_or_default();
    if !matches!(ty, "client" | "responses" | "decisions") {
        return Err(invalid(
            &format!("{prefix}.type"),
            "Expected client, responses or decisions.",
        ));
    }
    let Some(r) = d.get("responses") else {
        if starting && ty == "responses" {
            let p = format!("{prefix}.responses");
            return Err((
                "missing_required_parameter",
                format!("Missing '{p}'."),
                Some(p),
            ));
        }
        return Ok(());
    };
    let rp = format!("{prefix}.responses");
    only(r, &RESPONSES_KEYS, &rp)?;
    if starting && !r.get("model").is_some_and(Value::is_string) {
        let p = format!("{rp}.model");
        return Err((
            "missing_required_parameter",
            format!("Missing '{p}'."),
            Some(p),
        ));
    }
    for (i, t) in r
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let tp = format!("{rp}.tools[{i}]");
        if t.get("type").and_then(Value::as_str) == Some("function") {
            only(t, &FUNCTION_TOOL_KEYS, &tp)?;
            if !t.get("name").is_some_and(Value::is_string) {
                return Err(invalid(&tp, "A function tool needs a name."));
            }
        }
    }
    Ok(())
}

/// `session.update`'s `session`: delegation (same type as now) and triggers only.
pub(super) fn session_update(s: &Value, current_type: Option<&Value>) -> Result<(), Refusal> {
    only(s, &["delegation", "triggers"], "session")?;
    if let Some(d) = s.get("delegation").filter(|d| !d.is_null()) {
        delegation(d, "session.delegation", false)?;
        let same = current_type.and_then(Value::as_str).unwrap_or("client")
            == d.get("type").and_then(Value::as_str).unwrap_or_default();
        if !same {
            return Err(invalid(
                "session.delegation.type",
                "The delegation type cannot change.",
            ));
        }
    }
    Ok(())
}
