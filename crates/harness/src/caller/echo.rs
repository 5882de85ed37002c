//! A speakerphone: the agent audio the caller's phone plays comes back into its microphone,
//! late, quieter and squeezed through the telephone band, and goes up the line mixed with
//! whatever the caller says. The bridge never sees a clean reference of it: what comes back is
//! what was *played* (after `clear`), at its real playout time, re-encoded μ-law.

use std::time::Duration;

/// The echo path of a speakerphone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakerEcho {
    /// From the loudspeaker playing a sample to the microphone picking it up, plus the phone's
    /// own processing (40–300 ms is the range the issue measures).
    pub delay: Duration,
    /// Echo level against what was played, in dB (negative: −6 is a loud speakerphone in a
    /// small room, −30 a handset held away from the ear).
    pub level_db: f32,
}

/// A second-order section (RBJ audio-EQ cookbook, direct form I): the telephone band of the
/// simulated echo path (also used by `tests/echo_gate.rs`'s phone path).
#[derive(Debug, Clone, Copy, Default)]
pub struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
    x: [f32; 2],
    y: [f32; 2],
}

impl Biquad {
    /// `high`: a high-pass at `f` Hz, else a low-pass; Q = 1/√2 (Butterworth), 8 kHz.
    pub fn butterworth(f: f32, high: bool) -> Biquad {
        let w = 2.0 * std::f32::consts::PI * f / 8000.0;
        let (sin, cos) = w.sin_cos();
        let alpha = sin / (2.0 * std::f32::consts::FRAC_1_SQRT_2);
        let a0 = 1.0 + alpha;
        let (b0, b1) = if high {
            ((1.0 + cos) / 2.0, -(1.0 + cos))
        } else {
            ((1.0 - cos) / 2.0, 1.0 - cos)
        };
        Biquad {
            b: [b0 / a0, b1 / a0, b0 / a0],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            ..Biquad::default()
        }
    }

    pub fn run(&mut self, x: f32) -> f32 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }
}

/// The echo path's running state: band-pass filters that carry across frames.
#[derive(Debug, Clone)]
pub(super) struct EchoPath {
    delay_bytes: usize,
    gain: f32,
    high_pass: Biquad,
    low_pass: Biquad,
}

impl EchoPath {
    pub(super) fn new(echo: SpeakerEcho) -> EchoPath {
        EchoPath {
            delay_bytes: (echo.delay.as_millis() as usize) * 8,
            gain: 10f32.powf(echo.level_db / 20.0),
            // The telephone band, 300–3400 Hz.
            high_pass: Biquad::butterworth(300.0, true),
            low_pass: Biquad::butterworth(3400.0, false),
        }
    }

    /// Mixes into `frame` (μ-law, the caller's next frame, starting at byte `at` of the call's
    /// caller audio) the echo of `played` (μ-law agent audio as played, byte `i` at the same
    /// instant as caller byte `i`). Where `played` has not got that far, the echo is silence.
    pub(super) fn mix(&mut self, frame: &mut [u8], at: usize, played: &[u8]) {
        for (k, out) in frame.iter_mut().enumerate() {
            let src = (at + k)
                .checked_sub(self.delay_bytes)
                .and_then(|i| played.get(i))
                .map_or(0.0, |&b| f32::from(audio_codec_algorithms::decode_ulaw(b)));
            let echo = self.low_pass.run(self.high_pass.run(src)) * self.gain;
            let voice = f32::from(audio_codec_algorithms::decode_ulaw(*out));
            let sum = (voice + echo).clamp(-32768.0, 32767.0) as i16;
            *out = audio_codec_algorithms::encode_ulaw(sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(ulaw: &[u8]) -> f32 {
        let sum: f32 = ulaw
            .iter()
            .map(|&b| f32::from(audio_codec_algorithms::decode_ulaw(b)).powi(2))
            .sum();
        (sum / ulaw.len() as f32).sqrt()
    }

    fn tone(hz: f32, ms: usize) -> Vec<u8> {
        (0..ms * 8)
            .map(|i| {
                let s = 10000.0 * (2.0 * std::f32::consts::PI * hz * i as f32 / 8000.0).sin();
                audio_codec_algorithms::encode_ulaw(s as i16)
            })
            .collect()
    }

    /// Echo of a 1 kHz tone (in band) at −12 dB: the caller's silent line carries it ~12 dB
    /// down, and only after the delay.
    #[test]
    fn echo_is_late_and_quieter() {
        let played = tone(1000.0, 400);
        let mut path = EchoPath::new(SpeakerEcho {
            delay: Duration::from_millis(150),
            level_db: -12.0,
        });
        let mut line = vec![0xFFu8; 400 * 8];
        for (n, frame) in line.chunks_mut(160).enumerate() {
            path.mix(frame, n * 160, &played);
        }
        assert!(rms(&line[..140 * 8]) < 20.0, "nothing before the delay");
        let ratio_db = 20.0 * (rms(&line[200 * 8..]) / rms(&played)).log10();
        assert!(
            (-13.5..-10.5).contains(&ratio_db),
            "echo at {ratio_db:.1} dB"
        );
    }

    /// The telephone band: 100 Hz hum in what was played barely comes back.
    #[test]
    fn out_of_band_is_cut() {
        let played = tone(100.0, 400);
        let mut path = EchoPath::new(SpeakerEcho {
            delay: Duration::from_millis(40),
            level_db: 0.0,
        });
        let mut line = vec![0xFFu8; 400 * 8];
        for (n, frame) in line.chunks_mut(160).enumerate() {
            path.mix(frame, n * 160, &played);
        }
        let ratio_db = 20.0 * (rms(&line[200 * 8..]) / rms(&played)).log10();
        assert!(ratio_db < -15.0, "100 Hz came back at {ratio_db:.1} dB");
    }
}
