//! Remote MCP tool calls: OpenAI runs them (the bridge declares the servers, `[[mcp_servers]]`)
//! and the call only records them — in the conversation log and the tool-call records, like a
//! function call (name, arguments, output or error, time taken) — so reports, the transcript
//! and a replayed conversation show them. Nothing is sent back: the server answers itself.
//!
//! Approval requests (a server whose `require_approval` is not `never`) are declined at once:
//! nobody on a phone call can approve a tool run, and an unanswered request would leave the
//! model waiting. The model hears why and carries on (one `response.create` once no response
//! is live, as after function outputs).
//!
//! Shapes: `realtime_mcp_tool_call.py` (item `mcp_call`: id, name, arguments, server_label,
//! output, error), `response_mcp_call_in_progress.py` (when the call's time starts),
//! `realtime_mcp_approval_request.py` / `realtime_mcp_approval_response_param.py`, SDK
//! `openai==3.63.0`.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::json;

use super::tools::ToolCallRecord;
use super::{Call, CallEvent, Output};
use crate::realtime::{ClientEvent, Item, OutputItem};

/// Why an approval request is declined (the model reads it).
pub const DECLINED: &str = "Tools that need approval cannot be approved during a phone call.";

/// MCP calls remembered at most (a call never makes this many at once).
const MAX_TRACKED: usize = 256;

/// MCP call bookkeeping of one call.
#[derive(Default)]
pub(crate) struct McpCalls {
    /// Item id → when OpenAI started calling the tool.
    started: VecDeque<(String, Instant)>,
    /// Item ids already recorded (an item can be seen again in a replayed event).
    recorded: VecDeque<String>,
    /// Approval answers sent (their item ids are `bridge_approval_N`).
    approvals: u64,
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
        if item_id.is_empty() {
            return;
        }
        remember(&mut self.tools.mcp.started, (item_id, now));
    }

    /// An output item that is not a function call is done: an `mcp_call` is recorded like a
    /// function call, once; an `mcp_approval_request` is declined (and recorded as such).
    pub(super) fn mcp_item_done(&mut self, item: &OutputItem, now: Instant) {
        let approval = match item.kind.as_deref() {
            Some("mcp_call") => false,
            Some("mcp_approval_request") => true,
            _ => return,
        };
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
            _ if approval => (
                json!({"error": format!("not approved: {DECLINED}")}).to_string(),
                "mcp_declined",
            ),
            (Some(e), _) if !e.is_null() => (json!({"error": e}).to_string(), "mcp_error"),
            (_, Some(out)) => match out.as_str() {
                Some(text) => (text.to_owned(), "ok"),
                None => (out.to_string(), "ok"),
            },
            _ => (String::new(), "ok"),
        };
        if approval && !self.is_ended() {
            self.tools.mcp.approvals += 1;
            self.send_model(ClientEvent::CreateItem(Item::McpApprovalResponse {
                id: format!("bridge_approval_{}", self.tools.mcp.approvals),
                approval_request_id: id.to_owned(),
                approve: false,
                reason: DECLINED.to_owned(),
            }));
            // The model continues once its response is done (`tools_on_response_done`).
            if self.live_response.is_some() {
                self.tools.create_when_idle = true;
            } else if !self.wrapping_up() {
                self.send_model(ClientEvent::ResponseCreate { instructions: None });
            }
        }
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
        self.out.push_back(Output::Event(CallEvent::ToolCall {
            tool: format!("mcp:{}", label.unwrap_or("unknown")),
            call_id: id.to_owned(),
            result,
            seconds,
        }));
    }
}
