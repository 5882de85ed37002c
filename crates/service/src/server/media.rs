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
use futures_util::{SinkExt, StreamExt};
use tracing::{info, warn, Instrument};

use super::call_setup::CallSetup;
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
use write::{feed_twilio, Write};

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
        if let Some(reason) = over {
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

        let mut d = Driver::new(&s, n, only_call, Instant::now());
        loop {
            // 1. Write the call's outputs, batching writes into one flush per socket. Each
            // output is rendered into `d.text` before anything is awaited: an `Output` alive
            // across an await would be reserved in every call's task for the whole call.
            let (mut wrote_twilio, mut wrote_realtime) = (false, false);
            while let Some(write) = d.next_write() {
                match write {
                    Write::Nothing => {}
                    Write::Twilio => {
                        feed_twilio(&mut socket, &d.text, &mut d.call).await;
                        wrote_twilio = true;
                    }
                    Write::Up(generation) => {
                        match d.realtime.feed(generation, &d.text, WRITE_STALL).await {
                            Ok(written) => wrote_realtime |= written,
                            Err(loss) => d.upstream_write_failed(generation, loss, "write"),
                        }
                    }
                }
            }
            if wrote_twilio
                && !matches!(
                    tokio::time::timeout(WRITE_STALL, socket.flush()).await,
                    Ok(Ok(()))
                )
            {
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
                d.sources.poll(
                    cx,
                    &mut socket,
                    &mut d.realtime,
                    &mut d.effects,
                    &mut d.setup,
                    &d.mailbox,
                    &mut d.batch,
                )
            })
            .await;
            d.on_wakes();
        }
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
    /// the report's token usage. Raised on purpose each time, with what it bought.
    #[test]
    fn the_call_task_stays_small() {
        let size = returned_size(super::run);
        eprintln!("call task future: {size} bytes");
        assert!(size <= 3712, "call task future: {size} bytes");
    }
}
