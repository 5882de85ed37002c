//! Wrapping a call up on the bridge's own initiative: the maximum call length. The agent is
//! asked for a short goodbye, and the call ends once the caller heard it (see
//! [`Call::end_after_heard`]).

use std::time::Instant;

use super::{Call, EndReason};

/// What the model is told when the call reaches `max_call_seconds`.
pub const MAX_DURATION_SAY: &str =
    "The call has reached its time limit: say a short goodbye now, in one sentence.";

impl Call {
    /// When the call reaches its maximum length (none once it is ending anyway).
    pub(super) fn wrapup_next_deadline(&self) -> Option<Instant> {
        let limit = self.cfg.max_call?;
        if self.is_ending() {
            return None;
        }
        Some(self.opened_at + limit)
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
