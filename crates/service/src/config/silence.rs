//! `silence_*`: checking on a caller who went quiet and hanging up on one who stays so (see
//! `call::silence`). Off unless the durations are set, so existing deployments keep behaving
//! as before.

use std::time::Duration;

use super::keys::Raw;
use super::{invalid, ConfigError};
use crate::call::silence::SilenceConfig;

/// Longest wait that can be configured: an hour of silence is a dead line by any measure.
const MAX_S: i64 = 3600;

/// 0 or absent: off; otherwise 1 to [`MAX_S`] seconds.
fn seconds(key: &str, v: Option<i64>) -> Result<Option<Duration>, ConfigError> {
    match v {
        None | Some(0) => Ok(None),
        Some(n) if (1..=MAX_S).contains(&n) => Ok(Some(Duration::from_secs(n as u64))),
        Some(n) => Err(invalid(
            key,
            format!("{n}; allowed: 0 (off) or 1 to {MAX_S}"),
        )),
    }
}

pub(super) fn silence_config(r: &mut Raw) -> Result<SilenceConfig, ConfigError> {
    let default = SilenceConfig::default();
    // Blank instructions would make the model answer with nothing to go on: keep the default.
    let text = |v: Option<String>, d: String| v.filter(|s| !s.trim().is_empty()).unwrap_or(d);
    Ok(SilenceConfig {
        reprompt: seconds("silence_reprompt_s", r.silence_reprompt_s)?,
        hangup: seconds("silence_hangup_s", r.silence_hangup_s)?,
        reprompt_instructions: text(
            r.silence_reprompt_instructions.take(),
            default.reprompt_instructions,
        ),
        goodbye_instructions: text(
            r.silence_goodbye_instructions.take(),
            default.goodbye_instructions,
        ),
    })
}
