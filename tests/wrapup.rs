//! The bridge's own wrap-ups through the real server: the simulated caller, the Realtime
//! simulator and the fake Twilio REST API. A call ending on the bridge's initiative says
//! goodbye first, and hangs up through Twilio REST only once the goodbye was heard.

use std::sync::Arc;
use std::time::Duration;

use callbridge::caller::{self, CallerOptions, CallerReport, Step};
use callbridge::config::{Config, Overrides};
use callbridge::metrics::Metrics;
use callbridge::server::Running;
use callbridge::sim::twilio_rest::FakeTwilio;
use callbridge::sim::{SimConfig, Simulator};

const API_KEY: &str = "SK00000000000000000000000000000001";
const API_SECRET: &str = "api-secret-for-tests";
const ACCOUNT: &str = "AC00000000000000000000000000000001";
const CALL_SID: &str = "CA00000000000000000000000000000001";

struct Setup {
    sim: Simulator,
    server: Running,
    metrics: Arc<Metrics>,
    twilio: Arc<FakeTwilio>,
}

async fn setup(extra_env: &[(&str, &str)]) -> Setup {
    let sim = Simulator::start(
        "127.0.0.1:0",
        SimConfig {
            reply_texts: vec!["How can I help?".into(), "Goodbye for now.".into()],
            response_audio_ms: 1200,
            ..SimConfig::default()
        },
    )
    .await
    .expect("sim");
    let twilio = FakeTwilio::spawn_with_key(ACCOUNT, "unused-token", Some((API_KEY, API_SECRET)))
        .await
        .expect("fake twilio");
    let mut env: Vec<(String, String)> = vec![
        ("REALTIME_URL".into(), sim.url()),
        ("CALLBRIDGE_LISTEN".into(), "127.0.0.1:0".into()),
        ("CALLBRIDGE_TWILIO_API_BASE".into(), twilio.base_url()),
        ("CALLBRIDGE_TWILIO_API_KEY".into(), API_KEY.into()),
        ("CALLBRIDGE_TWILIO_API_SECRET".into(), API_SECRET.into()),
        ("CALLBRIDGE_TWILIO_ACCOUNT_SID".into(), ACCOUNT.into()),
    ];
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let cfg = Config::load(None, &lookup, &Overrides::default()).expect("config");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let server = callbridge::server::spawn(cfg, metrics.clone())
        .await
        .expect("bridge starts");
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
        Step::Silence(Duration::from_millis(200)),
        Step::Say(caller::synthetic_speech(800)),
        Step::WaitAgentDone {
            quiet: Duration::from_secs(25),
            timeout: Duration::from_secs(40),
        },
    ]
}

/// Places the call; when Twilio REST gets a call update, the simulated Twilio ends the
/// stream (as a hang-up does).
async fn call(bridge: String, twilio: &FakeTwilio) -> CallerReport {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let opts = CallerOptions {
        bridge,
        call_sid: CALL_SID.into(),
        script: script(),
        tail: Duration::from_millis(300),
        twilio_ends: Some(rx),
        ..Default::default()
    };
    let run = caller::run(opts);
    tokio::pin!(run);
    let mut signalled = false;
    loop {
        tokio::select! {
            r = &mut run => return r.expect("call runs"),
            _ = tokio::time::sleep(Duration::from_millis(10)), if !signalled => {
                if !twilio.requests().is_empty() {
                    signalled = true;
                    let _ = tx.send(true);
                }
            }
        }
    }
}

/// The instructions of every `response.create` the simulator received.
fn creates(sim: &Simulator) -> Vec<String> {
    let Some(log) = sim.session(0) else {
        return Vec::new();
    };
    log.received
        .iter()
        .filter(|ev| ev["type"] == "response.create")
        .map(|ev| {
            ev["response"]["instructions"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn assert_hung_up_after_goodbye(twilio: &FakeTwilio, report: &CallerReport) {
    let reqs = twilio.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        reqs[0].path,
        format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL_SID}.json")
    );
    assert_eq!(
        reqs[0].form,
        [("Status".to_string(), "completed".to_string())]
    );
    let ended = report
        .ended_by_twilio
        .as_ref()
        .expect("Twilio ended the stream");
    assert_eq!(ended.queued, 0, "the goodbye was played in full: {ended:?}");
    assert_eq!(ended.played, ended.received, "{ended:?}");
    // Two answers of ~1.2 s each: the reply and the goodbye.
    assert!(
        report.bytes_played >= 2 * 1200 * 8,
        "{}",
        report.bytes_played
    );
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
    let (url, tw) = (s.server.url(""), s.twilio.clone());
    let caller = tokio::spawn(async move { call(url, &tw).await });
    let sim = &s.sim;
    wait_for("the first answer", || {
        sim.session(0).is_some_and(|l| l.responses_completed >= 1)
    })
    .await;
    assert!(s.twilio.requests().is_empty());
    // No drain period: the call is asked to wrap up at once.
    let stopping = tokio::spawn(s.server.stop(Duration::ZERO));
    let report = tokio::time::timeout(Duration::from_secs(60), caller)
        .await
        .expect("the call ends")
        .expect("join");
    let said = creates(&s.sim);
    assert_eq!(
        said.last().map(String::as_str),
        Some("We are closing now: say goodbye politely."),
        "{said:?}"
    );
    assert_hung_up_after_goodbye(&s.twilio, &report);
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
