//! The bridge's own wrap-ups in the call state machine: maximum call length (and the others
//! built on `end_after_heard`). Scripted inputs, asserted outputs, no sockets and no clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use callbridge::call::effects::{CallUpdateRequest, Effect, EffectResult};
use callbridge::call::{Call, CallConfig, EndReason, Output};
use callbridge::realtime::ClientEvent;
use callbridge::twilio::rest::CallUpdate;
use callbridge::twilio::Outbound;
use serde_json::json;

#[path = "support/call_harness.rs"]
mod call_harness;
use call_harness::{H, SID};

impl H {
    fn new(cfg: CallConfig) -> H {
        H::started(cfg, r#"{}"#)
    }
    /// Twilio keeps sending media (the idle timer must not end a long call).
    fn media(&mut self, ms: u64) -> Vec<Output> {
        self.twilio(
            &format!(
                r#"{{"event":"media","sequenceNumber":"3","streamSid":"{SID}","media":{{"track":"inbound","chunk":"2","timestamp":"{ms}","payload":"{}"}}}}"#,
                B64.encode([0xffu8; 160])
            ),
            ms,
        )
    }
    /// The model speaks `ms_audio` of μ-law in one delta and ends the response.
    fn speak(&mut self, resp: &str, ms_audio: usize, ms: u64) -> Vec<Output> {
        let mut outs = self.rt(
            json!({"type":"response.created","response":{"id":resp,"status":"in_progress"}}),
            ms,
        );
        outs.extend(self.rt(json!({"type":"response.output_audio.delta","response_id":resp,"item_id":format!("i_{resp}"),"output_index":0,"content_index":0,"delta":B64.encode(vec![0x11u8; ms_audio * 8])}), ms));
        outs.extend(self.rt(
            json!({"type":"response.output_audio.done","response_id":resp,"item_id":format!("i_{resp}")}),
            ms,
        ));
        outs.extend(self.rt(
            json!({"type":"response.done","response":{"id":resp,"status":"completed","output":[]}}),
            ms,
        ));
        outs
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

fn marks(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::ToTwilio(Outbound::Mark(name)) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn hangups(outs: &[Output]) -> Vec<(u64, CallUpdate)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Effect {
                id,
                effect:
                    Effect::UpdateCall(CallUpdateRequest {
                        call_sid, update, ..
                    }),
            } if call_sid == "CA1" => Some((*id, update.clone())),
            _ => None,
        })
        .collect()
}

fn ended(outs: &[Output]) -> Option<EndReason> {
    outs.iter().find_map(|o| match o {
        Output::Hangup(r) => Some(*r),
        _ => None,
    })
}

#[test]
fn a_call_at_max_call_seconds_says_goodbye_then_hangs_up_as_max_duration() {
    let mut h = H::new(CallConfig {
        max_call: Some(Duration::from_secs(60)),
        ..Default::default()
    });
    // The shell is woken at the limit at the latest.
    for s in 1..=60 {
        h.media(s * 1000 - 500);
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
        hangups(&outs).is_empty(),
        "not before the goodbye was heard"
    );
    // The goodbye plays; its mark echoes; then Twilio REST hangs up.
    let outs = h.speak("r_bye", 500, 60_100);
    let m = marks(&outs);
    assert!(!m.is_empty());
    assert!(hangups(&outs).is_empty());
    assert!(
        hangups(&h.tick(60_200)).is_empty(),
        "time alone is no proof"
    );
    let mut outs = Vec::new();
    for name in &m {
        outs.extend(h.mark(name, 60_700));
    }
    let up = hangups(&outs);
    assert_eq!(up.len(), 1, "{outs:?}");
    assert_eq!(up[0].1, CallUpdate::Hangup);
    let outs = h.done(up[0].0, 60_800);
    assert_eq!(ended(&outs), None);
    assert_eq!(ended(&h.stop(60_900)), Some(EndReason::MaxDuration));
    assert_eq!(EndReason::MaxDuration.as_str(), "max_duration");
}

#[test]
fn without_max_call_seconds_a_long_call_goes_on() {
    let mut h = H::new(CallConfig::default());
    for s in 1..=7200 {
        let outs = h.media(s * 1000);
        assert!(instructions(&outs).is_empty());
        let outs = h.tick(s * 1000);
        assert!(instructions(&outs).is_empty() && ended(&outs).is_none());
    }
    assert!(!h.call.is_ending());
}

impl H {
    fn done(&mut self, id: u64, ms: u64) -> Vec<Output> {
        self.call
            .on_effect_done(id, EffectResult::CallUpdated(Ok(())), self.at(ms));
        self.drain()
    }
}

fn config_from_env(vars: &[(&str, &str)]) -> Result<callbridge::config::Config, String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    callbridge::config::Config::load(
        None,
        &|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
        &Default::default(),
    )
    .map_err(|e| e.to_string())
}

#[test]
fn max_call_seconds_is_read_from_the_environment_and_validated() {
    let c = config_from_env(&[]).expect("defaults load");
    assert_eq!(c.call.max_call, None, "off by default");
    let c = config_from_env(&[("CALLBRIDGE_MAX_CALL_SECONDS", "900")]).expect("loads");
    assert_eq!(c.call.max_call, Some(Duration::from_secs(900)));
    let c = config_from_env(&[("CALLBRIDGE_MAX_CALL_SECONDS", "0")]).expect("loads");
    assert_eq!(c.call.max_call, None);
    let e = config_from_env(&[("CALLBRIDGE_MAX_CALL_SECONDS", "5")]).unwrap_err();
    assert!(e.contains("max_call_seconds"), "{e}");
}

#[test]
fn a_machine_gets_the_voicemail_message_cut_greeting_first_then_a_hangup() {
    let mut h = H::new(CallConfig {
        voicemail_message: Some("Hi, this is Acme about your order A-17. Call us back.".into()),
        ..Default::default()
    });
    // The greeting is playing (meant for a person) when the verdict comes.
    let outs = h.speak("r_greet", 2000, 100);
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
    assert!(hangups(&outs).is_empty());
    let outs = h.speak("r_vm", 3000, 400);
    let m = marks(&outs);
    assert!(hangups(&h.tick(1000)).is_empty(), "not while it plays");
    let mut outs = Vec::new();
    for name in &m {
        outs.extend(h.mark(name, 3500));
    }
    let up = hangups(&outs);
    assert_eq!(up.len(), 1, "{outs:?}");
    h.done(up[0].0, 3600);
    assert_eq!(ended(&h.stop(3700)), Some(EndReason::Voicemail));
    assert_eq!(EndReason::Voicemail.as_str(), "voicemail");
}

#[test]
fn a_machine_without_a_voicemail_message_is_hung_up_on_at_once() {
    let mut h = H::new(CallConfig::default());
    h.speak("r_greet", 2000, 100);
    h.call.on_machine_answered(h.at(300));
    let outs = h.drain();
    assert!(instructions(&outs).is_empty(), "nothing to say: {outs:?}");
    let up = hangups(&outs);
    assert_eq!(up.len(), 1, "at once: {outs:?}");
    h.done(up[0].0, 400);
    assert_eq!(ended(&h.stop(500)), Some(EndReason::Voicemail));
}

#[test]
fn voicemail_message_is_a_top_level_and_a_profile_key() {
    let dir = std::env::temp_dir().join(format!("cb-wrapup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("vm.toml");
    std::fs::write(
        &path,
        "voicemail_message = \"Top level.\"\n[profiles.sales]\nvoicemail_message = \"Sales here.\"\n[profiles.support]\ninstructions = \"Help.\"\n",
    )
    .expect("write");
    let c = callbridge::config::Config::load(Some(&path), &|_| None, &Default::default())
        .expect("loads");
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
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_rejected_call_says_a_short_refusal_once_ready_then_hangs_up_as_rejected() {
    // The lookup answers before the session is ready (the usual order): the refusal waits.
    let t0 = Instant::now();
    let mut h = H {
        call: Call::new(Arc::new(CallConfig::default()), t0),
        t0,
    };
    h.twilio(&format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"accountSid":"AC1","streamSid":"{SID}","callSid":"CA1","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    ), 0);
    h.call.reject_politely(h.at(5));
    let outs = h.drain();
    assert!(instructions(&outs).is_empty() && hangups(&outs).is_empty());
    h.call.on_upstream_open(1, h.at(10));
    let outs = h.drain();
    let said = instructions(&outs);
    assert_eq!(said.len(), 1, "{outs:?}");
    assert!(said[0].contains("cannot help"), "{said:?}");
    let outs = h.speak("r_no", 1500, 100);
    let m = marks(&outs);
    assert!(hangups(&outs).is_empty(), "not before it was heard");
    let mut outs = Vec::new();
    for name in &m {
        outs.extend(h.mark(name, 1700));
    }
    let up = hangups(&outs);
    assert_eq!(up.len(), 1, "{outs:?}");
    h.done(up[0].0, 1800);
    assert_eq!(ended(&h.stop(1900)), Some(EndReason::Rejected));
    assert_eq!(EndReason::Rejected.as_str(), "rejected");
}

/// A wrap-up (here the drain's) that begins while the agent is still answering lets the
/// answer finish, then asks for the goodbye, and hangs up only once that was heard: the
/// goodbye is not dropped because another response was live.
#[test]
fn a_wrap_up_during_an_answer_says_its_goodbye_after_the_answer() {
    const BYE: &str = "We are closing now: say goodbye politely.";
    let mut h = H::new(CallConfig::default());
    h.rt(
        json!({"type":"response.created","response":{"id":"r_answer","status":"in_progress"}}),
        1_000,
    );
    h.rt(json!({"type":"response.output_audio.delta","response_id":"r_answer","item_id":"i_answer","output_index":0,"content_index":0,"delta":B64.encode(vec![0x11u8; 400 * 8])}), 1_010);
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
    assert!(hangups(&outs).is_empty(), "the goodbye is not heard yet");
    let mut heard = Vec::new();
    for name in marks(&outs) {
        heard.extend(h.mark(&name, 1_500));
    }
    assert!(
        hangups(&heard).is_empty(),
        "the answer was heard, the goodbye not yet"
    );
    let outs = h.speak("r_bye", 500, 1_600);
    assert!(instructions(&outs).is_empty(), "{outs:?}");
    let mut heard = Vec::new();
    for name in marks(&outs) {
        heard.extend(h.mark(&name, 2_200));
    }
    let up = hangups(&heard);
    assert_eq!(up.len(), 1, "{heard:?}");
    assert_eq!(up[0].1, CallUpdate::Hangup);
    h.done(up[0].0, 2_300);
    assert_eq!(ended(&h.stop(2_400)), Some(EndReason::Shutdown));
}
