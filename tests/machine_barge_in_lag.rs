//! Barge-in when the caller's playout lags the bridge's clock: audio is audible until the mark
//! after it has been echoed, whatever the clock says. The state machine with scripted times;
//! `tests/barge_in_lag.rs` has the same through the real server.

use callbridge::call::{CallConfig, Output};
use callbridge::realtime::ClientEvent;
use callbridge::twilio::Outbound;

mod support;
use support::call_harness::{marks, H};

/// A call whose `start` arrived and whose upstream opened at 0 ms.
fn call() -> H {
    let mut h = H::new(CallConfig::default());
    h.start("{}");
    h.connect(0);
    h
}

impl H {
    fn echo(&mut self, mark: &str, ms: u64) {
        let outs = self.mark(mark, ms);
        // An echo may produce events (e.g. the answer's playout done) but nothing on the wire.
        assert!(
            outs.iter().all(|o| matches!(o, Output::Event(_))),
            "{outs:?}"
        );
    }
    /// A whole answer: `deltas` deltas of 100 ms sent at `ms`, then `response.done`. Returns
    /// the marks, one per delta.
    fn answer(&mut self, resp: &str, item: &str, deltas: usize, ms: u64) -> Vec<String> {
        self.realtime(
            &format!(r#"{{"type":"response.created","response":{{"id":"{resp}"}}}}"#),
            ms,
        );
        let mut sent = Vec::new();
        for _ in 0..deltas {
            sent.extend(marks(&self.delta(resp, item, &[0x10u8; 800], ms)));
        }
        self.realtime(
            &format!(
                r#"{{"type":"response.done","response":{{"id":"{resp}","status":"completed"}}}}"#
            ),
            ms,
        );
        assert_eq!(sent.len(), deltas);
        sent
    }
    fn speech_started(&mut self, ms: u64) -> (bool, Vec<(String, u64)>) {
        let outs = self.realtime(
            r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":1,"item_id":"u1"}"#,
            ms,
        );
        let cleared = outs.contains(&Output::ToTwilio(Outbound::Clear));
        let truncates = outs
            .iter()
            .filter_map(|o| match o {
                Output::ToRealtime {
                    event:
                        ClientEvent::Truncate {
                            item_id,
                            audio_end_ms,
                        },
                    ..
                } => Some((item_id.clone(), *audio_end_ms)),
                _ => None,
            })
            .collect();
        (cleared, truncates)
    }
}

/// A 300 ms answer sent at t=1000; Twilio's playout starts 300 ms late (t=1300), so its first
/// mark echoes at 1400. The caller talks at 1350: the clock says the answer ended at 1300, but
/// no mark has been echoed, so the caller is still hearing it.
#[test]
fn playout_300ms_late_at_the_start_still_clears_and_truncates() {
    let mut h = call();
    let marks = h.answer("r1", "item_a", 3, 1000);
    let (cleared, truncates) = h.speech_started(1350);
    assert!(cleared, "the caller is still hearing the agent: clear");
    assert_eq!(truncates.len(), 1, "{truncates:?}");
    let (item, end_ms) = &truncates[0];
    assert_eq!(item, "item_a");
    // Playback cannot have passed the first unechoed mark (100 ms into the answer).
    assert!(*end_ms <= 100, "truncated at {end_ms} ms");
    // Twilio echoes the discarded marks after the clear: they move nothing.
    for m in &marks {
        h.echo(m, 1360);
    }
    assert!(!h.call.playback().audible(h.at(1400)));
}

/// A 1 s answer sent at once at t=1000, played on time until a 300 ms stall before its last
/// 100 ms: marks 1..9 echo at 1100..1900, the 10th would echo at 2300. The caller talks at 2150;
/// by the clock the answer ended at 2000.
#[test]
fn playout_stalling_300ms_before_the_end_still_clears_and_truncates() {
    let mut h = call();
    let marks = h.answer("r1", "item_a", 10, 1000);
    for (k, m) in marks.iter().take(9).enumerate() {
        h.echo(m, 1100 + 100 * k as u64);
    }
    let (cleared, truncates) = h.speech_started(2150);
    assert!(cleared, "the last 100 ms are still playing: clear");
    assert_eq!(truncates.len(), 1, "{truncates:?}");
    let end_ms = truncates[0].1;
    assert!(
        (900..=1000).contains(&end_ms),
        "between the last echoed mark and the audio sent: {end_ms} ms"
    );
}

/// The control: playout on time, the last mark echoed, the caller talks after the answer.
#[test]
fn speech_after_the_answer_was_heard_is_not_a_barge_in() {
    let mut h = call();
    let marks = h.answer("r1", "item_a", 3, 1000);
    for (k, m) in marks.iter().enumerate() {
        h.echo(m, 1100 + 100 * k as u64);
    }
    let (cleared, truncates) = h.speech_started(1350);
    assert!(!cleared && truncates.is_empty());
}
