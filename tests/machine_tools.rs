//! Tool calls, hang-up and transfer in the call state machine: scripted inputs, asserted
//! outputs, no sockets and no clock.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use callbridge::call::effects::{
    CallUpdateRequest, Effect, EffectId, EffectResult, ToolFailure, ToolOutcome,
};
use callbridge::call::tools::{ToolSpec, ToolsConfig};
use callbridge::call::{CallConfig, CallEvent, EndReason, Output};
use callbridge::realtime::ClientEvent;
use callbridge::twilio::rest::CallUpdate;
use callbridge::twilio::Outbound;
use serde_json::{json, Value};

mod support;
use support::call_harness::{hangup, marks, H, SID};

/// The caller's `customParameters` in Twilio's `start`.
const CALLER: &str = r#"{"From":"+15550001","To":"+15559999","Tier":"gold"}"#;

fn tool(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: "d".into(),
        parameters: json!({"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"]}),
        url: format!("http://127.0.0.1:9/{name}"),
        timeout: Duration::from_millis(5000),
        filler_after: Duration::from_millis(1200),
    }
}

fn config() -> CallConfig {
    CallConfig {
        tools: ToolsConfig {
            tools: vec![tool("lookup_order"), tool("check_stock")],
            end_call: true,
            transfer_targets: vec![
                ("sales".into(), "+15551230000".into()),
                ("billing".into(), "sip:billing@pbx.example.com".into()),
            ],
            transfer_caller_id: Some("+15550001111".into()),
            goodbye_timeout: Duration::from_secs(10),
            filler: Some(Arc::new(vec![0x55; 400])),
        },
        ..Default::default()
    }
}

impl H {
    fn done(&mut self, id: EffectId, r: EffectResult, ms: u64) -> Vec<Output> {
        self.call.on_effect_done(id, r, self.at(ms));
        self.drain()
    }
    /// A function call seen the three ways the API shows it, then the response's end.
    fn model_calls(
        &mut self,
        resp: &str,
        calls: &[(&str, &str, &str)],
        status: &str,
        ms: u64,
    ) -> Vec<Output> {
        let mut outs = self.created(resp, ms);
        let mut items = Vec::new();
        for (call_id, name, args) in calls {
            outs.extend(self.rt(json!({"type":"response.function_call_arguments.done","response_id":resp,"item_id":format!("it_{call_id}"),"output_index":0,"call_id":call_id,"name":name,"arguments":args}), ms));
            let item = json!({"id":format!("it_{call_id}"),"type":"function_call","status":"completed","name":name,"call_id":call_id,"arguments":args});
            outs.extend(self.rt(json!({"type":"response.output_item.done","response_id":resp,"output_index":0,"item":item}), ms));
            items.push(item);
        }
        outs.extend(self.rt(
            json!({"type":"response.done","response":{"id":resp,"status":status,"output":items}}),
            ms,
        ));
        outs
    }
}

fn effects(outs: &[Output]) -> Vec<(EffectId, Effect)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Effect { id, effect } => Some((*id, effect.clone())),
            _ => None,
        })
        .collect()
}

fn tool_body(e: &Effect) -> Value {
    match e {
        Effect::RunTool(r) => serde_json::from_str(&r.body).expect("body is JSON"),
        other => panic!("not a tool run: {other:?}"),
    }
}

/// `(call_id, output)` of every function_call_output, and the number of response.create.
fn to_model(outs: &[Output]) -> (Vec<(String, Value)>, usize) {
    let mut fco = Vec::new();
    let mut creates = 0;
    for o in outs {
        match o {
            Output::ToRealtime {
                event: ClientEvent::FunctionCallOutput { call_id, output },
                ..
            } => fco.push((
                call_id.clone(),
                serde_json::from_str(output).expect("output is JSON"),
            )),
            Output::ToRealtime {
                event: ClientEvent::ResponseCreate { .. },
                ..
            } => creates += 1,
            _ => {}
        }
    }
    (fco, creates)
}

#[test]
fn a_tool_call_becomes_a_signed_request_effect_and_its_answer_one_output_and_one_response() {
    let mut h = H::started(config(), CALLER);
    let outs = h.model_calls(
        "r1",
        &[
            ("call_a", "lookup_order", r#"{"order_id":"42"}"#),
            ("call_b", "check_stock", r#"{"order_id":"43"}"#),
        ],
        "completed",
        100,
    );
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
    let outs = h.done(
        eff[1].0,
        EffectResult::Tool(ToolOutcome::Ok(r#"{"in_stock":3}"#.into())),
        300,
    );
    assert_eq!(
        to_model(&outs),
        (vec![("call_b".into(), json!({"in_stock":3}))], 0)
    );
    let outs = h.done(
        eff[0].0,
        EffectResult::Tool(ToolOutcome::Ok(r#"{"status":"shipped"}"#.into())),
        400,
    );
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
    let mut h = H::started(config(), CALLER);
    let outs = h.model_calls(
        "r1",
        &[("call_a", "lookup_order", r#"{"order_id":"1"}"#)],
        "completed",
        100,
    );
    let eff = effects(&outs);
    assert_eq!(eff.len(), 1, "seen three times, run once");
    // The same call again (a replayed response.done): ignored.
    let again = h.model_calls(
        "r1",
        &[("call_a", "lookup_order", r#"{"order_id":"1"}"#)],
        "completed",
        150,
    );
    assert!(effects(&again).is_empty());
    let first = h.done(
        eff[0].0,
        EffectResult::Tool(ToolOutcome::Ok("{}".into())),
        200,
    );
    assert_eq!(to_model(&first).0.len(), 1);
    // A second answer with the same id: no second output.
    let second = h.done(
        eff[0].0,
        EffectResult::Tool(ToolOutcome::Ok("{}".into())),
        210,
    );
    assert_eq!(to_model(&second), (vec![], 0));
}

#[test]
fn bad_arguments_and_unknown_tools_get_an_error_output_and_nothing_runs() {
    let mut h = H::started(config(), CALLER);
    let outs = h.model_calls(
        "r1",
        &[
            ("c1", "lookup_order", "{not json"),
            ("c2", "lookup_order", r#"{"other":1}"#),
            ("c3", "delete_everything", "{}"),
        ],
        "completed",
        100,
    );
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
    let mut h = H::started(config(), CALLER);
    let outs = h.model_calls(
        "r1",
        &[("c1", "lookup_order", r#"{"order_id":"1"}"#)],
        "completed",
        100,
    );
    let id = effects(&outs)[0].0;
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
    let mut h = H::started(config(), CALLER);
    let outs = h.model_calls(
        "r1",
        &[("c1", "lookup_order", r#"{"order_id":"1"}"#)],
        "completed",
        100,
    );
    let id = effects(&outs)[0].0;
    let deadline = h.call.next_deadline().unwrap();
    assert!(
        deadline <= h.at(100 + 5000 + 2000),
        "a deadline covers the tool"
    );
    let outs = h.tick(100 + 7000);
    assert_eq!(to_model(&outs).0[0].1["retryable"], true);
    // The shell's answer after the call gave up: ignored.
    let late = h.done(id, EffectResult::Tool(ToolOutcome::Ok("{}".into())), 8000);
    assert_eq!(to_model(&late), (vec![], 0));
}

#[test]
fn a_late_tool_answer_after_the_call_ended_is_dropped() {
    let mut h = H::started(config(), CALLER);
    let outs = h.model_calls(
        "r1",
        &[("c1", "lookup_order", r#"{"order_id":"1"}"#)],
        "completed",
        100,
    );
    let id = effects(&outs)[0].0;
    assert_eq!(hangup(&h.stop(200)), Some(EndReason::CallerHungUp));
    let late = h.done(id, EffectResult::Tool(ToolOutcome::Ok("{}".into())), 300);
    assert!(late.is_empty(), "{late:?}");
}

#[test]
fn results_wait_while_the_model_answers_something_else() {
    let mut h = H::started(config(), CALLER);
    let outs = h.model_calls(
        "r1",
        &[("c1", "lookup_order", r#"{"order_id":"1"}"#)],
        "completed",
        100,
    );
    let id = effects(&outs)[0].0;
    // The caller spoke meanwhile; the model is answering that.
    h.created("r2", 200);
    let outs = h.done(id, EffectResult::Tool(ToolOutcome::Ok("{}".into())), 300);
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
fn end_call_hangs_up_only_after_the_goodbye_was_heard() {
    let mut h = H::started(config(), CALLER);
    let outs = h.model_calls(
        "r1",
        &[("c_end", "end_call", r#"{"reason":"caller is done"}"#)],
        "completed",
        100,
    );
    assert_eq!(
        to_model(&outs),
        (vec![("c_end".into(), json!({"ok":true}))], 1)
    );
    assert!(effects(&outs).is_empty());
    // The goodbye: 1 s of audio, marked.
    let outs = h.speak("r2", "i_bye", 1000, 200);
    let m = marks(&outs);
    assert!(!m.is_empty());
    assert!(
        effects(&outs).is_empty(),
        "not while the goodbye is still playing"
    );
    assert!(
        effects(&h.tick(900)).is_empty(),
        "the clock alone is no proof it was heard"
    );
    // Twilio echoes the last mark: now it was heard.
    let outs = h.echo_all(&m, 1250);
    let eff = effects(&outs);
    assert_eq!(
        eff,
        [(
            eff[0].0,
            Effect::UpdateCall(CallUpdateRequest {
                account_sid: "AC1".into(),
                call_sid: "CA1".into(),
                update: CallUpdate::Hangup
            })
        )]
    );
    assert_eq!(hangup(&outs), None, "the stream stays until Twilio ends it");
    assert!(
        !outs.iter().any(|o| matches!(o, Output::ToTwilio(_))),
        "no apology, nothing more played"
    );
    let outs = h.done(eff[0].0, EffectResult::CallUpdated(Ok(())), 1300);
    assert_eq!(hangup(&outs), None);
    // Twilio's stop after the REST hang-up is the agent's doing, not the caller's.
    assert_eq!(hangup(&h.stop(1350)), Some(EndReason::AgentHungUp));
}

#[test]
fn end_call_is_bounded_by_a_timeout_and_a_failed_rest_closes_the_stream() {
    let mut h = H::started(config(), CALLER);
    h.model_calls("r1", &[("c_end", "end_call", "{}")], "completed", 100);
    let outs = h.speak("r2", "i_bye", 1000, 200);
    assert!(!marks(&outs).is_empty());
    // Twilio never echoes the mark: the goodbye timeout (10 s from end_call) ends it anyway.
    let outs = h.tick(100 + 10_000);
    let eff = effects(&outs);
    assert_eq!(eff.len(), 1, "{outs:?}");
    let outs = h.done(
        eff[0].0,
        EffectResult::CallUpdated(Err("HTTP 500".into())),
        10_200,
    );
    assert_eq!(hangup(&outs), Some(EndReason::AgentHungUp));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(CallEvent::Anomaly {
            kind: "hangup_failed",
            ..
        })
    )));
}

#[test]
fn end_after_heard_is_a_reusable_wrap_up() {
    let mut h = H::started(config(), CALLER);
    // A response is playing when the shell decides to end (e.g. max call length).
    let outs = h.speak("r1", "i1", 500, 100);
    let m = marks(&outs);
    h.call
        .end_after_heard(None, EndReason::Shutdown, Duration::from_secs(5), h.at(150));
    assert!(effects(&h.drain()).is_empty());
    let outs = h.echo_all(&m, 600);
    assert_eq!(effects(&outs).len(), 1);
    // With words to say: a response with those instructions first.
    let mut h = H::started(config(), CALLER);
    h.call.end_after_heard(
        Some("Say goodbye".into()),
        EndReason::Shutdown,
        Duration::from_secs(5),
        h.at(10),
    );
    let outs = h.drain();
    assert!(outs.contains(&Output::ToRealtime {
        generation: 1,
        event: ClientEvent::ResponseCreate {
            instructions: Some("Say goodbye".into())
        },
    }));
    assert!(h.call.is_ending());
}

/// A tool still running when a wrap-up (here the drain's) begins: its answer goes into the
/// conversation, but the model is not asked to speak about it; the goodbye is the last answer
/// and the call hangs up once it was heard.
#[test]
fn a_tool_answer_during_a_wrap_up_asks_for_no_new_answer() {
    let mut h = H::started(config(), CALLER);
    let outs = h.model_calls(
        "r1",
        &[("call_a", "lookup_order", r#"{"order_id":"42"}"#)],
        "completed",
        100,
    );
    let eff = effects(&outs);
    assert_eq!(eff.len(), 1, "the tool runs");
    h.call.end_after_heard(
        Some("Say goodbye".into()),
        EndReason::Shutdown,
        Duration::from_secs(8),
        h.at(200),
    );
    assert_eq!(
        to_model(&h.drain()),
        (vec![], 1),
        "the goodbye is asked for"
    );
    let outs = h.done(
        eff[0].0,
        EffectResult::Tool(ToolOutcome::Ok(r#"{"status":"shipped"}"#.into())),
        300,
    );
    assert_eq!(
        to_model(&outs),
        (vec![("call_a".into(), json!({"status":"shipped"}))], 0),
        "the answer is given to the model, no new response asked for"
    );
    // The goodbye plays, is heard, and the call hangs up.
    let outs = h.speak("r_bye", "i_bye", 400, 400);
    assert_eq!(
        to_model(&outs),
        (vec![], 0),
        "nothing more after the goodbye"
    );
    let heard = h.echo_all(&marks(&outs), 900);
    assert_eq!(effects(&heard).len(), 1, "the REST hang-up: {heard:?}");
}

fn handover_and_transfer(h: &mut H, dest: &str, ms: u64) -> Vec<Output> {
    let mut outs = h.created("r1", ms);
    outs.extend(h.rt(json!({"type":"response.output_audio.delta","response_id":"r1","item_id":"i1","output_index":0,"content_index":0,"delta":B64.encode(vec![0x11u8; 8000])}), ms));
    outs.extend(h.rt(
        json!({"type":"response.output_audio.done","response_id":"r1","item_id":"i1"}),
        ms,
    ));
    let args = json!({"destination": dest}).to_string();
    outs.extend(h.rt(json!({"type":"response.function_call_arguments.done","response_id":"r1","item_id":"i2","call_id":"c_t","name":"transfer_call","arguments":args}), ms));
    outs.extend(h.rt(
        json!({"type":"response.done","response":{"id":"r1","status":"completed"}}),
        ms,
    ));
    outs
}

#[test]
fn transfer_plays_the_handover_then_dials_and_the_stop_is_a_transfer() {
    let mut h = H::started(config(), CALLER);
    // One response: the handover line and the transfer call.
    let outs = handover_and_transfer(&mut h, "sales", 100);
    assert!(
        effects(&outs).is_empty(),
        "not before the handover line was heard"
    );
    assert_eq!(
        to_model(&outs),
        (vec![], 0),
        "no output: the model is done talking"
    );
    let m = marks(&outs);
    assert!(!m.is_empty());
    let outs = h.echo_all(&m, 1150);
    let eff = effects(&outs);
    let twiml =
        "<Response><Dial callerId=\"+15550001111\"><Number>+15551230000</Number></Dial></Response>";
    assert_eq!(
        eff,
        [(
            eff[0].0,
            Effect::UpdateCall(CallUpdateRequest {
                account_sid: "AC1".into(),
                call_sid: "CA1".into(),
                update: CallUpdate::Twiml(twiml.into())
            })
        )]
    );
    // Twilio may stop the stream before its REST answer arrives: still a transfer, and the
    // transfer is counted and reported as done (the stop is Twilio acting on it).
    let outs = h.stop(1200);
    assert_eq!(hangup(&outs), Some(EndReason::Transferred));
    assert!(
        outs.iter().any(|o| matches!(o, Output::Event(CallEvent::ToolCall { tool, result: "ok", .. }) if tool == "transfer_call")),
        "{outs:?}"
    );
    assert!(
        outs.iter().any(|o| matches!(o, Output::Event(CallEvent::Transferring { destination }) if destination == "sales")),
        "{outs:?}"
    );
    assert!(h
        .done(eff[0].0, EffectResult::CallUpdated(Ok(())), 1250)
        .is_empty());
}

#[test]
fn transfer_close_after_the_rest_answer_is_a_transfer_too() {
    let mut h = H::started(config(), CALLER);
    let outs = handover_and_transfer(&mut h, "billing", 100);
    let outs2 = h.echo_all(&marks(&outs), 1150);
    let eff = effects(&outs2);
    match &eff[0].1 {
        Effect::UpdateCall(u) => assert_eq!(
            u.update,
            CallUpdate::Twiml("<Response><Dial callerId=\"+15550001111\"><Sip>sip:billing@pbx.example.com</Sip></Dial></Response>".into())
        ),
        other => panic!("{other:?}"),
    }
    let outs = h.done(eff[0].0, EffectResult::CallUpdated(Ok(())), 1200);
    assert!(outs.iter().any(|o| matches!(o, Output::Event(CallEvent::Transferring { destination }) if destination == "billing")));
    assert_eq!(hangup(&outs), None);
    h.call.on_twilio_closed(h.at(1300));
    assert_eq!(hangup(&h.drain()), Some(EndReason::Transferred));
}

#[test]
fn a_transfer_to_an_unknown_name_is_refused_and_a_failed_one_told_to_the_model() {
    let mut h = H::started(config(), CALLER);
    let outs = handover_and_transfer(&mut h, "+15559876543", 100);
    assert!(effects(&outs).is_empty());
    let (fco, creates) = to_model(&outs);
    assert!(
        fco[0].1["error"]
            .as_str()
            .unwrap()
            .contains("sales, billing"),
        "{fco:?}"
    );
    assert_eq!(creates, 1);
    assert!(!h.call.is_ending());

    let mut h = H::started(config(), CALLER);
    let outs = handover_and_transfer(&mut h, "sales", 100);
    let outs2 = h.echo_all(&marks(&outs), 1150);
    let id = effects(&outs2)[0].0;
    let outs = h.done(
        id,
        EffectResult::CallUpdated(Err("HTTP 400 (21220)".into())),
        1200,
    );
    let (fco, creates) = to_model(&outs);
    assert_eq!(fco.len(), 1);
    assert_eq!(fco[0].0, "c_t");
    assert!(fco[0].1["error"].is_string());
    assert_eq!(creates, 1);
    assert_eq!(hangup(&outs), None, "the call goes on");
    assert_eq!(hangup(&h.stop(2000)), Some(EndReason::CallerHungUp));
}

#[test]
fn the_filler_plays_while_a_slow_tool_runs_and_stops_for_the_model() {
    let mut h = H::started(config(), CALLER);
    let outs = h.model_calls(
        "r1",
        &[("c1", "lookup_order", r#"{"order_id":"1"}"#)],
        "completed",
        100,
    );
    let id = effects(&outs)[0].0;
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
    let outs = h.done(id, EffectResult::Tool(ToolOutcome::Ok("{}".into())), 1320);
    assert_eq!(to_model(&outs).1, 1);
    // The model's answer arrives while the filler is still playing: cleared first.
    let outs = h.speak("r2", "i2", 200, 1330);
    let first_twilio = outs.iter().find(|o| matches!(o, Output::ToTwilio(_)));
    assert_eq!(first_twilio, Some(&Output::ToTwilio(Outbound::Clear)));
    // The filler is not the model's audio: a barge-in truncates at what was heard of i2.
    assert_eq!(h.call.playback().sent(), 1600);
}
