//! Hang-up and transfer in the call state machine: `end_call` only after the goodbye was
//! heard, the bridge's own wrap-ups built on it, and transfers (the handover, the REST update,
//! the stream's end as a transfer); scripted inputs, asserted outputs, no sockets, no clock.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use callbridge::call::effects::{Effect, EffectResult};
use callbridge::call::{CallEvent, EndReason, Output};
use callbridge::realtime::ClientEvent;
use callbridge::twilio::rest::CallUpdate;
use serde_json::json;

mod support;
use support::call_harness::{hangup, marks, H};
use support::tool_calls::{assert_call_update, config, effects, lookup_called, to_model, CALLER};

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
fn end_call_hangs_up_only_after_the_goodbye_was_heard() {
    let mut h = H::started(config(), CALLER);
    let outs = h.first_answer_calls(&[("c_end", "end_call", r#"{"reason":"caller is done"}"#)]);
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
    let update = assert_call_update(&outs, CallUpdate::Hangup);
    assert_eq!(hangup(&outs), None, "the stream stays until Twilio ends it");
    assert!(
        !outs.iter().any(|o| matches!(o, Output::ToTwilio(_))),
        "no apology, nothing more played"
    );
    let outs = h.done(update, EffectResult::CallUpdated(Ok(())), 1300);
    assert_eq!(hangup(&outs), None);
    // Twilio's stop after the REST hang-up is the agent's doing, not the caller's.
    assert_eq!(hangup(&h.stop(1350)), Some(EndReason::AgentHungUp));
}

#[test]
fn end_call_is_bounded_by_a_timeout_and_a_failed_rest_closes_the_stream() {
    let mut h = H::started(config(), CALLER);
    h.first_answer_calls(&[("c_end", "end_call", "{}")]);
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
    let (mut h, eff) = lookup_called("call_a", r#"{"order_id":"42"}"#);
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
    let outs = h.tool_answered(eff[0].0, r#"{"status":"shipped"}"#, 300);
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
    let twiml =
        "<Response><Dial callerId=\"+15550001111\"><Number>+15551230000</Number></Dial></Response>";
    let update = assert_call_update(&outs, CallUpdate::Twiml(twiml.into()));
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
        .done(update, EffectResult::CallUpdated(Ok(())), 1250)
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
