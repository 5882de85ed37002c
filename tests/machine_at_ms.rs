//! When the lines of a call's transcript were said, in virtual time: a caller line is timed by
//! where its speech began in the caller's audio (`speech_started.audio_start_ms`, placed on
//! the call's clock), an agent line by when its audio began playing for the caller — never
//! by when the transcript happened to arrive. The report takes those times and orders its
//! lines by them.

use std::time::SystemTime;

use callbridge::call::conversation::Entry;
use callbridge::call::{CallConfig, CallEvent, Output, UpstreamLoss};
use callbridge::report::builder::ReportBuilder;
use serde_json::json;

mod support;
use support::call_harness::{events, H};

/// (role, text, at_ms) of every line of the conversation log.
fn timed_lines(h: &H) -> Vec<(&'static str, String, Option<u64>)> {
    h.call
        .conversation()
        .entries()
        .iter()
        .filter_map(|e| match e {
            Entry::Caller(c) => Some(("caller", c.text.to_string(), c.at_ms)),
            Entry::Agent(a) => Some(("agent", a.text(), a.at_ms)),
            _ => None,
        })
        .collect()
}

/// The report's transcript, built as the shell builds it: every event at the time it came
/// out of the call, then the conversation log.
fn report_lines(h: &H, timed_events: &[(u64, Vec<Output>)]) -> serde_json::Value {
    let mut b = ReportBuilder::new(h.t0, SystemTime::UNIX_EPOCH);
    for (ms, outs) in timed_events {
        for ev in events(outs) {
            b.on_event(&ev, h.at(*ms));
        }
    }
    b.use_conversation(h.call.conversation().entries());
    let report = serde_json::to_value(b.finish("completed", h.at(10_000))).expect("JSON");
    report["transcript"].clone()
}

#[test]
fn a_late_transcript_is_timed_by_where_the_speech_began_in_the_audio() {
    // `start` arrives 40 ms after the socket opened; the session opens at 50 ms.
    let mut h = H::new(CallConfig::default());
    h.twilio(
        &support::call_harness::start_msg(support::call_harness::SID, "{}", "audio/x-mulaw"),
        40,
    );
    h.connect(50);
    let mut log = Vec::new();
    // Two seconds of caller audio, in real time from `start` on.
    for i in 0..100u64 {
        h.frame(0xFF, 40 + i * 20);
    }
    // The server heard speech begin 700 ms into the session's audio (item c1), and end.
    log.push((
        900,
        h.rt(
            json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 700, "item_id": "c1"}),
            900,
        ),
    ));
    h.rt(
        json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1400}),
        1500,
    );
    // The agent answers at 1600 ms (nothing queued at Twilio: it plays at once), and its
    // transcript is done at 1700 ms.
    h.created("r1", 1600);
    h.delta("r1", "a1", &[0x11u8; 8 * 1000], 1600);
    log.push((
        1700,
        h.rt(
            json!({"type": "response.output_audio_transcript.done", "item_id": "a1", "transcript": "Your order ships Friday."}),
            1700,
        ),
    ));
    // The caller's transcript comes last, at 3000 ms.
    log.push((
        3000,
        h.rt(
            json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "c1", "transcript": "Where is my order?"}),
            3000,
        ),
    ));
    // 40 ms to `start` (the audio's 0) + 700 ms into the session, whose audio began at 0.
    assert_eq!(
        timed_lines(&h),
        [
            ("agent", "Your order ships Friday.".into(), Some(1600)),
            ("caller", "Where is my order?".into(), Some(740)),
        ]
    );
    assert_eq!(
        report_lines(&h, &log),
        json!([
            {"role": "caller", "text": "Where is my order?", "at_ms": 740},
            {"role": "agent", "text": "Your order ships Friday.", "at_ms": 1600},
        ]),
        "in the order they were said"
    );
}

#[test]
fn an_answer_queued_behind_another_is_timed_by_when_it_plays() {
    let mut h = H::started(CallConfig::default(), "{}");
    // A 2 s answer goes out at 100 ms; a second item of the same response follows at 200 ms,
    // queued at Twilio behind the 1.9 s still to play.
    h.created("r1", 100);
    h.delta("r1", "a1", &[0x11u8; 8 * 2000], 100);
    h.delta("r1", "a2", &[0x22u8; 8 * 500], 200);
    let lines = timed_lines(&h);
    assert_eq!(lines[0].2, Some(100));
    let second = lines[1].2.expect("timed");
    // Playback has run for at most 100 ms of the first 2000: the second starts at 2100 ms at
    // the earliest (never when its audio was sent).
    assert!((2000..=2100).contains(&second), "{lines:?}");
}

#[test]
fn after_a_reconnect_speech_is_placed_by_where_the_new_sessions_audio_began() {
    let mut h = H::started(CallConfig::default(), "{}");
    for i in 0..50u64 {
        h.frame(0xFF, i * 20);
    }
    // The session drops at 1000 ms; the caller talks on (into the buffer) until 1200 ms.
    h.call
        .on_upstream_lost(1, UpstreamLoss::Dropped("reset".into()), h.at(1000));
    h.drain();
    for i in 50..60u64 {
        h.frame(0xFF, i * 20);
    }
    h.call.on_upstream_open(2, h.at(1200));
    let resent_ms = events(&h.drain())
        .into_iter()
        .find_map(|e| match e {
            CallEvent::UpstreamRestored { resent_ms, .. } => Some(resent_ms),
            _ => None,
        })
        .expect("restored");
    // The new session got the caller audio the old one never committed, then the gap: its
    // audio began `resent_ms` before the newest caller audio (at 1200 ms).
    on_session(
        &mut h,
        2,
        json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 600, "item_id": "c2"}),
        1300,
    );
    on_session(
        &mut h,
        2,
        json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "c2", "transcript": "Hello?"}),
        2500,
    );
    assert_eq!(
        timed_lines(&h),
        [("caller", "Hello?".into(), Some(1200 - resent_ms + 600))]
    );
    assert!(resent_ms > 200, "the tail was resent too: {resent_ms} ms");
}

/// A server event from the session of `generation` at `ms`.
fn on_session(h: &mut H, generation: u64, event: serde_json::Value, ms: u64) {
    let text = event.to_string();
    let ev = callbridge::realtime::ServerEvent::parse(&text).expect("event");
    h.call.on_realtime(generation, ev, h.at(ms));
    h.drain();
}

#[test]
fn keys_and_transcripts_without_a_speech_start_stay_untimed() {
    let mut h = H::started(CallConfig::default(), "{}");
    h.rt(
        json!({"type": "conversation.item.input_audio_transcription.completed", "item_id": "c9", "transcript": "Hi"}),
        500,
    );
    assert_eq!(timed_lines(&h), [("caller", "Hi".into(), None)]);
}
