//! Finding 7 of issue 18: at `RUST_LOG=trace` tungstenite logged the Realtime upgrade request
//! with the OpenAI key in it. The real binary runs here at `trace`, in text and JSON, with
//! every secret configured and every path that uses one exercised (a signed media socket to
//! the model, an outbound call through Twilio REST with the API token, the report signed with
//! the tool secret, the pages opened with their tokens); then everything it printed is
//! searched for every secret.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use callbridge::sim::receiver::Receiver;
use callbridge::sim::twilio_rest::FakeTwilio;
use callbridge::sim::{SimConfig, Simulator};
use callbridge::twilio::signature::{sign, Algorithm};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const OPENAI_KEY: &str = "sk-edge-logs-openai-key-0123456789";
const TWILIO_AUTH: &str = "twilio-auth-token-edge-logs-0123";
const TWILIO_KEY: &str = "SK00000000000000000000000000000042";
const TWILIO_SECRET: &str = "twilio-api-secret-edge-logs-0123";
const TOOL_SECRET: &str = "tool-secret-edge-logs-0123456789";
const API_TOKEN: &str = "api-token-edge-logs-0123456789";
const CONSOLE_TOKEN: &str = "console-token-edge-logs-012345";
const SOFTPHONE_TOKEN: &str = "softphone-token-edge-logs-01234";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Runs the binary at `trace` through every secret-bearing path; all it printed.
async fn everything_logged(format: &str) -> String {
    let sim = Simulator::start("127.0.0.1:0", SimConfig::default())
        .await
        .expect("sim");
    let twilio =
        FakeTwilio::spawn_with_key(ACCOUNT, TWILIO_AUTH, Some((TWILIO_KEY, TWILIO_SECRET)))
            .await
            .expect("fake twilio");
    let receiver = Receiver::spawn(TOOL_SECRET, &[]).await.expect("receiver");
    let spool = std::env::temp_dir().join(format!("cb-edge-logs-{format}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .arg("serve")
        .env_clear()
        .env("CALLBRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CALLBRIDGE_LOG_FORMAT", format)
        .env("RUST_LOG", "trace")
        .env("REALTIME_URL", sim.url())
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .env("PUBLIC_URL", &public)
        .env("TWILIO_AUTH_TOKEN", TWILIO_AUTH)
        .env("TWILIO_ACCOUNT_SID", ACCOUNT)
        .env("CALLBRIDGE_TWILIO_API_KEY", TWILIO_KEY)
        .env("CALLBRIDGE_TWILIO_API_SECRET", TWILIO_SECRET)
        .env("CALLBRIDGE_TWILIO_API_BASE", twilio.base_url())
        .env("CALLBRIDGE_TOOL_SECRET", TOOL_SECRET)
        .env("CALLBRIDGE_API_TOKEN", API_TOKEN)
        .env("CALLBRIDGE_CONSOLE_TOKEN", CONSOLE_TOKEN)
        .env("CALLBRIDGE_SOFTPHONE", "true")
        .env("CALLBRIDGE_SOFTPHONE_TOKEN", SOFTPHONE_TOKEN)
        .env("CALLBRIDGE_REPORT_URL", receiver.url("/reports"))
        .env("CALLBRIDGE_REPORT_SPOOL_DIR", &spool)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start callbridge serve");
    // Drain the pipes as it runs (trace output would fill them and block the bridge).
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let http = reqwest::Client::new();
    let end = tokio::time::Instant::now() + WAIT;
    while !http
        .get(format!("{public}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(tokio::time::Instant::now() < end, "bridge did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The pages, with their tokens in the query and in the header.
    for url in [
        format!("{public}/console?token={CONSOLE_TOKEN}"),
        format!("{public}/softphone?token={SOFTPHONE_TOKEN}"),
    ] {
        let r = http.get(url).send().await.expect("page");
        assert_eq!(r.status().as_u16(), 200);
    }
    let r = http
        .get(format!("{public}/softphone/profiles"))
        .bearer_auth(SOFTPHONE_TOKEN)
        .send()
        .await
        .expect("profiles");
    assert_eq!(r.status().as_u16(), 200);

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
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("signed media socket");
    let send = |v: serde_json::Value| Message::Text(v.to_string().into());
    ws.send(send(
        serde_json::json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
    ))
    .await
    .expect("send");
    ws.send(send(serde_json::json!({"event": "start", "sequenceNumber": "1", "streamSid": "MZlogs",
        "start": {"accountSid": ACCOUNT, "streamSid": "MZlogs", "callSid": "CAlogs", "tracks": ["inbound"],
                  "customParameters": {},
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})))
        .await
        .expect("send");
    while !sim
        .sessions()
        .first()
        .is_some_and(|s| s.received.iter().any(|e| e["type"] == "session.update"))
    {
        assert!(tokio::time::Instant::now() < end, "no session configured");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ws.send(send(
        serde_json::json!({"event": "stop", "sequenceNumber": "2", "streamSid": "MZlogs",
        "stop": {"accountSid": ACCOUNT, "callSid": "CAlogs"}}),
    ))
    .await
    .expect("send");
    while let Some(Ok(_)) = ws.next().await {}
    // The call's report, signed with the tool secret.
    let got = receiver.wait_until(WAIT, |r| !r.is_empty()).await;
    assert!(!got.is_empty(), "the report was delivered");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&spool);
    out.join().unwrap_or_default() + &err.join().unwrap_or_default()
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
