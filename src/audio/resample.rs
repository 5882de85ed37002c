//! Streaming 8 kHz ⇄ 24 kHz resampling for one call.
//!
//! # Why this resampler (measured, rubato 5.1.0, f32, mono)
//!
//! A phone call cannot spend ~10 ms per direction here, which is what rubato's `Fft` with its
//! default settings costs (one 160-sample FFT block at 8 kHz: measured delay 240 samples at
//! 24 kHz = 10.0 ms up, 80 samples at 8 kHz = 10.0 ms down). Target: ≤ 5 ms each way,
//! passband within 1 dB up to 3.2 kHz, images / aliases ≥ 50 dB down.
//!
//! Candidates measured (tone levels from a Blackman-Harris-windowed DFT over 1 s, delay from
//! the impulse-response peak):
//!
//! | candidate                              | delay   | 3.2 kHz  | worst image/alias (≤ 3.2 kHz) |
//! |----------------------------------------|---------|----------|-------------------------------|
//! | `Fft` default (FixedSync, 1 sub-chunk) | 10.0 ms | 0.00 dB  | < -145 dB                     |
//! | `Fft` 2 sub-chunks, Hann2              | 5.0 ms  | 0.00 dB  | < -145 dB                     |
//! | `Fft` 4 sub-chunks, Hann2              | 2.5 ms  | -0.96 dB | < -145 dB (flatness marginal) |
//! | `Fft` 4 sub-chunks, BlackmanHarris2    | 2.5 ms  | -29 dB   | (passband fails)              |
//! | up: sinc 32 taps Blackman, cutoff 0.9  | 1.92 ms | -0.34 dB | -81 dB                        |
//! | up: sinc 48 taps BlackmanHarris2, auto | 2.92 ms | -20 dB   | (passband fails)              |
//! | down: sinc 80 taps Blackman, 0.93      | 1.50 ms | -0.23 dB | -78 dB (4.6–6 kHz in)         |
//! | down: sinc 96 taps Blackman, auto      | 1.88 ms | -0.04 dB | -77 dB                        |
//!
//! Chosen: `Async::new_sinc` at the fixed ratio 3 (or 1/3) with `Nearest` interpolation and an
//! oversampling factor equal to the number of distinct output phases (3 up, 1 down). Because
//! the ratio is an exact integer every output sample lands exactly on a precomputed sinc
//! phase, so this is a plain polyphase FIR: no interpolation error and no drift, and the
//! `Async` machinery's ratio adjusting is simply never used. The short windowed sinc with a
//! hand-tuned cutoff gives the lowest delay that still meets the band requirements; the
//! automatic cutoff (`calculate_cutoff`) is tuned for long filters and cuts far too early at
//! these lengths (see the BlackmanHarris2 rows). Polynomial interpolation is not used at all:
//! it has no anti-alias filter, which 24k→8k needs.
//!
//! Measured numbers for the chosen filters (re-measured by `tests/audio.rs`):
//!
//! * [`Upsampler`]: 32-tap (at 8 kHz) Blackman sinc, cutoff 0.90 × 4 kHz. Delay 46 samples at
//!   24 kHz = 1.92 ms. 300 Hz–3 kHz within 0.02 dB, 3.2 kHz -0.34 dB, 3.4 kHz -1.9 dB. Images
//!   (8k±f, 16k±f) of a 300 Hz…3.4 kHz tone ≤ -75 dB (≤ -81 dB up to 3.2 kHz).
//! * [`Downsampler`]: 80-tap (at 24 kHz) Blackman sinc, cutoff 0.93 × 4 kHz. Delay 36 input
//!   samples = 1.5 ms (exactly 12 samples at 8 kHz). 3.2 kHz -0.23 dB, 3.4 kHz -1.2 dB. Tones from
//!   4.6 kHz up alias ≥ 78 dB down (4.6 → 3.4 kHz, 4.8 → 3.2, 5 → 3, 6 → 2 kHz). Input between
//!   4.0 and ~4.5 kHz is only partly suppressed; it lands at 3.5–4 kHz, above the phone band.
//!
//! Chunking adds no delay on the uplink: the resampler works in 16-sample (2 ms) chunks, which
//! divide Twilio's 160-sample frames, so every 20 ms frame yields exactly 480 samples at once (474 for the very first).
//! Input of other sizes waits for at most 15 samples (< 2 ms). The downlink works in 48-sample
//! (2 ms at 24 kHz) chunks; [`Downsampler::flush`] pushes out the remainder and the filter tail.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::audioadapter_buffers::SizeError;
use rubato::{
    Async, FixedAsync, Indexing, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

/// Errors from building or running a resampler. In practice they mean a bug in how this
/// module sizes its buffers, not bad input: any input length is accepted.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("cannot build resampler: {0}")]
    Construction(#[from] rubato::ResamplerConstructionError),
    #[error("resampler failed: {0}")]
    Process(#[from] rubato::ResampleError),
    #[error("resampler buffer has the wrong size: {0}")]
    Buffer(#[from] SizeError),
}

/// Input samples per rubato call, uplink (8 kHz). Divides 160, see the module docs.
const UP_CHUNK: usize = 16;
/// Input samples per rubato call, downlink (24 kHz).
const DOWN_CHUNK: usize = 48;
/// Filter length in input samples (a multiple of 8, as rubato rounds up to that).
const UP_SINC_LEN: usize = 32;
const DOWN_SINC_LEN: usize = 80;
/// Cutoff relative to the 4 kHz Nyquist of the 8 kHz side (rubato scales it by the ratio when
/// downsampling).
const UP_CUTOFF: f32 = 0.90;
const DOWN_CUTOFF: f32 = 0.93;
/// Measured group delays, see the module docs; `tests/audio.rs` asserts they still hold.
const UP_DELAY_OUT: usize = 46;
/// Downsampler delay in 8 kHz output samples (36 input samples / 3: an exact trim).
const DOWN_DELAY_OUT: usize = 12;

const I16_SCALE: f32 = 32768.0;

fn to_f32(s: i16) -> f32 {
    f32::from(s) / I16_SCALE
}

/// Adding and removing 1.5 × 2^23 rounds an f32 of magnitude < 2^22 to the nearest integer
/// (ties to even) with two plain additions: `f32::round` is a libm call on baseline x86-64
/// (no SSE4.1), and this loop runs once per output sample.
const ROUND_MAGIC: f32 = 12_582_912.0;

fn to_i16(x: f32) -> i16 {
    // Clamp first: filter overshoot on a full-scale input clips instead of wrapping, and the
    // rounding trick needs |y| < 2^22. NaN clamps to NaN, which the saturating cast maps to 0.
    let y = (x * I16_SCALE).clamp(-32768.0, 32767.0);
    ((y + ROUND_MAGIC) - ROUND_MAGIC) as i16
}

/// One rubato resampler fed in fixed chunks, with everything preallocated.
struct Chunked {
    inner: Async<f32>,
    chunk: usize,
    /// Input waiting for a full chunk; capacity `chunk`, never grows.
    staged: Vec<f32>,
    /// Output scratch of `output_frames_max` samples; never grows.
    scratch: Vec<f32>,
    /// Output samples still to drop (startup delay trimming); only used by the downsampler.
    skip: usize,
}

impl Chunked {
    fn new(
        ratio: f64,
        sinc_len: usize,
        cutoff: f32,
        phases: usize,
        chunk: usize,
    ) -> Result<Self, ResampleError> {
        let params = SincInterpolationParameters::new(sinc_len, WindowFunction::Blackman)
            .f_cutoff(cutoff)
            .oversampling_factor(phases)
            .interpolation(SincInterpolationType::Nearest);
        // max relative ratio 1.0: the ratio is fixed, and this keeps rubato's buffers minimal.
        let inner = Async::<f32>::new_sinc(ratio, 1.0, &params, chunk, 1, FixedAsync::Input)?;
        let scratch = vec![0.0; inner.output_frames_max()];
        Ok(Self {
            inner,
            chunk,
            staged: Vec::with_capacity(chunk),
            scratch,
            skip: 0,
        })
    }

    /// Feed `input`, appending every output sample that becomes available to `out`.
    fn process(&mut self, mut input: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        while !input.is_empty() {
            let take = (self.chunk - self.staged.len()).min(input.len());
            self.staged.extend(input[..take].iter().map(|&s| to_f32(s)));
            input = &input[take..];
            if self.staged.len() == self.chunk {
                self.run_chunk(None, out)?;
            }
        }
        Ok(())
    }

    /// Run one chunk: the staged samples, zero-padded to a full chunk when `partial` is set.
    fn run_chunk(
        &mut self,
        partial: Option<&Indexing>,
        out: &mut Vec<i16>,
    ) -> Result<(), ResampleError> {
        let frames_in = self.staged.len();
        let input = InterleavedSlice::new(&self.staged[..], 1, frames_in)?;
        let frames_out = self.scratch.len();
        let mut output = InterleavedSlice::new_mut(&mut self.scratch[..], 1, frames_out)?;
        let (_, produced) = self
            .inner
            .process_into_buffer(&input, &mut output, partial)?;
        self.staged.clear();
        let produced = &self.scratch[..produced.min(frames_out)];
        let dropped = self.skip.min(produced.len());
        self.skip -= dropped;
        out.extend(produced[dropped..].iter().map(|&x| to_i16(x)));
        Ok(())
    }

    fn reset(&mut self) {
        self.inner.reset();
        self.staged.clear();
        self.skip = 0;
    }
}

/// 8 kHz → 24 kHz for the uplink (caller → Realtime API). One per call.
///
/// Windowed-sinc polyphase FIR via rubato's `Async` at the fixed ratio 3: 32 taps at 8 kHz,
/// Blackman window, cutoff 3.6 kHz. Measured: delay 46 samples at 24 kHz = **1.92 ms**;
/// passband 300 Hz–3 kHz within 0.02 dB, **-0.34 dB at 3.2 kHz**; images **≤ -81 dB** for
/// tones up to 3.2 kHz (≤ -75 dB at 3.4 kHz). Every 160-sample Twilio frame yields exactly
/// 480 samples, except the very first, which yields 474: rubato's first chunk withholds 6
/// samples. The output is not otherwise trimmed (its first samples are the filter's warm-up),
/// so it stays a steady 3 × input, 6 samples behind, and `delay_samples_out` is measured on
/// that stream. Full reasoning in the [module docs](self).
pub struct Upsampler {
    core: Chunked,
}

impl Upsampler {
    pub fn new() -> Result<Self, ResampleError> {
        Ok(Self {
            core: Chunked::new(3.0, UP_SINC_LEN, UP_CUTOFF, 3, UP_CHUNK)?,
        })
    }

    /// Resample `input` (any length, 8 kHz) and append the 24 kHz output to `out`. Samples
    /// short of a 16-sample chunk are kept for the next call; nothing is dropped or repeated.
    /// Allocates nothing if `out` has room for `3 * (input.len() + 15)` more samples.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        self.core.process(input, out)
    }

    /// How many 24 kHz output samples an input event appears later than its ideal position
    /// (`3 × input index`). Measured: 46 (1.92 ms).
    pub fn delay_samples_out(&self) -> usize {
        UP_DELAY_OUT
    }

    /// Filter delay in milliseconds (excluding chunk buffering, which is zero for 160-sample
    /// frames).
    pub fn delay_ms(&self) -> f64 {
        UP_DELAY_OUT as f64 / 24.0
    }

    /// Forget all history and buffered input (e.g. a new stream on the same call).
    pub fn reset(&mut self) {
        self.core.reset();
    }
}

/// 24 kHz → 8 kHz for the downlink (Realtime API → caller). One per call; [`flush`] at the
/// end of each response.
///
/// Windowed-sinc FIR via rubato's `Async` at the fixed ratio 1/3: 80 taps at 24 kHz,
/// Blackman window, cutoff 3.72 kHz. Measured: delay 36 input samples = **1.5 ms**
/// (exactly 12 samples at 8 kHz); **-0.23 dB at 3.2 kHz**; tones at 4.6, 4.8, 5, 6 kHz alias
/// **≥ 78 dB down**. Full reasoning in the [module docs](self).
///
/// Unlike the [`Upsampler`], the output is trimmed of the filter's warm-up, so a response of
/// `n` samples at 24 kHz becomes exactly `ceil(n / 3)` samples at 8 kHz once flushed, aligned
/// with the input: playback positions (marks, barge-in truncation) map back exactly.
///
/// [`flush`]: Downsampler::flush
pub struct Downsampler {
    core: Chunked,
    /// Input samples consumed since the last flush/reset.
    consumed: u64,
    /// Output samples emitted since the last flush/reset.
    emitted: u64,
}

impl Downsampler {
    pub fn new() -> Result<Self, ResampleError> {
        let mut core = Chunked::new(1.0 / 3.0, DOWN_SINC_LEN, DOWN_CUTOFF, 1, DOWN_CHUNK)?;
        core.skip = DOWN_DELAY_OUT;
        Ok(Self {
            core,
            consumed: 0,
            emitted: 0,
        })
    }

    /// Resample `input` (any length, 24 kHz) and append the 8 kHz output to `out`. Samples
    /// short of a 48-sample chunk, plus the filter delay, are held back until more input or
    /// [`flush`](Self::flush). Allocates nothing if `out` has room for `input.len() / 3 + 16`
    /// more samples.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        let before = out.len();
        self.core.process(input, out)?;
        self.consumed += input.len() as u64;
        self.emitted += (out.len() - before) as u64;
        Ok(())
    }

    /// Push out everything still held back (the partial chunk, padded with zeros, and the
    /// filter's tail) so the response ends exactly `ceil(consumed / 3)` samples after it
    /// started, then reset for the next response. No-op if nothing was fed since the last flush.
    pub fn flush(&mut self, out: &mut Vec<i16>) -> Result<(), ResampleError> {
        if self.consumed == 0 {
            return Ok(());
        }
        let target = self.consumed.div_ceil(3);
        let start = out.len();
        // Each round runs one chunk with the staged samples (possibly none) and zero padding.
        // The tail is DOWN_DELAY_OUT (12) samples < one chunk's 16, so this loops at most
        // twice; the bound only guards against a rubato behaviour change.
        let mut rounds = 0;
        while self.emitted + ((out.len() - start) as u64) < target && rounds < 8 {
            let partial = Indexing::new().partial_len(self.core.staged.len());
            self.core.run_chunk(Some(&partial), out)?;
            rounds += 1;
        }
        let excess = (self.emitted + (out.len() - start) as u64).saturating_sub(target);
        out.truncate(out.len() - (excess as usize).min(out.len() - start));
        self.reset();
        Ok(())
    }

    /// Output samples (8 kHz) an input event appears later than its ideal position, i.e. how
    /// much audio is held back inside the filter at any time. Measured: 12 (1.5 ms).
    pub fn delay_samples_out(&self) -> usize {
        DOWN_DELAY_OUT
    }

    /// Filter delay in milliseconds (excluding chunk buffering, < 2 ms, which only matters
    /// for the last chunk of a response and is covered by `flush`).
    pub fn delay_ms(&self) -> f64 {
        DOWN_DELAY_OUT as f64 / 8.0
    }

    /// Forget everything buffered (e.g. barge-in: the rest of the response is discarded).
    pub fn reset(&mut self) {
        self.core.reset();
        self.core.skip = DOWN_DELAY_OUT;
        self.consumed = 0;
        self.emitted = 0;
    }
}
