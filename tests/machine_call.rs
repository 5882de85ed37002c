//! The call state machine driven with no sockets and no clock: scripted inputs, asserted
//! outputs.

use std::time::Duration;

use callbridge::call::{CallEvent, Output};
use callbridge::realtime::{AudioFormat, ClientEvent};
use callbridge::twilio::Outbound;

mod support;
use support::call_harness::{appends, config, frames, marks, pattern, FROM, H, SID};

#[test]
fn pcmu_media_frames_go_up_byte_for_byte() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    h.start(FROM);
    let outs = h.connect(5);
    assert!(matches!(
        outs[0],
        Output::ToRealtime {
            event: ClientEvent::SessionUpdate(_),
            ..
        }
    ));
    let mut sent = Vec::new();
    let mut got = Vec::new();
    for i in 0..50u64 {
        let frame = pattern(160, i as u8);
        got.extend(appends(&h.media(&frame, i * 20, i * 20 + 10)));
        sent.push(frame);
    }
    assert_eq!(got.len(), 50, "one append per frame");
    assert_eq!(got, sent, "exactly the caller's bytes, in order");
}

#[test]
fn pcm_media_frames_go_up_as_480_samples_each() {
    let mut h = H::new(config(AudioFormat::Pcm24k));
    h.start(FROM);
    h.connect(0);
    let mut total = 0;
    let n = 50;
    for i in 0..n {
        let outs = h.media(&[0x55; 160], i * 20, i * 20);
        total += appends(&outs).iter().map(Vec::len).sum::<usize>();
    }
    // 3 × 160 samples × 2 bytes per frame, give or take the resampler's chunk in flight.
    let expected = n as usize * 480 * 2;
    assert!(
        total <= expected && total + 480 * 2 >= expected,
        "{total} bytes of PCM16 for {n} frames (expected ~{expected})"
    );
}

#[test]
fn caller_audio_before_the_upstream_is_ready_is_buffered_not_lost() {
    let mut cfg = config(AudioFormat::Pcmu);
    cfg.greeting = Some("Greet the caller".into());
    let mut h = H::new(cfg);
    h.start(FROM);
    let mut sent = Vec::new();
    for i in 0..10u64 {
        let f = pattern(160, i as u8);
        assert!(appends(&h.media(&f, i * 20, i * 20)).is_empty());
        sent.extend(f);
    }
    let outs = h.connect(250);
    let kinds: Vec<&str> = outs
        .iter()
        .filter_map(|o| match o {
            Output::ToRealtime { event: e, .. } => Some(e.name()),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "session.update",
            "response.create",
            "input_audio_buffer.append"
        ]
    );
    assert_eq!(appends(&outs).concat(), sent);
}

#[test]
fn timestamp_gaps_are_filled_with_bounded_silence() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    h.start(FROM);
    h.connect(0);
    h.media(&[1; 160], 0, 0);
    // Frames at 20, 40, 60 ms lost: 60 ms of silence goes up before the next frame.
    let outs = h.media(&[2; 160], 80, 80);
    let up = appends(&outs).concat();
    assert_eq!(up.len(), 480 + 160);
    assert!(up[..480].iter().all(|&b| b == 0xFF));
    assert!(up[480..].iter().all(|&b| b == 2));
    // A huge jump is filled only up to max_gap_fill_ms (1 s).
    let outs = h.media(&[3; 160], 60_000, 100);
    assert_eq!(appends(&outs).concat().len(), 8000 + 160);
}

#[test]
fn deltas_of_any_size_become_exact_frames_with_nothing_lost() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    h.start(FROM);
    h.connect(0);
    h.realtime(
        r#"{"type":"response.created","response":{"id":"r1","status":"in_progress"}}"#,
        100,
    );
    let audio = pattern(7001, 9);
    let mut outs = Vec::new();
    let mut off = 0;
    for (i, size) in [1usize, 7, 159, 160, 161, 4800, 1713]
        .iter()
        .cycle()
        .enumerate()
    {
        if off >= audio.len() {
            break;
        }
        let end = (off + size).min(audio.len());
        outs.extend(h.delta("r1", "i1", &audio[off..end], 100 + i as u64));
        off = end;
    }
    outs.extend(h.realtime(
        r#"{"type":"response.output_audio.done","response_id":"r1","item_id":"i1"}"#,
        200,
    ));
    let f = frames(&outs);
    let flat: Vec<u8> = f.concat();
    assert_eq!(f.len(), 7001usize.div_ceil(160));
    assert_eq!(&flat[..7001], &audio[..], "every byte, in order");
    assert!(
        flat[7001..].iter().all(|&b| b == 0xFF),
        "last frame padded with μ-law silence"
    );
    // Each mark comes after the frames it counts, and the last covers everything sent.
    let last = marks(&outs).pop().expect("marks sent");
    assert_eq!(last, format!("1:{}", f.len() * 160));
}

#[test]
fn pcm_deltas_are_resampled_to_a_third_with_odd_byte_splits() {
    let mut h = H::new(config(AudioFormat::Pcm24k));
    h.start(FROM);
    h.connect(0);
    // 1 s of PCM16 at 24 kHz, split at odd byte counts.
    let pcm: Vec<u8> = (0..24_000)
        .flat_map(|i| (((i as f32 * 0.2).sin() * 8000.0) as i16).to_le_bytes())
        .collect();
    let mut outs = Vec::new();
    for chunk in pcm.chunks(4801) {
        outs.extend(h.delta("r1", "i1", chunk, 10));
    }
    outs.extend(h.realtime(
        r#"{"type":"response.output_audio.done","response_id":"r1","item_id":"i1"}"#,
        20,
    ));
    let total = frames(&outs).len() * 160;
    // 1 s at 8 kHz = 8000 bytes, plus at most the resampler tail and one padded frame.
    assert!((8000..=8000 + 2 * 160).contains(&total), "{total}");
}

/// The barge-in scenario: 2 s of agent audio sent at once, marks echoed as Twilio plays,
/// the caller talks 730 ms into playback.
#[test]
fn barge_in_clears_cancels_and_truncates_at_what_was_heard() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    h.start(FROM);
    h.connect(0);
    h.realtime(
        r#"{"type":"response.created","response":{"id":"r1"}}"#,
        1000,
    );
    let mut sent_marks = Vec::new();
    for i in 0..20 {
        // 100 ms deltas, all arriving within the first 50 ms.
        let outs = h.delta("r1", "item_a", &[0x10; 800], 1000 + i);
        sent_marks.extend(marks(&outs));
    }
    assert_eq!(sent_marks.len(), 20);
    // Twilio plays from t=1000 (network delay ignored): marks echo at 1100, 1200, ... 1700.
    for (k, m) in sent_marks.iter().take(7).enumerate() {
        assert!(h.mark(m, 1100 + 100 * k as u64).is_empty());
    }
    let outs = h.realtime(
        r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":5000,"item_id":"u1"}"#,
        1730,
    );
    let wire: Vec<String> = outs
        .iter()
        .filter_map(|o| match o {
            Output::ToTwilio(Outbound::Clear) => Some("clear".to_string()),
            Output::ToRealtime {
                event: ClientEvent::ResponseCancel,
                ..
            } => Some("cancel".into()),
            Output::ToRealtime {
                event:
                    ClientEvent::Truncate {
                        item_id,
                        audio_end_ms,
                    },
                ..
            } => Some(format!("truncate {item_id} {audio_end_ms}")),
            Output::ToTwilio(_) | Output::ToRealtime { event: _, .. } => Some("other".into()),
            _ => None,
        })
        .collect();
    assert_eq!(
        wire,
        ["clear", "cancel", "truncate item_a 730"],
        "clear first"
    );

    // Twilio echoes the marks it discarded: they do not count as heard, nor are they unknown.
    for m in &sent_marks[7..] {
        let outs = h.mark(m, 1740);
        assert!(outs.is_empty(), "{outs:?}");
    }
    assert!(!h.call.playback().audible(h.at(1800)));

    // Late audio of the cancelled response is dropped.
    let late = h.delta("r1", "item_a", &[0x10; 800], 1750);
    assert!(frames(&late).is_empty() && marks(&late).is_empty());

    // The server confirms; the next response plays normally.
    h.realtime(
        r#"{"type":"response.done","response":{"id":"r1","status":"cancelled"}}"#,
        1760,
    );
    h.realtime(
        r#"{"type":"response.created","response":{"id":"r2"}}"#,
        3000,
    );
    let outs = h.delta("r2", "item_b", &[0x20; 1600], 3000);
    assert_eq!(frames(&outs).len(), 10);
    assert_eq!(marks(&outs), ["2:1600"]);
}

#[test]
fn truncation_interpolates_between_marks_and_never_exceeds_what_was_sent() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    h.start(FROM);
    h.connect(0);
    h.realtime(r#"{"type":"response.created","response":{"id":"r1"}}"#, 0);
    // One 500 ms delta, played and its mark echoed; the caller speaks 10 s later.
    let m = marks(&h.delta("r1", "i1", &[1; 4000], 0));
    assert_eq!(m.len(), 1);
    h.realtime(
        r#"{"type":"response.done","response":{"id":"r1","status":"completed"}}"#,
        50,
    );
    h.mark(&m[0], 500);
    // Playback finished long ago: speech is not a barge-in, nothing to clear or cut.
    let outs = h.realtime(
        r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":1}"#,
        10_000,
    );
    assert!(outs
        .iter()
        .all(|o| !matches!(o, Output::ToTwilio(_) | Output::ToRealtime { event: _, .. })));

    // Second response: 1 s sent; the mark for the first 1 s... echoed late (Twilio started
    // playback 200 ms after we sent): interpolation follows the echo, not our send time.
    h.realtime(
        r#"{"type":"response.created","response":{"id":"r2"}}"#,
        20_000,
    );
    let m1 = marks(&h.delta("r2", "i2", &[2; 4000], 20_000));
    let _m2 = marks(&h.delta("r2", "i2", &[2; 4000], 20_010));
    h.mark(&m1[0], 20_700); // 500 ms played at 20.7 s
    let outs = h.realtime(
        r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":1}"#,
        20_812,
    );
    assert!(outs.contains(&Output::ToRealtime {
        generation: 1,
        event: ClientEvent::Truncate {
            item_id: "i2".into(),
            audio_end_ms: 612
        }
    }));
}

fn dtmf_msg(digit: &str) -> String {
    format!(
        r#"{{"event":"dtmf","sequenceNumber":"7","streamSid":"{SID}","dtmf":{{"track":"inbound_track","digit":"{digit}"}}}}"#
    )
}

fn to_model(outs: &[Output]) -> Vec<ClientEvent> {
    outs.iter()
        .filter_map(|o| match o {
            Output::ToRealtime { event: e, .. } if !matches!(e, ClientEvent::AppendAudio(_)) => {
                Some(e.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn keypad_entries_reach_the_model_as_one_message_after_a_pause_or_hash() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    h.start(FROM);
    h.connect(0);
    for (i, d) in ["1", "2", "3"].iter().enumerate() {
        let outs = h.twilio(&dtmf_msg(d), 100 + 200 * i as u64);
        assert!(to_model(&outs).is_empty(), "nothing before the entry ends");
    }
    // 1.5 s after the last key: one message, then an answer is asked for.
    let deadline = h.call.next_deadline().expect("deadline");
    assert_eq!(deadline, h.at(500 + 1500));
    h.call.on_tick(deadline);
    let outs = h.drain();
    assert_eq!(
        to_model(&outs),
        [
            ClientEvent::UserText(
                "[The caller pressed these keys on the phone keypad: 123]".into()
            ),
            ClientEvent::ResponseCreate { instructions: None }
        ]
    );
    // `#` ends an entry at once; while the model is answering, no second response.create.
    h.realtime(
        r#"{"type":"response.created","response":{"id":"r9"}}"#,
        3000,
    );
    h.twilio(&dtmf_msg("4"), 3100);
    let outs = h.twilio(&dtmf_msg("#"), 3200);
    assert_eq!(
        to_model(&outs),
        [ClientEvent::UserText(
            "[The caller pressed these keys on the phone keypad: 4#]".into()
        )]
    );
}

#[test]
fn keys_pressed_before_the_session_is_ready_wait_for_it() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    h.start(FROM);
    h.twilio(&dtmf_msg("9"), 10);
    h.call.on_tick(h.at(2000));
    assert!(to_model(&h.drain()).is_empty());
    let outs = h.connect(2500);
    let evs = to_model(&outs);
    assert!(matches!(evs[0], ClientEvent::SessionUpdate(_)));
    assert_eq!(
        evs[1..],
        [
            ClientEvent::UserText("[The caller pressed these keys on the phone keypad: 9]".into()),
            ClientEvent::ResponseCreate { instructions: None }
        ]
    );
}

/// The turn's instants for the latency metrics: `speech_stopped` and the model's time to first
/// audio are reported once, right after the answer's first frames, and not for later deltas.
#[test]
fn an_answers_first_frames_report_the_turn_and_model_latency() {
    let mut h = H::new(config(AudioFormat::Pcmu));
    h.start(FROM);
    h.connect(0);
    let agent_audio = |outs: &[Output]| {
        outs.iter()
            .filter_map(|o| match o {
                Output::Event(CallEvent::AgentAudio {
                    model_latency,
                    speech_stopped_at,
                }) => Some((*model_latency, *speech_stopped_at)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    h.realtime(
        r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":100}"#,
        500,
    );
    h.realtime(
        r#"{"type":"input_audio_buffer.speech_stopped","audio_end_ms":1500}"#,
        2000,
    );
    h.realtime(
        r#"{"type":"response.created","response":{"id":"r1"}}"#,
        2010,
    );
    // 10 ms of audio: no whole frame yet, so nothing went to the caller.
    let outs = h.delta("r1", "item_a", &[0x10; 80], 2300);
    assert!(agent_audio(&outs).is_empty());
    let outs = h.delta("r1", "item_a", &[0x10; 800], 2320);
    let reported = agent_audio(&outs);
    assert_eq!(
        reported,
        [(Some(Duration::from_millis(290)), Some(h.at(2000)))]
    );
    let first_frame = outs
        .iter()
        .position(|o| matches!(o, Output::ToTwilio(Outbound::Media(_))));
    let event = outs
        .iter()
        .position(|o| matches!(o, Output::Event(CallEvent::AgentAudio { .. })));
    assert!(first_frame < event, "reported after the frames it times");
    assert!(agent_audio(&h.delta("r1", "item_a", &[0x10; 800], 2400)).is_empty());
}
