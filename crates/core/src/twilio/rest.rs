//! Twilio's REST API, as far as the bridge uses it: changing a live call (hang up, new TwiML,
//! redirect) and creating an outbound call. Shapes only — the client that sends them lives in
//! `server::twilio_rest`.
//!
//! Facts (protocol.md "Twilio: REST on a live call"):
//! `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` with form fields
//! `Status=completed` (hang up), `Twiml=<Response>…</Response>` or `Url=` + `Method=`;
//! `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` with `To`, `From`, `Twiml` or `Url`,
//! `StatusCallback` (+ `StatusCallbackEvent`, repeated), `MachineDetection`, `AsyncAmd`,
//! `AsyncAmdStatusCallback`. HTTP basic auth: AccountSid + auth token, or API key SID + secret.
//! Errors come back as JSON `{"code": 20404, "message": "...", "more_info": "...", "status": 404}`.

use serde::Deserialize;

/// A change to a call in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallUpdate {
    /// End the call (`Status=completed`).
    Hangup,
    /// Replace what the call is doing with this TwiML (e.g. `<Dial>` for a transfer). A call
    /// inside `<Connect><Stream>` leaves it: the media socket gets `stop` and closes.
    Twiml(String),
    /// Fetch new TwiML from `url`.
    Redirect { url: String, method: String },
}

impl CallUpdate {
    pub fn form(&self) -> Vec<(&'static str, String)> {
        match self {
            CallUpdate::Hangup => vec![("Status", "completed".into())],
            CallUpdate::Twiml(t) => vec![("Twiml", t.clone())],
            CallUpdate::Redirect { url, method } => {
                vec![("Url", url.clone()), ("Method", method.clone())]
            }
        }
    }
}

/// An outbound call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateCall {
    pub to: String,
    pub from: String,
    /// What the call does once answered (for the bridge: `<Connect><Stream>`).
    pub twiml: String,
    pub status_callback: Option<String>,
    /// `initiated`, `ringing`, `answered`, `completed`.
    pub status_callback_events: Vec<String>,
    /// `Enable` or `DetectMessageEnd`; answering machine detection runs asynchronously
    /// (`AsyncAmd=true`) so the caller is not kept waiting.
    pub machine_detection: Option<String>,
    pub async_amd_status_callback: Option<String>,
}

impl CreateCall {
    pub fn form(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("To", self.to.clone()),
            ("From", self.from.clone()),
            ("Twiml", self.twiml.clone()),
        ];
        if let Some(cb) = &self.status_callback {
            f.push(("StatusCallback", cb.clone()));
            f.push(("StatusCallbackMethod", "POST".into()));
            for e in &self.status_callback_events {
                f.push(("StatusCallbackEvent", e.clone()));
            }
        }
        if let Some(md) = &self.machine_detection {
            f.push(("MachineDetection", md.clone()));
            f.push(("AsyncAmd", "true".into()));
            if let Some(cb) = &self.async_amd_status_callback {
                f.push(("AsyncAmdStatusCallback", cb.clone()));
                f.push(("AsyncAmdStatusCallbackMethod", "POST".into()));
            }
        }
        f
    }
}

/// The path of one call.
pub fn call_path(account_sid: &str, call_sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json")
}

/// The path that creates calls.
pub fn calls_path(account_sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account_sid}/Calls.json")
}

/// A call resource as Twilio returns it (only what the bridge reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallResource {
    pub sid: String,
    #[serde(default)]
    pub status: Option<String>,
}

/// A failed REST request: Twilio's own error when it sent one, else what went wrong on the way.
/// Never holds credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Twilio REST {status}{}: {message}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
pub struct TwilioError {
    /// HTTP status; 0 when no answer came (connection refused, timeout).
    pub status: u16,
    /// Twilio's error code (e.g. 21211 invalid `To`), when it gave one.
    pub code: Option<i64>,
    pub message: String,
}

impl TwilioError {
    /// Twilio's error body, or a short description of a body that is not one.
    pub fn from_response(status: u16, body: &[u8]) -> TwilioError {
        #[derive(Deserialize)]
        struct Body {
            code: Option<i64>,
            message: Option<String>,
        }
        match serde_json::from_slice::<Body>(body) {
            Ok(b) => TwilioError {
                status,
                code: b.code,
                message: b.message.unwrap_or_else(|| "no message".into()),
            },
            Err(_) => TwilioError {
                status,
                code: None,
                message: format!(
                    "unexpected answer ({} bytes, not Twilio's JSON)",
                    body.len()
                ),
            },
        }
    }

    /// No HTTP answer at all.
    pub fn transport(message: impl Into<String>) -> TwilioError {
        TwilioError {
            status: 0,
            code: None,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_carry_twilio_field_names() {
        assert_eq!(
            CallUpdate::Hangup.form(),
            vec![("Status", "completed".into())]
        );
        let t =
            CallUpdate::Twiml("<Response><Dial><Number>+1555</Number></Dial></Response>".into());
        assert_eq!(t.form()[0].0, "Twiml");
        let c = CreateCall {
            to: "+15551230000".into(),
            from: "+15550001111".into(),
            twiml: "<Response/>".into(),
            status_callback: Some("https://b/twilio/status".into()),
            status_callback_events: vec!["initiated".into(), "completed".into()],
            machine_detection: Some("Enable".into()),
            async_amd_status_callback: Some("https://b/twilio/amd".into()),
        };
        let f = c.form();
        let get = |k: &str| {
            f.iter()
                .filter(|(n, _)| *n == k)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("To"), ["+15551230000"]);
        assert_eq!(get("StatusCallbackEvent"), ["initiated", "completed"]);
        assert_eq!(get("AsyncAmd"), ["true"]);
        assert_eq!(get("AsyncAmdStatusCallback"), ["https://b/twilio/amd"]);
    }

    #[test]
    fn errors_read_twilio_json_and_survive_junk() {
        let e = TwilioError::from_response(
            400,
            br#"{"code":21211,"message":"The 'To' number is not valid.","more_info":"x","status":400}"#,
        );
        assert_eq!((e.status, e.code), (400, Some(21211)));
        assert!(e.to_string().contains("code 21211"));
        let junk = TwilioError::from_response(502, b"<html>bad gateway</html>");
        assert_eq!(junk.code, None);
        assert!(junk.message.contains("not Twilio's JSON"));
    }
}
