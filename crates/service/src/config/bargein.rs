//! `barge_in`, `bargein_*`, `echo_suppression`: who decides that the caller interrupted the
//! agent (see `call::bargein`).

use super::keys::Raw;
use super::{invalid, ms, ConfigError};
use crate::call::bargein::{BargeInConfig, BargeInMode};

/// `barge_in = "confirm" | "server" | "off"`; the boolean form of earlier versions is still
/// read as what it did: `true` is `server` (the server's onset interrupts), `false` is `off`.
/// So a file (or a call recording's settings) that spelled out `true` behaves as before; only
/// leaving the key out gets the new default, `confirm`.
fn mode(v: Option<&toml::Value>) -> Result<BargeInMode, ConfigError> {
    let text = match v {
        None => return Ok(BargeInMode::Confirm),
        Some(toml::Value::Boolean(true)) => "true",
        Some(toml::Value::Boolean(false)) => "false",
        Some(toml::Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(invalid(
                "barge_in",
                format!("{other}; allowed: \"confirm\", \"server\", \"off\" (or true, false)"),
            ))
        }
    };
    match text.trim() {
        "confirm" => Ok(BargeInMode::Confirm),
        "server" | "true" => Ok(BargeInMode::Server),
        "off" | "false" => Ok(BargeInMode::Off),
        other => Err(invalid(
            "barge_in",
            format!("{other:?}; allowed: \"confirm\", \"server\", \"off\" (or true, false)"),
        )),
    }
}

pub(super) fn bargein_config(r: &mut Raw) -> Result<BargeInConfig, ConfigError> {
    let default = BargeInConfig::confirm();
    Ok(BargeInConfig {
        mode: mode(r.barge_in.as_ref())?,
        min_speech_ms: ms(
            "bargein_min_speech_ms",
            r.bargein_min_speech_ms,
            default.min_speech_ms,
            16,
            2000,
        )?,
        max_backchannel_ms: ms(
            "bargein_max_backchannel_ms",
            r.bargein_max_backchannel_ms,
            default.max_backchannel_ms,
            0,
            5000,
        )?,
        vad_threshold: default.vad_threshold,
        echo_suppression: r.echo_suppression.unwrap_or(default.echo_suppression),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(barge_in: Option<toml::Value>) -> Raw {
        Raw {
            barge_in,
            ..Raw::default()
        }
    }

    #[test]
    fn the_boolean_form_still_means_what_it_did_and_confirm_is_the_default() {
        let m = |v| bargein_config(&mut raw(v)).map(|c| c.mode);
        assert_eq!(m(None).ok(), Some(BargeInMode::Confirm));
        assert_eq!(m(Some(true.into())).ok(), Some(BargeInMode::Server));
        assert_eq!(m(Some("confirm".into())).ok(), Some(BargeInMode::Confirm));
        assert_eq!(m(Some(false.into())).ok(), Some(BargeInMode::Off));
        assert_eq!(m(Some("server".into())).ok(), Some(BargeInMode::Server));
        let err = m(Some("sometimes".into())).unwrap_err().to_string();
        assert!(err.contains("barge_in"), "{err}");
    }

    #[test]
    fn out_of_range_durations_name_their_key() {
        let mut r = raw(None);
        r.bargein_max_backchannel_ms = Some(60_000);
        let err = bargein_config(&mut r).unwrap_err().to_string();
        assert!(err.contains("bargein_max_backchannel_ms"), "{err}");
    }
}
