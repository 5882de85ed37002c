//! Two replicas sharing a real NATS server: a Twilio callback reaches its call on the other
//! replica (answering machine detection → the voicemail path runs where the call is), and an
//! outbound call placed by one replica is reported with its profile and variables when its
//! status callback comes to the other.

use std::sync::Arc;
use std::time::Duration;

use callbridge::caller::{self, Step};
use callbridge::sim::twilio_rest::FakeTwilio;
use callbridge::sim::SimConfig;

mod support;
use support::caller::call_ended_by_twilio;
use support::nats::{start_replica, Nats};
use support::outbound::{self, create_call, twilio_post};
use support::{bridge, eventually, simulator, TempDir, WAIT};

const API_KEY: &str = "SK00000000000000000000000000000001";
const API_SECRET: &str = "api-secret-for-tests";
const ACCOUNT: &str = "AC00000000000000000000000000000001";
const CALL_SID: &str = "CA00000000000000000000000000000001";

/// A machine answered a call running on A; Twilio posts the verdict to B. B forwards it over
/// NATS, A leaves the voicemail and hangs up (outcome `voicemail`); a verdict for a call no
/// replica runs is answered "no responders" at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amd_callback_on_b_runs_the_voicemail_path_on_a() {
    const MESSAGE: &str = "Hello, this is Acme calling about order A-17.";
    let Some(nats) = Nats::start("amd") else {
        return;
    };
    let sim = simulator(SimConfig {
        reply_texts: vec!["How can I help?".into()],
        response_audio_ms: 1200,
        ..SimConfig::default()
    })
    .await;
    let twilio = Arc::new(
        FakeTwilio::spawn_with_key(ACCOUNT, "unused-token", Some((API_KEY, API_SECRET)))
            .await
            .expect("fake twilio"),
    );
    let (sim_url, twilio_url) = (sim.url(), twilio.base_url());
    let env = [
        ("REALTIME_URL", sim_url.as_str()),
        ("CALLBRIDGE_TWILIO_API_BASE", &twilio_url),
        ("CALLBRIDGE_TWILIO_API_KEY", API_KEY),
        ("CALLBRIDGE_TWILIO_API_SECRET", API_SECRET),
        ("CALLBRIDGE_TWILIO_ACCOUNT_SID", ACCOUNT),
        ("CALLBRIDGE_VOICEMAIL_MESSAGE", MESSAGE),
    ];
    let (a, a_metrics) = start_replica(&nats.url(), "pod-a", &env, None).await;
    let (b, b_metrics) = start_replica(&nats.url(), "pod-b", &env, None).await;
    let (a_url, tw) = (a.url(""), twilio.clone());
    let call = tokio::spawn(async move {
        let script = vec![
            Step::Silence(Duration::from_millis(200)),
            Step::Say(caller::synthetic_speech(800)),
            Step::WaitAgentDone {
                quiet: Duration::from_secs(25),
                timeout: Duration::from_secs(40),
            },
        ];
        call_ended_by_twilio(a_url, CALL_SID, script, &tw).await
    });
    let answered = eventually(WAIT, async || {
        sim.session(0).is_some_and(|l| l.responses_completed >= 1)
    })
    .await;
    assert!(answered, "the call on A was answered");
    let post = |sid: &'static str| {
        let form = serde_urlencoded::to_string([
            ("CallSid", sid),
            ("AccountSid", ACCOUNT),
            ("AnsweredBy", "machine_end_beep"),
        ])
        .expect("form");
        reqwest::Client::new()
            .post(b.url("/twilio/amd"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let nobody = post("CA0000000000000000000000000000000F")
        .await
        .expect("B answers");
    assert_eq!(nobody.status().as_u16(), 204);
    let amd = post(CALL_SID).await.expect("B answers");
    assert_eq!(amd.status().as_u16(), 204);
    tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call on A ends")
        .expect("join");
    let voicemail = eventually(WAIT, async || {
        bridge::has_line(
            &a_metrics,
            "callbridge_calls_total{outcome=\"voicemail\"} 1",
        )
    })
    .await;
    assert!(
        voicemail,
        "A ended the call with the voicemail:\n{}",
        a_metrics.render()
    );
    assert!(
        bridge::has_line(
            &b_metrics,
            "callbridge_cluster_callbacks_forwarded_total{result=\"delivered\"} 1"
        ),
        "{}",
        b_metrics.render()
    );
    assert!(
        bridge::has_line(
            &b_metrics,
            "callbridge_cluster_callbacks_forwarded_total{result=\"no_responder\"} 1"
        ),
        "{}",
        b_metrics.render()
    );
    assert!(
        !b_metrics
            .render()
            .contains("callbridge_calls_total{outcome=\"voicemail\"}"),
        "B ran no call"
    );
    a.stop(Duration::from_secs(1)).await;
    b.stop(Duration::from_secs(1)).await;
    sim.shutdown().await;
}

/// `POST /v1/calls` on A with a profile and variables; Twilio's signed `no-answer` status goes
/// to B, which never heard of the call: B's report is the one A would have sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_call_placed_by_a_is_reported_by_b_with_its_profile_and_variables() {
    let Some(nats) = Nats::start("outbound") else {
        return;
    };
    let (twilio, rx) = outbound::fakes().await;
    let dir = TempDir::new("cluster-outbound");
    let profiles = dir.file(
        "profiles.toml",
        "[profiles.sales]\ngreeting = \"Say hello.\"\n",
    );
    let (spool_a, spool_b) = (
        TempDir::new("cluster-spool-a"),
        TempDir::new("cluster-spool-b"),
    );
    let (twilio_url, report_url) = (twilio.base_url(), rx.url("/reports"));
    let env_a = outbound::env(&twilio_url, &report_url, &spool_a);
    let env_b = outbound::env(&twilio_url, &report_url, &spool_b);
    let (a, _) = start_replica(&nats.url(), "pod-a", &env_a, Some(&profiles)).await;
    let (b, _) = start_replica(&nats.url(), "pod-b", &env_b, Some(&profiles)).await;
    let (status, answer) = create_call(
        &a,
        serde_json::json!({"profile": "sales", "variables": {"order": "A-17"}}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let sid = answer["call_sid"].as_str().expect("call_sid").to_owned();
    let fields = [
        ("AccountSid", outbound::ACCOUNT),
        ("CallSid", sid.as_str()),
        ("CallStatus", "no-answer"),
        ("From", "+15550001111"),
        ("To", "+15551230000"),
        ("Direction", "outbound-api"),
    ];
    assert_eq!(twilio_post(&b, "/twilio/status", &fields, true).await, 204);
    let got = rx.wait_until(WAIT, |r| !r.is_empty()).await;
    assert_eq!(got.len(), 1, "one report");
    assert!(got[0].signature_ok);
    let report = got[0].json();
    support::schema::assert_valid("call-report.schema.json", &report);
    assert_eq!(report["outcome"], "no_answer");
    assert_eq!(report["call_sid"], sid.as_str());
    assert_eq!(report["profile"], "sales", "{report}");
    assert_eq!(report["variables"]["order"], "A-17", "{report}");
    a.stop(Duration::from_secs(1)).await;
    b.stop(Duration::from_secs(1)).await;
}
