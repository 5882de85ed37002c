//! The once-per-turn events the live console is fed from: labels from `start`, the agent's
//! audio starting, the caller having heard all of it (`PlayoutDone`), and no `PlayoutDone`
//! after a barge-in cut the answer off.

use callbridge::call::{CallConfig, CallEvent, Output};

mod support;
use support::call_harness::{events, marks, H, SID};

/// A softphone call: `start` labelled at 0 ms, the upstream open at once.
fn softphone_call() -> H {
    let mut h = H::new(CallConfig::default());
    h.start(r#"{"From":"browser:Ada","profile":"support","direction":"softphone"}"#);
    h.connect(0);
    h
}

/// `ms_audio` of the model's μ-law for `item` of the first response.
fn speak(h: &mut H, item: &str, ms_audio: usize, at: u64) -> Vec<Output> {
    h.delta("resp_1", item, &vec![0x55u8; ms_audio * 8], at)
}

/// The second response, created at `created_ms`, starts speaking at `delta_ms`: its first
/// delta is reported as agent audio, and nothing else.
fn second_answer_speaks(h: &mut H, created_ms: u64, delta_ms: u64) {
    h.created("resp_2", created_ms);
    let out = h.delta("resp_2", "item_2", &[0x55u8; 800], delta_ms);
    assert!(
        matches!(events(&out)[..], [CallEvent::AgentAudio { .. }]),
        "{:?}",
        events(&out)
    );
}

#[test]
fn start_labels_the_call_with_profile_and_direction() {
    let mut h = H::new(CallConfig::default());
    let evs = h.twilio(
        &format!(
            r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"streamSid":"{SID}","callSid":"CA1","customParameters":{{"profile":"sales","direction":"softphone"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
        ),
        0,
    );
    assert!(matches!(evs[0], Output::Event(CallEvent::Started { .. })));
    assert_eq!(
        evs[1],
        Output::Event(CallEvent::Labels {
            profile: Some("sales".into()),
            direction: Some("softphone".into()),
        })
    );
}

#[test]
fn a_turn_reports_its_latency_once_and_its_end_when_the_caller_heard_it_all() {
    let mut h = softphone_call();
    h.realtime(
        r#"{"type":"input_audio_buffer.speech_stopped","audio_end_ms":1200}"#,
        1000,
    );
    h.created("resp_1", 1100);
    let first = speak(&mut h, "item_1", 200, 1340);
    assert!(
        matches!(
            events(&first)[..],
            [CallEvent::AgentAudio {
                speech_stopped_at: Some(_),
                ..
            }]
        ),
        "{:?}",
        events(&first)
    );
    let m1 = marks(&first);
    // More audio of the same turn: no second start.
    let second = speak(&mut h, "item_1", 200, 1360);
    assert!(events(&second).is_empty(), "{:?}", events(&second));
    let m2 = marks(&second);
    // The first mark echoes while the rest still plays: still speaking.
    assert!(events(&h.mark(&m1[0], 1540)).is_empty());
    // The audio is complete; its last mark echoes: the caller heard the whole turn.
    let done = h.realtime(
        r#"{"type":"response.output_audio.done","response_id":"resp_1","item_id":"item_1"}"#,
        1400,
    );
    assert!(events(&done).is_empty());
    let mut all = m2;
    all.extend(marks(&done));
    let last = all.last().expect("a mark").clone();
    assert_eq!(events(&h.mark(&last, 1740)), [CallEvent::PlayoutDone]);

    // The next answer speaks again (and will end again).
    second_answer_speaks(&mut h, 2000, 2000);
}

#[test]
fn a_barged_in_turn_never_reports_playout_done() {
    let mut h = softphone_call();
    h.created("resp_1", 100);
    let out = speak(&mut h, "item_1", 1000, 100);
    let m = marks(&out);
    let barge = h.realtime(
        r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":500}"#,
        400,
    );
    assert!(events(&barge)
        .iter()
        .any(|e| matches!(e, CallEvent::BargeIn { .. })));
    // The discarded mark's echo after the clear says nothing about playout.
    let evs = events(&h.mark(&m[0], 420));
    assert!(!evs.contains(&CallEvent::PlayoutDone), "{evs:?}");
    // The next turn starts speaking again.
    h.realtime(
        r#"{"type":"input_audio_buffer.speech_stopped","audio_end_ms":900}"#,
        900,
    );
    second_answer_speaks(&mut h, 950, 1150);
}
