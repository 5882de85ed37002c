//! Cost of one 20 ms frame through each direction of the audio path.
//! `cargo bench --bench audio`

use std::hint::black_box;

use callbridge::audio::{g711, Downsampler, Upsampler};
use criterion::{criterion_group, criterion_main, Criterion};

fn uplink(c: &mut Criterion) {
    // 160 μ-law bytes from Twilio -> 480 PCM16 samples at 24 kHz.
    let frame: Vec<u8> = (0..160u32).map(|i| (i * 37 % 256) as u8).collect();
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
    // 480 PCM16 samples at 24 kHz from the Realtime API -> 160 μ-law bytes.
    let delta: Vec<i16> = (0..480)
        .map(|i| ((i as f64 * 0.26).sin() * 8000.0) as i16)
        .collect();
    let mut down = Downsampler::new().expect("resampler");
    let mut pcm = Vec::with_capacity(160);
    let mut ulaw = Vec::with_capacity(160);
    c.bench_function("downlink downsample+encode 20 ms", |b| {
        b.iter(|| {
            pcm.clear();
            ulaw.clear();
            down.process(black_box(&delta), &mut pcm).expect("process");
            g711::encode_into(&pcm, &mut ulaw);
            black_box(&ulaw);
        })
    });
}

criterion_group!(benches, uplink, downlink);
criterion_main!(benches);
