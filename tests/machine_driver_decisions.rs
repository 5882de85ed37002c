//! Decisions that used to be the shell's and are the call's now (issue 19), each on the machine
//! with no sockets and no clock: the first upstream dial as an effect, messages for Twilio held
//! until `start` names the stream, the drain's hard deadline, a session parked until the call's
//! settings are decided; and the phase and timer table they read.

use std::sync::Arc;
use std::time::Duration;

use callbridge::call::{
    CallConfig, CallEvent, EndReason, Output, Phase, Timer, UpstreamEffect, DRAIN_HANGUP_MARGIN,
};
use callbridge::realtime::ClientEvent;
use callbridge::twilio::Outbound;

mod support;
use support::call_harness::{frames, hangup, marks, to_model, to_twilio, H, SID};

fn greeting_cfg() -> CallConfig {
    CallConfig {
        greeting: Some("Say hello.".into()),
        ..CallConfig::default()
    }
}

/// The sessions configured: each `session.update`'s generation and instructions.
fn session_updates(outs: &[Output]) -> Vec<(u64, String)> {
    to_model(outs)
        .into_iter()
        .filter_map(|(generation, event)| match event {
            ClientEvent::SessionUpdate(s) => Some((generation, s.instructions.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_first_output_of_a_new_call_dials_generation_1_and_nothing_else() {
    let h = H::new(CallConfig::default());
    assert_eq!(
        h.opening,
        [Output::Upstream(UpstreamEffect::ConnectUpstream {
            generation: 1
        })]
    );
    assert_eq!(h.call.phase(), Phase::AwaitingStart);
}

#[test]
fn a_greeting_spoken_before_start_is_held_then_released_in_order_at_start() {
    let mut h = H::new(greeting_cfg());
    // The upstream opens before Twilio's `start`: the greeting is asked for at once.
    let outs = h.connect(1);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::ToRealtime {
            event: ClientEvent::ResponseCreate {
                instructions: Some(_)
            },
            ..
        }
    )));
    h.created("resp_1", 2);
    // Two deltas of greeting (100 ms, then 60 ms) before `start`: nothing for Twilio yet.
    let mut before = h.delta("resp_1", "item_1", &[0x21u8; 800], 3);
    before.extend(h.delta("resp_1", "item_1", &[0x22u8; 480], 4));
    assert!(to_twilio(&before).is_empty(), "{before:?}");
    assert_eq!(h.call.phase(), Phase::AwaitingStart);

    let at_start = h.start("{}");
    let released = to_twilio(&at_start);
    // Five frames of the first delta and its mark, then three of the second and its mark.
    let frames_sent = frames(&at_start);
    assert_eq!(frames_sent.len(), 8);
    assert!(frames_sent[..5]
        .iter()
        .all(|f| f.iter().all(|b| *b == 0x21)));
    assert!(frames_sent[5..]
        .iter()
        .all(|f| f.iter().all(|b| *b == 0x22)));
    assert!(matches!(released[5], Outbound::Mark(_)));
    assert!(matches!(released[9], Outbound::Mark(_)));
    assert_eq!(released.len(), 10);
    assert_eq!(marks(&at_start).len(), 2);
    assert_eq!(h.call.stream_sid(), Some(SID));
    assert_eq!(h.call.phase(), Phase::Live);

    // After `start`, audio goes out as it is made.
    let after = h.delta("resp_1", "item_1", &[0x23u8; 160], 10);
    assert_eq!(frames(&after).len(), 1);
}

#[test]
fn what_is_held_before_start_is_bounded_and_dropped_if_the_call_ends_first() {
    let mut h = H::new(greeting_cfg());
    h.connect(1);
    h.created("resp_1", 2);
    // 20 s of greeting before `start`: far more than the 600 messages held.
    for i in 0..20 {
        let outs = h.delta("resp_1", "item_1", &[0x30u8; 8000], 3 + i);
        assert!(to_twilio(&outs).is_empty());
    }
    let released = to_twilio(&h.start("{}"));
    assert_eq!(released.len(), 600, "the first 600, in order");
    assert!(matches!(released[0], Outbound::Media(_)));

    // A call that ends before `start` never sends what it held.
    let mut h = H::new(greeting_cfg());
    h.connect(1);
    h.created("resp_1", 2);
    h.delta("resp_1", "item_1", &[0x30u8; 800], 3);
    let outs = h.tick(20_000);
    assert_eq!(hangup(&outs), Some(EndReason::TwilioIdle));
    assert!(to_twilio(&outs).is_empty());
    assert_eq!(h.call.phase(), Phase::Ended);
}

#[test]
fn a_drained_call_whose_goodbye_is_never_heard_ends_as_shutdown_at_wait_plus_margin() {
    let mut h = H::started(CallConfig::default(), "{}");
    // An answer is playing and Twilio never echoes its marks.
    h.speak("resp_1", "item_1", 500, 100);
    let wait = Duration::from_secs(5);
    h.call
        .on_drain(Some("Say goodbye.".into()), wait, h.at(1000));
    let outs = h.drain();
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::ToRealtime {
            event: ClientEvent::ResponseCreate { instructions: Some(i) },
            ..
        } if i == "Say goodbye."
    )));
    assert_eq!(h.call.phase(), Phase::Ending);
    let hard_end = h.at(1000) + wait + DRAIN_HANGUP_MARGIN;
    assert_eq!(h.call.deadline(Timer::Drain), Some(hard_end));
    // The goodbye's wait passes: the REST hang-up goes out, and Twilio never answers it.
    let outs = h.tick(6000);
    assert!(
        outs.iter().any(|o| matches!(o, Output::Effect { .. })),
        "{outs:?}"
    );
    assert!(hangup(&outs).is_none());
    assert_eq!(h.call.next_deadline(), Some(hard_end));
    assert!(hangup(&h.tick(7999)).is_none());
    let outs = h.tick(8000);
    assert_eq!(hangup(&outs), Some(EndReason::Shutdown));
    assert!(h.call.is_ended());
    assert_eq!(h.call.next_deadline(), None);
}

#[test]
fn a_drain_during_an_ending_only_adds_the_hard_deadline() {
    let mut h = H::started(CallConfig::default(), "{}");
    h.speak("resp_1", "item_1", 500, 100);
    h.call.end_after_heard(
        None,
        EndReason::MaxDuration,
        Duration::from_secs(30),
        h.at(200),
    );
    h.drain();
    h.call
        .on_drain(Some("Bye.".into()), Duration::from_secs(1), h.at(300));
    let outs = h.drain();
    assert!(outs.is_empty(), "no second goodbye: {outs:?}");
    assert_eq!(hangup(&h.tick(3299)), None);
    assert_eq!(hangup(&h.tick(3300)), Some(EndReason::Shutdown));
}

#[test]
fn a_session_opened_before_the_settings_are_decided_is_configured_once_with_them() {
    let cfg = |instructions: &str| {
        let mut c = greeting_cfg();
        c.session.instructions = instructions.into();
        c
    };
    let mut h = H::new(cfg("the default profile"));
    h.call.defer_settings();
    assert!(h.call.settings_pending());
    // The socket opens first: parked, not configured, no greeting.
    let outs = h.connect(1);
    assert!(
        !outs.iter().any(|o| matches!(o, Output::ToRealtime { .. })),
        "{outs:?}"
    );
    let outs = h.start("{}");
    assert!(session_updates(&outs).is_empty());
    assert_eq!(h.call.phase(), Phase::Connecting);
    // Caller audio meanwhile is kept for the session.
    h.frame(0x41, 20);

    h.call
        .settings_decided(Some(Arc::new(cfg("the sales profile"))), h.at(300));
    let outs = h.drain();
    assert_eq!(
        session_updates(&outs),
        [(1, "the sales profile".to_owned())]
    );
    assert!(outs.contains(&Output::Event(CallEvent::UpstreamReady { buffered_ms: 20 })));
    assert!(!h.call.settings_pending());
    assert_eq!(h.call.phase(), Phase::Live);
    // Configured once: a later decision changes nothing.
    h.call
        .settings_decided(Some(Arc::new(cfg("too late"))), h.at(400));
    assert!(session_updates(&h.drain()).is_empty());
    assert_eq!(h.call.config().session.instructions, "the sales profile");
}

#[test]
fn settings_decided_before_the_session_opens_configure_it_when_it_does() {
    let mut h = H::new(CallConfig::default());
    h.call.defer_settings();
    h.start("{}");
    let mut decided = CallConfig::default();
    decided.session.instructions = "decided".into();
    h.call.settings_decided(Some(Arc::new(decided)), h.at(5));
    assert!(session_updates(&h.drain()).is_empty(), "no socket yet");
    assert_eq!(session_updates(&h.connect(50)), [(1, "decided".to_owned())]);
}

#[test]
fn the_timer_table_names_each_deadline_and_next_deadline_is_its_earliest() {
    let mut h = H::started(CallConfig::default(), "{}");
    // Twilio idle (20 s) and the session's rotation are set; the upstream is ready.
    assert_eq!(h.call.deadline(Timer::UpstreamReady), None);
    assert_eq!(
        h.call.deadline(Timer::TwilioIdle),
        Some(h.at(0) + Duration::from_secs(20))
    );
    h.twilio(
        &format!(
            r#"{{"event":"dtmf","streamSid":"{SID}","sequenceNumber":"3","dtmf":{{"track":"inbound_track","digit":"1"}}}}"#
        ),
        100,
    );
    let dtmf = h.call.deadline(Timer::Dtmf).expect("dtmf timer set");
    assert_eq!(dtmf, h.at(1600));
    assert_eq!(h.call.next_deadline(), Some(dtmf));
    let outs = h.tick(1600);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::ToRealtime {
            event: ClientEvent::UserText(_),
            ..
        }
    )));
    assert_eq!(h.call.deadline(Timer::Dtmf), None);

    // Before the first session, the upstream-ready timer is the earliest.
    let h = H::new(CallConfig::default());
    assert_eq!(
        h.call.next_deadline(),
        Some(h.at(0) + CallConfig::default().upstream_ready_timeout)
    );
}
