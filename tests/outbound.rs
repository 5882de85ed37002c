//! Outbound calls: `POST /v1/calls` against the fake Twilio REST (path, basic auth, form
//! fields, TwiML), the bearer token, number and profile checks, Twilio's errors passed back,
//! signed status callbacks producing reports for calls that never connected, Twilio recording
//! events, and the `callbridge dial` command.

use std::sync::Arc;
use std::time::Duration;

use callbridge::metrics::Metrics;
use callbridge::sim::receiver::Receiver;
use callbridge::sim::twilio_rest::FakeTwilio;

mod support;
use support::outbound::{self, create_call, post_calls, twilio_post, ACCOUNT, API};
use support::schema::assert_valid;
use support::{assert_contains_all, binary, bridge, TempDir, WAIT};

struct Setup {
    server: callbridge::server::Running,
    twilio: FakeTwilio,
    rx: Receiver,
    /// The report spool, removed when the test is done.
    _spool: TempDir,
    metrics: Arc<Metrics>,
}

async fn setup(tag: &str, extra: &[(&str, &str)]) -> Setup {
    let (twilio, rx) = outbound::fakes().await;
    let spool = TempDir::new(&format!("outbound-{tag}"));
    let (twilio_url, report_url) = (twilio.base_url(), rx.url("/reports"));
    let mut env = outbound::env(&twilio_url, &report_url, &spool);
    env.extend(extra);
    let (server, metrics) = bridge::start(&env, None).await;
    Setup {
        server,
        twilio,
        rx,
        _spool: spool,
        metrics,
    }
}

/// A callback signed as Twilio signs it is accepted (204).
async fn accepts_signed(server: &callbridge::server::Running, path: &str, fields: &[(&str, &str)]) {
    assert_eq!(twilio_post(server, path, fields, true).await, 204);
}

#[tokio::test]
async fn a_call_is_created_through_twilio_rest_with_stream_twiml_and_callbacks() {
    let s = setup("create", &[]).await;
    let (status, answer) = create_call(
        &s.server,
        serde_json::json!({"variables": {"caller_name": "Ada <&>"}, "machine_detection": true}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let reqs = s.twilio.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json"));
    assert!(
        r.auth_ok && r.user.as_deref() == Some(ACCOUNT),
        "basic auth"
    );
    assert_eq!(answer["call_sid"].as_str().map(|s| s.len()), Some(34));
    assert_eq!(r.field("To"), Some("+15551230000"));
    assert_eq!(r.field("From"), Some("+15550001111"));
    assert_eq!(
        r.field("StatusCallback"),
        Some("https://bridge.example.com/twilio/status")
    );
    assert_eq!(r.field("MachineDetection"), Some("Enable"));
    assert_eq!(r.field("AsyncAmd"), Some("true"));
    assert_eq!(
        r.field("AsyncAmdStatusCallback"),
        Some("https://bridge.example.com/twilio/amd")
    );
    let twiml = r.field("Twiml").expect("Twiml");
    assert_contains_all(
        twiml,
        &[
            r#"<Connect>"#,
            r#"<Stream url="wss://bridge.example.com/media">"#,
            r#"<Parameter name="direction" value="outbound"/>"#,
            r#"<Parameter name="var.caller_name" value="Ada &lt;&amp;&gt;"/>"#,
        ],
    );
    assert!(
        !twiml.contains("<Recording"),
        "no recording unless configured"
    );
    s.server.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_api_refuses_bad_tokens_numbers_and_profiles_and_passes_twilio_errors_back() {
    let s = setup("refuse", &[]).await;
    let ok = serde_json::json!({"to": "+15551230000", "from": "+15550001111"});
    assert_eq!(post_calls(&s.server, None, ok.clone()).await.0, 401);
    assert_eq!(
        post_calls(&s.server, Some("wrong"), ok.clone()).await.0,
        401
    );
    assert_eq!(
        post_calls(&s.server, Some(&API[..5]), ok.clone()).await.0,
        401
    );
    let (status, answer) = post_calls(
        &s.server,
        Some(API),
        serde_json::json!({"to": "5551230000", "from": "+15550001111"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap_or("").contains("E.164"),
        "{answer}"
    );
    let (status, _) = create_call(&s.server, serde_json::json!({"profile": "nope"})).await;
    assert_eq!(status, 404);
    assert!(s.twilio.requests().is_empty(), "nothing reached Twilio");

    s.twilio
        .fail_next(400, 21215, "Account not authorized to call +15551230000");
    let (status, answer) = post_calls(&s.server, Some(API), ok).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["twilio_code"], 21215);
    assert!(answer["error"]
        .as_str()
        .unwrap_or("")
        .contains("not authorized"));
    s.server.stop(Duration::from_secs(1)).await;
}

/// No answer: the signed status callback produces the call's report (with what the API was
/// given), valid against the schema; an unsigned callback is refused.
#[tokio::test]
async fn a_no_answer_status_callback_produces_a_report() {
    let s = setup("status", &[]).await;
    let (status, answer) = create_call(
        &s.server,
        serde_json::json!({"variables": {"order": "A-17"}}),
    )
    .await;
    assert_eq!(status, 201);
    let sid = answer["call_sid"].as_str().expect("sid").to_owned();
    let fields = [
        ("AccountSid", ACCOUNT),
        ("CallSid", sid.as_str()),
        ("CallStatus", "no-answer"),
        ("From", "+15550001111"),
        ("To", "+15551230000"),
        ("Direction", "outbound-api"),
    ];
    assert_eq!(
        twilio_post(&s.server, "/twilio/status", &fields, false).await,
        403
    );
    accepts_signed(&s.server, "/twilio/status", &fields).await;
    let got = s.rx.wait_until(WAIT, |r| !r.is_empty()).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].signature_ok);
    let report = got[0].json();
    assert_valid("call-report.schema.json", &report);
    assert_eq!(report["outcome"], "no_answer");
    assert_eq!(report["call_sid"], sid.as_str());
    assert_eq!(report["direction"], "outbound");
    assert_eq!(report["stream_sid"], serde_json::Value::Null);
    assert_eq!(report["to"], "+15551230000");
    assert_eq!(report["variables"]["order"], "A-17");
    // A completed call reported through its media stream: nothing more from the callback.
    let done = [("CallSid", "CAother"), ("CallStatus", "completed")];
    accepts_signed(&s.server, "/twilio/status", &done).await;
    accepts_signed(
        &s.server,
        "/twilio/amd",
        &[("CallSid", "CA1"), ("AnsweredBy", "human")],
    )
    .await;
    s.server.stop(Duration::from_secs(1)).await;
}

/// With twilio_recording = "dual" the TwiML starts a recording before <Connect>, and Twilio's
/// recording callback reaches the report URL as a recording.completed event.
#[tokio::test]
async fn twilio_recording_is_started_and_its_callback_forwarded() {
    let s = setup("recording", &[("CALLBRIDGE_TWILIO_RECORDING", "dual")]).await;
    let (status, _) = create_call(&s.server, serde_json::json!({})).await;
    assert_eq!(status, 201);
    let twiml = s.twilio.requests()[0]
        .field("Twiml")
        .expect("twiml")
        .to_owned();
    let rec = twiml
        .find(r#"<Start><Recording channels="dual" recordingStatusCallback="https://bridge.example.com/twilio/recording""#)
        .expect(&twiml);
    assert!(rec < twiml.find("<Connect>").expect("connect"), "{twiml}");
    let fields = [
        ("AccountSid", ACCOUNT),
        ("CallSid", "CA9"),
        ("RecordingSid", "RE1"),
        (
            "RecordingUrl",
            "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE1",
        ),
        ("RecordingStatus", "completed"),
        ("RecordingDuration", "42"),
        ("RecordingChannels", "2"),
    ];
    accepts_signed(&s.server, "/twilio/recording", &fields).await;
    let got = s.rx.wait_until(WAIT, |r| !r.is_empty()).await;
    let ev = got[0].json();
    assert_valid("recording-event.schema.json", &ev);
    assert_eq!(ev["type"], "recording.completed");
    assert_eq!(ev["call_sid"], "CA9");
    assert_eq!(ev["recording_sid"], "RE1");
    assert_eq!(ev["duration_s"], 42);
    assert_eq!(got[0].idempotency_key.as_deref(), ev["report_id"].as_str());
    s.server.stop(Duration::from_secs(1)).await;
}

/// Waits until the receiver has `n` requests, then a little longer so that an extra one (a
/// replay sent again) would have arrived too.
async fn settled(rx: &Receiver, n: usize) -> Vec<callbridge::sim::receiver::Received> {
    rx.wait_until(WAIT, |r| r.len() >= n).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    rx.received()
}

/// The same signed no-answer callback, posted five times (a replay, or Twilio retrying), is one
/// report: delivered once, under an id derived from the CallSid that every replay reproduces,
/// and one call counted; another CallSid is another report.
#[tokio::test]
async fn a_replayed_status_callback_is_one_report_with_a_stable_id() {
    let s = setup("status-replay", &[]).await;
    let status = |sid: &'static str| {
        [
            ("AccountSid", ACCOUNT),
            ("CallSid", sid),
            ("CallStatus", "no-answer"),
            ("From", "+15550001111"),
            ("To", "+15551230000"),
        ]
    };
    for _ in 0..5 {
        assert_eq!(
            twilio_post(&s.server, "/twilio/status", &status("CAreplay1"), true).await,
            204,
            "a replay is answered as the first was"
        );
    }
    let got = settled(&s.rx, 1).await;
    assert_eq!(got.len(), 1, "one report for five callbacks");
    let id = callbridge::report::unconnected_report_id("CAreplay1");
    assert_eq!(got[0].json()["report_id"], id.as_str());
    assert_eq!(got[0].idempotency_key.as_deref(), Some(id.as_str()));

    accepts_signed(&s.server, "/twilio/status", &status("CAreplay2")).await;
    let got = settled(&s.rx, 2).await;
    assert_eq!(got.len(), 2, "another call, another report");
    assert_eq!(got[1].json()["call_sid"], "CAreplay2");
    assert_ne!(got[1].idempotency_key, got[0].idempotency_key);
    let m = s.metrics.render();
    assert_contains_all(
        &m,
        &[
            r#"callbridge_reports_total{result="duplicate"} 4"#,
            r#"callbridge_reports_total{result="delivered"} 2"#,
            r#"callbridge_calls_total{outcome="no_answer"} 2"#,
        ],
    );
    s.server.stop(Duration::from_secs(1)).await;
}

/// The same signed recording callback, posted five times, is one `recording.completed` event
/// under an id derived from the RecordingSid; another recording is another event.
#[tokio::test]
async fn a_replayed_recording_callback_is_one_event_with_a_stable_id() {
    let s = setup("recording-replay", &[]).await;
    let recording = |sid: &'static str| {
        [
            ("AccountSid", ACCOUNT),
            ("CallSid", "CArec"),
            ("RecordingSid", sid),
            (
                "RecordingUrl",
                "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE",
            ),
            ("RecordingStatus", "completed"),
            ("RecordingDuration", "7"),
        ]
    };
    for _ in 0..5 {
        accepts_signed(&s.server, "/twilio/recording", &recording("REreplay1")).await;
    }
    let got = settled(&s.rx, 1).await;
    assert_eq!(got.len(), 1, "one event for five callbacks");
    let id = callbridge::report::recording_report_id("REreplay1");
    assert_eq!(got[0].json()["report_id"], id.as_str());
    assert_eq!(got[0].idempotency_key.as_deref(), Some(id.as_str()));
    assert_valid("recording-event.schema.json", &got[0].json());

    accepts_signed(&s.server, "/twilio/recording", &recording("REreplay2")).await;
    let got = settled(&s.rx, 2).await;
    assert_eq!(got.len(), 2, "another recording, another event");
    assert_eq!(got[1].json()["recording_sid"], "REreplay2");
    assert_ne!(got[1].idempotency_key, got[0].idempotency_key);
    assert!(s
        .metrics
        .render()
        .contains(r#"callbridge_reports_total{result="duplicate"} 4"#));
    s.server.stop(Duration::from_secs(1)).await;
}

/// `callbridge dial` places the call through the API and prints the SID; a refusal exits
/// non-zero with the reason.
#[tokio::test]
async fn the_dial_command_places_a_call() {
    let s = setup("dial", &[]).await;
    let run = |token: &'static str, to: &'static str| {
        let bridge = s.server.url("");
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(binary::BIN)
                .args([
                    "dial",
                    "--bridge",
                    &bridge,
                    "--to",
                    to,
                    "--from",
                    "+15550001111",
                ])
                .args(["--var", "caller_name=Ada", "--var", "order=A=17"])
                .env("CALLBRIDGE_API_TOKEN", token)
                .output()
                .expect("run callbridge dial")
        })
    };
    let out = run(API, "+15551230000").await.expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(sid.starts_with("CA"), "{sid}");
    let twiml = s.twilio.requests()[0]
        .field("Twiml")
        .expect("twiml")
        .to_owned();
    assert_contains_all(&twiml, &[r#"<Parameter name="var.order" value="A=17"/>"#]);
    let out = run("wrong", "+15551230000").await.expect("join");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    s.server.stop(Duration::from_secs(1)).await;
}
