//! The call state machine driven by scripted Twilio messages and Realtime events at given
//! milliseconds since the call began: the harness the `call_*` state-machine tests share.
#![allow(dead_code)] // each test file uses a part of it

use std::sync::Arc;
use std::time::{Duration, Instant};

use callbridge::call::{Call, CallConfig, Output};
use callbridge::realtime::ServerEvent;
use callbridge::twilio::Inbound;
use serde_json::Value;

pub const SID: &str = "MZ0001";

pub struct H {
    pub call: Call,
    pub t0: Instant,
}

impl H {
    /// A call whose Twilio `start` (with these `customParameters`, a JSON object) arrived at
    /// 0 ms and whose upstream opened at 1 ms, with the outputs so far drained.
    pub fn started(cfg: CallConfig, custom_parameters: &str) -> H {
        let t0 = Instant::now();
        let mut h = H {
            call: Call::new(Arc::new(cfg), t0),
            t0,
        };
        h.twilio(&format!(
            r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"accountSid":"AC1","streamSid":"{SID}","callSid":"CA1","tracks":["inbound"],"customParameters":{custom_parameters},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
        ), 0);
        h.call.on_upstream_open(1, h.at(1));
        h.drain();
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
    pub fn rt(&mut self, v: Value, ms: u64) -> Vec<Output> {
        let text = v.to_string();
        let ev = ServerEvent::parse(&text).expect("test event parses");
        self.call.on_realtime(1, ev, self.at(ms));
        self.drain()
    }
    pub fn tick(&mut self, ms: u64) -> Vec<Output> {
        self.call.on_tick(self.at(ms));
        self.drain()
    }
    /// Twilio echoes the mark `name`.
    pub fn mark(&mut self, name: &str, ms: u64) -> Vec<Output> {
        self.twilio(
            &format!(
                r#"{{"event":"mark","sequenceNumber":"5","streamSid":"{SID}","mark":{{"name":"{name}"}}}}"#
            ),
            ms,
        )
    }
    pub fn stop(&mut self, ms: u64) -> Vec<Output> {
        self.twilio(
            &format!(r#"{{"event":"stop","sequenceNumber":"9","streamSid":"{SID}","stop":{{"accountSid":"AC1","callSid":"CA1"}}}}"#),
            ms,
        )
    }
}
