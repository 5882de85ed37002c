//! Call reports: one per call, spooled before the first try, retried until a 2xx with the same
//! Idempotency-Key, refused ones kept in dead/, nothing lost when the bridge is killed, and every
//! report valid against the schema shipped in schemas/.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callbridge::caller::Step;
use callbridge::metrics::Metrics;
use callbridge::server::Running;
use callbridge::sim::receiver::{Received, Receiver};
use callbridge::sim::SimConfig;

mod support;
use support::binary::{self, Process};
use support::caller::{agent_done, hear_agent, pause, place_call_as, say};
use support::reports::{self, receiver_and_spool, SECRET};
use support::schema::assert_valid;
use support::spooled;
use support::{assert_contains_all, bridge, eventually, simulator, TempDir, WAIT};

/// A bridge reporting as [`reports::env`]'s, its transcripts by `gpt-4o-transcribe`.
fn env_for<'a>(report_url: &'a str, spool: &'a TempDir) -> Vec<(&'a str, &'a str)> {
    let mut env = reports::env(report_url, spool);
    env.push(("CALLBRIDGE_TRANSCRIPTION_MODEL", "gpt-4o-transcribe"));
    env
}

/// A call whose upstream is unreachable: it ends at once (`upstream_failed`).
async fn short_call(bridge_url: &str, call_sid: &str) {
    place_call_as(bridge_url.to_owned(), call_sid, vec![say(400)], 500).await;
}

/// A report receiver with its scripted answers, an empty spool, and a free port: what a
/// bridge reporting to them (`env_for`) needs, in this process or as the `callbridge` binary.
struct Reporting {
    rx: Receiver,
    spool: TempDir,
    report_url: String,
    port: u16,
}

impl Reporting {
    /// The receiver answers `answers` (then 200); the spool is named by `tag`.
    async fn new(answers: &[u16], tag: &str) -> Self {
        let (rx, spool, report_url) = receiver_and_spool(answers, tag).await;
        Reporting {
            rx,
            spool,
            report_url,
            port: binary::free_port(),
        }
    }

    /// The receiver down (503 until told otherwise), and the binary serving (healthy) with it.
    async fn down_serving(tag: &str) -> (Self, Process) {
        let down = Reporting::new(&[503; 1000], tag).await;
        let process = down.serve().await;
        (down, process)
    }

    fn env(&self) -> Vec<(&str, &str)> {
        env_for(&self.report_url, &self.spool)
    }

    /// The binary's base URL.
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the binary (again, after a kill) and waits until it is healthy.
    async fn serve(&self) -> Process {
        binary::serve_healthy(self.port, &self.env()).await
    }

    /// A bridge in this process reporting here, `env` over [`env_for`]'s.
    async fn bridge(&self, env: &[(&str, &str)]) -> (Running, Arc<Metrics>) {
        let mut all = self.env();
        all.extend(env);
        bridge::start(&all, None).await
    }
}

async fn wait_spool_empty(dir: &Path) {
    eventually(WAIT, async || spooled(dir).is_empty()).await;
    assert!(spooled(dir).is_empty(), "spool left: {:?}", spooled(dir));
}

/// A real conversation (speech, an answer, a key, a barge-in) fails twice at the receiver, then
/// is accepted: delivered once, the same Idempotency-Key and a valid signature on every try,
/// the spool empty afterwards, and the report valid against the schema.
#[tokio::test]
async fn a_report_is_retried_until_accepted_with_one_idempotency_key() {
    let sim = simulator(SimConfig {
        response_audio_ms: 3000,
        pace: 4.0,
        always_transcribe: true,
        ..SimConfig::default()
    })
    .await;
    let rx = Receiver::spawn(SECRET, &[500, 503])
        .await
        .expect("receiver");
    let spool = TempDir::new("reports-retry");
    let (report_url, sim_url) = (rx.url("/reports"), sim.url());
    let mut env = env_for(&report_url, &spool);
    env.push(("REALTIME_URL", &sim_url));
    let (server, metrics) = bridge::start(&env, None).await;
    let script = vec![
        pause(200),
        say(1000),
        hear_agent(800, 10),
        Step::Dtmf('7'),
        say(800),
        agent_done(500, 15),
    ];
    place_call_as(server.url(""), "CAreport1", script, 200).await;

    rx.wait_until(WAIT, |r| r.iter().any(|x| x.answered == 200))
        .await;
    wait_spool_empty(&spool).await;
    let got: Vec<Received> = rx.received();
    assert_eq!(
        got.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 503, 200],
        "two failures, then delivered once"
    );
    let report = got[2].json();
    let id = report["report_id"].as_str().expect("report_id").to_owned();
    for r in &got {
        assert_eq!(r.idempotency_key.as_deref(), Some(id.as_str()));
        assert!(r.signature_ok, "signed with tool_secret: {:?}", r.signature);
        assert_eq!(r.path, "/reports");
        assert_eq!(r.body, got[0].body, "the same bytes every try");
    }
    assert_valid("call-report.schema.json", &report);
    assert_eq!(report["call_sid"], "CAreport1");
    assert_eq!(report["direction"], "inbound");
    assert_eq!(report["outcome"], "caller_hung_up");
    assert_eq!(report["dtmf"], serde_json::json!(["7"]));
    assert!(report["barge_ins"].as_u64().unwrap_or(0) >= 1, "{report:#}");
    let lines = report["transcript"].as_array().expect("transcript");
    assert!(
        lines.iter().any(|l| l["role"] == "caller") && lines.iter().any(|l| l["role"] == "agent"),
        "{report:#}"
    );
    assert!(
        report["turn_latency_ms"]["max"].as_u64().is_some(),
        "{report:#}"
    );
    assert_eq!(report["tool_calls"], serde_json::json!([]));
    let m = metrics.render();
    assert_contains_all(
        &m,
        &[
            r#"callbridge_reports_total{result="delivered"} 1"#,
            r#"callbridge_reports_total{result="retried"} 2"#,
        ],
    );
    assert_contains_all(&m, &["callbridge_report_backlog 0"]);
    server.stop(Duration::from_secs(1)).await;
}

/// A 400 is final: one try, the report and the receiver's answer in dead/, a metric.
#[tokio::test]
async fn a_refused_report_goes_to_dead_with_the_answer() {
    let refusing = Reporting::new(&[400], "reports-dead").await;
    let (rx, spool) = (&refusing.rx, &refusing.spool);
    let (server, metrics) = refusing.bridge(&[]).await;
    short_call(&server.url(""), "CAdead1").await;
    let dead = spool.join("dead");
    eventually(WAIT, async || spooled(&dead).len() >= 2).await;
    let files = spooled(&dead);
    assert_eq!(files.len(), 2, "report + answer: {files:?}");
    assert!(spooled(spool).is_empty(), "no longer pending");
    let answer_file = files
        .iter()
        .find(|f| f.ends_with(".answer.json"))
        .expect("answer");
    let answer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dead.join(answer_file)).expect("read"))
            .expect("json");
    assert_eq!(answer["status"], 400);
    assert_eq!(answer["answer"], "test receiver answers 400");
    let got = rx.received();
    assert_eq!(got.len(), 1, "not retried");
    let report = got[0].json();
    assert_valid("call-report.schema.json", &report);
    assert_eq!(report["outcome"], "upstream_failed");
    assert_eq!(report["call_sid"], "CAdead1");
    let m = metrics.render();
    assert_contains_all(&m, &[r#"callbridge_reports_total{result="dead"} 1"#]);
    server.stop(Duration::from_secs(1)).await;
}

/// The receiver is down (503) while two calls end; the bridge is killed with SIGKILL; after a
/// restart the spooled reports are delivered, each once accepted, with its own key.
#[tokio::test]
async fn reports_pending_at_sigkill_are_delivered_after_restart() {
    let (down, first) = Reporting::down_serving("reports-kill").await;
    short_call(&down.url(), "CAkill1").await;
    short_call(&down.url(), "CAkill2").await;
    // Both reports tried (so both were spooled) and refused for now.
    let got = down
        .rx
        .wait_until(WAIT, |r| {
            let mut keys: Vec<_> = r.iter().filter_map(|x| x.idempotency_key.clone()).collect();
            keys.sort();
            keys.dedup();
            keys.len() >= 2
        })
        .await;
    assert!(got.len() >= 2, "{got:?}");
    first.kill();
    assert_eq!(
        spooled(&down.spool).len(),
        2,
        "both reports survive the kill"
    );

    down.rx.script(&[]);
    let _second = Process::spawn(&mut binary::serve(down.port, "warn", &down.env()));
    let got = down
        .rx
        .wait_until(WAIT, |r| {
            r.iter().filter(|x| x.answered == 200).count() >= 2
        })
        .await;
    wait_spool_empty(&down.spool).await;
    let accepted: Vec<&Received> = got.iter().filter(|x| x.answered == 200).collect();
    // Each report is accepted, with its own key. A request the killed bridge had on the wire
    // may still reach the receiver after the kill and be accepted too (at-least-once: the
    // restarted bridge cannot know, and sends it again with the same idempotency key, which is
    // how the receiver drops the copy).
    let mut keys: Vec<&str> = accepted
        .iter()
        .filter_map(|r| r.idempotency_key.as_deref())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 2, "two reports, each accepted: {accepted:?}");
    assert!(accepted.len() <= 3, "at most the one in flight twice");
    let mut sids: Vec<String> = accepted
        .iter()
        .map(|r| {
            let doc = r.json();
            assert_valid("call-report.schema.json", &doc);
            assert_eq!(r.idempotency_key.as_deref(), doc["report_id"].as_str());
            doc["call_sid"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    sids.sort();
    sids.dedup();
    assert_eq!(sids, ["CAkill1", "CAkill2"]);
}

/// Past `report_spool_max` the oldest undelivered report is dropped (error log + metric); the
/// newest stays.
#[tokio::test]
async fn the_spool_is_bounded_and_drops_the_oldest() {
    let reports = Reporting::new(&[503; 1000], "reports-bound").await;
    let (server, metrics) = reports
        .bridge(&[("CALLBRIDGE_REPORT_SPOOL_MAX", "1")])
        .await;
    short_call(&server.url(""), "CAold").await;
    reports.rx.wait_until(WAIT, |r| !r.is_empty()).await;
    short_call(&server.url(""), "CAnew").await;
    eventually(WAIT, async || {
        metrics
            .render()
            .contains(r#"callbridge_reports_total{result="dropped"} 1"#)
    })
    .await;
    let left = spooled(&reports.spool);
    assert_eq!(left.len(), 1, "{left:?}");
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.spool.join(&left[0])).expect("read"))
            .expect("json");
    let body: serde_json::Value =
        serde_json::from_str(kept["body"].as_str().expect("body")).expect("report");
    assert_eq!(body["call_sid"], "CAnew", "the newest is kept");
    assert!(metrics.render().contains("callbridge_report_backlog 1"));
    server.stop(Duration::from_secs(1)).await;
}

/// Twilio's final status of an outbound call that never connected (unsigned: these bridges
/// have no auth token), which makes a report.
async fn no_answer(bridge_url: &str, call_sid: &str) {
    let form = [("CallSid", call_sid), ("CallStatus", "no-answer")];
    let status = reqwest::Client::new()
        .post(format!("{bridge_url}/twilio/status"))
        .form(&form)
        .send()
        .await
        .expect("bridge answers")
        .status();
    assert_eq!(status, 204);
}

/// Waits until the metrics `scrape` returns contain `line`; returns them.
async fn wait_metric<F, S>(scrape: S, line: &str) -> String
where
    S: Fn() -> F,
    F: std::future::Future<Output = String>,
{
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        let m = scrape().await;
        if m.contains(line) || tokio::time::Instant::now() >= end {
            assert!(m.contains(line), "{line} not in:\n{m}");
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The reports in `dir` (their answers aside), each checked to have its answer beside it.
/// [`wait_metric`] on the metrics of a bridge running in this process.
async fn wait_counted(metrics: &Metrics, line: &str) -> String {
    wait_metric(|| std::future::ready(metrics.render()), line).await
}

fn buried(dir: &Path) -> Vec<String> {
    let files = spooled(dir);
    let reports: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with(".answer.json"))
        .cloned()
        .collect();
    assert_eq!(
        files.len(),
        2 * reports.len(),
        "a report with its answer: {files:?}"
    );
    for r in &reports {
        assert!(files.contains(&format!("{r}.answer.json")), "{files:?}");
    }
    reports
}

/// A receiver refusing 30 reports with `report_dead_max = 5`: dead/ keeps 5 (with their answers)
/// and the metric counts the 25 removed.
#[tokio::test]
async fn dead_is_bounded_by_report_dead_max() {
    let reports = Reporting::new(&[400; 100], "reports-dead-max").await;
    let (server, metrics) = reports.bridge(&[("CALLBRIDGE_REPORT_DEAD_MAX", "5")]).await;
    for i in 0..30 {
        no_answer(&server.url(""), &format!("CAdeadmax{i}")).await;
    }
    let m = wait_counted(&metrics, r#"callbridge_reports_total{result="dead"} 30"#).await;
    assert_eq!(buried(&reports.spool.join("dead")).len(), 5);
    assert_contains_all(
        &m,
        &[r#"callbridge_reports_dead_pruned_total{reason="count"} 25"#],
    );
    assert!(m.contains(r#"callbridge_reports_dead_pruned_total{reason="age"} 0"#));
    server.stop(Duration::from_secs(1)).await;
}

/// With `report_dead_max_age_s = 1` a report buried more than a second ago goes at the next
/// burial, and the survivor goes when a bridge starts on the spool later.
#[tokio::test]
async fn dead_reports_past_their_age_go_at_the_next_burial_and_at_start() {
    let (_rx, spool, report_url) = receiver_and_spool(&[400; 100], "reports-dead-age").await;
    let dead = spool.join("dead");
    let mut env = env_for(&report_url, &spool);
    env.push(("CALLBRIDGE_REPORT_DEAD_MAX_AGE_S", "1"));
    let (server, metrics) = bridge::start(&env, None).await;
    no_answer(&server.url(""), "CAage1").await;
    wait_counted(&metrics, r#"callbridge_reports_total{result="dead"} 1"#).await;
    let first = buried(&dead);
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    no_answer(&server.url(""), "CAage2").await;
    wait_counted(
        &metrics,
        r#"callbridge_reports_dead_pruned_total{reason="age"} 1"#,
    )
    .await;
    let second = buried(&dead);
    assert_eq!(second.len(), 1);
    assert_ne!(second, first, "the older one went");
    server.stop(Duration::from_secs(1)).await;

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (server, metrics) = bridge::start(&env, None).await;
    // The server opens the spool once it runs, after `bridge` returned.
    wait_counted(
        &metrics,
        r#"callbridge_reports_dead_pruned_total{reason="age"} 1"#,
    )
    .await;
    assert!(buried(&dead).is_empty(), "pruned at start-up");
    server.stop(Duration::from_secs(1)).await;
}

/// A report still in the spool when the bridge is killed is known after the restart: the
/// replayed callback is not spooled a second time, and the receiver sees one Idempotency-Key.
#[tokio::test]
async fn a_replay_after_a_restart_is_not_spooled_again() {
    let (down, first) = Reporting::down_serving("reports-replay-restart").await;
    no_answer(&down.url(), "CAreplayed").await;
    down.rx.wait_until(WAIT, |r| !r.is_empty()).await;
    first.kill();
    assert_eq!(spooled(&down.spool).len(), 1);

    let _second = down.serve().await;
    no_answer(&down.url(), "CAreplayed").await;
    let scrape = || async {
        match reqwest::get(format!("{}/metrics", down.url())).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    };
    wait_metric(scrape, r#"callbridge_reports_total{result="duplicate"} 1"#).await;
    assert_eq!(spooled(&down.spool).len(), 1, "not written a second time");
    down.rx.script(&[]);
    wait_spool_empty(&down.spool).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = down.rx.received();
    let id = callbridge::report::unconnected_report_id("CAreplayed");
    assert!(
        got.iter()
            .all(|r| r.idempotency_key.as_deref() == Some(id.as_str())),
        "{got:?}"
    );
    assert_eq!(got.iter().filter(|r| r.answered == 200).count(), 1);
}
