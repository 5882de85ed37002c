//! Strict checks of the 2026 session settings — `reasoning`, `parallel_tool_calls`, `prompt`,
//! `truncation`, `tracing`, `tool_choice` and `mcp` tools — with the rules of the OpenAI SDK's
//! models (`openai==3.63.0`, `openai/types/realtime/`, cited beside each), refused the way the
//! real server refuses: `invalid_request_error` naming the param.

use serde_json::{Map, Value};

use super::{bad_type, bad_value, boolean, missing, obj, string, unknown, ApiError};

/// `realtime_reasoning_effort.py`.
const EFFORTS: [&str; 5] = ["minimal", "low", "medium", "high", "xhigh"];

/// `realtime_reasoning.py`: `{effort}`.
pub(super) fn reasoning(v: &Value, param: &str) -> Result<(), ApiError> {
    if v.is_null() {
        return Ok(());
    }
    for (k, val) in obj(v, param)? {
        let p = format!("{param}.{k}");
        match (k.as_str(), val.as_str()) {
            ("effort", Some(e)) if EFFORTS.contains(&e) => {}
            ("effort", _) if val.is_null() => {}
            ("effort", _) => {
                return Err(bad_value(
                    &p,
                    val,
                    "Supported values are: 'minimal', 'low', 'medium', 'high', and 'xhigh'.",
                ))
            }
            _ => return Err(unknown(&p, "")),
        }
    }
    Ok(())
}

pub(super) fn parallel_tool_calls(v: &Value, param: &str) -> Result<(), ApiError> {
    boolean(v, param)
}

/// `responses/response_prompt.py`: `{id, version, variables}`; a variable is a string or an
/// input object (text, image, file).
pub(super) fn prompt(v: &Value, param: &str) -> Result<(), ApiError> {
    if v.is_null() {
        return Ok(());
    }
    let o = obj(v, param)?;
    if !o.contains_key("id") {
        return Err(missing(&format!("{param}.id")));
    }
    for (k, val) in o {
        let p = format!("{param}.{k}");
        match k.as_str() {
            "id" => string(val, &p)?,
            "version" if val.is_null() => {}
            "version" => string(val, &p)?,
            "variables" if val.is_null() => {}
            "variables" => {
                for (name, x) in obj(val, &p)? {
                    if !(x.is_string() || x.is_object()) {
                        return Err(bad_type(&format!("{p}.{name}"), "a string or an object"));
                    }
                }
            }
            _ => return Err(unknown(&p, "")),
        }
    }
    Ok(())
}

/// `realtime_truncation.py`: `"auto"`, `"disabled"` or `realtime_truncation_retention_ratio.py`
/// `{type: "retention_ratio", retention_ratio (0.0 - 1.0), token_limits {post_instructions}}`.
pub(super) fn truncation(v: &Value, param: &str) -> Result<(), ApiError> {
    match v.as_str() {
        Some("auto" | "disabled") => return Ok(()),
        Some(_) => {
            return Err(bad_value(
                param,
                v,
                "Supported values are: 'auto', 'disabled', or a retention_ratio object.",
            ))
        }
        None => {}
    }
    let o = obj(v, param)?;
    for req in ["type", "retention_ratio"] {
        if !o.contains_key(req) {
            return Err(missing(&format!("{param}.{req}")));
        }
    }
    for (k, val) in o {
        let p = format!("{param}.{k}");
        match k.as_str() {
            "type" if val == "retention_ratio" => {}
            "type" => {
                return Err(bad_value(
                    &p,
                    val,
                    "Supported values are: 'retention_ratio'.",
                ))
            }
            "retention_ratio" => super::num_range(val, &p, 0.0, 1.0)?,
            "token_limits" if val.is_null() => {}
            "token_limits" => {
                for (k2, v2) in obj(val, &p)? {
                    let p2 = format!("{p}.{k2}");
                    match k2.as_str() {
                        "post_instructions" if v2.is_null() => {}
                        "post_instructions" => super::int_range(v2, &p2, 0, u64::MAX)?,
                        _ => return Err(unknown(&p2, "")),
                    }
                }
            }
            _ => return Err(unknown(&p, "")),
        }
    }
    Ok(())
}

/// `realtime_tracing_config.py` (beta: `SessionTracing`, the same shape): `null`, `"auto"` or
/// `{group_id, metadata, workflow_name}`.
pub(super) fn tracing(v: &Value, param: &str) -> Result<(), ApiError> {
    if v.is_null() || v == "auto" {
        return Ok(());
    }
    if v.is_string() {
        return Err(bad_value(
            param,
            v,
            "Supported values are: 'auto', or an object.",
        ));
    }
    for (k, val) in obj(v, param)? {
        let p = format!("{param}.{k}");
        match k.as_str() {
            "group_id" | "workflow_name" if val.is_null() => {}
            "group_id" | "workflow_name" => string(val, &p)?,
            "metadata" => {}
            _ => return Err(unknown(&p, "")),
        }
    }
    Ok(())
}

/// GA `realtime_tool_choice_config.py`: a mode (`tool_choice_options.py`), a function
/// (`tool_choice_function.py`: `{type, name}`) or an MCP tool (`tool_choice_mcp.py`:
/// `{type, server_label, name?}`). Beta: a string (`tool_choice: Optional[str]`).
pub(super) fn tool_choice(v: &Value, param: &str, beta: bool) -> Result<(), ApiError> {
    if beta {
        return string(v, param);
    }
    match v.as_str() {
        Some("none" | "auto" | "required") => return Ok(()),
        Some(_) => {
            return Err(bad_value(
                param,
                v,
                "Supported values are: 'none', 'auto', 'required', or an object.",
            ))
        }
        None => {}
    }
    let o = obj(v, param)?;
    let ty = o
        .get("type")
        .ok_or_else(|| missing(&format!("{param}.type")))?;
    let fields: &[&str] = match ty.as_str() {
        Some("function") => &["type", "name"],
        Some("mcp") => &["type", "server_label", "name"],
        _ => {
            return Err(bad_value(
                &format!("{param}.type"),
                ty,
                "Supported values are: 'function' and 'mcp'.",
            ))
        }
    };
    let required = if fields.len() == 2 {
        "name"
    } else {
        "server_label"
    };
    if !o.contains_key(required) {
        return Err(missing(&format!("{param}.{required}")));
    }
    for (k, val) in o {
        let p = format!("{param}.{k}");
        if !fields.contains(&k.as_str()) {
            return Err(unknown(&p, ""));
        }
        if k != "type" && !(k == "name" && val.is_null() && required == "server_label") {
            string(val, &p)?;
        }
    }
    Ok(())
}

/// `McpAllowedToolsMcpToolFilter` and the approval filters: `{read_only, tool_names}`.
fn tool_filter(v: &Value, param: &str) -> Result<(), ApiError> {
    for (k, val) in obj(v, param)? {
        let p = format!("{param}.{k}");
        match k.as_str() {
            "read_only" => boolean(val, &p)?,
            "tool_names" => string_list(val, &p)?,
            _ => return Err(unknown(&p, "")),
        }
    }
    Ok(())
}

fn string_list(v: &Value, param: &str) -> Result<(), ApiError> {
    match v.as_array() {
        Some(a) if a.iter().all(Value::is_string) => Ok(()),
        _ => Err(bad_type(param, "an array of strings")),
    }
}

/// `realtime_tools_config_union.py`, class `Mcp` (GA only).
pub(super) fn mcp_tool(o: &Map<String, Value>, p: &str) -> Result<(), ApiError> {
    if !o.contains_key("server_label") {
        return Err(missing(&format!("{p}.server_label")));
    }
    if !["server_url", "connector_id", "tunnel_id"]
        .iter()
        .any(|k| o.get(*k).is_some_and(|v| !v.is_null()))
    {
        return Err(ApiError::invalid(
            "missing_required_parameter",
            format!(
                "One of '{p}.server_url', '{p}.connector_id' or '{p}.tunnel_id' must be provided."
            ),
            Some(&format!("{p}.server_url")),
        ));
    }
    for (k, val) in o {
        let pk = format!("{p}.{k}");
        if val.is_null() && k != "type" && k != "server_label" {
            continue;
        }
        match k.as_str() {
            "type" => {}
            "server_label" | "server_url" | "server_description" | "authorization"
            | "tunnel_id" | "connector_id" => string(val, &pk)?,
            "defer_loading" => boolean(val, &pk)?,
            "allowed_callers" => string_list(val, &pk)?,
            "allowed_tools" if val.is_array() => string_list(val, &pk)?,
            "allowed_tools" => tool_filter(val, &pk)?,
            "require_approval" => match val.as_str() {
                Some("always" | "never") => {}
                Some(_) => {
                    return Err(bad_value(
                        &pk,
                        val,
                        "Supported values are: 'always', 'never', or a filter object.",
                    ))
                }
                None => {
                    for (k2, v2) in obj(val, &pk)? {
                        let p2 = format!("{pk}.{k2}");
                        match k2.as_str() {
                            "always" | "never" if v2.is_null() => {}
                            "always" | "never" => tool_filter(v2, &p2)?,
                            _ => return Err(unknown(&p2, "")),
                        }
                    }
                }
            },
            "headers" => {
                for (h, hv) in obj(val, &pk)? {
                    string(hv, &format!("{pk}.{h}"))?;
                }
            }
            _ => return Err(unknown(&pk, "")),
        }
    }
    Ok(())
}
