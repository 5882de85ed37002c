//! Is the caller speaking? A voice activity model run on the caller's 8 kHz μ-law.
//!
//! `earshot` (pure Rust, its network's weights compiled into the crate: nothing is downloaded
//! at build or run time) scores 16 ms blocks of 16 kHz PCM16 (256 samples, per its docs). The
//! caller's 8 kHz audio is doubled to 16 kHz by linear interpolation: the network only needs
//! the telephone band, which 8 kHz already holds, and a simple interpolator costs nothing.
//! Chosen over WebRTC's VAD (`webrtc-vad`: C, 8 kHz native) because the latter is a Gaussian
//! mixture on band energies that, like the server's VAD, fires on loud non-speech — the very
//! thing this exists to ignore — and needs a C build.
//!
//! Allocation-free per frame: the detector (~8 KiB) is boxed once per call; the block being
//! filled is a fixed array.

use audio_codec_algorithms::decode_ulaw;
use earshot::Detector;

/// Samples per scored block: 16 ms at 16 kHz (earshot's fixed frame).
const BLOCK: usize = 256;
/// Milliseconds of caller audio per scored block.
pub const BLOCK_MS: u64 = 16;
/// A block whose RMS is under this (about -50 dBFS: a quiet line, far below any voice) is
/// quiet. After [`QUIET_BLOCKS_SKIPPED`] quiet blocks in a row the model is no longer run (it
/// costs ~30 µs a block on a shared 2-core machine, release build: more than the rest of a
/// frame's work, and the caller is silent most of the time the agent talks) and blocks are
/// not speech until a louder one comes. Gaps between words are shorter: the model keeps the
/// context it needs within an utterance (gating every quiet block lost up to half the speech
/// of soft interruptions on the corpus).
const QUIET_RMS: i64 = 100;
/// 320 ms of quiet.
const QUIET_BLOCKS_SKIPPED: u32 = 20;

/// Scores the caller's μ-law audio in 16 ms blocks.
pub struct SpeechDetector {
    detector: Box<Detector>,
    block: [i16; BLOCK],
    filled: usize,
    /// The last 8 kHz sample seen, for interpolating across frame boundaries.
    prev: i16,
    /// A block scoring at least this is speech.
    threshold: f32,
    /// Sum of squares of the block so far (for the quiet gate).
    energy: i64,
    /// Quiet blocks in a row (see [`QUIET_RMS`]).
    quiet_run: u32,
}

impl std::fmt::Debug for SpeechDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechDetector")
            .field("filled", &self.filled)
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl SpeechDetector {
    /// A detector whose blocks count as speech from `threshold` (0..1; earshot suggests 0.5).
    pub fn new(threshold: f32) -> SpeechDetector {
        SpeechDetector {
            detector: Detector::default_boxed(),
            block: [0; BLOCK],
            filled: 0,
            prev: 0,
            threshold,
            energy: 0,
            quiet_run: 0,
        }
    }

    /// Forgets the audio so far (a new stretch of caller audio is scored from scratch).
    pub fn reset(&mut self) {
        self.detector.reset();
        self.filled = 0;
        self.prev = 0;
        self.energy = 0;
        self.quiet_run = 0;
    }

    /// Feeds caller μ-law; `on_block(speech)` is called for every 16 ms block completed.
    pub fn push(&mut self, ulaw: &[u8], mut on_block: impl FnMut(bool)) {
        for &b in ulaw {
            let s = decode_ulaw(b);
            // 8 → 16 kHz: the midpoint of the previous sample and this one, then this one.
            let mid = ((self.prev as i32 + s as i32) / 2) as i16;
            self.prev = s;
            for sample in [mid, s] {
                self.block[self.filled] = sample;
                self.energy += sample as i64 * sample as i64;
                self.filled += 1;
                if self.filled == BLOCK {
                    self.filled = 0;
                    let quiet = self.energy < QUIET_RMS * QUIET_RMS * BLOCK as i64;
                    self.energy = 0;
                    self.quiet_run = if quiet {
                        self.quiet_run.saturating_add(1)
                    } else {
                        0
                    };
                    if self.quiet_run >= QUIET_BLOCKS_SKIPPED {
                        if self.quiet_run == QUIET_BLOCKS_SKIPPED {
                            // What the detector would remember is silence.
                            self.detector.reset();
                        }
                        on_block(false);
                        continue;
                    }
                    let score = self.detector.predict_i16(&self.block);
                    on_block(score >= self.threshold);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speech_ms(d: &mut SpeechDetector, ulaw: &[u8]) -> (u64, u64) {
        let (mut speech, mut total) = (0, 0);
        for frame in ulaw.chunks(160) {
            d.push(frame, |s| {
                total += BLOCK_MS;
                if s {
                    speech += BLOCK_MS;
                }
            });
        }
        (speech, total)
    }

    /// At the threshold the bridge uses (`BargeInConfig::default`).
    #[test]
    fn a_spoken_sentence_is_speech_and_hiss_is_not() {
        let clip = include_bytes!("../../../../fixtures/speech/caller_hours.ulaw");
        let mut d = SpeechDetector::new(0.75);
        let (speech, total) = speech_ms(&mut d, clip);
        assert!(total >= 1000, "{total} ms scored");
        assert!(
            speech * 3 >= total,
            "{speech} of {total} ms of a sentence heard as speech"
        );

        // Loud white-ish noise (a deterministic LCG), no voice in it.
        let mut x: u32 = 12345;
        let noise: Vec<u8> = (0..16_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let s = ((x >> 16) as i16) / 4;
                audio_codec_algorithms::encode_ulaw(s)
            })
            .collect();
        d.reset();
        let (speech, total) = speech_ms(&mut d, &noise);
        assert!(
            speech * 10 <= total,
            "{speech} of {total} ms of hiss heard as speech"
        );
    }

    #[test]
    fn speech_after_a_long_quiet_stretch_is_heard_as_well_as_without_it() {
        let clip = include_bytes!("../../../../fixtures/speech/caller_hours.ulaw");
        let mut d = SpeechDetector::new(0.75);
        let (alone, _) = speech_ms(&mut d, clip);
        let mut d = SpeechDetector::new(0.75);
        // Two seconds of line silence: the model stops running after 320 ms of it.
        let (none, total) = speech_ms(&mut d, &[0xFF; 16_000]);
        assert_eq!((none, total), (0, 2000));
        let (after, _) = speech_ms(&mut d, clip);
        assert!(
            after + 48 >= alone,
            "{after} ms after the quiet, {alone} ms alone"
        );
    }

    #[test]
    fn blocks_come_every_16_ms_of_audio_whatever_the_frame_size() {
        let mut d = SpeechDetector::new(0.75);
        let mut blocks = 0;
        d.push(&[0xFF; 100], |_| blocks += 1);
        assert_eq!(blocks, 0, "100 bytes are 12.5 ms");
        d.push(&[0xFF; 60], |_| blocks += 1);
        assert_eq!(blocks, 1, "160 bytes make one 16 ms block");
        d.push(&[0xFF; 8 * 64], |_| blocks += 1);
        assert_eq!(blocks, 5);
    }
}
