//! A caller who says nothing, through the real server: the simulated caller only listens, the
//! Realtime simulator answers, the fake Twilio REST API ends the call. After the greeting the
//! model is asked to check in (`silence_reprompt_s`), then for a goodbye (`silence_hangup_s`),
//! and the call hangs up through Twilio REST once that was heard: outcome `caller_silent`, in
//! the metrics and in the call report.

use std::time::{Duration, Instant};

use callbridge::call::silence::{GOODBYE_SAY, REPROMPT_SAY};
use callbridge::caller::Step;
use callbridge::sim::receiver::Receiver;
use callbridge::sim::twilio_rest::FakeTwilio;
use callbridge::sim::SimConfig;

mod support;
use support::caller::call_ended_by_twilio;
use support::response_creates as creates;
use support::schema::assert_valid;
use support::{bridge, eventually, simulator, TempDir, WAIT};

const API_KEY: &str = "SK00000000000000000000000000000001";
const API_SECRET: &str = "api-secret-for-tests";
const ACCOUNT: &str = "AC00000000000000000000000000000001";
const CALL_SID: &str = "CA00000000000000000000000000000001";
const SECRET: &str = "report-secret-for-tests-1";
const GREETING: &str = "Greet the caller.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_caller_is_checked_on_then_hung_up_on_as_caller_silent() {
    let sim = simulator(SimConfig {
        reply_texts: vec![
            "Hello, how can I help?".into(),
            "Are you still there?".into(),
            "It seems you are gone. Goodbye.".into(),
        ],
        response_audio_ms: 1000,
        ..SimConfig::default()
    })
    .await;
    let twilio = FakeTwilio::spawn_with_key(ACCOUNT, "unused-token", Some((API_KEY, API_SECRET)))
        .await
        .expect("fake twilio");
    let rx = Receiver::spawn(SECRET, &[]).await.expect("receiver");
    let spool = TempDir::new("silence-reports");
    let (sim_url, twilio_url, report_url) = (sim.url(), twilio.base_url(), rx.url("/reports"));
    let env = [
        ("REALTIME_URL", sim_url.as_str()),
        ("CALLBRIDGE_TWILIO_API_BASE", &twilio_url),
        ("CALLBRIDGE_TWILIO_API_KEY", API_KEY),
        ("CALLBRIDGE_TWILIO_API_SECRET", API_SECRET),
        ("CALLBRIDGE_TWILIO_ACCOUNT_SID", ACCOUNT),
        ("CALLBRIDGE_GREETING", GREETING),
        ("CALLBRIDGE_SILENCE_REPROMPT_S", "1"),
        ("CALLBRIDGE_SILENCE_HANGUP_S", "2"),
        ("CALLBRIDGE_REPORT_URL", &report_url),
        ("CALLBRIDGE_REPORT_SPOOL_DIR", spool.to_str()),
        ("CALLBRIDGE_TOOL_SECRET", SECRET),
    ];
    let (server, metrics) = bridge::start(&env, None).await;

    // The caller never speaks: it listens (its line carries silence) until Twilio ends it.
    let listen = vec![Step::WaitAgentDone {
        quiet: Duration::from_secs(25),
        timeout: Duration::from_secs(40),
    }];
    let began = Instant::now();
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        call_ended_by_twilio(server.url(""), CALL_SID, listen, &twilio),
    )
    .await
    .expect("the call ends");
    let took = began.elapsed();

    // Greeting, check-in, goodbye: in that order, nothing else.
    let said = creates(&sim);
    assert_eq!(
        said,
        [GREETING, REPROMPT_SAY, GOODBYE_SAY].map(str::to_owned),
        "{said:?}"
    );
    // Three answers of ~1 s, played in full, and the two waits (1 s, 2 s) between them: the
    // call ended on the silence, well before the caller's own 25 s of patience.
    let ended = report
        .ended_by_twilio
        .as_ref()
        .expect("Twilio ended the stream");
    assert_eq!(ended.queued, 0, "the goodbye was played in full: {ended:?}");
    assert!(
        report.bytes_played >= 3 * 1000 * 8,
        "{}",
        report.bytes_played
    );
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert!(took < Duration::from_secs(25), "{took:?}");
    let reqs = twilio.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(
        reqs[0].form,
        [("Status".to_string(), "completed".to_string())]
    );

    // The outcome, in the metrics and the report.
    assert!(
        eventually(WAIT, async || {
            metrics
                .render()
                .lines()
                .any(|l| l == "callbridge_calls_total{outcome=\"caller_silent\"} 1")
        })
        .await,
        "{}",
        metrics.render()
    );
    rx.wait_until(WAIT, |r| r.iter().any(|x| x.answered == 200))
        .await;
    let got = rx.received();
    assert_eq!(got.len(), 1);
    let report = got[0].json();
    assert_valid("call-report.schema.json", &report);
    assert_eq!(report["outcome"], "caller_silent", "{report}");
    assert_eq!(report["call_sid"], CALL_SID);

    server.stop(Duration::from_secs(1)).await;
    sim.shutdown().await;
}
