//! Tools through the real server: the simulated caller, the Realtime simulator making scripted
//! function calls, a local tool server that checks every request's signature with its own
//! HMAC (not the bridge's code), and the fake Twilio REST API (`support/tool_server.rs`). A
//! round trip in both dialects, the filler, failing and redirecting tools, `end_call` after
//! the goodbye was heard, and the bridge's time around a tool call. Transfers:
//! `tools_transfer.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callbridge::sim::{Probe, ProbeHandle, SessionProbe, SimDialect};
use serde_json::{json, Value};

mod support;
use support::caller::{pause, say};
use support::tool_server::*;

async fn round_trip(dialect: &str, sim_dialect: SimDialect) {
    let s = setup(
        sim_with(
            &[
                "Let me look that up.",
                "Your order has shipped and arrives Friday.",
                "Anything else?",
            ],
            vec![vec![("lookup_order", r#"{"order_id":"4417"}"#)]],
        ),
        dialect,
    )
    .await;
    let report = call(&s, script(1500)).await;
    assert!(
        report.protocol_violations.is_empty(),
        "{:?}",
        report.protocol_violations
    );
    let log = s.sim.session(0).expect("session");
    assert_eq!(log.dialect, sim_dialect);
    // Declared in session.update, with the built-ins.
    let update = log
        .received
        .iter()
        .find(|e| e["type"] == "session.update")
        .expect("session.update");
    let names: Vec<&str> = update["session"]["tools"]
        .as_array()
        .expect("tools declared")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"lookup_order")
            && names.contains(&"end_call")
            && names.contains(&"transfer_call"),
        "{names:?}"
    );
    assert_eq!(update["session"]["tool_choice"], "auto");
    // The tool got one signed request with the documented body.
    let hits = s.tools.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0].signed, "signature verified independently");
    let body = &hits[0].body;
    assert_eq!(body["tool"], "lookup_order");
    assert_eq!(body["arguments"], json!({"order_id":"4417"}));
    assert_eq!(body["call"]["call_sid"], CALL_SID);
    assert_eq!(body["call"]["account_sid"], ACCOUNT);
    assert_eq!(body["call"]["from"], "+15550100");
    assert!(body["call"]["stream_sid"]
        .as_str()
        .is_some_and(|s| s.starts_with("MZ")));
    // Its answer went to the model, then one response.create, and the model spoke again.
    let (outs, creates) = outputs(&s);
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].0, body["call_id"].as_str().unwrap());
    assert_eq!(
        outs[0].1,
        json!({"order_id":"4417","status":"shipped","eta":"Friday"})
    );
    assert_eq!(creates, 1);
    assert!(
        log.errors_sent == 0,
        "the simulator accepted everything: {:?}",
        log.sent
            .iter()
            .filter(|e| e["type"] == "error")
            .collect::<Vec<_>>()
    );
    assert!(
        log.responses_completed >= 2,
        "the model spoke about the result"
    );
    assert_metric_soon(
        &s.metrics,
        "callbridge_tool_calls_total{result=\"ok\",tool=\"lookup_order\"} 1",
    )
    .await;
    assert!(metric(
        &s.metrics,
        "callbridge_tool_seconds_count{tool=\"lookup_order\"} 1"
    ));
    // The call report has the tool call as the model made it and as the tool answered.
    let r = call_report(&s).await;
    let calls = r["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 1, "{r:#}");
    support::assert_tool_call_ok(
        &calls[0],
        "lookup_order",
        json!({"order_id":"4417"}),
        json!({"order_id":"4417","status":"shipped","eta":"Friday"}),
    );
    assert_eq!(r["transfer"], Value::Null);
    // Without profiles, the call counts under profile "none".
    assert!(
        metric(
            &s.metrics,
            "callbridge_calls_by_profile_total{outcome=\"caller_hung_up\",profile=\"none\"} 1"
        ),
        "{}",
        s.metrics.render()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_round_trip_ga() {
    round_trip("ga", SimDialect::Ga).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_round_trip_beta() {
    round_trip("beta", SimDialect::Beta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tool_plays_the_filler() {
    let (s, report) = call_with_tools(
        &["One moment.", "Found it."],
        &[("slow_lookup", r#"{"order_id":"1"}"#)],
        3500,
    )
    .await;
    let filler = callbridge::config::DEFAULT_FILLER;
    let probe = &filler[480..1280];
    let heard = report.agent_audio.windows(probe.len()).any(|w| w == probe);
    assert!(heard, "the caller heard the filler while the tool ran");
    let (outs, creates) = outputs(&s);
    assert_eq!(outs[0].1, json!({"status":"found"}));
    assert_eq!(creates, 1);
}

/// The model calls the tools of `lookups` in one answer, each `(tool, order)` with the
/// arguments `{"order_id":"<order>"}`, the caller listening until the agent has been quiet
/// 2.5 s: the setup, the outputs (one per call) and how many `response.create` came after the
/// last.
async fn each_call_answered(
    replies: &[&str],
    lookups: &[(&str, u32)],
) -> (Setup, Vec<(String, Value)>, usize) {
    let arguments: Vec<String> = lookups
        .iter()
        .map(|(_, order)| format!(r#"{{"order_id":"{order}"}}"#))
        .collect();
    let turn: Vec<(&str, &str)> = lookups
        .iter()
        .zip(&arguments)
        .map(|((tool, _), a)| (*tool, a.as_str()))
        .collect();
    let (s, _) = call_with_tools(replies, &turn, 2500).await;
    let (outs, creates) = outputs(&s);
    assert_eq!(outs.len(), lookups.len(), "{outs:?}");
    (s, outs, creates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_that_time_out_fail_or_babble_give_error_outputs() {
    let (s, outs, creates) = each_call_answered(
        &["Checking three systems.", "Sorry, they are all down."],
        &[("hangs", 1), ("broken", 1), ("chatty", 1)],
    )
    .await;
    assert_eq!(creates, 1, "one response.create after the three");
    let hits = s.tools.hits.lock().unwrap().clone();
    let by_tool = |t: &str| {
        let call_id = hits
            .iter()
            .find(|h| h.path == t)
            .map(|h| h.body["call_id"].clone())
            .unwrap();
        outs.iter()
            .find(|(c, _)| *c == call_id)
            .map(|(_, o)| o.clone())
            .unwrap()
    };
    let hangs = by_tool("hangs");
    assert_eq!(hangs["retryable"], true, "{hangs}");
    assert!(
        hangs["error"].as_str().unwrap().contains("1000 ms"),
        "{hangs}"
    );
    let broken = by_tool("broken");
    assert!(
        broken["error"].as_str().unwrap().contains("500"),
        "{broken}"
    );
    assert_eq!(broken["retryable"], true);
    let chatty = by_tool("chatty");
    assert!(
        chatty["error"].as_str().unwrap().contains("not JSON"),
        "{chatty}"
    );
    assert_eq!(chatty["retryable"], false);
    assert_eq!(
        hits.iter().filter(|h| h.path == "hangs").count(),
        1,
        "no retry after a timeout"
    );
    for (tool, result) in [
        ("hangs", "timeout"),
        ("broken", "http_error"),
        ("chatty", "not_json"),
    ] {
        let line = format!("callbridge_tool_calls_total{{result=\"{result}\",tool=\"{tool}\"}} 1");
        assert_metric_soon(&s.metrics, &line).await;
    }
}

/// Issue 18, finding 1: a tool answering a redirect got the bridge to POST the call's body,
/// signed, to another host (307) or to GET it with the signature header (302), and the other
/// host's answer went to the model. Now no redirect is followed: nothing reaches the other
/// host, the model is told the tool failed (not retryable), and the metric says `redirect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_that_redirect_are_not_followed_and_the_signature_stays_home() {
    let (s, outs, _) = each_call_answered(
        &["Let me check.", "That did not work."],
        &[("moved", 1), ("moved_get", 2)],
    )
    .await;
    for (_, out) in &outs {
        let err = out["error"].as_str().unwrap_or_default();
        assert!(err.contains("redirect"), "{out}");
        assert_eq!(out["retryable"], false, "{out}");
        assert!(
            !out.to_string().contains("nobody configured"),
            "the other host's answer reached the model: {out}"
        );
    }
    assert_eq!(
        s.tools.caught.lock().unwrap().clone(),
        Vec::<(String, String, bool)>::new(),
        "nothing reached the host the redirects named"
    );
    for tool in ["moved", "moved_get"] {
        let line = format!("callbridge_tool_calls_total{{result=\"redirect\",tool=\"{tool}\"}} 1");
        assert_metric_soon(&s.metrics, &line).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_call_hangs_up_only_after_the_goodbye_was_played() {
    let (s, report) = call_with_tools(
        &["Glad I could help.", "Goodbye, and have a nice day!"],
        &[("end_call", r#"{"reason":"the caller is done"}"#)],
        8000,
    )
    .await;
    let req = the_call_update(&s);
    assert_eq!(req.form, [("Status".to_string(), "completed".to_string())]);
    let ended = report.ended_by_twilio.expect("Twilio ended the stream");
    assert_eq!(
        ended.queued, 0,
        "nothing of the goodbye was left to play: {ended:?}"
    );
    assert_eq!(ended.played, ended.received, "{ended:?}");
    let log = s.sim.session(0).unwrap();
    assert_eq!(
        log.responses_completed, 2,
        "the goodbye was the second response"
    );
    // The goodbye is ~1.2 s: it played in full before the hang-up.
    assert!(
        report.bytes_played >= 2 * 1200 * 8,
        "{}",
        report.bytes_played
    );
    assert_metric_soon(
        &s.metrics,
        "callbridge_calls_total{outcome=\"agent_hung_up\"} 1",
    )
    .await;
    assert!(metric(
        &s.metrics,
        "callbridge_tool_calls_total{result=\"ok\",tool=\"end_call\"} 1"
    ));
}

// ---- measurement ------------------------------------------------------------------------

#[derive(Default)]
struct Stamps {
    /// `…function_call_arguments.done` handed to the simulator's socket.
    call_sent: Vec<Instant>,
    /// `conversation.item.create` (the output) read from the simulator's socket.
    output_read: Vec<Instant>,
}

struct Stamper(Arc<Mutex<Stamps>>);
impl Probe for Stamper {
    fn session(&self, _n: u64) -> Box<dyn SessionProbe> {
        Box::new(Stamper(self.0.clone()))
    }
}
impl SessionProbe for Stamper {
    fn function_call_sent(&mut self, _call_id: &str, at: Instant) {
        self.0.lock().unwrap().call_sent.push(at);
    }
    fn event_received(&mut self, ty: &str, at: Instant) {
        if ty == "conversation.item.create" {
            self.0.lock().unwrap().output_read.push(at);
        }
    }
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    )
}

/// Bridge-added time around a tool call, measured from outside the bridge: the simulator
/// stamps `…arguments.done` before writing it and the output when its read returns; the tool
/// server stamps the request on arrival and the answer when handed back. Each interval also
/// holds a loopback hop (WebSocket or HTTP) and the peer's parsing, so it bounds the bridge's
/// own share from above. 300 tool calls back to back (each answer's `response.create` makes
/// the simulator call the tool again, with no audio in between).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: cargo test --release --test tools measure_bridge_added_time -- --ignored --nocapture"]
async fn measure_bridge_added_time() {
    const N: usize = 300;
    let stamps = Arc::new(Mutex::new(Stamps::default()));
    let mut sim = sim_with(
        &[""],
        vec![vec![("lookup_order", r#"{"order_id":"1"}"#)]; N],
    );
    sim.reply_audio = vec![Arc::new(Vec::new())];
    sim.record_events = false;
    sim.probe = Some(ProbeHandle(Arc::new(Stamper(stamps.clone()))));
    let s = setup(sim, "ga").await;
    let _ = call(&s, vec![pause(200), say(600), pause(15000)]).await;
    let st = stamps.lock().unwrap();
    let times = s.tools.times.lock().unwrap().clone();
    let n = st
        .call_sent
        .len()
        .min(times.len())
        .min(st.output_read.len());
    assert!(n >= N / 2, "only {n} tool calls completed");
    let to_request: Vec<Duration> = (0..n).map(|i| times[i].0 - st.call_sent[i]).collect();
    let to_output: Vec<Duration> = (0..n).map(|i| st.output_read[i] - times[i].1).collect();
    println!("{n} tool calls");
    println!(
        "arguments.done sent → tool request received:   {}",
        percentiles(to_request)
    );
    println!(
        "tool answer sent → function_call_output read: {}",
        percentiles(to_output)
    );
}
