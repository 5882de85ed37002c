//! Remote MCP tool calls: OpenAI runs them (the bridge declares the servers, `[[mcp_servers]]`)
//! and the call only records them — in the conversation log and the tool-call records, like a
//! function call (name, arguments, output or error, time taken) — so reports, the transcript
//! and a replayed conversation show them. Nothing is sent back: the server answers itself.
//!
//! Shapes: `realtime_mcp_tool_call.py` (item `mcp_call`: id, name, arguments, server_label,
//! output, error) and `response_mcp_call_in_progress.py` (when the call's time starts), SDK
//! `openai==3.63.0`.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::json;

use super::tools::ToolCallRecord;
use super::{Call, CallEvent};
use crate::realtime::OutputItem;

/// MCP calls remembered at most (a call never makes this many at once).
const MAX_TRACKED: usize = 256;

/// MCP call bookkeeping of one call.
#[derive(Default)]
pub(crate) struct McpCalls {
    /// Item id → when OpenAI started calling the tool.
    started: VecDeque<(String, Instant)>,
    /// Item ids already recorded (an item can be seen again in a replayed event).
    recorded: VecDeque<String>,
}

fn remember<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == MAX_TRACKED {
        q.pop_front();
    }
    q.push_back(v);
}

impl Call {
    /// `response.mcp_call.in_progress`.
    pub(super) fn mcp_call_started(&mut self, item_id: String, now: Instant) {
        remember(&mut self.tools.mcp.started, (item_id, now));
    }

    /// An `mcp_call` output item is done: recorded like a function call, once.
    pub(super) fn mcp_call_done(&mut self, item: &OutputItem, now: Instant) {
        let (Some(id), Some(name)) = (item.id.as_deref(), item.name.as_deref()) else {
            return;
        };
        let mcp = &mut self.tools.mcp;
        if mcp.recorded.iter().any(|r| r == id) {
            return;
        }
        remember(&mut mcp.recorded, id.to_owned());
        let seconds = mcp
            .started
            .iter()
            .position(|(i, _)| i == id)
            .and_then(|p| mcp.started.remove(p))
            .map(|(_, at)| now.saturating_duration_since(at).as_secs_f64());
        let arguments = item.arguments.clone().unwrap_or_default();
        let (output, result) = match (&item.error, &item.output) {
            (Some(e), _) if !e.is_null() => (json!({"error": e}).to_string(), "mcp_error"),
            (_, Some(out)) => (out.clone(), "ok"),
            _ => (String::new(), "ok"),
        };
        self.conversation.tool_call(id, name, &arguments);
        self.conversation.tool_output(id, &output);
        if self.tools.records.len() < MAX_TRACKED {
            self.tools.records.push(ToolCallRecord {
                call_id: id.to_owned(),
                tool: name.to_owned(),
                arguments,
                output: Some(output),
                result: Some(result),
            });
        }
        // The metric label is the configured server (`mcp:LABEL`), not the tool's name: names
        // come from the MCP server, labels from the config, so the series stay bounded.
        let label = item.server_label.as_deref().filter(|l| {
            self.cfg
                .session
                .settings
                .mcp_servers
                .iter()
                .any(|m| m.server_label == *l)
        });
        self.out
            .push_back(super::Output::Event(CallEvent::ToolCall {
                tool: format!("mcp:{}", label.unwrap_or("unknown")),
                call_id: id.to_owned(),
                result,
                seconds,
            }));
    }
}
