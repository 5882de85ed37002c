//! The bridge's own wrap-ups in the call state machine: maximum call length (and the others
//! built on `end_after_heard`). Scripted inputs, asserted outputs, no sockets and no clock.

use std::time::Duration;

use callbridge::call::effects::EffectResult;
use callbridge::call::{CallConfig, EndReason, Output};
use callbridge::realtime::ClientEvent;
use callbridge::twilio::rest::CallUpdate;
use callbridge::twilio::Outbound;
use serde_json::json;

mod support;
use support::call_harness::{hangup, marks, H};
use support::tool_calls::call_updates;
use support::{bridge, TempDir};

/// A call whose `start` arrived at 0 ms and whose upstream opened at 1 ms.
fn started(cfg: CallConfig) -> H {
    H::started(cfg, r#"{}"#)
}

impl H {
    /// Twilio keeps sending media (the idle timer must not end a long call).
    fn media_at(&mut self, ms: u64) -> Vec<Output> {
        self.media(&[0xffu8; 160], ms, ms)
    }
}

fn instructions(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::ToRealtime {
                event: ClientEvent::ResponseCreate { instructions },
                ..
            } => Some(instructions.clone().unwrap_or_default()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_call_at_max_call_seconds_says_goodbye_then_hangs_up_as_max_duration() {
    let mut h = started(CallConfig {
        max_call: Some(Duration::from_secs(60)),
        ..Default::default()
    });
    // The shell is woken at the limit at the latest.
    for s in 1..=60 {
        h.media_at(s * 1000 - 500);
        let next = h.call.next_deadline().expect("a deadline");
        assert!(next <= h.at(60_000), "woken by the limit");
    }
    // Before the limit nothing happens.
    for s in 1..60 {
        assert!(instructions(&h.tick(s * 1000)).is_empty());
    }
    // At the limit the agent is asked to wrap up.
    let outs = h.tick(60_000);
    let said = instructions(&outs);
    assert_eq!(said.len(), 1, "{outs:?}");
    assert!(said[0].contains("time limit"), "{said:?}");
    assert!(
        call_updates(&outs).is_empty(),
        "not before the goodbye was heard"
    );
    // The goodbye plays; its mark echoes; then Twilio REST hangs up.
    let (id, update) = h.goodbye_heard("r_bye", "i_r_bye", 500, 60_100, 60_200, 60_700);
    assert_eq!(update, CallUpdate::Hangup);
    let outs = h.call_updated(id, 60_800);
    assert_eq!(hangup(&outs), None);
    assert_eq!(hangup(&h.stop(60_900)), Some(EndReason::MaxDuration));
    assert_eq!(EndReason::MaxDuration.as_str(), "max_duration");
}

#[test]
fn without_max_call_seconds_a_long_call_goes_on() {
    let mut h = started(CallConfig::default());
    for s in 1..=7200 {
        let outs = h.media_at(s * 1000);
        assert!(instructions(&outs).is_empty());
        let outs = h.tick(s * 1000);
        assert!(instructions(&outs).is_empty() && hangup(&outs).is_none());
    }
    assert!(!h.call.is_ending());
}

impl H {
    /// Twilio's REST update (the hang-up) answered OK.
    /// `outs` asks for exactly one call update, done at `ms`; Twilio's `stop` 100 ms later
    /// ends the call with `reason`. Returns the update asked for.
    fn hung_up_once(&mut self, outs: &[Output], ms: u64, reason: EndReason) -> CallUpdate {
        let up = call_updates(outs);
        assert_eq!(up.len(), 1, "one update: {outs:?}");
        self.call_updated(up[0].0, ms);
        assert_eq!(hangup(&self.stop(ms + 100)), Some(reason));
        up[0].1.clone()
    }
    fn call_updated(&mut self, id: u64, ms: u64) -> Vec<Output> {
        self.call
            .on_effect_done(id, EffectResult::CallUpdated(Ok(())), self.at(ms));
        self.drain()
    }
}

#[test]
fn max_call_seconds_is_read_from_the_environment_and_validated() {
    let c = bridge::load(&[], None).expect("defaults load");
    assert_eq!(c.call.max_call, None, "off by default");
    let c = bridge::load(&[("CALLBRIDGE_MAX_CALL_SECONDS", "900")], None).expect("loads");
    assert_eq!(c.call.max_call, Some(Duration::from_secs(900)));
    let c = bridge::load(&[("CALLBRIDGE_MAX_CALL_SECONDS", "0")], None).expect("loads");
    assert_eq!(c.call.max_call, None);
    let e = bridge::load(&[("CALLBRIDGE_MAX_CALL_SECONDS", "5")], None).unwrap_err();
    assert!(e.contains("max_call_seconds"), "{e}");
}

#[test]
fn a_machine_gets_the_voicemail_message_cut_greeting_first_then_a_hangup() {
    let mut h = started(CallConfig {
        voicemail_message: Some("Hi, this is Acme about your order A-17. Call us back.".into()),
        ..Default::default()
    });
    // The greeting is playing (meant for a person) when the verdict comes.
    let outs = h.speak("r_greet", "i_r_greet", 2000, 100);
    assert!(!marks(&outs).is_empty());
    h.call.on_machine_answered(h.at(300));
    let outs = h.drain();
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::ToTwilio(Outbound::Clear))),
        "the greeting is cut off: {outs:?}"
    );
    let said = instructions(&outs);
    assert_eq!(said.len(), 1, "{outs:?}");
    assert!(
        said[0].ends_with("Hi, this is Acme about your order A-17. Call us back."),
        "{said:?}"
    );
    assert!(call_updates(&outs).is_empty());
    let outs = h.speak("r_vm", "i_r_vm", 3000, 400);
    let m = marks(&outs);
    assert!(call_updates(&h.tick(1000)).is_empty(), "not while it plays");
    let outs = h.echo_all(&m, 3500);
    h.hung_up_once(&outs, 3600, EndReason::Voicemail);
    assert_eq!(EndReason::Voicemail.as_str(), "voicemail");
}

#[test]
fn a_machine_without_a_voicemail_message_is_hung_up_on_at_once() {
    let mut h = started(CallConfig::default());
    h.speak("r_greet", "i_r_greet", 2000, 100);
    h.call.on_machine_answered(h.at(300));
    let outs = h.drain();
    assert!(instructions(&outs).is_empty(), "nothing to say: {outs:?}");
    h.hung_up_once(&outs, 400, EndReason::Voicemail);
}

#[test]
fn voicemail_message_is_a_top_level_and_a_profile_key() {
    let dir = TempDir::new("machine-wrapup-vm");
    let path = dir.file(
        "vm.toml",
        "voicemail_message = \"Top level.\"\n[profiles.sales]\nvoicemail_message = \"Sales here.\"\n[profiles.support]\ninstructions = \"Help.\"\n",
    );
    let c = bridge::load(&[], Some(&path)).expect("loads");
    assert_eq!(c.call.voicemail_message.as_deref(), Some("Top level."));
    let p = &c.profiles.by_name;
    assert_eq!(
        p["sales"].call.voicemail_message.as_deref(),
        Some("Sales here.")
    );
    assert_eq!(
        p["support"].call.voicemail_message.as_deref(),
        Some("Top level."),
        "inherited"
    );
}

#[test]
fn a_rejected_call_says_a_short_refusal_once_ready_then_hangs_up_as_rejected() {
    // The lookup answers before the session is ready (the usual order): the refusal waits.
    let mut h = H::new(CallConfig::default());
    h.start(r#"{}"#);
    h.call.reject_politely(h.at(5));
    let outs = h.drain();
    assert!(instructions(&outs).is_empty() && call_updates(&outs).is_empty());
    let outs = h.connect(10);
    let said = instructions(&outs);
    assert_eq!(said.len(), 1, "{outs:?}");
    assert!(said[0].contains("cannot help"), "{said:?}");
    let outs = h.speak("r_no", "i_r_no", 1500, 100);
    let m = marks(&outs);
    assert!(call_updates(&outs).is_empty(), "not before it was heard");
    let outs = h.echo_all(&m, 1700);
    h.hung_up_once(&outs, 1800, EndReason::Rejected);
    assert_eq!(EndReason::Rejected.as_str(), "rejected");
}

/// A wrap-up (here the drain's) that begins while the agent is still answering lets the
/// answer finish, then asks for the goodbye, and hangs up only once that was heard: the
/// goodbye is not dropped because another response was live.
#[test]
fn a_wrap_up_during_an_answer_says_its_goodbye_after_the_answer() {
    const BYE: &str = "We are closing now: say goodbye politely.";
    let mut h = started(CallConfig::default());
    h.created("r_answer", 1_000);
    h.delta("r_answer", "i_answer", &[0x11u8; 400 * 8], 1_010);
    h.call.end_after_heard(
        Some(BYE.into()),
        EndReason::Shutdown,
        Duration::from_secs(8),
        h.at(1_020),
    );
    let outs = h.drain();
    assert!(
        instructions(&outs).is_empty(),
        "one response at a time: {outs:?}"
    );
    let mut outs = h.rt(
        json!({"type":"response.output_audio.done","response_id":"r_answer","item_id":"i_answer"}),
        1_030,
    );
    outs.extend(h.rt(
        json!({"type":"response.done","response":{"id":"r_answer","status":"completed","output":[]}}),
        1_040,
    ));
    assert_eq!(instructions(&outs), [BYE], "{outs:?}");
    assert!(
        call_updates(&outs).is_empty(),
        "the goodbye is not heard yet"
    );
    let heard = h.echo_all(&marks(&outs), 1_500);
    assert!(
        call_updates(&heard).is_empty(),
        "the answer was heard, the goodbye not yet"
    );
    let outs = h.speak("r_bye", "i_r_bye", 500, 1_600);
    assert!(instructions(&outs).is_empty(), "{outs:?}");
    let heard = h.echo_all(&marks(&outs), 2_200);
    assert_eq!(
        h.hung_up_once(&heard, 2_300, EndReason::Shutdown),
        CallUpdate::Hangup
    );
}
