//! The Realtime settings added in 2026 (reasoning, parallel tool calls, stored prompts,
//! truncation, tool choice, tracing, remote MCP servers): every key reaches the session the
//! bridge sends — top level and profiles, GA and what beta has — the simulator accepts it, and
//! the OpenAI Python SDK's models (`tests/sdk/validate_realtime.py`, `openai` pinned in
//! `.ci/run`) validate every `session.update` sent. Wrong values are refused at start-up naming
//! the key; configs without these keys send what they always sent.

use std::time::Duration;

use callbridge::realtime::{ClientEvent, Dialect, Item};
use callbridge::sim::{SimConfig, Simulator};
use futures_util::SinkExt;
use serde_json::{json, Value};

mod support;
use support::{bridge, media, simulator, TempDir, WAIT};

/// Every new key at the top level, and a profile overriding each one it can.
const ALL_KEYS: &str = r#"
twilio_api_key = "SKtest"
twilio_api_secret = "twilio-secret"
instructions = "You are the assistant."
reasoning_effort = "low"
parallel_tool_calls = true
prompt_id = "pmpt_0123456789"
prompt_version = "4"
tool_choice = { type = "mcp", server_label = "crm", name = "lookup_customer" }
truncation = { type = "retention_ratio", retention_ratio = 0.7, token_limits = { post_instructions = 8000 } }
tracing = { workflow_name = "callbridge", group_id = "line-1", metadata = { site = "eu" } }
end_call = true

[prompt_variables]
caller = "{{caller_name}}"
brand = "Example Inc."

[[mcp_servers]]
server_label = "crm"
server_url = "https://mcp.example.com/mcp"
server_description = "The customer database."
allowed_tools = ["lookup_customer", "open_ticket"]
require_approval = "never"
headers = { Authorization = "Bearer mcp-secret-token" }

[profiles.sales]
numbers = ["+15550001111"]
reasoning_effort = "xhigh"
parallel_tool_calls = false
prompt_id = "pmpt_sales"
truncation = "disabled"
tool_choice = { type = "function", name = "end_call" }
tracing = "auto"

[[profiles.sales.mcp_servers]]
server_label = "orders"
server_url = "https://orders.example.com/mcp"
allowed_tools = { read_only = true }
require_approval = { never = { tool_names = ["status"] } }
"#;

/// Hanging up (`end_call`, offered in several configs here) needs Twilio REST credentials.
const REST: &str = "twilio_api_key = \"SKtest\"\ntwilio_api_secret = \"twilio-secret\"\n";

/// Validates `events` (`(dialect, event)`: `session.update`s, a GA `conversation.item.create`)
/// with the SDK's models (`support::sdk`: under `CI=true` a missing SDK fails).
fn sdk_validates(events: &[(Dialect, Value)]) {
    let input: Vec<Value> = events
        .iter()
        .map(|(d, e)| json!({"dialect": if *d == Dialect::Ga { "ga" } else { "beta" }, "event": e}))
        .collect();
    support::sdk::run("validate_realtime.py", &[], &Value::Array(input));
}

/// The `session.update` the bridge sent to the simulator's `n`th session, once the simulator
/// has answered it; fails if the simulator refused anything.
async fn sent_update(sim: &Simulator, n: usize) -> Value {
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(s) = sim.sessions().into_iter().nth(n) {
            let errors: Vec<&Value> = s.sent.iter().filter(|e| e["type"] == "error").collect();
            assert!(errors.is_empty(), "the simulator refused: {errors:?}");
            if s.sent.iter().any(|e| e["type"] == "session.updated") {
                let update = s.received.iter().find(|e| e["type"] == "session.update");
                return update.expect("session.update").clone();
            }
        }
        assert!(tokio::time::Instant::now() < end, "no session.updated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The session keys a config sends only when it sets them (`tool_choice` aside: the tools bring
/// it too).
const NEW_KEYS: [&str; 5] = [
    "reasoning",
    "parallel_tool_calls",
    "prompt",
    "truncation",
    "tracing",
];

/// One call on `bridge` with these `start` parameters; its session is the simulator's `n`th.
async fn call(bridge: std::net::SocketAddr, sim: &Simulator, n: usize, params: Value) -> Value {
    let sid = format!("MZset{n}");
    let call_sid = format!("CAset{n}");
    let mut ws = media::connect(format!("ws://{bridge}/media")).await;
    ws.send(media::start("AC1", &sid, &call_sid, params))
        .await
        .expect("send");
    let update = sent_update(sim, n).await;
    media::hang_up(&mut ws, media::stop("AC1", &sid, &call_sid)).await;
    update
}

#[tokio::test]
async fn every_new_key_reaches_the_session_and_the_sdk_models_accept_what_is_sent() {
    let dir = TempDir::new("settings-ga");
    let path = dir.file("callbridge.toml", ALL_KEYS);
    let sim = simulator(SimConfig::default()).await;
    let server = bridge::on_simulator(&sim, &path).await;
    let top = call(
        server.addr,
        &sim,
        0,
        json!({"To": "+15559990000", "var.caller_name": "Ada"}),
    )
    .await;
    let sales = call(server.addr, &sim, 1, json!({"To": "+15550001111"})).await;
    // Each key as the top profile (the call's variables filling the prompt's) and as the sales
    // profile sets it.
    let keys = [
        (
            "reasoning",
            json!({"effort": "low"}),
            json!({"effort": "xhigh"}),
        ),
        ("parallel_tool_calls", json!(true), json!(false)),
        (
            "prompt",
            json!({"id": "pmpt_0123456789", "version": "4",
                   "variables": {"caller": "Ada", "brand": "Example Inc."}}),
            json!({"id": "pmpt_sales", "version": "4",
                   "variables": {"caller": "", "brand": "Example Inc."}}),
        ),
        (
            "truncation",
            json!({"type": "retention_ratio", "retention_ratio": 0.7,
                   "token_limits": {"post_instructions": 8000}}),
            json!("disabled"),
        ),
        (
            "tracing",
            json!({"workflow_name": "callbridge", "group_id": "line-1", "metadata": {"site": "eu"}}),
            json!("auto"),
        ),
        (
            "tool_choice",
            json!({"type": "mcp", "server_label": "crm", "name": "lookup_customer"}),
            json!({"type": "function", "name": "end_call"}),
        ),
    ];
    for (key, top_value, sales_value) in keys {
        assert_eq!(top["session"][key], top_value, "top: {key}");
        assert_eq!(sales["session"][key], sales_value, "sales: {key}");
    }
    let s = &top["session"];
    let tools = s["tools"].as_array().expect("tools");
    assert_eq!(tools[0]["name"], "end_call", "function tools first");
    assert_eq!(
        tools[1],
        json!({"type": "mcp", "server_label": "crm", "server_url": "https://mcp.example.com/mcp",
               "server_description": "The customer database.",
               "allowed_tools": ["lookup_customer", "open_ticket"], "require_approval": "never",
               "headers": {"Authorization": "Bearer mcp-secret-token"}})
    );

    let s = &sales["session"];
    assert_eq!(
        s["tools"][1],
        json!({"type": "mcp", "server_label": "orders", "server_url": "https://orders.example.com/mcp",
               "allowed_tools": {"read_only": true},
               "require_approval": {"never": {"tool_names": ["status"]}}})
    );
    server.stop(Duration::from_secs(1)).await;

    // The beta dialect gets what its SDK model has (tracing, a tool_choice mode), no more.
    let beta_toml = "twilio_api_key = \"SKtest\"\ntwilio_api_secret = \"s\"\ndialect = \"beta\"\ntool_choice = \"required\"\ntracing = \"auto\"\nend_call = true\n";
    let dir = TempDir::new("settings-beta");
    let sim_beta = simulator(SimConfig::default()).await;
    let (server, _) = bridge::start(
        &[
            ("REALTIME_URL", &sim_beta.url()),
            ("OPENAI_API_KEY", "sk-test"),
        ],
        Some(&dir.file("callbridge.toml", beta_toml)),
    )
    .await;
    let beta = call(server.addr, &sim_beta, 0, json!({})).await;
    assert_eq!(beta["session"]["tool_choice"], "required");
    assert_eq!(beta["session"]["tracing"], "auto");
    server.stop(Duration::from_secs(1)).await;

    let mut events = vec![
        (Dialect::Ga, top),
        (Dialect::Ga, sales),
        (Dialect::Beta, beta),
    ];
    events.extend(rendered_variants());
    // The bridge's answer to an MCP approval request (call/mcp.rs declines them).
    let mut out = String::new();
    ClientEvent::CreateItem(Item::McpApprovalResponse {
        id: "bridge_approval_1".into(),
        approval_request_id: "mcpr_1".into(),
        approve: false,
        reason: callbridge::call::mcp::DECLINED.into(),
    })
    .write_json(Dialect::Ga, &mut out);
    events.push((Dialect::Ga, serde_json::from_str(&out).expect("JSON")));
    sdk_validates(&events);
}

/// `session.update`s rendered by the bridge's own code (config → `ClientEvent`) for the
/// forms the live calls above do not use, and for a config with none of the new keys.
fn rendered_variants() -> Vec<(Dialect, Value)> {
    let variants = [
        "truncation = \"auto\"\ntracing = { workflow_name = \"w\" }\ntool_choice = \"none\"\n",
        "truncation = 0.5\nreasoning_effort = \"minimal\"\nprompt_id = \"pmpt_1\"\n",
        "tool_choice = { type = \"mcp\", server_label = \"kb\" }\n[[mcp_servers]]\nserver_label = \"kb\"\nserver_url = \"http://127.0.0.1:9/mcp\"\nrequire_approval = { always = { read_only = false, tool_names = [\"write\"] }, never = { read_only = true } }\nallowed_tools = { tool_names = [\"search\"], read_only = true }\nauthorization = \"oauth-token\"\n",
        "",
        "dialect = \"beta\"\n",
        "dialect = \"beta\"\ntracing = { group_id = \"g\", metadata = { a = \"b\" } }\ntool_choice = \"auto\"\n",
    ];
    variants
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let dir = TempDir::new(&format!("settings-render-{i}"));
            let text = format!("{REST}{text}");
            let cfg = bridge::config(&[], Some(&dir.file("callbridge.toml", &text)));
            let mut out = String::new();
            ClientEvent::SessionUpdate(Box::new(cfg.call.session.clone()))
                .write_json(cfg.call.dialect, &mut out);
            (cfg.call.dialect, serde_json::from_str(&out).expect("JSON"))
        })
        .collect()
}

#[test]
fn configs_without_the_new_keys_send_what_they_always_sent() {
    for text in ["", "dialect = \"beta\"\n", "end_call = true\n"] {
        let dir = TempDir::new("settings-none");
        let text = format!("{REST}{text}");
        let cfg = bridge::config(&[], Some(&dir.file("callbridge.toml", &text)));
        let s = cfg.call.session.to_json(cfg.call.dialect);
        for key in NEW_KEYS {
            assert!(s.get(key).is_none(), "{key} in {s}");
        }
        let has_tools = s.get("tools").is_some();
        assert_eq!(has_tools, text.contains("end_call"), "{s}");
        assert_eq!(s.get("tool_choice").is_some(), has_tools, "{s}");
        if has_tools {
            assert_eq!(s["tool_choice"], "auto");
        }
    }
}

#[test]
fn mcp_credentials_are_never_printed_or_recorded() {
    let dir = TempDir::new("settings-secret");
    let cfg = bridge::config(&[], Some(&dir.file("callbridge.toml", ALL_KEYS)));
    let printed = format!("{cfg:?}");
    assert!(!printed.contains("mcp-secret-token"), "{printed}");
    assert!(printed.contains("Authorization"), "header names may show");
    let header = callbridge::recording::Header::new(&cfg.call, "t");
    assert!(
        !header.session.to_string().contains("mcp-secret-token"),
        "{}",
        header.session
    );
    assert_eq!(
        header.session["tools"][1]["headers"]["Authorization"],
        "<redacted>"
    );
}

/// `text` as the config file (and these variables); the error message.
fn refused(text: &str, env: &[(&str, &str)]) -> String {
    let dir = TempDir::new("settings-bad");
    match bridge::load(
        env,
        Some(&dir.file("callbridge.toml", &format!("{REST}{text}"))),
    ) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e,
    }
}

#[test]
fn wrong_values_are_refused_naming_the_key() {
    let prof = |body: &str| format!("[profiles.sales]\n{body}\n");
    let cases: Vec<(String, &str)> = vec![
        ("reasoning_effort = \"max\"".into(), "reasoning_effort: \"max\"; allowed: minimal, low, medium, high, xhigh"),
        ("truncation = 1.5".into(), "truncation.retention_ratio: 1.5; allowed: 0.0 to 1.0"),
        (prof("truncation = { type = \"retention_ratio\", retention_ratio = 1.5 }"), "profiles.sales.truncation.retention_ratio: 1.5; allowed: 0.0 to 1.0"),
        (prof("truncation = { retention_ratio = 0.5, token_limits = { post_instructions = 0 } }"), "profiles.sales.truncation.token_limits.post_instructions"),
        ("truncation = \"sometimes\"".into(), "truncation: \"sometimes\"; allowed"),
        ("truncation = { type = \"tokens\", retention_ratio = 0.5 }".into(), "truncation.type"),
        ("tool_choice = \"always\"".into(), "tool_choice: \"always\"; allowed: none, auto, required"),
        ("tool_choice = \"required\"".into(), "tool_choice: \"required\" needs at least one tool"),
        ("tool_choice = { type = \"function\", name = \"nope\" }\nend_call = true".into(), "tool_choice: function \"nope\" is not offered; offered: end_call"),
        ("tool_choice = { type = \"function\", name = \"end_call\" }\nend_call = true\n[profiles.sales]\ntools = []".into(), "profiles.sales.tool_choice: function \"end_call\" is not offered"),
        ("tool_choice = { type = \"mcp\", server_label = \"x\" }".into(), "tool_choice: server_label \"x\" is not in [[mcp_servers]]"),
        ("tool_choice = { type = \"function\" }".into(), "tool_choice.name: required"),
        ("tracing = \"on\"".into(), "tracing: \"on\"; allowed: \"auto\""),
        ("tracing = { workflow = \"w\" }".into(), "tracing.workflow: unknown key"),
        ("prompt_version = \"2\"".into(), "prompt_id: required with prompt_version or prompt_variables"),
        ("prompt_id = \"p\"\n[prompt_variables]\nx = 1".into(), "prompt_variables.x: 1: the value must be a string"),
        ("prompt_id = \"p\"\n[prompt_variables]\nx = \"{{bad name}}\"".into(), "prompt_variables.x: {{bad name}} is not a variable name"),
        ("[[mcp_servers]]\nserver_label = \"crm\"".into(), "mcp_servers[0].server_url: \"\" is not an http:// or https:// URL"),
        ("[[mcp_servers]]\nserver_label = \"a b\"\nserver_url = \"https://x\"".into(), "mcp_servers[0].server_label"),
        ("[[mcp_servers]]\nserver_label = \"a\"\nserver_url = \"https://x\"\n[[mcp_servers]]\nserver_label = \"a\"\nserver_url = \"https://y\"".into(), "mcp_servers[1].server_label: \"a\" is given twice"),
        ("[[mcp_servers]]\nserver_label = \"a\"\nserver_url = \"https://x\"\nrequire_approval = \"sometimes\"".into(), "mcp_servers[0].require_approval: \"sometimes\"; allowed"),
        ("[[mcp_servers]]\nserver_label = \"a\"\nserver_url = \"https://x\"\nallowed_tools = { names = [\"a\"] }".into(), "mcp_servers[0].allowed_tools.names: unknown key"),
        (prof("[[profiles.sales.mcp_servers]]\nserver_label = \"a\"\nserver_url = \"ftp://x\""), "profiles.sales.mcp_servers[0].server_url"),
        // The beta dialect has none of these (openai/types/beta/realtime/session_update_event.py).
        ("dialect = \"beta\"\nreasoning_effort = \"low\"".into(), "reasoning_effort: the beta Realtime dialect has no such setting"),
        ("dialect = \"beta\"\nparallel_tool_calls = true".into(), "parallel_tool_calls: the beta Realtime dialect"),
        ("dialect = \"beta\"\nprompt_id = \"p\"".into(), "prompt_id: the beta Realtime dialect"),
        ("dialect = \"beta\"\ntruncation = \"auto\"".into(), "truncation: the beta Realtime dialect"),
        ("dialect = \"beta\"\n[[mcp_servers]]\nserver_label = \"a\"\nserver_url = \"https://x\"".into(), "mcp_servers: the beta Realtime dialect"),
        ("dialect = \"beta\"\nend_call = true\ntool_choice = { type = \"function\", name = \"end_call\" }".into(), "tool_choice: the beta Realtime dialect takes a mode only"),
        (format!("dialect = \"beta\"\n{}", prof("truncation = \"auto\"")), "profiles.sales.truncation: the beta Realtime dialect"),
    ];
    for (text, want) in cases {
        let e = refused(&text, &[]);
        assert!(e.contains(want), "{text}\n→ {e}\nwanted: {want}");
    }
    // From the environment too.
    let e = refused("", &[("CALLBRIDGE_REASONING_EFFORT", "lots")]);
    assert!(e.starts_with("reasoning_effort: \"lots\""), "{e}");
    let e = refused("", &[("CALLBRIDGE_TRUNCATION", "2")]);
    assert!(e.starts_with("truncation.retention_ratio: 2"), "{e}");
}

#[test]
fn the_environment_sets_the_simple_forms() {
    let cfg = bridge::config(
        &[
            ("CALLBRIDGE_REASONING_EFFORT", "medium"),
            ("CALLBRIDGE_PARALLEL_TOOL_CALLS", "true"),
            ("CALLBRIDGE_PROMPT_ID", "pmpt_9"),
            ("CALLBRIDGE_PROMPT_VARIABLES", "a=1, b = two"),
            ("CALLBRIDGE_TRUNCATION", "0.25"),
            ("CALLBRIDGE_TOOL_CHOICE", "none"),
            ("CALLBRIDGE_TRACING", "auto"),
        ],
        None,
    );
    let s = cfg.call.session.to_json(Dialect::Ga);
    assert_eq!(s["reasoning"]["effort"], "medium");
    assert_eq!(s["parallel_tool_calls"], true);
    assert_eq!(
        s["prompt"],
        json!({"id": "pmpt_9", "variables": {"a": "1", "b": "two"}})
    );
    assert_eq!(
        s["truncation"],
        json!({"type": "retention_ratio", "retention_ratio": 0.25})
    );
    assert_eq!(
        s["tool_choice"], "none",
        "sent even without tools when configured"
    );
    assert_eq!(s["tracing"], "auto");
}

#[test]
fn a_recording_header_carries_the_settings_and_a_replay_config_rebuilds_the_session() {
    let dir = TempDir::new("settings-pairs");
    let cfg = bridge::config(&[], Some(&dir.file("callbridge.toml", ALL_KEYS)));
    let pairs = callbridge::recording::config_pairs(&cfg.call);
    assert!(
        pairs.values().all(|v| !v.contains("mcp-secret-token")),
        "{pairs:?}"
    );
    // As a replay loads them: each pair as `CALLBRIDGE_<KEY>`.
    let vars: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (format!("CALLBRIDGE_{}", k.to_ascii_uppercase()), v.clone()))
        .collect();
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let again = bridge::config(&env, None);
    let original =
        callbridge::realtime::settings::redact_session(&cfg.call.session.to_json(Dialect::Ga));
    let rebuilt = again.call.session.to_json(Dialect::Ga);
    for key in NEW_KEYS.into_iter().chain(["tool_choice", "instructions"]) {
        assert_eq!(rebuilt[key], original[key], "{key}");
    }
    let mcp = |s: &Value| -> Vec<Value> {
        s["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["type"] == "mcp")
            .cloned()
            .collect()
    };
    assert_eq!(mcp(&rebuilt), mcp(&original));
}
