//! The session's configuration: `session.update` merged into the current config, and the
//! typed view (formats, turn detection, voice) derived from it.

use serde_json::{json, Value};

use super::*;

/// Deep merge for session updates; formats, turn detection and similar unions are replaced.
pub(super) fn merge(base: &mut Value, upd: &Value) {
    let (Some(b), Some(u)) = (base.as_object_mut(), upd.as_object()) else {
        *base = upd.clone();
        return;
    };
    for (k, v) in u {
        let replace = matches!(
            k.as_str(),
            "format"
                | "turn_detection"
                | "transcription"
                | "noise_reduction"
                | "tool_choice"
                | "prompt"
                | "tracing"
                | "truncation"
                | "reasoning"
        );
        match b.get_mut(k) {
            Some(bv) if !replace && bv.is_object() && v.is_object() => merge(bv, v),
            _ => {
                b.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Fills server defaults into a turn_detection object, as the real server reports it.
pub(super) fn normalize_td(td: &mut Value) {
    let Some(o) = td.as_object_mut() else { return };
    let semantic = o.get("type").and_then(Value::as_str) == Some("semantic_vad");
    let mut put = |k: &str, v: Value| {
        o.entry(k.to_string()).or_insert(v);
    };
    if semantic {
        put("eagerness", json!("auto"));
    } else {
        put("threshold", json!(0.5));
        put("prefix_padding_ms", json!(300));
        put("silence_duration_ms", json!(500));
        put("idle_timeout_ms", Value::Null);
    }
    put("create_response", json!(true));
    put("interrupt_response", json!(true));
}

pub(super) fn parse_td(v: Option<&Value>) -> Option<TurnDetection> {
    let v = v?;
    let o = v.as_object()?;
    let semantic = o.get("type").and_then(Value::as_str) == Some("semantic_vad");
    let num = |k: &str, d: u64| o.get(k).and_then(Value::as_u64).unwrap_or(d);
    let flag = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(true);
    let silence_ms = if semantic {
        match o.get("eagerness").and_then(Value::as_str) {
            Some("high") => 250,
            Some("low") => 1500,
            _ => 500,
        }
    } else {
        num("silence_duration_ms", 500)
    };
    Some(TurnDetection {
        prefix_ms: if semantic {
            300
        } else {
            num("prefix_padding_ms", 300)
        },
        silence_ms: silence_ms.max(20),
        create_response: flag("create_response"),
        interrupt_response: flag("interrupt_response"),
    })
}

pub(super) fn ga_format_json(f: AudioFormat) -> Value {
    match f {
        AudioFormat::Pcm16 => json!({"type": "audio/pcm", "rate": 24000}),
        AudioFormat::Pcmu => json!({"type": "audio/pcmu"}),
        AudioFormat::Pcma => json!({"type": "audio/pcma"}),
    }
}

pub(super) fn beta_format_name(f: AudioFormat) -> &'static str {
    match f {
        AudioFormat::Pcm16 => "pcm16",
        AudioFormat::Pcmu => "g711_ulaw",
        AudioFormat::Pcma => "g711_alaw",
    }
}

impl Session {
    /// Recomputes the typed view of `config`.
    pub(super) fn derive(&mut self) {
        let c = &self.config;
        let (in_fmt, out_fmt, td, text_only, transcribe) = if self.beta {
            let f = |k: &str| {
                c.get(k)
                    .and_then(|v| validate::beta_format(v, k).ok())
                    .unwrap_or(AudioFormat::Pcm16)
            };
            (
                f("input_audio_format"),
                f("output_audio_format"),
                parse_td(c.get("turn_detection")),
                c.get("modalities") == Some(&json!(["text"])),
                c.get("input_audio_transcription")
                    .is_some_and(|v| !v.is_null()),
            )
        } else {
            let input = c.pointer("/audio/input");
            let f = |v: Option<&Value>| {
                v.and_then(|v| validate::ga_format(v, "").ok())
                    .unwrap_or(AudioFormat::Pcm16)
            };
            (
                f(c.pointer("/audio/input/format")),
                f(c.pointer("/audio/output/format")),
                parse_td(input.and_then(|i| i.get("turn_detection"))),
                c.get("output_modalities") == Some(&json!(["text"])),
                input
                    .and_then(|i| i.get("transcription"))
                    .is_some_and(|v| !v.is_null()),
            )
        };
        if in_fmt != self.in_fmt {
            self.in_base_ms = self.current_ms();
            self.in_samples = 0;
            self.carry = None;
            self.vad.set_rate(in_fmt.rate());
            self.in_fmt = in_fmt;
        }
        self.out_fmt = out_fmt;
        self.td = td;
        if td.is_none() {
            self.vad.reset();
        }
        self.text_only = text_only;
        self.transcribe = transcribe;
    }

    pub(super) fn voice(&self) -> String {
        let v = if self.beta {
            self.config.get("voice")
        } else {
            self.config.pointer("/audio/output/voice")
        };
        v.and_then(Value::as_str).unwrap_or("marin").to_string()
    }

    pub(super) fn on_session_update(&mut self, ev: &Value, eid: Option<Value>) {
        let Some(upd) = ev.get("session") else {
            let e = ApiError::invalid(
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                Some("session"),
            );
            return self.error(e, eid);
        };
        let checked = if self.beta {
            validate::beta_session(upd)
        } else {
            validate::ga_session(upd)
        };
        if let Err(e) = checked {
            return self.error(e, eid);
        }
        let old_voice = self.voice();
        let mut new = self.config.clone();
        merge(&mut new, upd);
        let td = if self.beta {
            new.get_mut("turn_detection")
        } else {
            new.pointer_mut("/audio/input/turn_detection")
        };
        if let Some(td) = td {
            normalize_td(td);
        }
        let new_voice = {
            let v = if self.beta {
                new.get("voice")
            } else {
                new.pointer("/audio/output/voice")
            };
            v.and_then(Value::as_str).unwrap_or("").to_string()
        };
        if self.audio_sent_ever && new_voice != old_voice {
            let e = ApiError::invalid(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                Some(if self.beta {
                    "session.voice"
                } else {
                    "session.audio.output.voice"
                }),
            );
            return self.error(e, eid);
        }
        self.config = new;
        self.session_changed = true;
        self.derive();
        let session = self.config.clone();
        self.send(json!({"type": "session.updated", "session": session}));
    }
}
