//! `POST /v1/calls`: the agent calls someone. The bridge asks Twilio (REST `Calls.json`) to
//! dial `to` from `from` with TwiML that connects the answered call back to this bridge's media
//! socket, the profile and variables riding along as `<Parameter>`s. Twilio's status callback
//! (`/twilio/status`) then tells us about calls that never connected (no answer, busy, failed):
//! they get a report too.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use crate::profile::is_e164;
use crate::report::builder::{PARAM_DIRECTION, PARAM_PROFILE, VAR_PREFIX};
use crate::server::AppState;
use crate::twilio::rest::CreateCall;
use crate::twilio::twiml::{render, stream_url, TwimlParams};

/// Outbound calls remembered until Twilio says how they ended (bounded: an entry whose final
/// status never comes is dropped oldest first).
const MAX_PENDING: usize = 10_000;
const MAX_VARIABLES: usize = 32;
/// A `<Parameter>`'s name + value must stay under 500 characters (Twilio's limit, in
/// shared/protocol.md); the name carries our `var_` prefix.
const MAX_PARAMETER: usize = 499;
/// The TwiML sent inline with `Calls.json` may not exceed 4000 characters: Twilio refuses
/// larger ones with error 32018 ("Twiml size exceeded maximum allowed value of 4000
/// characters", https://www.twilio.com/docs/api/errors/32018). Checked here so the caller
/// gets a 400 naming the limit instead of a Twilio error after the fact.
const MAX_TWIML: usize = 4000;
/// The body of `POST /v1/calls`: 32 variables of under 500 characters each fit with room to
/// spare; anything larger is refused before it is buffered.
const MAX_REQUEST_BODY: usize = 32 * 1024;

/// What `POST /v1/calls` takes.
#[derive(Debug, Deserialize)]
pub struct DialRequest {
    pub to: String,
    pub from: String,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// `true` (= `Enable`), `"Enable"` or `"DetectMessageEnd"`.
    #[serde(default)]
    pub machine_detection: Option<MachineDetection>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MachineDetection {
    On(bool),
    Mode(String),
}

/// What the bridge knows of an outbound call before (or without) a media stream.
#[derive(Debug, Clone)]
pub struct Placed {
    pub from: String,
    pub to: String,
    pub profile: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub created: Instant,
}

/// Outbound calls by call SID, until their final status.
#[derive(Default)]
pub struct OutboundCalls {
    calls: Mutex<(HashMap<String, Placed>, std::collections::VecDeque<String>)>,
}

impl OutboundCalls {
    fn insert(&self, sid: String, placed: Placed) {
        let Ok(mut g) = self.calls.lock() else {
            return;
        };
        let (map, order) = &mut *g;
        while map.len() >= MAX_PENDING {
            match order.pop_front() {
                Some(old) => {
                    map.remove(&old);
                }
                None => break,
            }
        }
        order.push_back(sid.clone());
        map.insert(sid, placed);
    }

    /// Forgets the call and returns what was known of it.
    pub fn take(&self, sid: &str) -> Option<Placed> {
        let mut g = self.calls.lock().ok()?;
        let (map, order) = &mut *g;
        order.retain(|s| s != sid);
        map.remove(sid)
    }
}

fn valid_variable_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// Constant-time check of `Authorization: Bearer <api_token>`.
fn authorized(s: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = s.cfg.callcenter.api_token.as_ref() else {
        return false;
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    super::web::same_token(given, token)
}

fn refused(s: &AppState, status: StatusCode, why: String) -> Response {
    s.metrics
        .outbound_calls_total
        .with_label_values(&["refused"])
        .inc();
    warn!(status = status.as_u16(), why, "POST /v1/calls refused");
    error(status, why)
}

/// The bearer token is checked before anything reads the body: an unauthenticated client
/// gets its 401 at once and the server buffers none of what it sends.
pub async fn require_api_token(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !authorized(&s, req.headers()) {
        return refused(
            &s,
            StatusCode::UNAUTHORIZED,
            "missing or wrong Authorization: Bearer <api_token>".into(),
        );
    }
    next.run(req).await
}

/// `POST /v1/calls`, behind [`require_api_token`].
pub async fn create(State(s): State<AppState>, body: axum::body::Body) -> Response {
    let refused = |status: StatusCode, why: String| refused(&s, status, why);
    let body = match super::edge::read_body(body, MAX_REQUEST_BODY, s.cfg.http_header_timeout).await
    {
        Ok(b) => b,
        Err(super::edge::BodyError::TooLarge) => {
            return refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                "request body larger than {MAX_REQUEST_BODY} bytes (the limit of POST /v1/calls)"
            ),
            )
        }
        Err(e) => return refused(e.status(), format!("request body not received ({e:?})")),
    };
    let req: DialRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return refused(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")),
    };
    for (field, n) in [("to", &req.to), ("from", &req.from)] {
        if !is_e164(n) {
            return refused(
                StatusCode::BAD_REQUEST,
                format!("{field}: {n:?} is not an E.164 number like +15551230000"),
            );
        }
    }
    if req.variables.len() > MAX_VARIABLES {
        return refused(
            StatusCode::BAD_REQUEST,
            format!("variables: at most {MAX_VARIABLES}"),
        );
    }
    if let Some(bad) = req.variables.keys().find(|k| !valid_variable_name(k)) {
        return refused(
            StatusCode::BAD_REQUEST,
            format!("variables: {bad:?} is not a name of letters, digits and _"),
        );
    }
    if let Some((name, chars)) = req
        .variables
        .iter()
        .map(|(k, v)| (k, VAR_PREFIX.len() + k.chars().count() + v.chars().count()))
        .find(|(_, chars)| *chars > MAX_PARAMETER)
    {
        return refused(
            StatusCode::BAD_REQUEST,
            format!(
                "variables.{name}: {chars} characters; a variable's name (with its {VAR_PREFIX:?} prefix) and value together may have at most {MAX_PARAMETER} (Twilio's <Parameter> limit)"
            ),
        );
    }
    if let Some(p) = &req.profile {
        if !s.cfg.profile_names().any(|n| n == p) {
            return refused(StatusCode::NOT_FOUND, format!("profile: no profile {p:?}"));
        }
    }
    let machine_detection = match &req.machine_detection {
        None | Some(MachineDetection::On(false)) => None,
        Some(MachineDetection::On(true)) => Some("Enable".to_owned()),
        Some(MachineDetection::Mode(m)) if m == "Enable" || m == "DetectMessageEnd" => {
            Some(m.clone())
        }
        Some(MachineDetection::Mode(m)) => {
            return refused(
                StatusCode::BAD_REQUEST,
                format!("machine_detection: {m:?}; allowed: true, false, Enable, DetectMessageEnd"),
            )
        }
    };
    let Some(account) = s.cfg.twilio_account_sid.clone() else {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "twilio_account_sid is not set".into(),
        );
    };
    if !s.twilio_rest.has_credentials() {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Twilio credentials (twilio_auth_token, or twilio_api_key + twilio_api_secret)"
                .into(),
        );
    }
    let Some(public) = s.cfg.public_url.as_deref() else {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "public_url is not set: Twilio needs it to reach this bridge".into(),
        );
    };
    let Some(media_url) = stream_url(public, "/media") else {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "public_url unusable".into(),
        );
    };
    let base = public.trim_end_matches('/');
    let var_names: Vec<String> = req
        .variables
        .keys()
        .map(|k| format!("{VAR_PREFIX}{k}"))
        .collect();
    let mut parameters: Vec<(&str, &str)> = vec![
        ("From", req.from.as_str()),
        ("To", req.to.as_str()),
        (PARAM_DIRECTION, "outbound"),
    ];
    if let Some(p) = &req.profile {
        parameters.push((PARAM_PROFILE, p));
    }
    for (name, value) in var_names.iter().zip(req.variables.values()) {
        parameters.push((name, value));
    }
    let recording_cb = format!("{base}/twilio/recording");
    let twiml = render(
        &s.cfg.twiml_template,
        &TwimlParams {
            stream_url: &media_url,
            parameters,
            say_before_connect: None,
            apology: &s.cfg.apology,
            recording_callback: req
                .profile
                .as_deref()
                .and_then(|p| s.cfg.profiles.by_name.get(p))
                .and_then(|p| p.twilio_recording)
                .unwrap_or(s.cfg.callcenter.twilio_recording)
                .then_some(recording_cb.as_str()),
        },
    );
    let twiml_chars = twiml.chars().count();
    if twiml_chars > MAX_TWIML {
        return refused(
            StatusCode::BAD_REQUEST,
            format!(
                "variables: the call's TwiML would be {twiml_chars} characters; Twilio takes at most {MAX_TWIML} (error 32018): send fewer or shorter variables"
            ),
        );
    }
    let create = CreateCall {
        to: req.to.clone(),
        from: req.from.clone(),
        twiml,
        status_callback: Some(format!("{base}/twilio/status")),
        status_callback_events: vec!["completed".into()],
        async_amd_status_callback: machine_detection
            .as_ref()
            .map(|_| format!("{base}/twilio/amd")),
        machine_detection,
    };
    match s.twilio_rest.create_call(&account, &create).await {
        Ok(call) => {
            s.metrics
                .outbound_calls_total
                .with_label_values(&["created"])
                .inc();
            info!(
                call_sid = call.sid,
                profile = req.profile.as_deref().unwrap_or("-"),
                "outbound call created"
            );
            let placed = Placed {
                from: req.from,
                to: req.to,
                profile: req.profile,
                variables: req.variables,
                created: Instant::now(),
            };
            // Shared before the answer: the status callback may come to another replica.
            if let Some(c) = &s.cluster {
                c.put_placed(&call.sid, &placed).await;
            }
            s.outbound.insert(call.sid.clone(), placed);
            (StatusCode::CREATED, Json(json!({"call_sid": call.sid}))).into_response()
        }
        Err(e) => {
            s.metrics
                .outbound_calls_total
                .with_label_values(&["twilio_error"])
                .inc();
            warn!(error = %e, "Twilio refused the outbound call");
            // Twilio's 4xx (a bad number, a number not owned) is the client's to fix: passed
            // back as is; anything else is a gateway failure.
            let status = match StatusCode::from_u16(e.status) {
                Ok(st) if st.is_client_error() => st,
                _ => StatusCode::BAD_GATEWAY,
            };
            (
                status,
                Json(json!({"error": e.message, "twilio_status": e.status, "twilio_code": e.code})),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        for ok in ["+15551230000", "+442071838750", "+12"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "15551230000",
            "+0555",
            "+1555-123",
            "+",
            "+1234567890123456",
            "",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }
}
