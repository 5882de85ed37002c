//! A caller who went quiet (phone put down, line dead, reading something): after a while the
//! agent checks in, and after a longer while it says goodbye and the call hangs up
//! (outcome `caller_silent`). Both are off unless configured ([`SilenceConfig`]).
//!
//! # The silence clock
//!
//! It measures how long the agent has been *waiting for the caller*, and nothing else:
//!
//! - **Starts** when the agent's turn is over: the last mark of its answer echoed (the caller
//!   heard all of it, [`CallEvent::PlayoutDone`](super::CallEvent::PlayoutDone)), or a
//!   response finished without any audio still to be heard — provided no other response is
//!   being generated, no tool is running and the call is not ending.
//! - **Stops** (and forgets where it was) on caller speech (`input_audio_buffer.speech_started`),
//!   a key the caller pressed, and any new response (`response.created`: the agent speaks
//!   again, including the check-in itself). It starts again when that response's turn is over.
//!   Keys that do not go to the model (`dtmf_to_model = false`) get no answer, so after one the
//!   clock starts again at once: the agent is still waiting, in a new stretch.
//! - **Does not run** while a tool call is in flight (and its filler plays), while the call is
//!   ending or transferring, before the call is live, or while the upstream is down. When a
//!   new session took over after a drop, the clock starts again from then if the agent waits
//!   (the outage was not the caller's silence, and the caller audio kept meanwhile reaches the
//!   new session first); the stretch goes on (a check-in already made is not repeated).
//!
//! # What happens when it runs out
//!
//! A *silence stretch* lasts from the caller's last speech or keypress to the next one.
//!
//! 1. `reprompt` after the clock started: `response.create` with the reprompt instructions (the
//!    model checks in, in its own words). At most once per stretch. The clock restarts at that
//!    moment (so a refused `response.create` still leads to the hang-up), and again when the
//!    check-in has been heard.
//! 2. `hangup` after the clock (re)started — that is, measured from the moment the agent last
//!    finished speaking and began to wait: after the check-in was heard if there was one, else
//!    after the agent's last answer. The model is asked for a goodbye
//!    ([`Call::end_after_heard`]), and the call hangs up once it was heard, as
//!    [`EndReason::CallerSilent`].

use std::time::{Duration, Instant};

use super::{Call, EndReason};
use crate::realtime::ClientEvent;

/// What the model is told when the caller has been silent for `silence_reprompt_s`.
pub const REPROMPT_SAY: &str = "The caller has not said anything for a while. Check briefly, in your own words and in one short sentence, whether they are still there (for example, whether they can still hear you). Do not repeat your previous answer.";

/// What the model is told when the caller has stayed silent for `silence_hangup_s`.
pub const GOODBYE_SAY: &str = "The caller has not answered for a long time and seems to be gone. Say a short, friendly goodbye in one sentence (they can call back any time).";

/// When a silent caller is checked on and hung up on. Off by default: `None` durations.
#[derive(Debug, Clone, PartialEq)]
pub struct SilenceConfig {
    /// The agent checks in after waiting this long for the caller.
    pub reprompt: Option<Duration>,
    /// The agent says goodbye and hangs up after waiting this long (after the check-in, if
    /// there is one).
    pub hangup: Option<Duration>,
    pub reprompt_instructions: String,
    pub goodbye_instructions: String,
}

impl Default for SilenceConfig {
    fn default() -> Self {
        SilenceConfig {
            reprompt: None,
            hangup: None,
            reprompt_instructions: REPROMPT_SAY.into(),
            goodbye_instructions: GOODBYE_SAY.into(),
        }
    }
}

/// The clock's state (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Silence {
    /// When the agent began waiting for the caller; `None` while it does not wait.
    waiting_since: Option<Instant>,
    /// The check-in was asked for in this stretch.
    reprompted: bool,
}

impl Call {
    /// When the silence clock runs out next, if it runs.
    pub(super) fn silence_next_deadline(&self) -> Option<Instant> {
        let since = self.silence.waiting_since?;
        let cfg = &self.cfg.silence;
        if !self.silence_may_run() {
            return None;
        }
        let wait = match cfg.reprompt {
            Some(r) if !self.silence.reprompted => r,
            _ => cfg.hangup?,
        };
        Some(since + wait)
    }

    /// Whether the agent can be waiting for the caller now (the conditions under which the
    /// clock does not run, see the module docs).
    fn silence_may_run(&self) -> bool {
        self.phase == super::Phase::Live
            && self.upstream_ready
            && self.live_response.is_none()
            && !self.tools.any_running()
            && !self.filler.is_playing()
            && self.ending.is_none()
    }

    /// The agent's turn is over (its last audio was heard, or a response ended with nothing
    /// left to hear): it waits for the caller from `now`.
    pub(super) fn silence_agent_done(&mut self, now: Instant) {
        if self.silence_may_run() && !self.agent_speaking && !self.upstream.caller_speaking {
            self.silence.waiting_since = Some(now);
        }
    }

    /// The caller spoke: a new stretch begins, the clock stops until the agent has answered.
    pub(super) fn silence_caller_spoke(&mut self) {
        self.silence = Silence::default();
    }

    /// The caller pressed a key: a new stretch begins. The model answers keys it is told
    /// about (the clock starts again once that answer was heard); others get no answer, so
    /// the agent waits on from `now`.
    pub(super) fn silence_key_pressed(&mut self, now: Instant) {
        self.silence = Silence::default();
        if !self.cfg.dtmf_to_model {
            self.silence_agent_done(now);
        }
    }

    /// A response began: the agent is not waiting while it speaks (or calls a tool).
    pub(super) fn silence_response_started(&mut self) {
        self.silence.waiting_since = None;
    }

    /// A new session took over after a drop (see the module docs).
    pub(super) fn silence_upstream_restored(&mut self, now: Instant) {
        self.silence_agent_done(now);
    }

    pub(super) fn silence_on_tick(&mut self, now: Instant) {
        if self.silence_next_deadline().is_none_or(|d| now < d) {
            return;
        }
        let cfg = &self.cfg.silence;
        if cfg.reprompt.is_some() && !self.silence.reprompted {
            let say = cfg.reprompt_instructions.clone();
            self.silence.reprompted = true;
            self.silence.waiting_since = Some(now);
            self.send_model(ClientEvent::ResponseCreate {
                instructions: Some(say),
            });
        } else if cfg.hangup.is_some() {
            let say = cfg.goodbye_instructions.clone();
            let timeout = self.cfg.tools.goodbye_timeout;
            self.silence.waiting_since = None;
            self.end_after_heard(Some(say), EndReason::CallerSilent, timeout, now);
        }
    }
}
