//! The bridge's own wrap-ups through the real server: the simulated caller, the Realtime
//! simulator and the fake Twilio REST API. A call ending on the bridge's initiative says
//! goodbye first, and hangs up through Twilio REST only once the goodbye was heard.

use std::sync::Arc;
use std::time::Duration;

use callbridge::caller::{CallerReport, Step};
use callbridge::metrics::Metrics;
use callbridge::server::Running;
use callbridge::sim::twilio_rest::FakeTwilio;
use callbridge::sim::{SimConfig, Simulator};

mod support;
use support::caller::call_ended_by_twilio;
use support::caller::{pause, say};
use support::response_creates as creates;
use support::rest::{self, ACCOUNT, CALL_SID};
use support::{bridge, eventually, simulator, TempDir, WAIT};

struct Setup {
    sim: Simulator,
    server: Running,
    metrics: Arc<Metrics>,
    twilio: Arc<FakeTwilio>,
}

async fn setup(extra_env: &[(&str, &str)]) -> Setup {
    setup_with(None, extra_env).await
}

async fn setup_with(file: Option<&std::path::Path>, extra_env: &[(&str, &str)]) -> Setup {
    let sim = simulator(SimConfig {
        reply_texts: vec!["How can I help?".into(), "Goodbye for now.".into()],
        response_audio_ms: 1200,
        ..SimConfig::default()
    })
    .await;
    let twilio = rest::fake_twilio().await;
    let (sim_url, twilio_url) = (sim.url(), twilio.base_url());
    let mut env = vec![("REALTIME_URL", sim_url.as_str())];
    env.extend(rest::env(&twilio_url));
    env.extend(extra_env);
    let (server, metrics) = bridge::start(&env, file).await;
    Setup {
        sim,
        server,
        metrics,
        twilio: Arc::new(twilio),
    }
}

/// The caller says something, then listens for a long while (the bridge ends the call).
fn script() -> Vec<Step> {
    vec![
        pause(200),
        say(800),
        Step::WaitAgentDone {
            quiet: Duration::from_secs(25),
            timeout: Duration::from_secs(40),
        },
    ]
}

/// Places the call; Twilio ends the stream once the bridge asked Twilio REST to.
async fn call(bridge: String, twilio: &FakeTwilio) -> CallerReport {
    call_ended_by_twilio(bridge, CALL_SID, script(), twilio).await
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    assert!(
        eventually(WAIT, async || f()).await,
        "timed out waiting for {what}"
    );
}

/// Twilio REST was asked exactly once, to complete the call; returns that request.
fn assert_one_hangup(twilio: &FakeTwilio) -> Vec<callbridge::sim::twilio_rest::RestRequest> {
    let reqs = twilio.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        reqs[0].form,
        [("Status".to_string(), "completed".to_string())]
    );
    reqs
}

/// `answers`: how many ~1.2 s answers were played in full (a voicemail cuts the one playing).
fn assert_hung_up_after_goodbye(twilio: &FakeTwilio, report: &CallerReport, answers: u64) {
    let reqs = assert_one_hangup(twilio);
    assert_eq!(
        reqs[0].path,
        format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL_SID}.json")
    );
    let ended = report
        .ended_by_twilio
        .as_ref()
        .expect("Twilio ended the stream");
    assert_eq!(ended.queued, 0, "the goodbye was played in full: {ended:?}");
    if answers == 2 {
        assert_eq!(ended.played, ended.received, "{ended:?}");
    }
    // Answers of ~1.2 s each (the reply and the goodbye), the last one in full.
    assert!(
        report.bytes_played >= answers * 1200 * 8,
        "{}",
        report.bytes_played
    );
}

/// Places the call in the background and returns once the agent answered the caller.
async fn call_until_first_answer(s: &Setup) -> tokio::task::JoinHandle<CallerReport> {
    let (url, tw) = (s.server.url(""), s.twilio.clone());
    let caller = tokio::spawn(async move { call(url, &tw).await });
    let sim = &s.sim;
    wait_for("the first answer", || {
        sim.session(0).is_some_and(|l| l.responses_completed >= 1)
    })
    .await;
    caller
}

/// Waits for the caller's report (the call ends within a minute).
async fn call_end(caller: tokio::task::JoinHandle<CallerReport>) -> CallerReport {
    tokio::time::timeout(Duration::from_secs(60), caller)
        .await
        .expect("the call ends")
        .expect("join")
}

/// Waits until one call ended with `outcome`, then stops the bridge and the simulator.
async fn stop_after_outcome(s: Setup, outcome: &str) {
    let line = format!("callbridge_calls_total{{outcome=\"{outcome}\"}} 1");
    let m = &s.metrics;
    wait_for(&format!("the {outcome} outcome"), || {
        m.render().lines().any(|l| l == line)
    })
    .await;
    s.server.stop(Duration::from_secs(1)).await;
    s.sim.shutdown().await;
}

/// When the drain period is over, a running call is not cut off: the agent says the drain
/// goodbye, the call hangs up through Twilio REST once it was heard, and the server exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_ends_running_calls_with_a_goodbye() {
    let s = setup(&[(
        "CALLBRIDGE_DRAIN_GOODBYE",
        "We are closing now: say goodbye politely.",
    )])
    .await;
    let caller = call_until_first_answer(&s).await;
    assert!(s.twilio.requests().is_empty());
    // No drain period: the call is asked to wrap up at once.
    let stopping = tokio::spawn(s.server.stop(Duration::ZERO));
    let report = call_end(caller).await;
    let said = creates(&s.sim);
    assert_eq!(
        said.last().map(String::as_str),
        Some("We are closing now: say goodbye politely."),
        "{said:?}"
    );
    assert_hung_up_after_goodbye(&s.twilio, &report, 2);
    // The server exits well within the goodbye bound (8 s + margins).
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("the server stops")
        .expect("join");
    let m = s.metrics.render();
    assert!(
        m.lines()
            .any(|l| l == "callbridge_calls_total{outcome=\"shutdown\"} 1"),
        "{m}"
    );
    s.sim.shutdown().await;
}

/// Answering machine detection says a machine answered: the running call with that CallSid
/// leaves the voicemail message (the model is asked to say exactly it) and hangs up through
/// Twilio REST once it was played; the outcome is `voicemail`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_answering_gets_the_voicemail_then_a_hangup() {
    const MESSAGE: &str = "Hello, this is Acme calling about order A-17. Please call us back.";
    let s = setup(&[("CALLBRIDGE_VOICEMAIL_MESSAGE", MESSAGE)]).await;
    let caller = call_until_first_answer(&s).await;
    // A verdict about another call changes nothing.
    let post = |sid: &str, answered_by: &str| {
        let form = serde_urlencoded::to_string([
            ("CallSid", sid),
            ("AccountSid", ACCOUNT),
            ("AnsweredBy", answered_by),
        ])
        .expect("form");
        reqwest::Client::new()
            .post(s.server.url("/twilio/amd"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let other = post("CA0000000000000000000000000000000F", "machine_end_beep")
        .await
        .expect("bridge answers");
    assert_eq!(other.status().as_u16(), 204);
    // A person answering changes nothing either.
    let human = post(CALL_SID, "human").await.expect("bridge answers");
    assert_eq!(human.status().as_u16(), 204);
    // (With `barge_in = "confirm"` the bridge itself asks for the answer to the caller's turn,
    // without instructions: that is no voicemail line.)
    assert!(
        creates(&s.sim).iter().all(String::is_empty),
        "nothing but the caller's turn asked of the model yet: {:?}",
        creates(&s.sim)
    );
    let amd = post(CALL_SID, "machine_end_beep")
        .await
        .expect("bridge answers");
    assert_eq!(amd.status().as_u16(), 204);
    let report = call_end(caller).await;
    let said = creates(&s.sim);
    assert!(
        said.last().is_some_and(|i| i.ends_with(MESSAGE)),
        "{said:?}"
    );
    // The answer playing when the verdict came was cut (it was meant for a person).
    assert_hung_up_after_goodbye(&s.twilio, &report, 1);
    stop_after_outcome(s, "voicemail").await;
}

/// A setup lookup answering `reject: true`: the session is configured without the greeting, the
/// model is asked for a short refusal, and the call hangs up through Twilio REST once it was
/// heard (outcome `rejected`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_call_is_refused_politely_and_hung_up() {
    const SECRET: &str = "setup-secret-for-tests";
    let crm = callbridge::sim::receiver::Receiver::spawn(SECRET, &[])
        .await
        .expect("receiver");
    crm.reply(r#"{"reject": true}"#, Duration::ZERO);
    let dir = TempDir::new("wrapup-reject");
    let path = dir.file(
        "reject.toml",
        &format!(
            "default_profile = \"sales\"\n[profiles.sales]\ngreeting = \"Say hello.\"\nsetup_url = \"{}\"\n",
            crm.url("/setup")
        ),
    );
    let s = setup_with(Some(&path), &[("CALLBRIDGE_TOOL_SECRET", SECRET)]).await;
    drop(dir); // read at start-up
               // The caller only listens (speaking would barge into the refusal).
    let listen = vec![Step::WaitAgentDone {
        quiet: Duration::from_secs(25),
        timeout: Duration::from_secs(40),
    }];
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        call_ended_by_twilio(s.server.url(""), CALL_SID, listen, &s.twilio),
    )
    .await
    .expect("the call ends");
    assert_eq!(crm.received().len(), 1, "the lookup was asked");
    let said = creates(&s.sim);
    assert_eq!(said.len(), 1, "the refusal only, no greeting: {said:?}");
    assert!(said[0].contains("cannot help"), "{said:?}");
    assert_one_hangup(&s.twilio);
    let ended = report.ended_by_twilio.expect("Twilio ended the stream");
    assert_eq!(ended.queued, 0, "the refusal was played in full: {ended:?}");
    assert!(report.bytes_played >= 1200 * 8, "{}", report.bytes_played);
    stop_after_outcome(s, "rejected").await;
}
