//! The call's one timer table: every deadline the call keeps, by name. The shell asks for the
//! earliest ([`Call::next_deadline`]) and ticks then; [`Call::on_tick`] walks the table in a
//! fixed order and fires what is due.
//!
//! Each entry is read from the state of the concern that owns it (a running tool's deadline,
//! the ending's step, the upstream's outage or rotation), so no copy of a deadline can go stale.

use std::time::{Duration, Instant};

use super::{Call, EndReason};

/// After a drained call's goodbye timed out, it gets this much longer to hang up (Twilio REST)
/// before it ends regardless (outcome `Shutdown`).
pub const DRAIN_HANGUP_MARGIN: Duration = Duration::from_secs(2);

/// One deadline of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The server's drain is over and the goodbye had its time: end now.
    Drain,
    /// Re-dial after a drop, give up on an outage, rotate the session, force a switch.
    Upstream,
    /// The first session must be configured within `upstream_ready_timeout` of the socket
    /// opening.
    UpstreamReady,
    /// No message from Twilio for `twilio_idle_timeout`.
    TwilioIdle,
    /// Keys pressed go to the model after `dtmf_gap` without another.
    Dtmf,
    /// A tool that does not answer in time.
    Tools,
    /// The filler, while a slow tool runs.
    Filler,
    /// `max_call` reached: wrap the call up.
    MaxDuration,
    /// The caller has been silent while the agent waits: check in, or say goodbye (see
    /// [`super::silence`]).
    Silence,
    /// The ending's current step (goodbye heard, REST answer, `stop`) took too long.
    Ending,
}

impl Timer {
    /// The order [`Call::on_tick`] fires them in when several are due at once. The drain's
    /// hard end comes first (nothing else matters then); the upstream next, so a call whose
    /// session is being replaced sees it before anything that would talk to the model.
    pub const IN_ORDER: [Timer; 10] = [
        Timer::Drain,
        Timer::Upstream,
        Timer::UpstreamReady,
        Timer::TwilioIdle,
        Timer::Dtmf,
        Timer::Tools,
        Timer::Filler,
        Timer::MaxDuration,
        Timer::Silence,
        Timer::Ending,
    ];

    /// Whether its handler runs on every tick, not only when its deadline passed: it also
    /// moves on things no deadline stands for (a quiet moment for a rotation, the filler
    /// re-armed once the tools are done, a goodbye heard after a barge-in emptied the queue).
    fn runs_every_tick(self) -> bool {
        matches!(self, Timer::Upstream | Timer::Filler | Timer::Ending)
    }
}

impl Call {
    /// When `timer` is due, if it is set.
    pub fn deadline(&self, timer: Timer) -> Option<Instant> {
        match timer {
            Timer::Drain => self.drain_deadline,
            Timer::Upstream => self.upstream_deadline(),
            Timer::UpstreamReady => (!self.upstream.ever_ready())
                .then(|| self.opened_at + self.cfg.upstream_ready_timeout),
            Timer::TwilioIdle => Some(self.last_twilio + self.cfg.twilio_idle_timeout),
            Timer::Dtmf => self.dtmf_deadline,
            Timer::Tools => self.tools.next_deadline(),
            Timer::Filler => self.filler_next_deadline(),
            Timer::MaxDuration => self.wrapup_next_deadline(),
            Timer::Silence => self.silence_next_deadline(),
            Timer::Ending => self.ending_next_deadline(),
        }
    }

    /// When the shell should call [`Call::on_tick`] next: the earliest entry of the table.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.is_ended() {
            return None;
        }
        Timer::IN_ORDER
            .into_iter()
            .filter_map(|t| self.deadline(t))
            .min()
    }

    /// Time passed: fires every timer that is due, in [`Timer::IN_ORDER`], until one ends
    /// the call.
    pub fn on_tick(&mut self, now: Instant) {
        for timer in Timer::IN_ORDER {
            if self.is_ended() {
                return;
            }
            if timer.runs_every_tick() || self.deadline(timer).is_some_and(|d| now >= d) {
                self.fire(timer, now);
            }
        }
    }

    fn fire(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::Drain => self.end(EndReason::Shutdown),
            Timer::Upstream => self.upstream_tick(now),
            Timer::UpstreamReady => {
                self.anomaly(
                    "upstream_timeout",
                    format!(
                        "upstream not ready after {:?}",
                        self.cfg.upstream_ready_timeout
                    ),
                );
                self.end(EndReason::UpstreamTimeout);
            }
            Timer::TwilioIdle => {
                self.anomaly(
                    "twilio_idle",
                    format!(
                        "no message from Twilio for {:?}",
                        self.cfg.twilio_idle_timeout
                    ),
                );
                self.end(EndReason::TwilioIdle);
            }
            Timer::Dtmf => self.flush_dtmf(),
            Timer::Tools => self.tools_on_tick(now),
            Timer::Filler => self.filler_on_tick(now),
            Timer::MaxDuration => self.wrapup_on_tick(now),
            Timer::Silence => self.silence_on_tick(now),
            Timer::Ending => self.ending_progress(now),
        }
    }
}
