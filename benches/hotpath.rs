//! The bridge's per-message work, socket excluded: what one call costs per 20 ms.
//! `cargo bench --bench hotpath`
//!
//! - uplink frame: Twilio `media` JSON in → `Call` → `input_audio_buffer.append` JSON out;
//! - downlink delta: a 100 ms `response.output_audio.delta` JSON in → `Call` → five Twilio
//!   `media` JSON frames and a `mark` out, plus Twilio's echo of that mark back in (what one
//!   delta costs in steady state; divide by 5 for per-frame);
//! - the JSON parses alone, and μ-law / resampler alone.

use std::hint::black_box;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use callbridge::audio::{g711, Downsampler, Upsampler};
use callbridge::call::{Call, Output};
use callbridge::realtime::{AudioFormat, Dialect, ServerEvent};
use callbridge::twilio::{Inbound, Outbound};
use criterion::{criterion_group, criterion_main, Criterion};

// The steady-state call and its messages, shared with the allocation test.
#[path = "../tests/support/hot_path.rs"]
mod hot_path;
use hot_path::{delta_msg, steady_call, write_mark_echo, SID};

fn media_msg() -> String {
    let frame: Vec<u8> = (0..160u32).map(|i| (i * 37 % 256) as u8).collect();
    format!(
        r#"{{"event":"media","sequenceNumber":"7","streamSid":"{SID}","media":{{"track":"inbound","chunk":"6","timestamp":"120","payload":"{}"}}}}"#,
        B64.encode(frame)
    )
}

/// Writes every output the way the server shell does; returns the last mark's name.
fn drain(call: &mut Call, sid_json: &str, text: &mut String) -> Option<String> {
    let mut mark = None;
    while let Some(out) = call.poll_output() {
        match out {
            Output::ToTwilio(m) => {
                m.write_json(sid_json, text);
                black_box(&*text);
                if let Outbound::Mark(name) = m {
                    mark = Some(name);
                }
            }
            Output::ToRealtime { event: ev, .. } => {
                ev.write_json(Dialect::Ga, text);
                black_box(&*text);
            }
            _ => {}
        }
    }
    mark
}

fn hot_path(c: &mut Criterion) {
    let sid_json = serde_json::to_string(SID).expect("sid");
    for (name, format) in [("pcmu", AudioFormat::Pcmu), ("pcm", AudioFormat::Pcm24k)] {
        let media = media_msg();
        let mut call = steady_call(format, Instant::now());
        let mut text = String::with_capacity(4096);
        c.bench_function(&format!("uplink frame {name}"), |b| {
            b.iter(|| {
                let msg = Inbound::parse(black_box(&media)).expect("media");
                call.on_twilio(msg, Instant::now());
                drain(&mut call, &sid_json, &mut text);
            })
        });

        let delta = delta_msg(format);
        let mut call = steady_call(format, Instant::now());
        let mut echo = String::with_capacity(256);
        c.bench_function(
            &format!("downlink 100 ms delta {name} (5 frames + mark + echo)"),
            |b| {
                b.iter(|| {
                    let now = Instant::now();
                    let ev = ServerEvent::parse(black_box(&delta)).expect("delta");
                    call.on_realtime(1, ev, now);
                    if let Some(mark) = drain(&mut call, &sid_json, &mut text) {
                        write_mark_echo(&mut echo, &mark);
                        call.on_twilio(Inbound::parse(&echo).expect("mark"), now);
                    }
                })
            },
        );
    }

    let media = media_msg();
    c.bench_function("parse twilio media", |b| {
        b.iter(|| black_box(Inbound::parse(black_box(&media)).is_ok()))
    });
    let delta = delta_msg(AudioFormat::Pcmu);
    c.bench_function("parse realtime delta 100 ms pcmu", |b| {
        b.iter(|| black_box(ServerEvent::parse(black_box(&delta)).is_ok()))
    });
}

fn audio_alone(c: &mut Criterion) {
    let ulaw: Vec<u8> = (0..160u32).map(|i| (i * 37 % 256) as u8).collect();
    let pcm8: Vec<i16> = (0..160)
        .map(|i| ((i as f64 * 0.8).sin() * 8000.0) as i16)
        .collect();
    let pcm24: Vec<i16> = (0..480)
        .map(|i| ((i as f64 * 0.26).sin() * 8000.0) as i16)
        .collect();
    let mut out16 = Vec::with_capacity(480);
    let mut out8 = Vec::with_capacity(160);
    c.bench_function("ulaw decode 160", |b| {
        b.iter(|| {
            out16.clear();
            g711::decode_into(black_box(&ulaw), &mut out16);
        })
    });
    c.bench_function("ulaw encode 160", |b| {
        b.iter(|| {
            out8.clear();
            g711::encode_into(black_box(&pcm8), &mut out8);
        })
    });
    let mut up = Upsampler::new().expect("upsampler");
    c.bench_function("upsample 160 -> 480", |b| {
        b.iter(|| {
            out16.clear();
            up.process(black_box(&pcm8), &mut out16).expect("up");
        })
    });
    let mut down = Downsampler::new().expect("downsampler");
    let mut out = Vec::with_capacity(160);
    c.bench_function("downsample 480 -> 160", |b| {
        b.iter(|| {
            out.clear();
            down.process(black_box(&pcm24), &mut out).expect("down");
        })
    });
}

criterion_group!(benches, hot_path, audio_alone);
criterion_main!(benches);
