//! A Twilio recording belongs to its call's report: the `recording.completed` event that
//! Twilio's callback produces (after the call, as Twilio sends it) names the call's report in
//! `call_report_ids` and goes where that report went — the profile's `report_url`. Through the
//! real server, the simulator and a signed callback.

use std::time::Duration;

use callbridge::sim::receiver::Receiver;
use callbridge::sim::SimConfig;
use callbridge::twilio::signature::{sign, Algorithm};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod support;
use support::schema::assert_valid;
use support::{bridge, media, simulator, TempDir, WAIT};

const SECRET: &str = "recording-link-secret-1";
const AUTH: &str = "twilio-auth-token";
const PUBLIC: &str = "https://bridge.example.com";

/// Twilio's recording callback for `call_sid`, signed as Twilio signs it.
async fn recording_done(server: &callbridge::server::Running, call_sid: &str, recording_sid: &str) {
    let fields: Vec<(String, String)> = [
        ("AccountSid", "AC1"),
        ("CallSid", call_sid),
        ("RecordingSid", recording_sid),
        (
            "RecordingUrl",
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
        ),
        ("RecordingStatus", "completed"),
        ("RecordingDuration", "12"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let path = "/twilio/recording";
    let status = reqwest::Client::new()
        .post(server.url(path))
        .header(
            "X-Twilio-Signature",
            sign(AUTH, Algorithm::Sha1, &format!("{PUBLIC}{path}"), &fields),
        )
        .form(&fields)
        .send()
        .await
        .expect("bridge answers")
        .status();
    assert_eq!(status.as_u16(), 204);
}

#[tokio::test]
async fn a_recording_names_its_calls_report_and_goes_where_the_report_went() {
    let sim = simulator(SimConfig::default()).await;
    let top = Receiver::spawn(SECRET, &[]).await.expect("receiver");
    let sales = Receiver::spawn(SECRET, &[]).await.expect("receiver");
    let dir = TempDir::new("recording-link");
    let toml = format!(
        "[profiles.sales]\nnumbers = [\"+15550001111\"]\nreport_url = \"{}\"\n",
        sales.url("/sales")
    );
    let file = dir.file("callbridge.toml", &toml);
    let spool = TempDir::new("recording-link-spool");
    let (sim_url, top_url) = (sim.url(), top.url("/all"));
    let (server, _) = bridge::start(
        &[
            ("REALTIME_URL", &sim_url),
            ("OPENAI_API_KEY", "sk-test"),
            ("PUBLIC_URL", PUBLIC),
            ("TWILIO_AUTH_TOKEN", AUTH),
            ("CALLBRIDGE_REPORT_URL", &top_url),
            ("CALLBRIDGE_REPORT_SPOOL_DIR", spool.to_str()),
            ("CALLBRIDGE_TOOL_SECRET", SECRET),
        ],
        Some(&file),
    )
    .await;

    // A sales call, hung up: its report goes to the sales URL.
    // The media socket Twilio opens is signed over the <Stream url> the TwiML names.
    let mut req = format!("ws://{}/media", server.addr)
        .into_client_request()
        .expect("request");
    let stream_url = format!("{}/media", PUBLIC.replacen("https", "wss", 1));
    req.headers_mut().insert(
        "x-twilio-signature",
        sign(AUTH, Algorithm::Sha1, &stream_url, &[])
            .parse()
            .expect("header"),
    );
    let mut ws = media::connect(req).await;
    ws.send(media::start(
        "AC1",
        "MZrec",
        "CArec",
        json!({"To": "+15550001111"}),
    ))
    .await
    .expect("send");
    media::configured(&sim, 0).await;
    media::hang_up(&mut ws, media::stop("AC1", "MZrec", "CArec")).await;
    let got = sales.wait_until(WAIT, |r| !r.is_empty()).await;
    let report = got[0].json();
    assert_eq!(report["type"], "call.completed");

    // Twilio's recording of it, processed after the call: a follow-up naming the report.
    recording_done(&server, "CArec", "RErec").await;
    let got = sales.wait_until(WAIT, |r| r.len() >= 2).await;
    let ev = got[1].json();
    assert_valid("recording-event.schema.json", &ev);
    assert_eq!(ev["type"], "recording.completed");
    assert_eq!(ev["call_sid"], "CArec");
    assert_eq!(ev["call_report_ids"], json!([report["report_id"]]));
    assert_ne!(ev["report_id"], report["report_id"], "an event of its own");
    assert!(got[1].signature_ok);

    // A recording of a call this bridge never ran: still sent (to the top level), unlinked.
    recording_done(&server, "CAelsewhere", "REother").await;
    let got = top.wait_until(WAIT, |r| !r.is_empty()).await;
    let ev = got[0].json();
    assert_valid("recording-event.schema.json", &ev);
    assert_eq!(ev["call_sid"], "CAelsewhere");
    assert_eq!(ev["call_report_ids"], json!([]));
    assert_eq!(sales.received().len(), 2, "nothing else went to sales");
    server.stop(Duration::from_secs(1)).await;
}
