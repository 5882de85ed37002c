//! One console for every replica: `/console/events` on B streams the call running on A (with
//! the pod it runs on), B's snapshot lists it once ended, and B shows its transcript.

use std::time::Duration;

use callbridge::caller::{self, CallerOptions, Step};
use callbridge::sim::SimConfig;

mod support;
use support::nats::{start_replica, Nats};
use support::{get_ok_with_token, simulator, WAIT};

const CONSOLE_TOKEN: &str = "console-token-for-tests-1";

/// The console's feed on `base`: each server-sent event's JSON as it comes.
async fn follow(base: &str) -> tokio::sync::mpsc::UnboundedReceiver<serde_json::Value> {
    let mut resp = get_ok_with_token(&format!("{base}/console/events"), CONSOLE_TOKEN).await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                for data in event.lines().filter_map(|l| l.strip_prefix("data: ")) {
                    if let Ok(v) = serde_json::from_str(data) {
                        let _ = tx.send(v);
                    }
                }
            }
        }
    });
    rx
}

async fn next_where(
    feed: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(ev) = feed.recv().await {
            if wanted(&ev) {
                return Some(ev);
            }
        }
        None
    })
    .await;
    found
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no {what} on the feed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_on_b_streams_a_call_running_on_a() {
    let Some(nats) = Nats::start("console") else {
        return;
    };
    let sim = simulator(SimConfig {
        response_audio_ms: 1000,
        caller_transcripts: vec!["I would like to check my order".into()],
        ..SimConfig::default()
    })
    .await;
    let (sim_url, nats_url) = (sim.url(), nats.url());
    let env = [
        ("REALTIME_URL", sim_url.as_str()),
        ("OPENAI_API_KEY", "sk-test"),
        ("CALLBRIDGE_CONSOLE_TOKEN", CONSOLE_TOKEN),
    ];
    let (a, _) = start_replica(&nats_url, "pod-a", &env, None).await;
    let (b, _) = start_replica(&nats_url, "pod-b", &env, None).await;
    let mut feed = follow(&b.url("")).await;
    let snapshot = next_where(&mut feed, "snapshot", |e| e["type"] == "snapshot").await;
    assert_eq!(snapshot["active"].as_array().map(Vec::len), Some(0));

    const SID: &str = "CAconsole0000000000000000000002";
    caller::run(CallerOptions {
        bridge: a.url(""),
        call_sid: SID.into(),
        script: vec![
            Step::Silence(Duration::from_millis(300)),
            Step::Say(caller::synthetic_speech(800)),
            Step::WaitAgentDone {
                quiet: Duration::from_millis(500),
                timeout: Duration::from_secs(20),
            },
        ],
        ..CallerOptions::default()
    })
    .await
    .expect("the call on A runs");

    let started = next_where(&mut feed, "A's call starting", |e| e["type"] == "started").await;
    assert_eq!(started["call_sid"], SID);
    assert_eq!(started["call"]["pod"], "pod-a", "{started}");
    let ended = next_where(&mut feed, "A's call ending", |e| e["type"] == "ended").await;
    assert_eq!(ended["call"]["pod"], "pod-a");
    assert!(ended["call"]["outcome"].is_string(), "{ended}");

    // A console opened on B afterwards lists it, and shows its transcript.
    let mut later = follow(&b.url("")).await;
    let snapshot = next_where(&mut later, "snapshot", |e| e["type"] == "snapshot").await;
    let recent = snapshot["recent"].as_array().cloned().unwrap_or_default();
    let call = recent
        .iter()
        .find(|c| c["call_sid"] == SID)
        .unwrap_or_else(|| panic!("A's call in B's snapshot: {snapshot}"));
    assert_eq!(call["pod"], "pod-a");
    let detail: serde_json::Value = reqwest::Client::new()
        .get(b.url(&format!("/console/calls/{}?pod=pod-a", call["n"])))
        .bearer_auth(CONSOLE_TOKEN)
        .send()
        .await
        .expect("B answers")
        .json()
        .await
        .expect("json");
    let lines = detail["transcript"].as_array().cloned().unwrap_or_default();
    assert!(
        lines.iter().any(|l| l["text"] == "call started"),
        "A's call's lines on B: {detail}"
    );
    a.stop(Duration::from_secs(1)).await;
    b.stop(Duration::from_secs(1)).await;
    sim.shutdown().await;
}
