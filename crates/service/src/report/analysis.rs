//! Post-call analysis: the report's (redacted) transcript goes to a text model through
//! OpenAI's Responses API with the profile's JSON schema as a structured output
//! (`text.format = {type: "json_schema", name, schema, strict: true}`, per the API reference
//! of `POST /v1/responses`); the answer, checked against the schema here too, becomes the
//! report's `analysis`. Anything else — no answer within the profile's `timeout_ms`, an HTTP
//! error, a refusal, text that is not JSON or not valid — becomes `analysis_error`, and the
//! report goes out all the same: it waits for the analysis at most `timeout_ms`.

use serde_json::{json, Value};

use super::CallReport;
use crate::config::analysis::Analysis;
use crate::config::{AuthStyle, Config};

/// The `name` of the structured output format (letters, digits, `_`, `-`; at most 64).
const FORMAT_NAME: &str = "call_analysis";

/// Fills `report.analysis` or `report.analysis_error`, within `analysis.timeout`.
pub async fn analyse(http: &reqwest::Client, cfg: &Config, a: &Analysis, report: &mut CallReport) {
    let outcome = match tokio::time::timeout(a.timeout, ask(http, cfg, a, report)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", a.timeout.as_millis())),
    };
    match outcome {
        Ok(v) => report.analysis = Some(Box::new(v)),
        Err(e) => {
            tracing::warn!(error = %e, model = %a.model, "post-call analysis failed");
            report.analysis_error = Some(e.into());
        }
    }
}

async fn ask(
    http: &reqwest::Client,
    cfg: &Config,
    a: &Analysis,
    report: &CallReport,
) -> Result<Value, String> {
    let url = responses_url(&cfg.realtime_url)
        .ok_or_else(|| format!("no Responses API URL from {:?}", cfg.realtime_url))?;
    let mut req = http.post(url).json(&request(a, report));
    if let Some(key) = &cfg.api_key {
        req = match cfg.auth {
            AuthStyle::Bearer => req.bearer_auth(&key.0),
            AuthStyle::ApiKey => req.header("api-key", &key.0),
        };
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!(
            "the Responses API answered HTTP {}",
            status.as_u16()
        ));
    }
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("the answer is not JSON: {e}"))?;
    let text = output_text(&body)?;
    let answer: Value =
        serde_json::from_str(&text).map_err(|e| format!("the model's output is not JSON: {e}"))?;
    let validator = jsonschema::validator_for(&a.schema).map_err(|e| e.to_string())?;
    if let Some(e) = validator.iter_errors(&answer).next() {
        return Err(format!(
            "the model's output does not match the schema: {e} at {:?}",
            e.instance_path().to_string()
        ));
    }
    Ok(answer)
}

/// The request: the transcript as input, the profile's instructions and schema.
fn request(a: &Analysis, report: &CallReport) -> Value {
    let transcript: String = report
        .transcript
        .iter()
        .map(|l| format!("{}: {}\n", l.role, l.text))
        .collect();
    json!({
        "model": a.model,
        "instructions": a.instructions,
        "input": transcript,
        "text": {"format": {
            "type": "json_schema",
            "name": FORMAT_NAME,
            "schema": a.schema,
            "strict": true,
        }},
        // The bridge keeps what it needs in the report; OpenAI need not store the response.
        "store": false,
    })
}

/// The text of the answer's `output_text` content (the first message's); a refusal is an error.
fn output_text(body: &Value) -> Result<String, String> {
    let contents = body["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().into_iter().flatten());
    for c in contents {
        match c["type"].as_str() {
            Some("output_text") => {
                if let Some(t) = c["text"].as_str() {
                    return Ok(t.to_owned());
                }
            }
            Some("refusal") => {
                return Err(format!(
                    "the model refused: {}",
                    c["refusal"].as_str().unwrap_or("")
                ))
            }
            _ => {}
        }
    }
    Err(format!(
        "no output text in the answer (status {})",
        body["status"].as_str().unwrap_or("unknown")
    ))
}

/// `{base}/v1/responses` beside the Realtime URL: same host, `ws` → `http`, the path's
/// `/realtime` → `/responses` (`wss://api.openai.com/v1/realtime?model=…` →
/// `https://api.openai.com/v1/responses`; Azure's `/openai/v1/realtime` likewise).
pub fn responses_url(realtime_url: &str) -> Option<String> {
    let (scheme, rest) = realtime_url.split_once("://")?;
    let scheme = match scheme {
        "wss" => "https",
        "ws" => "http",
        _ => return None,
    };
    let rest = rest.split(['?', '#']).next()?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let base = path.strip_suffix("realtime").unwrap_or("v1/");
    Some(format!("{scheme}://{host}/{base}responses"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_responses_url_is_beside_the_realtime_one() {
        for (realtime, responses) in [
            (
                "wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1",
                "https://api.openai.com/v1/responses",
            ),
            (
                "ws://127.0.0.1:4000/v1/realtime",
                "http://127.0.0.1:4000/v1/responses",
            ),
            (
                "wss://x.openai.azure.com/openai/v1/realtime?model=d",
                "https://x.openai.azure.com/openai/v1/responses",
            ),
            ("ws://127.0.0.1:4000", "http://127.0.0.1:4000/v1/responses"),
        ] {
            assert_eq!(responses_url(realtime).as_deref(), Some(responses));
        }
    }

    #[test]
    fn the_output_text_or_why_not() {
        let ok = json!({"status": "completed", "output": [
            {"type": "reasoning", "summary": []},
            {"type": "message", "content": [{"type": "output_text", "text": "{\"a\":1}"}]}
        ]});
        assert_eq!(output_text(&ok).as_deref(), Ok("{\"a\":1}"));
        let refused = json!({"output": [{"type": "message", "content": [
            {"type": "refusal", "refusal": "no"}]}]});
        assert_eq!(output_text(&refused), Err("the model refused: no".into()));
        assert!(output_text(&json!({"status": "incomplete"})).is_err());
    }
}
