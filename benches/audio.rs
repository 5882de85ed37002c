//! Cost of one 20 ms frame through each direction of the audio path.
//! `cargo bench --bench audio`
//!
//! For repeatable instruction counts on a noisy machine, the same binary also runs a fixed
//! number of frames without criterion when `AUDIO_FRAMES` is set (`up:N`, `down:N` for N
//! 20 ms frames, or `delta:N` for N 100 ms downlink deltas); compare two counts under callgrind
//! to get the cost per frame:
//!
//! ```sh
//! cargo bench --bench audio --no-run          # prints the binary's path
//! AUDIO_FRAMES=up:0    valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/audio-HASH
//! AUDIO_FRAMES=up:1000 valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/audio-HASH
//! # (Ir of the second − Ir of the first) / 1000 = instructions per frame
//! ```

use std::hint::black_box;

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

/// The fixed-count run for callgrind (see the module docs).
fn fixed_run(spec: &str) {
    let (what, n) = spec.split_once(':').unwrap_or((spec, "1000"));
    let n: usize = n.parse().expect("AUDIO_FRAMES=up:N|down:N|delta:N");
    let mut up = Upsampler::new().expect("resampler");
    let mut down = Downsampler::new().expect("resampler");
    let frame = ulaw_frame();
    let delta = pcm24(if what == "delta" { 2400 } else { 480 });
    let mut pcm = Vec::with_capacity(2400);
    let mut out = Vec::with_capacity(2400);
    let mut ulaw = Vec::with_capacity(2400);
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
            _ => panic!("AUDIO_FRAMES=up:N|down:N|delta:N"),
        }
    }
}

criterion_group!(benches, uplink, downlink);

fn main() {
    if let Ok(spec) = std::env::var("AUDIO_FRAMES") {
        fixed_run(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
