//! Where a call is in its life, as one value instead of a combination of flags.
//!
//! ```text
//! AwaitingStart ──start──▶ Connecting ──first session configured──▶ Live
//!       │  └──first session configured (still no start)──┐           │
//!       │                                  start ─────────┴──────────▶│
//!       └──────────────┬──────────────────────┬───────────────────────┘
//!                      ▼ a wrap-up or end_call/transfer began (any of the three)
//!                   Ending ──(a transfer that failed goes back)──▶ the phase it left
//!                      ▼
//!                    Ended   (from anywhere: a hang-up, a timeout, a loss)
//! ```
//!
//! The phase says what the call as a whole is doing; the state of each concern (the upstream's
//! generations, the ending's steps, what is held for Twilio) stays with that concern.

/// The call's phase. See the module docs for the transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Twilio's `start` has not named the stream yet: messages for Twilio are held (the first
    /// session may already be configured, e.g. greeting while `start` is on its way).
    AwaitingStart,
    /// `start` arrived; the first upstream session is not configured yet (its socket is not
    /// open, or the call's settings are still being decided).
    Connecting,
    /// Both sides are up. A reconnect or a rotation of the upstream happens inside this phase.
    Live,
    /// The call is on its way out (goodbye playing, REST update sent, waiting for `stop`).
    Ending,
    /// Over: the hang-up was emitted, nothing more comes out.
    Ended,
}

impl Phase {
    /// The phase of a call that is neither ending nor ended, from what it has so far.
    pub(crate) fn opening(stream_known: bool, session_configured: bool) -> Phase {
        match (stream_known, session_configured) {
            (false, _) => Phase::AwaitingStart,
            (true, false) => Phase::Connecting,
            (true, true) => Phase::Live,
        }
    }

    /// Whether the call is past its opening (ending or ended): opening steps no longer move it.
    pub(crate) fn is_closing(self) -> bool {
        matches!(self, Phase::Ending | Phase::Ended)
    }
}
