//! Where in the reference history the echo sits: the lag, in 2 ms blocks, at which the caller
//! audio's envelope follows the played audio's envelope.
//!
//! Why envelopes and not samples: a sample cross-correlation over 400 ms of lags costs
//! 160 × 3200 multiplies per frame (or an FFT plan per call); envelopes of 16-sample blocks need
//! 10 × 201 per frame and survive what the echo path does to the waveform (band-limiting, phase,
//! μ-law re-encoding). The envelopes are differenced (onsets and decays) so that a steady level
//! — line noise, a long vowel — correlates with nothing, and pre-emphasised so that the low
//! frequencies a telephone path removes (below ~300 Hz, where most of a voice's energy is) do
//! not dominate the reference envelope while missing from the echo's. Only the *sign* of the
//! caller's onset counts: the caller talking over the agent (louder than the echo) then adds
//! zero-mean noise to every lag instead of swamping the sums for seconds.

use super::{BLOCK, BLOCKS_PER_FRAME, MAX_LAG_BLOCKS};

/// Reference envelope history, in blocks: more than the longest lag plus one frame.
const ENVELOPE_HISTORY: usize = MAX_LAG_BLOCKS + BLOCKS_PER_FRAME + 1;

/// Memory of the correlation per block: 0.998 per 2 ms is a time constant of ~1 s, long enough
/// to average over a few syllables, short enough that a changed echo path wins within ~1–2 s.
const CORRELATION_DECAY: f32 = 0.998;

/// A new lag must correlate this much better than the current one before we move: the peak of
/// speech envelopes is broad and neighbouring lags trade places from one syllable to the next.
const SWITCH_MARGIN: f32 = 1.15;

/// Pre-emphasis coefficient (first-order high-pass, as in speech coding front ends).
const PRE_EMPHASIS: f32 = 0.9;

/// One side's block envelope: pre-emphasis state and the previous block's amplitude.
#[derive(Clone, Copy, Default)]
struct Envelope {
    last_sample: f32,
    last_amplitude: f32,
}

impl Envelope {
    /// The change in RMS amplitude of the pre-emphasised block against the previous block.
    fn onset(&mut self, block: &[f32]) -> f32 {
        let mut energy = 0.0;
        for &x in block {
            let emphasised = x - PRE_EMPHASIS * self.last_sample;
            self.last_sample = x;
            energy += emphasised * emphasised;
        }
        let amplitude = (energy / block.len() as f32).sqrt();
        let onset = amplitude - self.last_amplitude;
        self.last_amplitude = amplitude;
        onset
    }
}

/// The lag in blocks, and its correlation over the mean absolute correlation of all lags.
/// Measured on speech (`tests/echo_gate.rs`, 150 ms, −12 dB): 6–17 with echo alone; with 4 ms
/// blocks it was 4.5–6 with echo alone and 2.5–4 while the caller talked over the echo.
#[derive(Clone, Copy, Debug)]
pub(super) struct DelayEstimate {
    pub(super) lag: usize,
    pub(super) prominence: f32,
}

pub(super) struct DelayEstimator {
    reference: Envelope,
    caller: Envelope,
    /// Reference onsets by block number modulo the history.
    reference_onsets: [f32; ENVELOPE_HISTORY],
    /// Blocks of reference seen so far.
    reference_blocks: usize,
    /// Exponentially weighted sum of caller onset × reference onset `lag` blocks earlier.
    correlation: [f32; MAX_LAG_BLOCKS + 1],
    /// The lag we currently believe, in blocks; `None` until some evidence exists.
    lag: Option<usize>,
}

impl DelayEstimator {
    pub(super) fn new() -> Self {
        DelayEstimator {
            reference: Envelope::default(),
            caller: Envelope::default(),
            reference_onsets: [0.0; ENVELOPE_HISTORY],
            reference_blocks: 0,
            correlation: [0.0; MAX_LAG_BLOCKS + 1],
            lag: None,
        }
    }

    /// One frame of what was played (linear, any scale).
    pub(super) fn on_reference(&mut self, frame: &[f32]) {
        for block in frame.chunks_exact(BLOCK) {
            let onset = self.reference.onset(block);
            self.reference_onsets[self.reference_blocks % ENVELOPE_HISTORY] = onset;
            self.reference_blocks += 1;
        }
    }

    /// One frame of the caller's audio, aligned with the latest reference frame (lag 0 = the
    /// reference frame given last). Returns the lag to use now, in blocks, and how clearly
    /// it stands out (see [`DelayEstimate`]).
    pub(super) fn on_caller(&mut self, frame: &[f32]) -> Option<DelayEstimate> {
        let first_block = self.reference_blocks.saturating_sub(BLOCKS_PER_FRAME);
        for (i, block) in frame.chunks_exact(BLOCK).enumerate() {
            let caller_onset = self.caller.onset(block);
            let now = first_block + i;
            for (lag, sum) in self.correlation.iter_mut().enumerate() {
                let reference_onset = match now.checked_sub(lag) {
                    Some(at) => self.reference_onsets[at % ENVELOPE_HISTORY],
                    None => 0.0,
                };
                *sum = *sum * CORRELATION_DECAY + caller_onset.signum() * reference_onset;
            }
        }
        self.update_lag();
        let lag = self.lag?;
        let mean =
            self.correlation.iter().map(|c| c.abs()).sum::<f32>() / self.correlation.len() as f32;
        Some(DelayEstimate {
            lag,
            prominence: self.correlation[lag] / mean.max(f32::MIN_POSITIVE),
        })
    }

    fn update_lag(&mut self) {
        let (best, best_sum) =
            self.correlation
                .iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |acc, (lag, sum)| if sum > acc.1 { (lag, sum) } else { acc },
                );
        if best_sum <= 0.0 {
            return;
        }
        match self.lag {
            Some(current) if current == best => {}
            Some(current) if best_sum <= self.correlation[current].max(0.0) * SWITCH_MARGIN => {}
            _ => self.lag = Some(best),
        }
    }
}
