//! Full calls through the real server: a simulated Twilio caller on one side, the in-repo
//! Realtime simulator on the other, everything on 127.0.0.1, in real time.

use callbridge::sim::{SimConfig, SimDialect};

mod support;
use support::bridge;
use support::caller::{barge_in_script, place_call};

/// TwiML → WS → start → speech → the simulator's VAD fires → the response's audio reaches the
/// caller in 160-byte frames → the caller talks over it → `clear` arrives and the truncate
/// reaching the simulator says what the caller actually heard.
async fn full_call(mode: &str, dialect: &str) {
    let (sim, server, _) = bridge::with_simulator(
        SimConfig {
            response_audio_ms: 4000,
            delta_ms: vec![37, 100, 250],
            pace: 4.0,
            require_api_key: Some("sk-test-not-a-real-key".into()),
            ..SimConfig::default()
        },
        &[
            ("OPENAI_API_KEY", "sk-test-not-a-real-key"),
            ("CALLBRIDGE_AUDIO_MODE", mode),
            ("CALLBRIDGE_DIALECT", dialect),
        ],
    )
    .await;
    // The agent talks for ~1.5 s, then the caller talks over it.
    let script = barge_in_script(1200, (1500, 10), 900, (700, 15));
    let report = place_call(server.url(""), script, 300).await;

    let label = format!("{mode}/{dialect}");
    assert!(
        report.stream_url.ends_with("/media"),
        "{label}: {}",
        report.stream_url
    );
    assert!(
        report.twiml.contains("<Parameter name=\"CallSid\""),
        "{label}"
    );
    assert!(
        report.protocol_violations.is_empty(),
        "{label}: {:?}",
        report.protocol_violations
    );
    assert!(report.media_received > 50, "{label}: agent audio arrived");
    assert_eq!(report.odd_frames, 0, "{label}: every frame is 160 bytes");
    assert!(
        !report.closed_by_bridge,
        "{label}: the bridge kept the call up"
    );
    assert_eq!(
        report.clears.len(),
        1,
        "{label}: one barge-in, one clear: {:?}",
        report.clears
    );

    let sessions = sim.sessions();
    assert_eq!(sessions.len(), 1, "{label}");
    let s = &sessions[0];
    assert_eq!(
        s.dialect,
        if dialect == "beta" {
            SimDialect::Beta
        } else {
            SimDialect::Ga
        },
        "{label}"
    );
    assert!(
        s.headers.iter().all(|(_, v)| !v.contains("sk-test")),
        "{label}: the simulator's log redacts the key"
    );
    assert_eq!(s.truncates.len(), 1, "{label}: {:?}", s.truncates);
    let heard = report.clears[0].heard_in_stretch_ms;
    let truncated = s.truncates[0].audio_end_ms as f64;
    eprintln!(
        "{label}: caller heard {heard:.1} ms, truncate audio_end_ms {truncated}, latencies {:?}",
        report.response_latencies
    );
    assert!(
        (truncated - heard).abs() <= 20.0,
        "{label}: truncated at {truncated} ms, caller heard {heard} ms"
    );
    // Nothing the caller said was lost: every byte reached the model.
    let per_frame = if mode == "pcm" { 960 } else { 160 };
    let expected = report.frames_sent as usize * per_frame;
    let got = s.appended_audio_bytes;
    assert!(
        got <= expected && got + 2 * per_frame >= expected,
        "{label}: model got {got} bytes of caller audio, caller sent {expected}"
    );
    // The answer after the barge-in was heard in full.
    assert!(
        report.response_latencies.len() >= 2,
        "{label}: the agent answered both turns: {:?}",
        report.response_latencies
    );
    bridge::stop_both(server, sim).await;
}

/// One test per audio mode and API dialect, each a [`full_call`].
macro_rules! full_call_tests {
    ($($name:ident: $mode:literal, $dialect:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            full_call($mode, $dialect).await;
        }
    )*};
}

full_call_tests! {
    full_call_pcmu_ga: "pcmu", "ga";
    full_call_pcm_ga: "pcm", "ga";
    full_call_pcmu_beta: "pcmu", "beta";
    full_call_pcm_beta: "pcm", "beta";
}
