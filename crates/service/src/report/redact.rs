//! Redaction of a report's JSON values: tool arguments and outputs are the integrator's data
//! and reach its tools whole, but what the report stores of them is redacted like the
//! transcript (`redact`).

use callbridge_core::redact::Redact;
use serde_json::Value;

/// A tool call's arguments or output as the report stores them: its JSON (or the text when it
/// is none), redacted. The integrator's tool got them whole: they are its data.
pub fn stored_json(redact: Redact, text: &str) -> Value {
    let mut v = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    redact_json(redact, &mut v);
    v
}

/// Redacts every string in `v`, and every number that reads as something to redact (a card
/// number sent as a JSON number). Object keys are names, not data: kept.
pub fn redact_json(redact: Redact, v: &mut Value) {
    if redact.is_empty() {
        return;
    }
    match v {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(r) = redact.apply(s) {
                *s = r;
            }
        }
        Value::Number(n) => {
            let text = n.to_string();
            if let std::borrow::Cow::Owned(r) = redact.apply(&text) {
                *v = Value::String(r);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact_json(redact, i)),
        Value::Object(fields) => fields.values_mut().for_each(|f| redact_json(redact, f)),
        Value::Null | Value::Bool(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::conversation::Conversation;
    use crate::call::tools::ToolCallRecord;
    use crate::call::CallEvent;
    use crate::report::builder::ReportBuilder;
    use serde_json::json;
    use std::time::{Instant, SystemTime};

    /// The agent read a card back and the caller cut it off mid-number: the report's line is
    /// what was heard, still matched to the log (its interruption kept), with the number gone
    /// whole; the tool call's arguments are stored redacted.
    #[test]
    fn the_report_redacts_what_the_log_and_the_tools_hold() {
        let t0 = Instant::now();
        let said = "I have 4111 1111 1111 1111 on file, is that right?";
        let mut log = Conversation::new();
        log.agent_said(Some("i1"), said);
        log.agent_interrupted("i1", 1000, 4000);
        let mut b = ReportBuilder::new(t0, SystemTime::UNIX_EPOCH);
        b.redact = Redact::all();
        // The events reach the builder redacted (`call_log::redacted`).
        let event_text = Redact::all().apply(said).into_owned();
        b.on_event(&CallEvent::AgentTranscript(event_text.into()), t0);
        b.use_conversation(log.entries());
        b.set_tool_calls(
            &[ToolCallRecord {
                call_id: "c1".into(),
                tool: "pay".into(),
                arguments: r#"{"card":"4111111111111111","amount":12}"#.into(),
                output: Some("charged 4111-1111-1111-1111".into()),
                result: Some("ok"),
            }],
            &[],
        );
        let r = b.finish("caller_hung_up", t0);
        assert_eq!(r.transcript[0].text, "I have [card]…");
        assert_eq!(r.transcript[0].interrupted_after_ms, Some(1000));
        assert_eq!(
            r.tool_calls[0].arguments,
            json!({"card": "[card]", "amount": 12})
        );
        assert_eq!(r.tool_calls[0].output, json!("charged [card]"));
    }

    #[test]
    fn strings_and_numbers_anywhere_in_the_value() {
        let mut v = json!({
            "card": 4111111111111111u64,
            "order": 1234567890123456u64,
            "notes": ["mail ada@example.com", {"card_number": "4111 1111 1111 1111"}],
            "ok": true
        });
        redact_json(Redact::all(), &mut v);
        assert_eq!(
            v,
            json!({
                "card": "[card]",
                "order": 1234567890123456u64,
                "notes": ["mail [email]", {"card_number": "[card]"}],
                "ok": true
            })
        );
    }
}
