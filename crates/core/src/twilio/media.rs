//! Twilio Media Streams WebSocket messages (bidirectional `<Connect><Stream>`).
//!
//! Inbound messages are parsed leniently: unknown fields are ignored and an unknown `event`
//! becomes [`Inbound::Unknown`]. Outbound messages are written by hand in exactly the three
//! shapes Twilio accepts (`media`, `mark`, `clear`): Twilio rejects any extra field
//! (errors 31950/31951), so no generic serializer gets a say in what goes on the wire.
//! Source: protocol.md, "Twilio: Media Streams WebSocket".

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine;
use serde::Deserialize;

/// One message from Twilio. Numbers inside (`sequenceNumber`, `chunk`, `timestamp`) are
/// strings on the wire; they are kept as strings here and parsed where they are used.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Inbound<'a> {
    Connected {
        #[serde(default)]
        protocol: Option<String>,
        #[serde(default)]
        version: Option<String>,
    },
    Start {
        #[serde(rename = "streamSid", borrow)]
        stream_sid: Cow<'a, str>,
        start: StartMeta,
    },
    Media {
        #[serde(rename = "streamSid", borrow)]
        stream_sid: Cow<'a, str>,
        #[serde(borrow)]
        media: MediaPayload<'a>,
    },
    Dtmf {
        #[serde(rename = "streamSid", borrow)]
        stream_sid: Cow<'a, str>,
        dtmf: Dtmf,
    },
    Mark {
        #[serde(rename = "streamSid", borrow)]
        stream_sid: Cow<'a, str>,
        #[serde(borrow)]
        mark: MarkName<'a>,
    },
    Stop {
        #[serde(rename = "streamSid", borrow)]
        stream_sid: Cow<'a, str>,
    },
    /// An event type this version does not know: logged and ignored.
    #[serde(other)]
    Unknown,
}

/// A string borrowed from the message when it has no escapes. serde's `borrow` only applies
/// to a field of type `Cow<str>` itself; inside an `Option` the `Cow` would always be an owned
/// copy, an allocation per frame.
#[derive(Deserialize)]
struct BorrowedStr<'a>(#[serde(borrow)] Cow<'a, str>);

pub(crate) fn opt_cow<'de, D>(d: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<BorrowedStr<'de>>::deserialize(d)?.map(|b| b.0))
}

/// A millisecond count given as a string (Twilio) or a number; anything else is `None`.
fn lenient_ms<'de, D>(d: D) -> Result<Option<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a millisecond count as a string or a number")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.trim().parse().ok())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(u64::try_from(v).ok())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok((v.is_finite() && v >= 0.0).then_some(v as u64))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

/// A count given as a number or a numeric string; required.
fn lenient_u32<'de, D>(d: D) -> Result<u32, D::Error>
where
    D: serde::Deserializer<'de>,
{
    lenient_ms(d)?
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| serde::de::Error::custom("expected a whole number"))
}

/// `media` and `mark` come 50 and ~10 times a second: read in one pass into this struct,
/// whose fields are those of both shapes (anything else is skipped without being stored).
/// serde's internally tagged enum would first buffer every field into an allocated `Content`
/// tree to find the tag, several allocations per frame; peeking at the tag in a pass of its
/// own and then parsing again read every message twice (9% of the bridge's instructions,
/// measured with callgrind).
#[derive(Deserialize)]
struct HotMsg<'a> {
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    event: Option<Cow<'a, str>>,
    #[serde(rename = "streamSid", default, borrow, deserialize_with = "opt_cow")]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    media: Option<MediaPayload<'a>>,
    #[serde(default, borrow)]
    mark: Option<MarkName<'a>>,
}

impl<'a> Inbound<'a> {
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        // The hot shapes in one pass; the rare ones (connected, start, dtmf, stop, unknown),
        // and anything malformed, take the generic path (which also words the error).
        if let Ok(hot) = serde_json::from_str::<HotMsg<'a>>(text) {
            match (hot.event.as_deref(), hot.stream_sid, hot.media, hot.mark) {
                (Some("media"), Some(stream_sid), Some(media), _) => {
                    return Ok(Inbound::Media { stream_sid, media });
                }
                (Some("mark"), Some(stream_sid), _, Some(mark)) => {
                    return Ok(Inbound::Mark { stream_sid, mark });
                }
                _ => {}
            }
        }
        serde_json::from_str(text)
    }

    /// The event name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Inbound::Connected { .. } => "connected",
            Inbound::Start { .. } => "start",
            Inbound::Media { .. } => "media",
            Inbound::Dtmf { .. } => "dtmf",
            Inbound::Mark { .. } => "mark",
            Inbound::Stop { .. } => "stop",
            Inbound::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct StartMeta {
    #[serde(rename = "accountSid", default)]
    pub account_sid: Option<String>,
    #[serde(rename = "callSid", default)]
    pub call_sid: Option<String>,
    #[serde(default)]
    pub tracks: Vec<String>,
    #[serde(rename = "customParameters", default)]
    pub custom_parameters: HashMap<String, String>,
    #[serde(rename = "mediaFormat")]
    pub media_format: MediaFormat,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MediaFormat {
    pub encoding: String,
    /// A number on Twilio's wire; a numeric string is accepted too.
    #[serde(rename = "sampleRate", deserialize_with = "lenient_u32")]
    pub sample_rate: u32,
    #[serde(deserialize_with = "lenient_u32")]
    pub channels: u32,
}

impl MediaFormat {
    /// The only format a bidirectional Twilio stream carries: μ-law, 8 kHz, mono.
    pub fn is_mulaw_8k_mono(&self) -> bool {
        self.encoding == "audio/x-mulaw" && self.sample_rate == 8000 && self.channels == 1
    }
}

#[derive(Debug, Deserialize)]
pub struct MediaPayload<'a> {
    #[serde(default, borrow, deserialize_with = "opt_cow")]
    pub track: Option<Cow<'a, str>>,
    /// ms since the stream started. A string on Twilio's wire; a number is accepted too, and
    /// one that does not parse only disables gap filling for that frame (the audio still goes).
    #[serde(default, deserialize_with = "lenient_ms")]
    pub timestamp: Option<u64>,
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct Dtmf {
    pub digit: String,
}

#[derive(Debug, Deserialize)]
pub struct MarkName<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

/// Size of one outbound frame: 20 ms of μ-law at 8 kHz.
pub const FRAME_BYTES: usize = 160;

/// A message to Twilio. Only these three shapes exist.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// 20 ms of μ-law audio.
    Media([u8; FRAME_BYTES]),
    /// Echoed back by Twilio when playback reaches this point.
    Mark(String),
    /// Drop everything queued for playback.
    Clear,
}

impl Outbound {
    /// Writes the exact JSON Twilio accepts into `out` (cleared first). `sid_json` is the
    /// stream SID already encoded as a JSON string literal (quotes included), computed once per
    /// call so that no per-frame escaping is needed.
    pub fn write_json(&self, sid_json: &str, out: &mut String) {
        out.clear();
        match self {
            Outbound::Media(frame) => {
                out.push_str(r#"{"event":"media","streamSid":"#);
                out.push_str(sid_json);
                out.push_str(r#","media":{"payload":""#);
                base64::engine::general_purpose::STANDARD.encode_string(&frame[..], out);
                out.push_str(r#""}}"#);
            }
            Outbound::Mark(name) => {
                out.push_str(r#"{"event":"mark","streamSid":"#);
                out.push_str(sid_json);
                out.push_str(r#","mark":{"name":"#);
                push_json_string(name, out);
                out.push_str("}}");
            }
            Outbound::Clear => {
                out.push_str(r#"{"event":"clear","streamSid":"#);
                out.push_str(sid_json);
                out.push('}');
            }
        }
    }

    pub fn to_json(&self, sid_json: &str) -> String {
        let mut s = String::with_capacity(300);
        self.write_json(sid_json, &mut s);
        s
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(s: &str, out: &mut String) {
    // Our own mark names ("3:4800") need no escaping: written as they are, no allocation.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    // serde_json's escaping is the reference; a String never fails to serialize.
    match serde_json::to_string(s) {
        Ok(lit) => out.push_str(&lit),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_inbound_event() {
        let msgs = [
            r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
            r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"customParameters":{"From":"+15550001"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
            r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"//8="}}"#,
            r#"{"event":"dtmf","sequenceNumber":"9","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"1"}}"#,
            r#"{"event":"mark","sequenceNumber":"10","streamSid":"MZ1","mark":{"name":"1:800"}}"#,
            r#"{"event":"stop","sequenceNumber":"99","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#,
            r#"{"event":"somethingnew","x":1}"#,
        ];
        let names: Vec<_> = msgs
            .iter()
            .map(|m| Inbound::parse(m).map(|i| i.name()).unwrap_or("ERR"))
            .collect();
        assert_eq!(
            names,
            [
                "connected",
                "start",
                "media",
                "dtmf",
                "mark",
                "stop",
                "unknown"
            ]
        );
        match Inbound::parse(msgs[1]) {
            Ok(Inbound::Start { start, .. }) => {
                assert!(start.media_format.is_mulaw_8k_mono());
                assert_eq!(start.custom_parameters["From"], "+15550001");
                assert_eq!(start.call_sid.as_deref(), Some("CA1"));
            }
            other => panic!("bad start: {other:?}"),
        }
    }

    #[test]
    fn media_timestamps_are_read_as_strings_or_numbers() {
        let ts = |t: &str| {
            let text = format!(
                r#"{{"event":"media","streamSid":"MZ1","media":{{"timestamp":{t},"payload":"//8="}}}}"#
            );
            match Inbound::parse(&text) {
                Ok(Inbound::Media { media, .. }) => Ok(media.timestamp),
                Ok(other) => Err(format!("{other:?}")),
                Err(e) => Err(e.to_string()),
            }
        };
        assert_eq!(ts(r#""40""#), Ok(Some(40)), "Twilio's own shape");
        assert_eq!(ts("40"), Ok(Some(40)));
        assert_eq!(
            ts(r#""soon""#),
            Ok(None),
            "the frame still counts, without gap filling"
        );
        assert_eq!(ts("null"), Ok(None));
        let start = |rate: &str| {
            Inbound::parse(&format!(
                r#"{{"event":"start","streamSid":"MZ1","start":{{"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":{rate},"channels":1}}}}}}"#
            ))
            .map(|m| match m {
                Inbound::Start { start, .. } => start.media_format.is_mulaw_8k_mono(),
                _ => false,
            })
        };
        assert_eq!(start("8000").ok(), Some(true));
        assert_eq!(start(r#""8000""#).ok(), Some(true));
        assert!(
            start(r#""fast""#).is_err(),
            "a format we cannot read is refused"
        );
    }

    #[test]
    fn outbound_shapes_are_exact() {
        let sid = serde_json::to_string("MZ\"x").unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&Outbound::Media([0xFF; 160]).to_json(&sid)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event":"media","streamSid":"MZ\"x","media":{"payload":
                base64::engine::general_purpose::STANDARD.encode([0xFFu8;160])}})
        );
        let v: serde_json::Value =
            serde_json::from_str(&Outbound::Mark("a\"b".into()).to_json(&sid)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event":"mark","streamSid":"MZ\"x","mark":{"name":"a\"b"}})
        );
        let v: serde_json::Value = serde_json::from_str(&Outbound::Clear.to_json(&sid)).unwrap();
        assert_eq!(v, serde_json::json!({"event":"clear","streamSid":"MZ\"x"}));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"event":"media"}"#,
            r#"{"event":"start","streamSid":"MZ"}"#,
            r#"{"event":"media","streamSid":1,"media":{"payload":"x"}}"#,
        ] {
            assert!(Inbound::parse(bad).is_err(), "{bad}");
        }
    }
}
