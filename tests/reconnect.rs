//! Calls that survive their upstream: a dropped Realtime socket is replaced by a new session
//! that carries on the conversation, and a session is rotated before its time limit. Real
//! server, simulator (with its fault controls) and simulated caller on 127.0.0.1.
//!
//! Faults are injected when the simulator shows the moment has come (the caller is speaking,
//! the agent is answering), not after a sleep; assertions are on what each session received.

use std::time::{Duration, Instant};

use callbridge::caller::{self, CallerOptions, CallerReport, Step};
use callbridge::server::Running;
use callbridge::sim::faults::SESSION_EXPIRED_REASON;
use callbridge::sim::{ClosedBy, SessionFault, SessionLog, SimConfig, Simulator};
use serde_json::Value;

mod support;
use support::caller::{agent_done, pause, say};
use support::realtime_ws::real_time;
use support::{bridge, simulator};

/// A socket that vanishes (FIN or RST) is seen by whichever comes first: the bridge's next read
/// (`dropped`) or its next caller-audio write (`write_failed`). Both are the same fault.
const DROP_REASONS: [&str; 2] = [
    r#"callbridge_upstream_reconnects_total{reason="dropped"} 1"#,
    r#"callbridge_upstream_reconnects_total{reason="write_failed"} 1"#,
];

/// Waits (bounded) until session `i` satisfies `ok`.
async fn wait_session(sim: &Simulator, i: usize, what: &str, ok: impl Fn(&SessionLog) -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if sim.session(i).is_some_and(|s| ok(&s)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("session {i}: {what} did not happen");
}

/// Waits until every session has ended (so its log is complete).
async fn wait_all_closed(sim: &Simulator) {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if sim.sessions().iter().all(|s| s.closed_by.is_some()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("sessions still open: {:?}", sim.sessions().len());
}

fn sent(s: &SessionLog, ty: &str) -> bool {
    s.sent_types().contains(&ty)
}

/// The speech lengths (s) the simulator transcribed, from "caller spoke for N s".
fn caller_turns(s: &SessionLog) -> Vec<f64> {
    s.sent_of("conversation.item.input_audio_transcription.completed")
        .filter_map(|e| e["transcript"].as_str())
        .filter_map(|t| t.strip_prefix("caller spoke for "))
        .filter_map(|t| t.trim_end_matches(" s").parse().ok())
        .collect()
}

fn text_of(item: &Value) -> (&str, &str, &str) {
    (
        item["role"].as_str().unwrap_or("-"),
        item["content"][0]["type"].as_str().unwrap_or("-"),
        item["content"][0]["text"].as_str().unwrap_or("-"),
    )
}

fn run_caller(server: &Running, script: Vec<Step>) -> tokio::task::JoinHandle<CallerReport> {
    let opts = CallerOptions {
        bridge: server.url(""),
        script,
        ..Default::default()
    };
    tokio::spawn(async move { caller::run(opts).await.expect("call runs") })
}

/// A bridge on a simulator whose answers are `answer_ms` of audio (see
/// [`bridge::with_answers_of`]), and a call running `script` on it.
async fn call_on_answers_of(
    answer_ms: u32,
    env: &[(&str, &str)],
    script: Vec<Step>,
) -> (Simulator, Running, tokio::task::JoinHandle<CallerReport>) {
    let (sim, server, _) = bridge::with_answers_of(answer_ms, env).await;
    let call = run_caller(&server, script);
    (sim, server, call)
}

/// The report without its audio buffers (for assertion messages).
fn summary(r: &CallerReport) -> String {
    format!(
        "frames_sent {} media_received {} bytes_played {} latencies {:?} clears {} closed_by_bridge {} duration {:?}",
        r.frames_sent,
        r.media_received,
        r.bytes_played,
        r.response_latencies,
        r.clears.len(),
        r.closed_by_bridge,
        r.duration
    )
}

/// A bridge with an upstream retry window of `retry_s` seconds and a caller who says a little,
/// then listens for 20 s; once the first session is configured, `arrange` decides how the
/// re-dials fare and the session drops. The call's report and how long it ran.
async fn drop_once_configured(
    retry_s: &str,
    arrange: impl FnOnce(&Simulator),
) -> (Simulator, Running, CallerReport, Duration) {
    let (sim, server, _) = bridge::with_simulator(
        SimConfig::default(),
        &[("CALLBRIDGE_UPSTREAM_RETRY_S", retry_s)],
    )
    .await;
    let started = Instant::now();
    let call = run_caller(&server, vec![say(500), pause(20000)]);
    wait_session(&sim, 0, "configured", |s| {
        s.received_types().contains(&"session.update")
    })
    .await;
    arrange(&sim);
    assert!(sim.inject(0, SessionFault::DropFin));
    let report = call.await.expect("join");
    (sim, server, report, started.elapsed())
}

/// The metrics line of one call ended with `outcome`.
fn calls_total(outcome: &str) -> String {
    format!(r#"callbridge_calls_total{{outcome="{outcome}"}} 1"#)
}

/// The metrics line of one upstream re-dial for `reason`.
fn reconnects_total(reason: &str) -> String {
    format!(r#"callbridge_upstream_reconnects_total{{reason="{reason}"}} 1"#)
}

/// Injects `fault` into session 0 once it satisfies `ready` (`what`); the call must go on to
/// its end on a new session. The caller's report.
async fn fault_survived(
    sim: &Simulator,
    call: tokio::task::JoinHandle<CallerReport>,
    fault: SessionFault,
    what: &str,
    ready: impl Fn(&SessionLog) -> bool,
) -> CallerReport {
    wait_session(sim, 0, what, ready).await;
    assert!(sim.inject(0, fault));
    let report = call.await.expect("join");
    assert!(
        !report.closed_by_bridge,
        "the call went on: {}",
        summary(&report)
    );
    report
}

/// Waits until the metrics page holds one of `needles`, then stops the bridge and the simulator.
async fn stop_once_counted(server: Running, sim: Simulator, needles: &[&str]) {
    bridge::assert_metric(&server, needles).await;
    bridge::stop_both(server, sim).await;
}

fn answer() -> Step {
    agent_done(500, 15)
}

/// `n` turns of the caller speaking for 1 s and the agent answering, 1.5 s of quiet between.
fn turns(n: usize) -> Vec<Step> {
    let mut script = vec![say(1000), answer()];
    for _ in 1..n {
        script.extend([pause(1500), say(1000), answer()]);
    }
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_mid_sentence_loses_no_part_of_the_sentence() {
    let (sim, server, call) =
        call_on_answers_of(800, &[], vec![pause(300), say(2500), answer()]).await;
    // The caller is mid-sentence once the server's VAD has heard it start.
    let report = fault_survived(&sim, call, SessionFault::DropFin, "speech_started", |s| {
        sent(s, "input_audio_buffer.speech_started")
    })
    .await;
    assert_eq!(sim.session_count(), 2);
    let first = sim.session(0).expect("session 0");
    assert!(
        caller_turns(&first).is_empty(),
        "the first session never finished the turn"
    );
    let second = sim.session(1).expect("session 1");
    assert_eq!(second.received_types()[0], "session.update");
    let turns = caller_turns(&second);
    assert_eq!(turns.len(), 1, "{turns:?}");
    assert!(
        turns[0] >= 2.4,
        "the new session heard the whole 2.5 s sentence, not just its end: {turns:?}"
    );
    assert!(
        !report.response_latencies.is_empty() && report.bytes_played >= 800 * 8,
        "and answered it: {}",
        summary(&report)
    );
    stop_once_counted(server, sim, &DROP_REASONS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conversation_is_replayed_into_the_new_session() {
    let (sim, server, call) = call_on_answers_of(
        800,
        &[("CALLBRIDGE_GREETING", "Greet the caller warmly.")],
        [vec![answer()], turns(2)].concat(), // the greeting, then two turns
    )
    .await;
    // Greeting and one full turn done, both transcribed: then a reset while all is quiet.
    wait_session(&sim, 0, "two answers", |s| s.responses_completed >= 2).await;
    let report = fault_survived(
        &sim,
        call,
        SessionFault::DropRst,
        "caller transcript",
        |s| !caller_turns(s).is_empty(),
    )
    .await;
    assert_eq!(
        report.response_latencies.len(),
        2,
        "both turns answered: {}",
        summary(&report)
    );
    let replies = SimConfig::default().reply_texts;
    let second = sim.session(1).expect("session 1");
    let items: Vec<_> = second.items_created().into_iter().map(text_of).collect();
    assert_eq!(
        items,
        [
            ("assistant", "output_text", replies[0].as_str()),
            ("user", "input_text", "caller spoke for 1.0 s"),
            ("assistant", "output_text", replies[1].as_str()),
            (
                "system",
                "input_text",
                callbridge::call::conversation::CONTINUATION_NOTE
            ),
        ],
        "the conversation as text, then the note"
    );
    let types = second.received_types();
    assert_eq!(types[0], "session.update");
    assert!(
        !second
            .received
            .iter()
            .any(|e| e["type"] == "response.create"
                && e["response"]["instructions"]
                    .as_str()
                    .is_some_and(|i| !i.is_empty())),
        "no second greeting (the bridge may answer a caller turn, without instructions): {types:?}"
    );
    assert!(
        second.errors_sent == 0,
        "{:?}",
        second.sent_of("error").collect::<Vec<_>>()
    );
    stop_once_counted(server, sim, &DROP_REASONS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_during_the_answer_lets_the_sent_audio_play_and_cuts_the_line() {
    // Audio in real time, so the answer is still streaming when the fault comes.
    let (sim, server, _) = bridge::with_simulator(real_time(4000), &[]).await;
    let call = run_caller(
        &server,
        vec![say(800), answer(), pause(500), say(800), answer()],
    );
    let report = fault_survived(
        &sim,
        call,
        SessionFault::ServerErrorThenClose,
        "an answer half sent",
        |s| s.sent_audio_bytes >= 1500 * 8,
    )
    .await;
    assert!(
        report.clears.is_empty(),
        "audio already sent was not cleared: {}",
        summary(&report)
    );
    let first = sim.session(0).expect("session 0");
    let second = sim.session(1).expect("session 1");
    // Everything the first session sent was played, then the second answer.
    assert!(
        report.bytes_played as usize >= first.sent_audio_bytes + 4000 * 8,
        "played {} of {} + {}",
        report.bytes_played,
        first.sent_audio_bytes,
        4000 * 8
    );
    let items = second.items_created();
    assert!(items.len() >= 2, "{items:?}");
    let (role, kind, text) = text_of(items[1]);
    let full = &SimConfig::default().reply_texts[0];
    assert_eq!((role, kind), ("assistant", "output_text"));
    let head = text
        .strip_suffix('…')
        .unwrap_or_else(|| panic!("marked as cut: {items:?}"));
    assert!(
        !head.is_empty() && full.starts_with(head) && head.len() < full.len(),
        "the line cut to what was said: {text:?}"
    );
    stop_once_counted(server, sim, &[&reconnects_total("server_error")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expired_is_handled_like_a_drop() {
    let (sim, server, call) = call_on_answers_of(
        600,
        &[],
        vec![say(800), answer(), pause(1500), say(800), answer()],
    )
    .await;
    let expired = SessionFault::SessionExpired {
        close_after: Duration::from_millis(300),
    };
    let report = fault_survived(&sim, call, expired, "an answer", |s| {
        s.responses_completed >= 1
    })
    .await;
    assert_eq!(report.response_latencies.len(), 2, "{}", summary(&report));
    assert_eq!(sim.session_count(), 2);
    bridge::assert_metric(&server, &[&reconnects_total("session_expired")]).await;
    let first = sim.session(0).expect("session 0");
    // The bridge left at the error, before the server's close.
    assert_eq!(
        first.closed_by,
        Some(ClosedBy::Fault("session_expired".into())),
        "{SESSION_EXPIRED_REASON}"
    );
    bridge::stop_both(server, sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_retry_fails_the_call_ends_upstream_failed() {
    let (sim, server, report, took) = drop_once_configured("2", |sim| sim.refuse_next(1000)).await;
    assert!(report.closed_by_bridge, "the bridge gave up");
    assert!(
        took < Duration::from_secs(15),
        "within the retry window, not the 20 s script: {took:?}"
    );
    assert!(report.twiml.contains("<Say>Sorry"), "Twilio apologises");
    assert_eq!(sim.session_count(), 1, "no new session was ever opened");
    stop_once_counted(server, sim, &[&calls_total("upstream_failed")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_on_reconnect_ends_the_call_at_once() {
    // A long retry window: only the 401 can end the call.
    // One 401, then the server would accept again: a bridge that retried would get through.
    let (sim, server, report, _) = drop_once_configured("60", |sim| sim.unauthorized_next(1)).await;
    assert!(report.closed_by_bridge);
    assert_eq!(sim.session_count(), 1, "no retry after the 401");
    stop_once_counted(server, sim, &[&calls_total("upstream_refused")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_rotate_before_the_limit_without_losing_or_doubling_a_caller_byte() {
    let (sim, server, call) = call_on_answers_of(
        800,
        &[("CALLBRIDGE_SESSION_ROTATE_AFTER_SECS", "1")],
        turns(3),
    )
    .await;
    let report = call.await.expect("join");
    assert!(!report.closed_by_bridge);
    assert_eq!(
        report.response_latencies.len(),
        3,
        "every turn answered: {}",
        summary(&report)
    );
    wait_all_closed(&sim).await;
    let sessions = sim.sessions();
    assert!(sessions.len() >= 2, "rotated at least once");
    let appended: usize = sessions.iter().map(|s| s.appended_audio_bytes).sum();
    assert_eq!(
        appended as u64,
        report.frames_sent * 160,
        "every caller byte reached exactly one session"
    );
    for (i, s) in sessions.iter().enumerate() {
        assert_eq!(s.received_types()[0], "session.update", "session {i}");
        assert_eq!(
            s.closed_by,
            Some(ClosedBy::Client),
            "session {i} closed by the bridge"
        );
        assert!(
            caller_turns(s).iter().all(|t| *t >= 0.9),
            "no sentence split across sessions: {:?}",
            caller_turns(s)
        );
    }
    let turns: usize = sessions.iter().map(|s| caller_turns(s).len()).sum();
    assert_eq!(turns, 3);
    // The last session was told the story so far.
    let last = sessions.last().expect("a session");
    let items = last.items_created();
    assert!(
        items.iter().any(|i| i["role"] == "system"),
        "continuation note: {items:?}"
    );
    let rotations = format!("callbridge_session_rotations_total {}", sessions.len() - 1);
    stop_once_counted(server, sim, &[&rotations]).await;
}

/// The simulator's fault controls do what they say, seen from a plain WebSocket client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_faults_look_like_the_real_thing_on_the_wire() {
    use tokio_tungstenite::tungstenite::{Error, Message};
    let sim = simulator(SimConfig::default()).await;
    // How the socket ends after each fault: (close code, reset, other error).
    async fn ending(sim: &Simulator, fault: SessionFault) -> (Option<u16>, bool, bool) {
        let (mut ws, _) = tokio_tungstenite::connect_async(sim.url())
            .await
            .expect("connect");
        let _created = ws.next().await;
        assert!(sim.inject(sim.session_count() - 1, fault));
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Close(f)))) => {
                    return (f.map(|f| u16::from(f.code)), false, false)
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(Error::Io(e)))) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return (None, true, false)
                }
                Ok(Some(Err(_))) | Ok(None) => return (None, false, true),
                Err(_) => panic!("{fault:?}: the socket did not end"),
            }
        }
    }
    use futures_util::StreamExt;
    assert_eq!(
        ending(&sim, SessionFault::DropFin).await,
        (None, false, true),
        "EOF, no close frame"
    );
    assert_eq!(
        ending(&sim, SessionFault::DropRst).await,
        (None, true, false),
        "reset"
    );
    assert_eq!(
        ending(&sim, SessionFault::ServerErrorThenClose).await,
        (Some(1011), false, false)
    );
    let expired = SessionFault::SessionExpired {
        close_after: Duration::from_millis(50),
    };
    assert_eq!(ending(&sim, expired).await, (Some(1001), false, false));
    let errors: Vec<_> = sim
        .sessions()
        .iter()
        .flat_map(|s| {
            s.sent_of("error")
                .map(|e| e["error"]["code"].clone())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(errors, ["server_error", "session_expired"]);
    // Refused connections and 401s: only the next n.
    sim.refuse_next(1);
    assert!(tokio_tungstenite::connect_async(sim.url()).await.is_err());
    sim.unauthorized_next(1);
    match tokio_tungstenite::connect_async(sim.url()).await {
        Err(Error::Http(r)) => assert_eq!(r.status().as_u16(), 401),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(tokio_tungstenite::connect_async(sim.url()).await.is_ok());
    sim.shutdown().await;
}
