//! A caller who goes quiet, in the call state machine: the silence clock (see
//! `call::silence`) starts when the agent's turn was heard, a check-in is asked for exactly at
//! `silence_reprompt_s`, a goodbye at `silence_hangup_s` after that, and the call hangs up as
//! `caller_silent` once the goodbye was heard. Scripted inputs, virtual time.

use std::time::Duration;

use callbridge::call::effects::{CallUpdateRequest, Effect, EffectResult};
use callbridge::call::silence::{SilenceConfig, GOODBYE_SAY, REPROMPT_SAY};
use callbridge::call::tools::ToolsConfig;
use callbridge::call::{CallConfig, EndReason, Output, Timer};
use callbridge::realtime::ClientEvent;
use callbridge::twilio::rest::CallUpdate;
use serde_json::json;

mod support;
use support::bridge;
use support::call_harness::{hangup, marks, H};
use support::tool_calls::tool;

const REPROMPT: u64 = 10_000;
const HANGUP: u64 = 20_000;

/// Check-in after 10 s, hang-up 20 s after that; Twilio's idle timer out of the way (the
/// tests send no media: time alone is what they are about).
fn cfg(reprompt: Option<u64>, hangup: Option<u64>) -> CallConfig {
    CallConfig {
        twilio_idle_timeout: Duration::from_secs(3600),
        silence: SilenceConfig {
            reprompt: reprompt.map(Duration::from_millis),
            hangup: hangup.map(Duration::from_millis),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn started(cfg: CallConfig) -> H {
    H::started(cfg, r#"{}"#)
}

/// The instructions of every `response.create` in `outs` ("" for none).
fn asked(outs: &[Output]) -> Vec<String> {
    support::call_harness::pick(outs, |o| match o {
        Output::ToRealtime {
            event: ClientEvent::ResponseCreate { instructions },
            ..
        } => Some(instructions.clone().unwrap_or_default()),
        _ => None,
    })
}

fn hangup_updates(outs: &[Output]) -> Vec<u64> {
    support::call_harness::pick(outs, |o| match o {
        Output::Effect {
            id,
            effect:
                Effect::UpdateCall(CallUpdateRequest {
                    update: CallUpdate::Hangup,
                    ..
                }),
        } => Some(*id),
        _ => None,
    })
}

impl H {
    /// The model says `ms_audio` of audio at `ms`, and Twilio echoes its marks at `heard_ms`.
    fn turn(&mut self, resp: &str, ms_audio: usize, ms: u64, heard_ms: u64) -> Vec<Output> {
        let outs = self.speak(resp, &format!("i_{resp}"), ms_audio, ms);
        let m = marks(&outs);
        assert!(!m.is_empty(), "audio went out: {outs:?}");
        self.echo_all(&m, heard_ms)
    }
    /// Ticks at every second from `from_ms` to `to_ms` (exclusive) and at `to_ms - 1`,
    /// asserting that nothing is asked of the model.
    fn quiet_until(&mut self, from_ms: u64, to_ms: u64) {
        let mut t = from_ms;
        while t < to_ms {
            let outs = self.tick(t);
            assert!(asked(&outs).is_empty(), "nothing asked at {t} ms: {outs:?}");
            t += 1000;
        }
        let outs = self.tick(to_ms - 1);
        assert!(asked(&outs).is_empty(), "nothing asked at {} ms", to_ms - 1);
    }
    fn speech_started(&mut self, ms: u64) -> Vec<Output> {
        self.rt(
            json!({"type":"input_audio_buffer.speech_started","audio_start_ms":0,"item_id":"u1"}),
            ms,
        )
    }
    fn speech_stopped(&mut self, ms: u64) -> Vec<Output> {
        self.rt(
            json!({"type":"input_audio_buffer.speech_stopped","audio_end_ms":0,"item_id":"u1"}),
            ms,
        )
    }
    fn dtmf(&mut self, digit: &str, ms: u64) -> Vec<Output> {
        self.twilio(
            &format!(
                r#"{{"event":"dtmf","sequenceNumber":"7","streamSid":"{}","dtmf":{{"track":"inbound_track","digit":"{digit}"}}}}"#,
                support::call_harness::SID
            ),
            ms,
        )
    }
}

/// The silence clock is due `ms` after the call began.
#[track_caller]
fn assert_silence_due(h: &H, ms: u64) {
    assert_eq!(h.call.deadline(Timer::Silence), Some(h.at(ms)));
}

#[test]
fn the_check_in_comes_exactly_at_the_deadline_after_the_greeting_was_heard() {
    let mut h = started(cfg(Some(REPROMPT), Some(HANGUP)));
    // The greeting: 500 ms of audio sent at 100 ms, its last mark echoed at 700 ms.
    h.turn("r_greet", 500, 100, 700);
    assert_eq!(
        h.call.deadline(Timer::Silence),
        Some(h.at(700 + REPROMPT)),
        "the clock starts when the greeting was heard"
    );
    assert_eq!(h.call.next_deadline(), Some(h.at(700 + REPROMPT)));
    h.quiet_until(800, 700 + REPROMPT);
    let outs = h.tick(700 + REPROMPT);
    assert_eq!(asked(&outs), vec![REPROMPT_SAY.to_owned()], "{outs:?}");
    assert_eq!(hangup(&outs), None);
}

#[test]
fn no_check_in_while_the_agent_is_still_heard() {
    let mut h = started(cfg(Some(REPROMPT), Some(HANGUP)));
    // Audio sent and its response done, but Twilio has not echoed the marks: still playing
    // (or a peer that never echoes: the caller may still be listening).
    let outs = h.speak("r_long", "i_long", 30_000, 100);
    let m = marks(&outs);
    assert_eq!(h.call.deadline(Timer::Silence), None);
    h.quiet_until(200, 60_000);
    // Heard at last: the clock starts now, not at the response's end.
    h.echo_all(&m, 60_000);
    assert_silence_due(&h, 60_000 + REPROMPT);
}

#[test]
fn a_response_without_audio_starts_the_clock_when_it_is_done() {
    let mut h = started(cfg(Some(REPROMPT), None));
    h.created("r_text", 100);
    assert_eq!(h.call.deadline(Timer::Silence), None);
    h.rt(
        json!({"type":"response.done","response":{"id":"r_text","status":"completed","output":[]}}),
        300,
    );
    assert_silence_due(&h, 300 + REPROMPT);
    assert_eq!(
        asked(&h.tick(300 + REPROMPT)),
        vec![REPROMPT_SAY.to_owned()]
    );
}

#[test]
fn caller_speech_or_a_key_starts_a_new_stretch() {
    let mut h = started(cfg(Some(REPROMPT), Some(HANGUP)));
    h.turn("r_greet", 500, 100, 700);
    // The caller speaks before the deadline: the clock stops …
    h.speech_started(5_000);
    assert_eq!(h.call.deadline(Timer::Silence), None);
    h.quiet_until(5_000, 40_000);
    // Not while the caller still speaks, either (a long pause in their speech is theirs).
    h.speech_stopped(40_000);
    // … and starts again once the agent's answer was heard.
    h.turn("r_answer", 500, 40_000, 40_600);
    assert_silence_due(&h, 40_600 + REPROMPT);
    // A key press counts as the caller acting, too.
    h.dtmf("5", 45_000);
    assert_eq!(h.call.deadline(Timer::Silence), None);
}

#[test]
fn a_key_the_model_is_not_told_about_restarts_the_clock_at_once() {
    let mut h = started(CallConfig {
        dtmf_to_model: false,
        ..cfg(Some(REPROMPT), Some(HANGUP))
    });
    h.turn("r_greet", 500, 100, 700);
    assert_eq!(
        asked(&h.tick(700 + REPROMPT)),
        vec![REPROMPT_SAY.to_owned()]
    );
    h.turn("r_check", 500, 10_800, 11_400);
    // A key: nobody answers it, but it is the caller acting: a new stretch, checked on again.
    h.dtmf("1", 15_000);
    assert_silence_due(&h, 15_000 + REPROMPT);
    h.quiet_until(15_000, 15_000 + REPROMPT);
    assert_eq!(
        asked(&h.tick(15_000 + REPROMPT)),
        vec![REPROMPT_SAY.to_owned()]
    );
}

#[test]
fn no_check_in_during_a_tool_call() {
    let mut slow = tool("lookup_order");
    slow.timeout = Duration::from_secs(120);
    let mut h = started(CallConfig {
        tools: ToolsConfig {
            tools: vec![slow],
            filler: Some(std::sync::Arc::new(vec![0x55; 400])),
            ..Default::default()
        },
        ..cfg(Some(REPROMPT), Some(HANGUP))
    });
    h.turn("r_greet", 500, 100, 700);
    // The caller asks; the model calls the tool (no audio), which takes 50 s.
    h.speech_started(1_000);
    h.speech_stopped(1_500);
    let outs = h.model_calls(
        "r_tool",
        &[("c1", "lookup_order", r#"{"order_id":"1"}"#)],
        "completed",
        2_000,
    );
    let id = support::tool_calls::effects(&outs)[0].0;
    assert_eq!(h.call.deadline(Timer::Silence), None, "a tool is running");
    h.quiet_until(2_000, 52_000);
    // The answer comes back; the model speaks it; then the agent waits again.
    let outs = h.done(
        id,
        EffectResult::Tool(callbridge::call::effects::ToolOutcome::Ok(
            r#"{"status":"shipped"}"#.into(),
        )),
        52_000,
    );
    assert_eq!(
        asked(&outs),
        vec![String::new()],
        "the tool's answer is spoken"
    );
    h.turn("r_after", 500, 52_100, 52_700);
    assert_silence_due(&h, 52_700 + REPROMPT);
}

#[test]
fn after_the_check_in_was_heard_a_silent_caller_gets_a_goodbye_and_is_hung_up_on() {
    let mut h = started(cfg(Some(REPROMPT), Some(HANGUP)));
    h.turn("r_greet", 500, 100, 700);
    let outs = h.tick(700 + REPROMPT);
    assert_eq!(asked(&outs), vec![REPROMPT_SAY.to_owned()]);
    // The check-in ("Are you still there?") is said and heard at 12 s.
    h.turn("r_check", 1_000, 10_800, 12_000);
    // The hang-up counts from then, and a second check-in never comes.
    assert_silence_due(&h, 12_000 + HANGUP);
    h.quiet_until(12_000, 12_000 + HANGUP);
    let outs = h.tick(12_000 + HANGUP);
    assert_eq!(asked(&outs), vec![GOODBYE_SAY.to_owned()], "{outs:?}");
    assert!(hangup_updates(&outs).is_empty(), "not before it was heard");
    assert!(h.call.is_ending());
    // The goodbye plays; once its last mark echoes, Twilio REST hangs up.
    let outs = h.speak("r_bye", "i_bye", 1_000, 32_100);
    let m = marks(&outs);
    assert!(
        hangup_updates(&h.tick(32_500)).is_empty(),
        "time alone is no proof"
    );
    let outs = h.echo_all(&m, 33_200);
    let ids = hangup_updates(&outs);
    assert_eq!(ids.len(), 1, "{outs:?}");
    h.call
        .on_effect_done(ids[0], EffectResult::CallUpdated(Ok(())), h.at(33_300));
    h.drain();
    assert_eq!(hangup(&h.stop(33_400)), Some(EndReason::CallerSilent));
    assert_eq!(EndReason::CallerSilent.as_str(), "caller_silent");
}

#[test]
fn a_check_in_that_never_starts_still_leads_to_the_hang_up() {
    // The model refuses the response.create (say, an error): the clock restarted when the
    // check-in was asked for, so the silent caller is still hung up on.
    let mut h = started(cfg(Some(REPROMPT), Some(HANGUP)));
    h.turn("r_greet", 500, 100, 700);
    assert_eq!(
        asked(&h.tick(700 + REPROMPT)),
        vec![REPROMPT_SAY.to_owned()]
    );
    h.quiet_until(700 + REPROMPT, 700 + REPROMPT + HANGUP);
    let outs = h.tick(700 + REPROMPT + HANGUP);
    assert_eq!(asked(&outs), vec![GOODBYE_SAY.to_owned()]);
}

#[test]
fn with_only_a_hang_up_configured_the_goodbye_comes_without_a_check_in() {
    let mut h = started(cfg(None, Some(HANGUP)));
    h.turn("r_greet", 500, 100, 700);
    h.quiet_until(800, 700 + HANGUP);
    assert_eq!(asked(&h.tick(700 + HANGUP)), vec![GOODBYE_SAY.to_owned()]);
}

#[test]
fn with_only_a_check_in_configured_the_call_goes_on_after_it() {
    let mut h = started(cfg(Some(REPROMPT), None));
    h.turn("r_greet", 500, 100, 700);
    assert_eq!(
        asked(&h.tick(700 + REPROMPT)),
        vec![REPROMPT_SAY.to_owned()]
    );
    h.turn("r_check", 500, 10_800, 11_400);
    assert_eq!(h.call.deadline(Timer::Silence), None);
    h.quiet_until(11_400, 120_000);
    assert!(!h.call.is_ending());
}

#[test]
fn unset_the_silence_clock_never_runs() {
    let mut h = started(cfg(None, None));
    h.turn("r_greet", 500, 100, 700);
    assert_eq!(h.call.deadline(Timer::Silence), None);
    h.quiet_until(800, 600_000);
    assert!(!h.call.is_ending());
}

#[test]
fn silence_keys_are_read_validated_and_per_profile() {
    let c = bridge::load(&[], None).expect("defaults load");
    assert_eq!(c.call.silence, SilenceConfig::default(), "off by default");
    assert_eq!(c.call.silence.reprompt, None);
    let c = bridge::load(
        &[
            ("CALLBRIDGE_SILENCE_REPROMPT_S", "10"),
            ("CALLBRIDGE_SILENCE_HANGUP_S", "30"),
        ],
        None,
    )
    .expect("loads");
    assert_eq!(c.call.silence.reprompt, Some(Duration::from_secs(10)));
    assert_eq!(c.call.silence.hangup, Some(Duration::from_secs(30)));
    let c = bridge::load(&[("CALLBRIDGE_SILENCE_HANGUP_S", "0")], None).expect("loads");
    assert_eq!(c.call.silence.hangup, None, "0 is off");
    let e = bridge::load(&[("CALLBRIDGE_SILENCE_REPROMPT_S", "-1")], None).unwrap_err();
    assert!(e.contains("silence_reprompt_s"), "{e}");
    let e = bridge::load(&[("CALLBRIDGE_SILENCE_HANGUP_S", "7200")], None).unwrap_err();
    assert!(e.contains("silence_hangup_s"), "{e}");

    let dir = support::TempDir::new("machine-silence-profiles");
    let path = dir.file(
        "s.toml",
        "silence_reprompt_s = 8\n[profiles.es]\nsilence_reprompt_instructions = \"Pregunta si sigue ahí.\"\nsilence_hangup_s = 20\n",
    );
    let c = bridge::load(&[], Some(&path)).expect("loads");
    let es = &c.profiles.by_name["es"].call.silence;
    assert_eq!(es.reprompt, Some(Duration::from_secs(8)), "inherited");
    assert_eq!(es.hangup, Some(Duration::from_secs(20)));
    assert_eq!(es.reprompt_instructions, "Pregunta si sigue ahí.");
    assert_eq!(es.goodbye_instructions, GOODBYE_SAY);
    assert_eq!(c.call.silence.hangup, None);
}

#[test]
fn a_new_response_stops_the_clock_until_it_was_heard() {
    let mut h = started(cfg(Some(REPROMPT), Some(HANGUP)));
    h.turn("r_greet", 500, 100, 700);
    // The agent speaks again on its own (a late answer, keys told to the model).
    h.created("r_more", 5_000);
    assert_eq!(h.call.deadline(Timer::Silence), None);
    let outs = h.delta("r_more", "i_more", &[0x11u8; 400 * 8], 5_010);
    h.quiet_until(5_000, 30_000);
    h.rt(
        json!({"type":"response.output_audio.done","response_id":"r_more","item_id":"i_more"}),
        30_000,
    );
    h.rt(
        json!({"type":"response.done","response":{"id":"r_more","status":"completed","output":[]}}),
        30_000,
    );
    assert_eq!(h.call.deadline(Timer::Silence), None, "not heard yet");
    let mut m = marks(&outs);
    m.extend(marks(&h.drain()));
    h.echo_all(&m, 30_500);
    assert_silence_due(&h, 30_500 + REPROMPT);
}

#[test]
fn an_ending_stops_the_clock() {
    let mut h = started(CallConfig {
        max_call: Some(Duration::from_secs(5)),
        ..cfg(Some(REPROMPT), Some(HANGUP))
    });
    h.turn("r_greet", 500, 100, 700);
    let outs = h.tick(5_000);
    assert_eq!(asked(&outs).len(), 1, "the time limit's goodbye: {outs:?}");
    assert!(h.call.is_ending());
    assert_eq!(h.call.deadline(Timer::Silence), None);
    h.quiet_until(5_001, 8_000);
}

#[test]
fn after_an_upstream_outage_the_clock_starts_again_when_the_new_session_is_ready() {
    let mut h = started(cfg(Some(REPROMPT), Some(HANGUP)));
    h.turn("r_greet", 500, 100, 700);
    // The session drops at 5 s; the new one (generation 2) takes over at 15 s.
    h.call.on_upstream_lost(
        1,
        callbridge::call::UpstreamLoss::Dropped("reset".into()),
        h.at(5_000),
    );
    h.drain();
    assert_eq!(
        h.call.deadline(Timer::Silence),
        None,
        "not while it is down"
    );
    h.quiet_until(5_000, 15_000);
    h.call.on_upstream_open(2, h.at(15_000));
    let outs = h.drain();
    assert!(asked(&outs).is_empty(), "no check-in at once: {outs:?}");
    assert_silence_due(&h, 15_000 + REPROMPT);
}
