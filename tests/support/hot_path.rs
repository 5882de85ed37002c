//! A call in steady state, for measuring the per-message work: what the allocation test
//! (`tests/machine_alloc.rs`) and the hot-path benchmark (`benches/hotpath.rs`, which includes
//! this file by path) both drive. Depends on nothing else in `support`.

use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use callbridge::call::{Call, CallConfig};
use callbridge::realtime::{AudioFormat, ServerEvent};
use callbridge::twilio::Inbound;

pub const SID: &str = "MZ00000000000000000000000000000001";

/// Twilio's `start` for [`SID`]: μ-law 8 kHz, one custom parameter.
pub fn start_msg() -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{SID}","start":{{"accountSid":"AC1","streamSid":"{SID}","callSid":"CA1","tracks":["inbound"],"customParameters":{{"From":"+15550001"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    )
}

/// A call past its start at `t0`, upstream connected, a response live, every output so far
/// drained: the steady state.
pub fn steady_call(format: AudioFormat, t0: Instant) -> Call {
    let mut cfg = CallConfig::default();
    cfg.session.audio_format = format;
    steady_call_with(cfg, t0)
}

/// [`steady_call`] with the call's settings `cfg`.
pub fn steady_call_with(cfg: CallConfig, t0: Instant) -> Call {
    let mut call = Call::new(Arc::new(cfg), t0);
    call.on_twilio(Inbound::parse(&start_msg()).expect("start"), t0);
    call.on_upstream_open(1, t0);
    let created =
        r#"{"type":"response.created","response":{"id":"resp_1","status":"in_progress"}}"#;
    call.on_realtime(1, ServerEvent::parse(created).expect("created"), t0);
    while call.poll_output().is_some() {}
    call
}

/// A 100 ms `response.output_audio.delta` of the live response, in `format`.
pub fn delta_msg(format: AudioFormat) -> String {
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

/// Writes into `echo` (reused, so nothing is allocated once it is large enough) Twilio's echo
/// of the mark `name`: what Twilio sends once the audio before it has played.
pub fn write_mark_echo(echo: &mut String, name: &str) {
    echo.clear();
    echo.push_str(r#"{"event":"mark","sequenceNumber":"9","streamSid":""#);
    echo.push_str(SID);
    echo.push_str(r#"","mark":{"name":""#);
    echo.push_str(name);
    echo.push_str(r#""}}"#);
}
