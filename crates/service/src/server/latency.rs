//! Times the media task's writes for the latency histograms. The call reports *what* happened
//! (its outputs and [`CallEvent::AgentAudio`]); only the shell knows when the bytes were
//! written, so it stamps what it read, notes what the call made of it, and observes once the
//! writes are flushed. Per frame: one clock read and a histogram observation, no allocation.

use std::time::Instant;

use crate::call::playback::Playback;
use crate::call::{CallEvent, Output};
use crate::metrics::latency::LatencyMetrics;
use crate::twilio::Outbound;

/// What one turn of the media loop read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    TwilioMedia,
    AudioDelta,
    /// Anything else (a `speech_started` among them: the `clear` it causes is timed from it).
    Other,
}

#[derive(Debug)]
pub struct WriteTimer {
    read: Read,
    read_at: Option<Instant>,
    frames: bool,
    clear: bool,
    /// `speech_stopped` of a turn whose first answer frame is being written now.
    turn_started: Option<Instant>,
}

impl Default for WriteTimer {
    fn default() -> Self {
        WriteTimer {
            read: Read::Other,
            read_at: None,
            frames: false,
            clear: false,
            turn_started: None,
        }
    }
}

/// μ-law bytes per second: playback positions are counted in them.
const ULAW_BYTES_PER_S: f64 = 8000.0;

impl WriteTimer {
    /// The loop read this at `at`.
    pub fn read(&mut self, what: Read, at: Instant) {
        self.read = what;
        self.read_at = Some(at);
    }

    /// The call emitted `out` (about to be written).
    pub fn output(&mut self, out: &Output, m: &LatencyMetrics) {
        match out {
            Output::ToTwilio(Outbound::Media(_)) => self.frames = true,
            Output::ToTwilio(Outbound::Clear) => self.clear = true,
            Output::Event(CallEvent::AgentAudio {
                model_latency,
                speech_stopped_at,
            }) => {
                if let Some(d) = model_latency {
                    m.model.observe(d.as_secs_f64());
                }
                if speech_stopped_at.is_some() {
                    self.turn_started = *speech_stopped_at;
                }
            }
            _ => {}
        }
    }

    /// The writes of this turn were flushed (`twilio`/`upstream`: something went that way).
    pub fn flushed(&mut self, twilio: bool, upstream: bool, m: &LatencyMetrics) {
        if twilio || upstream {
            let now = Instant::now();
            let since = |t: Instant| now.saturating_duration_since(t).as_secs_f64();
            if let Some(read_at) = self.read_at {
                match self.read {
                    Read::TwilioMedia if upstream => m.bridge_up.observe(since(read_at)),
                    Read::AudioDelta if twilio && self.frames => {
                        m.bridge_down.observe(since(read_at))
                    }
                    _ => {}
                }
                if twilio && self.clear {
                    m.bargein_reaction.observe(since(read_at));
                }
            }
            if twilio && self.frames {
                if let Some(t) = self.turn_started.take() {
                    m.turn.observe(since(t));
                }
            }
        }
        self.read = Read::Other;
        self.read_at = None;
        self.frames = false;
        self.clear = false;
    }

    /// Twilio echoed a mark: sample how much sent audio the caller has not heard yet.
    pub fn mark_echoed(&self, playback: &Playback, now: Instant, m: &LatencyMetrics) {
        let queued = playback.sent().saturating_sub(playback.heard(now));
        m.playback_lag.observe(queued as f64 / ULAW_BYTES_PER_S);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::ClientEvent;
    use std::time::Duration;

    fn frame() -> Output {
        Output::ToTwilio(Outbound::Media([0xFF; crate::audio::FRAME_BYTES]))
    }

    #[test]
    fn each_histogram_counts_only_when_its_write_went_out() {
        let m = LatencyMetrics::new().expect("metrics");
        let mut t = WriteTimer::default();
        let t0 = Instant::now();

        // A caller frame appended upstream: `up`. Not `down`, not a turn.
        t.read(Read::TwilioMedia, t0);
        t.output(
            &Output::ToRealtime {
                generation: 1,
                event: ClientEvent::ResponseCancel,
            },
            &m,
        );
        t.flushed(false, true, &m);
        assert_eq!(m.bridge_up.get_sample_count(), 1);

        // A caller frame buffered (nothing written): nothing observed.
        t.read(Read::TwilioMedia, t0);
        t.flushed(false, false, &m);
        assert_eq!(m.bridge_up.get_sample_count(), 1);

        // A delta whose first frames answer a turn: `down`, the turn and the model latency.
        t.read(Read::AudioDelta, t0);
        t.output(&frame(), &m);
        t.output(
            &Output::Event(CallEvent::AgentAudio {
                model_latency: Some(Duration::from_millis(300)),
                speech_stopped_at: Some(t0),
            }),
            &m,
        );
        t.flushed(true, false, &m);
        assert_eq!(m.bridge_down.get_sample_count(), 1);
        assert_eq!(m.turn.get_sample_count(), 1);
        assert_eq!(m.model.get_sample_count(), 1);
        assert!((m.model.get_sample_sum() - 0.3).abs() < 1e-9);

        // A delta still inside the framer (no frame written): no `down`.
        t.read(Read::AudioDelta, t0);
        t.flushed(false, false, &m);
        assert_eq!(m.bridge_down.get_sample_count(), 1);

        // speech_started → clear written: the barge-in reaction, and no `down`.
        t.read(Read::Other, t0);
        t.output(&Output::ToTwilio(Outbound::Clear), &m);
        t.flushed(true, true, &m);
        assert_eq!(m.bargein_reaction.get_sample_count(), 1);
        assert_eq!(m.bridge_down.get_sample_count(), 1);
        assert_eq!(m.turn.get_sample_count(), 1);
    }

    #[test]
    fn playback_lag_is_what_was_sent_beyond_the_echoed_mark() {
        let m = LatencyMetrics::new().expect("metrics");
        let t0 = Instant::now();
        let mut p = Playback::new(8);
        p.item("i1", "r1").expect("item").model_bytes = 16_000;
        p.on_sent("i1", 8_000, t0); // 1 s
        let first = p.mark("i1").expect("mark");
        p.on_sent("i1", 8_000, t0); // 1 s more
        p.on_mark(&first, t0 + Duration::from_millis(1000));
        WriteTimer::default().mark_echoed(&p, t0 + Duration::from_millis(1000), &m);
        assert_eq!(m.playback_lag.get_sample_count(), 1);
        assert!((m.playback_lag.get_sample_sum() - 1.0).abs() < 1e-9);
    }
}
