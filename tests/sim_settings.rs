//! The simulator's strict checks of the 2026 session settings: what the OpenAI SDK's models
//! (`openai==3.63.0`, `openai/types/realtime/`) allow is accepted, anything else refused like
//! the real server does — an `invalid_request_error` naming the param, the update not applied.

use callbridge::sim::SimConfig;
use serde_json::{json, Value};

mod support;
use support::realtime_ws::{opened, recv, update_session, Ws};

/// Sends `session.update` with `session`; the answer.
async fn update(ws: &mut Ws, session: Value) -> Value {
    update_session(ws, session).await;
    recv(ws).await
}

#[tokio::test]
async fn ga_accepts_the_sdk_shapes_and_refuses_the_rest_naming_the_param() {
    let (_sim, mut ws) = opened(SimConfig::default(), false).await;
    let good = json!({"type": "realtime",
        "reasoning": {"effort": "xhigh"}, "parallel_tool_calls": true,
        "prompt": {"id": "pmpt_1", "version": "2", "variables": {"a": "b", "img": {"type": "input_text", "text": "t"}}},
        "truncation": {"type": "retention_ratio", "retention_ratio": 0.0, "token_limits": {"post_instructions": 100}},
        "tracing": {"workflow_name": "w", "group_id": "g", "metadata": {"k": 1}},
        "tools": [{"type": "mcp", "server_label": "crm", "server_url": "https://x/mcp",
                   "allowed_tools": {"read_only": true, "tool_names": ["a"]},
                   "require_approval": {"always": {"tool_names": ["w"]}, "never": null},
                   "headers": {"X-Key": "v"}, "authorization": "t", "server_description": "d"}],
        "tool_choice": {"type": "mcp", "server_label": "crm"}});
    let ok = update(&mut ws, good).await;
    assert_eq!(ok["type"], "session.updated", "{ok}");
    assert_eq!(ok["session"]["truncation"]["retention_ratio"], 0.0);
    for session in [
        json!({"type": "realtime", "truncation": "disabled", "tracing": "auto", "tool_choice": "required"}),
        json!({"type": "realtime", "truncation": "auto", "tracing": null, "tool_choice": {"type": "function", "name": "f"}}),
    ] {
        let ok = update(&mut ws, session.clone()).await;
        assert_eq!(ok["type"], "session.updated", "{session} → {ok}");
    }

    let bad = [
        (
            json!({"reasoning": {"effort": "max"}}),
            "session.reasoning.effort",
        ),
        (
            json!({"reasoning": {"budget": 1}}),
            "session.reasoning.budget",
        ),
        (
            json!({"parallel_tool_calls": "yes"}),
            "session.parallel_tool_calls",
        ),
        (json!({"prompt": {"version": "1"}}), "session.prompt.id"),
        (
            json!({"prompt": {"id": "p", "variables": {"a": 1}}}),
            "session.prompt.variables.a",
        ),
        (json!({"truncation": "sometimes"}), "session.truncation"),
        (
            json!({"truncation": {"type": "retention_ratio", "retention_ratio": 1.5}}),
            "session.truncation.retention_ratio",
        ),
        (
            json!({"truncation": {"type": "retention_ratio"}}),
            "session.truncation.retention_ratio",
        ),
        (
            json!({"truncation": {"type": "tokens", "retention_ratio": 0.5}}),
            "session.truncation.type",
        ),
        (
            json!({"truncation": {"type": "retention_ratio", "retention_ratio": 0.5, "token_limits": {"max": 1}}}),
            "session.truncation.token_limits.max",
        ),
        (json!({"tracing": "on"}), "session.tracing"),
        (
            json!({"tracing": {"workflow": "w"}}),
            "session.tracing.workflow",
        ),
        (json!({"tool_choice": "always"}), "session.tool_choice"),
        (
            json!({"tool_choice": {"type": "function"}}),
            "session.tool_choice.name",
        ),
        (
            json!({"tool_choice": {"type": "mcp", "name": "x"}}),
            "session.tool_choice.server_label",
        ),
        (
            json!({"tools": [{"type": "mcp", "server_url": "https://x"}]}),
            "session.tools[0].server_label",
        ),
        (
            json!({"tools": [{"type": "mcp", "server_label": "a"}]}),
            "session.tools[0].server_url",
        ),
        (
            json!({"tools": [{"type": "mcp", "server_label": "a", "server_url": "u", "require_approval": "maybe"}]}),
            "session.tools[0].require_approval",
        ),
        (
            json!({"tools": [{"type": "mcp", "server_label": "a", "server_url": "u", "allowed_tools": {"names": []}}]}),
            "session.tools[0].allowed_tools.names",
        ),
        (
            json!({"tools": [{"type": "mcp", "server_label": "a", "server_url": "u", "headers": {"h": 1}}]}),
            "session.tools[0].headers.h",
        ),
        (
            json!({"tools": [{"type": "web_search"}]}),
            "session.tools[0].type",
        ),
    ];
    for (mut session, param) in bad {
        session["type"] = json!("realtime");
        let e = update(&mut ws, session.clone()).await;
        assert_eq!(e["type"], "error", "{session}");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["param"], param, "{session} → {e}");
    }
    // Nothing wrong was applied.
    let last = update(&mut ws, json!({"type": "realtime"})).await;
    assert_eq!(last["session"]["reasoning"], json!({"effort": "xhigh"}));
    assert_eq!(last["session"]["truncation"], "auto");
}

#[tokio::test]
async fn beta_has_tracing_and_a_tool_choice_string_only() {
    let (_sim, mut ws) = opened(SimConfig::default(), true).await;
    let ok = update(&mut ws, json!({"tracing": "auto", "tool_choice": "none"})).await;
    assert_eq!(ok["type"], "session.updated", "{ok}");
    for (session, param) in [
        (json!({"reasoning": {"effort": "low"}}), "session.reasoning"),
        (
            json!({"parallel_tool_calls": true}),
            "session.parallel_tool_calls",
        ),
        (json!({"truncation": "auto"}), "session.truncation"),
        (json!({"prompt": {"id": "p"}}), "session.prompt"),
        (
            json!({"tool_choice": {"type": "function", "name": "f"}}),
            "session.tool_choice",
        ),
        (
            json!({"tools": [{"type": "mcp", "server_label": "a", "server_url": "u"}]}),
            "session.tools[0].type",
        ),
    ] {
        let e = update(&mut ws, session.clone()).await;
        assert_eq!(e["type"], "error", "{session}");
        assert_eq!(e["error"]["param"], param, "{session} → {e}");
    }
}
