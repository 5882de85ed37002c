//! The call's agent profile is in its log lines, in text and in JSON logs: the real binary
//! with a profile, one call that chooses it, the "call ended" line read from stdout.

use std::time::Duration;

use callbridge::sim::SimConfig;
use futures_util::SinkExt;

mod support;
use support::binary::{self, Process};
use support::{media, simulator, TempDir};

/// One call through the binary (log format `format`); returns everything it logged.
async fn one_call_logs(format: &str) -> String {
    let sim = simulator(SimConfig::default()).await;
    let dir = TempDir::new(&format!("call-logs-{format}"));
    let path = dir.file(
        "callbridge.toml",
        "[profiles.sales]\nnumbers = [\"+15550001111\"]\ninstructions = \"You sell.\"\n",
    );
    let port = binary::free_port();
    let child = Process::spawn(
        binary::serve(
            port,
            "info",
            &[
                ("CALLBRIDGE_LOG_FORMAT", format),
                ("REALTIME_URL", &sim.url()),
                ("OPENAI_API_KEY", "sk-test"),
            ],
        )
        .arg("--config")
        .arg(&path),
    );
    binary::wait_healthy(port).await;

    let mut ws = media::connect(format!("ws://127.0.0.1:{port}/media")).await;
    ws.send(media::start(
        "AC1",
        "MZlog1",
        "CAlog1",
        serde_json::json!({"To": "+15550001111"}),
    ))
    .await
    .expect("send");
    // Until the session is configured (the profile is chosen by then), then hang up.
    media::configured(&sim, 0).await;
    media::hang_up(&mut ws, media::stop("AC1", "MZlog1", "CAlog1")).await;
    // The "call ended" line is written before the socket closes; give the pipe a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.output()
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
