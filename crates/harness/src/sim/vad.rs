//! Energy-based voice activity detection on 20 ms windows, the way the simulator stands in
//! for the Realtime API's server VAD. Cheap: one multiply-add per sample, no allocation.

/// A speech edge found while feeding samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEdge {
    /// Speech began in the window starting at this ms (of appended input audio).
    Started { window_start_ms: u64 },
    /// Enough silence followed speech; the window ending at this ms completed it.
    Stopped { end_ms: u64 },
}

/// Windowed RMS detector with a hangover of `silence_ms`.
#[derive(Debug, Clone)]
pub struct Vad {
    /// RMS threshold in linear PCM16 units.
    threshold: f64,
    window: u32,
    n: u32,
    sumsq: u64,
    speaking: bool,
    silence_ms: u64,
}

impl Vad {
    /// A detector for `rate` Hz input.
    pub fn new(threshold: f32, rate: u32) -> Vad {
        Vad {
            threshold: threshold as f64,
            window: (rate / 50).max(1),
            n: 0,
            sumsq: 0,
            speaking: false,
            silence_ms: 0,
        }
    }

    /// Whether speech is in progress.
    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// Forget any speech in progress and the partial window (after commit/clear).
    pub fn reset(&mut self) {
        self.speaking = false;
        self.silence_ms = 0;
    }

    /// Changes the sample rate (input format changed); drops the partial window.
    pub fn set_rate(&mut self, rate: u32) {
        self.window = (rate / 50).max(1);
        self.n = 0;
        self.sumsq = 0;
    }

    /// Feeds one sample. `end_ms` is the input position (ms) just after this sample; it is only
    /// read when a window completes. Returns an edge when one is found.
    #[inline]
    pub fn push(
        &mut self,
        s: i16,
        end_ms: impl FnOnce() -> u64,
        silence_ms: u64,
    ) -> Option<VadEdge> {
        let v = s as i64;
        self.sumsq += (v * v) as u64;
        self.n += 1;
        if self.n < self.window {
            return None;
        }
        let rms = (self.sumsq as f64 / self.n as f64).sqrt();
        self.n = 0;
        self.sumsq = 0;
        let end = end_ms();
        let loud = rms > self.threshold;
        if !self.speaking {
            if loud {
                self.speaking = true;
                self.silence_ms = 0;
                return Some(VadEdge::Started {
                    window_start_ms: end.saturating_sub(20),
                });
            }
            return None;
        }
        if loud {
            self.silence_ms = 0;
            return None;
        }
        self.silence_ms += 20;
        if self.silence_ms >= silence_ms {
            self.speaking = false;
            self.silence_ms = 0;
            return Some(VadEdge::Stopped { end_ms: end });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_then_silence() {
        let mut vad = Vad::new(500.0, 8000);
        let mut edges = vec![];
        // 100 ms silence, 400 ms tone, 600 ms silence.
        for i in 0..(8 * 1100u64) {
            let s = if (800..4000).contains(&i) {
                (3000.0 * (i as f64 * 0.235).sin()) as i16
            } else {
                0
            };
            let p = i + 1;
            if let Some(e) = vad.push(s, || p / 8, 500) {
                edges.push(e);
            }
        }
        assert_eq!(
            edges,
            vec![
                VadEdge::Started {
                    window_start_ms: 100
                },
                VadEdge::Stopped { end_ms: 1000 }
            ]
        );
    }
}
