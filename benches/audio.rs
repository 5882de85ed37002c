//! Cost of one 20 ms frame through each direction of the audio path.
//! `cargo bench --bench audio`
//!
//! For repeatable instruction counts on a noisy machine, the same binary also runs a fixed
//! number of frames without criterion when `AUDIO_FRAMES` is set (`up:N`, `down:N` for N
//! 20 ms frames, `delta:N` for N 100 ms downlink deltas, or `echo:N` for N frames through the
//! echo gate); compare two counts under callgrind
//! to get the cost per frame:
//!
//! ```sh
//! cargo bench --bench audio --no-run          # prints the binary's path
//! AUDIO_FRAMES=up:0    valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/audio-HASH
//! AUDIO_FRAMES=up:1000 valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/audio-HASH
//! # (Ir of the second − Ir of the first) / 1000 = instructions per frame
//! ```

use std::hint::black_box;

use callbridge::audio::echo::EchoGate;
use callbridge::audio::{g711, Downsampler, Upsampler};
use criterion::{criterion_group, Criterion};

fn ulaw_frame() -> Vec<u8> {
    (0..160u32).map(|i| (i * 37 % 256) as u8).collect()
}

/// `n` samples of a tone at 24 kHz, like the model's audio.
fn pcm24(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| ((i as f64 * 0.26).sin() * 8000.0) as i16)
        .collect()
}

fn uplink(c: &mut Criterion) {
    // 160 μ-law bytes from Twilio -> 480 PCM16 samples at 24 kHz.
    let frame = ulaw_frame();
    let mut up = Upsampler::new().expect("resampler");
    let mut pcm = Vec::with_capacity(160);
    let mut out = Vec::with_capacity(480);
    c.bench_function("uplink decode+upsample 20 ms", |b| {
        b.iter(|| {
            pcm.clear();
            out.clear();
            g711::decode_into(black_box(&frame), &mut pcm);
            up.process(&pcm, &mut out).expect("process");
            black_box(&out);
        })
    });
}

fn downlink(c: &mut Criterion) {
    let mut down = Downsampler::new().expect("resampler");
    // PCM16 samples at 24 kHz from the Realtime API -> a third as many μ-law bytes: one 20 ms
    // frame's worth, and a typical Realtime delta of 100 ms.
    for (name, samples) in [
        ("downlink downsample+encode 20 ms", 480),
        ("downlink downsample+encode 100 ms delta", 2400),
    ] {
        let delta = pcm24(samples);
        let mut pcm = Vec::with_capacity(samples / 3);
        let mut ulaw = Vec::with_capacity(samples / 3);
        c.bench_function(name, |b| {
            b.iter(|| {
                pcm.clear();
                ulaw.clear();
                down.process(black_box(&delta), &mut pcm).expect("process");
                g711::encode_into(&pcm, &mut ulaw);
                black_box(&ulaw);
            })
        });
    }
}

/// The agent's real speech as played, and the caller's side carrying its echo 150 ms later and
/// 12 dB down (μ-law both): the echo gate's usual work while the agent talks.
fn played_and_echo() -> (Vec<u8>, Vec<u8>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/speech/agent_hours.ulaw"
    );
    let played = std::fs::read(path).expect("fixtures/speech/agent_hours.ulaw");
    let echo = (0..played.len())
        .map(|n| match n.checked_sub(1200) {
            Some(i) => audio_codec_algorithms::encode_ulaw(
                audio_codec_algorithms::decode_ulaw(played[i]) / 4,
            ),
            None => callbridge::audio::ULAW_SILENCE,
        })
        .collect();
    (played, echo)
}

/// One 20 ms frame through the echo gate (`on_played` + `is_echo`), cycling through the clip.
fn echo_frame(gate: &mut EchoGate, played: &[u8], echo: &[u8], frame: &mut usize) -> bool {
    let frames = played.len() / 160;
    let span = *frame * 160..(*frame + 1) * 160;
    *frame = (*frame + 1) % frames;
    gate.on_played(black_box(&played[span.clone()]));
    gate.is_echo(black_box(&echo[span]))
}

fn echo_gate(c: &mut Criterion) {
    let (played, echo) = played_and_echo();
    let mut gate = EchoGate::new();
    let mut frame = 0;
    c.bench_function("echo gate on_played+is_echo 20 ms", |b| {
        b.iter(|| black_box(echo_frame(&mut gate, &played, &echo, &mut frame)))
    });
}

/// The fixed-count run for callgrind (see the module docs).
fn fixed_run(spec: &str) {
    let (what, n) = spec.split_once(':').unwrap_or((spec, "1000"));
    let n: usize = n.parse().expect("AUDIO_FRAMES=up:N|down:N|delta:N|echo:N");
    let mut up = Upsampler::new().expect("resampler");
    let mut down = Downsampler::new().expect("resampler");
    let frame = ulaw_frame();
    let delta = pcm24(if what == "delta" { 2400 } else { 480 });
    let mut pcm = Vec::with_capacity(2400);
    let mut out = Vec::with_capacity(2400);
    let mut ulaw = Vec::with_capacity(2400);
    if what == "echo" {
        let (played, echo) = played_and_echo();
        let mut gate = EchoGate::new();
        let mut frame = 0;
        for _ in 0..n {
            black_box(echo_frame(&mut gate, &played, &echo, &mut frame));
        }
        return;
    }
    for _ in 0..n {
        pcm.clear();
        out.clear();
        ulaw.clear();
        match what {
            "up" => {
                g711::decode_into(black_box(&frame), &mut pcm);
                up.process(&pcm, &mut out).expect("process");
                black_box(&out);
            }
            "down" | "delta" => {
                down.process(black_box(&delta), &mut pcm).expect("process");
                g711::encode_into(&pcm, &mut ulaw);
                black_box(&ulaw);
            }
            _ => panic!("AUDIO_FRAMES=up:N|down:N|delta:N|echo:N"),
        }
    }
}

criterion_group!(benches, uplink, downlink, echo_gate);

fn main() {
    if let Ok(spec) = std::env::var("AUDIO_FRAMES") {
        fixed_run(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
