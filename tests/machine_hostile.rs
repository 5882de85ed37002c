//! The call state machine under bad input, driven with no sockets and no clock: hostile or
//! malformed Twilio messages and Realtime events, a peer that vanishes, a stream that never
//! starts, a random storm of inputs, a `start` for another call. The call survives each and
//! ends cleanly where it must.

use callbridge::call::{CallEvent, EndReason, Output};
use callbridge::realtime::{AudioFormat, ClientEvent};
use callbridge::twilio::Outbound;

mod support;
use support::call_harness::{appends, config, frames, media_msg, pattern, start_msg, FROM, H, SID};

#[test]
fn hostile_twilio_input_is_survived() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    // Media before start: ignored (logged), no panic, call goes on.
    let outs = h.twilio(&media_msg(SID, &[1; 160], 0), 0);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(CallEvent::Anomaly {
            kind: "before_start",
            ..
        })
    )));
    h.start(FROM);
    h.connect(0);
    // Bad base64.
    let outs = h.twilio(
        &format!(r#"{{"event":"media","streamSid":"{SID}","media":{{"payload":"%%%notbase64"}}}}"#),
        20,
    );
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(CallEvent::Anomaly {
            kind: "bad_media_payload",
            ..
        })
    )));
    // Another stream's media.
    let outs = h.twilio(&media_msg("MZother", &[1; 160], 40), 40);
    assert!(appends(&outs).is_empty());
    // Oversize payload (10 s in one message).
    let outs = h.media(&vec![1; 80_000], 60, 60);
    assert!(appends(&outs).is_empty());
    // Unknown event, unknown mark.
    assert!(h.twilio(r#"{"event":"whatever"}"#, 70).is_empty());
    h.mark("never-sent", 80);
    // The call still works.
    assert_eq!(appends(&h.media(&[7; 160], 100, 100)), vec![vec![7; 160]]);
    // DTMF surfaces as an event; stop ends the call.
    let outs = h.twilio(
        &format!(r#"{{"event":"dtmf","streamSid":"{SID}","dtmf":{{"track":"inbound_track","digit":"5"}}}}"#),
        120,
    );
    assert_eq!(outs, [Output::Event(CallEvent::Dtmf("5".into()))]);
    let outs = h.twilio(
        &format!(r#"{{"event":"stop","streamSid":"{SID}","stop":{{}}}}"#),
        140,
    );
    assert_eq!(outs, [Output::Hangup(EndReason::CallerHungUp)]);
    assert!(h.call.is_ended());
}

#[test]
fn wrong_media_format_is_refused() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    let outs = h.twilio(&start_msg(SID, FROM, "audio/x-alaw"), 0);
    assert_eq!(
        outs.last(),
        Some(&Output::Hangup(EndReason::UnsupportedMediaFormat))
    );
}

#[test]
fn unknown_and_hostile_realtime_events_are_survived() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    h.start(FROM);
    h.connect(0);
    assert!(h
        .realtime(r#"{"type":"rate_limits.updated","rate_limits":[]}"#, 1)
        .is_empty());
    assert!(h
        .realtime(r#"{"type":"some.future.event","x":{"y":1}}"#, 1)
        .is_empty());
    let outs = h.delta("r1", "i1", &[], 2);
    assert!(frames(&outs).is_empty());
    let outs = h.realtime(
        r#"{"type":"response.output_audio.delta","response_id":"r1","item_id":"i1","delta":"***"}"#,
        3,
    );
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(CallEvent::Anomaly {
            kind: "bad_audio_delta",
            ..
        })
    )));
    let outs = h.realtime(
        r#"{"type":"error","error":{"type":"invalid_request_error","code":"response_cancel_not_active","message":"none"}}"#,
        4,
    );
    assert!(matches!(
        &outs[0],
        Output::Event(CallEvent::UpstreamError { harmless: true, .. })
    ));
    // Audio done for an item we never saw, response.done for an unknown response: no-ops.
    h.realtime(
        r#"{"type":"response.output_audio.done","item_id":"zzz"}"#,
        5,
    );
    h.realtime(r#"{"type":"response.done","response":{"id":"zzz"}}"#, 6);
    assert!(!h.call.is_ended());
}

#[test]
fn deadlines_end_a_call_whose_peer_vanished() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    h.start(FROM);
    // The upstream never connects.
    let d = h.call.next_deadline().expect("a deadline while connecting");
    assert_eq!(d, h.at(10_000));
    h.call.on_tick(d);
    assert_eq!(
        h.drain().last(),
        Some(&Output::Hangup(EndReason::UpstreamTimeout))
    );

    let mut h = H::new(config(AudioFormat::Pcmu));
    h.start(FROM);
    h.connect(10);
    h.media(&[1; 160], 0, 1000);
    h.call.on_tick(h.at(5000));
    assert!(!h.call.is_ended());
    h.call.on_tick(h.at(21_000));
    assert_eq!(
        h.drain().last(),
        Some(&Output::Hangup(EndReason::TwilioIdle))
    );
}

/// A deterministic storm of valid, out-of-order and broken inputs: the machine never panics,
/// never sends Twilio anything but exact frames/marks/clears, and keeps its books straight.
#[test]
fn random_input_storm_never_breaks_the_call() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    for format in [AudioFormat::Pcmu, AudioFormat::Pcm24k] {
        let mut h = H::new(config(format));
        let mut t = 0u64;
        let mut sent_marks: Vec<String> = Vec::new();
        for _ in 0..4000 {
            t += rnd(30);
            let outs = match rnd(14) {
                0 => h.start(FROM),
                1 => h.connect(t),
                2 | 3 => {
                    let n = rnd(400) as usize;
                    h.media(&pattern(n, t as u8), t, t)
                }
                4 => {
                    let resp = format!("r{}", rnd(3));
                    h.realtime(
                        &format!(r#"{{"type":"response.created","response":{{"id":"{resp}"}}}}"#),
                        t,
                    )
                }
                5 | 6 => {
                    let n = rnd(3000) as usize;
                    h.delta(
                        &format!("r{}", rnd(3)),
                        &format!("i{}", rnd(4)),
                        &pattern(n, 3),
                        t,
                    )
                }
                7 => h.realtime(
                    r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":10}"#,
                    t,
                ),
                8 => h.realtime(
                    &format!(
                        r#"{{"type":"response.output_audio.done","item_id":"i{}"}}"#,
                        rnd(4)
                    ),
                    t,
                ),
                9 => h.realtime(
                    &format!(
                        r#"{{"type":"response.done","response":{{"id":"r{}"}}}}"#,
                        rnd(3)
                    ),
                    t,
                ),
                10 if !sent_marks.is_empty() => {
                    let i = rnd(sent_marks.len() as u64) as usize;
                    h.mark(&sent_marks[i], t)
                }
                11 => h.twilio(
                    &format!(
                        r#"{{"event":"media","streamSid":"{SID}","media":{{"payload":"{}"}}}}"#,
                        "!".repeat(rnd(50) as usize)
                    ),
                    t,
                ),
                12 => h.twilio(
                    &format!(
                        r#"{{"event":"dtmf","streamSid":"{SID}","dtmf":{{"digit":"{}"}}}}"#,
                        rnd(10)
                    ),
                    t,
                ),
                _ => h.realtime(r#"{"type":"whatever.new","x":1}"#, t),
            };
            for o in &outs {
                if let Output::ToTwilio(Outbound::Mark(m)) = o {
                    sent_marks.push(m.clone());
                }
                if let Output::ToRealtime {
                    event: ClientEvent::AppendAudio(b),
                    ..
                } = o
                {
                    assert!(!b.is_empty());
                    if format == AudioFormat::Pcm24k {
                        assert_eq!(b.len() % 2, 0, "whole PCM16 samples only");
                    }
                }
            }
            assert!(!h.call.is_ended(), "nothing in the storm ends the call");
            assert!(h.call.playback().heard(h.at(t)) <= h.call.playback().sent());
        }
    }
}

#[test]
fn a_stream_that_never_starts_is_ended_not_left_dead() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    h.connect(0);
    let mut last = Vec::new();
    for i in 0..50u64 {
        assert!(!h.call.is_ended(), "ended after only {i} frames");
        last = h.media(&[1; 160], i * 20, i * 20);
    }
    assert_eq!(last.last(), Some(&Output::Hangup(EndReason::NoStart)));
}

/// A socket opened with a softphone ticket is for the ticket's call only: a `start` naming
/// another CallSid (a phone call's, to pass for it) ends the call as one without a usable
/// `start`; the ticket's own SID starts it as usual.
#[test]
fn a_call_bound_to_a_call_sid_refuses_a_start_naming_another() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    h.call.require_call_sid("CAticket");
    let outs = h.start(FROM); // names CA1
    assert!(
        outs.iter().any(|o| matches!(
            o,
            Output::Event(CallEvent::Anomaly {
                kind: "unexpected_call_sid",
                ..
            })
        )),
        "{outs:?}"
    );
    assert_eq!(outs.last(), Some(&Output::Hangup(EndReason::NoStart)));
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::Event(CallEvent::Started { .. }))));
    assert_eq!(h.call.stream_sid(), None);

    let mut h = H::new(config(AudioFormat::Pcmu));
    h.call.require_call_sid("CA1");
    let outs = h.start(FROM);
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Event(CallEvent::Started { .. }))));
    assert!(!h.call.is_ended());
}
