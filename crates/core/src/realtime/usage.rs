//! The token usage a `response.done` reports, read leniently and split into six disjoint kinds
//! (what is billed at one rate each), so a call's sessions can be summed and priced.
//!
//! Wire shape (GA): the OpenAI Python SDK 3.63.0, `openai/types/realtime/realtime_response_usage.py`,
//! `realtime_response_usage_input_token_details.py`, `realtime_response_usage_output_token_details.py`:
//! `usage: {total_tokens, input_tokens, output_tokens, input_token_details: {text_tokens,
//! audio_tokens, image_tokens, cached_tokens, cached_tokens_details: {text_tokens, audio_tokens,
//! image_tokens}}, output_token_details: {text_tokens, audio_tokens}}`. The beta dialect
//! (`openai/types/beta/realtime/realtime_response_usage.py`) has the same fields without
//! `cached_tokens_details`.
//!
//! Cached tokens are a *subset* of the input tokens (SDK: "input tokens will include cached and
//! uncached tokens"): `input_text` here is the text input *not* served from cache, so the six
//! kinds never count a token twice. When the server does not say which cached tokens were text
//! and which audio (beta, or no `cached_tokens_details`), nothing is taken as cached: every
//! input token stays at the full rate (an upper bound, never a guess below the bill). Image
//! tokens are not counted (the bridge sends no images).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Tokens of one response, or summed over a call, by the rate they are billed at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Text input tokens not served from cache.
    pub input_text: u64,
    /// Audio input tokens not served from cache.
    pub input_audio: u64,
    pub input_cached_text: u64,
    pub input_cached_audio: u64,
    pub output_text: u64,
    pub output_audio: u64,
}

/// The kinds' names, as in the report's `usage` and the metric's `kind` label.
pub const KINDS: [&str; 6] = [
    "input_text",
    "input_audio",
    "input_cached_text",
    "input_cached_audio",
    "output_text",
    "output_audio",
];

impl TokenUsage {
    /// The usage of a `response.done`'s `usage` object. Missing, negative or non-numeric
    /// fields count as 0; anything not an object is no usage.
    pub fn from_json(v: &Value) -> Option<TokenUsage> {
        let v = v.as_object()?;
        let n = |o: Option<&Value>, k: &str| -> u64 {
            o.and_then(|o| o.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let input = v.get("input_token_details");
        let output = v.get("output_token_details");
        let cached = input.and_then(|i| i.get("cached_tokens_details"));
        let (text, audio) = (n(input, "text_tokens"), n(input, "audio_tokens"));
        // Cached tokens are priced apart only where the server split them by kind.
        let (cached_text, cached_audio) = match cached {
            Some(c) if c.is_object() => (
                n(Some(c), "text_tokens").min(text),
                n(Some(c), "audio_tokens").min(audio),
            ),
            _ => (0, 0),
        };
        Some(TokenUsage {
            input_text: text - cached_text,
            input_audio: audio - cached_audio,
            input_cached_text: cached_text,
            input_cached_audio: cached_audio,
            output_text: n(output, "text_tokens"),
            output_audio: n(output, "audio_tokens"),
        })
    }

    /// The counts in [`KINDS`] order.
    pub fn counts(&self) -> [u64; 6] {
        [
            self.input_text,
            self.input_audio,
            self.input_cached_text,
            self.input_cached_audio,
            self.output_text,
            self.output_audio,
        ]
    }

    /// `(kind, tokens)` pairs in [`KINDS`] order.
    pub fn by_kind(&self) -> impl Iterator<Item = (&'static str, u64)> {
        KINDS.into_iter().zip(self.counts())
    }

    /// Adds `other` (saturating: a hostile server cannot overflow the sum).
    pub fn add(&mut self, other: &TokenUsage) {
        let a = [
            &mut self.input_text,
            &mut self.input_audio,
            &mut self.input_cached_text,
            &mut self.input_cached_audio,
            &mut self.output_text,
            &mut self.output_audio,
        ];
        for (mine, theirs) in a.into_iter().zip(other.counts()) {
            *mine = mine.saturating_add(theirs);
        }
    }

    pub fn total(&self) -> u64 {
        self.counts().iter().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// `deserialize_with` for `response.usage`: never fails the event, whatever `usage` holds.
pub(crate) fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TokenUsage>, D::Error> {
    Ok(Value::deserialize(d)
        .ok()
        .as_ref()
        .and_then(TokenUsage::from_json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cached_tokens_are_a_subset_of_the_input() {
        let u = TokenUsage::from_json(&json!({"total_tokens": 330, "input_tokens": 300,
            "output_tokens": 30,
            "input_token_details": {"text_tokens": 100, "audio_tokens": 200, "image_tokens": 0,
                "cached_tokens": 64, "cached_tokens_details": {"text_tokens": 60, "audio_tokens": 4}},
            "output_token_details": {"text_tokens": 10, "audio_tokens": 20}}))
        .unwrap();
        assert_eq!(u.counts(), [40, 196, 60, 4, 10, 20]);
        assert_eq!(u.total(), 330);
    }

    #[test]
    fn odd_usage_is_tolerated() {
        assert_eq!(TokenUsage::from_json(&json!(null)), None);
        assert_eq!(TokenUsage::from_json(&json!("x")), None);
        let u = TokenUsage::from_json(&json!({"input_token_details": {"text_tokens": -3,
            "audio_tokens": "7", "cached_tokens": 5}, "output_token_details": 4}))
        .unwrap();
        assert_eq!(u, TokenUsage::default());
        // More cached than input: capped, never below zero.
        let u = TokenUsage::from_json(&json!({"input_token_details": {"text_tokens": 2,
            "cached_tokens_details": {"text_tokens": 9}}}))
        .unwrap();
        assert_eq!((u.input_text, u.input_cached_text), (0, 2));
    }

    #[test]
    fn sums_saturate() {
        let mut a = TokenUsage {
            output_audio: u64::MAX,
            ..TokenUsage::default()
        };
        a.add(&TokenUsage {
            output_audio: 5,
            input_text: 1,
            ..TokenUsage::default()
        });
        assert_eq!((a.output_audio, a.input_text), (u64::MAX, 1));
    }
}
