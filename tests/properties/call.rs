//! The call state machine under arbitrary interleavings of valid, invalid and out-of-order
//! Twilio messages, Realtime events, ticks and the upstream connecting and closing. Whatever
//! comes, it never panics and keeps its invariants:
//! - nothing is emitted after its `Hangup`, and nothing goes upstream before it was connected;
//! - every caller byte is appended upstream at most once, in order (μ-law, checked exactly);
//! - every frame to Twilio is exactly 160 bytes on the wire;
//! - a truncate's `audio_end_ms` is within the audio sent to Twilio for that item and within
//!   the audio the model produced for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use callbridge::call::{Call, CallConfig, Output, UpstreamLoss};
use callbridge::realtime::{AudioFormat, ClientEvent, ServerEvent};
use callbridge::twilio::{Inbound, Outbound};
use proptest::prelude::*;

const SID: &str = "MZ0001";

#[derive(Debug, Clone)]
enum Input {
    Start {
        ours: bool,
        mulaw: bool,
    },
    Connected,
    /// Caller audio: `len` bytes; the timestamp runs on, or jumps by `jump_ms` (lost packets,
    /// or backwards).
    Media {
        len: usize,
        jump_ms: i32,
        foreign: bool,
        bad_b64: bool,
        outbound: bool,
    },
    /// Echo the `n`-th mark sent so far (modulo), out of order as it may be.
    EchoMark(usize),
    Mark(String),
    Dtmf(char),
    Stop,
    TwilioRaw(String),
    ResponseCreated(u8),
    Delta {
        resp: u8,
        item: u8,
        len: usize,
        bad: bool,
    },
    AudioDone {
        resp: u8,
        item: u8,
    },
    ResponseDone(u8),
    SpeechStarted,
    SpeechStopped,
    Error(&'static str),
    RealtimeRaw(String),
    /// The shell's timer firing now.
    Tick,
    /// Time jumps to the call's next deadline and the timer fires.
    TickAtDeadline,
    UpstreamConnected,
    UpstreamClosed(bool),
    TwilioClosed,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        2 => (any::<bool>(), prop::bool::weighted(0.95)).prop_map(|(o, m)| Input::Start { ours: o, mulaw: m }),
        2 => Just(Input::Connected),
        30 => (
            prop_oneof![4 => Just(160usize), 1 => 3usize..400],
            prop_oneof![8 => Just(0i32), 1 => 1i32..2000, 1 => -200i32..0],
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.03),
        )
            .prop_map(|(len, jump_ms, foreign, bad_b64, outbound)| Input::Media { len, jump_ms, foreign, bad_b64, outbound }),
        12 => any::<usize>().prop_map(Input::EchoMark),
        2 => prop_oneof![Just("1:160".to_owned()), Just("x".to_owned()), "[0-9]{1,3}:[0-9]{1,6}"].prop_map(Input::Mark),
        2 => prop::sample::select(vec!['1', '5', '#', '*']).prop_map(Input::Dtmf),
        1 => Just(Input::Stop),
        2 => any::<String>().prop_map(Input::TwilioRaw),
        6 => (0u8..3).prop_map(Input::ResponseCreated),
        24 => (0u8..3, 0u8..3, prop_oneof![3 => Just(4800usize), 3 => 0usize..3000], prop::bool::weighted(0.03))
            .prop_map(|(resp, item, len, bad)| Input::Delta { resp, item, len, bad }),
        4 => (0u8..3, 0u8..3).prop_map(|(resp, item)| Input::AudioDone { resp, item }),
        4 => (0u8..3).prop_map(Input::ResponseDone),
        8 => Just(Input::SpeechStarted),
        2 => Just(Input::SpeechStopped),
        2 => prop::sample::select(vec!["response_cancel_not_active", "server_error", "x"]).prop_map(Input::Error),
        2 => any::<String>().prop_map(Input::RealtimeRaw),
        4 => Just(Input::Tick),
        1 => Just(Input::TickAtDeadline),
        4 => Just(Input::UpstreamConnected),
        1 => any::<bool>().prop_map(Input::UpstreamClosed),
        1 => Just(Input::TwilioClosed),
    ]
}

/// Inputs, each after a pause of 0..600 ms (mostly short), after an optional usual opening.
fn script() -> impl Strategy<Value = (u8, Vec<(u16, Input)>)> {
    (
        0u8..3,
        prop::collection::vec(
            (
                prop_oneof![6 => 0u16..40, 3 => 0u16..200, 1 => 0u16..3000],
                input(),
            ),
            0..160,
        ),
    )
}

/// Caller audio payload number `k`: a 3-byte header carrying `k` (base 254) and a body, never
/// the byte 0xFF (μ-law silence, what gap filling inserts), so the uplink can be read back.
fn payload(k: u32, len: usize) -> Vec<u8> {
    let header = [
        (k / (254 * 254)) as u8,
        ((k / 254) % 254) as u8,
        (k % 254) as u8,
    ];
    (0..len)
        .map(|i| {
            if i < 3 {
                header[i]
            } else {
                ((k as usize * 31 + i) % 254) as u8
            }
        })
        .collect()
}

struct Checker {
    format: AudioFormat,
    hung_up: bool,
    upstream_told_open: bool,
    /// Caller payloads by number.
    payloads: Vec<Vec<u8>>,
    appended: Vec<u8>,
    marks: Vec<String>,
    /// μ-law bytes framed to Twilio so far.
    framed: u64,
    /// For each item: `framed` when its first delta came in, and the model's audio bytes.
    items: HashMap<String, (u64, u64)>,
    text: String,
}

impl Checker {
    fn outputs(&mut self, call: &mut Call, what: &Input) -> Result<(), TestCaseError> {
        while let Some(out) = call.poll_output() {
            prop_assert!(
                !self.hung_up,
                "{:?} emitted after the hang-up (input {:?})",
                out,
                what
            );
            match out {
                Output::Hangup(_) => self.hung_up = true,
                Output::ToTwilio(Outbound::Media(frame)) => {
                    self.framed += 160;
                    Outbound::Media(frame).write_json("\"MZ0001\"", &mut self.text);
                    let v: serde_json::Value = serde_json::from_str(&self.text)
                        .map_err(|e| TestCaseError::fail(format!("media JSON: {e}")))?;
                    let bytes = B64
                        .decode(v["media"]["payload"].as_str().unwrap_or(""))
                        .map_err(|e| TestCaseError::fail(format!("media base64: {e}")))?;
                    prop_assert_eq!(bytes.len(), 160, "a frame to Twilio is 160 bytes");
                }
                Output::ToTwilio(Outbound::Mark(name)) => self.marks.push(name),
                Output::ToRealtime { event: ev, .. } => {
                    prop_assert!(
                        self.upstream_told_open,
                        "{} before the upstream was open",
                        ev.name()
                    );
                    match ev {
                        ClientEvent::AppendAudio(bytes) => self.appended.extend_from_slice(&bytes),
                        ClientEvent::Truncate {
                            item_id,
                            audio_end_ms,
                        } => {
                            let (first_framed, model_bytes) = self
                                .items
                                .get(&item_id)
                                .copied()
                                .unwrap_or((self.framed, 0));
                            let sent_ms = (self.framed - first_framed) / 8;
                            prop_assert!(
                                audio_end_ms <= sent_ms,
                                "truncate {} at {} ms, only {} ms sent to Twilio since it began",
                                item_id,
                                audio_end_ms,
                                sent_ms
                            );
                            let model_ms = model_bytes / self.format.bytes_per_ms();
                            prop_assert!(
                                audio_end_ms <= model_ms,
                                "truncate {} at {} ms, the model produced {} ms",
                                item_id,
                                audio_end_ms,
                                model_ms
                            );
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// μ-law uplink: with the inserted silence taken out, the appended audio is whole caller
    /// payloads, each at most once, in the order they came.
    fn uplink_in_order_at_most_once(&self) -> Result<(), TestCaseError> {
        if self.format != AudioFormat::Pcmu {
            return Ok(());
        }
        let audio: Vec<u8> = self
            .appended
            .iter()
            .copied()
            .filter(|b| *b != 0xFF)
            .collect();
        let mut at = 0usize;
        let mut last: Option<u32> = None;
        while at < audio.len() {
            prop_assert!(at + 3 <= audio.len(), "a torn payload at byte {}", at);
            let k =
                audio[at] as u32 * 254 * 254 + audio[at + 1] as u32 * 254 + audio[at + 2] as u32;
            prop_assert!(
                last.is_none_or(|l| k > l),
                "payload {} after {:?}: repeated or out of order",
                k,
                last
            );
            let Some(p) = self.payloads.get(k as usize) else {
                return Err(TestCaseError::fail(format!("payload {k} was never sent")));
            };
            prop_assert!(
                audio.len() >= at + p.len() && audio[at..at + p.len()] == p[..],
                "payload {} altered",
                k
            );
            at += p.len();
            last = Some(k);
        }
        Ok(())
    }
}

fn run(format_pick: u8, opening: u8, steps: &[(u16, Input)]) -> Result<(), TestCaseError> {
    let format = if format_pick == 0 {
        AudioFormat::Pcm24k
    } else {
        AudioFormat::Pcmu
    };
    let mut cfg = CallConfig::default();
    cfg.session.audio_format = format;
    let t0 = Instant::now();
    let mut now = t0;
    let mut call = Call::new(Arc::new(cfg), t0);
    let mut ck = Checker {
        format,
        hung_up: false,
        upstream_told_open: false,
        payloads: Vec::new(),
        appended: Vec::new(),
        marks: Vec::new(),
        framed: 0,
        items: HashMap::new(),
        text: String::new(),
    };
    let mut ts: i64 = 0;
    let mut opening_steps = Vec::new();
    if opening >= 1 {
        opening_steps.push((
            0u16,
            Input::Start {
                ours: true,
                mulaw: true,
            },
        ));
    }
    if opening >= 2 {
        opening_steps.push((0u16, Input::UpstreamConnected));
    }
    // Whether the shell has reported its socket open.
    let mut opened = false;
    for (dt, what) in opening_steps.iter().chain(steps.iter()) {
        now += Duration::from_millis(u64::from(*dt));
        let twilio = |call: &mut Call, text: &str| {
            if let Ok(msg) = Inbound::parse(text) {
                call.on_twilio(msg, now);
            }
        };
        // The shell reads the upstream only once it is open.
        let upstream_open = ck.upstream_told_open;
        let realtime = |call: &mut Call, text: &str| {
            if !upstream_open {
                return;
            }
            if let Ok(ev) = ServerEvent::parse(text) {
                call.on_realtime(call.upstream_generation(), ev, now);
            }
        };
        match what {
            Input::Start { ours, mulaw } => twilio(
                &mut call,
                &format!(
                    r#"{{"event":"start","streamSid":"{}","start":{{"streamSid":"{SID}","callSid":"CA1","customParameters":{{"From":"+1"}},"mediaFormat":{{"encoding":"{}","sampleRate":8000,"channels":1}}}}}}"#,
                    if *ours { SID } else { "MZother" },
                    if *mulaw { "audio/x-mulaw" } else { "audio/l16" },
                ),
            ),
            Input::Connected => twilio(
                &mut call,
                r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
            ),
            Input::Media {
                len,
                jump_ms,
                foreign,
                bad_b64,
                outbound,
            } => {
                let k = ck.payloads.len() as u32;
                let p = payload(k, *len);
                ts = (ts + i64::from(*jump_ms)).max(0);
                let b64 = if *bad_b64 {
                    "!!not base64!!".to_owned()
                } else {
                    B64.encode(&p)
                };
                ck.payloads.push(p);
                twilio(
                    &mut call,
                    &format!(
                        r#"{{"event":"media","streamSid":"{}","media":{{"track":"{}","chunk":"1","timestamp":"{ts}","payload":"{b64}"}}}}"#,
                        if *foreign { "MZother" } else { SID },
                        if *outbound { "outbound" } else { "inbound" },
                    ),
                );
                ts += (*len / 8) as i64;
            }
            Input::EchoMark(n) => {
                if !ck.marks.is_empty() {
                    let name = ck.marks[n % ck.marks.len()].clone();
                    twilio(
                        &mut call,
                        &format!(
                            r#"{{"event":"mark","streamSid":"{SID}","mark":{{"name":{}}}}}"#,
                            serde_json::json!(name)
                        ),
                    );
                }
            }
            Input::Mark(name) => twilio(
                &mut call,
                &format!(
                    r#"{{"event":"mark","streamSid":"{SID}","mark":{{"name":{}}}}}"#,
                    serde_json::json!(name)
                ),
            ),
            Input::Dtmf(d) => twilio(
                &mut call,
                &format!(
                    r#"{{"event":"dtmf","streamSid":"{SID}","dtmf":{{"track":"inbound_track","digit":"{d}"}}}}"#
                ),
            ),
            Input::Stop => twilio(
                &mut call,
                &format!(r#"{{"event":"stop","streamSid":"{SID}"}}"#),
            ),
            Input::TwilioRaw(s) => twilio(&mut call, s),
            Input::ResponseCreated(r) => realtime(
                &mut call,
                &format!(r#"{{"type":"response.created","response":{{"id":"r{r}"}}}}"#),
            ),
            Input::Delta {
                resp,
                item,
                len,
                bad,
            } => {
                let item_id = format!("i{item}");
                let framed = ck.framed;
                let entry = ck.items.entry(item_id.clone()).or_insert((framed, 0));
                entry.1 += *len as u64;
                let bytes: Vec<u8> = (0..*len).map(|i| (i * 7) as u8).collect();
                let b64 = if *bad {
                    "@@@".to_owned()
                } else {
                    B64.encode(&bytes)
                };
                realtime(
                    &mut call,
                    &format!(
                        r#"{{"type":"response.output_audio.delta","response_id":"r{resp}","item_id":"{item_id}","output_index":0,"content_index":0,"delta":"{b64}"}}"#
                    ),
                );
            }
            Input::AudioDone { resp, item } => realtime(
                &mut call,
                &format!(
                    r#"{{"type":"response.output_audio.done","response_id":"r{resp}","item_id":"i{item}"}}"#
                ),
            ),
            Input::ResponseDone(r) => realtime(
                &mut call,
                &format!(
                    r#"{{"type":"response.done","response":{{"id":"r{r}","status":"completed"}}}}"#
                ),
            ),
            Input::SpeechStarted => realtime(
                &mut call,
                r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":100,"item_id":"u1"}"#,
            ),
            Input::SpeechStopped => realtime(
                &mut call,
                r#"{"type":"input_audio_buffer.speech_stopped","audio_end_ms":900}"#,
            ),
            Input::Error(code) => realtime(
                &mut call,
                &format!(
                    r#"{{"type":"error","error":{{"type":"invalid_request_error","code":"{code}","message":"m"}}}}"#
                ),
            ),
            Input::RealtimeRaw(s) => realtime(&mut call, s),
            Input::Tick => call.on_tick(now),
            Input::TickAtDeadline => {
                if let Some(d) = call.next_deadline() {
                    now = now.max(d.min(now + Duration::from_secs(30)));
                }
                call.on_tick(now);
            }
            Input::UpstreamConnected => {
                if !ck.hung_up {
                    ck.upstream_told_open = true;
                }
                // The shell reports generation 1 open once: the one socket it dials.
                if !opened {
                    opened = true;
                    call.on_upstream_open(1, now);
                }
            }
            Input::UpstreamClosed(failed) => {
                let detail = String::from("closed");
                let loss = if !opened {
                    UpstreamLoss::ConnectFailed(detail)
                } else if *failed {
                    UpstreamLoss::Dropped(detail)
                } else {
                    UpstreamLoss::Closed {
                        code: 1000,
                        reason: detail,
                    }
                };
                call.on_upstream_lost(call.upstream_generation(), loss, now)
            }
            Input::TwilioClosed => call.on_twilio_closed(now),
        }
        ck.outputs(&mut call, what)?;
    }
    ck.uplink_in_order_at_most_once()
}

proptest! {
    #![proptest_config(crate::config(500))]

    #[test]
    fn the_call_survives_any_interleaving_and_keeps_its_invariants(
        format in 0u8..4,
        (opening, steps) in script(),
    ) {
        run(format, opening, &steps)?;
    }
}

/// The checker itself catches what it claims to: a doubled payload is reported.
#[test]
fn the_uplink_check_catches_a_repeated_payload() {
    let p0 = payload(0, 160);
    let p1 = payload(1, 160);
    let mut ck = Checker {
        format: AudioFormat::Pcmu,
        hung_up: false,
        upstream_told_open: true,
        payloads: vec![p0.clone(), p1.clone()],
        appended: [p0.clone(), vec![0xFF; 80], p1.clone()].concat(),
        marks: Vec::new(),
        framed: 0,
        items: HashMap::new(),
        text: String::new(),
    };
    assert!(ck.uplink_in_order_at_most_once().is_ok());
    ck.appended = [p0.clone(), p1.clone(), p1].concat();
    assert!(ck.uplink_in_order_at_most_once().is_err());
    ck.appended = [payload(1, 160), p0].concat();
    assert!(ck.uplink_in_order_at_most_once().is_err());
}
