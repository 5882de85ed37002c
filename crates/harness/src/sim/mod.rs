//! An in-repo OpenAI Realtime API simulator (a peer speaking the published protocol).
//!
//! It serves `ws://HOST:PORT/v1/realtime?model=..` and speaks the GA dialect, or the beta one
//! when the upgrade carries `OpenAI-Beta: realtime=v1`. Events are parsed and built as plain
//! `serde_json::Value`s on purpose: nothing here shares types with the bridge's `realtime`
//! module, so a mistake there is not mirrored here.
//!
//! Used by integration tests, the offline demo, fixture generation and the load tool, so the
//! per-message path stays lean: no logging above `trace`, no per-frame allocation beyond the
//! JSON value itself, one uncontended lock per message for the session log (skipped entirely
//! with [`SimConfig::record_events`] off).

pub mod faults;
mod http_stub;
pub mod live;
pub mod receiver;
pub mod responses;
mod session;
pub mod twilio_rest;
pub mod vad;
mod validate;
pub mod voice;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::SessionFault;
pub use voice::AudioFormat;

/// The model named in [`Simulator::url`].
pub const DEFAULT_MODEL: &str = "gpt-realtime-2.1";

/// Faults the simulator can inject, to test the bridge's error paths.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// After `n` responses have finished (completed or cancelled), send one `error` event
    /// (`server_error`). The session continues.
    ErrorAfterResponses(u32),
    /// During response number `n + 1`, once half of its audio is out, close the socket with a
    /// close frame (code 1011). `CloseAfterResponses(0)` closes during the first response.
    CloseAfterResponses(u32),
    /// Like `CloseAfterResponses` but drop the TCP connection without a close handshake.
    DropAfterResponses(u32),
    /// Close beta-shaped sessions (upgrade with `OpenAI-Beta: realtime=v1`) right after the
    /// handshake with an `error` event, code `beta_api_shape_disabled`, as OpenAI does since
    /// the beta interface was shut down.
    RejectBeta,
    /// End the session after this long, the way the 60-minute limit does: close code 1001 and
    /// reason "Your session hit the maximum duration of 60 minutes.".
    MaxDuration(Duration),
}

/// How the simulator behaves. `Default` gives a friendly, realistic peer.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Scripted replies, used in order and cycled (each session starts at the first).
    pub reply_texts: Vec<String>,
    /// Audio length of each response in ms. 0 = derive from the reply text (65 ms per char,
    /// at least 500 ms).
    pub response_audio_ms: u32,
    /// Sizes of successive audio deltas in ms, cycled. Zeros are ignored.
    pub delta_ms: Vec<u32>,
    /// Delta send rate relative to real time (4.0 = four times faster than playback, like the
    /// real API, which sends ahead). 0 = as fast as possible (still one delta per loop turn,
    /// so client events are read in between).
    pub pace: f32,
    /// Delay between `response.created` and the first audio delta, in ms.
    pub response_latency_ms: u32,
    /// Time the model's socket takes to open, in ms: the upgrade is answered this long after
    /// the connection was accepted (the real API takes a few hundred ms over the internet).
    pub connect_delay_ms: u32,
    /// Server-VAD threshold: RMS of a 20 ms window in linear PCM16 units. Silence and prefix
    /// come from the session's `turn_detection`.
    pub vad_threshold: f32,
    /// Send `conversation.item.input_audio_transcription.completed` for every committed user
    /// turn even when the session did not ask for input transcription (the real API only
    /// sends it when transcription is configured).
    pub always_transcribe: bool,
    /// Recorded speech for the replies: μ-law 8 kHz clips used in order and cycled, like
    /// `reply_texts` (reply `i` gets clip `i % len`). When set, a response's audio is its clip
    /// (converted to the session's output format) instead of the synthetic voice, and its
    /// length is the clip's. Lets the demo and the fixtures carry real speech both ways.
    pub reply_audio: Vec<Arc<Vec<u8>>>,
    /// What the caller said, turn by turn (used in order, then the default "caller spoke for
    /// N s"): the simulator has no speech recogniser, so a script that knows what it played
    /// tells it what to transcribe.
    pub caller_transcripts: Vec<String>,
    /// Function calls the model makes: reply `i` (responses in the order they start, not
    /// cycled) ends, after its audio, with these `(name, arguments JSON)` calls, as
    /// `function_call` output items in the dialect's events. Empty or missing: none. The
    /// bridge answers with `function_call_output` items and a `response.create`; the next
    /// reply is the model speaking about the results. A name `mcp:LABEL/TOOL` is a remote MCP
    /// call instead, run by the simulator on the session's declared server (`session/mcp.rs`).
    pub reply_tool_calls: Vec<Vec<(String, String)>>,
    /// Faults to inject.
    pub faults: Vec<Fault>,
    /// If set, refuse the upgrade (HTTP 401) unless `Authorization: Bearer <key>` or
    /// `api-key: <key>` matches.
    pub require_api_key: Option<String>,
    /// Keep every event in [`SessionLog::received`]/[`SessionLog::sent`]. Turn off for load
    /// runs; counters are kept either way.
    pub record_events: bool,
    /// Observer called with the instants audio crossed the socket (the load tool measures the
    /// bridge's latency with it). `None` costs nothing.
    pub probe: Option<ProbeHandle>,
    /// `POST /v1/responses` on the same port (post-call analysis): how it answers.
    pub responses: responses::FakeResponses,
}

/// Hooks for a measuring peer (the load tool), called on the session's own task. Times are
/// taken where the bytes cross the socket: when the read returned, just before the write.
pub trait Probe: Send + Sync {
    /// Session number `n` (1-based, connection order) opened its WebSocket; the returned
    /// object observes it and is dropped when the session ends.
    fn session(&self, n: u64) -> Box<dyn SessionProbe>;
}

/// One session's observer. Every method defaults to doing nothing.
pub trait SessionProbe: Send {
    /// A client event of this `type` was read from the socket at `at`.
    fn event_received(&mut self, _ty: &str, _at: std::time::Instant) {}
    /// An `input_audio_buffer.append` arrived (decoded audio), read from the socket at `at`.
    fn append(&mut self, _audio: &[u8], _at: std::time::Instant) {}
    /// An audio delta was handed to the socket at `at`: `offset`/`len` in bytes of the
    /// response's output format, `response` counts this session's responses that carried
    /// audio (1-based).
    fn delta_sent(&mut self, _response: u32, _offset: usize, _len: usize, _at: std::time::Instant) {
    }
    /// `input_audio_buffer.speech_started` was handed to the socket at `at`.
    fn speech_started_sent(&mut self, _at: std::time::Instant) {}
    /// `response.function_call_arguments.done` for `call_id` was handed to the socket at `at`.
    fn function_call_sent(&mut self, _call_id: &str, _at: std::time::Instant) {}
    /// A text frame was read from the socket (the load tool counts the bridge's traffic).
    fn frame_received(&mut self, _text: &str) {}
    /// One flush went out: how many audio deltas and other events, and their bytes.
    fn flush_sent(
        &mut self,
        _deltas: usize,
        _delta_bytes: usize,
        _others: usize,
        _other_bytes: usize,
    ) {
    }
}

/// A shareable [`Probe`] (a newtype so that [`SimConfig`] stays `Debug` and `Clone`).
#[derive(Clone)]
pub struct ProbeHandle(pub Arc<dyn Probe>);

impl std::fmt::Debug for ProbeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeHandle(..)")
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            reply_texts: vec![
                "Hello! Thanks for calling. How can I help you today?".to_string(),
                "Sure, I can help with that. Could you tell me a little more?".to_string(),
                "Got it. Is there anything else I can do for you?".to_string(),
            ],
            response_audio_ms: 3000,
            delta_ms: vec![100],
            pace: 4.0,
            response_latency_ms: 0,
            connect_delay_ms: 0,
            vad_threshold: 500.0,
            always_transcribe: true,
            reply_audio: Vec::new(),
            caller_transcripts: Vec::new(),
            reply_tool_calls: Vec::new(),
            faults: Vec::new(),
            require_api_key: None,
            record_events: true,
            probe: None,
            responses: Default::default(),
        }
    }
}

/// [`SimConfig::reply_tool_calls`] from borrowed `(name, arguments JSON)` pairs, by response.
pub fn reply_tool_calls(calls: &[Vec<(&str, &str)>]) -> Vec<Vec<(String, String)>> {
    calls
        .iter()
        .map(|c| {
            c.iter()
                .map(|(n, a)| (n.to_string(), a.to_string()))
                .collect()
        })
        .collect()
}

/// The protocol dialect of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimDialect {
    /// The GA interface (no beta header).
    Ga,
    /// The beta interface (`OpenAI-Beta: realtime=v1`).
    Beta,
}

/// Who ended a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosedBy {
    /// The client sent a close frame.
    Client,
    /// The client's connection ended without a close handshake.
    ClientDropped,
    /// An injected fault (or `RejectBeta`) closed it; the text says which.
    Fault(String),
    /// [`Simulator::shutdown`].
    Shutdown,
    /// A transport error.
    Error(String),
}

/// One `conversation.item.truncate` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncate {
    pub item_id: String,
    pub content_index: u64,
    pub audio_end_ms: u64,
    /// Whether the simulator accepted it (replied `conversation.item.truncated`).
    pub accepted: bool,
}

/// One caller-input item committed into the conversation (a user turn the model will answer
/// or at least see). Positions are ms of appended input audio since the session began, so a
/// measuring peer that knows what it sent at which ms can tell what the turn was made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedInput {
    pub item_id: String,
    /// Where the speech began (the VAD's first loud window), or the buffer start for a manual
    /// commit.
    pub audio_start_ms: u64,
    /// Where the committed audio ends.
    pub audio_end_ms: u64,
    /// Committed by the server VAD (`false`: the client's `input_audio_buffer.commit`).
    pub by_vad: bool,
}

/// Everything observable about one session.
#[derive(Debug, Clone)]
pub struct SessionLog {
    /// The `sess_..` id sent in `session.created`.
    pub id: String,
    pub dialect: SimDialect,
    /// Request target of the upgrade, e.g. `/v1/realtime?model=gpt-realtime-2.1`.
    pub path: String,
    /// Upgrade request headers (names lower-case), `authorization`/`api-key` values redacted.
    pub headers: Vec<(String, String)>,
    /// Client events in order. In `input_audio_buffer.append` the `audio` field is replaced by
    /// `audio_bytes` (decoded length; absent when the base64 was bad).
    pub received: Vec<Value>,
    /// Server events in order; in audio deltas `delta` is replaced by `audio_bytes`.
    pub sent: Vec<Value>,
    pub truncates: Vec<Truncate>,
    /// Every caller-input item the session committed (by its VAD or on the client's
    /// `input_audio_buffer.commit`), in order: what reached the model as the caller speaking.
    pub committed_inputs: Vec<CommittedInput>,
    /// Decoded bytes of all accepted `input_audio_buffer.append`s.
    pub appended_audio_bytes: usize,
    /// Bytes of output audio sent in deltas.
    pub sent_audio_bytes: usize,
    pub responses_completed: u32,
    pub responses_cancelled: u32,
    pub errors_sent: u32,
    /// The session configuration as last sent in `session.created`/`session.updated`.
    pub session: Value,
    /// `None` while the session is open.
    pub closed_by: Option<ClosedBy>,
}

impl SessionLog {
    /// The `type` of every sent event, in order.
    pub fn sent_types(&self) -> Vec<&str> {
        self.sent
            .iter()
            .filter_map(|e| e.get("type").and_then(Value::as_str))
            .collect()
    }

    /// The `type` of every received event, in order.
    pub fn received_types(&self) -> Vec<&str> {
        self.received
            .iter()
            .filter_map(|e| e.get("type").and_then(Value::as_str))
            .collect()
    }

    /// Sent events of one type.
    pub fn sent_of<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.sent
            .iter()
            .filter(move |e| e.get("type").and_then(Value::as_str) == Some(ty))
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub(crate) struct Shared {
    pub(crate) cfg: SimConfig,
    pub(crate) sessions: Mutex<Vec<Arc<Mutex<SessionLog>>>>,
    pub(crate) next_session: AtomicU64,
    pub(crate) voice: voice::VoiceCache,
    pub(crate) faults: faults::Faults,
}

/// A running simulator. Dropping it stops accepting and closes the sessions (in the
/// background); [`Simulator::shutdown`] does the same and waits.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Binds `addr` (e.g. `"127.0.0.1:0"`) and starts serving.
    pub async fn start(addr: &str, cfg: SimConfig) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            sessions: Mutex::new(Vec::new()),
            next_session: AtomicU64::new(1),
            voice: voice::VoiceCache::default(),
            faults: faults::Faults::default(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        Ok(Simulator {
            addr,
            shared,
            stop,
            accept: Some(accept),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://IP:PORT/v1/realtime?model=gpt-realtime-2.1`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime?model={DEFAULT_MODEL}", self.addr)
    }

    /// Snapshots of every session so far, in connection order.
    pub fn sessions(&self) -> Vec<SessionLog> {
        let list: Vec<_> = lock(&self.shared.sessions).clone();
        list.iter().map(|s| lock(s).clone()).collect()
    }

    /// Number of sessions so far (cheaper than `sessions().len()`).
    pub fn session_count(&self) -> usize {
        lock(&self.shared.sessions).len()
    }

    /// Snapshot of session `i` (connection order).
    pub fn session(&self, i: usize) -> Option<SessionLog> {
        let s = lock(&self.shared.sessions).get(i).cloned();
        s.map(|s| lock(&s).clone())
    }

    /// Stops accepting, closes every session (close code 1001) and waits for them, at most
    /// five seconds.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.accept.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) if shared.faults.refuse_this() => drop(tcp),
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    tasks.spawn(responses::or_session(tcp, peer, shared.clone(), stop.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::debug!(error = %e, "sim accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// Serves until Ctrl-C, printing the URL first (for a `callbridge sim` command).
pub async fn run_standalone(addr: &str, cfg: SimConfig) -> std::io::Result<()> {
    let sim = Simulator::start(addr, cfg).await?;
    println!("Realtime simulator listening on {}", sim.url());
    println!("(GA dialect; send `OpenAI-Beta: realtime=v1` for beta). Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}

/// The session's number (1-based) and its `sess_..` id.
pub(crate) fn next_session_id(shared: &Shared) -> (u64, String) {
    let n = shared.next_session.fetch_add(1, Ordering::Relaxed);
    (n, format!("sess_SIM{n:017}"))
}
