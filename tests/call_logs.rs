//! The call's agent profile is in its log lines, in text and in JSON logs: the real binary
//! with a profile, one call that chooses it, the "call ended" line read from stdout.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use callbridge::sim::{SimConfig, Simulator};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn wait_healthy(port: u16) {
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "bridge did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One call through the binary (log format `format`); returns everything it logged.
async fn one_call_logs(format: &str) -> String {
    let sim = Simulator::start("127.0.0.1:0", SimConfig::default())
        .await
        .expect("sim");
    let path =
        std::env::temp_dir().join(format!("cb-call-logs-{format}-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[profiles.sales]\nnumbers = [\"+15550001111\"]\ninstructions = \"You sell.\"\n",
    )
    .expect("write config");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env("CALLBRIDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("CALLBRIDGE_LOG_FORMAT", format)
        .env("REALTIME_URL", sim.url())
        .env("OPENAI_API_KEY", "sk-test")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start callbridge serve");
    wait_healthy(port).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/media"))
        .await
        .expect("media socket");
    let send = |v: serde_json::Value| Message::Text(v.to_string().into());
    ws.send(send(
        serde_json::json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
    ))
    .await
    .expect("send");
    ws.send(send(serde_json::json!({"event": "start", "sequenceNumber": "1", "streamSid": "MZlog1",
        "start": {"accountSid": "AC1", "streamSid": "MZlog1", "callSid": "CAlog1", "tracks": ["inbound"],
                  "customParameters": {"To": "+15550001111"},
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})))
        .await
        .expect("send");
    // Until the session is configured (the profile is chosen by then), then hang up.
    let end = tokio::time::Instant::now() + WAIT;
    while !sim
        .sessions()
        .first()
        .is_some_and(|s| s.received.iter().any(|e| e["type"] == "session.update"))
    {
        assert!(tokio::time::Instant::now() < end, "no session configured");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ws.send(send(
        serde_json::json!({"event": "stop", "sequenceNumber": "2",
        "streamSid": "MZlog1", "stop": {"accountSid": "AC1", "callSid": "CAlog1"}}),
    ))
    .await
    .expect("send");
    while let Some(Ok(_)) = ws.next().await {}
    // The "call ended" line is written before the socket closes; give the pipe a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut out);
    }
    let _ = std::fs::remove_file(&path);
    out
}

#[tokio::test]
async fn the_profile_is_in_the_call_lines_of_text_logs() {
    let out = strip_ansi(&one_call_logs("text").await);
    let ended = out
        .lines()
        .find(|l| l.contains("call ended"))
        .unwrap_or_else(|| panic!("no call ended line:\n{out}"));
    assert!(ended.contains("profile=\"sales\""), "{ended}");
}

/// Text logs are coloured even into a pipe.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn the_profile_is_in_the_call_lines_of_json_logs() {
    let out = one_call_logs("json").await;
    let ended: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "call ended")
        .unwrap_or_else(|| panic!("no call ended line:\n{out}"));
    assert_eq!(ended["span"]["profile"], "sales", "{ended:#}");
    assert!(
        ended["spans"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["profile"] == "sales")),
        "{ended:#}"
    );
}
