//! The instants a turn's latency is measured between. The call keeps them (time is an input)
//! and reports them once, when an answer's first audio frame goes out to Twilio, as
//! [`CallEvent::AgentAudio`]; the shell, which does the writing, observes the histograms.

use std::time::{Duration, Instant};

use super::CallEvent;

#[derive(Debug, Default)]
pub struct TurnClock {
    /// The caller's last `speech_stopped` not yet answered with audio.
    speech_stopped: Option<Instant>,
    /// The live response's `response.created`, until its first delta.
    response_created: Option<Instant>,
    model_latency: Option<Duration>,
    /// A response was created and none of its audio has gone to Twilio yet.
    awaiting_first_frame: bool,
}

impl TurnClock {
    pub fn on_speech_started(&mut self) {
        // The caller talks again: the turn ends at their next `speech_stopped`, not the last.
        self.speech_stopped = None;
    }

    pub fn on_speech_stopped(&mut self, now: Instant) {
        self.speech_stopped = Some(now);
    }

    pub fn on_response_created(&mut self, now: Instant) {
        self.response_created = Some(now);
        self.model_latency = None;
        self.awaiting_first_frame = true;
    }

    /// An audio delta of the live response arrived at `now`.
    pub fn on_delta(&mut self, now: Instant) {
        if let Some(created) = self.response_created.take() {
            self.model_latency = Some(now.saturating_duration_since(created));
        }
    }

    /// Audio frames went out; the event for the first ones of a response.
    pub fn on_frames_sent(&mut self) -> Option<CallEvent> {
        if !std::mem::take(&mut self.awaiting_first_frame) {
            return None;
        }
        Some(CallEvent::AgentAudio {
            model_latency: self.model_latency.take(),
            speech_stopped_at: self.speech_stopped.take(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_turn_reports_once_with_both_instants() {
        let t0 = Instant::now();
        let mut c = TurnClock::default();
        c.on_speech_started();
        c.on_speech_stopped(t0);
        c.on_response_created(t0 + ms(10));
        c.on_delta(t0 + ms(260));
        c.on_delta(t0 + ms(300));
        assert_eq!(
            c.on_frames_sent(),
            Some(CallEvent::AgentAudio {
                model_latency: Some(ms(250)),
                speech_stopped_at: Some(t0),
            })
        );
        assert_eq!(
            c.on_frames_sent(),
            None,
            "only the first frames of a response"
        );
    }

    #[test]
    fn a_greeting_has_no_turn_and_speech_resumed_restarts_it() {
        let t0 = Instant::now();
        let mut c = TurnClock::default();
        c.on_response_created(t0);
        c.on_delta(t0 + ms(100));
        assert_eq!(
            c.on_frames_sent(),
            Some(CallEvent::AgentAudio {
                model_latency: Some(ms(100)),
                speech_stopped_at: None,
            })
        );
        c.on_speech_stopped(t0 + ms(1000));
        c.on_speech_started();
        c.on_speech_stopped(t0 + ms(2000));
        c.on_response_created(t0 + ms(2010));
        c.on_delta(t0 + ms(2100));
        let Some(CallEvent::AgentAudio {
            speech_stopped_at, ..
        }) = c.on_frames_sent()
        else {
            panic!("first frames report");
        };
        assert_eq!(speech_stopped_at, Some(t0 + ms(2000)));
    }
}
