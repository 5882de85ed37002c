//! Echo-aware gating of the caller's audio: is this caller frame only the agent's own voice
//! coming back (speakerphone, handset sidetone, a hybrid), or is the caller saying something?
//!
//! The bridge knows exactly what it played, so it does not have to guess: it keeps 432 ms of
//! the played audio (the reference, high-passed, as μ-law), finds the echo path's delay from
//! envelope correlation ([`delay`]), models the path around that delay with a short NLMS
//! adaptive filter (gain, telephone band-limiting, a few ms of spread), and calls a caller frame
//! echo when the filter's prediction explains nearly all of its energy above the line noise
//! (the residual is ≥ 7 dB below the frame).
//! Caller speech on top of the echo leaves a residual as loud as the speech: not echo.
//! The filter adapts only while the frame looks like echo alone once it has locked on
//! (double-talk would otherwise teach it the caller's voice); a delay jump moves the filter's
//! window and unlocks it, so a changed echo path re-converges.
//!
//! Cost: one boxed state of ~7 KiB per gate (`state_fits_the_memory_budget` prints the exact
//! size), allocated once in [`EchoGate::new`]; nothing allocates per frame; per frame ~50 k
//! multiply-adds (the filter three times over 96 taps, the correlation over 201 lags).
//! Measured on real speech in `tests/echo_gate.rs`; the numbers are in docs/echo.md.
//!
//! What it cannot do: an echo that arrives *before* its reference (the bridge calling
//! `on_played` later than the caller hears it) cannot be predicted; call `on_played` with the
//! frame the caller hears now, or earlier rather than later. Lags beyond 400 ms are not searched.
//! Keep calling both methods (with 0xFF frames) for ~400 ms after the agent stops, so the echo's
//! tail is still recognised and the reference history holds silence, not a stale turn.

mod delay;

use audio_codec_algorithms::{decode_ulaw, encode_ulaw};

use super::{FRAME_BYTES, ULAW_SILENCE};
use delay::{DelayEstimate, DelayEstimator};

/// Envelope block: 2 ms at 8 kHz, the delay estimate's resolution. (4 ms blocks gave a broad
/// peak that wandered ±3 blocks and took ~1.8 s to settle on real speech; at 2 ms the envelope
/// keeps some pitch-pulse structure and the peak is sharp and stable within ~0.3 s.)
const BLOCK: usize = 16;
const BLOCKS_PER_FRAME: usize = FRAME_BYTES / BLOCK;
/// Longest echo delay searched: 200 blocks = 400 ms (300 ms path + the bridge's ±60 ms
/// uncertainty about when a frame is played, with room to spare).
const MAX_LAG_BLOCKS: usize = 200;
/// Adaptive filter length: 12 ms, which holds the telephone band-pass's impulse response and
/// the uncertainty of the delay estimate around the true delay.
const TAPS: usize = 96;
/// Where the filter window starts relative to the estimated lag: 4 ms early, so an estimate a
/// little late still has the echo's onset inside the window.
const WINDOW_LEAD: usize = 32;
/// Reference history in samples: the longest lag + the window + one frame (432 ms).
const HISTORY: usize = MAX_LAG_BLOCKS * BLOCK + TAPS + FRAME_BYTES;
const _: () = assert!(FRAME_BYTES.is_multiple_of(BLOCK));

/// A frame is echo when the residual after subtracting the predicted echo is below this
/// fraction of the frame's energy (−7 dB), both above the noise floor. Caller speech at more
/// than −6 dB against the echo keeps the residual above it. (0.3 and 0.25 kept only 89.5–90 %
/// of the caller's speech frames over a −6 dB echo; 0.2 keeps ≥ 90.4 % and still catches
/// ≥ 97 % of echo frames; see docs/echo.md.)
const ECHO_RESIDUAL_RATIO: f32 = 0.2;
/// Once locked, adapt only on frames whose residual is below this fraction (clearly echo
/// dominated); above it the frame may carry the caller's voice.
const ADAPT_RESIDUAL_RATIO: f32 = 0.5;
/// Frames of clear echo (residual below `ECHO_RESIDUAL_RATIO`) before the filter counts as
/// locked and starts guarding itself against double talk.
const LOCK_FRAMES: u32 = 5;
/// Frames in a row the locked filter may fail to explain before the envelope correlation is
/// allowed to move it (500 ms: longer than a syllable of double talk, short enough to follow a
/// changed path).
const DISTRUST_FRAMES: u32 = 25;
/// How clearly a new delay must stand out (see [`DelayEstimate`]) to move a filter that has
/// locked before: above what double talk produced in our runs, below what an echo alone gives.
const CLEAR_PROMINENCE: f32 = 4.2;
/// NLMS step sizes: fast while converging, gentler once locked (less misadjustment).
const STEP_CONVERGING: f32 = 0.5;
const STEP_LOCKED: f32 = 0.2;
/// A frame must carry at least this much more energy than the line's noise floor to be echo
/// (+4.8 dB): the noise alone is not echo, and the VAD decides about it.
const NOISE_MARGIN: f32 = 3.0;
/// Frames quieter than this mean square (RMS ≈ 10 of 32768, −70 dBFS) are silence, never echo.
const SILENCE_ENERGY: f32 = (10.0 / 32768.0) * (10.0 / 32768.0);
/// Regularisation of the NLMS normalisation: the power of a −50 dBFS reference over the window.
/// Without it the first quiet samples after a pause (reference power near zero, the caller's
/// line noise as error) take huge steps and wreck a learned path; an echo of a reference that
/// quiet is far below any line's noise, so nothing worth learning is lost.
const REGULARISATION: f32 = TAPS as f32 * (100.0 / 32768.0) * (100.0 / 32768.0);

/// Decides, frame by frame while agent audio is audible, whether the caller's audio is only the
/// agent's echo. See the module docs.
pub struct EchoGate {
    state: Box<State>,
}

impl std::fmt::Debug for EchoGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoGate").finish_non_exhaustive()
    }
}

struct State {
    /// Played μ-law, a ring indexed by sample number modulo `HISTORY`.
    reference: [u8; HISTORY],
    /// Samples of reference written so far.
    played: usize,
    delay: DelayEstimator,
    /// The filter's window starts this many samples before "now" (`None`: no delay yet).
    window_start: Option<usize>,
    weights: [f32; TAPS],
    locked_frames: u32,
    /// Scratch: the reference samples the current frame's filter reads, decoded.
    window: [f32; FRAME_BYTES + TAPS - 1],
    /// Scratch: one frame decoded.
    frame: [f32; FRAME_BYTES],
    /// The same high-pass on both sides (see [`HighPass`]).
    reference_band: HighPass,
    caller_band: HighPass,
    /// Caller frames since the filter last explained one.
    frames_since_echo: u32,
    /// The filter has locked on at least once since `new`/`reset`.
    ever_locked: bool,
    noise: NoiseFloor,
}

/// The caller line's noise floor (frame energy, high-passed): follows quiet frames down at
/// once, rises slowly (+1 dB/s) so that echo and speech, which come and go, do not lift it,
/// while a line that got noisier is followed within seconds. (Minimum statistics, simplified.)
#[derive(Clone, Copy)]
struct NoiseFloor {
    energy: f32,
}

impl NoiseFloor {
    /// Per-frame rise: 10^(1 dB / 10 / 50 frames).
    const RISE: f32 = 1.0046;

    fn update(&mut self, frame_energy: f32) -> f32 {
        self.energy = if self.energy == 0.0 || frame_energy < self.energy {
            frame_energy
        } else {
            self.energy * Self::RISE
        };
        self.energy
    }
}

/// Second-order Butterworth high-pass at 400 Hz, applied to the reference and to the caller's
/// audio before anything else. Why: a voice's strongest energy (its pitch, 100–250 Hz) is below
/// the telephone band, so a phone's echo lacks it while the reference has it; a short filter
/// cannot learn that cut well, mispredicts the low band and calls echo speech. Comparing both
/// sides above 400 Hz leaves only what the echo path really passes. (RBJ audio EQ cookbook.)
#[derive(Clone, Copy)]
struct HighPass {
    b: [f32; 3],
    a: [f32; 2],
    x: [f32; 2],
    y: [f32; 2],
}

impl HighPass {
    fn new() -> HighPass {
        let w = 2.0 * std::f32::consts::PI * 400.0 / 8000.0;
        let alpha = w.sin() / (2.0 * std::f32::consts::FRAC_1_SQRT_2);
        let (cos, a0) = (w.cos(), 1.0 + alpha);
        let b0 = (1.0 + cos) / 2.0 / a0;
        HighPass {
            b: [b0, -2.0 * b0, b0],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            x: [0.0; 2],
            y: [0.0; 2],
        }
    }

    fn step(&mut self, x: f32) -> f32 {
        let y = self.b[0] * x + self.b[1] * self.x[0] + self.b[2] * self.x[1]
            - self.a[0] * self.y[0]
            - self.a[1] * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }
}

impl Default for EchoGate {
    fn default() -> Self {
        EchoGate::new()
    }
}

impl EchoGate {
    pub fn new() -> EchoGate {
        EchoGate {
            state: Box::new(State {
                reference: [ULAW_SILENCE; HISTORY],
                played: 0,
                delay: DelayEstimator::new(),
                window_start: None,
                weights: [0.0; TAPS],
                locked_frames: 0,
                window: [0.0; FRAME_BYTES + TAPS - 1],
                frame: [0.0; FRAME_BYTES],
                reference_band: HighPass::new(),
                caller_band: HighPass::new(),
                frames_since_echo: 0,
                ever_locked: false,
                noise: NoiseFloor { energy: 0.0 },
            }),
        }
    }

    /// The 160-byte μ-law agent frame the caller hears now (0xFF × 160 when none); called once
    /// per caller frame (20 ms) while agent audio is audible, before `is_echo` for the caller
    /// frame of the same 20 ms. A frame of another length is cut or padded with silence.
    pub fn on_played(&mut self, mulaw: &[u8]) {
        let s = &mut *self.state;
        for i in 0..FRAME_BYTES {
            let byte = mulaw.get(i).copied().unwrap_or(ULAW_SILENCE);
            let filtered = s.reference_band.step(linear(byte));
            s.frame[i] = filtered;
            // Kept as μ-law (1 byte a sample instead of 4): its ~38 dB SNR is far below what
            // the decision needs, and the echo itself went through μ-law.
            s.reference[(s.played + i) % HISTORY] = to_ulaw(filtered);
        }
        s.played += FRAME_BYTES;
        s.delay.on_reference(&s.frame);
    }

    /// This 160-byte μ-law caller frame is explained by the agent's echo: no caller speech on
    /// top of it. Silence and line noise alone are not echo (false). A frame of another length
    /// is cut or padded with silence.
    pub fn is_echo(&mut self, mulaw: &[u8]) -> bool {
        let s = &mut *self.state;
        for (i, sample) in s.frame.iter_mut().enumerate() {
            *sample = s
                .caller_band
                .step(linear(mulaw.get(i).copied().unwrap_or(ULAW_SILENCE)));
        }
        let estimate = s.delay.on_caller(&s.frame);
        // A locked filter that keeps explaining frames is better evidence of the delay than the
        // envelope correlation (which double talk disturbs): move only when it has stopped
        // explaining the echo for a while, and then only to a clear peak. Before the first
        // lock any peak will do (the filter has nothing to lose).
        let trusted = s.locked_frames >= LOCK_FRAMES && s.frames_since_echo < DISTRUST_FRAMES;
        let clear = |e: &DelayEstimate| !s.ever_locked || e.prominence >= CLEAR_PROMINENCE;
        if let (Some(estimate), false) = (estimate.filter(clear), trusted) {
            s.move_window((estimate.lag * BLOCK).saturating_sub(WINDOW_LEAD));
        }
        let echo = s.filter_frame();
        if echo {
            s.frames_since_echo = 0;
        } else {
            s.frames_since_echo = s.frames_since_echo.saturating_add(1);
            // A second without explaining a frame: whatever was learned is no longer trusted
            // to guard itself (a changed path the delay search did not see), so adapt freely.
            if s.frames_since_echo >= 2 * DISTRUST_FRAMES {
                s.locked_frames = 0;
            }
        }
        echo
    }

    /// Forget everything: the reference, the delay and the learned echo path (a new call).
    pub fn reset(&mut self) {
        *self = EchoGate::new();
    }
}

impl State {
    /// Point the filter at a new delay. Taps that still cover the same absolute delays keep
    /// their weights; a move of more than a block is a changed echo path: unlock.
    fn move_window(&mut self, start: usize) {
        let Some(old) = self.window_start.replace(start) else {
            return;
        };
        if old == start {
            return;
        }
        // Tap k covers delay start + k; the old tap covering the same delay is k + start - old.
        let shifted = self.weights;
        for (k, w) in self.weights.iter_mut().enumerate() {
            *w = (k + start)
                .checked_sub(old)
                .and_then(|j| shifted.get(j))
                .copied()
                .unwrap_or(0.0);
        }
        if start.abs_diff(old) > BLOCK {
            self.locked_frames = 0;
        }
    }

    /// Run the filter over the decoded frame in `self.frame`: decide, and adapt if allowed.
    fn filter_frame(&mut self) -> bool {
        let frame_energy: f32 = self.frame.iter().map(|x| x * x).sum();
        let Some(start) = self.window_start else {
            return false;
        };
        // Window sample j is the reference at (now - start - (TAPS - 1) + j), where "now" is the
        // frame's first sample; output n reads window[n .. n + TAPS] reversed.
        let first = self.played.saturating_sub(FRAME_BYTES);
        for (j, x) in self.window.iter_mut().enumerate() {
            *x = match (first + j).checked_sub(start + TAPS - 1) {
                Some(at) if self.played - at <= HISTORY => linear(self.reference[at % HISTORY]),
                _ => 0.0,
            };
        }
        let locked = self.locked_frames >= LOCK_FRAMES;
        let step = if locked { STEP_LOCKED } else { STEP_CONVERGING };
        // A-priori residual (before this frame's updates) decides; a copy of the weights is
        // adapted as we go and kept only if adaptation turns out to be allowed.
        let mut residual_energy = 0.0;
        let mut adapted = self.weights;
        for n in 0..FRAME_BYTES {
            let taps = &self.window[n..n + TAPS];
            let mut predicted = 0.0;
            let mut adapted_prediction = 0.0;
            let mut power = REGULARISATION;
            for k in 0..TAPS {
                let x = taps[TAPS - 1 - k];
                predicted += self.weights[k] * x;
                adapted_prediction += adapted[k] * x;
                power += x * x;
            }
            let residual = self.frame[n] - predicted;
            residual_energy += residual * residual;
            let error = self.frame[n] - adapted_prediction;
            let gain = step * error / power;
            for k in 0..TAPS {
                adapted[k] += gain * taps[TAPS - 1 - k];
            }
        }
        let floor = self.noise.update(frame_energy);
        if frame_energy < SILENCE_ENERGY * FRAME_BYTES as f32 || frame_energy < NOISE_MARGIN * floor
        {
            return false;
        }
        // What the line noise contributes is in both energies and is no one's speech: compare
        // what is above it, so an echo a few dB over the noise still counts as explained.
        let excess_residual = (residual_energy - floor).max(0.0);
        let echo = excess_residual < ECHO_RESIDUAL_RATIO * (frame_energy - floor);
        if !locked || residual_energy < ADAPT_RESIDUAL_RATIO * frame_energy {
            self.weights = adapted;
        }
        if echo {
            self.locked_frames = self.locked_frames.saturating_add(1);
            self.ever_locked |= self.locked_frames >= LOCK_FRAMES;
        }
        echo
    }
}

/// A sample in [-1, 1) as μ-law.
fn to_ulaw(x: f32) -> u8 {
    encode_ulaw((x * 32768.0).clamp(-32768.0, 32767.0) as i16)
}

/// A μ-law byte as a linear sample in [-1, 1).
fn linear(byte: u8) -> f32 {
    f32::from(decode_ulaw(byte)) / 32768.0
}

#[cfg(test)]
mod tests {
    //! Synthetic signals (syllable-like bursts of coloured noise); real speech through a
    //! simulated phone path is in tests/echo_gate.rs.
    use super::*;

    /// Deterministic "speech": noise bursts of 120–280 ms with gaps, low-passed a little.
    fn talker(seed: u64, seconds: usize) -> Vec<i16> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::with_capacity(seconds * 8000);
        let mut smooth = 0.0f32;
        while out.len() < seconds * 8000 {
            let burst = 960 + (next() % 1280) as usize;
            let gap = 400 + (next() % 1200) as usize;
            let level = 2000.0 + (next() % 6000) as f32;
            for i in 0..burst {
                let shape = (std::f32::consts::PI * i as f32 / burst as f32).sin();
                let white = (next() % 2001) as f32 / 1000.0 - 1.0;
                smooth = 0.6 * smooth + 0.4 * white;
                out.push((smooth * level * shape) as i16);
            }
            out.extend(std::iter::repeat_n(0, gap));
        }
        out.truncate(seconds * 8000);
        out
    }

    fn ulaw(samples: &[i16]) -> Vec<u8> {
        samples.iter().map(|&x| encode_ulaw(x)).collect()
    }

    /// The caller's audio: `played` delayed by `delay` samples and scaled, plus `other`.
    fn mix(played: &[i16], delay: usize, gain: f32, other: &[i16]) -> Vec<u8> {
        let mixed: Vec<i16> = (0..played.len())
            .map(|n| {
                let echo = n
                    .checked_sub(delay)
                    .map_or(0.0, |i| f32::from(played[i]) * gain);
                let extra = other.get(n).map_or(0.0, |&x| f32::from(x));
                (echo + extra).clamp(-32768.0, 32767.0) as i16
            })
            .collect();
        ulaw(&mixed)
    }

    /// Runs the gate over whole signals; one verdict per 20 ms frame.
    fn verdicts(gate: &mut EchoGate, played: &[u8], caller: &[u8]) -> Vec<bool> {
        played
            .chunks_exact(FRAME_BYTES)
            .zip(caller.chunks_exact(FRAME_BYTES))
            .map(|(p, c)| {
                gate.on_played(p);
                gate.is_echo(c)
            })
            .collect()
    }

    fn share(verdicts: &[bool]) -> f32 {
        verdicts.iter().filter(|&&v| v).count() as f32 / verdicts.len() as f32
    }

    #[test]
    fn a_delayed_quieter_copy_of_what_was_played_is_echo() {
        let agent = talker(1, 6);
        let caller = mix(&agent, 1200, 0.25, &[]);
        let verdicts = verdicts(&mut EchoGate::new(), &ulaw(&agent), &caller);
        // Scored from 1 s on, on frames where the echo is audible (not the gaps).
        let audible: Vec<bool> = verdicts
            .iter()
            .zip(caller.chunks_exact(FRAME_BYTES))
            .skip(50)
            .filter(|(_, c)| c.iter().any(|&b| decode_ulaw(b).unsigned_abs() > 300))
            .map(|(&v, _)| v)
            .collect();
        assert!(audible.len() > 100);
        assert!(share(&audible) > 0.95, "{}", share(&audible));
    }

    #[test]
    fn another_voice_over_the_echo_is_not_echo() {
        let agent = talker(1, 6);
        let other = talker(2, 6);
        let caller = mix(&agent, 1200, 0.5, &other);
        let verdicts = verdicts(&mut EchoGate::new(), &ulaw(&agent), &caller);
        let talking: Vec<bool> = verdicts
            .iter()
            .zip(other.chunks_exact(FRAME_BYTES))
            .filter(|(_, o)| o.iter().any(|&x| x.unsigned_abs() > 1500))
            .map(|(&v, _)| v)
            .collect();
        assert!(talking.len() > 50);
        assert!(share(&talking) < 0.1, "{}", share(&talking));
    }

    #[test]
    fn silence_noise_and_unplayed_speech_are_not_echo() {
        let mut gate = EchoGate::new();
        let silence = [ULAW_SILENCE; FRAME_BYTES];
        let noise = ulaw(&talker(3, 1).iter().map(|x| x / 100).collect::<Vec<_>>());
        let speech = ulaw(&talker(4, 2));
        assert!(!verdicts(&mut gate, &[ULAW_SILENCE; 8000], &noise).contains(&true));
        let played = vec![ULAW_SILENCE; speech.len()];
        assert!(!verdicts(&mut gate, &played, &speech).contains(&true));
        assert!(!gate.is_echo(&silence));
    }

    #[test]
    fn odd_frame_lengths_are_padded_and_reset_forgets_the_path() {
        let agent = talker(1, 3);
        let caller = mix(&agent, 400, 0.3, &[]);
        let mut gate = EchoGate::new();
        assert!(share(&verdicts(&mut gate, &ulaw(&agent), &caller)[50..]) > 0.5);
        gate.on_played(&[]);
        gate.on_played(&[0x00; 400]);
        assert!(!gate.is_echo(&[]));
        let _ = gate.is_echo(&[0x00; 7]);
        // After reset the gate answers exactly as a new one does (nothing of the old path,
        // delay, noise floor or history is left), on a different path.
        gate.reset();
        let other_path = mix(&agent, 2000, 0.5, &[]);
        let after_reset = verdicts(&mut gate, &ulaw(&agent), &other_path);
        assert_eq!(
            after_reset,
            verdicts(&mut EchoGate::new(), &ulaw(&agent), &other_path)
        );
    }

    #[test]
    fn state_fits_the_memory_budget() {
        let heap = std::mem::size_of::<State>();
        let total = heap + std::mem::size_of::<EchoGate>();
        println!(
            "EchoGate: {} bytes inline + {heap} bytes boxed",
            std::mem::size_of::<EchoGate>()
        );
        // The budget for the whole feature is +8 KiB per call.
        assert!(total <= 8 * 1024, "{total}");
    }
}
