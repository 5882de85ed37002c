//! The other ways a call goes: the agent speaks first, the model's server errs or vanishes,
//! the caller hangs up while the agent talks, the server drains. Real server, simulator and
//! simulated caller on 127.0.0.1.

use std::time::{Duration, Instant};

use callbridge::caller::{self, CallerOptions};
use callbridge::server::Running;
use callbridge::sim::{ClosedBy, Fault, SimConfig, Simulator};

mod support;
use support::caller::{agent_done, hear_agent, pause, place_call, say};
use support::realtime_ws::real_time;
use support::{bridge, eventually, media};

/// Waits (bounded) until the metrics show a finished call with this outcome; fails if not.
async fn assert_outcome(server: &Running, outcome: &str) {
    let needle = format!("callbridge_calls_total{{outcome=\"{outcome}\"}} 1");
    bridge::assert_metric(server, &[&needle]).await;
}

/// A simulator whose answers are `audio_ms` long, and a bridge that greets the caller.
async fn greeting_bridge(audio_ms: u32) -> (Simulator, Running) {
    let (sim, server, _) = bridge::with_simulator(
        SimConfig {
            response_audio_ms: audio_ms,
            ..Default::default()
        },
        &[("CALLBRIDGE_GREETING", "Greet the caller warmly.")],
    )
    .await;
    (sim, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_makes_the_agent_speak_first() {
    let (sim, server) = greeting_bridge(1500).await;
    let report = place_call(server.url(""), vec![agent_done(500, 8)], 500).await;
    assert_eq!(
        report.bytes_played,
        1500 * 8,
        "the whole greeting was heard: {report:?}"
    );
    let s = &sim.sessions()[0];
    let types = s.received_types();
    let create = types
        .iter()
        .position(|t| *t == "response.create")
        .expect("greeting sent");
    assert_eq!(
        types[0], "session.update",
        "configured before anything else"
    );
    assert!(
        create < 3,
        "greeting right after the session update: {types:?}"
    );
    assert_eq!(
        s.received[create]["response"]["instructions"], "Greet the caller warmly.",
        "{:?}",
        s.received[create]
    );
    bridge::stop_both(server, sim).await;
}

/// The model's server fails mid-answer in the given way and re-dialling is off: the bridge must
/// end the Twilio stream
/// quickly (so Twilio plays the apology after </Connect>) and log the given outcome.
async fn upstream_fault_ends_the_stream(fault: Fault, outcome: &str) {
    // With re-dialling off (tests/reconnect.rs covers it on): the old behaviour, kept
    // for operators who set upstream_retry_s = 0.
    let (sim, server, _) = bridge::with_simulator(
        SimConfig {
            faults: vec![fault],
            ..Default::default()
        },
        &[("CALLBRIDGE_UPSTREAM_RETRY_S", "0")],
    )
    .await;
    let started = Instant::now();
    let report = place_call(server.url(""), vec![say(1000), pause(10000)], 500).await;
    assert!(
        report.closed_by_bridge,
        "the bridge ended the Twilio stream"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "not left in dead air: {:?}",
        started.elapsed()
    );
    assert!(
        report.twiml.contains("<Say>Sorry"),
        "Twilio has an apology to play after </Connect>"
    );
    assert_outcome(&server, outcome).await;
    bridge::stop_both(server, sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_mid_answer_ends_the_stream_so_twilio_apologises() {
    upstream_fault_ends_the_stream(Fault::CloseAfterResponses(0), "upstream_closed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dropping_the_connection_ends_the_stream() {
    upstream_fault_ends_the_stream(Fault::DropAfterResponses(0), "upstream_failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_error_event_does_not_end_the_call() {
    let (sim, server, _) = bridge::with_simulator(
        SimConfig {
            response_audio_ms: 800,
            faults: vec![Fault::ErrorAfterResponses(1)],
            ..Default::default()
        },
        &[],
    )
    .await;
    let turn = [say(800), agent_done(400, 6)];
    let report = place_call(server.url(""), [turn.clone(), turn].concat(), 500).await;
    assert!(!report.closed_by_bridge);
    assert_eq!(
        report.response_latencies.len(),
        2,
        "answered after the error too: {report:?}"
    );
    assert_eq!(sim.sessions()[0].errors_sent, 1);
    assert!(bridge::scrape(&server)
        .await
        .contains("callbridge_upstream_errors_total{code=\"server_error\"} 1"));
    bridge::stop_both(server, sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hanging_up_while_the_agent_talks_closes_the_upstream() {
    let (sim, server, _) = bridge::with_simulator(real_time(5000), &[]).await;
    let report = caller::run(CallerOptions {
        bridge: server.url(""),
        script: vec![say(800), hear_agent(500, 5)],
        tail: Duration::ZERO,
        send_stop: true,
        ..Default::default()
    })
    .await
    .expect("call");
    assert!(report.bytes_played > 0);
    assert_outcome(&server, "caller_hung_up").await;
    // The simulator saw the bridge close its session.
    eventually(Duration::from_secs(2), async || {
        sim.sessions()[0].closed_by.is_some()
    })
    .await;
    assert_eq!(sim.sessions()[0].closed_by, Some(ClosedBy::Client));
    bridge::stop_both(server, sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_key_fails_the_call_fast() {
    let (sim, server, _) = bridge::with_simulator(
        SimConfig {
            require_api_key: Some("right".into()),
            ..Default::default()
        },
        &[("OPENAI_API_KEY", "wrong")],
    )
    .await;
    let report = place_call(server.url(""), vec![say(2000)], 500).await;
    assert!(report.closed_by_bridge);
    // No retry can fix a refused key: the call ends at once, with its own outcome.
    assert_outcome(&server, "upstream_refused").await;
    bridge::stop_both(server, sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_ends_running_calls() {
    let (sim, server, _) = bridge::with_simulator(SimConfig::default(), &[]).await;
    let url = server.url("");
    let call = tokio::spawn(caller::run(CallerOptions {
        bridge: url,
        script: vec![pause(20000)],
        ..Default::default()
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    server.stop(Duration::from_millis(300)).await;
    let report = call.await.expect("join").expect("call");
    assert!(report.closed_by_bridge, "the call was ended by the bridge");
    let took = stopping.elapsed();
    // After the drain period the call says its goodbye (the simulator's ~1-2 s answer; no
    // Twilio REST credentials here, so the stream is closed once it was heard), bounded by
    // drain_goodbye_timeout_ms (8 s).
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(12),
        "calls get the drain period and a goodbye, then end: {took:?}"
    );
    sim.shutdown().await;
}

/// The agent's greeting can be produced before Twilio's `start` names the stream: the bridge
/// holds those messages and, once `start` arrives, sends every one of them, in order, with the
/// stream's SID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greeting_made_before_start_is_sent_whole_once_start_names_the_stream() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (sim, server) = greeting_bridge(400).await;
    let mut ws = media::connect(format!("ws://{}/media", server.addr)).await;
    // The whole greeting leaves the simulator before the stream has started.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.sessions().first().map_or(0, |s| s.sent_audio_bytes) < 400 * 8 {
        assert!(Instant::now() < deadline, "the greeting was never produced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let early = tokio::time::timeout(Duration::from_millis(100), ws.next()).await;
    assert!(early.is_err(), "nothing is sent before start: {early:?}");
    let sid = "MZheld";
    ws.send(media::start("AC1", sid, "CAheld", serde_json::json!({})))
        .await
        .expect("send");
    let mut audio = 0;
    let mut kinds = Vec::new();
    while audio < 400 * 8 {
        let msg = tokio::time::timeout(Duration::from_secs(3), ws.next())
            .await
            .expect("the held greeting arrives")
            .expect("socket open")
            .expect("message");
        let Message::Text(t) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
        assert_eq!(v["streamSid"], sid, "{v}");
        let kind = v["event"].as_str().unwrap_or_default().to_owned();
        if kind == "media" {
            let payload = v["media"]["payload"].as_str().unwrap_or_default();
            audio += base64::Engine::decode(&base64::engine::general_purpose::STANDARD, payload)
                .expect("base64")
                .len();
        }
        kinds.push(kind);
    }
    assert_eq!(audio, 400 * 8, "every held frame, once");
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("media"),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "mark"), "{kinds:?}");
    bridge::stop_both(server, sim).await;
}
