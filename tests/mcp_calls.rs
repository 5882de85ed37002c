//! Remote MCP calls through the real server: the simulator, as OpenAI, runs the calls on the
//! server the session declared (`[[mcp_servers]]`); the bridge sends nothing back for them and
//! the call report lists them like function calls — name, arguments, output or error, ms.

use std::time::Duration;

use callbridge::sim::receiver::Receiver;
use callbridge::sim::SimConfig;
use serde_json::json;

mod support;
use support::schema::assert_valid;
use support::{bridge, eventually, media, simulator, TempDir, WAIT};

const SECRET: &str = "mcp-calls-secret-for-tests";

#[tokio::test]
async fn mcp_calls_reach_the_report_like_function_calls() {
    // The greeting's response ends with two MCP calls: one on the declared server, one on a
    // server the session does not have (it fails).
    let sim = simulator(SimConfig {
        response_audio_ms: 300,
        reply_tool_calls: vec![vec![
            (
                "mcp:crm/lookup_customer".into(),
                r#"{"customer":"42"}"#.into(),
            ),
            ("mcp:billing/refund".into(), "{}".into()),
        ]],
        ..SimConfig::default()
    })
    .await;
    let reports = Receiver::spawn(SECRET, &[]).await.expect("receiver");
    let dir = TempDir::new("mcp-calls");
    let file = format!(
        "greeting = \"Greet the caller.\"\ntool_secret = \"{SECRET}\"\nreport_url = \"{}\"\nreport_spool_dir = \"{}\"\n\
         [[mcp_servers]]\nserver_label = \"crm\"\nserver_url = \"https://mcp.example.com/mcp\"\nrequire_approval = \"never\"\n\
         headers = {{ Authorization = \"Bearer not-in-the-report\" }}\n",
        reports.url("/reports"),
        dir.join("spool").display()
    );
    let server = bridge::on_simulator(&sim, &dir.file("callbridge.toml", &file)).await;
    let mut ws = media::started(server.addr, "MZmcp", "CAmcp", json!({})).await;
    let done = eventually(WAIT, async || {
        sim.session(0).is_some_and(|s| s.responses_completed >= 1)
    })
    .await;
    assert!(done, "the greeting's response never ended");
    // A moment for anything the bridge might (wrongly) send back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = sim.session(0).expect("a session");
    media::hang_up(&mut ws, media::stop("AC1", "MZmcp", "CAmcp")).await;

    let answers: Vec<&str> = log
        .received
        .iter()
        .filter_map(|e| e["type"].as_str())
        .filter(|t| *t == "response.create" || *t == "conversation.item.create")
        .collect();
    assert_eq!(
        answers,
        ["response.create"],
        "only the greeting's: OpenAI answers MCP calls itself"
    );

    let got = reports.wait_until(WAIT, |r| !r.is_empty()).await;
    let report = got[0].json();
    assert_valid("call-report.schema.json", &report);
    let calls = report["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 2, "{report:#}");
    assert_eq!(calls[0]["name"], "lookup_customer");
    assert_eq!(calls[0]["arguments"], json!({"customer": "42"}));
    assert_eq!(
        calls[0]["output"],
        json!({"tool": "lookup_customer", "arguments": {"customer": "42"}})
    );
    assert_eq!(calls[0]["ok"], true);
    assert!(calls[0]["ms"].is_u64());
    assert_eq!(calls[1]["name"], "refund");
    assert_eq!(calls[1]["ok"], false);
    assert_eq!(calls[1]["output"]["error"]["type"], "protocol_error");
    assert!(!report.to_string().contains("not-in-the-report"));
    server.stop(Duration::from_secs(1)).await;
}
