//! The README's first command: `callbridge demo` runs a whole call offline, shows a barge-in,
//! writes its WAVs and a fixture of itself, and that fixture replays green.

use std::process::Command;

mod support;
use support::binary::BIN;
use support::TempDir;

#[test]
fn the_demo_runs_a_call_with_a_barge_in_and_its_recording_replays() {
    let out = TempDir::new("demo");
    let run = Command::new(BIN)
        .args(["demo", "--out"])
        .arg(&*out)
        .output()
        .expect("demo starts");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("BARGE-IN"), "{stdout}");
    assert!(stdout.contains("summary"), "{stdout}");
    assert!(
        stdout.contains("outcome: agent hung up (end_call), after the caller heard the goodbye"),
        "{stdout}"
    );
    assert!(
        stdout.contains("calls the tool lookup_order({\"order_id\":\"427991\"})"),
        "{stdout}"
    );
    assert!(
        stdout.contains("answer to the model: {\"arrives\":\"Friday\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("lookup_order answered 1 signed request(s); end_call → Twilio REST POST /2010-04-01/Accounts/AC00000000000000000000000000000001/Calls/CA00000000000000000000000000000001.json Status=completed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("had played before the hang-up: true"),
        "{stdout}"
    );
    for f in ["caller.wav", "agent.wav", "call-stereo.wav", "call.jsonl"] {
        let len = std::fs::metadata(out.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{f}: {len} bytes");
    }
    let replay = Command::new(BIN)
        .args(["replay", "--fast"])
        .arg(out.join("call.jsonl"))
        .output()
        .expect("replay starts");
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stdout)
    );
}
