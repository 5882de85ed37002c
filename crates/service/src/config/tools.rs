//! The settings of tools, hang-up and transfer: `[[tools]]`, `tool_secret`, `end_call`,
//! `transfer_targets`, `transfer_caller_id`, `send_dtmf`, `filler_audio`, `goodbye_timeout_ms`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::{invalid, name_value_pairs, ConfigError, Secret};
use crate::call::tools::{ToolSpec, ToolsConfig, BUILT_INS};

/// The "one moment" sound shipped with the bridge: a soft two-note chime, μ-law 8 kHz,
/// about 0.7 s at -28 dBFS (made by `scripts/make-filler.py`).
pub const DEFAULT_FILLER: &[u8] = include_bytes!("../../../../assets/filler.ulaw");

/// One `[[tools]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<toml::Value>,
    url: String,
    #[serde(default)]
    timeout_ms: Option<i64>,
    #[serde(default)]
    filler_after_ms: Option<i64>,
}

/// The raw values of the tool-related keys.
pub(super) struct RawToolKeys {
    pub tools: Option<Vec<RawTool>>,
    pub tool_secret: Option<String>,
    pub end_call: Option<bool>,
    pub transfer_targets: Option<toml::Value>,
    pub transfer_caller_id: Option<String>,
    pub send_dtmf: Option<bool>,
    pub filler_audio: Option<String>,
    pub goodbye_timeout_ms: Option<i64>,
}

/// A tool or transfer-target name: `^[A-Za-z0-9_-]{1,64}$` (also checked on names a setup
/// lookup sends at call time).
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Validates the tool keys; returns the call-side settings and the signing secret.
pub(super) fn validate(r: RawToolKeys) -> Result<(ToolsConfig, Option<Secret>), ConfigError> {
    let mut tools: Vec<ToolSpec> = Vec::new();
    for (i, t) in r.tools.unwrap_or_default().into_iter().enumerate() {
        let key = |field: &str| format!("tools[{i}].{field}");
        let spec = tool_spec(&key, t)?;
        if tools.iter().any(|o| o.name == spec.name) {
            return Err(invalid(
                &key("name"),
                format!("{:?} is declared twice", spec.name),
            ));
        }
        tools.push(spec);
    }
    let tool_secret = r.tool_secret.filter(|s| !s.is_empty()).map(Secret);
    if !tools.is_empty() && tool_secret.is_none() {
        return Err(invalid(
            "tool_secret",
            "required when [[tools]] are configured (requests to tools are signed with it)",
        ));
    }
    let transfer_targets = transfer_targets(r.transfer_targets)?;
    let transfer_caller_id = r.transfer_caller_id.filter(|c| !c.is_empty());
    if let Some(c) = &transfer_caller_id {
        if !crate::twilio::transfer::is_valid_target(c) || c.starts_with("sip:") {
            return Err(invalid(
                "transfer_caller_id",
                format!("{c:?} is not an E.164 number like +15550001111"),
            ));
        }
    }
    let filler = match r.filler_audio.as_deref() {
        None | Some("") => Some(Arc::new(DEFAULT_FILLER.to_vec())),
        Some("none") => None,
        Some(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| invalid("filler_audio", format!("{path}: {e}")))?;
            if bytes.is_empty() || bytes.len() > 8000 * 10 {
                return Err(invalid(
                    "filler_audio",
                    format!(
                        "{path}: {} bytes; expected raw μ-law 8 kHz audio of up to 10 s",
                        bytes.len()
                    ),
                ));
            }
            Some(Arc::new(bytes))
        }
    };
    let goodbye_timeout = super::ms(
        "goodbye_timeout_ms",
        r.goodbye_timeout_ms,
        15_000,
        1000,
        120_000,
    )?;
    Ok((
        ToolsConfig {
            tools,
            end_call: r.end_call.unwrap_or(false),
            transfer_targets,
            transfer_caller_id,
            send_dtmf: r.send_dtmf.unwrap_or(false),
            goodbye_timeout: Duration::from_millis(goodbye_timeout),
            filler,
        },
        tool_secret,
    ))
}

/// One tool as written, checked: `key` names its fields in errors (`tools[2].url`, or
/// `profiles.NAME.tools[0].url` for a profile's own tool).
pub(super) fn tool_spec(key: &dyn Fn(&str) -> String, t: RawTool) -> Result<ToolSpec, ConfigError> {
    if !valid_name(&t.name) {
        return Err(invalid(
            &key("name"),
            format!("{:?}; allowed: 1 to 64 of A-Z a-z 0-9 _ -", t.name),
        ));
    }
    if BUILT_INS.contains(&t.name.as_str()) {
        return Err(invalid(
            &key("name"),
            format!("{:?} is a built-in tool's name", t.name),
        ));
    }
    let parameters = match t.parameters {
        None => serde_json::json!({"type": "object", "properties": {}}),
        Some(p) => {
            let v =
                serde_json::to_value(&p).map_err(|e| invalid(&key("parameters"), e.to_string()))?;
            let is_object_schema = v.as_object().is_some_and(|o| {
                o.get("type").and_then(Value::as_str) == Some("object")
                    && o.get("properties").is_none_or(Value::is_object)
                    && o.get("required").is_none_or(|r| {
                        r.as_array().is_some_and(|a| a.iter().all(Value::is_string))
                    })
            });
            if !is_object_schema {
                return Err(invalid(
                    &key("parameters"),
                    "must be a JSON Schema object: { type = \"object\", properties = { .. }, required = [ .. ] }",
                ));
            }
            v
        }
    };
    let url_ok = (t.url.starts_with("http://") || t.url.starts_with("https://"))
        && t.url
            .parse::<http::Uri>()
            .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
    if !url_ok {
        return Err(invalid(
            &key("url"),
            format!("{:?} is not an http:// or https:// URL", t.url),
        ));
    }
    let timeout = super::ms(&key("timeout_ms"), t.timeout_ms, 8000, 100, 120_000)?;
    let filler_after = super::ms(&key("filler_after_ms"), t.filler_after_ms, 1500, 0, 120_000)?;
    Ok(ToolSpec {
        name: t.name,
        description: t.description.unwrap_or_default(),
        parameters,
        url: t.url,
        timeout: Duration::from_millis(timeout),
        filler_after: Duration::from_millis(filler_after),
    })
}

/// A table `{ sales = "+1555..." }` (file) or `sales=+1555...,billing=sip:...` (environment).
fn transfer_targets(v: Option<toml::Value>) -> Result<Vec<(String, String)>, ConfigError> {
    let key = "transfer_targets";
    let pairs = name_value_pairs(key, "target", v)?;
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, target) in pairs {
        if !valid_name(&name) {
            return Err(invalid(
                key,
                format!("{name:?}: a name is 1 to 64 of A-Z a-z 0-9 _ -"),
            ));
        }
        if !crate::twilio::transfer::is_valid_target(&target) {
            return Err(invalid(
                key,
                format!("{name} = {target:?}: not an E.164 number (+15551230000) or a sip: URI"),
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(invalid(key, format!("{name:?} is given twice")));
        }
        out.push((name, target));
    }
    Ok(out)
}
