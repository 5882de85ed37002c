//! `callbridge dial`: the command-line face of `POST /v1/calls` (placing an outbound call;
//! not to be confused with `<Dial>`, which transfers a call: `twilio::transfer`).

use std::collections::BTreeMap;

/// What to dial.
#[derive(Debug, Clone, Default)]
pub struct Dial {
    pub to: String,
    pub from: String,
    pub profile: Option<String>,
    pub variables: BTreeMap<String, String>,
    /// `Enable` or `DetectMessageEnd`.
    pub machine_detection: Option<String>,
}

/// `k=v` of `--var`.
pub fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// Asks the bridge at `bridge` to place the call; answers Twilio's call SID, or the bridge's
/// error (with Twilio's code when Twilio refused).
pub async fn dial(bridge: &str, api_token: &str, d: &Dial) -> Result<String, String> {
    let mut body = serde_json::json!({"to": d.to, "from": d.from, "variables": d.variables});
    if let Some(p) = &d.profile {
        body["profile"] = p.clone().into();
    }
    if let Some(m) = &d.machine_detection {
        body["machine_detection"] = m.clone().into();
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/calls", bridge.trim_end_matches('/')))
        .bearer_auth(api_token)
        .json(&body)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("cannot reach the bridge at {bridge}: {e}"))?;
    let status = resp.status();
    let answer: serde_json::Value = resp.json().await.unwrap_or_default();
    if status == reqwest::StatusCode::CREATED {
        return answer["call_sid"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("unexpected answer: {answer}"));
    }
    let mut msg = format!(
        "the bridge answered {status}: {}",
        answer["error"].as_str().unwrap_or("(no message)")
    );
    if let Some(code) = answer["twilio_code"].as_i64() {
        msg.push_str(&format!(" (Twilio error {code})"));
    }
    Err(msg)
}
