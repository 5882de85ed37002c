//! Twilio REST settings: where the API is, the credentials it is called with, the account
//! outbound calls are made from — and that hanging up or transferring has credentials at all.

use super::keys::Raw;
use super::{invalid, require_url, ConfigError, Secret, HTTP};
use crate::call::CallConfig;

pub(super) struct TwilioRestKeys {
    pub(super) api_base: String,
    pub(super) api_key: Option<Secret>,
    pub(super) api_secret: Option<Secret>,
    pub(super) account_sid: Option<String>,
}

/// `twilio_api_base`, `twilio_api_key`/`twilio_api_secret`, `twilio_account_sid`.
pub(super) fn twilio_rest(r: &mut Raw, call: &CallConfig) -> Result<TwilioRestKeys, ConfigError> {
    let twilio_api_base = r
        .twilio_api_base
        .take()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "https://api.twilio.com".into())
        .trim_end_matches('/')
        .to_owned();
    require_url("twilio_api_base", &twilio_api_base, HTTP)?;
    let twilio_api_key = Secret::given(r.twilio_api_key.take());
    let twilio_api_secret = Secret::given(r.twilio_api_secret.take());
    if twilio_api_key.is_some() != twilio_api_secret.is_some() {
        return Err(invalid(
            if twilio_api_key.is_some() {
                "twilio_api_secret"
            } else {
                "twilio_api_key"
            },
            "twilio_api_key and twilio_api_secret go together",
        ));
    }
    let twilio_account_sid = r.twilio_account_sid.take().filter(|s| !s.is_empty());
    if let Some(sid) = &twilio_account_sid {
        if !(sid.starts_with("AC")
            && sid.len() == 34
            && sid[2..].chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(invalid(
                "twilio_account_sid",
                format!("{sid:?} is not an account SID (AC + 32 hex digits)"),
            ));
        }
    }
    let has_rest_credentials = twilio_api_key.is_some()
        || r.twilio_auth_token
            .as_deref()
            .is_some_and(|t| !t.is_empty());
    if !has_rest_credentials {
        let key = if !call.tools.transfer_targets.is_empty() {
            Some("transfer_targets")
        } else if call.tools.end_call {
            Some("end_call")
        } else {
            None
        };
        if let Some(key) = key {
            return Err(invalid(
                key,
                "hanging up and transferring go through Twilio REST: set twilio_auth_token, or twilio_api_key + twilio_api_secret",
            ));
        }
    }
    Ok(TwilioRestKeys {
        api_base: twilio_api_base,
        api_key: twilio_api_key,
        api_secret: twilio_api_secret,
        account_sid: twilio_account_sid,
    })
}
