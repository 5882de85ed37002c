//! Finding 7 of issue 18: at `RUST_LOG=trace` tungstenite logged the Realtime upgrade request
//! with the OpenAI key in it. The real binary runs here at `trace`, in text and JSON, with
//! every secret configured and every path that uses one exercised (a signed media socket to
//! the model, an outbound call through Twilio REST with the API token, the report signed with
//! the tool secret, the pages opened with their tokens); then everything it printed is
//! searched for every secret.

use std::time::Duration;

use callbridge::sim::receiver::Receiver;
use callbridge::sim::twilio_rest::FakeTwilio;
use callbridge::sim::SimConfig;
use callbridge::twilio::signature::{sign, Algorithm};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod support;
use support::binary::{self, Process};
use support::{get_ok_with_token, media, simulator, TempDir, WAIT};

const OPENAI_KEY: &str = "sk-edge-logs-openai-key-0123456789";
const TWILIO_AUTH: &str = "twilio-auth-token-edge-logs-0123";
const TWILIO_KEY: &str = "SK00000000000000000000000000000042";
const TWILIO_SECRET: &str = "twilio-api-secret-edge-logs-0123";
const TOOL_SECRET: &str = "tool-secret-edge-logs-0123456789";
const API_TOKEN: &str = "api-token-edge-logs-0123456789";
const CONSOLE_TOKEN: &str = "console-token-edge-logs-012345";
const SOFTPHONE_TOKEN: &str = "softphone-token-edge-logs-01234";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

/// Runs the binary at `trace` through every secret-bearing path; all it printed.
async fn everything_logged(format: &str) -> String {
    let sim = simulator(SimConfig::default()).await;
    let twilio =
        FakeTwilio::spawn_with_key(ACCOUNT, TWILIO_AUTH, Some((TWILIO_KEY, TWILIO_SECRET)))
            .await
            .expect("fake twilio");
    let receiver = Receiver::spawn(TOOL_SECRET, &[]).await.expect("receiver");
    let spool = TempDir::new(&format!("edge-logs-{format}"));
    let port = binary::free_port();
    let public = format!("http://127.0.0.1:{port}");
    let (sim_url, twilio_url, report_url) =
        (sim.url(), twilio.base_url(), receiver.url("/reports"));
    let child = Process::spawn(&mut binary::serve(
        port,
        "trace",
        &[
            ("CALLBRIDGE_LOG_FORMAT", format),
            ("REALTIME_URL", &sim_url),
            ("OPENAI_API_KEY", OPENAI_KEY),
            ("PUBLIC_URL", &public),
            ("TWILIO_AUTH_TOKEN", TWILIO_AUTH),
            ("TWILIO_ACCOUNT_SID", ACCOUNT),
            ("CALLBRIDGE_TWILIO_API_KEY", TWILIO_KEY),
            ("CALLBRIDGE_TWILIO_API_SECRET", TWILIO_SECRET),
            ("CALLBRIDGE_TWILIO_API_BASE", &twilio_url),
            ("CALLBRIDGE_TOOL_SECRET", TOOL_SECRET),
            ("CALLBRIDGE_API_TOKEN", API_TOKEN),
            ("CALLBRIDGE_CONSOLE_TOKEN", CONSOLE_TOKEN),
            ("CALLBRIDGE_SOFTPHONE", "true"),
            ("CALLBRIDGE_SOFTPHONE_TOKEN", SOFTPHONE_TOKEN),
            ("CALLBRIDGE_REPORT_URL", &report_url),
            ("CALLBRIDGE_REPORT_SPOOL_DIR", spool.to_str()),
        ],
    ));
    binary::wait_healthy(port).await;
    let http = reqwest::Client::new();

    // The pages, with their tokens in the query and in the header.
    for url in [
        format!("{public}/console?token={CONSOLE_TOKEN}"),
        format!("{public}/softphone?token={SOFTPHONE_TOKEN}"),
    ] {
        let r = http.get(url).send().await.expect("page");
        assert_eq!(r.status().as_u16(), 200);
    }
    get_ok_with_token(&format!("{public}/softphone/profiles"), SOFTPHONE_TOKEN).await;

    // An outbound call: the API token in, Twilio REST with the API key secret out.
    let r = http
        .post(format!("{public}/v1/calls"))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({"to": "+15551230000", "from": "+15550001111"}))
        .send()
        .await
        .expect("dial");
    assert_eq!(r.status().as_u16(), 201);

    // A signed media socket: the model is dialled with the OpenAI key.
    // Signed over the <Stream url> the TwiML names (ws:// for an http:// public URL).
    let media = format!("ws://127.0.0.1:{port}/media");
    let mut req = media.clone().into_client_request().expect("request");
    req.headers_mut().insert(
        "x-twilio-signature",
        sign(TWILIO_AUTH, Algorithm::Sha1, &media, &[])
            .parse()
            .expect("header"),
    );
    let mut ws = media::connect(req).await;
    ws.send(media::start(
        ACCOUNT,
        "MZlogs",
        "CAlogs",
        serde_json::json!({}),
    ))
    .await
    .expect("send");
    media::configured(&sim, 0).await;
    media::hang_up(&mut ws, media::stop(ACCOUNT, "MZlogs", "CAlogs")).await;
    // The call's report, signed with the tool secret.
    let got = receiver.wait_until(WAIT, |r| !r.is_empty()).await;
    assert!(!got.is_empty(), "the report was delivered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.output()
}

fn assert_no_secret(format: &str, log: &str) {
    // Not vacuous: each secret-bearing path ran and logged, dependencies' debug lines included.
    for expected in [
        "Client handshake done",
        "outbound call created",
        "report delivered",
        "call ended",
    ] {
        assert!(
            log.contains(expected),
            "{format}: no {expected:?} line:\n{log}"
        );
    }
    for (name, secret) in [
        ("OpenAI API key", OPENAI_KEY),
        ("Twilio auth token", TWILIO_AUTH),
        ("Twilio API secret", TWILIO_SECRET),
        ("tool secret", TOOL_SECRET),
        ("API token", API_TOKEN),
        ("console token", CONSOLE_TOKEN),
        ("softphone token", SOFTPHONE_TOKEN),
    ] {
        if let Some(line) = log.lines().find(|l| l.contains(secret)) {
            panic!("{format}: the {name} is in the log:\n{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_text_logs_at_trace() {
    let log = everything_logged("text").await;
    assert_no_secret("text", &log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_json_logs_at_trace() {
    let log = everything_logged("json").await;
    assert_no_secret("json", &log);
}
