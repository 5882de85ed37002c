//! The Realtime session settings added in 2026 — reasoning, parallel tool calls, stored
//! prompts, truncation, tool choice, tracing and remote MCP tools — and their JSON.
//!
//! Every field name and allowed value comes from the OpenAI Python SDK's generated models
//! (`openai==3.63.0`, `openai/types/realtime/…`, cited beside each); the beta dialect
//! (`openai/types/beta/realtime/session_update_event.py`) has only `tool_choice` (a string)
//! and `tracing`, so nothing else is ever written in a beta session. Config validates the
//! values; this module only renders them.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// `realtime_reasoning_effort.py`: `Literal["minimal", "low", "medium", "high", "xhigh"]`.
pub const REASONING_EFFORTS: &[&str] = &["minimal", "low", "medium", "high", "xhigh"];
/// `responses/tool_choice_options.py`: `Literal["none", "auto", "required"]`.
pub const TOOL_CHOICE_MODES: &[&str] = &["none", "auto", "required"];

/// `realtime_truncation.py`: `"auto"`, `"disabled"`, or a retention ratio
/// (`realtime_truncation_retention_ratio.py`).
#[derive(Debug, Clone, PartialEq)]
pub enum Truncation {
    Auto,
    Disabled,
    RetentionRatio {
        /// 0.0 to 1.0: the fraction of post-instruction tokens kept when the conversation
        /// overflows (fewer, larger truncations keep the cache warm: what a long call costs).
        retention_ratio: f64,
        /// `token_limits.post_instructions`.
        post_instructions: Option<u64>,
    },
}

impl Truncation {
    fn to_json(&self) -> Value {
        match self {
            Truncation::Auto => json!("auto"),
            Truncation::Disabled => json!("disabled"),
            Truncation::RetentionRatio {
                retention_ratio,
                post_instructions,
            } => {
                let mut v = json!({"type": "retention_ratio", "retention_ratio": retention_ratio});
                if let (Some(n), Some(o)) = (post_instructions, v.as_object_mut()) {
                    o.insert("token_limits".into(), json!({"post_instructions": n}));
                }
                v
            }
        }
    }
}

/// `realtime_tool_choice_config.py`: a mode, a function (`tool_choice_function.py`) or an
/// MCP tool (`tool_choice_mcp.py`).
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    /// One of [`TOOL_CHOICE_MODES`].
    Mode(String),
    Function {
        name: String,
    },
    Mcp {
        server_label: String,
        name: Option<String>,
    },
}

impl ToolChoice {
    fn to_json(&self) -> Value {
        match self {
            ToolChoice::Mode(m) => json!(m),
            ToolChoice::Function { name } => json!({"type": "function", "name": name}),
            ToolChoice::Mcp { server_label, name } => {
                let mut v = json!({"type": "mcp", "server_label": server_label});
                if let (Some(n), Some(o)) = (name, v.as_object_mut()) {
                    o.insert("name".into(), json!(n));
                }
                v
            }
        }
    }
}

/// `realtime_tracing_config.py`: `"auto"` or a `TracingConfiguration` (the same in beta:
/// `SessionTracing`).
#[derive(Debug, Clone, PartialEq)]
pub enum Tracing {
    Auto,
    Config {
        workflow_name: Option<String>,
        group_id: Option<String>,
        /// Any JSON object.
        metadata: Option<Value>,
    },
}

impl Tracing {
    fn to_json(&self) -> Value {
        match self {
            Tracing::Auto => json!("auto"),
            Tracing::Config {
                workflow_name,
                group_id,
                metadata,
            } => {
                let mut o = Map::new();
                if let Some(w) = workflow_name {
                    o.insert("workflow_name".into(), json!(w));
                }
                if let Some(g) = group_id {
                    o.insert("group_id".into(), json!(g));
                }
                if let Some(m) = metadata {
                    o.insert("metadata".into(), m.clone());
                }
                Value::Object(o)
            }
        }
    }
}

/// `responses/response_prompt.py`: a stored prompt (`id`, `version`, `variables`). Variable
/// values are strings here (the SDK also allows input images and files). The SDK marks
/// `session.prompt` deprecated: OpenAI scheduled saved prompts' shutdown for 2026-11-30
/// (`realtime_session_create_request.py`); kept for servers that still serve them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredPrompt {
    pub id: String,
    pub version: Option<String>,
    /// May hold `{{name}}` placeholders, filled from the call's variables.
    pub variables: BTreeMap<String, String>,
}

/// A remote MCP server the model may use (`realtime_tools_config_union.py`, class `Mcp`,
/// `type: "mcp"`): OpenAI calls it, the bridge only declares it.
#[derive(Clone, PartialEq)]
pub struct McpServer {
    pub server_label: String,
    pub server_url: String,
    pub server_description: Option<String>,
    /// A list of tool names (`McpAllowedTools`'s `List[str]`) or a filter object
    /// (`McpAllowedToolsMcpToolFilter`: `read_only`, `tool_names`), as validated by config.
    pub allowed_tools: Option<Value>,
    /// `"always"`, `"never"` or a filter object (`McpRequireApproval`), as validated by config.
    pub require_approval: Option<Value>,
    /// HTTP headers for the MCP server (credentials, usually): never printed.
    pub headers: BTreeMap<String, String>,
    /// An OAuth access token for the server: never printed.
    pub authorization: Option<String>,
}

impl std::fmt::Debug for McpServer {
    // Headers and the token are credentials: their names may be shown, never their values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("server_label", &self.server_label)
            .field("server_url", &self.server_url)
            .field("allowed_tools", &self.allowed_tools)
            .field("require_approval", &self.require_approval)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl McpServer {
    /// The entry of the session's `tools`.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("type".into(), json!("mcp"));
        o.insert("server_label".into(), json!(self.server_label));
        o.insert("server_url".into(), json!(self.server_url));
        if let Some(d) = &self.server_description {
            o.insert("server_description".into(), json!(d));
        }
        if let Some(a) = &self.allowed_tools {
            o.insert("allowed_tools".into(), a.clone());
        }
        if let Some(r) = &self.require_approval {
            o.insert("require_approval".into(), r.clone());
        }
        if !self.headers.is_empty() {
            o.insert("headers".into(), json!(self.headers));
        }
        if let Some(a) = &self.authorization {
            o.insert("authorization".into(), json!(a));
        }
        Value::Object(o)
    }
}

/// The 2026 settings of a session; all unset by default (then nothing is sent and the session
/// is exactly what it was before these existed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionSettings {
    /// GA only: `reasoning.effort` (`realtime_reasoning.py`), one of [`REASONING_EFFORTS`].
    pub reasoning_effort: Option<String>,
    /// GA only (`realtime_session_create_request.py`).
    pub parallel_tool_calls: Option<bool>,
    /// GA only.
    pub prompt: Option<StoredPrompt>,
    /// GA only.
    pub truncation: Option<Truncation>,
    /// GA: any; beta: a mode only (`tool_choice: Optional[str]`). `None`: `"auto"` when the
    /// session has tools, as before.
    pub tool_choice: Option<ToolChoice>,
    /// Both dialects.
    pub tracing: Option<Tracing>,
    /// GA only: remote MCP servers, declared in `tools` after the function tools.
    pub mcp_servers: Vec<McpServer>,
}

impl SessionSettings {
    /// Adds the GA fields to a `session` object (the MCP servers go with the tools).
    pub(crate) fn write_ga(&self, s: &mut Map<String, Value>) {
        if let Some(e) = &self.reasoning_effort {
            s.insert("reasoning".into(), json!({"effort": e}));
        }
        if let Some(p) = self.parallel_tool_calls {
            s.insert("parallel_tool_calls".into(), json!(p));
        }
        if let Some(p) = &self.prompt {
            let mut o = Map::new();
            o.insert("id".into(), json!(p.id));
            if let Some(v) = &p.version {
                o.insert("version".into(), json!(v));
            }
            if !p.variables.is_empty() {
                o.insert("variables".into(), json!(p.variables));
            }
            s.insert("prompt".into(), Value::Object(o));
        }
        if let Some(t) = &self.truncation {
            s.insert("truncation".into(), t.to_json());
        }
        if let Some(t) = &self.tracing {
            s.insert("tracing".into(), t.to_json());
        }
    }

    /// Adds what the beta dialect has of these (`tracing`).
    pub(crate) fn write_beta(&self, s: &mut Map<String, Value>) {
        if let Some(t) = &self.tracing {
            s.insert("tracing".into(), t.to_json());
        }
    }

    /// The `tool_choice` to send, if one was configured (a beta session gets modes only).
    pub(crate) fn tool_choice_json(&self, beta: bool) -> Option<Value> {
        match &self.tool_choice {
            Some(c @ ToolChoice::Mode(_)) => Some(c.to_json()),
            Some(c) if !beta => Some(c.to_json()),
            _ => None,
        }
    }

    /// Whether any setting holds a `{{placeholder}}` the call's variables fill.
    pub fn has_placeholders(&self) -> bool {
        self.prompt
            .as_ref()
            .is_some_and(|p| p.variables.values().any(|v| v.contains("{{")))
    }
}

/// A copy of a `session` object with MCP credentials (`headers` values, `authorization`)
/// replaced by `"<redacted>"`: for recordings and anything else written outside the socket.
pub fn redact_session(session: &Value) -> Value {
    let mut s = session.clone();
    if let Some(tools) = s.get_mut("tools").and_then(Value::as_array_mut) {
        for t in tools
            .iter_mut()
            .filter(|t| t.get("type").and_then(Value::as_str) == Some("mcp"))
        {
            if let Some(h) = t.get_mut("headers").and_then(Value::as_object_mut) {
                for v in h.values_mut() {
                    *v = json!("<redacted>");
                }
            }
            if let Some(a) = t.get_mut("authorization") {
                *a = json!("<redacted>");
            }
        }
    }
    s
}
