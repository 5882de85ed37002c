//! The call's settings — the session the model runs with (audio, voice, VAD, limits of an
//! answer) and the call's own timings — validated for the top level and, through the same
//! code, for each profile.

use std::time::Duration;

use super::keys::Raw;
use super::{invalid, ms, one_of, ConfigError, VOICES};
use crate::call::bargein::BargeInMode;
use crate::call::tools::ToolsConfig;
use crate::call::CallConfig;
use crate::realtime::{AudioFormat, Dialect, SessionConfig, TurnDetection};

/// The session's settings checked before the rest of the file (kept in that order, so the
/// first wrong key reported stays the same); [`call_config`] assembles them.
pub(super) struct SessionKeys {
    audio_format: AudioFormat,
    dialect: Dialect,
    voice: String,
    turn_detection: TurnDetection,
    max_output_tokens: Option<Option<u32>>,
}

/// `audio_mode`, `dialect`, `voice`, `vad*`, `max_output_tokens`, `speed`, `noise_reduction`,
/// `temperature`.
pub(super) fn session_keys(r: &mut Raw) -> Result<SessionKeys, ConfigError> {
    let audio_format = one_of(
        "audio_mode",
        r.audio_mode.as_deref().unwrap_or("pcmu"),
        &[("pcmu", AudioFormat::Pcmu), ("pcm", AudioFormat::Pcm24k)],
    )?;
    let dialect = one_of(
        "dialect",
        r.dialect.as_deref().unwrap_or("ga"),
        &[("ga", Dialect::Ga), ("beta", Dialect::Beta)],
    )?;
    let voice = r.voice.take().unwrap_or_else(|| "marin".into());
    if !VOICES.contains(&voice.as_str()) {
        return Err(invalid(
            "voice",
            format!("{voice:?}; allowed: {}", VOICES.join(", ")),
        ));
    }
    let create_response = r.vad_create_response.unwrap_or(true);
    let interrupt_response = r.vad_interrupt_response.unwrap_or(true);
    let turn_detection = match r.vad.as_deref().unwrap_or("server_vad") {
        "server_vad" => {
            if r.vad_eagerness.is_some() {
                return Err(invalid(
                    "vad_eagerness",
                    "only applies to vad = semantic_vad",
                ));
            }
            let threshold = r.vad_threshold.unwrap_or(0.5);
            if !(0.0..=1.0).contains(&threshold) {
                return Err(invalid(
                    "vad_threshold",
                    format!("{threshold}; allowed: 0.0 to 1.0"),
                ));
            }
            TurnDetection::ServerVad {
                threshold: threshold as f32,
                prefix_padding_ms: ms(
                    "vad_prefix_padding_ms",
                    r.vad_prefix_padding_ms,
                    300,
                    0,
                    10_000,
                )? as u32,
                silence_duration_ms: ms(
                    "vad_silence_duration_ms",
                    r.vad_silence_duration_ms,
                    500,
                    0,
                    10_000,
                )? as u32,
                idle_timeout_ms: match r.vad_idle_timeout_ms {
                    Some(v) => Some(ms("vad_idle_timeout_ms", Some(v), 0, 1, 3_600_000)? as u32),
                    None => None,
                },
                create_response,
                interrupt_response,
            }
        }
        "semantic_vad" => {
            for (k, set) in [
                ("vad_threshold", r.vad_threshold.is_some()),
                ("vad_prefix_padding_ms", r.vad_prefix_padding_ms.is_some()),
                (
                    "vad_silence_duration_ms",
                    r.vad_silence_duration_ms.is_some(),
                ),
                ("vad_idle_timeout_ms", r.vad_idle_timeout_ms.is_some()),
            ] {
                if set {
                    return Err(invalid(k, "only applies to vad = server_vad"));
                }
            }
            let eagerness = r.vad_eagerness.take().unwrap_or_else(|| "auto".into());
            one_of(
                "vad_eagerness",
                &eagerness,
                &[("low", ()), ("medium", ()), ("high", ()), ("auto", ())],
            )?;
            TurnDetection::SemanticVad {
                eagerness,
                create_response,
                interrupt_response,
            }
        }
        other => {
            return Err(invalid(
                "vad",
                format!("{other:?}; allowed: server_vad, semantic_vad"),
            ))
        }
    };
    let max_output_tokens = match r.max_output_tokens.take() {
        None => None,
        Some(toml::Value::String(s)) if s == "inf" => Some(None),
        Some(toml::Value::Integer(n)) if (1..=4096).contains(&n) => Some(Some(n as u32)),
        Some(toml::Value::String(s)) if s.parse::<u32>().is_ok_and(|n| (1..=4096).contains(&n)) => {
            Some(s.parse::<u32>().ok())
        }
        Some(v) => {
            return Err(invalid(
                "max_output_tokens",
                format!("{v}; allowed: 1 to 4096, or \"inf\""),
            ))
        }
    };
    if let Some(s) = r.speed {
        if !(0.25..=1.5).contains(&s) {
            return Err(invalid("speed", format!("{s}; allowed: 0.25 to 1.5")));
        }
    }
    if let Some(n) = &r.noise_reduction {
        one_of(
            "noise_reduction",
            n,
            &[("near_field", ()), ("far_field", ())],
        )?;
    }
    if r.temperature.is_some() && dialect == Dialect::Ga {
        return Err(invalid(
            "temperature",
            "the GA Realtime API has no temperature; it applies to dialect = beta only",
        ));
    }
    Ok(SessionKeys {
        audio_format,
        dialect,
        voice,
        turn_detection,
        max_output_tokens,
    })
}

/// The call's config: the session (with the tools it offers) and the call's timings.
pub(super) fn call_config(
    r: &mut Raw,
    keys: SessionKeys,
    tools_cfg: ToolsConfig,
) -> Result<CallConfig, ConfigError> {
    let SessionKeys {
        audio_format,
        dialect,
        voice,
        turn_detection,
        max_output_tokens,
    } = keys;
    let settings = super::settings::settings(r, dialect, &tools_cfg)?;
    let barge_in = super::bargein::bargein_config(r)?;
    let mut session = SessionConfig {
        model: r.model.take().filter(|m| !m.is_empty()),
        // A stored prompt brings its own instructions: the bridge's default would be added to
        // them, so there is none then.
        instructions: r
            .instructions
            .take()
            .unwrap_or_else(|| match settings.prompt {
                Some(_) => String::new(),
                None => SessionConfig::default().instructions,
            }),
        voice,
        audio_format,
        turn_detection,
        transcription_model: r.transcription_model.take().filter(|m| !m.is_empty()),
        max_output_tokens,
        speed: r.speed.map(|s| s as f32),
        noise_reduction: r.noise_reduction.take(),
        temperature: r.temperature.map(|t| t as f32),
        tools: tools_cfg.declarations(),
        settings,
    };
    if barge_in.mode == BargeInMode::Confirm {
        // The bridge decides: the server must neither cancel its answer on a caller onset nor
        // answer a turn by itself (`vad_create_response`/`vad_interrupt_response` set to true
        // would undo exactly that, so they are refused with it).
        for (key, set) in [
            ("vad_create_response", r.vad_create_response),
            ("vad_interrupt_response", r.vad_interrupt_response),
        ] {
            if set == Some(true) {
                return Err(invalid(
                    key,
                    "true conflicts with barge_in = \"confirm\" (the bridge decides); use barge_in = \"server\"",
                ));
            }
        }
        session.bridge_decides_turns();
    }
    let call = CallConfig {
        dialect,
        session,
        greeting: r.greeting.take().filter(|g| !g.is_empty()),
        barge_in,
        max_gap_fill_ms: ms("max_gap_fill_ms", r.max_gap_fill_ms, 1000, 0, 60_000)?,
        prebuffer_limit_ms: ms(
            "prebuffer_limit_ms",
            r.prebuffer_limit_ms,
            10_000,
            0,
            120_000,
        )?,
        upstream_ready_timeout: Duration::from_millis(ms(
            "upstream_connect_timeout_ms",
            r.upstream_connect_timeout_ms,
            10_000,
            100,
            120_000,
        )?),
        twilio_idle_timeout: Duration::from_millis(ms(
            "twilio_idle_timeout_ms",
            r.twilio_idle_timeout_ms,
            20_000,
            1000,
            3_600_000,
        )?),
        dtmf_to_model: r.dtmf_to_model.unwrap_or(true),
        dtmf_gap: Duration::from_millis(ms("dtmf_gap_ms", r.dtmf_gap_ms, 1500, 100, 30_000)?),
        // 0 turns reconnecting off (the call ends when its upstream drops).
        upstream_retry: Duration::from_secs(ms(
            "upstream_retry_s",
            r.upstream_retry_s,
            10,
            0,
            300,
        )?),
        session_rotate_after: Duration::from_secs(ms(
            "session_rotate_after_secs",
            r.session_rotate_after_secs,
            3300,
            1,
            86_400,
        )?),
        tools: tools_cfg,
        voicemail_message: r.voicemail_message.take().filter(|m| !m.trim().is_empty()),
        // Absent or 0: no limit.
        max_call: match ms("max_call_seconds", r.max_call_seconds, 0, 0, 86_400)? {
            0 => None,
            n if n < 10 => {
                return Err(invalid(
                    "max_call_seconds",
                    format!("{n}; allowed: 0 (no limit) or 10 to 86400"),
                ))
            }
            n => Some(Duration::from_secs(n)),
        },
        silence: super::silence::silence_config(r)?,
    };
    Ok(call)
}
