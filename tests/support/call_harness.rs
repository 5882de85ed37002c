//! The call state machine driven by scripted Twilio messages and Realtime events at given
//! milliseconds since the call began, and the outputs picked apart: what the `machine_*` tests
//! share. No sockets, no clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use callbridge::call::{Call, CallConfig, CallEvent, EndReason, Output, UpstreamEffect};
use callbridge::realtime::{AudioFormat, ClientEvent, ServerEvent};
use callbridge::twilio::{Inbound, Outbound};
use serde_json::{json, Value};

pub const SID: &str = "MZ0001";

/// The caller's `customParameters` in Twilio's `start`.
pub const FROM: &str = r#"{"From":"+15550001"}"#;

/// The default call configuration with its session in `format`.
pub fn config(format: AudioFormat) -> CallConfig {
    let mut c = CallConfig::default();
    c.session.audio_format = format;
    c
}

pub struct H {
    pub call: Call,
    pub t0: Instant,
    /// What [`Call::new`] put out before any input (the first upstream dial), taken as the
    /// shell takes it: tests of later inputs then see only what those inputs caused.
    pub opening: Vec<Output>,
    /// The timestamp of the next frame [`H::frame`] sends.
    next_ts: u64,
}

impl H {
    /// A call nothing has reached yet.
    pub fn new(cfg: CallConfig) -> H {
        let t0 = Instant::now();
        let mut call = Call::new(Arc::new(cfg), t0);
        let opening = std::iter::from_fn(|| call.poll_output()).collect();
        H {
            call,
            t0,
            opening,
            next_ts: 0,
        }
    }
    /// A call whose Twilio `start` (with these `customParameters`, a JSON object) arrived at
    /// 0 ms and whose upstream opened at 1 ms, with the outputs so far drained.
    pub fn started(cfg: CallConfig, custom_parameters: &str) -> H {
        let mut h = H::new(cfg);
        h.start(custom_parameters);
        h.connect(1);
        h
    }
    pub fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }
    pub fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.call.poll_output()).collect()
    }
    pub fn twilio(&mut self, json: &str, ms: u64) -> Vec<Output> {
        let msg = Inbound::parse(json).expect("test message parses");
        self.call.on_twilio(msg, self.at(ms));
        self.drain()
    }
    pub fn realtime(&mut self, json: &str, ms: u64) -> Vec<Output> {
        let ev = ServerEvent::parse(json).expect("test event parses");
        self.call.on_realtime(1, ev, self.at(ms));
        self.drain()
    }
    pub fn rt(&mut self, v: Value, ms: u64) -> Vec<Output> {
        self.realtime(&v.to_string(), ms)
    }
    pub fn tick(&mut self, ms: u64) -> Vec<Output> {
        self.call.on_tick(self.at(ms));
        self.drain()
    }
    /// Twilio's `start` for [`SID`] at 0 ms, with these `customParameters` (a JSON object).
    pub fn start(&mut self, custom_parameters: &str) -> Vec<Output> {
        self.twilio(&start_msg(SID, custom_parameters, "audio/x-mulaw"), 0)
    }
    /// The upstream the shell dialled is open.
    pub fn connect(&mut self, ms: u64) -> Vec<Output> {
        self.call.on_upstream_open(1, self.at(ms));
        self.drain()
    }
    /// Twilio's `media` carrying `bytes` with timestamp `ts`, arriving at `ms`.
    pub fn media(&mut self, bytes: &[u8], ts: u64, ms: u64) -> Vec<Output> {
        self.twilio(&media_msg(SID, bytes, ts), ms)
    }
    /// One 20 ms caller frame of `byte`, at `ms`; the timestamps of frames sent this way
    /// follow on from each other.
    pub fn frame(&mut self, byte: u8, ms: u64) -> Vec<Output> {
        let ts = self.next_ts;
        self.next_ts += 20;
        self.media(&[byte; 160], ts, ms)
    }
    /// Twilio echoes the mark `name`.
    pub fn mark(&mut self, name: &str, ms: u64) -> Vec<Output> {
        self.twilio(&mark_msg(name), ms)
    }
    /// Twilio echoes each of the marks `names` at `ms`: the caller has heard all they cover.
    pub fn echo_all(&mut self, names: &[String], ms: u64) -> Vec<Output> {
        names.iter().flat_map(|name| self.mark(name, ms)).collect()
    }
    pub fn stop(&mut self, ms: u64) -> Vec<Output> {
        self.twilio(
            &format!(r#"{{"event":"stop","sequenceNumber":"9","streamSid":"{SID}","stop":{{"accountSid":"AC1","callSid":"CA1"}}}}"#),
            ms,
        )
    }
    pub fn created(&mut self, resp: &str, ms: u64) -> Vec<Output> {
        self.rt(
            json!({"type":"response.created","response":{"id":resp,"status":"in_progress"}}),
            ms,
        )
    }
    /// The model speaks `ms_audio` of μ-law in one delta and ends the response.
    pub fn speak(&mut self, resp: &str, item: &str, ms_audio: usize, ms: u64) -> Vec<Output> {
        let mut outs = self.created(resp, ms);
        outs.extend(self.delta(resp, item, &vec![0x11u8; ms_audio * 8], ms));
        outs.extend(self.rt(
            json!({"type":"response.output_audio.done","response_id":resp,"item_id":item}),
            ms,
        ));
        outs.extend(self.rt(
            json!({"type":"response.done","response":{"id":resp,"status":"completed","output":[]}}),
            ms,
        ));
        outs
    }
    /// The model's audio `bytes` for `item` of response `resp`.
    pub fn delta(&mut self, resp: &str, item: &str, bytes: &[u8], ms: u64) -> Vec<Output> {
        self.realtime(
            &format!(
                r#"{{"type":"response.output_audio.delta","response_id":"{resp}","item_id":"{item}","output_index":0,"content_index":0,"delta":"{}"}}"#,
                B64.encode(bytes)
            ),
            ms,
        )
    }
}

pub fn start_msg(sid: &str, custom_parameters: &str, encoding: &str) -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"AC1","streamSid":"{sid}","callSid":"CA1","tracks":["inbound"],"customParameters":{custom_parameters},"mediaFormat":{{"encoding":"{encoding}","sampleRate":8000,"channels":1}}}}}}"#
    )
}

pub fn media_msg(sid: &str, bytes: &[u8], ts: u64) -> String {
    format!(
        r#"{{"event":"media","sequenceNumber":"2","streamSid":"{sid}","media":{{"track":"inbound","chunk":"1","timestamp":"{ts}","payload":"{}"}}}}"#,
        B64.encode(bytes)
    )
}

pub fn mark_msg(name: &str) -> String {
    format!(
        r#"{{"event":"mark","sequenceNumber":"5","streamSid":"{SID}","mark":{{"name":"{name}"}}}}"#
    )
}

/// What `pick` takes from each output it matches, in order: the tests' one way of picking
/// outputs apart.
pub fn pick<T>(outs: &[Output], take: impl Fn(&Output) -> Option<T>) -> Vec<T> {
    outs.iter().filter_map(take).collect()
}

/// The caller audio sent up, one entry per `input_audio_buffer.append`.
pub fn appends(outs: &[Output]) -> Vec<Vec<u8>> {
    pick(outs, |o| match o {
        Output::ToRealtime {
            event: ClientEvent::AppendAudio(b),
            ..
        } => Some(b.to_vec()),
        _ => None,
    })
}

/// Every message for Twilio, in order.
pub fn to_twilio(outs: &[Output]) -> Vec<Outbound> {
    pick(outs, |o| match o {
        Output::ToTwilio(m) => Some(m.clone()),
        _ => None,
    })
}

/// The events for the model, with the generation of the socket each goes to.
pub fn to_model(outs: &[Output]) -> Vec<(u64, ClientEvent)> {
    pick(outs, |o| match o {
        Output::ToRealtime { generation, event } => Some((*generation, event.clone())),
        _ => None,
    })
}

/// The upstream sockets the call asked to dial or close.
pub fn upstream_effects(outs: &[Output]) -> Vec<UpstreamEffect> {
    pick(outs, |o| match o {
        Output::Upstream(e) => Some(e.clone()),
        _ => None,
    })
}

/// The media frames sent to Twilio.
pub fn frames(outs: &[Output]) -> Vec<[u8; 160]> {
    pick(outs, |o| match o {
        Output::ToTwilio(Outbound::Media(f)) => Some(*f),
        _ => None,
    })
}

/// The names of the marks sent to Twilio.
pub fn marks(outs: &[Output]) -> Vec<String> {
    pick(outs, |o| match o {
        Output::ToTwilio(Outbound::Mark(m)) => Some(m.clone()),
        _ => None,
    })
}

/// The call's events (for logs, metrics, the report).
pub fn events(outs: &[Output]) -> Vec<CallEvent> {
    pick(outs, |o| match o {
        Output::Event(e) => Some(e.clone()),
        _ => None,
    })
}

/// Why the call ended, if it did.
pub fn hangup(outs: &[Output]) -> Option<EndReason> {
    outs.iter().find_map(|o| match o {
        Output::Hangup(r) => Some(*r),
        _ => None,
    })
}

/// `n` bytes of a recognisable pattern (`seed` tells two apart), for checking audio goes
/// through byte for byte.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
