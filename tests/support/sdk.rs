//! The OpenAI Python SDK's generated models as the wire schema: runs a checker in `tests/sdk/`
//! (the `openai` package pinned in `.ci/run`). Under `CI=true` a missing SDK fails the test;
//! elsewhere the check is skipped, loudly.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The SDK version `.ci/run` installs.
pub const SDK_VERSION: &str = "3.63.0";

/// Runs `tests/sdk/<script> <args..>` with `input` as JSON on stdin. Exit 0: its stdout.
/// Exit 3 (the SDK is not importable): `None`, or a failure under `CI=true`. Anything else:
/// a failure showing what the script printed.
pub fn run(script: &str, args: &[&str], input: &Value) -> Option<String> {
    let path = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = match Command::new("python3")
        .arg(path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return missing_sdk(&format!("python3 does not run: {e}")),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write events");
    let out = child.wait_with_output().expect("checker runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match out.status.code() {
        Some(0) => {
            eprintln!("SDK: {}", text(&out.stderr).trim());
            Some(text(&out.stdout))
        }
        Some(3) => missing_sdk(&text(&out.stderr)),
        _ => panic!(
            "the OpenAI SDK's models refuse it ({script} {args:?}):\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        ),
    }
}

fn missing_sdk(why: &str) -> Option<String> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and the OpenAI SDK check cannot run ({why}); .ci/run installs openai");
    }
    eprintln!(
        "SKIPPED: the OpenAI SDK check ({why}); `pip install openai=={SDK_VERSION}` to run it"
    );
    None
}
