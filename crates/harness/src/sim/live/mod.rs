//! An in-repo OpenAI GPT-Live simulator: a WebSocket server at `/v1/live/sessions` speaking
//! the Live protocol (shared/protocol.md, "OpenAI GPT-Live"; shapes from the SDK's
//! `openai/types/live/`), so the bridge's Live upstream can be tested without an account.
//!
//! What it does: requires `session.start` first and refuses unknown fields; answers
//! `session.started` with `expires_at`; reads μ-law input continuously and, when the caller's
//! speech ends (energy VAD, `sim/vad.rs`), answers with timed transcript deltas and μ-law audio
//! paced in real time (the Realtime simulator's voice, `sim/voice.rs`); stops talking by itself
//! when the caller speaks over it (the model decides: the protocol has no cancel); delegates
//! scripted tool calls to "Responses" and waits for their outputs and `response.create`;
//! reports usage; closes on `session.close`; takes faults (drop, fatal error, expiry).
//!
//! What it does not: audio formats other than `audio/pcmu` 8 kHz, `input` history semantics
//! (stored, not used), decisions/triggers, mute, sidebands. Events are plain `serde_json`
//! values, sharing no types with `callbridge_core::live`, so a mistake there is not mirrored.

mod session;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{lock, voice, ClosedBy};

/// How the Live simulator behaves. `Default` gives a friendly peer speaking in real time.
#[derive(Debug, Clone)]
pub struct LiveSimConfig {
    /// Scripted replies, used in order and cycled.
    pub reply_texts: Vec<String>,
    /// Audio length of each reply in ms; 0 = 65 ms per character, at least 500 ms.
    pub reply_audio_ms: u32,
    /// Size of each output audio delta in ms.
    pub delta_ms: u32,
    /// Output rate relative to real time. The real server paces output in real time (1.0);
    /// tests may go faster.
    pub pace: f32,
    /// Energy-VAD threshold (RMS, linear PCM16) and the silence that ends the caller's speech.
    pub vad_threshold: f32,
    pub vad_silence_ms: u64,
    /// What the caller said, by speech segment (then "caller spoke for N ms").
    pub caller_transcripts: Vec<String>,
    /// Reply `i` (in order, not cycled) ends with these delegated `(name, arguments JSON)`
    /// function calls, when the session configured Responses delegation.
    pub reply_tool_calls: Vec<Vec<(String, String)>>,
    /// How often `session.usage.updated` is sent.
    pub usage_every: Duration,
    /// Session lifetime: `expires_at` is start + this; when it passes the session closes
    /// with reason `expired`.
    pub session_limit: Duration,
    /// Keep every event in the log (off for load runs).
    pub record_events: bool,
}

impl Default for LiveSimConfig {
    fn default() -> Self {
        LiveSimConfig {
            reply_texts: vec![
                "Hello! Thanks for calling. How can I help you today?".to_string(),
                "Sure, I can help with that.".to_string(),
            ],
            reply_audio_ms: 0,
            delta_ms: 100,
            pace: 1.0,
            vad_threshold: 500.0,
            vad_silence_ms: 500,
            caller_transcripts: Vec::new(),
            reply_tool_calls: Vec::new(),
            usage_every: Duration::from_secs(1),
            session_limit: Duration::from_secs(60 * 60),
            record_events: true,
        }
    }
}

/// A fault injected into one open session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveFault {
    /// Close the TCP connection without a close frame or `session.closed`.
    Drop,
    /// Send an `error` event with this code (e.g. `insufficient_quota`), then close (1011).
    FatalError(String),
    /// End the session now as its time limit does: `session.closed {reason: "expired"}`.
    Expire,
}

/// Everything observable about one Live session.
#[derive(Debug, Clone, Default)]
pub struct LiveSessionLog {
    /// The `sess_..` id sent in `session.started` (empty until then).
    pub id: String,
    /// Request target of the upgrade.
    pub path: String,
    /// Client events in order; in `session.input_audio.append` the `audio` is replaced by
    /// `audio_bytes`.
    pub received: Vec<Value>,
    /// Server events in order; in audio deltas `delta` is replaced by `audio_bytes`.
    pub sent: Vec<Value>,
    /// The resolved session as last sent in `session.started`/`session.updated`.
    pub session: Value,
    pub appended_audio_bytes: usize,
    pub sent_audio_bytes: usize,
    /// Replies begun, and of those the ones the caller talked over.
    pub replies: u32,
    pub replies_interrupted: u32,
    /// `(call_id, output)` of every `function_call_output` received.
    pub tool_outputs: Vec<(String, String)>,
    pub errors_sent: u32,
    pub closed_by: Option<ClosedBy>,
}

impl LiveSessionLog {
    /// Sent events of one type.
    pub fn sent_of<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.sent
            .iter()
            .filter(move |e| e.get("type").and_then(Value::as_str) == Some(ty))
    }

    /// The `type` of every sent event, in order.
    pub fn sent_types(&self) -> Vec<&str> {
        self.sent
            .iter()
            .filter_map(|e| e.get("type").and_then(Value::as_str))
            .collect()
    }
}

pub(crate) struct LiveShared {
    cfg: LiveSimConfig,
    sessions: Mutex<Vec<Arc<Mutex<LiveSessionLog>>>>,
    inboxes: Mutex<Vec<(usize, mpsc::UnboundedSender<LiveFault>)>>,
    next_session: AtomicU64,
    voice: voice::VoiceCache,
}

/// A running Live simulator; dropping it stops it.
pub struct LiveSimulator {
    addr: SocketAddr,
    shared: Arc<LiveShared>,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl LiveSimulator {
    /// Binds `addr` (e.g. `"127.0.0.1:0"`) and starts serving.
    pub async fn start(addr: &str, cfg: LiveSimConfig) -> std::io::Result<LiveSimulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(LiveShared {
            cfg,
            sessions: Mutex::new(Vec::new()),
            inboxes: Mutex::new(Vec::new()),
            next_session: AtomicU64::new(1),
            voice: voice::VoiceCache::default(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        Ok(LiveSimulator {
            addr,
            shared,
            stop,
            accept: Some(accept),
        })
    }

    /// `ws://IP:PORT/v1/live/sessions`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/live/sessions", self.addr)
    }

    /// Snapshots of every session so far, in connection order.
    pub fn sessions(&self) -> Vec<LiveSessionLog> {
        let list: Vec<_> = lock(&self.shared.sessions).clone();
        list.iter().map(|s| lock(s).clone()).collect()
    }

    /// Injects a fault into session `index` (connection order); false if it is not open.
    pub fn inject(&self, index: usize, fault: LiveFault) -> bool {
        let inboxes = lock(&self.shared.inboxes);
        inboxes
            .iter()
            .find(|(i, _)| *i == index)
            .is_some_and(|(_, tx)| tx.send(fault.clone()).is_ok())
    }

    /// Stops accepting, closes every session and waits, at most five seconds.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.accept.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
        }
    }
}

impl Drop for LiveSimulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl LiveShared {
    /// A new session's log, its index and its fault inbox.
    fn register(
        &self,
        path: String,
    ) -> (
        Arc<Mutex<LiveSessionLog>>,
        u64,
        mpsc::UnboundedReceiver<LiveFault>,
    ) {
        let log = Arc::new(Mutex::new(LiveSessionLog {
            path,
            ..LiveSessionLog::default()
        }));
        let index = {
            let mut sessions = lock(&self.sessions);
            sessions.push(log.clone());
            sessions.len() - 1
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inboxes = lock(&self.inboxes);
        inboxes.retain(|(_, tx)| !tx.is_closed());
        inboxes.push((index, tx));
        let n = self.next_session.fetch_add(1, Ordering::Relaxed);
        (log, n, rx)
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<LiveShared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    tasks.spawn(session::run(tcp, shared.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "live sim accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}
