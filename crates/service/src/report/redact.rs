//! Redaction of a report's JSON values: tool arguments and outputs are the integrator's data
//! and reach its tools whole, but what the report stores of them is redacted like the
//! transcript (`redact`).

use callbridge_core::redact::Redact;
use serde_json::Value;

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
    use serde_json::json;

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
