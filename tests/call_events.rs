//! The once-per-turn events the live console is fed from: labels from `start`, the agent's
//! audio starting, the caller having heard all of it (`PlayoutDone`), and no `PlayoutDone`
//! after a barge-in cut the answer off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use callbridge::call::{Call, CallConfig, CallEvent, Output};
use callbridge::realtime::ServerEvent;
use callbridge::twilio::{Inbound, Outbound};

const SID: &str = "MZ0001";

struct H {
    call: Call,
    t0: Instant,
}

impl H {
    fn new() -> H {
        let t0 = Instant::now();
        let mut h = H {
            call: Call::new(Arc::new(CallConfig::default()), t0),
            t0,
        };
        let start = format!(
            r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"accountSid":"AC1","streamSid":"{SID}","callSid":"CA1","tracks":["inbound"],"customParameters":{{"From":"browser:Ada","profile":"support","direction":"softphone"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
        );
        h.twilio(&start, 0);
        h.call.on_upstream_open(1, t0);
        h
    }
    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }
    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.call.poll_output()).collect()
    }
    fn twilio(&mut self, json: &str, ms: u64) -> Vec<Output> {
        let msg = Inbound::parse(json).expect("test message parses");
        self.call.on_twilio(msg, self.at(ms));
        self.drain()
    }
    fn realtime(&mut self, json: &str, ms: u64) -> Vec<Output> {
        let ev = ServerEvent::parse(json).expect("test event parses");
        self.call.on_realtime(1, ev, self.at(ms));
        self.drain()
    }
    fn delta(&mut self, item: &str, ms_audio: usize, at: u64) -> Vec<Output> {
        let bytes = vec![0x55u8; ms_audio * 8];
        self.realtime(
            &format!(
                r#"{{"type":"response.output_audio.delta","response_id":"resp_1","item_id":"{item}","output_index":0,"content_index":0,"delta":"{}"}}"#,
                B64.encode(bytes)
            ),
            at,
        )
    }
    fn echo(&mut self, name: &str, at: u64) -> Vec<Output> {
        self.twilio(
            &format!(
                r#"{{"event":"mark","sequenceNumber":"5","streamSid":"{SID}","mark":{{"name":"{name}"}}}}"#
            ),
            at,
        )
    }
}

fn events(outs: &[Output]) -> Vec<CallEvent> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn marks(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Output::ToTwilio(Outbound::Mark(m)) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn start_labels_the_call_with_profile_and_direction() {
    let t0 = Instant::now();
    let mut call = Call::new(Arc::new(CallConfig::default()), t0);
    let start = format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"streamSid":"{SID}","callSid":"CA1","customParameters":{{"profile":"sales","direction":"softphone"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    );
    call.on_twilio(Inbound::parse(&start).expect("start"), t0);
    let evs: Vec<_> = std::iter::from_fn(|| call.poll_output()).collect();
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
    let mut h = H::new();
    h.drain();
    h.realtime(
        r#"{"type":"input_audio_buffer.speech_stopped","audio_end_ms":1200}"#,
        1000,
    );
    h.realtime(
        r#"{"type":"response.created","response":{"id":"resp_1","status":"in_progress"}}"#,
        1100,
    );
    let first = h.delta("item_1", 200, 1340);
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
    let second = h.delta("item_1", 200, 1360);
    assert!(events(&second).is_empty(), "{:?}", events(&second));
    let m2 = marks(&second);
    // The first mark echoes while the rest still plays: still speaking.
    assert!(events(&h.echo(&m1[0], 1540)).is_empty());
    // The audio is complete; its last mark echoes: the caller heard the whole turn.
    let done = h.realtime(
        r#"{"type":"response.output_audio.done","response_id":"resp_1","item_id":"item_1"}"#,
        1400,
    );
    assert!(events(&done).is_empty());
    let mut all = m2;
    all.extend(marks(&done));
    let last = all.last().expect("a mark").clone();
    assert_eq!(events(&h.echo(&last, 1740)), [CallEvent::PlayoutDone]);

    // The next answer speaks again (and will end again).
    h.realtime(
        r#"{"type":"response.created","response":{"id":"resp_2","status":"in_progress"}}"#,
        2000,
    );
    let out = h.realtime(
        &format!(
            r#"{{"type":"response.output_audio.delta","response_id":"resp_2","item_id":"item_2","output_index":0,"content_index":0,"delta":"{}"}}"#,
            B64.encode(vec![0x55u8; 800])
        ),
        2000,
    );
    assert!(
        matches!(events(&out)[..], [CallEvent::AgentAudio { .. }]),
        "{:?}",
        events(&out)
    );
}

#[test]
fn a_barged_in_turn_never_reports_playout_done() {
    let mut h = H::new();
    h.drain();
    h.realtime(
        r#"{"type":"response.created","response":{"id":"resp_1","status":"in_progress"}}"#,
        100,
    );
    let out = h.delta("item_1", 1000, 100);
    let m = marks(&out);
    let barge = h.realtime(
        r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":500}"#,
        400,
    );
    assert!(events(&barge)
        .iter()
        .any(|e| matches!(e, CallEvent::BargeIn { .. })));
    // The discarded mark's echo after the clear says nothing about playout.
    let evs = events(&h.echo(&m[0], 420));
    assert!(!evs.contains(&CallEvent::PlayoutDone), "{evs:?}");
    // The next turn starts speaking again.
    h.realtime(
        r#"{"type":"input_audio_buffer.speech_stopped","audio_end_ms":900}"#,
        900,
    );
    h.realtime(
        r#"{"type":"response.created","response":{"id":"resp_2","status":"in_progress"}}"#,
        950,
    );
    let out = h.realtime(
        &format!(
            r#"{{"type":"response.output_audio.delta","response_id":"resp_2","item_id":"item_2","output_index":0,"content_index":0,"delta":"{}"}}"#,
            B64.encode(vec![0x55u8; 800])
        ),
        1150,
    );
    assert!(
        matches!(events(&out)[..], [CallEvent::AgentAudio { .. }]),
        "{:?}",
        events(&out)
    );
}
