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
//! Chosen: rubato's windowed sinc at the fixed ratio 3 (or 1/3), evaluated as `Async::new_sinc`
//! does with `Nearest` interpolation and an oversampling factor equal to the number of
//! distinct output phases (3 up, 1 down). Because the ratio is an exact integer every output
//! sample lands exactly on a precomputed sinc phase, so this is a plain polyphase FIR: no
//! interpolation error and no drift. The short windowed sinc with a hand-tuned cutoff gives the
//! lowest delay that still meets the band requirements; the automatic cutoff
//! (`calculate_cutoff`) is tuned for long filters and cuts far too early at these lengths (see
//! the BlackmanHarris2 rows). Polynomial interpolation is not used at all: it has no anti-alias
//! filter, which 24k→8k needs.
//!
//! # How it is driven, and what that costs
//!
//! `Async` itself spent three quarters of its time outside the filter: per output sample it
//! tracks the position in f64 (`floor`/`round`, libm calls on baseline x86-64 without SSE4.1),
//! writes through a dynamically dispatched adapter and re-checks bounds; per 16-sample chunk it
//! recomputes its buffer sizes and shifts its history. At an integer ratio none of that is
//! needed, so `SincStream` uses rubato's public interpolator API instead
//! (`sinc_interpolator::make_interpolator`, the same filter table `Async` builds, and its SIMD
//! `get_sinc_dot_product` for every output sample) and counts positions in integers. The
//! output is bit-identical to `Async`'s (`tests/audio.rs`,
//! `resamplers_match_rubato_async_sample_for_sample`); the filter design, tables and
//! arithmetic are all rubato's.
//!
//! Per 20 ms frame: callgrind instructions (repeatable; `AUDIO_FRAMES=up:2000 valgrind
//! --tool=callgrind` on the `cargo bench --bench audio` binary, see `benches/audio.rs`) and
//! criterion medians of three alternating runs of the old and new `cargo bench --bench audio`
//! binaries on the shared 2-core VM (noisy: ±20 % between rounds):
//!
//! | path                                | `Async`, 16/48 chunks     | this module              |
//! |-------------------------------------|---------------------------|--------------------------|
//! | uplink: μ-law decode + 160 → 480    | 117.7 k instr, 10.7 µs    | 38.0 k instr, 3.4 µs     |
//! | downlink: 480 → 160 + μ-law encode  | 49.4 k instr, 4.2 µs      | 19.6 k instr, 2.2 µs     |
//! | downlink: 100 ms delta (2400 → 800) | 246.6 k instr, 19.6 µs    | 97.8 k instr, 10.9 µs    |
//!
//! Of the 38.0 k uplink instructions ~19.7 k are rubato's dot products (41 per output sample),
//! the rest is the f32 ⇄ i16 conversion, μ-law decoding and the loop.
//!
//! Memory per call (both resamplers, heap + inline, `resamplers_hold_little_memory_per_call`):
//! 3658 bytes with `Async`, 4252 bytes now (the history buffers take a whole piece of input).
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
//! Nothing waits for a chunk: every call computes every output whose filter span is in (plus
//! the one sample of look-ahead `Async` keeps, which the bit-exact match preserves), so every
//! 160-sample Twilio frame yields exactly 480 samples at once (474 for the very first: the six
//! held back are those 2 input samples of look-ahead) and input of any size adds no delay
//! beyond the filter's. [`Downsampler::flush`] pushes out the filter tail at the end of a
//! response.

use rubato::sinc_interpolator::{make_interpolator, AnyInterpolator, SincInterpolator};
use rubato::WindowFunction;

/// Errors from running a resampler. In practice they mean a bug in how this module sizes its
/// buffers, not bad input: any input length is accepted.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("resampler state out of range: {0}")]
    Internal(&'static str),
}

/// Filter length in input samples (a multiple of 8, as rubato rounds up to that).
const UP_SINC_LEN: usize = 32;
const DOWN_SINC_LEN: usize = 80;
/// Cutoff relative to the 4 kHz Nyquist of the 8 kHz side (rubato scales it by the ratio when
/// downsampling).
const UP_CUTOFF: f32 = 0.90;
const DOWN_CUTOFF: f32 = 0.93;
/// Input samples converted and filtered per pass; longer input is taken in pieces. Sizes the
/// history buffer once: a Twilio frame up, a 20 ms piece of a Realtime delta down.
const UP_MAX_PIECE: usize = 80;
const DOWN_MAX_PIECE: usize = 240;
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
/// (no SSE4.1), and this runs once per output sample.
const ROUND_MAGIC: f32 = 12_582_912.0;

fn to_i16(x: f32) -> i16 {
    // Clamp first: filter overshoot on a full-scale input clips instead of wrapping, and the
    // rounding trick needs |y| < 2^22. NaN clamps to NaN, which the saturating cast maps to 0.
    let y = (x * I16_SCALE).clamp(-32768.0, 32767.0);
    ((y + ROUND_MAGIC) - ROUND_MAGIC) as i16
}

/// rubato's windowed-sinc FIR at a fixed integer ratio, streamed with exact integer positions.
///
/// This is what rubato's `Async` sinc resampler computes with `Nearest` interpolation at an
/// integer ratio (see the module docs), output for output and bit for bit (`tests/audio.rs`
/// compares the two): the same filter table (`make_interpolator`) and the same SIMD dot product
/// for every output sample, at the same input position. What it leaves out is `Async`'s
/// per-sample floating-point position tracking (`floor`/`round` are libm calls on baseline
/// x86-64), its dynamically dispatched output writes and its per-chunk bookkeeping, which made up
/// three quarters of the cost. Positions are counted in `1/phases` of an input sample, so they
/// never drift however long the call.
struct SincStream {
    filter: AnyInterpolator<f32>,
    /// Filter length in input samples.
    taps: usize,
    /// Table phases per input sample (rubato's oversampling factor).
    phases: i64,
    /// Position step per output sample, in `1/phases` input samples.
    step: i64,
    /// Input samples converted to f32: `wave[0]` is input sample number `wave_start` (negative
    /// numbers are the zeros before the stream). Holds the filter's history plus one piece;
    /// capacity fixed at construction.
    wave: Vec<f32>,
    wave_start: i64,
    /// Input samples consumed since the last reset.
    consumed: i64,
    /// Position of the next output sample, in `1/phases` input samples.
    next_pos: i64,
    max_piece: usize,
    /// Filter output of one pass before conversion; capacity fixed at construction.
    filtered: Vec<f32>,
    /// Output samples still to drop (startup delay trimming); only used by the downsampler.
    skip: usize,
}

impl SincStream {
    fn new(ratio: f64, sinc_len: usize, cutoff: f32, phases: usize, max_piece: usize) -> Self {
        let filter = make_interpolator(
            sinc_len,
            ratio,
            Some(cutoff),
            phases,
            WindowFunction::Blackman,
        );
        let taps = filter.nbr_points();
        let phases = filter.nbr_sincs() as i64;
        // Output step in input samples: 1/3 up, 3 down; in table phases: 1 and 3.
        let step = (phases as f64 / ratio).round() as i64;
        let mut s = Self {
            filter,
            taps,
            phases,
            step,
            wave: Vec::with_capacity(taps + 2 + max_piece),
            wave_start: 0,
            consumed: 0,
            next_pos: 0,
            max_piece,
            // One pass yields at most ratio × piece outputs, plus the few held from before.
            filtered: Vec::with_capacity((ratio * (max_piece + 8) as f64).ceil() as usize),
            skip: 0,
        };
        s.reset();
        s
    }

    /// Back to the start of a stream: zero history, first output where `Async` puts it.
    fn reset(&mut self) {
        // `Async` starts at position 1 - taps and steps before each output.
        self.next_pos = (1 - self.taps as i64) * self.phases + self.step;
        self.wave_start = self.next_pos.div_euclid(self.phases);
        self.wave.clear();
        self.wave.resize((-self.wave_start).max(0) as usize, 0.0);
        self.consumed = 0;
        self.skip = 0;
    }

    /// Feed `input`, appending every output sample that becomes available to `out`.
    fn process(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        for piece in input.chunks(self.max_piece) {
            self.wave.extend(piece.iter().map(|&s| to_f32(s)));
            self.consumed += piece.len() as i64;
            self.emit(out)?;
        }
        Ok(())
    }

    /// Feed `n` zeros (the flush tail).
    fn process_zeros(&mut self, n: usize, out: &mut Vec<i16>) -> Result<(), ResampleError> {
        let n = n.min(self.max_piece);
        self.wave.resize(self.wave.len() + n, 0.0);
        self.consumed += n as i64;
        self.emit(out)
    }

    /// Compute every output whose input is all here, then drop the history no longer needed.
    fn emit(&mut self, out: &mut Vec<i16>) -> Result<(), ResampleError> {
        // As `Async`: an output is computed once its filter span and one more sample are in.
        let last_pos = (self.consumed - self.taps as i64 - 1) * self.phases;
        if self.next_pos <= last_pos {
            let count = ((last_pos - self.next_pos) / self.step + 1) as usize;
            // Outputs trimmed at the start of a stream are not computed at all.
            let skipped = count.min(self.skip);
            self.skip -= skipped;
            self.next_pos += skipped as i64 * self.step;
            let count = count - skipped;
            if count > 0 {
                self.compute(count, out)?;
            }
        }
        // Keep input from the next output's first tap on.
        let keep_from = self.next_pos.div_euclid(self.phases);
        let drop = usize::try_from(keep_from - self.wave_start)
            .unwrap_or(0)
            .min(self.wave.len());
        self.wave.copy_within(drop.., 0);
        self.wave.truncate(self.wave.len() - drop);
        self.wave_start += drop as i64;
        Ok(())
    }

    /// Append the next `count` output samples to `out` (their input is known to be here).
    fn compute(&mut self, count: usize, out: &mut Vec<i16>) -> Result<(), ResampleError> {
        let end_pos = self.next_pos + (count as i64 - 1) * self.step;
        let first = usize::try_from(self.next_pos.div_euclid(self.phases) - self.wave_start)
            .map_err(|_| ResampleError::Internal("position before history"))?;
        let last = end_pos.div_euclid(self.phases) - self.wave_start;
        if last + self.taps as i64 > self.wave.len() as i64 {
            return Err(ResampleError::Internal("position past input"));
        }
        // Step through (input index, table phase) without a division per sample.
        let whole = (self.step / self.phases) as usize;
        let frac = (self.step % self.phases) as usize;
        let phases = self.phases as usize;
        let mut at = first;
        let mut phase = self.next_pos.rem_euclid(self.phases) as usize;
        let sincs = self.filter.get_sincs();
        // Filter into f32 first and convert in a second pass, which the compiler vectorises.
        self.filtered.clear();
        self.filtered.resize(count, 0.0);
        for y in &mut self.filtered {
            *y = self
                .filter
                .get_sinc_dot_product(&self.wave, at, &sincs[phase]);
            at += whole;
            phase += frac;
            if phase >= phases {
                phase -= phases;
                at += 1;
            }
        }
        out.extend(self.filtered.iter().map(|&y| to_i16(y)));
        self.next_pos = end_pos + self.step;
        Ok(())
    }
}

/// 8 kHz → 24 kHz for the uplink (caller → Realtime API). One per call.
///
/// Windowed-sinc polyphase FIR from rubato at the fixed ratio 3: 32 taps at 8 kHz,
/// Blackman window, cutoff 3.6 kHz. Measured: delay 46 samples at 24 kHz = **1.92 ms**;
/// passband 300 Hz–3 kHz within 0.02 dB, **-0.34 dB at 3.2 kHz**; images **≤ -81 dB** for
/// tones up to 3.2 kHz (≤ -75 dB at 3.4 kHz). Every 160-sample Twilio frame yields exactly
/// 480 samples, except the very first, which yields 474: the filter's look-ahead holds back 6
/// samples (as rubato's `Async` does). The output is not otherwise trimmed (its first samples are the filter's warm-up),
/// so it stays a steady 3 × input, 6 samples behind, and `delay_samples_out` is measured on
/// that stream. Full reasoning in the [module docs](self).
pub struct Upsampler {
    core: SincStream,
}

impl Upsampler {
    pub fn new() -> Result<Self, ResampleError> {
        Ok(Self {
            core: SincStream::new(3.0, UP_SINC_LEN, UP_CUTOFF, 3, UP_MAX_PIECE),
        })
    }

    /// Resample `input` (any length, 8 kHz) and append the 24 kHz output to `out`: everything
    /// the filter can compute, `3 × input.len()` samples once started; nothing is dropped or
    /// repeated. Allocates nothing if `out` has room for `3 * input.len() + 8` more samples.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        self.core.process(input, out)
    }

    /// How many 24 kHz output samples an input event appears later than its ideal position
    /// (`3 × input index`). Measured: 46 (1.92 ms).
    pub fn delay_samples_out(&self) -> usize {
        UP_DELAY_OUT
    }

    /// Filter delay in milliseconds (there is no chunk buffering).
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
/// Windowed-sinc FIR from rubato at the fixed ratio 1/3: 80 taps at 24 kHz,
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
    core: SincStream,
    /// Input samples consumed since the last flush/reset.
    consumed: u64,
    /// Output samples emitted since the last flush/reset.
    emitted: u64,
}

impl Downsampler {
    pub fn new() -> Result<Self, ResampleError> {
        let mut core = SincStream::new(1.0 / 3.0, DOWN_SINC_LEN, DOWN_CUTOFF, 1, DOWN_MAX_PIECE);
        core.skip = DOWN_DELAY_OUT;
        Ok(Self {
            core,
            consumed: 0,
            emitted: 0,
        })
    }

    /// Resample `input` (any length, 24 kHz) and append the 8 kHz output to `out`. The filter
    /// delay (and the input short of the next 8 kHz sample) is held back until more input or
    /// [`flush`](Self::flush). Allocates nothing if `out` has room for `input.len() / 3 + 16`
    /// more samples.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), ResampleError> {
        let before = out.len();
        self.core.process(input, out)?;
        self.consumed += input.len() as u64;
        self.emitted += (out.len() - before) as u64;
        Ok(())
    }

    /// Push out everything still held back (the filter's tail, fed with zeros) so the response ends exactly `ceil(consumed / 3)` samples after it
    /// started, then reset for the next response. No-op if nothing was fed since the last flush.
    pub fn flush(&mut self, out: &mut Vec<i16>) -> Result<(), ResampleError> {
        if self.consumed == 0 {
            return Ok(());
        }
        let target = self.consumed.div_ceil(3);
        let start = out.len();
        // Feed silence until the filter has given out the last input sample: the tail is
        // DOWN_DELAY_OUT (12) samples plus the filter's look-ahead, well under one round of
        // FLUSH_ZEROS, so this runs once; the bound only guards against a sizing mistake.
        const FLUSH_ZEROS: usize = 48;
        let mut rounds = 0;
        while self.emitted + ((out.len() - start) as u64) < target && rounds < 8 {
            self.core.process_zeros(FLUSH_ZEROS, out)?;
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

    /// Filter delay in milliseconds (there is no chunk buffering).
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
