//! The agent's own voice coming back from the caller's line (a speakerphone, a loud handset, a
//! hybrid): caught by the [`EchoGate`] and replaced by μ-law silence before the voice activity
//! model and the Realtime model hear the frame. So echo neither pauses the agent nor reaches the
//! model as the caller speaking (with `barge_in = "server"` the server's VAD would take it for a
//! turn and the model would answer itself).
//!
//! The gate is fed the agent frame the caller is hearing now (from the kept, unplayed audio at
//! the heard position) in step with every caller frame while the agent is audible, and for
//! [`ECHO_TAIL`] after: an echo arrives up to ~400 ms after its sound was played. Caller speech
//! on top of the echo (double talk) is not echo and passes untouched (`docs/echo.md` has the
//! gate's measured detection and double-talk rates).

use std::time::{Duration, Instant};

use crate::audio::echo::EchoGate;
use crate::audio::{FRAME_BYTES, ULAW_SILENCE};
use crate::call::{Call, CallEvent, Output};

use super::BargeInDecision;

/// How long after the agent stops being audible the gate keeps listening for its echo (the
/// gate searches echo delays up to 400 ms).
const ECHO_TAIL: Duration = Duration::from_millis(400);
/// Echo frames closer together than this (in frames) are one echo episode: counted once in
/// `callbridge_bargein_total{decision="ignored_echo"}`.
const EPISODE_GAP_FRAMES: u32 = 25;

#[derive(Debug)]
pub(in crate::call) struct EchoStage {
    gate: EchoGate,
    /// Listening until then (the echo's tail after the agent stopped).
    listen_until: Option<Instant>,
    /// Caller frames since the last echo frame (saturating).
    since_echo: u32,
}

impl EchoStage {
    pub(in crate::call) fn new() -> EchoStage {
        EchoStage {
            gate: EchoGate::new(),
            listen_until: None,
            since_echo: u32::MAX,
        }
    }
}

impl Call {
    /// Silences a caller frame that is only the agent's echo. Called for every caller frame,
    /// before anything else hears it.
    pub(in crate::call) fn bargein_cancel_echo(&mut self, ulaw: &mut [u8], now: Instant) {
        if ulaw.len() != FRAME_BYTES {
            return; // Twilio sends 20 ms frames; anything else is passed on as it is.
        }
        let audible = self.agent_audible(now);
        let Some(stage) = self.bargein.as_deref().and_then(|b| b.echo.as_ref()) else {
            return;
        };
        if !audible && stage.listen_until.is_none_or(|t| now >= t) {
            return;
        }
        let played = self.agent_frame_heard(now);
        let Some(stage) = self.bargein.as_deref_mut().and_then(|b| b.echo.as_mut()) else {
            return;
        };
        if audible {
            stage.listen_until = Some(now + ECHO_TAIL);
        }
        stage.gate.on_played(&played);
        if !stage.gate.is_echo(ulaw) {
            stage.since_echo = stage.since_echo.saturating_add(1);
            return;
        }
        ulaw.fill(ULAW_SILENCE);
        let new_episode = stage.since_echo >= EPISODE_GAP_FRAMES;
        stage.since_echo = 0;
        if new_episode {
            self.out.push_back(Output::Event(CallEvent::BargeInDecided(
                BargeInDecision::IgnoredEcho,
            )));
        }
    }
}
