//! What the integration tests share. A test file includes it with `mod support;` and uses the
//! parts it needs:
//! - `bridge`: the real server in this process, configured from variables, and its metrics;
//! - `binary`: the real `callbridge` binary as a child process;
//! - `media`: a bare Twilio media stream over a real WebSocket;
//! - `nats`: a real NATS server with JetStream (the cluster tests);
//! - `outbound`: the outbound-call environment (fake Twilio REST, report receiver, callbacks);
//! - `caller`: the simulated caller with the fake Twilio REST API behind it;
//! - `call_harness`: the call state machine in virtual time (the `machine_*` tests);
//! - `reports`: a report receiver, a spool, and a bridge reporting there;
//! - `schema`: the JSON schemas shipped in `schemas/`;
//! - `sdk`: the OpenAI Python SDK's models checking events (`tests/sdk/*.py`);
//! - `tool_calls`: the tool-call scaffolding of the `machine_tools` and `machine_hangup` tests;
//! - `tools`: external tools (Prometheus, hadolint, ...) some tests drive;
//! - `hot_path.rs` (not a module of this one: `machine_alloc` and `benches/hotpath.rs` include
//!   it by path): a call in steady state and its messages;
//! - here: the Realtime simulator, how long a test waits, polling for a condition, asserting
//!   what a text holds, a GET with a bearer token, temporary directories.
#![allow(dead_code)] // each test file uses a part of it

pub mod binary;
pub mod bridge;
pub mod call_harness;
pub mod caller;
pub mod media;
pub mod nats;
pub mod outbound;
pub mod realtime_ws;
pub mod reports;
pub mod rest;
pub mod schema;
pub mod sdk;
pub mod tool_calls;
pub mod tool_server;
pub mod tools;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a test waits for something that should take a moment (a server starting, a report
/// arriving) before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// The in-repo Realtime simulator on 127.0.0.1:0.
pub async fn simulator(cfg: callbridge::sim::SimConfig) -> callbridge::sim::Simulator {
    callbridge::sim::Simulator::start("127.0.0.1:0", cfg)
        .await
        .expect("simulator starts")
}

/// Polls `done` every 20 ms until it holds (true) or `within` has passed (false).
pub async fn eventually(within: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + within;
    loop {
        if done().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET `url` with the bearer `token`, asserting a 200: the answer, its body unread.
pub async fn get_ok_with_token(url: &str, token: &str) -> reqwest::Response {
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status().as_u16(), 200, "GET {url}");
    resp
}

/// Asserts that `text` (a metrics page, a log, an answer) holds every one of `needles`; shows
/// the whole text when one is missing.
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

/// A fresh, empty directory of its own under the system's temporary directory, removed with
/// everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `tag` names the test; the tests of a file run in parallel, so each gets its own.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("callbridge-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }

    /// Its path as text (for a variable naming it).
    pub fn to_str(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }

    /// Writes `text` to the file `name` in it; its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a temporary file");
        path
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Tiny deterministic PRNG (xorshift64*), so failures reproduce without a `rand` dependency.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A call report's `tool_calls` entry for a call that succeeded: the tool, the arguments and
/// the output as given, and how long it took.
pub fn assert_tool_call_ok(
    call: &serde_json::Value,
    name: &str,
    arguments: serde_json::Value,
    output: serde_json::Value,
) {
    assert_eq!(call["name"], name, "{call:#}");
    assert_eq!(call["arguments"], arguments, "{call:#}");
    assert_eq!(call["output"], output, "{call:#}");
    assert_eq!(call["ok"], true, "{call:#}");
    assert!(call["ms"].is_u64(), "{call:#}");
}

/// The instructions of every `response.create` the simulator received in its first session.
pub fn response_creates(sim: &callbridge::sim::Simulator) -> Vec<String> {
    let Some(log) = sim.session(0) else {
        return Vec::new();
    };
    log.received
        .iter()
        .filter(|ev| ev["type"] == "response.create")
        .map(|ev| {
            ev["response"]["instructions"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Serves `app` on 127.0.0.1 (an integrator's endpoint, a tool server) until the test ends;
/// its base URL, `http://127.0.0.1:PORT`.
pub async fn serve_app(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

/// The reports waiting in the spool directory `dir` (its `.json` files), by name.
pub fn spooled(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
