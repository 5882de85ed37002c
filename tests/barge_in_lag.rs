//! Barge-in when the caller's playout lags the bridge's clock, through the real server with a
//! simulated caller that plays late (`tests/machine_barge_in_lag.rs`: the same on the state
//! machine, with scripted times).

use std::time::Duration;

use callbridge::caller::{self, CallerOptions};
use callbridge::sim::SimConfig;

mod support;
use support::bridge;
use support::caller::{hear_agent, pause, say};

/// Through the real server: the simulator sends a 0.8 s answer as one delta at once; the
/// simulated caller's playout starts 1.5 s after audio arrives and it talks over the agent
/// once it has heard 200 ms. By the bridge's clock the answer ended ~0.7 s before the caller
/// spoke; the bridge must still clear and truncate. With `barge_in = "server"`: the 600 ms the
/// caller says would be a backchannel (resumed) to the bridge's own confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_plays_late_is_still_cleared_through_the_server() {
    let (sim, server, _) = bridge::with_simulator(
        SimConfig {
            response_audio_ms: 800,
            delta_ms: vec![800],
            pace: 0.0,
            ..SimConfig::default()
        },
        &[("CALLBRIDGE_BARGE_IN", "server")],
    )
    .await;
    let report = caller::run(CallerOptions {
        bridge: server.url(""),
        playout_delay: Duration::from_millis(1500),
        script: vec![
            pause(300),
            say(1000),
            hear_agent(200, 15),
            say(600),
            pause(300),
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
    bridge::stop_both(server, sim).await;
}
