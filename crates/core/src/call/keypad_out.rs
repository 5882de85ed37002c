//! The agent presses keys: the built-in tool `send_dtmf`.
//!
//! Twilio's Media Streams have no message that sends a digit (the messages a server may send
//! are `media`, `mark` and `clear`: Twilio docs, "Media Streams — WebSocket Messages"), and
//! updating the call's TwiML (`<Play digits>`) would replace the `<Connect><Stream>` that
//! carries the call, so the keys are played **in band** as ITU-T Q.23 tones
//! ([`crate::audio::dtmf`]), like speech:
//!
//! - The tones go out when the response that called the tool is done, so they follow, in
//!   Twilio's queue, everything of the agent's already sent (what it said before pressing).
//!   They are accounted in [`super::playback`] as an item of their own and end with a mark.
//! - The tool's `function_call_output` (`{"played": "1w2#"}`) is sent once that mark echoes,
//!   i.e. once the far end has heard the last key; then, as for every tool, `response.create`.
//!   A line that never echoes gets the output anyway after the tones' length plus
//!   [`ECHO_GRACE`], marked `"confirmed": false`.
//! - A barge-in while keys are queued or playing does not `clear` Twilio's queue: half a key
//!   is a wrong key, and an IVR talks over a caller's keys as a matter of course. The response
//!   being generated, if any, is still cancelled. Agent audio queued behind the keys (rare: the
//!   model is not asked to speak until the keys are heard) plays out too.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Call, CallEvent, Output};
use crate::audio::{dtmf, FRAME_BYTES};
use crate::twilio::Outbound;

pub const SEND_DTMF: &str = "send_dtmf";

/// Past the tones' own length, the longest wait for their mark's echo.
pub const ECHO_GRACE: Duration = Duration::from_secs(10);
/// Key strings waiting for their echo at once (a model calls one at a time).
const MAX_WAITING: usize = 16;

/// `send_dtmf` as the model sees it in `session.update`.
pub(crate) fn declaration() -> Value {
    json!({"type": "function", "name": SEND_DTMF,
        "description": "Press keys on the phone keypad (DTMF tones into the call), e.g. to choose an option in an automated phone menu or enter a number the caller's system asks for. Keys are played after what you have already said; the result arrives once the other side has heard the last key.",
        "parameters": {"type": "object", "properties": {
            "digits": {"type": "string",
                "description": "Keys in order: 0-9, *, #, A-D; w waits half a second. Example: \"1w2#\"."}},
            "required": ["digits"]}})
}

/// Keys played and not yet confirmed heard.
struct Waiting {
    call_id: String,
    /// Normalised key string (what the output says was played).
    keys: String,
    /// Global playback offset just past the last key's gap.
    end: u64,
    started: Instant,
    deadline: Instant,
}

#[derive(Default)]
pub(crate) struct KeypadOut {
    waiting: Vec<Waiting>,
}

impl KeypadOut {
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.waiting.iter().map(|w| w.deadline).min()
    }
}

impl Call {
    /// The model called `send_dtmf` (its response completed): play the keys after what is
    /// queued, or refuse with an output that says what was wrong.
    pub(super) fn send_dtmf_requested(&mut self, call_id: &str, args: &Value, now: Instant) {
        let Some(digits) = args.get("digits").and_then(Value::as_str) else {
            return self.refuse(
                call_id,
                SEND_DTMF,
                "bad_arguments",
                "digits is required: a string of keys like \"1w2#\"",
            );
        };
        let presses = match dtmf::parse(digits) {
            Ok(p) => p,
            Err(e) => return self.refuse(call_id, SEND_DTMF, "bad_arguments", &e.0),
        };
        if self.tools.keypad.waiting.len() >= MAX_WAITING {
            return self.refuse(
                call_id,
                SEND_DTMF,
                "busy",
                "too many key strings are still playing; wait for their results",
            );
        }
        // A filler still sounding is stopped now: its `clear` must come before the keys, never
        // after them (the next model audio would clear the keys with it).
        self.filler_stop(now);
        // Anything of the agent's still in the framer goes first (its tail, with its mark).
        if self.current_item.is_some() {
            self.finish_item(now);
        }
        // The model's call_ids are unique within a call (a repeated one is never run twice).
        let item_id = format!("dtmf:{call_id}");
        // A playback item of its own: the tones count as audible, delay a hang-up until heard
        // and give the silence timer an agent turn, like speech.
        if self.playback.item(&item_id, "").is_none() {
            return;
        }
        // A guard gap first: a key glued to the end of speech is easily missed by a receiver.
        let mut frames = 0u64;
        for _ in 0..dtmf::GAP_MS / 20 {
            self.send_twilio(Outbound::Media([crate::audio::ULAW_SILENCE; FRAME_BYTES]));
            frames += 1;
        }
        for frame in dtmf::frames(&presses) {
            self.send_twilio(Outbound::Media(frame));
            frames += 1;
        }
        let bytes = frames * FRAME_BYTES as u64;
        self.playback.on_sent(&item_id, bytes, now);
        if let Some(name) = self.playback.mark(&item_id) {
            self.send_twilio(Outbound::Mark(name));
        }
        self.agent_speaking = true;
        let plays_for = Duration::from_millis(frames * 20);
        self.out.push_back(Output::Event(CallEvent::ToolStarted {
            tool: SEND_DTMF.into(),
            call_id: call_id.to_owned(),
        }));
        self.tools.keypad.waiting.push(Waiting {
            call_id: call_id.to_owned(),
            keys: dtmf::to_text(&presses),
            end: self.playback.sent(),
            started: now,
            deadline: now + plays_for + ECHO_GRACE,
        });
    }

    /// Keys the far end has heard (their mark echoed) are reported to the model; keys whose
    /// echo is overdue too, unconfirmed. Runs on every mark echo and on the tools' timer.
    pub(super) fn keypad_out_progress(&mut self, now: Instant) {
        if self.tools.keypad.waiting.is_empty() {
            return;
        }
        let heard = self.playback.heard(now);
        let (done, rest): (Vec<Waiting>, Vec<Waiting>) =
            std::mem::take(&mut self.tools.keypad.waiting)
                .into_iter()
                .partition(|w| heard >= w.end || now >= w.deadline);
        self.tools.keypad.waiting = rest;
        for w in done {
            let confirmed = heard >= w.end;
            let (output, result) = if confirmed {
                (json!({"played": w.keys}), "ok")
            } else {
                (
                    json!({"played": w.keys, "confirmed": false,
                        "note": "the keys were sent, but the line did not confirm they were heard"}),
                    "timeout",
                )
            };
            self.out.push_back(Output::Event(CallEvent::ToolCall {
                tool: SEND_DTMF.into(),
                call_id: w.call_id.clone(),
                result,
                seconds: Some(now.saturating_duration_since(w.started).as_secs_f64()),
            }));
            self.send_output(&w.call_id, output.to_string(), result);
        }
    }

    /// Keys are queued at Twilio or playing: a barge-in must not `clear` them.
    pub(super) fn keys_playing(&self, now: Instant) -> bool {
        let heard = self.playback.heard(now);
        self.tools.keypad.waiting.iter().any(|w| heard < w.end)
    }
}
