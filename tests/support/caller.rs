//! The simulated caller (`callbridge::caller`) with the fake Twilio REST API behind it: what
//! Twilio does to a stream when the bridge asks it to hang up or redirect the call.

use std::time::Duration;

use callbridge::caller::{self, CallerOptions, CallerReport, Step};
use callbridge::sim::twilio_rest::FakeTwilio;

/// Places the call `call_sid` to `bridge` with `script`; once the fake Twilio REST API gets a
/// request (a call update: hang-up or redirect), Twilio ends the stream, as it does then.
pub async fn call_ended_by_twilio(
    bridge: String,
    call_sid: &str,
    script: Vec<Step>,
    twilio: &FakeTwilio,
) -> CallerReport {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let before = twilio.requests().len();
    let opts = CallerOptions {
        bridge,
        call_sid: call_sid.into(),
        script,
        tail: Duration::from_millis(300),
        twilio_ends: Some(rx),
        ..Default::default()
    };
    let run = caller::run(opts);
    tokio::pin!(run);
    let mut signalled = false;
    loop {
        tokio::select! {
            r = &mut run => return r.expect("call runs"),
            _ = tokio::time::sleep(Duration::from_millis(10)), if !signalled => {
                if twilio.requests().len() > before {
                    signalled = true;
                    let _ = tx.send(true);
                }
            }
        }
    }
}
