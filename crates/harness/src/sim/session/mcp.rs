//! Remote MCP calls, as OpenAI runs them: a scripted call named `mcp:LABEL/TOOL` (in
//! `SimConfig::reply_tool_calls`) becomes an `mcp_call` item on the server the session
//! declared with that `server_label` — item added, `response.mcp_call.in_progress`, arguments
//! done, `response.mcp_call.completed` (or `.failed`), item done — answered by the simulator
//! itself (output: the tool and its arguments). A label the session did not declare fails with
//! a protocol error. Shapes: `openai==3.63.0` `realtime_mcp_tool_call.py`,
//! `response_mcp_call_*.py`, `response_mcp_call_arguments_done.py`.

use serde_json::{json, Value};

use super::{Resp, Session};

impl Session {
    /// Whether the session declared an MCP server with this label.
    fn mcp_declared(&self, label: &str) -> bool {
        self.config["tools"].as_array().is_some_and(|tools| {
            tools
                .iter()
                .any(|t| t["type"] == "mcp" && t["server_label"] == label)
        })
    }

    /// One MCP call of response `r` at `index`; returns the completed item.
    pub(super) fn mcp_call(
        &mut self,
        r: &Resp,
        index: usize,
        label: &str,
        tool: &str,
        args: &str,
    ) -> Value {
        let item_id = self.new_id("mcp_");
        let added = json!({"id": item_id, "type": "mcp_call", "server_label": label, "name": tool,
            "arguments": "", "approval_request_id": null, "output": null, "error": null});
        self.send(
            json!({"type": "response.output_item.added", "response_id": r.id,
            "output_index": index, "item": added}),
        );
        let at = json!({"item_id": item_id, "output_index": index});
        let with = |ty: &str| {
            let mut v = at.clone();
            v["type"] = json!(ty);
            v
        };
        self.send(with("response.mcp_call.in_progress"));
        let mut done_args = with("response.mcp_call_arguments.done");
        done_args["response_id"] = json!(r.id);
        done_args["arguments"] = json!(args);
        self.send(done_args);
        let mut item = json!({"id": item_id, "type": "mcp_call", "server_label": label,
            "name": tool, "arguments": args, "approval_request_id": null});
        if self.mcp_declared(label) {
            let arguments: Value = serde_json::from_str(args).unwrap_or(Value::Null);
            item["output"] = json!(json!({"tool": tool, "arguments": arguments}).to_string());
            item["error"] = Value::Null;
            self.send(with("response.mcp_call.completed"));
        } else {
            item["output"] = Value::Null;
            item["error"] = json!({"type": "protocol_error", "code": -32602,
                "message": format!("no MCP server labelled '{label}' in this session")});
            self.send(with("response.mcp_call.failed"));
        }
        self.send(
            json!({"type": "response.output_item.done", "response_id": r.id,
            "output_index": index, "item": item}),
        );
        item
    }
}
