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

// One constructor per script step, so that a call's script reads as one line a step.

/// The caller says `ms` of synthetic speech.
pub fn say(ms: u32) -> Step {
    Step::Say(caller::synthetic_speech(ms))
}

/// The caller is silent for `ms`.
pub fn pause(ms: u64) -> Step {
    Step::Silence(Duration::from_millis(ms))
}

/// The caller listens until it has heard `heard_ms` of the agent (at most `timeout_s`).
pub fn hear_agent(heard_ms: u64, timeout_s: u64) -> Step {
    Step::WaitAgentAudio {
        heard: Duration::from_millis(heard_ms),
        timeout: Duration::from_secs(timeout_s),
    }
}

/// The caller listens until the agent has been quiet for `quiet_ms` (at most `timeout_s`).
pub fn agent_done(quiet_ms: u64, timeout_s: u64) -> Step {
    Step::WaitAgentDone {
        quiet: Duration::from_millis(quiet_ms),
        timeout: Duration::from_secs(timeout_s),
    }
}

/// The barge-in call: 300 ms in, the caller says `ask_ms` of speech, listens until it has heard
/// `heard` (`hear_agent` arguments) of the answer, talks over it for `again_ms`, then listens
/// until the agent is done (`done`: `agent_done` arguments).
pub fn barge_in_script(
    ask_ms: u32,
    heard: (u64, u64),
    again_ms: u32,
    done: (u64, u64),
) -> Vec<Step> {
    vec![
        pause(300),
        say(ask_ms),
        hear_agent(heard.0, heard.1),
        say(again_ms),
        agent_done(done.0, done.1),
    ]
}

/// Runs `script` as a call to `bridge`, listening `tail_ms` after it; the call must run.
pub async fn place_call(bridge: String, script: Vec<Step>, tail_ms: u64) -> CallerReport {
    let call_sid = CallerOptions::default().call_sid;
    place_call_as(bridge, &call_sid, script, tail_ms).await
}

/// [`place_call`] for the call `call_sid`.
pub async fn place_call_as(
    bridge: String,
    call_sid: &str,
    script: Vec<Step>,
    tail_ms: u64,
) -> CallerReport {
    caller::run(CallerOptions {
        bridge,
        call_sid: call_sid.into(),
        script,
        tail: Duration::from_millis(tail_ms),
        ..CallerOptions::default()
    })
    .await
    .expect("call runs")
}
