//! `callbridge::audio::echo::EchoGate` on real speech through a simulated echo path: the agent's
//! voice (fixtures/speech) played, returned 40–360 ms later, −6 to −30 dB down, through a
//! telephone band-pass, soft clipping and μ-law, with line noise — alone, under a caller's real
//! speech (double talk), and with the path's delay jumping.
//!
//! The tables in docs/echo.md come from here: `cargo test --test echo_gate -- --nocapture`.
//! Tuning used only `TUNING` (one agent clip, two caller clips); `HELD_OUT` is every other clip,
//! and `HELD_OUT_VOICE` swaps the voices (the caller's voice as the agent).

use std::path::Path;

use audio_codec_algorithms::{decode_ulaw, encode_ulaw};
use callbridge::audio::echo::EchoGate;
use callbridge::caller::Biquad;

mod support;
use support::Rng;

const FRAME: usize = 160;
/// Line noise: RMS 20 of 32768 (−64 dBFS), a quiet but real line (speech here is ~−20 dBFS).
const NOISE_RMS: f32 = 20.0;
/// Echo frames are scored once the agent has spoken this long (the convergence time we state).
const CONVERGENCE_MS: usize = 500;
/// An echo frame "carries energy" when the echo is at least 6 dB above the line noise; below
/// that it is line noise to the VAD, and the gate answering false there is by contract.
const ECHO_ABOVE_NOISE: f32 = 2.0;
/// A caller frame is speech when its RMS is within 20 dB of the caller's average speech level.
const SPEECH_BELOW_AVERAGE: f32 = 0.1;

const DELAYS_MS: [usize; 4] = [40, 150, 300, 360];
const LEVELS_DB: [f32; 4] = [-6.0, -12.0, -20.0, -30.0];

struct Set {
    name: &'static str,
    agent: &'static [&'static str],
    caller: &'static [&'static str],
}

const TUNING: Set = Set {
    name: "tuning",
    agent: &["agent_hours"],
    caller: &["caller_hello", "caller_number"],
};
const HELD_OUT: Set = Set {
    name: "held-out clips",
    agent: &[
        "agent_found",
        "agent_order",
        "agent_greeting",
        "agent_saturday",
        "agent_bye",
        "agent_digits",
    ],
    caller: &[
        "caller_hours",
        "caller_saturday",
        "caller_thanks",
        "caller_digits",
    ],
};
const HELD_OUT_VOICE: Set = Set {
    name: "held-out, voices swapped",
    agent: &[
        "caller_hello",
        "caller_number",
        "caller_hours",
        "caller_saturday",
        "caller_thanks",
    ],
    caller: &["agent_order", "agent_bye", "agent_saturday"],
};

/// A clip's samples (linear, 16-bit scale).
fn clip(name: &str) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/speech/{name}.ulaw"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.iter().map(|&b| f32::from(decode_ulaw(b))).collect()
}

/// Clips one after another with 300 ms of silence between them.
fn speech(names: &[&str]) -> Vec<f32> {
    let mut out = Vec::new();
    for name in names {
        out.extend(clip(name));
        out.extend(std::iter::repeat_n(0.0, 2400));
    }
    out
}

/// The echo the caller's side returns: `played` delayed, attenuated, band-limited to
/// 300–3400 Hz (two sections each side), softly clipped near full scale. A delay that changes
/// at `jump` (sample index) models the path changing (a phone moved, a codec re-buffering).
fn echo_path(
    played: &[f32],
    delay_ms: usize,
    level_db: f32,
    jump: Option<(usize, usize)>,
) -> Vec<f32> {
    let gain = 10f32.powf(level_db / 20.0);
    let mut band = [
        Biquad::butterworth(300.0, true),
        Biquad::butterworth(300.0, true),
        Biquad::butterworth(3400.0, false),
        Biquad::butterworth(3400.0, false),
    ];
    (0..played.len())
        .map(|n| {
            let delay_ms = match jump {
                Some((at, after_ms)) if n >= at => after_ms,
                _ => delay_ms,
            };
            let source = n.checked_sub(delay_ms * 8).map_or(0.0, |i| played[i]);
            let filtered = band.iter_mut().fold(source * gain, |x, f| f.run(x));
            // Soft clipping above ~−6 dBFS (a cheap loudspeaker or an overdriven hybrid).
            16000.0 * (filtered / 16000.0).tanh()
        })
        .collect()
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

/// Gaussian-ish line noise (sum of four uniforms).
fn line_noise(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let sum: f32 = (0..4)
                .map(|_| (rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
                .sum();
            sum * NOISE_RMS * 3f32.sqrt()
        })
        .collect()
}

fn ulaw(x: f32) -> u8 {
    encode_ulaw(x.clamp(-32768.0, 32767.0) as i16)
}

/// One frame as the gate saw it and what was really in it.
struct Frame {
    echo: bool,
    echo_rms: f32,
    caller_rms: f32,
}

/// Plays `played` to the gate and gives it `echo + caller + noise` as the caller's audio.
fn run(gate: &mut EchoGate, played: &[f32], echo: &[f32], caller: &[f32], seed: u64) -> Vec<Frame> {
    let noise = line_noise(&mut Rng(seed), played.len());
    let frames = played.len() / FRAME;
    let mut played_frame = [0u8; FRAME];
    let mut caller_frame = [0u8; FRAME];
    (0..frames)
        .map(|f| {
            let span = f * FRAME..(f + 1) * FRAME;
            for (i, n) in span.clone().enumerate() {
                played_frame[i] = ulaw(played[n]);
                let c = caller.get(n).copied().unwrap_or(0.0);
                caller_frame[i] = ulaw(echo[n] + c + noise[n]);
            }
            gate.on_played(&played_frame);
            Frame {
                echo: gate.is_echo(&caller_frame),
                echo_rms: rms(&echo[span.clone()]),
                caller_rms: caller.get(span).map_or(0.0, rms),
            }
        })
        .collect()
}

fn carries_echo(frame: &Frame) -> bool {
    frame.echo_rms >= ECHO_ABOVE_NOISE * NOISE_RMS
}

/// Share of echo-carrying frames called echo, once the echo has been heard for
/// `CONVERGENCE_MS` (the gate cannot learn an echo before it arrives).
fn echo_caught(frames: &[Frame]) -> (f32, usize) {
    let first_echo = frames.iter().position(carries_echo).unwrap_or(frames.len());
    let scored: Vec<&Frame> = frames
        .iter()
        .skip(first_echo + CONVERGENCE_MS / 20)
        .filter(|f| f.caller_rms == 0.0 && carries_echo(f))
        .collect();
    let caught = scored.iter().filter(|f| f.echo).count();
    (caught as f32 / scored.len().max(1) as f32, scored.len())
}

/// Share of the caller's speech frames not called echo.
fn speech_kept(frames: &[Frame], speech_level: f32) -> (f32, usize) {
    let scored: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.caller_rms >= SPEECH_BELOW_AVERAGE * speech_level)
        .collect();
    let kept = scored.iter().filter(|f| !f.echo).count();
    (kept as f32 / scored.len().max(1) as f32, scored.len())
}

/// The agent's speech repeated to at least `seconds`.
fn agent_speech(set: &Set, seconds: usize) -> Vec<f32> {
    let once = speech(set.agent);
    let mut out = Vec::new();
    while out.len() < seconds * 8000 {
        out.extend_from_slice(&once);
    }
    out
}

/// Echo alone across the delay × level grid: the share caught, per cell.
fn echo_grid(set: &Set) -> Vec<(usize, f32, f32, usize)> {
    let played = speech(set.agent);
    let mut cells = Vec::new();
    for delay in DELAYS_MS {
        for level in LEVELS_DB {
            let echo = echo_path(&played, delay, level, None);
            let frames = run(&mut EchoGate::new(), &played, &echo, &[], delay as u64 + 7);
            let (caught, scored) = echo_caught(&frames);
            cells.push((delay, level, caught, scored));
        }
    }
    cells
}

/// Double talk: the agent plays throughout with its echo; after 1.5 s (converged) the caller's
/// clips start at their natural level. Per echo level: the share of caller speech frames kept.
fn double_talk(set: &Set, delay_ms: usize) -> Vec<(f32, f32, usize, f32)> {
    let caller_clips = speech(set.caller);
    let start = 12000;
    let played = agent_speech(set, (start + caller_clips.len()) / 8000 + 1);
    let mut caller = vec![0.0; played.len()];
    caller[start..start + caller_clips.len()].copy_from_slice(&caller_clips);
    let level = rms_of_speech(&caller_clips);
    LEVELS_DB
        .iter()
        .map(|&db| {
            let echo = echo_path(&played, delay_ms, db, None);
            let frames = run(&mut EchoGate::new(), &played, &echo, &caller, 11);
            let (kept, scored) = speech_kept(&frames, level);
            let (caught, _) = echo_caught(&frames);
            (db, kept, scored, caught)
        })
        .collect()
}

/// RMS over the frames that are not silence (the speech level of a clip sequence).
fn rms_of_speech(x: &[f32]) -> f32 {
    let loud: Vec<f32> = x.chunks(FRAME).map(rms).filter(|&r| r > 100.0).collect();
    (loud.iter().map(|r| r * r).sum::<f32>() / loud.len().max(1) as f32).sqrt()
}

#[test]
fn echo_of_real_speech_is_echo_across_the_delay_and_level_grid() {
    for set in [TUNING, HELD_OUT, HELD_OUT_VOICE] {
        println!("\necho caught, {} (share of echo frames ≥ 6 dB over noise, from {CONVERGENCE_MS} ms after the echo's onset)", set.name);
        println!(
            "| delay \\ level | {} |",
            LEVELS_DB.map(|l| format!("{l} dB")).join(" | ")
        );
        let cells = echo_grid(&set);
        for row in cells.chunks(LEVELS_DB.len()) {
            let shares: Vec<String> = row
                .iter()
                .map(|c| format!("{:.1} % ({})", c.2 * 100.0, c.3))
                .collect();
            println!("| {} ms | {} |", row[0].0, shares.join(" | "));
        }
        for (delay, level, caught, scored) in cells {
            assert!(
                scored > 50,
                "{}: too few echo frames scored at {delay} ms {level} dB",
                set.name
            );
            assert!(
                caught >= 0.95,
                "{}: {delay} ms {level} dB: {:.1} % caught",
                set.name,
                caught * 100.0
            );
        }
    }
}

#[test]
fn the_callers_voice_over_the_echo_is_not_echo() {
    for set in [TUNING, HELD_OUT, HELD_OUT_VOICE] {
        for delay in [40, 150, 300] {
            let rows = double_talk(&set, delay);
            println!("\ndouble talk, {}, {delay} ms: echo level → caller speech frames kept (frames), echo caught", set.name);
            for (db, kept, scored, caught) in &rows {
                println!(
                    "| {db} dB | {:.1} % ({scored}) | {:.1} % |",
                    kept * 100.0,
                    caught * 100.0
                );
            }
            for (db, kept, _, _) in rows {
                assert!(
                    kept >= 0.90,
                    "{} {delay} ms {db} dB: only {:.1} % of caller speech kept",
                    set.name,
                    kept * 100.0
                );
            }
        }
    }
}

#[test]
fn the_callers_voice_with_no_agent_playing_is_not_echo() {
    let caller = speech(HELD_OUT.caller);
    let silent = vec![0.0; caller.len()];
    let mut gate = EchoGate::new();
    // The gate has learned an echo path first: a converged filter must not call speech echo.
    let played = speech(TUNING.agent);
    run(
        &mut gate,
        &played,
        &echo_path(&played, 150, -12.0, None),
        &[],
        3,
    );
    let frames = run(&mut gate, &silent, &silent, &caller, 5);
    assert!(
        frames.iter().all(|f| !f.echo),
        "caller speech called echo with nothing played"
    );
}

#[test]
fn a_changed_echo_path_is_learned_again() {
    for (before, after) in [(150, 300), (300, 40), (40, 150)] {
        let played = agent_speech(&TUNING, 14);
        let jump_at = 5 * 8000;
        let echo = echo_path(&played, before, -12.0, Some((jump_at, after)));
        let frames = run(&mut EchoGate::new(), &played, &echo, &[], 13);
        // Re-convergence time: the first second-long window after the jump in which ≥ 95 % of
        // echo frames are caught again.
        let jump_frame = jump_at / FRAME;
        let window = 50;
        let reconverged = (jump_frame..frames.len() - window).find(|&f| {
            let w = &frames[f..f + window];
            let scored: Vec<&Frame> = w.iter().filter(|f| carries_echo(f)).collect();
            scored.len() > 10
                && scored.iter().filter(|f| f.echo).count() as f32 >= 0.95 * scored.len() as f32
        });
        let ms = reconverged.map(|f| (f - jump_frame) * 20);
        println!("delay {before} → {after} ms at 5 s: caught ≥ 95 % again after {ms:?} ms");
        let ms = ms.unwrap_or_else(|| panic!("{before} → {after} ms never re-converged"));
        assert!(
            ms <= 3000,
            "{before} → {after} ms took {ms} ms to re-converge"
        );
    }
}
