//! Every call knows its cost: the real server and the simulator, a call across rotated sessions;
//! the report's `usage` is exactly the sum of every `response.done` usage every session sent,
//! `cost_usd` is that priced with the configured table (to the cent), the metric counts the same
//! tokens, and the report is valid against the schema.

use std::time::Duration;

use callbridge::realtime::usage::KINDS;
use callbridge::sim::receiver::Receiver;
use callbridge::sim::{SimConfig, Simulator};
use serde_json::Value;

mod support;
use support::caller::{agent_done, pause, place_call_as, say};
use support::schema::assert_valid;
use support::{bridge, simulator, TempDir, WAIT};

const SECRET: &str = "cost-secret-for-tests-1";
/// USD per 1M tokens, in KINDS order: the file's override of the default for the simulator's
/// model (`gpt-realtime-2.1`).
const PRICES: [f64; 6] = [5.0, 40.0, 0.5, 0.25, 20.0, 80.0];

/// The six billing kinds of one `usage` object, read the way the SDK documents it (cached
/// tokens are a subset of the input tokens), with nothing from the bridge.
fn kinds(u: &Value) -> [u64; 6] {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let i = &u["input_token_details"];
    let c = &i["cached_tokens_details"];
    let o = &u["output_token_details"];
    [
        n(&i["text_tokens"]) - n(&c["text_tokens"]),
        n(&i["audio_tokens"]) - n(&c["audio_tokens"]),
        n(&c["text_tokens"]),
        n(&c["audio_tokens"]),
        n(&o["text_tokens"]),
        n(&o["audio_tokens"]),
    ]
}

/// The Realtime simulator answering each turn with `audio_ms` of audio, the report receiver,
/// and a report spool named after `spool`.
async fn sim_and_receiver(audio_ms: u32, spool: &str) -> (Simulator, Receiver, TempDir) {
    let sim = simulator(SimConfig {
        response_audio_ms: audio_ms,
        ..SimConfig::default()
    })
    .await;
    let rx = Receiver::spawn(SECRET, &[]).await.expect("receiver");
    (sim, rx, TempDir::new(spool))
}

/// The bridge's settings: the simulator at `sim_url`, reports to `report_url` spooled in `spool`.
fn env<'a>(sim_url: &'a str, report_url: &'a str, spool: &'a TempDir) -> Vec<(&'a str, &'a str)> {
    vec![
        ("REALTIME_URL", sim_url),
        ("OPENAI_API_KEY", "sk-test-not-a-real-key"),
        ("CALLBRIDGE_REPORT_URL", report_url),
        ("CALLBRIDGE_REPORT_SPOOL_DIR", spool.to_str()),
        ("CALLBRIDGE_TOOL_SECRET", SECRET),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_usage_and_cost_are_the_sum_over_its_sessions() {
    let (sim, rx, spool) = sim_and_receiver(500, "cost-spool").await;
    let dir = TempDir::new("cost-config");
    let mut toml = String::from("[prices.\"gpt-realtime-2.1\"]\n");
    for (k, p) in KINDS.iter().zip(PRICES) {
        toml.push_str(&format!("{k} = {p}\n"));
    }
    let file = dir.file("callbridge.toml", &toml);
    let (sim_url, report_url) = (sim.url(), rx.url("/reports"));
    let mut env = env(&sim_url, &report_url, &spool);
    env.push(("CALLBRIDGE_SESSION_ROTATE_AFTER_SECS", "4"));
    let (server, _metrics) = bridge::start(&env, Some(&file)).await;
    // Turns of about 2 s, sessions of 4 s: each session answers about twice, so its later
    // answers have cached input, and the call spans several sessions.
    let mut script = vec![say(700), agent_done(300, 15)];
    for _ in 0..5 {
        script.extend([pause(500), say(700), agent_done(300, 15)]);
    }
    place_call_as(server.url(""), "CAcost1", script, 300).await;
    rx.wait_until(WAIT, |r| r.iter().any(|x| x.answered == 200))
        .await;
    let report = rx.received()[0].json();
    assert_valid("call-report.schema.json", &report);

    let sessions = sim.sessions();
    assert!(sessions.len() >= 2, "the call rotated: {}", sessions.len());
    let mut want = [0u64; 6];
    let mut responses = 0;
    for s in &sessions {
        for done in s.sent_of("response.done") {
            responses += 1;
            for (w, n) in want.iter_mut().zip(kinds(&done["response"]["usage"])) {
                *w += n;
            }
        }
    }
    eprintln!(
        "usage {want:?}: {} sessions, {responses} responses",
        sessions.len()
    );
    assert!(responses >= 6, "every turn answered: {responses}");
    assert!(
        want[0] > 0 && want[1] > 0 && want[4] > 0 && want[5] > 0,
        "text and audio both ways: {want:?}"
    );
    // A session's second answer has cached input (the first one's context): usually the case
    // here, though a slow machine can make every session answer once.
    if sessions
        .iter()
        .any(|s| s.sent_of("response.done").count() >= 2)
    {
        assert!(want[2] > 0 && want[3] > 0, "cached input: {want:?}");
    }
    let usage = &report["usage"];
    for (k, w) in KINDS.iter().zip(want) {
        assert_eq!(usage[*k].as_u64(), Some(w), "{k}: {report:#}");
    }
    assert_eq!(usage["responses"].as_u64(), Some(responses));

    let cost: f64 = want
        .iter()
        .zip(PRICES)
        .map(|(n, p)| *n as f64 * p / 1e6)
        .sum();
    let got = report["cost_usd"].as_f64().expect("cost_usd with a price");
    assert!((got - cost).abs() < 1e-6, "cost_usd {got} != {cost}");
    assert!(got > 0.0);

    let lines: Vec<String> = KINDS
        .iter()
        .zip(want)
        .map(|(k, w)| format!(r#"callbridge_model_tokens_total{{kind="{k}"}} {w}"#))
        .collect();
    let page = bridge::scrape(&server).await;
    for l in &lines {
        assert!(page.contains(l.as_str()), "{l} in:\n{page}");
    }
    server.stop(Duration::from_secs(1)).await;
    sim.shutdown().await;
}

/// A model with no price (none configured, no default) gets usage but no `cost_usd`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_price_no_cost() {
    let (sim, rx, spool) = sim_and_receiver(400, "cost-spool-none").await;
    let (sim_url, report_url) = (sim.url(), rx.url("/reports"));
    let mut env = env(&sim_url, &report_url, &spool);
    env.push(("CALLBRIDGE_MODEL", "a-model-nobody-priced"));
    let (server, _metrics) = bridge::start(&env, None).await;
    place_call_as(
        server.url(""),
        "CAcost2",
        vec![say(800), agent_done(500, 15)],
        200,
    )
    .await;
    rx.wait_until(WAIT, |r| r.iter().any(|x| x.answered == 200))
        .await;
    let report = rx.received()[0].json();
    assert_valid("call-report.schema.json", &report);
    assert!(
        report["usage"]["output_audio"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
    assert!(report.get("cost_usd").is_none(), "{report:#}");
    server.stop(Duration::from_secs(1)).await;
    sim.shutdown().await;
}
