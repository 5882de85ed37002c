//! Parallel tool calls (`parallel_tool_calls = true`, reasoning models): several function
//! calls in one response, through the real server and the simulator. The bridge runs them
//! concurrently (every request is out before any answer is back), answers each `call_id`
//! exactly once, and sends one `response.create`, after the last output.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::post;
use axum::Router;
use callbridge::sim::SimConfig;
use serde_json::{json, Value};

mod support;
use support::{bridge, eventually, media, simulator, TempDir, WAIT};

const SECRET: &str = "parallel-tools-secret";

/// `(tool, call_id, arrived, answered)` of each request the tool server got.
type Hits = Arc<Mutex<Vec<(String, String, Instant, Instant)>>>;

/// Every tool takes 600 ms to answer `{"tool": name}`.
async fn tool(State(hits): State<Hits>, Path(name): Path<String>, body: String) -> String {
    let arrived = Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let call_id = v["call_id"].as_str().unwrap_or_default().to_owned();
    let mut h = hits.lock().expect("lock");
    h.push((name.clone(), call_id, arrived, Instant::now()));
    json!({"tool": name}).to_string()
}

async fn tool_server(hits: Hits) -> String {
    support::serve_app(
        Router::new()
            .route("/tools/{name}", post(tool))
            .with_state(hits),
    )
    .await
}

#[tokio::test]
async fn calls_of_one_response_run_concurrently_each_answered_once_then_one_response() {
    let hits: Hits = Arc::default();
    let base = tool_server(hits.clone()).await;
    let names = ["lookup_order", "check_stock", "find_store"];
    // The greeting's response (reply 0) ends with three calls.
    let sim = simulator(SimConfig {
        response_audio_ms: 300,
        reply_tool_calls: vec![names
            .iter()
            .map(|n| (n.to_string(), r#"{"q":"1"}"#.to_string()))
            .collect()],
        ..SimConfig::default()
    })
    .await;
    let mut file = format!(
        "greeting = \"Greet the caller.\"\nparallel_tool_calls = true\nreasoning_effort = \"low\"\ntool_secret = \"{SECRET}\"\n"
    );
    for n in names {
        file += &format!(
            "[[tools]]\nname = \"{n}\"\ndescription = \"d\"\nurl = \"{base}/tools/{n}\"\ntimeout_ms = 5000\n"
        );
    }
    let dir = TempDir::new("parallel-tools");
    let server = bridge::on_simulator(&sim, &dir.file("callbridge.toml", &file)).await;
    let mut ws = media::started(server.addr, "MZpar", "CApar", json!({})).await;

    // Until the model was asked to speak about the results (and a moment more, to catch a
    // second response.create or a late duplicate output).
    let asked = eventually(WAIT, async || {
        sim.session(0).is_some_and(|s| {
            let outputs = s
                .received
                .iter()
                .filter(|e| e["item"]["type"] == "function_call_output")
                .count();
            outputs == names.len()
                && s.received
                    .iter()
                    .filter(|e| e["type"] == "response.create")
                    .count()
                    >= 2
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = sim.session(0).expect("a session");
    media::hang_up(&mut ws, media::stop("AC1", "MZpar", "CApar")).await;
    server.stop(Duration::from_secs(1)).await;
    assert!(asked, "no outputs and response.create: {:?}", log.received);
    assert_eq!(
        log.received
            .iter()
            .find(|e| e["type"] == "session.update")
            .map(|e| e["session"]["parallel_tool_calls"].clone()),
        Some(json!(true))
    );

    // Concurrent: every request arrived before the first answer was back.
    let hits = hits.lock().expect("lock").clone();
    assert_eq!(hits.len(), names.len(), "each tool ran once: {hits:?}");
    let first_answer = hits.iter().map(|h| h.3).min().expect("answers");
    let last_arrival = hits.iter().map(|h| h.2).max().expect("arrivals");
    assert!(
        last_arrival < first_answer,
        "the calls ran one after another, not concurrently"
    );

    // The model's call_ids (from the simulator's function_call items), each answered once
    // with its own tool's output; the one response.create after the greeting's comes last.
    let call_ids: Vec<(String, String)> = log
        .sent
        .iter()
        .filter(|e| {
            e["type"] == "response.output_item.done" && e["item"]["type"] == "function_call"
        })
        .map(|e| {
            let s = |k: &str| e["item"][k].as_str().unwrap_or_default().to_owned();
            (s("call_id"), s("name"))
        })
        .collect();
    assert_eq!(call_ids.len(), names.len(), "{:?}", log.sent);
    let after_greeting: Vec<&Value> = log
        .received
        .iter()
        .skip_while(|e| e["type"] != "response.create")
        .skip(1)
        .filter(|e| e["type"] != "input_audio_buffer.append")
        .collect();
    let mut answered = Vec::new();
    for (i, e) in after_greeting.iter().enumerate() {
        if e["type"] == "response.create" {
            assert_eq!(
                i,
                after_greeting.len() - 1,
                "response.create before the last output: {after_greeting:?}"
            );
            continue;
        }
        assert_eq!(e["item"]["type"], "function_call_output", "{e}");
        let call_id = e["item"]["call_id"].as_str().unwrap_or_default();
        let output: Value = serde_json::from_str(e["item"]["output"].as_str().unwrap_or("null"))
            .unwrap_or_default();
        let name = &call_ids
            .iter()
            .find(|(c, _)| c == call_id)
            .expect("a known call_id")
            .1;
        assert_eq!(output["tool"], *name, "{call_id} got another call's output");
        answered.push(call_id.to_owned());
    }
    answered.sort();
    let mut want: Vec<String> = call_ids.iter().map(|(c, _)| c.clone()).collect();
    want.sort();
    assert_eq!(answered, want, "each call_id answered exactly once");
    assert_eq!(
        after_greeting.last().map(|e| e["type"].clone()),
        Some(json!("response.create"))
    );
}
