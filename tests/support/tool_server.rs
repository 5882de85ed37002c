//! The bridge as the `tools*` tests run it: the real server with a config file declaring
//! tools, the Realtime simulator making scripted function calls, a local tool server that
//! checks every request's signature with its own HMAC (not the bridge's code), the fake
//! Twilio REST API and a report receiver.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use callbridge::caller::{CallerReport, Step};
use callbridge::metrics::Metrics;
use callbridge::sim::receiver::Receiver;
use callbridge::sim::twilio_rest::{FakeTwilio, RestRequest};
use callbridge::sim::{SimConfig, Simulator};
use serde_json::{json, Value};

use super::caller::call_ended_by_twilio;
use super::caller::{pause, say};
use super::schema::assert_valid;
use super::{bridge, eventually, simulator, TempDir};

pub const SECRET: &str = "tool-secret-for-tests";
pub use super::rest::{ACCOUNT, API_KEY, API_SECRET, CALL_SID};

// ---- a tool server that checks signatures on its own -----------------------------------

/// HMAC-SHA256 built from the SHA-256 primitive (RFC 2104), independent of the bridge's
/// signing code.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use ring::digest::{digest, SHA256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(digest(&SHA256, key).as_ref());
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(msg.iter().copied())
        .collect();
    let inner = digest(&SHA256, &ipad);
    let opad: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(inner.as_ref().iter().copied())
        .collect();
    digest(&SHA256, &opad).as_ref().to_vec()
}

pub fn signature_ok(header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = Some(v.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(body);
    let expected: String = hmac_sha256(SECRET.as_bytes(), &msg)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    t.abs_diff(now) <= 300 && expected == v1
}

#[derive(Debug, Clone)]
pub struct ToolHit {
    pub path: String,
    pub signed: bool,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct ToolServer {
    pub hits: Arc<Mutex<Vec<ToolHit>>>,
    /// Another host the `moved*` tools redirect to, and what reached it (method, path,
    /// whether it carried our signature header).
    pub elsewhere: String,
    pub caught: Arc<Mutex<Vec<(String, String, bool)>>>,
    /// When each request arrived and when its answer was handed back (the measurement).
    pub times: Arc<Mutex<Vec<(Instant, Instant)>>>,
}

pub async fn tool_endpoint(
    State(ts): State<ToolServer>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let arrived = Instant::now();
    let signed = headers
        .get("x-callbridge-signature")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| signature_ok(h, &body));
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    ts.hits.lock().unwrap().push(ToolHit {
        path: name.clone(),
        signed,
        body: parsed.clone(),
    });
    if !signed {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    match name.as_str() {
        "lookup_order" => {
            let id = parsed["arguments"]["order_id"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            let r = axum::Json(json!({"order_id": id, "status": "shipped", "eta": "Friday"}))
                .into_response();
            ts.times.lock().unwrap().push((arrived, Instant::now()));
            r
        }
        "slow_lookup" => {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            axum::Json(json!({"status": "found"})).into_response()
        }
        "hangs" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            axum::Json(json!({})).into_response()
        }
        "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        // A tool whose answer points the bridge at another host: 307 keeps the method and the
        // body (with its signature header, were it followed), 302 turns it into a GET.
        "moved" => {
            axum::response::Redirect::temporary(&format!("{}/steal", ts.elsewhere)).into_response()
        }
        "moved_get" => {
            axum::response::Redirect::to(&format!("{}/steal", ts.elsewhere)).into_response()
        }
        "chatty" => "this is not json".into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

pub async fn tool_server() -> (ToolServer, String) {
    let caught: Arc<Mutex<Vec<(String, String, bool)>>> = Arc::default();
    let seen = caught.clone();
    let elsewhere = Router::new().fallback(move |req: axum::extract::Request| {
        let seen = seen.clone();
        async move {
            let signed = req.headers().contains_key("x-callbridge-signature");
            seen.lock().unwrap().push((
                req.method().to_string(),
                req.uri().path().to_owned(),
                signed,
            ));
            axum::Json(json!({"status": "answer from a host nobody configured"}))
        }
    });
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_base = format!("http://{}", other.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(other, elsewhere).await;
    });
    let ts = ToolServer {
        elsewhere: elsewhere_base,
        caught,
        ..ToolServer::default()
    };
    let app = Router::new()
        .route("/tools/{name}", post(tool_endpoint))
        .with_state(ts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (ts, base)
}

// ---- the bridge --------------------------------------------------------------------------

pub struct Setup {
    pub sim: Simulator,
    pub server: callbridge::server::Running,
    pub metrics: Arc<Metrics>,
    pub tools: ToolServer,
    pub twilio: FakeTwilio,
    /// Receives the call reports.
    pub reports: Receiver,
    /// The config file and the report spool, removed when the test is done.
    _dir: TempDir,
}

pub fn tool_toml(base: &str, name: &str, extra: &str) -> String {
    format!(
        "[[tools]]\nname = \"{name}\"\ndescription = \"test tool {name}\"\nparameters = {{ type = \"object\", properties = {{ order_id = {{ type = \"string\" }} }}, required = [\"order_id\"] }}\nurl = \"{base}/tools/{name}\"\n{extra}\n"
    )
}

pub async fn setup(sim_cfg: SimConfig, dialect: &str) -> Setup {
    let sim = simulator(sim_cfg).await;
    let (tools, base) = tool_server().await;
    let twilio = super::rest::fake_twilio().await;
    let reports = Receiver::spawn(SECRET, &[]).await.expect("report receiver");
    let dir = TempDir::new("tools");
    let mut file = format!(
        "report_url = \"{}\"\nreport_spool_dir = \"{}\"\n",
        reports.url("/reports"),
        dir.join("spool").display()
    );
    file += &format!(
        "tool_secret = \"{SECRET}\"\nend_call = true\ntransfer_targets = {{ sales = \"+15551230000\", billing = \"sip:billing@pbx.example.com\" }}\ntransfer_caller_id = \"+15550001111\"\ngoodbye_timeout_ms = 8000\n"
    );
    file += &tool_toml(&base, "lookup_order", "timeout_ms = 5000");
    file += &tool_toml(&base, "slow_lookup", "filler_after_ms = 300");
    file += &tool_toml(&base, "hangs", "timeout_ms = 1000");
    file += &tool_toml(&base, "broken", "");
    file += &tool_toml(&base, "chatty", "");
    file += &tool_toml(&base, "moved", "");
    file += &tool_toml(&base, "moved_get", "");
    let (server, metrics) = bridge::start(
        &[
            ("REALTIME_URL", &sim.url()),
            ("CALLBRIDGE_DIALECT", dialect),
            ("CALLBRIDGE_TWILIO_API_BASE", &twilio.base_url()),
            ("CALLBRIDGE_TWILIO_API_KEY", API_KEY),
            ("CALLBRIDGE_TWILIO_API_SECRET", API_SECRET),
        ],
        Some(&dir.file("callbridge.toml", &file)),
    )
    .await;
    Setup {
        sim,
        server,
        metrics,
        tools,
        twilio,
        reports,
        _dir: dir,
    }
}

/// The call's report (one call per setup), checked against the shipped schema.
pub async fn call_report(s: &Setup) -> Value {
    let got = s
        .reports
        .wait_until(Duration::from_secs(30), |r| !r.is_empty())
        .await;
    let report = got.first().expect("a call report").json();
    assert_valid("call-report.schema.json", &report);
    report
}

pub fn sim_with(replies: &[&str], calls: Vec<Vec<(&str, &str)>>) -> SimConfig {
    SimConfig {
        reply_texts: replies.iter().map(|s| s.to_string()).collect(),
        response_audio_ms: 1200,
        reply_tool_calls: callbridge::sim::reply_tool_calls(&calls),
        ..SimConfig::default()
    }
}

/// The caller says something, then listens until the agent has been quiet a while.
pub fn script(quiet_ms: u64) -> Vec<Step> {
    vec![
        pause(200),
        say(800),
        Step::WaitAgentDone {
            quiet: Duration::from_millis(quiet_ms),
            timeout: Duration::from_secs(20),
        },
    ]
}

/// Places the call; Twilio ends the stream once the bridge asked Twilio REST to.
pub async fn call(s: &Setup, script: Vec<Step>) -> CallerReport {
    call_ended_by_twilio(s.server.url(""), CALL_SID, script, &s.twilio).await
}

pub fn metric(m: &Metrics, needle: &str) -> bool {
    m.render().lines().any(|l| l == needle)
}

pub async fn wait_metric(m: &Metrics, needle: &str) -> bool {
    eventually(Duration::from_secs(4), async || metric(m, needle)).await
}

/// `(call_id, output)` of each function_call_output the simulator received, and how many
/// response.create came after the last of them.
pub fn outputs(s: &Setup) -> (Vec<(String, Value)>, usize) {
    let log = s.sim.session(0).expect("a session");
    let mut outs = Vec::new();
    let mut creates_after = 0;
    for ev in &log.received {
        match ev["type"].as_str() {
            Some("conversation.item.create") if ev["item"]["type"] == "function_call_output" => {
                let out = serde_json::from_str(ev["item"]["output"].as_str().unwrap_or("null"))
                    .unwrap_or(Value::Null);
                outs.push((ev["item"]["call_id"].as_str().unwrap_or("").to_owned(), out));
                creates_after = 0;
            }
            Some("response.create") => creates_after += 1,
            _ => {}
        }
    }
    (outs, creates_after)
}

/// A bridge in the GA dialect whose model says `replies` and makes the tool calls `turn` in
/// its first answer, and the call placed against it: the caller listens until the agent has
/// been quiet for `quiet_ms` (see [`script`]), or Twilio ended the stream.
pub async fn call_with_tools(
    replies: &[&str],
    turn: &[(&str, &str)],
    quiet_ms: u64,
) -> (Setup, CallerReport) {
    let s = setup(sim_with(replies, vec![turn.to_vec()]), "ga").await;
    let report = call(&s, script(quiet_ms)).await;
    (s, report)
}

/// Asserts that the metrics page gets the line `needle` within a few seconds.
pub async fn assert_metric_soon(m: &Metrics, needle: &str) {
    assert!(wait_metric(m, needle).await, "{needle}\n{}", m.render());
}

/// The one Twilio REST request the call made: an update of this call, with the API key.
pub fn the_call_update(s: &Setup) -> RestRequest {
    let reqs = s.twilio.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert!(reqs[0].auth_ok, "basic auth with the API key");
    assert_eq!(
        reqs[0].path,
        format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL_SID}.json")
    );
    reqs[0].clone()
}
