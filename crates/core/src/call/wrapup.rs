//! Wrapping a call up on the bridge's own initiative: the server's drain, the maximum call
//! length, and a machine answering (voicemail). The agent is asked for a short goodbye (or the voicemail message),
//! and the call ends once it was heard (see [`Call::end_after_heard`]).

use std::time::{Duration, Instant};

use super::timers::DRAIN_HANGUP_MARGIN;
use super::{Call, EndReason};

/// What the model is told when the call reaches `max_call_seconds`.
pub const MAX_DURATION_SAY: &str =
    "The call has reached its time limit: say a short goodbye now, in one sentence.";

/// What the model is told when the setup lookup rejected the call.
pub const REJECT_SAY: &str = "This call cannot be taken. Tell the caller, politely and in one or two short sentences, that you cannot help with this call, and say goodbye.";

/// Put before the voicemail message in the model's instructions.
pub const VOICEMAIL_SAY: &str = "You reached an answering machine and are now recording a voicemail. Say exactly the following message, word for word, and nothing else: ";

/// A long message takes long to say: the wait for it to be heard grows with it
/// (about 12 characters a second spoken, plus generation time).
fn voicemail_timeout(say: Option<&str>) -> std::time::Duration {
    let chars = say.map_or(0, |s| s.chars().count() as u64);
    std::time::Duration::from_secs(10 + chars / 12)
}

impl Call {
    /// When the call reaches its maximum length (none once it is ending anyway).
    pub(super) fn wrapup_next_deadline(&self) -> Option<Instant> {
        let limit = self.cfg.max_call?;
        if self.is_ending() {
            return None;
        }
        Some(self.opened_at + limit)
    }

    /// The server's drain is over: the call says `goodbye` (if set) and hangs up once it was
    /// heard, waiting at most `wait` for that (see [`Call::end_after_heard`]); whatever
    /// happens, it ends as `Shutdown` [`DRAIN_HANGUP_MARGIN`] after that, so the server can
    /// stop. If the call is already ending, only that hard end is added.
    pub fn on_drain(&mut self, goodbye: Option<String>, wait: Duration, now: Instant) {
        if self.is_ended() {
            return;
        }
        self.end_after_heard(goodbye, EndReason::Shutdown, wait, now);
        self.drain_deadline = Some(now + wait + DRAIN_HANGUP_MARGIN);
    }

    /// Answering machine detection found a machine: whatever the agent is saying is cut off
    /// (a greeting meant for a person), the `voicemail_message` is said word for word, and the
    /// call hangs up once it was played (outcome `voicemail`). Without a message, the call
    /// hangs up at once. Nothing happens if the call is already ending.
    pub fn on_machine_answered(&mut self, now: Instant) {
        if self.phase.is_closing() {
            return;
        }
        self.barge_in(now);
        let say = self
            .cfg
            .voicemail_message
            .as_ref()
            .map(|m| format!("{VOICEMAIL_SAY}{m}"));
        let timeout = self
            .cfg
            .tools
            .goodbye_timeout
            .max(voicemail_timeout(say.as_deref()));
        self.end_after_heard(say, EndReason::Voicemail, timeout, now);
    }

    /// The setup lookup rejected the call: the agent says a short refusal and the call hangs
    /// up once it was heard (outcome `rejected`). Before the session is ready this waits for it.
    pub fn reject_politely(&mut self, now: Instant) {
        if self.phase.is_closing() {
            return;
        }
        if !self.upstream_ready {
            self.reject_pending = true;
            return;
        }
        let timeout = self.cfg.tools.goodbye_timeout;
        self.end_after_heard(Some(REJECT_SAY.into()), EndReason::Rejected, timeout, now);
    }

    /// The first session is configured: a refusal waiting for it is said now.
    pub(super) fn wrapup_on_ready(&mut self, now: Instant) {
        if std::mem::take(&mut self.reject_pending) {
            self.reject_politely(now);
        }
    }

    pub(super) fn wrapup_on_tick(&mut self, now: Instant) {
        if self.wrapup_next_deadline().is_some_and(|d| now >= d) {
            let timeout = self.cfg.tools.goodbye_timeout;
            self.end_after_heard(
                Some(MAX_DURATION_SAY.into()),
                EndReason::MaxDuration,
                timeout,
                now,
            );
        }
    }
}
