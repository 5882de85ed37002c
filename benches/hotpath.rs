//! The bridge's per-message work, socket excluded: what one call costs per 20 ms.
//! `cargo bench --bench hotpath`
//!
//! - uplink frame: Twilio `media` JSON in → `Call` → `input_audio_buffer.append` JSON out;
//! - downlink delta: a 100 ms `response.output_audio.delta` JSON in → `Call` → five Twilio
//!   `media` JSON frames and a `mark` out, plus Twilio's echo of that mark back in (what one
//!   delta costs in steady state; divide by 5 for per-frame);
//! - the JSON parses alone, and μ-law / resampler alone.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use callbridge::audio::{g711, Downsampler, Upsampler};
use callbridge::call::{Call, CallConfig, Output};
use callbridge::realtime::{AudioFormat, Dialect, ServerEvent};
use callbridge::twilio::{Inbound, Outbound};
use criterion::{criterion_group, criterion_main, Criterion};

const SID: &str = "MZ00000000000000000000000000000001";

fn start_msg() -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"accountSid":"AC1","streamSid":"{SID}","callSid":"CA1","tracks":["inbound"],"customParameters":{{"From":"+15550001"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    )
}

fn media_msg() -> String {
    let frame: Vec<u8> = (0..160u32).map(|i| (i * 37 % 256) as u8).collect();
    format!(
        r#"{{"event":"media","sequenceNumber":"7","streamSid":"{SID}","media":{{"track":"inbound","chunk":"6","timestamp":"120","payload":"{}"}}}}"#,
        B64.encode(frame)
    )
}

fn delta_msg(format: AudioFormat) -> String {
    let bytes: Vec<u8> = match format {
        AudioFormat::Pcmu => (0..800u32).map(|i| (i * 37 % 256) as u8).collect(),
        AudioFormat::Pcm24k => (0..2400)
            .flat_map(|i| (((i as f64 * 0.26).sin() * 8000.0) as i16).to_le_bytes())
            .collect(),
    };
    format!(
        r#"{{"type":"response.output_audio.delta","event_id":"event_SIM000123","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"{}"}}"#,
        B64.encode(bytes)
    )
}

/// A call past its start, upstream connected, a response live: the steady state.
fn steady_call(format: AudioFormat) -> Call {
    let mut cfg = CallConfig::default();
    cfg.session.audio_format = format;
    let now = Instant::now();
    let mut call = Call::new(Arc::new(cfg), now);
    let start = start_msg();
    call.on_twilio(Inbound::parse(&start).expect("start"), now);
    call.on_upstream_open(1, now);
    let created =
        r#"{"type":"response.created","response":{"id":"resp_1","status":"in_progress"}}"#;
    call.on_realtime(1, ServerEvent::parse(created).expect("created"), now);
    while call.poll_output().is_some() {}
    call
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
        let mut call = steady_call(format);
        let mut text = String::with_capacity(4096);
        c.bench_function(&format!("uplink frame {name}"), |b| {
            b.iter(|| {
                let msg = Inbound::parse(black_box(&media)).expect("media");
                call.on_twilio(msg, Instant::now());
                drain(&mut call, &sid_json, &mut text);
            })
        });

        let delta = delta_msg(format);
        let mut call = steady_call(format);
        let mut echo = String::with_capacity(256);
        c.bench_function(
            &format!("downlink 100 ms delta {name} (5 frames + mark + echo)"),
            |b| {
                b.iter(|| {
                    let now = Instant::now();
                    let ev = ServerEvent::parse(black_box(&delta)).expect("delta");
                    call.on_realtime(1, ev, now);
                    if let Some(mark) = drain(&mut call, &sid_json, &mut text) {
                        echo.clear();
                        echo.push_str(r#"{"event":"mark","sequenceNumber":"9","streamSid":""#);
                        echo.push_str(SID);
                        echo.push_str(r#"","mark":{"name":""#);
                        echo.push_str(&mark);
                        echo.push_str(r#""}}"#);
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
