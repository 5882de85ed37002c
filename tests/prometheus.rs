//! The metrics as operators see them: a real Prometheus scrapes the real bridge during a call
//! through the simulator, its HTTP API shows the turn-level histograms counting the call's
//! turns, every Grafana panel's query parses and returns data, and the alert rules pass
//! promtool's checks and unit tests.
//!
//! Prometheus and promtool come from Debian's `prometheus` package (`.ci/run` installs it).
//! Without them these tests say so and check nothing, except under `CI=true`, where they fail.

mod support;
use support::binary::free_port;
use support::caller::{barge_in_script, place_call};
use support::{bridge, tools, TempDir};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use callbridge::sim::{Fault, SimConfig};

const INSTALL: &str = "apt-get install -y prometheus (Debian; brings promtool too)";

/// Panels whose metric another issue adds: their queries must parse, and return data once the
/// bridge exports the metric (checked against `/metrics`); until then they may be empty.
const WAITING: &[(&str, &str, &str)] = &[
    (
        "Upstream reconnects and rotations",
        "callbridge_upstream_reconnects_total",
        "issue 9 (upstream reconnect and rotation)",
    ),
    ("Tool latency", "callbridge_tool_seconds", "issue 7 (tools)"),
    (
        "Report backlog",
        "callbridge_report_backlog",
        "issue 8 (call reports)",
    ),
];

/// A child process killed when the test ends, however it ends.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Prom {
    base: String,
    http: reqwest::Client,
    _proc: Proc,
    _dir: TempDir,
}

impl Prom {
    /// A real Prometheus on a free loopback port scraping `target` every second, with the
    /// repository's alert rules loaded (so they must load in a real server too).
    fn start(bin: &Path, target: &str) -> Prom {
        let dir = TempDir::new("prom");
        std::fs::create_dir_all(dir.join("data")).expect("temp dir");
        let rules = tools::root().join("deploy/prometheus/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: callbridge\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules.display()
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Prom {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _proc: Proc(child),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query: `Ok(result vector)` or `Err(Prometheus's error, or the transport's)`.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let resp = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("request: {e}"))?;
        let body: Value = resp.json().await.map_err(|e| format!("body: {e}"))?;
        if body["status"] != "success" {
            return Err(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("?"),
                body["error"].as_str().unwrap_or("?")
            ));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The sum of a query's sample values (0 when it has none).
    async fn value(&self, expr: &str) -> f64 {
        let r = self
            .query(expr)
            .await
            .unwrap_or_else(|e| panic!("{expr}: {e}"));
        r.iter().filter_map(sample).sum()
    }

    /// Polls until `expr` sums to at least `want` (Prometheus scrapes once a second).
    async fn wait_for(&self, expr: &str, want: f64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = match self.query(expr).await {
                Ok(r) => r.iter().filter_map(sample).sum(),
                Err(_) => f64::NAN,
            };
            if got >= want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: `{expr}` is {got}, waited 60 s for {want}\nprometheus log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A vector sample's value.
fn sample(v: &Value) -> Option<f64> {
    v["value"][1].as_str()?.parse().ok()
}

/// Every panel in the dashboard (rows hold theirs inline, or nested when collapsed).
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

/// Grafana's interval variables, as Grafana would fill them for a short dashboard range.
fn grafana_expr(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_turn_metrics_and_every_dashboard_panel_returns_data() {
    let Some(prometheus) = tools::tool("prometheus", INSTALL) else {
        return;
    };
    let (sim, server, _) = bridge::with_simulator(
        SimConfig {
            response_audio_ms: 3000,
            delta_ms: vec![100, 250],
            pace: 4.0,
            require_api_key: Some("sk-test-not-a-real-key".into()),
            // One `error` event after the first (interrupted) answer: the upstream-errors
            // panel gets data, and the call goes on.
            faults: vec![Fault::ErrorAfterResponses(1)],
            ..SimConfig::default()
        },
        &[("OPENAI_API_KEY", "sk-test-not-a-real-key")],
    )
    .await;
    let prom = Prom::start(&prometheus, &server.addr.to_string());
    prom.wait_for("up{job=\"callbridge\"}", 1.0, "the bridge is scraped")
        .await;

    // Two caller turns; the caller talks over the first answer (one barge-in).
    let script = barge_in_script(1000, (1000, 15), 800, (500, 20));
    let report = place_call(server.url(""), script, 200).await;
    assert_eq!(report.clears.len(), 1, "one barge-in: {:?}", report.clears);
    let turns = report.response_latencies.len();
    assert_eq!(turns, 2, "the agent answered both turns");

    // The call is over once its outcome is counted; then one more scrape has everything.
    prom.wait_for(
        "callbridge_calls_total{outcome=\"caller_hung_up\"}",
        1.0,
        "the call's end is scraped",
    )
    .await;
    prom.wait_for(
        "callbridge_turn_latency_seconds_count",
        turns as f64,
        "both turns counted",
    )
    .await;
    // A rate needs two samples of a series: the outcome counter appeared at the call's end.
    prom.wait_for(
        "count_over_time(callbridge_calls_total[1m])",
        2.0,
        "two scrapes after the call",
    )
    .await;

    // What the histograms counted, read back through Prometheus.
    assert_eq!(
        prom.value("callbridge_turn_latency_seconds_count").await,
        turns as f64,
        "one turn latency per caller turn answered"
    );
    // The bridge's turn starts at speech_stopped (after the caller's last word) and ends when
    // the frame is written (before the caller reads it): inside what the caller measured.
    let bridge_turns = prom.value("callbridge_turn_latency_seconds_sum").await;
    let caller_turns: f64 = report
        .response_latencies
        .iter()
        .map(|d| d.as_secs_f64())
        .sum();
    assert!(
        bridge_turns > 0.0 && bridge_turns < caller_turns,
        "turn latency sum {bridge_turns:.3} s vs the caller's {caller_turns:.3} s"
    );
    let session = &sim.sessions()[0];
    let responses = session.responses_completed + session.responses_cancelled;
    assert_eq!(
        prom.value("callbridge_model_latency_seconds_count").await,
        responses as f64,
        "one model latency per response"
    );
    assert_eq!(
        prom.value("callbridge_bargein_reaction_seconds_count")
            .await,
        1.0
    );
    assert_eq!(prom.value("callbridge_barge_ins_total").await, 1.0);
    let truncate = &session.truncates;
    assert_eq!(truncate.len(), 1);
    assert_eq!(
        prom.value("callbridge_truncate_heard_seconds_count").await,
        1.0
    );
    let heard = prom.value("callbridge_truncate_heard_seconds_sum").await;
    assert!(
        (heard - truncate[0].audio_end_ms as f64 / 1000.0).abs() < 0.0015,
        "truncate_heard {heard} s = the truncate sent upstream ({} ms)",
        truncate[0].audio_end_ms
    );
    let up = prom
        .value("callbridge_bridge_added_seconds_count{direction=\"up\"}")
        .await;
    assert!(
        up > 0.0 && up <= report.frames_sent as f64,
        "one observation per caller frame appended: {up} of {} frames",
        report.frames_sent
    );
    assert!(
        prom.value("callbridge_bridge_added_seconds_count{direction=\"down\"}")
            .await
            > 0.0
    );
    assert!(
        prom.value("callbridge_twilio_playback_lag_seconds_count")
            .await
            > 0.0,
        "playback lag sampled at echoed marks"
    );
    assert_eq!(
        prom.value("callbridge_upstream_errors_total{code=\"server_error\"}")
            .await,
        1.0
    );
    assert!(prom.value("callbridge_process_resident_memory_bytes").await > 0.0);

    // Every panel of the dashboard, as Grafana would query it.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(tools::root().join("deploy/grafana/callbridge.json"))
            .expect("dashboard file"),
    )
    .expect("dashboard is JSON");
    let exported = reqwest::get(server.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let mut wrong = Vec::new();
    let mut checked = 0;
    for panel in panels(&dash) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            wrong.push(format!("panel '{title}': no queries"));
        }
        let waiting = WAITING.iter().find(|(t, ..)| *t == title);
        for t in targets {
            let Some(expr) = t["expr"].as_str() else {
                wrong.push(format!("panel '{title}': a target without expr"));
                continue;
            };
            checked += 1;
            match prom.query(&grafana_expr(expr)).await {
                Err(e) => wrong.push(format!("panel '{title}': `{expr}` fails: {e}")),
                Ok(r) => {
                    let has_data = r.iter().filter_map(sample).any(|v| v.is_finite());
                    match waiting {
                        Some((_, metric, issue)) if !exported.contains(metric) => {
                            eprintln!(
                                "panel '{title}' waits for {issue}: `{metric}` not exported yet ({} series)",
                                r.len()
                            );
                        }
                        _ if !has_data => wrong.push(format!(
                            "panel '{title}': `{expr}` returned no finite value: {r:?}"
                        )),
                        _ => {}
                    }
                }
            }
        }
    }
    assert!(checked >= 15, "the dashboard's queries were found");
    assert!(wrong.is_empty(), "dashboard panels:\n{}", wrong.join("\n"));

    bridge::stop_both(server, sim).await;
}

fn promtool(args: &[&str]) -> Option<String> {
    let bin = tools::tool("promtool", INSTALL)?;
    let out = Command::new(bin)
        .args(args)
        .current_dir(tools::root().join("deploy/prometheus"))
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    Some(text)
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let Some(checked) = promtool(&["check", "rules", "alerts.yml"]) else {
        return;
    };
    assert!(checked.contains("SUCCESS: 10 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yml"]).expect("promtool");
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a unit test that makes it fire.
    let rules =
        std::fs::read_to_string(tools::root().join("deploy/prometheus/alerts.yml")).expect("rules");
    let tests = std::fs::read_to_string(tools::root().join("deploy/prometheus/alerts_test.yml"))
        .expect("tests");
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(
                tests.contains(&format!(
                    "alertname: {name}\n        exp_alerts:\n          - "
                )),
                "alert {name} has no unit test in which it fires"
            );
        }
    }
}

#[test]
fn compose_prometheus_config_is_valid() {
    let Some(out) = promtool(&["check", "config", "prometheus.yml"]) else {
        return;
    };
    assert!(out.contains("is valid prometheus config file"), "{out}");
}
