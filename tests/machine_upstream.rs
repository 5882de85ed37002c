//! The call's upstream decisions, with no sockets and no clock: drops and re-dials with
//! backoff, generations, what a new session is sent, fatal refusals, rotation at a quiet moment
//! on a frame boundary, the forced switch before the limit.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use callbridge::call::conversation::CONTINUATION_NOTE;
use callbridge::call::{CallConfig, CallEvent, EndReason, Output, UpstreamEffect, UpstreamLoss};
use callbridge::realtime::{ClientEvent, Item, ServerEvent};
use callbridge::twilio::Outbound;

mod support;
use support::call_harness::{appends, hangup, to_model, upstream_effects, H};

/// A call whose `start` arrived and whose first session (generation 1) opened at 0 ms.
fn opened(cfg: CallConfig) -> H {
    let mut h = H::new(cfg);
    h.start("{}");
    h.open(1, 0);
    h
}

impl H {
    fn ev(&mut self, generation: u64, json: &str, ms: u64) -> Vec<Output> {
        let ev = ServerEvent::parse(json).expect("event");
        self.call.on_realtime(generation, ev, self.at(ms));
        self.drain()
    }
    fn lost(&mut self, generation: u64, loss: UpstreamLoss, ms: u64) -> Vec<Output> {
        self.call.on_upstream_lost(generation, loss, self.at(ms));
        self.drain()
    }
    fn open(&mut self, generation: u64, ms: u64) -> Vec<Output> {
        self.call.on_upstream_open(generation, self.at(ms));
        self.drain()
    }
    /// The dial of `generation` failed at `ms`.
    fn dial_failed(&mut self, generation: u64, ms: u64) -> Vec<Output> {
        self.lost(
            generation,
            UpstreamLoss::ConnectFailed("refused".into()),
            ms,
        )
    }
    /// At `ms` the call dials `generation`, and does nothing else upstream.
    fn assert_redials(&mut self, generation: u64, ms: u64) {
        assert_eq!(
            upstream_effects(&self.tick(ms)),
            [UpstreamEffect::ConnectUpstream { generation }]
        );
    }
    fn deadline_ms(&self) -> u64 {
        self.call
            .next_deadline()
            .expect("deadline")
            .duration_since(self.t0)
            .as_millis() as u64
    }
}

fn dropped() -> UpstreamLoss {
    UpstreamLoss::Dropped("reset".into())
}

/// The conversation items sent to the model, in order.
fn created_items(outs: &[Output]) -> Vec<Item> {
    to_model(outs)
        .into_iter()
        .filter_map(|(_, event)| match event {
            ClientEvent::CreateItem(i) => Some(i),
            _ => None,
        })
        .collect()
}

/// The caller audio sent up, all of it.
fn appended(outs: &[Output]) -> Vec<u8> {
    appends(outs).concat()
}

const SPEECH_STARTED: &str =
    r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":0,"item_id":"u1"}"#;

#[test]
fn a_drop_redials_at_once_then_backs_off_and_gives_up_after_the_window() {
    let mut h = opened(CallConfig::default());
    let outs = h.lost(1, dropped(), 1000);
    assert_eq!(
        upstream_effects(&outs),
        [
            UpstreamEffect::CloseUpstream { generation: 1 },
            UpstreamEffect::ConnectUpstream { generation: 2 }
        ]
    );
    assert!(
        outs.contains(&Output::Event(CallEvent::UpstreamReconnecting {
            generation: 1,
            reason: "dropped",
            detail: "generation 1: dropped: reset".into()
        }))
    );
    // Each failed try waits longer: 250 ms, 1 s, 2 s, 2 s, ...
    let mut now = 1000;
    let mut generation = 2;
    for wait in [250, 1000, 2000, 2000] {
        let outs = h.dial_failed(generation, now);
        assert!(upstream_effects(&outs).is_empty(), "{outs:?}");
        assert_eq!(h.deadline_ms(), now + wait);
        assert!(
            upstream_effects(&h.tick(now + wait - 1)).is_empty(),
            "not before its time"
        );
        generation += 1;
        h.assert_redials(generation, now + wait);
        now += wait;
    }
    // 6.25 s after the drop; the next try (at 8.25 s) still fits, the one after does not.
    let outs = h.dial_failed(generation, now);
    assert!(hangup(&outs).is_none());
    h.assert_redials(generation + 1, now + 2000);
    let outs = h.dial_failed(generation + 1, now + 2100);
    // Failed at 8.35 s: the next try at 10.35 s still fits the 10 s window (from 1 s).
    assert!(hangup(&outs).is_none());
    h.assert_redials(generation + 2, now + 4100);
    // Failed at 10.45 s: a try at 12.45 s would be past the window. Give up now.
    let outs = h.dial_failed(generation + 2, now + 4200);
    assert_eq!(hangup(&outs), Some(EndReason::UpstreamFailed), "{outs:?}");
}

#[test]
fn a_dial_still_in_flight_when_the_window_closes_ends_the_call() {
    let mut h = opened(CallConfig::default());
    h.lost(1, dropped(), 0);
    assert_eq!(h.deadline_ms(), 10_000);
    assert!(hangup(&h.tick(9_999)).is_none());
    assert_eq!(hangup(&h.tick(10_000)), Some(EndReason::UpstreamFailed));
    assert!(h.call.next_deadline().is_none());
}

#[test]
fn the_new_session_gets_the_config_the_conversation_then_the_kept_caller_audio() {
    let mut h = opened(CallConfig::default());
    h.ev(1, r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"u0","content_index":0,"transcript":"Where is my order?"}"#, 100);
    h.ev(1, r#"{"type":"response.output_audio_transcript.done","item_id":"a0","transcript":"Let me check."}"#, 200);
    // One second of quiet caller audio, then the caller starts a sentence.
    let mut t = 300;
    for _ in 0..50 {
        h.frame(0x11, t);
        t += 20;
    }
    h.ev(1, SPEECH_STARTED, t);
    let mut sent = Vec::new();
    for _ in 0..30 {
        sent.extend(appended(&h.frame(0x22, t)));
        t += 20;
    }
    assert_eq!(sent.len(), 30 * 160, "sent to the first session as usual");
    h.lost(1, dropped(), t);
    // The sentence goes on during the gap.
    for _ in 0..20 {
        assert!(
            appended(&h.frame(0x33, t)).is_empty(),
            "held during the gap"
        );
        t += 20;
    }
    let outs = h.open(2, t);
    // Everything for the model goes to the new socket.
    let ups: Vec<_> = to_model(&outs)
        .iter()
        .map(|(generation, e)| (*generation, e.name()))
        .collect();
    assert_eq!(
        &ups[..4],
        [
            (2, "session.update"),
            (2, "conversation.item.create"),
            (2, "conversation.item.create"),
            (2, "conversation.item.create")
        ]
    );
    assert!(ups[4..]
        .iter()
        .all(|u| *u == (2, "input_audio_buffer.append")));
    let items = created_items(&outs);
    assert_eq!(
        items,
        [
            Item::UserText("Where is my order?".into()),
            Item::AssistantText("Let me check.".into()),
            Item::SystemText(CONTINUATION_NOTE.into()),
        ]
    );
    // The last 500 ms before the sentence began, the part the lost session had, the gap.
    let mut expected = vec![0x11; 25 * 160];
    expected.extend(vec![0x22; 30 * 160]);
    expected.extend(vec![0x33; 20 * 160]);
    assert_eq!(appended(&outs), expected);
    assert!(
        outs.iter().any(|o| matches!(
            o,
            Output::Event(CallEvent::UpstreamRestored {
                generation: 2,
                previous: 1,
                resent_ms: 1500,
                replayed_items: 3,
                ..
            })
        )),
        "{:?}",
        outs.iter()
            .filter(|o| matches!(o, Output::Event(_)))
            .collect::<Vec<_>>()
    );
    // Afterwards frames go straight up again.
    assert_eq!(appended(&h.frame(0x44, t)).len(), 160);
}

#[test]
fn a_session_that_dies_soon_after_a_restore_continues_the_same_outage() {
    let mut h = opened(CallConfig::default());
    h.lost(1, dropped(), 0);
    h.open(2, 100);
    h.lost(2, dropped(), 2_000);
    assert_eq!(
        h.deadline_ms(),
        10_000,
        "the window still counts from the first drop"
    );
    // A session that lived longer than 5 s starts a fresh window.
    h.open(3, 2_100);
    h.lost(3, dropped(), 8_000);
    assert_eq!(h.deadline_ms(), 18_000);
}

#[test]
fn results_for_old_generations_are_ignored() {
    let mut h = opened(CallConfig::default());
    h.lost(1, dropped(), 0);
    h.open(2, 10);
    // The old socket's late events and its close change nothing.
    assert!(h
        .ev(
            1,
            r#"{"type":"response.created","response":{"id":"r_old"}}"#,
            20
        )
        .is_empty());
    assert!(h.lost(1, dropped(), 30).is_empty());
    // A socket that opens when nobody waits for it is closed.
    assert_eq!(
        h.open(7, 40),
        [Output::Upstream(UpstreamEffect::CloseUpstream {
            generation: 7
        })]
    );
    // The current one still works.
    assert_eq!(appended(&h.frame(0x10, 50)).len(), 160);
}

#[test]
fn errors_no_retry_fixes_end_the_call_at_once() {
    let mut h = opened(CallConfig::default());
    h.lost(1, dropped(), 0);
    let outs = h.lost(2, UpstreamLoss::Refused { status: 401 }, 10);
    assert_eq!(hangup(&outs), Some(EndReason::UpstreamRefused));
    assert_eq!(EndReason::UpstreamRefused.as_str(), "upstream_refused");

    let mut h = opened(CallConfig::default());
    let outs = h.ev(
        1,
        r#"{"type":"error","error":{"type":"insufficient_quota","code":"insufficient_quota","message":"no"}}"#,
        10,
    );
    assert_eq!(hangup(&outs), Some(EndReason::UpstreamRefused));
    // A server_error only colours the label of the drop that follows.
    let mut h = opened(CallConfig::default());
    let outs = h.ev(
        1,
        r#"{"type":"error","error":{"type":"server_error","code":"server_error","message":"oops"}}"#,
        10,
    );
    assert!(hangup(&outs).is_none());
    let outs = h.lost(
        1,
        UpstreamLoss::Closed {
            code: 1011,
            reason: String::new(),
        },
        20,
    );
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(CallEvent::UpstreamReconnecting {
            reason: "server_error",
            ..
        })
    )));
}

#[test]
fn with_retries_off_a_drop_ends_the_call_as_before() {
    let mut h = opened(CallConfig {
        upstream_retry: Duration::ZERO,
        ..CallConfig::default()
    });
    let outs = h.lost(
        1,
        UpstreamLoss::Closed {
            code: 1011,
            reason: String::new(),
        },
        10,
    );
    assert_eq!(hangup(&outs), Some(EndReason::UpstreamClosed));
}

#[test]
fn session_expired_is_a_drop_without_waiting_for_the_close() {
    let mut h = opened(CallConfig::default());
    let outs = h.ev(
        1,
        r#"{"type":"error","error":{"type":"invalid_request_error","code":"session_expired","message":"Your session hit the maximum duration of 60 minutes."}}"#,
        10,
    );
    assert_eq!(
        upstream_effects(&outs),
        [
            UpstreamEffect::CloseUpstream { generation: 1 },
            UpstreamEffect::ConnectUpstream { generation: 2 }
        ]
    );
    // The 1001 close that follows is about a socket already given up.
    assert!(h
        .lost(
            1,
            UpstreamLoss::Closed {
                code: 1001,
                reason: String::new()
            },
            20
        )
        .is_empty());
}

#[test]
fn a_drop_mid_answer_plays_what_was_sent_and_marks_the_line_cut() {
    let mut h = opened(CallConfig::default());
    h.ev(
        1,
        r#"{"type":"response.created","response":{"id":"r1"}}"#,
        0,
    );
    h.ev(1, r#"{"type":"response.output_audio_transcript.delta","item_id":"a1","delta":"Your order shipped on"}"#, 5);
    // 250 bytes: one whole frame goes out, 90 bytes wait in the framer.
    let delta = format!(
        r#"{{"type":"response.output_audio.delta","response_id":"r1","item_id":"a1","delta":"{}"}}"#,
        B64.encode([0x55u8; 250])
    );
    h.ev(1, &delta, 10);
    let outs = h.lost(1, dropped(), 20);
    assert!(
        outs.iter()
            .any(|o| matches!(o, Output::ToTwilio(Outbound::Media(_)))),
        "the held remainder is flushed to the caller"
    );
    assert!(
        !outs
            .iter()
            .any(|o| matches!(o, Output::ToTwilio(Outbound::Clear))),
        "no clear"
    );
    let outs = h.open(2, 30);
    let items = created_items(&outs);
    assert_eq!(
        items[0],
        Item::AssistantText("Your order shipped on…".into())
    );
}

fn rotating(after_s: u64) -> H {
    opened(CallConfig {
        session_rotate_after: Duration::from_secs(after_s),
        // These tests skip through minutes without Twilio messages.
        twilio_idle_timeout: Duration::from_secs(3600),
        ..CallConfig::default()
    })
}

#[test]
fn rotation_waits_for_a_quiet_moment_and_switches_between_two_frames() {
    let mut h = rotating(60);
    assert_eq!(h.deadline_ms(), 60_000);
    let mut t = 0;
    while t < 60_000 {
        h.frame(0xFF, t);
        t += 20;
    }
    assert_eq!(h.deadline_ms(), 60_000);
    assert_eq!(
        upstream_effects(&h.tick(60_000)),
        [UpstreamEffect::ConnectUpstream { generation: 2 }]
    );
    let outs = h.open(2, 60_100);
    assert_eq!(
        to_model(&outs)[0],
        (
            2,
            ClientEvent::SessionUpdate(Box::new(CallConfig::default().session))
        )
    );
    // An answer is in flight: no switch, however quiet the caller.
    h.ev(
        1,
        r#"{"type":"response.created","response":{"id":"r1"}}"#,
        60_100,
    );
    t = 60_100;
    for _ in 0..40 {
        assert!(upstream_effects(&h.frame(0xFF, t)).is_empty());
        t += 20;
    }
    // The caller speaks (loud frames): still no switch, even once the answer is done.
    for _ in 0..10 {
        assert!(upstream_effects(&h.frame(0x00, t)).is_empty());
        t += 20;
    }
    let outs = h.ev(
        1,
        r#"{"type":"response.done","response":{"id":"r1","status":"completed"}}"#,
        t,
    );
    assert!(upstream_effects(&outs).is_empty());
    // 300 ms of quiet: the switch comes right after the 15th quiet frame went to the old one.
    let mut before = 0;
    loop {
        let outs = h.frame(0xFF, t);
        t += 20;
        let e = upstream_effects(&outs);
        if e.is_empty() {
            before += 1;
            continue;
        }
        assert!(
            matches!(
                outs[0],
                Output::ToRealtime {
                    generation: 1,
                    event: ClientEvent::AppendAudio(_),
                }
            ),
            "the frame first, to the old one"
        );
        assert!(
            to_model(&outs[1..]).iter().all(|(g, _)| *g == 2),
            "then the new one: {outs:?}"
        );
        assert_eq!(e, [UpstreamEffect::CloseUpstream { generation: 1 }]);
        assert!(outs.contains(&Output::Event(CallEvent::SessionRotated {
            generation: 2,
            forced: false
        })));
        break;
    }
    assert_eq!(before, 14);
    assert_eq!(h.call.upstream_generation(), 2);
    let next = to_model(&h.frame(0xFF, t));
    assert!(
        matches!(&next[..], [(2, ClientEvent::AppendAudio(b))] if b.len() == 160),
        "the next frame goes to the new one"
    );
}

#[test]
fn a_turn_just_ended_is_not_a_quiet_moment() {
    let mut h = rotating(1);
    h.tick(1000);
    h.open(2, 1000);
    let mut t = 1000;
    for _ in 0..20 {
        h.frame(0xFF, t);
        t += 20;
    }
    assert_eq!(h.call.upstream_generation(), 2);
    // Next rotation: the caller ends a turn just as the successor is ready.
    h.tick(t + 1000);
    h.ev(2, SPEECH_STARTED, t + 1000);
    h.open(3, t + 1000);
    h.ev(
        2,
        r#"{"type":"input_audio_buffer.speech_stopped","audio_end_ms":900}"#,
        t + 1000,
    );
    t += 1000;
    for _ in 0..20 {
        assert!(
            upstream_effects(&h.frame(0xFF, t)).is_empty(),
            "the answer is about to start"
        );
        t += 20;
    }
    h.ev(
        2,
        r#"{"type":"response.created","response":{"id":"r2"}}"#,
        t,
    );
    h.ev(
        2,
        r#"{"type":"response.done","response":{"id":"r2","status":"completed"}}"#,
        t,
    );
    assert_eq!(h.call.upstream_generation(), 3);
}

#[test]
fn without_a_quiet_moment_the_switch_is_forced_before_the_limit() {
    let mut h = rotating(3300);
    h.call.on_wall_clock(1_000_000, h.t0);
    // The server says the session ends in 10 minutes: rotate now, force a minute before.
    h.ev(
        1,
        r#"{"type":"session.created","session":{"id":"s1","expires_at":1000600}}"#,
        0,
    );
    assert_eq!(h.deadline_ms(), 300_000);
    assert_eq!(
        upstream_effects(&h.tick(300_000)),
        [UpstreamEffect::ConnectUpstream { generation: 2 }]
    );
    h.open(2, 300_000);
    h.ev(1, SPEECH_STARTED, 300_000);
    assert_eq!(h.deadline_ms(), 540_000);
    let outs = h.tick(540_000);
    assert_eq!(h.call.upstream_generation(), 2, "{outs:?}");
    assert!(to_model(&outs).iter().all(|(g, _)| *g == 2), "{outs:?}");
    assert_eq!(
        upstream_effects(&outs),
        [UpstreamEffect::CloseUpstream { generation: 1 }]
    );
    assert!(outs.contains(&Output::Event(CallEvent::SessionRotated {
        generation: 2,
        forced: true
    })));
}

#[test]
fn a_failed_successor_leaves_the_call_on_its_session_and_is_tried_again() {
    let mut h = rotating(10);
    h.tick(10_000);
    let outs = h.lost(2, UpstreamLoss::ConnectFailed("nope".into()), 10_100);
    assert!(hangup(&outs).is_none());
    assert_eq!(h.call.upstream_generation(), 1);
    assert_eq!(appended(&h.frame(0x10, 10_200)).len(), 160);
    assert_eq!(
        upstream_effects(&h.tick(15_100)),
        [UpstreamEffect::ConnectUpstream { generation: 3 }]
    );
}

#[test]
fn a_drop_while_a_successor_waits_switches_to_it_at_once() {
    let mut h = rotating(10);
    h.tick(10_000);
    h.open(2, 10_000);
    h.ev(
        1,
        r#"{"type":"response.created","response":{"id":"r1"}}"#,
        10_000,
    );
    let outs = h.lost(1, dropped(), 10_100);
    assert_eq!(
        upstream_effects(&outs),
        [UpstreamEffect::CloseUpstream { generation: 1 }]
    );
    assert_eq!(h.call.upstream_generation(), 2);
    assert!(to_model(&outs).iter().all(|(g, _)| *g == 2), "{outs:?}");
}
