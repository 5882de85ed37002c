//! Barge-in when the caller's playout lags the bridge's clock: audio is audible until the mark
//! after it has been echoed, whatever the clock says. Once as a state machine with scripted
//! times, once through the real server with a simulated caller that plays late.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use callbridge::call::{Call, CallConfig, Output};
use callbridge::caller::{self, CallerOptions, Step};
use callbridge::config::{Config, Overrides};
use callbridge::metrics::Metrics;
use callbridge::realtime::{ClientEvent, ServerEvent};
use callbridge::sim::{SimConfig, Simulator};
use callbridge::twilio::{Inbound, Outbound};

const SID: &str = "MZ0001";

struct Harness {
    call: Call,
    t0: Instant,
}

impl Harness {
    fn new() -> Harness {
        let t0 = Instant::now();
        let mut h = Harness {
            call: Call::new(Arc::new(CallConfig::default()), t0),
            t0,
        };
        h.twilio(&format!(
            r#"{{"event":"start","streamSid":"{SID}","start":{{"streamSid":"{SID}","callSid":"CA1","mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
        ), 0);
        h.call.on_upstream_open(1, h.t0);
        h.drain();
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
    fn echo(&mut self, mark: &str, ms: u64) {
        let outs = self.twilio(
            &format!(r#"{{"event":"mark","streamSid":"{SID}","mark":{{"name":"{mark}"}}}}"#),
            ms,
        );
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
        let mut marks = Vec::new();
        for _ in 0..deltas {
            let outs = self.realtime(
                &format!(
                    r#"{{"type":"response.output_audio.delta","response_id":"{resp}","item_id":"{item}","delta":"{}"}}"#,
                    B64.encode([0x10u8; 800])
                ),
                ms,
            );
            marks.extend(outs.iter().filter_map(|o| match o {
                Output::ToTwilio(Outbound::Mark(m)) => Some(m.clone()),
                _ => None,
            }));
        }
        self.realtime(
            &format!(
                r#"{{"type":"response.done","response":{{"id":"{resp}","status":"completed"}}}}"#
            ),
            ms,
        );
        assert_eq!(marks.len(), deltas);
        marks
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
    let mut h = Harness::new();
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
    let mut h = Harness::new();
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
    let mut h = Harness::new();
    let marks = h.answer("r1", "item_a", 3, 1000);
    for (k, m) in marks.iter().enumerate() {
        h.echo(m, 1100 + 100 * k as u64);
    }
    let (cleared, truncates) = h.speech_started(1350);
    assert!(!cleared && truncates.is_empty());
}

/// Through the real server: the simulator sends a 0.8 s answer as one delta at once; the
/// simulated caller's playout starts 1.5 s after audio arrives and it talks over the agent
/// once it has heard 200 ms. By the bridge's clock the answer ended ~0.7 s before the caller
/// spoke; the bridge must still clear and truncate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_plays_late_is_still_cleared_through_the_server() {
    let sim = Simulator::start(
        "127.0.0.1:0",
        SimConfig {
            response_audio_ms: 800,
            delta_ms: vec![800],
            pace: 0.0,
            ..SimConfig::default()
        },
    )
    .await
    .expect("simulator starts");
    let url = sim.url();
    let env = move |k: &str| match k {
        "REALTIME_URL" => Some(url.clone()),
        "CALLBRIDGE_LISTEN" => Some("127.0.0.1:0".to_owned()),
        _ => None,
    };
    let cfg = Config::load(None, &env, &Overrides::default()).expect("config");
    let server = callbridge::server::spawn(cfg, Arc::new(Metrics::new().expect("metrics")))
        .await
        .expect("bridge starts");
    let report = caller::run(CallerOptions {
        bridge: server.url(""),
        playout_delay: Duration::from_millis(1500),
        script: vec![
            Step::Silence(Duration::from_millis(300)),
            Step::Say(caller::synthetic_speech(1000)),
            Step::WaitAgentAudio {
                heard: Duration::from_millis(200),
                timeout: Duration::from_secs(15),
            },
            Step::Say(caller::synthetic_speech(600)),
            Step::Silence(Duration::from_millis(300)),
        ],
        tail: Duration::from_millis(200),
        ..CallerOptions::default()
    })
    .await
    .expect("call runs");
    assert!(
        report.protocol_violations.is_empty(),
        "{:?}",
        report.protocol_violations
    );
    assert!(
        !report.clears.is_empty(),
        "the caller was still hearing the agent: the bridge must clear"
    );
    let clear = &report.clears[0];
    assert!(
        clear.heard_in_stretch_ms < 800.0 && clear.discarded_bytes > 0,
        "the clear cut the answer short: {clear:?}"
    );
    let sessions = sim.sessions();
    assert_eq!(sessions.len(), 1);
    let truncates = &sessions[0].truncates;
    assert_eq!(truncates.len(), 1, "{truncates:?}");
    assert!(
        truncates[0].audio_end_ms <= 800,
        "never past the audio sent: {:?}",
        truncates[0]
    );
    server.stop(Duration::from_secs(1)).await;
    sim.shutdown().await;
}
