//! The 2026 Realtime settings: `reasoning_effort`, `parallel_tool_calls`, `prompt_*`,
//! `truncation`, `tool_choice`, `tracing`, `[[mcp_servers]]` — validated for the top level
//! and each profile, errors naming the key. Allowed values are the OpenAI SDK's
//! (`openai==3.63.0`, `openai/types/realtime/`; see `realtime/settings.rs`); what the beta
//! dialect lacks is refused there rather than silently dropped.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::keys::Raw;
use super::{invalid, name_value_pairs, ConfigError};
use crate::call::tools::ToolsConfig;
use crate::realtime::settings::{
    McpServer, SessionSettings, StoredPrompt, ToolChoice, Tracing, Truncation, REASONING_EFFORTS,
    TOOL_CHOICE_MODES,
};
use crate::realtime::Dialect;

/// One `[[mcp_servers]]` entry as written (the fields of the SDK's `Mcp` tool the bridge
/// offers; `connector_id` and `tunnel_id` are not: a server is reached by its URL).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMcp {
    server_label: String,
    #[serde(default)]
    server_url: Option<String>,
    #[serde(default)]
    server_description: Option<String>,
    #[serde(default)]
    allowed_tools: Option<toml::Value>,
    #[serde(default)]
    require_approval: Option<toml::Value>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    authorization: Option<String>,
}

fn json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The settings of one (top-level or merged profile) table.
pub(super) fn settings(
    r: &mut Raw,
    dialect: Dialect,
    tools: &ToolsConfig,
) -> Result<SessionSettings, ConfigError> {
    let ga_only = |key: &str, set: bool| -> Result<(), ConfigError> {
        if set && dialect == Dialect::Beta {
            return Err(invalid(
                key,
                "the beta Realtime dialect has no such setting; it applies to dialect = ga only",
            ));
        }
        Ok(())
    };
    let reasoning_effort = r.reasoning_effort.take().filter(|e| !e.is_empty());
    ga_only("reasoning_effort", reasoning_effort.is_some())?;
    if let Some(e) = &reasoning_effort {
        if !REASONING_EFFORTS.contains(&e.as_str()) {
            return Err(invalid(
                "reasoning_effort",
                format!("{e:?}; allowed: {}", REASONING_EFFORTS.join(", ")),
            ));
        }
    }
    ga_only("parallel_tool_calls", r.parallel_tool_calls.is_some())?;
    let prompt = prompt(r)?;
    ga_only("prompt_id", prompt.is_some())?;
    let truncation = r.truncation.take().map(|t| truncation(&t)).transpose()?;
    ga_only("truncation", truncation.is_some())?;
    let mcp_servers = mcp_servers(r.mcp_servers.take().unwrap_or_default())?;
    ga_only("mcp_servers", !mcp_servers.is_empty())?;
    let tool_choice = r.tool_choice.take().map(|t| tool_choice(&t)).transpose()?;
    if dialect == Dialect::Beta && !matches!(tool_choice, None | Some(ToolChoice::Mode(_))) {
        return Err(invalid(
            "tool_choice",
            format!(
                "the beta Realtime dialect takes a mode only: {}",
                TOOL_CHOICE_MODES.join(", ")
            ),
        ));
    }
    let tracing = r.tracing.take().map(|t| tracing(&t)).transpose()?;
    let s = SessionSettings {
        reasoning_effort,
        parallel_tool_calls: r.parallel_tool_calls,
        prompt,
        truncation,
        tool_choice,
        tracing,
        mcp_servers,
    };
    check_tool_choice(&s, tools).map_err(|m| invalid("tool_choice", m))?;
    Ok(s)
}

/// `tool_choice` names a tool the session offers (`required` needs at least one): checked
/// again for a profile once its `tools` list has narrowed what it offers.
pub(crate) fn check_tool_choice(s: &SessionSettings, tools: &ToolsConfig) -> Result<(), String> {
    let functions: Vec<String> = tools
        .declarations()
        .iter()
        .filter_map(|d| d.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let labels: Vec<&str> = s
        .mcp_servers
        .iter()
        .map(|m| m.server_label.as_str())
        .collect();
    match &s.tool_choice {
        Some(ToolChoice::Mode(m)) if m == "required" && functions.is_empty() && labels.is_empty() => {
            Err("\"required\" needs at least one tool ([[tools]], end_call, transfer_targets or [[mcp_servers]])".into())
        }
        Some(ToolChoice::Function { name }) if !functions.contains(name) => Err(format!(
            "function {name:?} is not offered; offered: {}",
            functions.join(", ")
        )),
        Some(ToolChoice::Mcp { server_label, .. }) if !labels.contains(&server_label.as_str()) => {
            Err(format!(
                "server_label {server_label:?} is not in [[mcp_servers]]; known: {}",
                labels.join(", ")
            ))
        }
        _ => Ok(()),
    }
}

/// `prompt_id`, `prompt_version`, `prompt_variables` (a table, or `name=value,…` from the
/// environment) → `prompt {id, version, variables}` (`responses/response_prompt.py`).
fn prompt(r: &mut Raw) -> Result<Option<StoredPrompt>, ConfigError> {
    let id = r.prompt_id.take().filter(|i| !i.is_empty());
    let version = r.prompt_version.take().filter(|v| !v.is_empty());
    let variables: BTreeMap<String, String> =
        name_value_pairs("prompt_variables", "value", r.prompt_variables.take())?
            .into_iter()
            .collect();
    for k in variables.keys() {
        if k.is_empty() {
            return Err(invalid("prompt_variables", "a variable needs a name"));
        }
    }
    for (k, v) in &variables {
        super::profiles::check_placeholders(&format!("prompt_variables.{k}"), v)?;
    }
    match id {
        Some(id) => Ok(Some(StoredPrompt {
            id,
            version,
            variables,
        })),
        None if version.is_some() || !variables.is_empty() => Err(invalid(
            "prompt_id",
            "required with prompt_version or prompt_variables",
        )),
        None => Ok(None),
    }
}

/// `"auto"`, `"disabled"`, a ratio (a number, or its text from the environment), or
/// `{ type = "retention_ratio", retention_ratio = 0.8, token_limits = { post_instructions = N } }`
/// (`realtime_truncation.py`, `realtime_truncation_retention_ratio.py`).
fn truncation(v: &toml::Value) -> Result<Truncation, ConfigError> {
    let ratio = |key: &str, x: f64| -> Result<f64, ConfigError> {
        if (0.0..=1.0).contains(&x) {
            Ok(x)
        } else {
            Err(invalid(key, format!("{x}; allowed: 0.0 to 1.0")))
        }
    };
    let allowed = "allowed: \"auto\", \"disabled\", a retention ratio (0.0 to 1.0) or { type = \"retention_ratio\", retention_ratio = 0.8, token_limits = { post_instructions = N } }";
    match v {
        toml::Value::String(s) if s == "auto" => Ok(Truncation::Auto),
        toml::Value::String(s) if s == "disabled" => Ok(Truncation::Disabled),
        toml::Value::String(s) if s.trim().parse::<f64>().is_ok() => {
            Ok(Truncation::RetentionRatio {
                retention_ratio: ratio(
                    "truncation.retention_ratio",
                    s.trim().parse().unwrap_or(-1.0),
                )?,
                post_instructions: None,
            })
        }
        toml::Value::Float(x) => Ok(Truncation::RetentionRatio {
            retention_ratio: ratio("truncation.retention_ratio", *x)?,
            post_instructions: None,
        }),
        toml::Value::Table(t) => {
            for (k, val) in t {
                match (k.as_str(), val.as_str()) {
                    ("type", Some("retention_ratio")) | ("retention_ratio" | "token_limits", _) => {
                    }
                    ("type", _) => {
                        return Err(invalid(
                            "truncation.type",
                            format!("{val}; allowed: \"retention_ratio\""),
                        ))
                    }
                    _ => {
                        return Err(invalid(
                            &format!("truncation.{k}"),
                            "unknown key; allowed: type, retention_ratio, token_limits",
                        ))
                    }
                }
            }
            let x = match t.get("retention_ratio") {
                Some(toml::Value::Float(x)) => *x,
                Some(toml::Value::Integer(n)) => *n as f64,
                Some(other) => {
                    return Err(invalid(
                        "truncation.retention_ratio",
                        format!("{other} is not a number"),
                    ))
                }
                None => {
                    return Err(invalid(
                        "truncation.retention_ratio",
                        "required (0.0 to 1.0)",
                    ))
                }
            };
            let post_instructions = match t.get("token_limits") {
                None => None,
                Some(toml::Value::Table(l)) => {
                    if let Some(k) = l.keys().find(|k| *k != "post_instructions") {
                        return Err(invalid(
                            &format!("truncation.token_limits.{k}"),
                            "unknown key; allowed: post_instructions",
                        ));
                    }
                    match l.get("post_instructions") {
                        None => None,
                        Some(toml::Value::Integer(n)) if *n >= 1 => Some(*n as u64),
                        Some(other) => {
                            return Err(invalid(
                                "truncation.token_limits.post_instructions",
                                format!("{other}; allowed: a whole number of tokens, 1 or more"),
                            ))
                        }
                    }
                }
                Some(other) => {
                    return Err(invalid(
                        "truncation.token_limits",
                        format!("{other}: expected {{ post_instructions = N }}"),
                    ))
                }
            };
            Ok(Truncation::RetentionRatio {
                retention_ratio: ratio("truncation.retention_ratio", x)?,
                post_instructions,
            })
        }
        other => Err(invalid("truncation", format!("{other}; {allowed}"))),
    }
}

/// A mode (`none`, `auto`, `required`), `{ type = "function", name = ".." }` or
/// `{ type = "mcp", server_label = "..", name = ".." }` (`realtime_tool_choice_config.py`).
fn tool_choice(v: &toml::Value) -> Result<ToolChoice, ConfigError> {
    let key = "tool_choice";
    let allowed = format!(
        "allowed: {}, {{ type = \"function\", name = \"..\" }} or {{ type = \"mcp\", server_label = \"..\", name = \"..\" }}",
        TOOL_CHOICE_MODES.join(", ")
    );
    let text = |t: &toml::Table, k: &str| t.get(k).and_then(toml::Value::as_str).map(str::to_owned);
    match v {
        toml::Value::String(s) if TOOL_CHOICE_MODES.contains(&s.as_str()) => {
            Ok(ToolChoice::Mode(s.clone()))
        }
        toml::Value::Table(t) => {
            let fields: &[&str] = match t.get("type").and_then(toml::Value::as_str) {
                Some("function") => &["type", "name"],
                Some("mcp") => &["type", "server_label", "name"],
                _ => {
                    return Err(invalid(
                        "tool_choice.type",
                        format!(
                            "{}; allowed: \"function\", \"mcp\"",
                            t.get("type").map_or("missing".into(), |v| v.to_string())
                        ),
                    ))
                }
            };
            if let Some(k) = t.keys().find(|k| !fields.contains(&k.as_str())) {
                return Err(invalid(
                    &format!("tool_choice.{k}"),
                    format!("unknown key; allowed: {}", fields.join(", ")),
                ));
            }
            if fields.len() == 2 {
                let name = text(t, "name")
                    .ok_or_else(|| invalid("tool_choice.name", "required: a function's name"))?;
                Ok(ToolChoice::Function { name })
            } else {
                let server_label = text(t, "server_label")
                    .ok_or_else(|| invalid("tool_choice.server_label", "required"))?;
                Ok(ToolChoice::Mcp {
                    server_label,
                    name: text(t, "name"),
                })
            }
        }
        other => Err(invalid(key, format!("{other}; {allowed}"))),
    }
}

/// `"auto"` or `{ workflow_name, group_id, metadata }` (`realtime_tracing_config.py`).
fn tracing(v: &toml::Value) -> Result<Tracing, ConfigError> {
    match v {
        toml::Value::String(s) if s == "auto" => Ok(Tracing::Auto),
        toml::Value::Table(t) => {
            for (k, val) in t {
                let ok = match k.as_str() {
                    "workflow_name" | "group_id" => val.is_str(),
                    "metadata" => val.is_table(),
                    _ => {
                        return Err(invalid(
                            &format!("tracing.{k}"),
                            "unknown key; allowed: workflow_name, group_id, metadata",
                        ))
                    }
                };
                if !ok {
                    return Err(invalid(
                        &format!("tracing.{k}"),
                        format!(
                            "{val}: expected {}",
                            if k == "metadata" {
                                "a table"
                            } else {
                                "a string"
                            }
                        ),
                    ));
                }
            }
            let text = |k: &str| t.get(k).and_then(toml::Value::as_str).map(str::to_owned);
            Ok(Tracing::Config {
                workflow_name: text("workflow_name"),
                group_id: text("group_id"),
                metadata: t.get("metadata").map(json),
            })
        }
        other => Err(invalid(
            "tracing",
            format!("{other}; allowed: \"auto\" or {{ workflow_name, group_id, metadata }}"),
        )),
    }
}

/// `[[mcp_servers]]`: each with a unique `server_label` and an http(s) `server_url`.
fn mcp_servers(raw: Vec<RawMcp>) -> Result<Vec<McpServer>, ConfigError> {
    let mut out: Vec<McpServer> = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        let key = |f: &str| format!("mcp_servers[{i}].{f}");
        if !super::valid_name(&m.server_label) {
            return Err(invalid(
                &key("server_label"),
                format!("{:?}; allowed: 1 to 64 of A-Z a-z 0-9 _ -", m.server_label),
            ));
        }
        if out.iter().any(|o| o.server_label == m.server_label) {
            return Err(invalid(
                &key("server_label"),
                format!("{:?} is given twice", m.server_label),
            ));
        }
        let url = m.server_url.unwrap_or_default();
        let url_ok = (url.starts_with("https://") || url.starts_with("http://"))
            && url
                .parse::<http::Uri>()
                .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
        if !url_ok {
            return Err(invalid(
                &key("server_url"),
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        out.push(McpServer {
            server_label: m.server_label,
            server_url: url,
            server_description: m.server_description.filter(|d| !d.is_empty()),
            allowed_tools: m
                .allowed_tools
                .map(|a| tool_filter(&key("allowed_tools"), &a, true))
                .transpose()?,
            require_approval: m
                .require_approval
                .map(|a| approval(&key("require_approval"), &a))
                .transpose()?,
            headers: m.headers.unwrap_or_default(),
            authorization: m.authorization.filter(|a| !a.is_empty()),
        });
    }
    Ok(out)
}

/// `McpAllowedToolsMcpToolFilter` / the approval filters: `{ read_only, tool_names }`; a
/// plain list of names too where `list` (`allowed_tools`).
fn tool_filter(key: &str, v: &toml::Value, list: bool) -> Result<Value, ConfigError> {
    let names = |k: &str, a: &toml::Value| -> Result<(), ConfigError> {
        let ok = a
            .as_array()
            .is_some_and(|a| a.iter().all(toml::Value::is_str));
        if ok {
            Ok(())
        } else {
            Err(invalid(k, format!("{a}: expected a list of tool names")))
        }
    };
    match v {
        toml::Value::Array(_) if list => names(key, v)?,
        toml::Value::Table(t) => {
            for (k, val) in t {
                let at = format!("{key}.{k}");
                match k.as_str() {
                    "tool_names" => names(&at, val)?,
                    "read_only" if val.is_bool() => {}
                    "read_only" => return Err(invalid(&at, format!("{val}: expected true|false"))),
                    _ => return Err(invalid(&at, "unknown key; allowed: read_only, tool_names")),
                }
            }
        }
        other => {
            return Err(invalid(
                key,
                format!(
                    "{other}: expected {}{{ read_only = true|false, tool_names = [..] }}",
                    if list { "a list of tool names or " } else { "" }
                ),
            ))
        }
    }
    Ok(json(v))
}

/// `"always"`, `"never"`, or `{ always = {filter}, never = {filter} }` (`McpRequireApproval`).
fn approval(key: &str, v: &toml::Value) -> Result<Value, ConfigError> {
    match v {
        toml::Value::String(s) if s == "always" || s == "never" => Ok(json(v)),
        toml::Value::Table(t) => {
            for (k, val) in t {
                match k.as_str() {
                    "always" | "never" => {
                        tool_filter(&format!("{key}.{k}"), val, false)?;
                    }
                    _ => {
                        return Err(invalid(
                            &format!("{key}.{k}"),
                            "unknown key; allowed: always, never",
                        ))
                    }
                }
            }
            Ok(json(v))
        }
        other => Err(invalid(
            key,
            format!(
                "{other}; allowed: \"always\", \"never\" or {{ always = {{..}}, never = {{..}} }}"
            ),
        )),
    }
}

/// These settings as config keys and values (JSON text for tables, as the environment takes
/// them): what a recording's header holds so a replay runs with the same session. MCP
/// credentials are `<redacted>` (a recording never holds a secret).
pub fn config_pairs(
    s: &crate::realtime::SessionConfig,
    dialect: Dialect,
) -> Vec<(&'static str, String)> {
    let v = crate::realtime::settings::redact_session(&s.to_json(dialect));
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = Vec::new();
    let set = &s.settings;
    if set.reasoning_effort.is_some() {
        out.push(("reasoning_effort", text(&v["reasoning"]["effort"])));
    }
    if let Some(p) = set.parallel_tool_calls {
        out.push(("parallel_tool_calls", p.to_string()));
    }
    if let Some(p) = &set.prompt {
        out.push(("prompt_id", p.id.clone()));
        if let Some(version) = &p.version {
            out.push(("prompt_version", version.clone()));
        }
        if !p.variables.is_empty() {
            out.push(("prompt_variables", v["prompt"]["variables"].to_string()));
        }
    }
    for (key, set) in [
        ("truncation", set.truncation.is_some()),
        ("tool_choice", set.tool_choice.is_some()),
        ("tracing", set.tracing.is_some()),
    ] {
        if set && !v[key].is_null() {
            out.push((key, text(&v[key])));
        }
    }
    let mcp: Vec<Value> = v["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "mcp")
        .map(|t| {
            let mut t = t.clone();
            if let Some(o) = t.as_object_mut() {
                o.remove("type");
            }
            t
        })
        .collect();
    if !mcp.is_empty() {
        out.push(("mcp_servers", Value::Array(mcp).to_string()));
    }
    out
}
