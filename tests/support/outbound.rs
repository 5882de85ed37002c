//! The outbound-call test environment (`outbound`, `cluster_callbacks`): the fake Twilio REST
//! API, the report receiver, the bridge's settings that point at both, and the requests a test
//! makes as the integrator (`POST /v1/calls`) and as Twilio (signed callbacks).

use callbridge::server::Running;
use callbridge::sim::receiver::Receiver;
use callbridge::sim::twilio_rest::FakeTwilio;
use callbridge::twilio::signature::{sign, Algorithm};

use super::TempDir;

pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH: &str = "twilio-auth-token";
pub const API: &str = "api-token-for-tests-42";
pub const SECRET: &str = "report-secret-for-tests-2";
pub const PUBLIC: &str = "https://bridge.example.com";

/// The fake Twilio REST API (account `ACCOUNT`, auth token `AUTH`) and the report receiver
/// (checking signatures with `SECRET`).
pub async fn fakes() -> (FakeTwilio, Receiver) {
    let twilio = FakeTwilio::spawn(ACCOUNT, AUTH).await.expect("fake twilio");
    let rx = Receiver::spawn(SECRET, &[]).await.expect("receiver");
    (twilio, rx)
}

/// The bridge's settings for outbound calls through the fake at `twilio_url`, reports to
/// `report_url` and spooled in `spool`, retried after 20 ms so a test does not wait long.
pub fn env<'a>(
    twilio_url: &'a str,
    report_url: &'a str,
    spool: &'a TempDir,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("PUBLIC_URL", PUBLIC),
        ("TWILIO_AUTH_TOKEN", AUTH),
        ("TWILIO_ACCOUNT_SID", ACCOUNT),
        ("CALLBRIDGE_TWILIO_API_BASE", twilio_url),
        ("CALLBRIDGE_API_TOKEN", API),
        ("CALLBRIDGE_REPORT_URL", report_url),
        ("CALLBRIDGE_REPORT_SPOOL_DIR", spool.to_str()),
        ("CALLBRIDGE_TOOL_SECRET", SECRET),
        ("CALLBRIDGE_REPORT_RETRY_MIN_MS", "20"),
    ]
}

/// `POST /v1/calls` with `body`, with the bearer `token` if any: the status and the JSON answer
/// (null when the answer is not JSON).
pub async fn post_calls(
    server: &Running,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .post(server.url("/v1/calls"))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("bridge answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// `POST /v1/calls` with the API key: a call from +15550001111 to +15551230000, with the
/// fields of `extra` besides.
pub async fn create_call(server: &Running, extra: serde_json::Value) -> (u16, serde_json::Value) {
    let mut body = serde_json::json!({"to": "+15551230000", "from": "+15550001111"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    post_calls(server, Some(API), body).await
}

/// POSTs a form to `path` as Twilio would, signed (when `signed`) with the auth token over the
/// public URL; the status the bridge answers.
pub async fn twilio_post(
    server: &Running,
    path: &str,
    fields: &[(&str, &str)],
    signed: bool,
) -> u16 {
    let params: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut req = reqwest::Client::new()
        .post(server.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&params).expect("form"));
    if signed {
        req = req.header(
            "X-Twilio-Signature",
            sign(AUTH, Algorithm::Sha1, &format!("{PUBLIC}{path}"), &params),
        );
    }
    req.send().await.expect("bridge answers").status().as_u16()
}
