//! Hardening through the real server and the real binary: secure by default, the drain that
//! drops nothing, `<Reject>` over `max_calls`, barge-in when the caller's playout lags.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use callbridge::config::{Config, Overrides};
use callbridge::metrics::Metrics;

const REMOTE: &str = "wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1";

fn config(env: &[(&str, &str)]) -> Config {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |k: &str| {
        if k == "CALLBRIDGE_LISTEN" {
            return Some("127.0.0.1:0".to_string());
        }
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    Config::load(None, &lookup, &Overrides::default()).expect("config")
}

fn serve_binary(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callbridge"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn serve_refuses_a_remote_upstream_without_a_twilio_token() {
    let out = serve_binary(&[("REALTIME_URL", REMOTE), ("OPENAI_API_KEY", "sk-x")])
        .output()
        .expect("run callbridge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("configuration error"), "{stderr}");
    assert!(stderr.contains("twilio_auth_token"), "{stderr}");
    assert!(stderr.contains("allow_unsigned"), "{stderr}");
    assert!(stderr.contains("CALLBRIDGE_ALLOW_UNSIGNED"), "{stderr}");
    assert!(!stderr.contains("sk-x"), "no secret in the message");
}

#[test]
fn allow_unsigned_starts_and_warns() {
    let mut child = serve_binary(&[
        ("REALTIME_URL", REMOTE),
        ("CALLBRIDGE_ALLOW_UNSIGNED", "true"),
    ])
    .spawn()
    .expect("run callbridge");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut warned = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if line.contains("WARN") && line.contains("allow_unsigned = true") {
            warned = true;
            break;
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "no warning at start; output: {seen:?}");
}

#[tokio::test]
async fn loopback_upstream_needs_no_token_and_a_remote_one_does() {
    let metrics = || Arc::new(Metrics::new().expect("metrics"));
    let local = config(&[("REALTIME_URL", "ws://127.0.0.1:9/v1/realtime")]);
    let server = callbridge::server::spawn(local, metrics())
        .await
        .expect("a loopback upstream starts without a token");
    server.stop(Duration::ZERO).await;

    let remote = config(&[("REALTIME_URL", REMOTE)]);
    let err = match callbridge::server::spawn(remote, metrics()).await {
        Ok(_) => panic!("a remote upstream without a token must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("twilio_auth_token") && err.contains("allow_unsigned"),
        "{err}"
    );

    let signed = config(&[("REALTIME_URL", REMOTE), ("TWILIO_AUTH_TOKEN", "tok")]);
    callbridge::server::spawn(signed, metrics())
        .await
        .expect("a token makes a remote upstream fine")
        .stop(Duration::ZERO)
        .await;
}
