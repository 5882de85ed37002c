//! `GET /media`: Twilio's Media Streams WebSocket, one task per call.
//!
//! The task pumps: Twilio messages and Realtime events into the [`Call`], the call's outputs
//! out to the two sockets, a timer for the call's deadline. The upstream is dialled as soon as
//! the media socket opens, in parallel with Twilio's `start`; the call buffers caller audio
//! until it is ready.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use tracing::{warn, Instrument};

use super::call_setup::CallSetup;
use super::console::LiveCall;
use super::effects;
use super::latency::WriteTimer;
use super::links::Links;
use super::web::ticket::Ticket;
use super::AppState;
use crate::call::{Call, EndReason};
use crate::recording::recorder::Recorder;
use crate::recording::Header;
use crate::report::builder::ReportBuilder;
use crate::twilio::Outbound;
use wake::Wake;

mod call_log;
mod finish;
mod inputs;
mod outputs;
mod wake;

use call_log::{log_event, AnomalyCounts};

/// Twilio sends 20 ms frames (~300 B of JSON); anything near this size is not a media message.
const MAX_TWILIO_MESSAGE: usize = 64 * 1024;
/// A peer that takes this long to accept a write (its TCP window shut, the process hung) is
/// gone: the call ends instead of the task waiting forever with both sockets open.
const WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(5);
/// Twilio-bound messages kept while the stream SID is unknown (10 s of frames and marks).
const MAX_HELD: usize = 600;
/// Bytes fed to the Twilio socket before tungstenite writes them without waiting for the flush.
const TWILIO_WRITE_BATCH: usize = 4 * 1024;
/// How long a call that ended before Twilio's `start` waits for it (for its report).
const START_FOR_REPORT: std::time::Duration = std::time::Duration::from_millis(500);

/// `ticket`: set when a softphone ticket opened the socket (see
/// [`super::signature::require_twilio_signature`]); the call must then be the ticket's.
pub async fn upgrade(
    State(s): State<AppState>,
    ticket: Option<Extension<Ticket>>,
    ws: WebSocketUpgrade,
) -> Response {
    let only_call = ticket.map(|Extension(t)| t.call_sid.into_boxed_str());
    // Small read buffer (Twilio's messages are ~300 B, and tungstenite keeps the whole buffer
    // zero-filled, so it is resident per call). Writes: one batch (a delta's frames + mark,
    // ~1.6 KiB in pcmu) goes out in a single write on flush; a larger batch (several deltas
    // taken in one wake-up) is written every `TWILIO_WRITE_BATCH` bytes, because the
    // buffer keeps the capacity it once reached for the rest of the call: a 64 KiB threshold
    // let busy calls keep ~13 KiB each (measured: RSS per call +17 KiB at 250 calls).
    ws.read_buffer_size(2048)
        .write_buffer_size(TWILIO_WRITE_BATCH)
        .max_write_buffer_size(4 * 1024 * 1024)
        .max_message_size(MAX_TWILIO_MESSAGE)
        .max_frame_size(MAX_TWILIO_MESSAGE)
        .on_upgrade(move |socket| {
            // A number per call for the logs; the stream and call SIDs join the span once
            // Twilio's `start` names them. (The call's future is returned, not awaited in an
            // async block: that block would hold a second copy of the socket for the call.)
            let id = s.call_ids.fetch_add(1, Ordering::Relaxed) + 1;
            let span = tracing::info_span!(
                "call",
                n = id,
                call_sid = tracing::field::Empty,
                stream_sid = tracing::field::Empty,
                profile = tracing::field::Empty
            );
            run(socket, s, id, only_call).instrument(span)
        })
}

/// Borrows the state the task already holds (a clone would be kept twice for the whole call).
struct CallGuard<'a>(&'a AppState);
impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.0.active_calls.fetch_sub(1, Ordering::Relaxed);
        self.0.metrics.calls_active.dec();
    }
}

/// The call's task. Not an `async fn`: its body would move the arguments into locals and the
/// future would keep both copies (~500 bytes a call); an `async move` block uses them in place.
#[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see above
fn run(
    mut socket: WebSocket,
    s: AppState,
    n: u64,
    only_call: Option<Box<str>>,
) -> impl std::future::Future<Output = ()> {
    async move {
        if let Some(reason) = refusal(&s) {
            s.metrics
                .calls_refused
                .with_label_values(&["media", reason])
                .inc();
            warn!(
                max_calls = s.cfg.max_calls,
                reason, "refusing media socket (at max_calls, or the drain is over)"
            );
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 1013,
                    reason: "try again later".into(),
                })))
                .await;
            return;
        }
        s.active_calls.fetch_add(1, Ordering::Relaxed);
        s.metrics.calls_active.inc();
        let _guard = CallGuard(&s);
        let mut task = Task::new(&s, socket, n, only_call);
        task.drive().await;
        task.finish().await;
    }
}

/// Why a media socket is refused, if it is. One arriving while the server drains is accepted:
/// its TwiML was served before the drain began, and refusing it would fail a call we already
/// answered. Only once the drain is over (running calls being ended) is it too late.
fn refusal(s: &AppState) -> Option<&'static str> {
    if *s.stop_calls.borrow() {
        Some("draining")
    } else if s.active_calls.load(Ordering::Relaxed) >= s.cfg.max_calls {
        Some("busy")
    } else {
        None
    }
}

/// Everything one call's task holds: the call, its two sockets, and what the shell keeps
/// beside them (the recording, the report, the effects in flight, the write timer).
struct Task<'a> {
    s: &'a AppState,
    socket: WebSocket,
    call: Call,
    opened: Instant,
    live: LiveCall,
    report: ReportBuilder,
    /// With profiles, the session is configured only once `start` (and the profile's setup
    /// lookup) said which settings apply.
    setup: CallSetup,
    /// Recording is the shell's job (the call stays sans-IO): every message on either socket,
    /// as sent or received, with its time since this socket opened. Boxed: recording is off
    /// unless `record_dir` is set, and inline every call's task would reserve the recorder.
    rec: Option<Box<Recorder>>,
    /// The Realtime sockets by generation.
    ups: Links,
    sources: wake::Sources,
    /// Grows to the largest batch seen (a few entries); not reserved up front: every byte of
    /// it is held for the whole call.
    batch: Vec<Wake>,
    /// Once the drain is over the call says goodbye; its sockets close by this time regardless.
    shutdown_at: Option<tokio::time::Instant>,
    /// Commands from Twilio callbacks (answering machine), once `start` named the CallSid.
    mailbox: std::sync::Arc<super::running::Mailbox>,
    registered: super::running::Registered,
    sid_json: Option<String>,
    /// Twilio-bound messages produced before `start` told us the stream SID.
    held: Vec<Outbound>,
    outcome: EndReason,
    /// Each output is rendered here before anything is awaited: an `Output` alive across an
    /// await would be reserved in every call's task for the whole call.
    text: String,
    anomalies: AnomalyCounts,
    /// Tool requests and Twilio REST updates in flight (abandoned if the call ends first).
    effects: effects::Effects,
    timer: WriteTimer,
}

impl<'a> Task<'a> {
    fn new(s: &'a AppState, socket: WebSocket, n: u64, only_call: Option<Box<str>>) -> Task<'a> {
        let opened = Instant::now();
        let live = match &s.console {
            Some(hub) => hub.open(n),
            None => LiveCall::off(),
        };
        let mut call = Call::new(s.call_cfg.clone(), opened);
        if let Some(sid) = only_call {
            call.require_call_sid(sid);
        }
        let setup = CallSetup::new(s);
        let rec = s.cfg.record_dir.as_deref().and_then(|dir| {
            let header = Header::new(&s.call_cfg, RECORDED_BY);
            // Without profiles the settings are final now: nothing is held.
            match Recorder::create(dir, &header, setup.decided(), opened) {
                Ok(r) => Some(Box::new(r)),
                Err(e) => {
                    warn!(error = %e, "cannot record this call");
                    None
                }
            }
        });
        // Generation 1 is dialled now, in parallel with Twilio's `start`.
        let ups = Links::new(s.cfg.clone());
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            call.on_wall_clock(d.as_secs(), opened);
        }
        Task {
            s,
            socket,
            call,
            opened,
            live,
            report: ReportBuilder::new(opened, std::time::SystemTime::now()),
            setup,
            rec,
            ups,
            sources: wake::Sources::new(s.stop_calls.clone()),
            batch: Vec::new(),
            shutdown_at: None,
            mailbox: std::sync::Arc::new(super::running::Mailbox::default()),
            registered: super::running::Registered::default(),
            sid_json: None,
            held: Vec::new(),
            outcome: EndReason::TwilioDisconnected,
            text: String::with_capacity(512),
            anomalies: AnomalyCounts::default(),
            effects: effects::Effects::new(),
            timer: WriteTimer::default(),
        }
    }

    /// The call's loop: write what the call produced, arm its deadline, wait for what wakes,
    /// feed it to the call; until the call ends.
    async fn drive(&mut self) {
        loop {
            let wrote = self.write_outputs().await;
            self.flush(wrote).await;
            if self.call.has_output() && !self.call.is_ended() {
                // A failed flush made the call act (e.g. re-dial): handle that before waiting.
                continue;
            }
            let ok = !self.call.is_ended();
            self.timer
                .flushed(wrote.twilio && ok, wrote.up && ok, &self.s.metrics.latency);
            if self.call.is_ended() {
                self.drain_events();
                return;
            }
            self.arm_deadline();
            self.wait().await;
            let mut batch = std::mem::take(&mut self.batch);
            for wake in batch.drain(..) {
                if self.feed(wake).is_break() {
                    return;
                }
            }
            self.batch = batch;
        }
    }

    /// Makes the timer fire by the call's deadline (and the drain's hard limit).
    fn arm_deadline(&mut self) {
        if let Some(d) = self.call.next_deadline() {
            self.sources.wake_by(tokio::time::Instant::from_std(d));
        }
        if let Some(at) = self.shutdown_at {
            self.sources.wake_by(at);
        }
    }

    /// Waits until something happens, and takes everything that is ready into `batch`.
    async fn wait(&mut self) {
        std::future::poll_fn(|cx| {
            self.sources.poll(
                cx,
                &mut self.socket,
                &mut self.ups,
                &mut self.effects,
                &mut self.setup,
                &self.mailbox,
                &mut self.batch,
            )
        })
        .await;
    }

    /// Writes the recording's header once the call's settings are decided: with profiles, at
    /// `start` or when the setup lookup answered (see [`Recorder::settle`]).
    fn settle_recording(&mut self) {
        if let Some(r) = self.rec.as_mut() {
            if !r.is_settled() && self.setup.decided() {
                r.settle(&Header::new(self.call.config(), RECORDED_BY));
            }
        }
    }
}

const RECORDED_BY: &str = "recorded by callbridge serve --record-dir";
