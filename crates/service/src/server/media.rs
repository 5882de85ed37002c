//! `GET /media`: Twilio's Media Streams WebSocket, one task per call.
//!
//! The task pumps: Twilio messages and Realtime events into the [`Call`], the call's outputs
//! out to the two sockets, a timer for the call's deadline. The upstream is dialled as soon as
//! the media socket opens, in parallel with Twilio's `start`; the call buffers caller audio
//! until it is ready. A call warmed up at the webhook ([`super::prewarm`]) runs the same task
//! from the webhook on, with no Twilio socket until one claims it at `start`.

use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use futures_util::{SinkExt, StreamExt};
use tracing::{info, warn, Instrument};

use super::call_setup::CallSetup;
use super::prewarm::{self, Warm};
use super::web::ticket::Ticket;
use super::AppState;
use crate::call::{Call, EndReason};
use crate::recording::recorder::Recorder;
use crate::recording::{Dir, Header};
use crate::report::usage::price_for;
use crate::twilio::Inbound;

mod call_log;
mod driver;
mod wake;
mod write;

use driver::Driver;
use wake::Wake;
use write::{feed_twilio, Write};

/// A Twilio socket's next item, as the call's task reads it (`None`: it ended).
pub type TwilioItem = Option<Result<Message, axum::Error>>;

/// A media socket handed over to the warm call its `start` claimed, with what was read of it.
pub struct Handoff {
    socket: WebSocket,
    first: Vec<TwilioItem>,
}

/// How a call's task begins.
pub enum Entry {
    /// Twilio's media socket opened; `Some`: a softphone ticket's call, which must be that one.
    Media(Option<Box<str>>),
    /// The webhook warmed the call up; its media socket comes later.
    Warm(Box<Warm>),
}

/// Twilio sends 20 ms frames (~300 B of JSON); anything near this size is not a media message.
const MAX_TWILIO_MESSAGE: usize = 64 * 1024;
/// A peer that takes this long to accept a write (its TCP window shut, the process hung) is
/// gone: the call ends instead of the task waiting forever with both sockets open.
const WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(5);
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
            run(Some(socket), s, id, Entry::Media(only_call)).instrument(span)
        })
}

/// Starts a call's task at the webhook, before its media socket: counted as a running call
/// (toward `max_calls` and the cluster's cap) from now on.
pub fn spawn_warm(s: &AppState, warm: Warm) {
    s.active_calls.fetch_add(1, Ordering::Relaxed);
    s.metrics.calls_active.inc();
    let id = s.call_ids.fetch_add(1, Ordering::Relaxed) + 1;
    let span = tracing::info_span!(
        "call",
        n = id,
        call_sid = warm.call_sid.as_str(),
        stream_sid = tracing::field::Empty,
        profile = tracing::field::Empty
    );
    tokio::spawn(run(None, s.clone(), id, Entry::Warm(Box::new(warm))).instrument(span));
}

/// A media socket opened: handed over to the warm call its `start` claims (`None`), or admitted
/// as a call of its own (`Some`: what was read of it looking for `start`), or refused (`None`).
async fn open(
    socket: &mut Option<WebSocket>,
    s: &AppState,
    may_be_warm: bool,
) -> Option<Vec<TwilioItem>> {
    let mut first = Vec::new();
    if may_be_warm && !hand_over(socket, s, &mut first).await {
        return None;
    }
    admit(socket.as_mut()?, s).await.then_some(first)
}

/// A media socket that is no warm call's is admitted as a call of its own, unless the server
/// is full or its drain is over. False: refused (and closed).
async fn admit(socket: &mut WebSocket, s: &AppState) -> bool {
    // A media socket arriving while the server drains is accepted: its TwiML was served before
    // the drain began, and refusing it would fail a call we already answered. Only once the
    // drain is over (running calls being ended) is it too late.
    let over = if *s.stop_calls.borrow() {
        Some("draining")
    } else if s.active_calls.load(Ordering::Relaxed) >= s.cfg.max_calls {
        Some("busy")
    } else {
        None
    };
    let Some(reason) = over else {
        s.active_calls.fetch_add(1, Ordering::Relaxed);
        s.metrics.calls_active.inc();
        return true;
    };
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
    false
}

/// A media socket's `start` may claim a warm call: then the socket is handed over to it
/// (taken out of `socket`) and false is returned. Otherwise it stays, and `first` holds what
/// was read of it.
async fn hand_over(
    socket: &mut Option<WebSocket>,
    s: &AppState,
    first: &mut Vec<TwilioItem>,
) -> bool {
    if !s.cfg.prewarm.on {
        return true;
    }
    if let (false, Some(sock)) = (s.warm.is_empty(), socket.as_mut()) {
        *first = prewarm::read_to_start(sock).await;
        if let Some(claim) = prewarm::claim(s, first) {
            let Some(sock) = socket.take() else {
                return false;
            };
            let handoff = Handoff {
                socket: sock,
                first: std::mem::take(first),
            };
            match claim.send(handoff) {
                Ok(()) => {
                    prewarm::count(s, "used");
                    info!("media socket handed over to its warm call");
                    return false;
                }
                // The warm call ended just now: this socket runs as a call of its own.
                Err(back) => {
                    *first = back.first;
                    *socket = Some(back.socket);
                }
            }
        }
    }
    prewarm::count(s, "not_here");
    true
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
    mut socket: Option<WebSocket>,
    s: AppState,
    n: u64,
    entry: Entry,
) -> impl std::future::Future<Output = ()> {
    async move {
        // A warm call was counted as running by the webhook ([`spawn_warm`]).
        let first = match &entry {
            Entry::Warm(_) => Vec::new(),
            Entry::Media(only_call) => {
                match Box::pin(open(&mut socket, &s, only_call.is_none())).await {
                    Some(first) => first,
                    None => return,
                }
            }
        };
        let _guard = CallGuard(&s);
        let (mut warm, mut d) = match entry {
            Entry::Warm(w) => {
                let mut d = Driver::new(&s, n, Some(w.call_sid.as_str().into()), Instant::now());
                d.prewarm(&w.start);
                (Some(w), d)
            }
            Entry::Media(only_call) => (None, Driver::new(&s, n, only_call, Instant::now())),
        };
        // What a media socket read looking for `start` goes to the call first.
        if !first.is_empty() {
            d.batch.extend(first.into_iter().map(Wake::Twilio));
            d.on_wakes();
        }
        let mut expired = false;
        loop {
            // 1. Write the call's outputs, batching writes into one flush per socket. Each
            // output is rendered into `d.text` before anything is awaited: an `Output` alive
            // across an await would be reserved in every call's task for the whole call.
            let (mut wrote_twilio, mut wrote_realtime) = (false, false);
            while let Some(write) = d.next_write() {
                match write {
                    Write::Nothing => {}
                    Write::Twilio => {
                        // Only after `start`, which only a socket brings.
                        if let Some(socket) = socket.as_mut() {
                            feed_twilio(socket, &d.text, &mut d.call).await;
                            wrote_twilio = true;
                        }
                    }
                    Write::Up(generation) => {
                        match d.realtime.feed(generation, &d.text, WRITE_STALL).await {
                            Ok(written) => wrote_realtime |= written,
                            Err(loss) => d.upstream_write_failed(generation, loss, "write"),
                        }
                    }
                }
            }
            let flushed = match socket.as_mut() {
                Some(socket) if wrote_twilio => {
                    matches!(
                        tokio::time::timeout(WRITE_STALL, socket.flush()).await,
                        Ok(Ok(()))
                    )
                }
                _ => true,
            };
            if !flushed {
                warn!("flush to Twilio failed or stalled");
                d.call.on_twilio_closed(Instant::now());
            }
            for (generation, loss) in d.realtime.flush(WRITE_STALL).await {
                d.upstream_write_failed(generation, loss, "flush");
            }
            if d.call.has_output() && !d.call.is_ended() {
                // A failed flush made the call act (e.g. re-dial): handle that before waiting.
                continue;
            }
            let ok = !d.call.is_ended();
            d.timer
                .flushed(wrote_twilio && ok, wrote_realtime && ok, &s.metrics.latency);
            if d.call.is_ended() {
                d.take_last_events();
                break;
            }

            // 2. Wait until something happens, then hand everything that is ready to the call.
            d.arm_deadline();
            std::future::poll_fn(|cx| {
                if let Some(w) = warm.as_mut() {
                    if let Poll::Ready(claimed) = w.poll_claim(cx) {
                        match claimed {
                            Some(h) => {
                                socket = Some(h.socket);
                                d.batch.extend(h.first.into_iter().map(Wake::Twilio));
                            }
                            None => expired = true,
                        }
                        warm = None;
                        if expired {
                            return Poll::Ready(());
                        }
                    }
                }
                d.sources.poll(
                    cx,
                    socket.as_mut(),
                    &mut d.realtime,
                    &mut d.effects,
                    &mut d.setup,
                    &d.mailbox,
                    &mut d.batch,
                )
            })
            .await;
            if expired {
                break;
            }
            d.on_wakes();
            if socket.is_none() && *s.stop_calls.borrow() {
                // The drain is over: a warm call nobody claimed is not kept for its socket.
                break;
            }
        }
        if socket.is_none() {
            match warm.take() {
                Some(w) if !w.withdraw() => {
                    // Claimed just as it gave up: the call goes on to its end with the socket.
                    if let Some(h) = Box::pin(w.handoff()).await {
                        socket = Some(h.socket);
                        d.batch.extend(h.first.into_iter().map(Wake::Twilio));
                        d.on_wakes();
                    }
                }
                _ => {}
            }
        }
        let Some(socket) = socket.as_mut() else {
            Box::pin(d.close_unclaimed(expired)).await;
            return;
        };
        // A call can end before Twilio's `start` was read (an upstream refused at once): wait a
        // moment for it, so that the report names the call.
        if !d.report.has_start() && !matches!(d.outcome, EndReason::NoStart | EndReason::Shutdown) {
            // Futures awaited once, at the end, are boxed: inline, the largest of them would
            // be reserved in every call's task for the whole call.
            let _ = Box::pin(tokio::time::timeout(START_FOR_REPORT, async {
                while let Some(Ok(Message::Text(t))) = socket.next().await {
                    if let Ok(Inbound::Start { stream_sid, start }) = Inbound::parse(t.as_str()) {
                        d.report.on_start(&stream_sid, &start);
                        return;
                    }
                }
            }))
            .await;
        }

        // 3. Close both sides. Closing Twilio's socket makes Twilio continue with the TwiML after
        // </Connect> (the apology), so a caller whose upstream failed never sits in dead air.
        let closed_tw = socket
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: d.outcome.as_str().into(),
            })))
            .await;
        if let (Some(r), Ok(())) = (d.rec.as_mut(), &closed_tw) {
            r.close(Dir::TwilioOut, Some(1000), d.outcome.as_str());
        }
        for generation in Box::pin(d.realtime.close_all()).await {
            if let Some(r) = d.rec.as_mut() {
                r.upstream_close(Dir::RealtimeOut, generation, Some(1005), "");
            }
        }
        if let Some(r) = d.rec.take() {
            match Box::pin(r.finish(d.call.stream_sid())).await {
                Ok(path) => {
                    info!(path = %path.display(), "call recorded");
                    d.report.add_recording("file", path.display().to_string());
                }
                Err(e) => warn!(error = %e, "recording failed"),
            }
        }
        d.count_outcome();
        // One report per call, whatever ended it; on disk before this task ends. Boxed:
        // awaited once, at the end; inline it would be reserved in the task all call long.
        d.complete_report();
        d.live.ended(d.outcome.as_str());
        let mut report = Box::new(d.report.finish(d.outcome.as_str(), Instant::now()));
        report.set_cost(price_for(&s.cfg, d.call.config().session.model.as_deref()));
        let analysis = d
            .setup
            .profile
            .as_deref()
            .and_then(|p| s.cfg.profiles.by_name.get(p));
        if let Some(a) = analysis.and_then(|p| p.analysis.as_deref()) {
            Box::pin(crate::report::analysis::analyse(
                &s.http,
                &s.cfg,
                a,
                &mut report,
            ))
            .await;
        }
        Box::pin(
            s.reports
                .submit(d.setup.report_url.as_deref(), &report.report_id, &report),
        )
        .await;
    }
}

const RECORDED_BY: &str = "recorded by callbridge serve --record-dir";

/// Writes the recording's header once the call's settings are decided: with profiles, at
/// `start` or when the setup lookup answered (see [`Recorder::settle`]).
fn settle_recording(rec: &mut Option<Box<Recorder>>, setup: &CallSetup, call: &Call) {
    if let Some(r) = rec.as_mut() {
        if !r.is_settled() && setup.decided() {
            r.settle(&Header::new(call.config(), RECORDED_BY));
        }
    }
}

#[cfg(test)]
mod tests {
    /// The size of what `f` returns, without calling it.
    fn returned_size<A, B, C, D, R>(_: fn(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// The call's task is held for the whole call, once per call: its size is memory per call
    /// (see the comments in `run`). Printed, and bounded so that growing it is a decision:
    /// 3488 bytes before the task became a driver (issue 19), 3512 after; 3616 with the
    /// state the silence clock, MCP calls and the 2026 settings added to the call, 3640 with
    /// the report's token usage; 3704 with prewarm (a warm call's claim, a Twilio socket that comes
    /// later); 3832 once the agent's keys (send_dtmf), per-profile audio format and dialect,
    /// at_ms timing and confirmed barge-in (its state is boxed; its hooks are not) joined the
    /// call in one session (issues 21–23). Raised on purpose each time, with what it bought.
    #[test]
    fn the_call_task_stays_small() {
        let size = returned_size(super::run);
        eprintln!("call task future: {size} bytes");
        assert!(size <= 3840, "call task future: {size} bytes");
    }
}
