//! Conversation items the bridge creates with `conversation.item.create`: what a new session
//! needs to carry on a conversation another session started (see `protocol.md`, "Restoring a
//! conversation in a new session").
//!
//! Assistant turns go as **text** (`output_text` in GA, `text` in beta): an assistant item
//! with audio content is refused by the API.

use serde_json::{json, Value};

use super::session::Dialect;

/// One item for `conversation.item.create`.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A user message with text content (what the caller said, transcribed).
    UserText(String),
    /// An assistant message with text content (what the agent said).
    AssistantText(String),
    /// A system message (instructions in the middle of a conversation).
    SystemText(String),
    /// A function call the model made.
    FunctionCall {
        call_id: String,
        name: String,
        /// JSON text, as the model produced it.
        arguments: String,
    },
    /// The result of a function call.
    FunctionCallOutput { call_id: String, output: String },
    /// The answer to a remote MCP server's approval request (GA;
    /// `realtime_mcp_approval_response_param.py`: `id` is required, chosen by the client).
    McpApprovalResponse {
        id: String,
        approval_request_id: String,
        approve: bool,
        reason: String,
    },
}

impl Item {
    /// The `item` object for the given dialect.
    pub fn to_json(&self, dialect: Dialect) -> Value {
        let message = |role: &str, kind: &str, text: &str| json!({"type": "message", "role": role, "content": [{"type": kind, "text": text}]});
        match self {
            Item::UserText(t) => message("user", "input_text", t),
            Item::AssistantText(t) => match dialect {
                Dialect::Ga => message("assistant", "output_text", t),
                Dialect::Beta => message("assistant", "text", t),
            },
            Item::SystemText(t) => message("system", "input_text", t),
            Item::FunctionCall {
                call_id,
                name,
                arguments,
            } => json!({"type": "function_call", "call_id": call_id, "name": name,
                        "arguments": arguments}),
            Item::FunctionCallOutput { call_id, output } => {
                json!({"type": "function_call_output", "call_id": call_id, "output": output})
            }
            Item::McpApprovalResponse {
                id,
                approval_request_id,
                approve,
                reason,
            } => json!({"type": "mcp_approval_response", "id": id,
                        "approval_request_id": approval_request_id, "approve": approve,
                        "reason": reason}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_have_the_documented_shapes_in_both_dialects() {
        assert_eq!(
            Item::AssistantText("Hi".into()).to_json(Dialect::Ga),
            json!({"type":"message","role":"assistant","content":[{"type":"output_text","text":"Hi"}]})
        );
        assert_eq!(
            Item::AssistantText("Hi".into()).to_json(Dialect::Beta),
            json!({"type":"message","role":"assistant","content":[{"type":"text","text":"Hi"}]})
        );
        for d in [Dialect::Ga, Dialect::Beta] {
            assert_eq!(
                Item::UserText("yo".into()).to_json(d),
                json!({"type":"message","role":"user","content":[{"type":"input_text","text":"yo"}]})
            );
            assert_eq!(Item::SystemText("note".into()).to_json(d)["role"], "system");
            assert_eq!(
                Item::FunctionCall {
                    call_id: "c1".into(),
                    name: "f".into(),
                    arguments: "{}".into()
                }
                .to_json(d),
                json!({"type":"function_call","call_id":"c1","name":"f","arguments":"{}"})
            );
            assert_eq!(
                Item::FunctionCallOutput {
                    call_id: "c1".into(),
                    output: "42".into()
                }
                .to_json(d),
                json!({"type":"function_call_output","call_id":"c1","output":"42"})
            );
        }
    }
}
