//! The Twilio and Realtime parsers never panic: not on arbitrary bytes, not on arbitrary JSON,
//! not on JSON shaped like the protocols with the wrong types in every field.

use callbridge::realtime::ServerEvent;
use callbridge::twilio::Inbound;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Field names and event names of both protocols, so generated objects often look like real
/// messages with wrong or missing parts.
const KEYS: &[&str] = &[
    "event",
    "type",
    "streamSid",
    "start",
    "media",
    "payload",
    "timestamp",
    "track",
    "chunk",
    "mark",
    "name",
    "dtmf",
    "digit",
    "stop",
    "mediaFormat",
    "encoding",
    "sampleRate",
    "channels",
    "customParameters",
    "callSid",
    "sequenceNumber",
    "response",
    "id",
    "status",
    "response_id",
    "item_id",
    "delta",
    "error",
    "code",
    "message",
    "transcript",
    "audio_start_ms",
    "audio_end_ms",
    "output_index",
    "content_index",
];

const EVENTS: &[&str] = &[
    "connected",
    "start",
    "media",
    "mark",
    "dtmf",
    "stop",
    "session.created",
    "session.updated",
    "error",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "response.created",
    "response.output_audio.delta",
    "response.audio.delta",
    "response.output_audio.done",
    "response.audio.done",
    "response.output_audio_transcript.done",
    "conversation.item.input_audio_transcription.completed",
    "response.done",
    "",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        prop::sample::select(EVENTS).prop_map(|s| Value::String(s.to_owned())),
        // Numbers as strings, as Twilio sends them, and near-misses.
        prop_oneof![
            Just("20"),
            Just("-1"),
            Just("1e99"),
            Just("18446744073709551616"),
            Just("AAAA"),
            Just("====")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An object with a real event/type tag and arbitrary other fields.
fn tagged() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(&["event", "type"][..]),
        prop::sample::select(EVENTS),
        prop::collection::vec((key(), json_value()), 0..8),
    )
        .prop_map(|(tag, name, fields)| {
            let mut m: Map<String, Value> = fields.into_iter().collect();
            m.insert(tag.to_owned(), Value::String(name.to_owned()));
            Value::Object(m)
        })
}

fn parse_both(text: &str) {
    let _ = Inbound::parse(text);
    let _ = ServerEvent::parse(text);
}

proptest! {
    #![proptest_config(crate::config(2000))]

    #[test]
    fn parsers_survive_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_both(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn parsers_survive_arbitrary_strings(text in any::<String>()) {
        parse_both(&text);
    }

}

proptest! {
    // Each case also parses every cut of its message: fewer cases, as much work.
    #![proptest_config(crate::config(1000))]

    #[test]
    fn parsers_survive_arbitrary_json(v in prop_oneof![json_value(), tagged()]) {
        let text = v.to_string();
        parse_both(&text);
        // Cut anywhere: a message truncated mid-way.
        for cut in (0..text.len()).step_by(7) {
            if text.is_char_boundary(cut) {
                parse_both(&text[..cut]);
            }
        }
    }
}
