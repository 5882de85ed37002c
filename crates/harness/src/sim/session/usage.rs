//! `usage` on `response.done`: realistic and deterministic, so a test can sum what each session
//! sent and compare it with the bridge's report to the token. Shape: OpenAI Python SDK 3.63.0,
//! `openai/types/realtime/realtime_response_usage.py` (beta: no `cached_tokens_details`).
//!
//! The model of a session's context: a response's input is the instructions, all caller audio
//! appended so far and every earlier response's output; the part the previous response already
//! saw is cached (a growing prefix). Rates, roughly as the API counts: 1 text token per 4
//! characters, 10 input audio tokens per second, 20 output audio tokens per second.

use serde_json::{json, Value};

use super::Session;

/// The input context the session's previous response saw, and the outputs since.
#[derive(Default)]
pub(super) struct Context {
    seen_text: u64,
    seen_audio: u64,
    out_text: u64,
    out_audio: u64,
}

pub(super) fn text_tokens(s: &str) -> u64 {
    (s.chars().count() as u64).div_ceil(4)
}

impl Session {
    /// The usage of a response that said `said` with `sent_ms` of audio.
    pub(super) fn usage(&mut self, said: &str, sent_ms: u64) -> Value {
        let instructions = self
            .config
            .get("instructions")
            .and_then(Value::as_str)
            .map_or(0, text_tokens);
        let caller_ms = (self.appended_bytes / self.in_fmt.bytes_per_ms().max(1)) as u64;
        let c = &mut self.usage_ctx;
        let in_text = instructions + c.out_text;
        let in_audio = caller_ms / 100 + c.out_audio;
        let (cached_text, cached_audio) = (c.seen_text.min(in_text), c.seen_audio.min(in_audio));
        let (out_text, out_audio) = (text_tokens(said), sent_ms / 50);
        c.seen_text = in_text;
        c.seen_audio = in_audio;
        c.out_text += out_text;
        c.out_audio += out_audio;
        let (input, output) = (in_text + in_audio, out_text + out_audio);
        let mut details = json!({"text_tokens": in_text, "audio_tokens": in_audio,
            "image_tokens": 0, "cached_tokens": cached_text + cached_audio,
            "cached_tokens_details": {"text_tokens": cached_text, "audio_tokens": cached_audio,
                "image_tokens": 0}});
        if self.beta {
            if let Some(d) = details.as_object_mut() {
                d.remove("image_tokens");
                d.remove("cached_tokens_details");
            }
        }
        json!({"total_tokens": input + output, "input_tokens": input, "output_tokens": output,
            "input_token_details": details,
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio}})
    }
}
