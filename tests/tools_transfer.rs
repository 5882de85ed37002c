//! Transfers through the real server (`transfer_call`): the `<Dial>` TwiML sent to the fake
//! Twilio REST API and the call ending as transferred, and a destination that is not
//! configured refused. The tool scaffolding: `support/tool_server.rs`.

use std::time::Duration;

use serde_json::json;

mod support;
use support::tool_server::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_sends_the_dial_twiml_and_ends_as_transferred() {
    let (s, report) = call_with_tools(
        &["Let me put you through to our sales team."],
        &[("transfer_call", r#"{"destination":"sales"}"#)],
        8000,
    )
    .await;
    let req = the_call_update(&s);
    assert_eq!(
        req.field("Twiml"),
        Some("<Response><Dial callerId=\"+15550001111\"><Number>+15551230000</Number></Dial></Response>")
    );
    let ended = report
        .ended_by_twilio
        .expect("the redirect ended the stream");
    assert_eq!(ended.queued, 0, "the handover line was heard first");
    assert_metric_soon(
        &s.metrics,
        "callbridge_calls_total{outcome=\"transferred\"} 1",
    )
    .await;
    assert!(metric(
        &s.metrics,
        "callbridge_tool_calls_total{result=\"ok\",tool=\"transfer_call\"} 1"
    ));
    let (outs, _) = outputs(&s);
    assert!(
        outs.is_empty(),
        "a transfer that went through needs no output"
    );
    // The upstream was closed too.
    for _ in 0..100 {
        if s.sim.session(0).unwrap().closed_by.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.sim.session(0).unwrap().closed_by.is_some());
    // The report says where the call went.
    let r = call_report(&s).await;
    assert_eq!(r["outcome"], "transferred", "{r:#}");
    assert_eq!(r["transfer"]["target"], "sales", "{r:#}");
    assert_eq!(r["transfer"]["to"], "+15551230000");
    assert!(r["transfer"]["at_ms"].as_u64().is_some_and(|ms| ms > 0));
    let calls = r["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 1, "{r:#}");
    assert_eq!(calls[0]["name"], "transfer_call");
    assert_eq!(calls[0]["arguments"], json!({"destination":"sales"}));
    assert_eq!(calls[0]["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_a_name_that_is_not_configured_is_refused() {
    let (s, report) = call_with_tools(
        &["Transferring you.", "Sorry, I cannot transfer you there."],
        &[("transfer_call", r#"{"destination":"+15559999999"}"#)],
        1500,
    )
    .await;
    assert!(s.twilio.requests().is_empty(), "no REST call");
    assert!(report.ended_by_twilio.is_none());
    let (outs, creates) = outputs(&s);
    assert_eq!(outs.len(), 1);
    assert!(
        outs[0].1["error"].as_str().unwrap().contains("sales"),
        "{:?}",
        outs[0].1
    );
    assert_eq!(creates, 1);
    assert_metric_soon(
        &s.metrics,
        "callbridge_calls_total{outcome=\"caller_hung_up\"} 1",
    )
    .await;
    assert!(metric(
        &s.metrics,
        "callbridge_tool_calls_total{result=\"unknown_destination\",tool=\"transfer_call\"} 1"
    ));
}
