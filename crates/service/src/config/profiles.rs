//! `[profiles.*]` and `default_profile`: parsed and validated by the same code as the top
//! level — a profile's keys laid over the top-level table, the result validated as a whole, so
//! every per-call rule applies to profiles too. What a profile is: [`crate::profile`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::tools::{tool_spec, RawTool};
use super::ConfigError;
use crate::call::tools::{ToolSpec, BUILT_INS, END_CALL, SEND_DTMF, TRANSFER_CALL};
use crate::call::CallConfig;
use crate::profile::{is_e164, Profile, Profiles};

/// Keys a profile may set (per-call settings of the top level).
pub const PER_CALL_KEYS: &[&str] = &[
    "audio_mode",
    "dialect",
    "instructions",
    "voice",
    "model",
    "greeting",
    "vad",
    "vad_threshold",
    "vad_prefix_padding_ms",
    "vad_silence_duration_ms",
    "vad_idle_timeout_ms",
    "vad_eagerness",
    "vad_create_response",
    "vad_interrupt_response",
    "transcription_model",
    "max_output_tokens",
    "speed",
    "noise_reduction",
    "temperature",
    "barge_in",
    "bargein_min_speech_ms",
    "bargein_max_backchannel_ms",
    "echo_suppression",
    "dtmf_to_model",
    "dtmf_gap_ms",
    "tools",
    "end_call",
    "send_dtmf",
    "transfer_targets",
    "transfer_caller_id",
    "filler_audio",
    "goodbye_timeout_ms",
    "voicemail_message",
    "silence_reprompt_s",
    "silence_hangup_s",
    "silence_reprompt_instructions",
    "silence_goodbye_instructions",
    "reasoning_effort",
    "parallel_tool_calls",
    "prompt_id",
    "prompt_version",
    "prompt_variables",
    "truncation",
    "tool_choice",
    "tracing",
    "mcp_servers",
];
/// Keys only a profile has, or that a profile overrides outside the call's settings.
pub const PROFILE_KEYS: &[&str] = &[
    "numbers",
    "report_url",
    "twilio_recording",
    "setup_url",
    "redact",
    "analysis",
    "analysis_model",
];

fn invalid(key: String, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// Parses `[profiles.*]` over the validated top-level `table`. `validate_call` turns a whole
/// (merged) table into a call config, with the top level's rules.
pub fn parse(
    table: &toml::Table,
    profiles: Option<toml::Value>,
    default: Option<toml::Value>,
    validate_call: &dyn Fn(toml::Table) -> Result<CallConfig, ConfigError>,
) -> Result<Profiles, ConfigError> {
    let default = match default {
        None => None,
        Some(toml::Value::String(s)) if s.is_empty() => None,
        Some(toml::Value::String(s)) => Some(s),
        Some(v) => {
            return Err(invalid(
                "default_profile".into(),
                format!("{v} is not a name"),
            ))
        }
    };
    let profiles = match profiles {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(_) => {
            return Err(invalid(
                "profiles".into(),
                "must be tables: [profiles.NAME]",
            ))
        }
    };
    let mut out = Profiles {
        by_name: BTreeMap::new(),
        default,
    };
    let mut owner: HashMap<String, String> = HashMap::new();
    for (name, body) in profiles {
        let at = |k: &str| format!("profiles.{name}.{k}");
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                format!("profiles.{name}"),
                "a profile name is letters, digits, - and _",
            ));
        }
        let toml::Value::Table(body) = body else {
            return Err(invalid(format!("profiles.{name}"), "must be a table"));
        };
        let mut merged = table.clone();
        let mut numbers = Vec::new();
        let mut report_url = None;
        let mut twilio_recording = None;
        let mut setup_url = None;
        let mut redact = None;
        let mut analysis = None;
        let mut analysis_model = None;
        let mut tools: Option<ProfileTools> = None;
        for (k, v) in body {
            match k.as_str() {
                "tools" => {
                    let listed = profile_tools(&at("tools"), table, &v)?;
                    for built_in in [END_CALL, SEND_DTMF] {
                        if listed.picked.iter().any(|n| n == built_in) {
                            merged.insert(built_in.into(), toml::Value::Boolean(true));
                        }
                    }
                    tools = Some(listed);
                }
                "numbers" => {
                    let list = v
                        .as_array()
                        .ok_or_else(|| invalid(at("numbers"), "a list of numbers"))?;
                    for n in list {
                        let n = n.as_str().filter(|n| is_e164(n)).ok_or_else(|| {
                            invalid(
                                at("numbers"),
                                format!("{n} is not an E.164 number like \"+15550001111\""),
                            )
                        })?;
                        if let Some(other) = owner.insert(n.to_owned(), name.clone()) {
                            return Err(invalid(
                                at("numbers"),
                                format!("{n} is also in profile {other:?}"),
                            ));
                        }
                        numbers.push(n.to_owned());
                    }
                }
                "report_url" | "setup_url" => {
                    let u = v.as_str().unwrap_or_default();
                    if !(u.starts_with("https://") || u.starts_with("http://"))
                        || u.parse::<http::Uri>().is_err()
                    {
                        return Err(invalid(
                            at(&k),
                            format!("{v} is not an http:// or https:// URL"),
                        ));
                    }
                    if k == "report_url" {
                        report_url = Some(u.to_owned());
                    } else {
                        setup_url = Some(u.to_owned());
                    }
                }
                "redact" => redact = super::redact::parse(&at("redact"), Some(v))?,
                "analysis" => analysis = Some(v),
                "analysis_model" => match v {
                    toml::Value::String(m) if !m.is_empty() => analysis_model = Some(m),
                    other => {
                        return Err(invalid(
                            at("analysis_model"),
                            format!("{other}: a model name"),
                        ))
                    }
                },
                "twilio_recording" => {
                    twilio_recording = Some(match v.as_str() {
                        Some("dual") => true,
                        Some("off") => false,
                        _ => {
                            return Err(invalid(
                                at("twilio_recording"),
                                format!("{v}; allowed: off, dual"),
                            ))
                        }
                    });
                }
                k if PER_CALL_KEYS.contains(&k) => {
                    merged.insert(k.to_owned(), v);
                }
                other => {
                    return Err(invalid(
                        at(other),
                        format!(
                            "not a profile setting; allowed: {}, {}",
                            PER_CALL_KEYS.join(", "),
                            PROFILE_KEYS.join(", ")
                        ),
                    ))
                }
            }
        }
        let analysis = match analysis {
            Some(v) => Some(Arc::new(super::analysis::parse(
                &at("analysis"),
                v,
                analysis_model,
            )?)),
            None => None,
        };
        let call = validate_call(merged).map_err(|e| match e {
            ConfigError::Invalid { key, message } => invalid(at(&key), message),
            ConfigError::Parse { message, .. } => invalid(format!("profiles.{name}"), message),
            other => other,
        })?;
        let mut call = call;
        if let Some(ProfileTools { picked, own }) = tools {
            let listed = |n: &str| picked.iter().any(|x| x == n);
            if listed(TRANSFER_CALL) && call.tools.transfer_targets.is_empty() {
                return Err(invalid(
                    at("tools"),
                    "transfer_call needs transfer_targets (in the profile or the top level)",
                ));
            }
            // The list is the whole of what the profile's calls are offered.
            call.tools.tools.retain(|t| listed(&t.name));
            call.tools.tools.extend(own);
            call.tools.end_call = listed(END_CALL);
            call.tools.send_dtmf = listed(SEND_DTMF);
            if !listed(TRANSFER_CALL) {
                call.tools.transfer_targets.clear();
            }
            call.session.tools = call.tools.declarations();
            super::settings::check_tool_choice(&call.session.settings, &call.tools)
                .map_err(|m| invalid(at("tool_choice"), m))?;
        }
        check_placeholders(&at("instructions"), &call.session.instructions)?;
        if let Some(g) = &call.greeting {
            check_placeholders(&at("greeting"), g)?;
        }
        out.by_name.insert(
            name.clone(),
            Profile {
                name,
                call: Arc::new(call),
                numbers,
                report_url,
                twilio_recording,
                setup_url,
                redact,
                analysis,
            },
        );
    }
    if let Some(d) = &out.default {
        if !out.by_name.contains_key(d) {
            return Err(invalid(
                "default_profile".into(),
                format!(
                    "{d:?} is not a profile; defined: {}",
                    out.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    Ok(out)
}

/// A profile's `tools`: the whole of what its calls are offered.
struct ProfileTools {
    /// Names of top-level `[[tools]]` and of the built-ins.
    picked: Vec<String>,
    /// Tools the profile defines itself (`[[profiles.NAME.tools]]` with a `url`). One with the
    /// name of a top-level tool replaces it for this profile's calls.
    own: Vec<ToolSpec>,
}

/// Reads a profile's `tools` (`key`: `profiles.NAME.tools`). Each entry is a name (a string,
/// or a table with only `name`: `tools = ["lookup_order", "end_call"]`, or
/// `[[profiles.NAME.tools]] name = "end_call"`), or a whole tool as in the top-level
/// `[[tools]]`, checked by the same rules, its errors naming `profiles.NAME.tools[i].KEY`.
fn profile_tools(
    key: &str,
    table: &toml::Table,
    v: &toml::Value,
) -> Result<ProfileTools, ConfigError> {
    let defined: Vec<&str> = table
        .get("tools")
        .and_then(toml::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("name").and_then(toml::Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let list = v.as_array().ok_or_else(|| {
        invalid(
            key.to_owned(),
            "a list of tool names, like [\"lookup_order\", \"end_call\"], or [[tools]] tables",
        )
    })?;
    let mut out = ProfileTools {
        picked: Vec::new(),
        own: Vec::new(),
    };
    for (i, entry) in list.iter().enumerate() {
        let at = |field: &str| format!("{key}[{i}].{field}");
        let only_name = entry
            .as_table()
            .filter(|t| t.len() == 1)
            .and_then(|t| t.get("name"));
        let name = match (entry, only_name) {
            (toml::Value::String(_), _) | (_, Some(_)) => {
                let name = only_name.unwrap_or(entry).as_str().unwrap_or_default();
                if !(defined.contains(&name) || BUILT_INS.contains(&name)) {
                    let mut known = defined.clone();
                    known.extend_from_slice(BUILT_INS);
                    return Err(invalid(
                        key.to_owned(),
                        format!(
                            "{:?} is not a tool; known: {} (or define it here, with a url)",
                            name,
                            known.join(", ")
                        ),
                    ));
                }
                out.picked.push(name.to_owned());
                name.to_owned()
            }
            (toml::Value::Table(_), None) => {
                let raw: RawTool = entry
                    .clone()
                    .try_into()
                    .map_err(|e: toml::de::Error| invalid(format!("{key}[{i}]"), e.to_string()))?;
                let spec = tool_spec(&at, raw)?;
                let has_secret = table
                    .get("tool_secret")
                    .and_then(toml::Value::as_str)
                    .is_some_and(|s| !s.is_empty());
                if !has_secret {
                    return Err(invalid(
                        "tool_secret".into(),
                        format!("required with {key}[{i}] (requests to tools are signed with it)"),
                    ));
                }
                let name = spec.name.clone();
                out.own.push(spec);
                name
            }
            _ => {
                return Err(invalid(
                    format!("{key}[{i}]"),
                    format!("{entry} is neither a tool's name nor a tool"),
                ))
            }
        };
        let named = out.picked.iter().chain(out.own.iter().map(|t| &t.name));
        if named.filter(|n| **n == name).count() > 1 {
            return Err(invalid(at("name"), format!("{name:?} is listed twice")));
        }
    }
    Ok(out)
}

/// Every `{{` opens a placeholder `{{name}}` with a name of letters, digits and `_`.
pub fn check_placeholders(key: &str, text: &str) -> Result<(), ConfigError> {
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(end) = after.find("}}") else {
            return Err(invalid(key.to_owned(), "a {{ without its closing }}"));
        };
        let name = after[..end].trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(invalid(
                key.to_owned(),
                format!(
                    "{{{{{}}}}} is not a variable name (letters, digits, _)",
                    &after[..end]
                ),
            ));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::fill;

    #[test]
    fn placeholders_fill_and_check() {
        let vars: BTreeMap<String, String> = [("agent_name".to_owned(), "Sam".to_owned())].into();
        assert_eq!(
            fill(
                "You are {{agent_name}}; the caller is {{ caller_name }}.",
                &vars
            ),
            "You are Sam; the caller is ."
        );
        assert_eq!(fill("no {{ end", &vars), "no {{ end");
        assert!(check_placeholders("k", "Hi {{caller_name}} and {{x_1}}").is_ok());
        for bad in ["Hi {{caller name}}", "Hi {{}}", "Hi {{name"] {
            let e = check_placeholders("profiles.sales.instructions", bad)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("profiles.sales.instructions"), "{e}");
        }
    }
}
