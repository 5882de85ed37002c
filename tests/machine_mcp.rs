//! Remote MCP tool calls (run by OpenAI, `[[mcp_servers]]`) in the call state machine: each
//! `mcp_call` item is recorded once like a function call — conversation log, tool-call
//! records, a `ToolCall` event with its time — and reaches the call report the way the shell
//! builds it; the bridge sends nothing back for it (the server answers its own calls).

use std::time::{Instant, SystemTime};

use callbridge::call::conversation::Entry;
use callbridge::call::{CallConfig, CallEvent, Output};
use callbridge::realtime::settings::McpServer;
use callbridge::realtime::Dialect;
use callbridge::report::builder::ReportBuilder;
use serde_json::{json, Value};

mod support;
use support::call_harness::H;

fn config() -> CallConfig {
    let mut cfg = CallConfig::default();
    cfg.session.settings.mcp_servers = vec![McpServer {
        server_label: "crm".into(),
        server_url: "https://mcp.example.com/mcp".into(),
        server_description: None,
        allowed_tools: None,
        require_approval: Some(json!("never")),
        headers: Default::default(),
        authorization: None,
    }];
    cfg
}

fn mcp_item(
    id: &str,
    name: &str,
    output: Option<&str>,
    error: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut item = json!({"id": id, "type": "mcp_call", "server_label": "crm", "name": name,
                          "arguments": "{\"customer\":\"42\"}", "approval_request_id": null});
    if let Some(o) = output {
        item["output"] = json!(o);
    }
    if let Some(e) = error {
        item["error"] = e;
    }
    item
}

#[test]
fn mcp_calls_are_logged_and_reported_like_function_calls_and_nothing_is_sent_back() {
    let mut h = H::started(config(), "{}");
    let mut all: Vec<Output> = h.created("r1", 100);
    all.extend(h.rt(
        json!({"type": "response.output_item.added", "response_id": "r1", "output_index": 0,
        "item": mcp_item("mcp_1", "lookup_customer", None, None)}),
        100,
    ));
    all.extend(h.rt(json!({"type": "response.mcp_call.in_progress", "event_id": "e1", "item_id": "mcp_1", "output_index": 0}), 120));
    all.extend(h.rt(json!({"type": "response.mcp_call.in_progress", "event_id": "e2", "item_id": "mcp_2", "output_index": 1}), 130));
    all.extend(h.rt(json!({"type": "response.mcp_call.completed", "event_id": "e3", "item_id": "mcp_1", "output_index": 0}), 370));
    let done = json!({"type": "response.output_item.done", "response_id": "r1", "output_index": 0,
        "item": mcp_item("mcp_1", "lookup_customer", Some("{\"name\":\"Ada\"}"), None)});
    all.extend(h.rt(done.clone(), 370));
    // Seen again (a duplicate event): recorded once.
    all.extend(h.rt(done, 380));
    let failed = mcp_item(
        "mcp_2",
        "open_ticket",
        None,
        Some(json!({"type": "tool_execution_error", "message": "ticket system down"})),
    );
    all.extend(h.rt(json!({"type": "response.output_item.done", "response_id": "r1", "output_index": 1, "item": failed.clone()}), 630));
    all.extend(h.rt(json!({"type": "response.done", "response": {"id": "r1", "status": "completed",
        "output": [mcp_item("mcp_1", "lookup_customer", Some("{\"name\":\"Ada\"}"), None), failed]}}), 640));

    // Nothing goes back to the model for them.
    let to_model: Vec<&str> = all
        .iter()
        .filter_map(|o| match o {
            Output::ToRealtime { event, .. } => Some(event.name()),
            _ => None,
        })
        .collect();
    assert!(to_model.is_empty(), "{to_model:?}");

    // One event each, with the time from in_progress to done; the label is the configured server.
    let calls: Vec<(String, String, &str, Option<u64>)> = all
        .iter()
        .filter_map(|o| match o {
            Output::Event(CallEvent::ToolCall {
                tool,
                call_id,
                result,
                seconds,
            }) => Some((
                tool.clone(),
                call_id.clone(),
                *result,
                seconds.map(|s| (s * 1000.0).round() as u64),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("mcp:crm".into(), "mcp_1".into(), "ok", Some(250)),
            ("mcp:crm".into(), "mcp_2".into(), "mcp_error", Some(500)),
        ]
    );

    let recs = h.call.tool_calls();
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0].tool, "lookup_customer");
    assert_eq!(recs[0].arguments, r#"{"customer":"42"}"#);
    assert_eq!(recs[0].output.as_deref(), Some(r#"{"name":"Ada"}"#));
    assert_eq!(recs[1].tool, "open_ticket");
    assert_eq!(recs[1].result, Some("mcp_error"));

    // The conversation log: the call and its output (or error), as for a function.
    let log: Vec<&Entry> = h
        .call
        .conversation()
        .entries()
        .iter()
        .filter(|e| matches!(e, Entry::ToolCall { .. } | Entry::ToolOutput { .. }))
        .collect();
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(
        matches!(log[0], Entry::ToolCall { call_id, name, .. } if call_id == "mcp_1" && name == "lookup_customer")
    );
    assert!(
        matches!(log[3], Entry::ToolOutput { call_id, output } if call_id == "mcp_2" && output.contains("ticket system down"))
    );

    // The report, built as the shell builds it: every event, then the call's records.
    let t0 = Instant::now();
    let mut b = ReportBuilder::new(t0, SystemTime::UNIX_EPOCH);
    for o in &all {
        if let Output::Event(ev) = o {
            b.on_event(ev, t0);
        }
    }
    b.set_tool_calls(h.call.tool_calls(), &[]);
    let report = serde_json::to_value(b.finish("completed", t0)).expect("JSON");
    assert_eq!(
        report["tool_calls"],
        json!([
            {"name": "lookup_customer", "arguments": {"customer": "42"}, "output": {"name": "Ada"}, "ms": 250, "ok": true},
            {"name": "open_ticket", "arguments": {"customer": "42"},
             "output": {"error": {"type": "tool_execution_error", "message": "ticket system down"}}, "ms": 500, "ok": false},
        ])
    );
}

#[test]
fn an_mcp_call_from_a_server_not_configured_is_recorded_under_a_bounded_label() {
    let mut h = H::started(config(), "{}");
    h.created("r1", 10);
    let mut item = mcp_item("mcp_9", "anything", Some("{}"), None);
    item["server_label"] = json!("someone-else");
    let outs = h.rt(json!({"type": "response.output_item.done", "response_id": "r1", "output_index": 0, "item": item}), 20);
    assert!(outs.iter().any(|o| matches!(o,
        Output::Event(CallEvent::ToolCall { tool, seconds: None, .. }) if tool == "mcp:unknown")));
}

#[test]
fn approval_requests_are_declined_at_once_and_the_model_continues_after_its_response() {
    let mut h = H::started(config(), "{}");
    h.created("r1", 10);
    let request = json!({"id": "mcpr_1", "type": "mcp_approval_request", "server_label": "crm",
                         "name": "delete_customer", "arguments": "{\"customer\":\"42\"}"});
    let outs = h.rt(json!({"type": "response.output_item.done", "response_id": "r1", "output_index": 0, "item": request}), 20);
    let sent: Vec<Value> = outs
        .iter()
        .filter_map(|o| match o {
            Output::ToRealtime { event, .. } => {
                let mut s = String::new();
                event.write_json(Dialect::Ga, &mut s);
                Some(serde_json::from_str(&s).expect("JSON"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        [
            json!({"type": "conversation.item.create", "item": {"type": "mcp_approval_response",
            "id": "bridge_approval_1", "approval_request_id": "mcpr_1", "approve": false,
            "reason": callbridge::call::mcp::DECLINED}})
        ],
        "declined at once; no response.create while r1 is live"
    );
    let outs = h.rt(
        json!({"type": "response.done", "response": {"id": "r1", "status": "completed"}}),
        30,
    );
    let creates = outs
        .iter()
        .filter(
            |o| matches!(o, Output::ToRealtime { event, .. } if event.name() == "response.create"),
        )
        .count();
    assert_eq!(creates, 1, "the model goes on once its response is done");
    let rec = &h.call.tool_calls()[0];
    assert_eq!(
        (rec.tool.as_str(), rec.result),
        ("delete_customer", Some("mcp_declined"))
    );
}

#[test]
fn an_item_with_a_non_text_output_never_makes_a_response_unreadable() {
    let text = r#"{"type":"response.done","response":{"id":"r1","status":"completed","output":[
        {"type":"some_future_item","id":"i0","output":{"rows":[1,2]},"server_label":"crm"},
        {"type":"function_call","id":"i1","name":"f","call_id":"c1","arguments":"{}"}]}}"#;
    match callbridge::realtime::ServerEvent::parse(text) {
        Ok(callbridge::realtime::ServerEvent::ResponseDone { response }) => {
            assert_eq!(response.output.len(), 2);
            assert_eq!(response.output[1].function_call(), Some(("c1", "f", "{}")));
        }
        other => panic!("{other:?}"),
    }
}
