//! The softphone and the console in a real browser: Debian's Chromium driven by Playwright
//! (tests/browser/pages.py), with Chromium's fake microphone playing recorded speech.
//!
//! A call goes from the page through the bridge's `/media` route to the in-repo Realtime
//! simulator; the page plays the agent's audio (measured in the page), the caller's second line
//! barges in and playback stops, the simulator receives the truncate; the console shows the
//! call live with its transcript, and its outcome after the hang-up; without the token both
//! pages refuse. The page's call SID is the one its ticket names (chosen by the bridge), and its
//! own transcript comes through the ticket's feed (a SID alone opens none).
//!
//! Needs `chromium` (or CALLBRIDGE_CHROMIUM=path) and Python's `playwright` package (never
//! `playwright install`: the system Chromium is used). Without them the test says so and
//! passes on a developer machine; under CI (CI=true) it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use callbridge::fixture::generate::clip;
use callbridge::sim::SimConfig;

mod support;
use support::{bridge, simulator};

const SOFTPHONE_TOKEN: &str = "browser-test-softphone-token";
const CONSOLE_TOKEN: &str = "browser-test-console-token";

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CALLBRIDGE_CHROMIUM") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn python() -> String {
    std::env::var("CALLBRIDGE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn has_playwright() -> bool {
    Command::new(python())
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `None` when the tools are present; else why not.
fn missing_tools() -> Option<String> {
    let mut missing = Vec::new();
    if chromium().is_none() {
        missing.push("chromium (apt-get install chromium, or set CALLBRIDGE_CHROMIUM)");
    }
    if !has_playwright() {
        missing.push("Python playwright (pip install playwright; no `playwright install` needed)");
    }
    (!missing.is_empty()).then(|| missing.join(" and "))
}

/// The caller's side of the conversation as Chromium's fake microphone plays it: a pause,
/// the first line, a pause into the agent's (long) answer, a second line over it, and quiet.
/// 48 kHz PCM16 mono (each μ-law sample decoded and held: Chromium's capture path filters).
fn caller_wav(path: &Path) {
    let hello = clip("caller_hello").expect("caller_hello clip");
    let saturday = clip("caller_saturday").expect("caller_saturday clip");
    let silence = |ms: usize| vec![0xFFu8; ms * 8];
    let mut ulaw = silence(1000);
    ulaw.extend_from_slice(&hello.audio);
    ulaw.extend(silence(2500));
    ulaw.extend_from_slice(&saturday.audio);
    ulaw.extend(silence(30_000));
    let mut at8k = Vec::with_capacity(ulaw.len());
    callbridge::audio::g711::decode_into(&ulaw, &mut at8k);
    let pcm: Vec<i16> = at8k
        .iter()
        .flat_map(|&s| std::iter::repeat_n(s, 6))
        .collect();
    callbridge::recording::wav::write_pcm16(path, 48_000, 1, &pcm).expect("write the WAV");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn softphone_and_console_in_chromium() {
    if let Some(why) = missing_tools() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("browser test cannot run under CI: missing {why}");
        }
        eprintln!("SKIPPED softphone_and_console_in_chromium: missing {why}");
        return;
    }
    let hello = clip("caller_hello").expect("clip");
    let saturday = clip("caller_saturday").expect("clip");
    let hours = clip("agent_hours").expect("clip");
    let sat_answer = clip("agent_saturday").expect("clip");
    let sim = simulator(SimConfig {
        reply_texts: vec![hours.text.clone(), sat_answer.text.clone()],
        reply_audio: vec![hours.audio.clone(), sat_answer.audio.clone()],
        caller_transcripts: vec![hello.text.clone(), saturday.text.clone()],
        delta_ms: vec![60, 100, 240],
        // Like the real API's first audio after the caller stops: a turn latency to show.
        response_latency_ms: 300,
        ..SimConfig::default()
    })
    .await;
    // Two agent profiles: the softphone's picker lists them, and the one picked is used.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let profiles = dir.join("profiles.toml");
    std::fs::write(
        &profiles,
        "default_profile = \"support\"\n\
         [profiles.sales]\ninstructions = \"You are Sam, in sales at Example Inc.\"\n\
         [profiles.support]\ninstructions = \"You are the support desk of Example Inc.\"\n",
    )
    .expect("write the profiles");
    let (server, _) = bridge::start(
        &[
            ("REALTIME_URL", &sim.url()),
            ("OPENAI_API_KEY", "sk-test"),
            ("CALLBRIDGE_SOFTPHONE", "true"),
            ("CALLBRIDGE_SOFTPHONE_TOKEN", SOFTPHONE_TOKEN),
            ("CALLBRIDGE_CONSOLE_TOKEN", CONSOLE_TOKEN),
            // As in production: /media needs Twilio's signature or the softphone's ticket.
            ("TWILIO_AUTH_TOKEN", "twilio-auth-token-for-tests"),
            ("PUBLIC_URL", "https://bridge.example.com"),
        ],
        Some(&profiles),
    )
    .await;

    let wav = dir.join("caller.wav");
    caller_wav(&wav);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/pages.py");
    let base = server.url("");
    let chromium = chromium().expect("checked above");
    let shots = dir.join("screenshots");
    let run = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(&script)
            .args([&base, SOFTPHONE_TOKEN, CONSOLE_TOKEN])
            .arg(&wav)
            .arg(&shots)
            .arg(&chromium)
            .output()
    });
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser run finishes")
        .expect("join")
        .expect("python starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser run failed:\n{stderr}\n{stdout}"
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    eprintln!("browser measured: {result}");

    // What the page measured.
    assert!(
        result["played_ms"].as_f64().unwrap_or(0.0) > 2500.0,
        "{result}"
    );
    assert!(result["clears"].as_u64().unwrap_or(0) >= 1, "{result}");
    assert!(
        result["marks_echoed"].as_u64().unwrap_or(0) >= 2,
        "the page echoes marks: {result}"
    );
    assert_eq!(
        result["profiles"],
        serde_json::json!(["sales", "support"]),
        "the picker lists the profiles: {result}"
    );
    let types = result["console_event_types"].to_string();
    for t in [
        "snapshot",
        "started",
        "agent_speaking",
        "transcript",
        "barge_in",
        "ended",
    ] {
        assert!(types.contains(t), "console saw {types}");
    }

    // What the simulator saw: the page's audio, and the barge-in's truncate.
    let sessions = sim.sessions();
    assert_eq!(sessions.len(), 1, "one call, one session");
    let s = &sessions[0];
    let instructions: Vec<&str> = s
        .received
        .iter()
        .filter(|e| e["type"] == "session.update")
        .filter_map(|e| e["session"]["instructions"].as_str())
        .collect();
    assert_eq!(
        instructions,
        ["You are Sam, in sales at Example Inc."],
        "the profile picked on the page configured the session"
    );
    assert!(
        s.appended_audio_bytes > 8000 * 5,
        "the page's microphone reached the model: {} bytes",
        s.appended_audio_bytes
    );
    assert!(
        !s.truncates.is_empty() && s.truncates.iter().all(|t| t.accepted),
        "the barge-in truncated the agent's answer: {:?}",
        s.truncates
    );
    // The truncate says what the page had played when the caller cut in: the bridge knows it
    // from the marks the page echoed as its own playout reached them.
    let played = result["played_ms_at_clear"].as_f64().unwrap_or(0.0);
    let truncated = s.truncates[0].audio_end_ms as f64;
    eprintln!(
        "page played {played:.0} ms of the answer; the model was truncated at {truncated} ms"
    );
    assert!(
        (played - truncated).abs() < 300.0,
        "page played {played} ms, truncate at {truncated} ms"
    );
    // Whether a response was still live to cancel depends on how far ahead of playout the
    // model was (with `barge_in = "confirm"` the bridge cuts after confirming speech, by which
    // time the simulator has usually finished generating): the truncate above is what the
    // caller's cut did to the model's view.
    server.stop(Duration::from_secs(2)).await;
    sim.shutdown().await;
}
