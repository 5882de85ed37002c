//! Tool calls in the call state machine (hang-up and transfer: `machine_hangup.rs`): scripted
//! inputs, asserted outputs, no sockets and no clock.

use std::time::Duration;

use callbridge::call::effects::{Effect, EffectResult, ToolFailure, ToolOutcome};
use callbridge::call::{CallEvent, EndReason, Output};
use callbridge::twilio::Outbound;
use serde_json::json;

mod support;
use support::call_harness::{hangup, marks, H, SID};
use support::tool_calls::{
    config, effects, lookup_called, lookup_running, to_model, tool_body, CALLER,
};

#[test]
fn a_tool_call_becomes_a_signed_request_effect_and_its_answer_one_output_and_one_response() {
    let mut h = H::started(config(), CALLER);
    let outs = h.first_answer_calls(&[
        ("call_a", "lookup_order", r#"{"order_id":"42"}"#),
        ("call_b", "check_stock", r#"{"order_id":"43"}"#),
    ]);
    let eff = effects(&outs);
    assert_eq!(
        eff.len(),
        2,
        "parallel calls run concurrently, once each: {outs:?}"
    );
    let body = tool_body(&eff[0].1);
    assert_eq!(body["tool"], "lookup_order");
    assert_eq!(body["call_id"], "call_a");
    assert_eq!(
        body["arguments"],
        json!({"order_id":"42"}),
        "arguments parsed"
    );
    assert_eq!(
        body["call"],
        json!({"call_sid":"CA1","stream_sid":SID,"account_sid":"AC1","from":"+15550001","to":"+15559999",
               "parameters":{"From":"+15550001","To":"+15559999","Tier":"gold"}})
    );
    match &eff[0].1 {
        Effect::RunTool(r) => {
            assert_eq!(r.url, "http://127.0.0.1:9/lookup_order");
            assert_eq!(r.timeout, Duration::from_millis(5000));
        }
        _ => unreachable!(),
    }
    assert_eq!(to_model(&outs), (vec![], 0), "nothing to the model yet");
    // Each request is announced (the console shows "tool running" until its answer).
    let started: Vec<(String, String)> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Event(CallEvent::ToolStarted { tool, call_id }) => {
                Some((tool.clone(), call_id.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        [
            ("lookup_order".to_string(), "call_a".to_string()),
            ("check_stock".to_string(), "call_b".to_string())
        ]
    );

    // The second answer arrives first; the response.create waits for both.
    let outs = h.tool_answered(eff[1].0, r#"{"in_stock":3}"#, 300);
    assert_eq!(
        to_model(&outs),
        (vec![("call_b".into(), json!({"in_stock":3}))], 0)
    );
    let outs = h.tool_answered(eff[0].0, r#"{"status":"shipped"}"#, 400);
    assert_eq!(
        to_model(&outs),
        (vec![("call_a".into(), json!({"status":"shipped"}))], 1)
    );
    let ToolOrder(order) = ToolOrder::of(&outs);
    assert_eq!(order, ["conversation.item.create", "response.create"]);
    assert!(outs.iter().any(|o| matches!(o, Output::Event(CallEvent::ToolCall { tool, result: "ok", seconds: Some(_), .. }) if tool == "lookup_order")));
    let recs = h.call.tool_calls();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].result, Some("ok"));
    assert_eq!(recs[0].output.as_deref(), Some(r#"{"status":"shipped"}"#));
}

struct ToolOrder(Vec<&'static str>);
impl ToolOrder {
    fn of(outs: &[Output]) -> ToolOrder {
        ToolOrder(
            outs.iter()
                .filter_map(|o| match o {
                    Output::ToRealtime { event: e, .. } => Some(e.name()),
                    _ => None,
                })
                .collect(),
        )
    }
}

#[test]
fn a_cancelled_response_runs_no_tool() {
    let mut h = H::started(config(), CALLER);
    for status in ["cancelled", "incomplete", "failed"] {
        let resp = format!("r_{status}");
        let call_id = format!("call_{status}");
        let outs = h.model_calls(
            &resp,
            &[(&call_id, "lookup_order", r#"{"order_id":"1"}"#)],
            status,
            100,
        );
        assert!(effects(&outs).is_empty(), "{status}: {outs:?}");
        assert_eq!(to_model(&outs), (vec![], 0), "{status}");
    }
    assert!(h.call.tool_calls().is_empty());
}

#[test]
fn a_call_id_is_acted_on_once() {
    let (mut h, eff) = lookup_called("call_a", r#"{"order_id":"1"}"#);
    assert_eq!(eff.len(), 1, "seen three times, run once");
    // The same call again (a replayed response.done): ignored.
    let again = h.model_calls(
        "r1",
        &[("call_a", "lookup_order", r#"{"order_id":"1"}"#)],
        "completed",
        150,
    );
    assert!(effects(&again).is_empty());
    let first = h.tool_answered(eff[0].0, "{}", 200);
    assert_eq!(to_model(&first).0.len(), 1);
    // A second answer with the same id: no second output.
    let second = h.tool_answered(eff[0].0, "{}", 210);
    assert_eq!(to_model(&second), (vec![], 0));
}

#[test]
fn bad_arguments_and_unknown_tools_get_an_error_output_and_nothing_runs() {
    let mut h = H::started(config(), CALLER);
    let outs = h.first_answer_calls(&[
        ("c1", "lookup_order", "{not json"),
        ("c2", "lookup_order", r#"{"other":1}"#),
        ("c3", "delete_everything", "{}"),
    ]);
    assert!(effects(&outs).is_empty(), "{outs:?}");
    let (fco, creates) = to_model(&outs);
    assert_eq!(fco.len(), 3);
    for (_, out) in &fco {
        assert!(out["error"].is_string(), "{out}");
        assert_eq!(out["retryable"], false);
    }
    assert!(fco[1].1["error"].as_str().unwrap().contains("order_id"));
    assert_eq!(creates, 1, "one response.create for the three");
}

#[test]
fn failures_become_error_outputs_the_model_can_talk_about() {
    let (mut h, id) = lookup_running();
    let outs = h.done(
        id,
        EffectResult::Tool(ToolOutcome::Failed {
            kind: ToolFailure::Timeout,
            message: "no answer within 5000 ms".into(),
        }),
        5200,
    );
    let (fco, creates) = to_model(&outs);
    assert_eq!(
        fco[0].1,
        json!({"error":"no answer within 5000 ms","retryable":true})
    );
    assert_eq!(creates, 1);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(CallEvent::ToolCall {
            result: "timeout",
            ..
        })
    )));
}

#[test]
fn the_call_never_waits_forever_for_a_tool() {
    let (mut h, id) = lookup_running();
    let deadline = h.call.next_deadline().unwrap();
    assert!(
        deadline <= h.at(100 + 5000 + 2000),
        "a deadline covers the tool"
    );
    let outs = h.tick(100 + 7000);
    assert_eq!(to_model(&outs).0[0].1["retryable"], true);
    // The shell's answer after the call gave up: ignored.
    let late = h.tool_answered(id, "{}", 8000);
    assert_eq!(to_model(&late), (vec![], 0));
}

#[test]
fn a_late_tool_answer_after_the_call_ended_is_dropped() {
    let (mut h, id) = lookup_running();
    assert_eq!(hangup(&h.stop(200)), Some(EndReason::CallerHungUp));
    let late = h.tool_answered(id, "{}", 300);
    assert!(late.is_empty(), "{late:?}");
}

#[test]
fn results_wait_while_the_model_answers_something_else() {
    let (mut h, id) = lookup_running();
    // The caller spoke meanwhile; the model is answering that.
    h.created("r2", 200);
    let outs = h.tool_answered(id, "{}", 300);
    assert_eq!(
        to_model(&outs),
        (vec![("c1".into(), json!({}))], 0),
        "no response.create while r2 is live"
    );
    let outs = h.rt(
        json!({"type":"response.done","response":{"id":"r2","status":"completed"}}),
        400,
    );
    assert_eq!(to_model(&outs).1, 1, "asked once r2 is done");
}

#[test]
fn the_filler_plays_while_a_slow_tool_runs_and_stops_for_the_model() {
    let (mut h, id) = lookup_running();
    assert!(h.call.next_deadline().unwrap() <= h.at(100 + 1200));
    assert!(
        h.tick(1000)
            .iter()
            .all(|o| !matches!(o, Output::ToTwilio(_))),
        "not before filler_after"
    );
    let outs = h.tick(1300);
    let frames = outs
        .iter()
        .filter(|o| matches!(o, Output::ToTwilio(Outbound::Media(_))))
        .count();
    assert_eq!(frames, 3, "400 bytes of clip → 3 frames: {outs:?}");
    assert!(marks(&outs).is_empty(), "the filler carries no marks");
    assert!(h.tick(1310).is_empty(), "played once per wait");
    let outs = h.tool_answered(id, "{}", 1320);
    assert_eq!(to_model(&outs).1, 1);
    // The model's answer arrives while the filler is still playing: cleared first.
    let outs = h.speak("r2", "i2", 200, 1330);
    let first_twilio = outs.iter().find(|o| matches!(o, Output::ToTwilio(_)));
    assert_eq!(first_twilio, Some(&Output::ToTwilio(Outbound::Clear)));
    // The filler is not the model's audio: a barge-in truncates at what was heard of i2.
    assert_eq!(h.call.playback().sent(), 1600);
}
