//! The call-center settings (reports, the outbound API, Twilio-side recording) and the
//! browser pages' tokens, read from the file as written.

use super::keys::Raw;
use super::*;

/// The shortest secret accepted for a token or an HMAC key the operator makes up
/// (`api_token`, `tool_secret`, the page tokens): a one-letter secret is guessed, not a lock.
pub(super) const MIN_SECRET: usize = 16;

/// A secret the operator chose: unset or empty is `None`; shorter than [`MIN_SECRET`] refuses
/// to start, naming the key (never the value).
pub(super) fn chosen_secret(key: &str, value: Option<&str>) -> Result<Option<Secret>, ConfigError> {
    match value.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) if t.chars().count() < MIN_SECRET => Err(invalid(
            key,
            format!(
                "too short ({} characters); use at least {MIN_SECRET}",
                t.chars().count()
            ),
        )),
        Some(t) => Ok(Some(Secret(t.to_owned()))),
    }
}

/// Browser pages: a token guards each, and the softphone needs `softphone = true` as well, so
/// a token left in the environment does not switch it on by itself.
pub(super) fn web_tokens(
    softphone: Option<bool>,
    softphone_token: Option<String>,
    console_token: Option<String>,
) -> Result<(Option<Secret>, Option<Secret>), ConfigError> {
    const MIN: usize = MIN_SECRET;
    let softphone_token = softphone_token.filter(|t| !t.is_empty());
    let softphone_token = match (softphone.unwrap_or(false), softphone_token) {
        (false, _) => None,
        (true, None) => {
            return Err(invalid(
                "softphone_token",
                "softphone = true needs a softphone_token (at least 16 characters)",
            ))
        }
        (true, Some(t)) if t.len() < MIN => {
            return Err(invalid(
                "softphone_token",
                format!("too short ({} characters); use at least {MIN}", t.len()),
            ))
        }
        (true, Some(t)) => Some(Secret(t)),
    };
    let console_token = match console_token.filter(|t| !t.is_empty()) {
        Some(t) if t.len() < MIN => {
            return Err(invalid(
                "console_token",
                format!("too short ({} characters); use at least {MIN}", t.len()),
            ))
        }
        t => t.map(Secret),
    };
    Ok((softphone_token, console_token))
}

/// Reports, the outbound API and Twilio-side recording.
pub(super) fn callcenter(r: &Raw, signed: bool) -> Result<CallCenter, ConfigError> {
    let report_url = r.report_url.clone().filter(|s| !s.is_empty());
    if let Some(u) = &report_url {
        require_url("report_url", u, HTTP)?;
    }
    let report_spool_dir = r
        .report_spool_dir
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    if report_url.is_some() {
        if report_spool_dir.is_none() {
            return Err(invalid(
                "report_spool_dir",
                "required with report_url: every report is written there before it is sent",
            ));
        }
        if !signed {
            return Err(invalid(
                "tool_secret",
                "required with report_url: reports are signed (X-Callbridge-Signature)",
            ));
        }
    }
    let twilio_recording = match r.twilio_recording.as_deref().unwrap_or("off") {
        "off" | "" => false,
        "dual" => true,
        other => {
            return Err(invalid(
                "twilio_recording",
                format!("{other:?}; allowed: off, dual"),
            ))
        }
    };
    Ok(CallCenter {
        report_url,
        report_spool_dir,
        report_retry_max: Duration::from_secs(ms(
            "report_retry_max_s",
            r.report_retry_max_s,
            86_400,
            1,
            30 * 86_400,
        )?),
        report_retry_min: Duration::from_millis(ms(
            "report_retry_min_ms",
            r.report_retry_min_ms,
            1000,
            1,
            600_000,
        )?),
        report_spool_max: ms(
            "report_spool_max",
            r.report_spool_max,
            10_000,
            1,
            10_000_000,
        )? as usize,
        report_dead_max: ms("report_dead_max", r.report_dead_max, 1000, 1, 10_000_000)? as usize,
        report_dead_max_bytes: ms(
            "report_dead_max_bytes",
            r.report_dead_max_bytes,
            64 << 20,
            1,
            1 << 40,
        )?,
        report_dead_max_age: Duration::from_secs(ms(
            "report_dead_max_age_s",
            r.report_dead_max_age_s,
            30 * 86_400,
            1,
            3650 * 86_400,
        )?),
        api_token: chosen_secret("api_token", r.api_token.as_deref())?,
        twilio_recording,
        setup_timeout: Duration::from_millis(ms(
            "setup_timeout_ms",
            r.setup_timeout_ms,
            1500,
            1,
            60_000,
        )?),
    })
}
