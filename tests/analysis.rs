//! Post-call analysis through the real server: the profile's `analysis` asks the simulator's
//! fake Responses API (`POST /v1/responses`) to fill a schema from the redacted transcript;
//! the answer is in the report (`analysis`), or, when it does not match the schema or never
//! comes within the profile's `timeout_ms`, `analysis_error` — and the report is delivered
//! either way. Every report is valid against schemas/call-report.schema.json.

use callbridge::sim::receiver::Receiver;
use callbridge::sim::responses::{Answer, FakeResponses};
use callbridge::sim::SimConfig;
use serde_json::{json, Value};

mod support;
use support::caller::{agent_done, pause, place_call_as, say};
use support::schema::assert_valid;
use support::{bridge, simulator, TempDir, WAIT};

const SECRET: &str = "analysis-secret-for-tests-1";
const SCHEMA: &str = r#"{"type":"object","properties":{"reason":{"type":"string"},"resolved":{"type":"boolean"}},"required":["reason","resolved"],"additionalProperties":false}"#;

/// One call on a profile with an analysis (`timeout_ms` 1500) while the fake Responses API
/// answers `answer`: the report delivered, and the requests the fake received.
async fn call_analysed(answer: Answer, tag: &str) -> (Value, Vec<Value>) {
    let fake = FakeResponses::answering(answer);
    let sim = simulator(SimConfig {
        caller_transcripts: vec!["my card is 4111 1111 1111 1111, where is my order?".into()],
        responses: fake.clone(),
        ..SimConfig::default()
    })
    .await;
    let rx = Receiver::spawn(SECRET, &[]).await.expect("receiver");
    let dir = TempDir::new(tag);
    let config = dir.file(
        "callbridge.toml",
        &format!(
            "report_url = \"{}\"\nreport_spool_dir = \"{}\"\ndefault_profile = \"support\"\n\
             [profiles.support]\ninstructions = \"You help.\"\nredact = [\"card\"]\n\
             analysis = {{ instructions = \"Why did they call?\", schema = '{SCHEMA}', timeout_ms = 1500 }}\n",
            rx.url("/reports"),
            dir.join("spool").display()
        ),
    );
    let sim_url = sim.url();
    let env = [
        ("REALTIME_URL", sim_url.as_str()),
        ("OPENAI_API_KEY", "sk-test-analysis"),
        ("CALLBRIDGE_TOOL_SECRET", SECRET),
        ("CALLBRIDGE_TRANSCRIPTION_MODEL", "gpt-4o-transcribe"),
    ];
    let (server, _) = bridge::start(&env, Some(&config)).await;
    let script = vec![pause(200), say(1000), agent_done(500, 15)];
    place_call_as(server.url(""), &format!("CA{tag}"), script, 200).await;
    rx.wait_until(WAIT, |r| !r.is_empty()).await;
    let report = rx
        .received()
        .first()
        .expect("the report is delivered")
        .json();
    assert_valid("call-report.schema.json", &report);
    bridge::stop_both(server, sim).await;
    (report, fake.requests())
}

#[tokio::test]
async fn the_models_answer_is_in_the_report_and_it_saw_only_the_redacted_transcript() {
    let (report, requests) = call_analysed(
        Answer::Text(r#"{"reason":"order status","resolved":true}"#.into()),
        "analysis-ok",
    )
    .await;
    assert_eq!(
        report["analysis"],
        json!({"reason": "order status", "resolved": true})
    );
    assert!(report.get("analysis_error").is_none(), "{report:#}");
    assert_eq!(requests.len(), 1, "one request per call");
    let req = &requests[0];
    assert_eq!(req["model"], "gpt-5-mini", "the default analysis model");
    assert_eq!(req["instructions"], "Why did they call?");
    let format = &req["text"]["format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["strict"], true);
    assert_eq!(
        format["schema"],
        serde_json::from_str::<Value>(SCHEMA).unwrap()
    );
    let input = req["input"].as_str().expect("the transcript as input");
    assert!(
        input.contains("caller: my card is [card], where is my order?"),
        "{input}"
    );
    assert!(!input.contains("4111"), "{input}");
}

#[tokio::test]
async fn an_answer_that_does_not_match_the_schema_is_an_analysis_error() {
    let (report, _) = call_analysed(Answer::Text(r#"{"reason": 3}"#.into()), "analysis-bad").await;
    assert!(report.get("analysis").is_none(), "{report:#}");
    let error = report["analysis_error"].as_str().expect("analysis_error");
    assert!(error.contains("does not match the schema"), "{error}");
}

#[tokio::test]
async fn an_endpoint_that_never_answers_costs_the_report_only_the_timeout() {
    let (report, requests) = call_analysed(Answer::Hang, "analysis-hang").await;
    assert_eq!(requests.len(), 1, "asked");
    assert!(report.get("analysis").is_none(), "{report:#}");
    assert_eq!(report["analysis_error"], "no answer within 1500 ms");
    assert_eq!(report["outcome"], "caller_hung_up");
}

#[tokio::test]
async fn an_http_error_is_an_analysis_error() {
    let (report, _) = call_analysed(Answer::Status(500), "analysis-500").await;
    assert_eq!(
        report["analysis_error"],
        "the Responses API answered HTTP 500"
    );
}
