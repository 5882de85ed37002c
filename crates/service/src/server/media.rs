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
use tokio_tungstenite::tungstenite::Message as UpMessage;
use tracing::{debug, info, warn, Instrument};

use super::call_setup::CallSetup;
use super::console::LiveCall;
use super::effects;
use super::latency::{Read, WriteTimer};
use super::links::{self, Links, Received};
use super::web::ticket::Ticket;
use super::AppState;
use crate::call::{Call, EndReason, Output, UpstreamEffect};
use crate::realtime::ServerEvent;
use crate::recording::recorder::Recorder;
use crate::recording::{Dir, Header};
use crate::report::builder::ReportBuilder;
use crate::twilio::{Inbound, Outbound};
use wake::Wake;

mod call_log;
mod wake;
mod write;

use call_log::{log_event, AnomalyCounts};
use write::{event_type, feed_twilio, render_twilio, render_up, Write};

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

        let opened = Instant::now();
        let live = match &s.console {
            Some(hub) => hub.open(n),
            None => LiveCall::off(),
        };
        let mut call = Call::new(s.call_cfg.clone(), opened);
        if let Some(sid) = only_call {
            call.require_call_sid(sid);
        }
        let mut report = ReportBuilder::new(opened, std::time::SystemTime::now());
        // With profiles, the session is configured only once `start` (and the profile's setup
        // lookup) said which settings apply.
        let mut setup = CallSetup::new(&s);
        if setup.waits_for_start() {
            call.defer_settings();
        }
        // Recording is the shell's job (the call stays sans-IO): every message on either socket,
        // as sent or received, with its time since this socket opened. Boxed: recording is off
        // unless `record_dir` is set, and inline every call's task would reserve the recorder.
        let mut rec = s.cfg.record_dir.as_deref().and_then(|dir| {
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
        // The Realtime sockets by generation; generation 1 is dialled as the call's first
        // output, before anything is awaited: in parallel with Twilio's `start`.
        let mut ups = Links::new(s.cfg.clone());
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            call.on_wall_clock(d.as_secs(), opened);
        }
        let mut sources = wake::Sources::new(s.stop_calls.clone());
        // Grows to the largest batch seen (a few entries); not reserved up front: every byte of
        // it is held for the whole call.
        let mut batch = Vec::new();
        // Commands from Twilio callbacks (answering machine), once `start` named the CallSid.
        let mailbox = std::sync::Arc::new(super::running::Mailbox::default());
        let mut registered = super::running::Registered::default();
        let mut sid_json: Option<String> = None;
        let mut outcome = EndReason::TwilioDisconnected;
        let mut text = String::with_capacity(512);
        let mut anomalies = AnomalyCounts::default();
        // Tool requests and Twilio REST updates in flight (abandoned if the call ends first).
        let mut effects = effects::Effects::new();
        let mut timer = WriteTimer::default();

        'call: loop {
            // 1. Drain the call's outputs to the sockets, batching writes into one flush each.
            // Each output is rendered into `text` before anything is awaited: an `Output` alive
            // across an await would be reserved in every call's task for the whole call.
            let (mut wrote_tw, mut wrote_up) = (false, false);
            if sid_json.is_none() {
                sid_json = call
                    .stream_sid()
                    .and_then(|sid| serde_json::to_string(sid).ok());
            }
            loop {
                let write = match call.poll_output() {
                    None => break,
                    Some(out) => {
                        timer.output(&out, &s.metrics.latency);
                        match out {
                            Output::ToTwilio(msg) => {
                                if matches!(msg, Outbound::Media(_)) {
                                    report.on_agent_audio(Instant::now);
                                }
                                match &sid_json {
                                    // Not before `start`: the call holds them until then.
                                    None => Write::Nothing,
                                    Some(sid) => {
                                        render_twilio(&s, &mut rec, sid, &msg, &mut text);
                                        Write::Twilio
                                    }
                                }
                            }
                            Output::ToRealtime { generation, event } => {
                                render_up(&s, &call, &ups, &mut rec, &mut text, generation, &event)
                            }
                            Output::Upstream(effect) => match effect {
                                UpstreamEffect::ConnectUpstream { generation } => {
                                    debug!(generation, "dialling a new upstream session");
                                    ups.dial(generation);
                                    sources.upstream_changed();
                                    Write::Nothing
                                }
                                UpstreamEffect::CloseUpstream { generation } => {
                                    if ups.close(generation) {
                                        if let Some(r) = rec.as_mut() {
                                            r.upstream_close(
                                                Dir::RealtimeOut,
                                                generation,
                                                Some(1005),
                                                "",
                                            );
                                        }
                                    }
                                    Write::Nothing
                                }
                            },
                            Output::Event(ev) => {
                                live.on_event(&ev);
                                report.on_event(&ev, Instant::now());
                                log_event(&s, &mut anomalies, ev);
                                Write::Nothing
                            }
                            Output::Hangup(reason) => {
                                outcome = reason;
                                Write::Nothing
                            }
                            Output::Effect { id, effect } => {
                                effects::spawn(&s, &mut effects, id, effect);
                                sources.others_changed();
                                Write::Nothing
                            }
                        }
                    }
                };
                match write {
                    Write::Nothing => {}
                    Write::Twilio => {
                        feed_twilio(&mut socket, &text, &mut call).await;
                        wrote_tw = true;
                    }
                    Write::Up(generation) => match ups.feed(generation, &text, WRITE_STALL).await {
                        Ok(written) => wrote_up |= written,
                        Err(loss) => {
                            warn!(generation, %loss, "upstream write failed");
                            call.on_upstream_lost(generation, loss, Instant::now());
                        }
                    },
                }
            }
            if wrote_tw
                && !matches!(
                    tokio::time::timeout(WRITE_STALL, socket.flush()).await,
                    Ok(Ok(()))
                )
            {
                warn!("flush to Twilio failed or stalled");
                call.on_twilio_closed(Instant::now());
            }
            for (generation, loss) in ups.flush(WRITE_STALL).await {
                warn!(generation, %loss, "upstream flush failed");
                call.on_upstream_lost(generation, loss, Instant::now());
            }
            if call.has_output() && !call.is_ended() {
                // A failed flush made the call act (e.g. re-dial): handle that before waiting.
                continue 'call;
            }
            let ok = !call.is_ended();
            timer.flushed(wrote_tw && ok, wrote_up && ok, &s.metrics.latency);
            if call.is_ended() {
                // Outputs produced by the failed writes above are only events and the hangup.
                while let Some(out) = call.poll_output() {
                    if let Output::Event(ev) = out {
                        live.on_event(&ev);
                        report.on_event(&ev, Instant::now());
                        log_event(&s, &mut anomalies, ev);
                    }
                }
                break 'call;
            }

            // 2. Wait until something happens, then take everything that is ready.
            if let Some(d) = call.next_deadline() {
                sources.wake_by(tokio::time::Instant::from_std(d));
            }
            std::future::poll_fn(|cx| {
                sources.poll(
                    cx,
                    &mut socket,
                    &mut ups,
                    &mut effects,
                    &mut setup,
                    &mailbox,
                    &mut batch,
                )
            })
            .await;
            for wake in batch.drain(..) {
                match wake {
                    Wake::Twilio(msg) => {
                        let now = Instant::now();
                        match msg {
                            Some(Ok(Message::Text(t))) => {
                                s.metrics.twilio_messages_in.inc();
                                if let Some(r) = rec.as_mut() {
                                    r.message(Dir::TwilioIn, t.as_str());
                                }
                                match Inbound::parse(t.as_str()) {
                                    Ok(m) => {
                                        let start = matches!(m, Inbound::Start { .. });
                                        let mut settings = None;
                                        if let Inbound::Start { stream_sid, start } = &m {
                                            report.on_start(stream_sid, start);
                                            registered.add(
                                                &s.running,
                                                start.call_sid.as_deref(),
                                                &mailbox,
                                            );
                                            settings = setup.on_start(&s, start, &mut report);
                                            // A setup lookup may have started.
                                            sources.others_changed();
                                        }
                                        let mark = matches!(m, Inbound::Mark { .. });
                                        timer.read(
                                            match m {
                                                Inbound::Media { .. } => Read::TwilioMedia,
                                                _ => Read::Other,
                                            },
                                            now,
                                        );
                                        call.on_twilio(m, now);
                                        if start && setup.decided() {
                                            call.settings_decided(settings.take(), now);
                                            settle_recording(&mut rec, &setup, &call);
                                        }
                                        if mark {
                                            timer.mark_echoed(
                                                call.playback(),
                                                now,
                                                &s.metrics.latency,
                                            );
                                        }
                                    }
                                    Err(e) => {
                                        s.metrics
                                            .anomalies
                                            .with_label_values(&["bad_twilio_json"])
                                            .inc();
                                        warn!(error = %e, len = t.len(), "unparseable Twilio message ignored");
                                    }
                                }
                            }
                            Some(Ok(Message::Binary(b))) => {
                                s.metrics
                                    .anomalies
                                    .with_label_values(&["twilio_binary"])
                                    .inc();
                                warn!(len = b.len(), "binary frame from Twilio ignored");
                            }
                            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                            Some(Ok(Message::Close(frame))) => {
                                if let Some(r) = rec.as_mut() {
                                    let (code, reason) = frame.map_or((1005, String::new()), |f| {
                                        (f.code, f.reason.to_string())
                                    });
                                    r.close(Dir::TwilioIn, Some(code), &reason);
                                }
                                call.on_twilio_closed(now)
                            }
                            None => {
                                if let Some(r) = rec.as_mut() {
                                    r.close(Dir::TwilioIn, None, "");
                                }
                                call.on_twilio_closed(now)
                            }
                            Some(Err(e)) => {
                                warn!(error = %e, "Twilio socket error");
                                if let Some(r) = rec.as_mut() {
                                    r.close(Dir::TwilioIn, None, "");
                                }
                                call.on_twilio_closed(now);
                            }
                        }
                    }
                    Wake::Upstream(generation, received) => {
                        let now = Instant::now();
                        match received {
                            Received::Dialled(Ok(()), took) => {
                                s.metrics
                                    .upstream_connect_seconds
                                    .observe(took.as_secs_f64());
                                debug!(
                                    generation,
                                    ms = took.as_millis() as u64,
                                    "upstream connected"
                                );
                                // With profiles, the call keeps it unconfigured until its
                                // settings are decided.
                                call.on_upstream_open(generation, now);
                            }
                            Received::Dialled(Err(e), _) => {
                                warn!(generation, error = %e, "upstream connection failed");
                                let loss = links::loss_of(&e);
                                if let Some(r) = rec.as_mut() {
                                    let status = match loss {
                                        crate::call::UpstreamLoss::Refused { status } => {
                                            Some(status)
                                        }
                                        _ => None,
                                    };
                                    r.dial_failed(generation, status);
                                }
                                call.on_upstream_lost(generation, loss, now);
                            }
                            Received::Message(UpMessage::Text(t)) => {
                                s.metrics.realtime_messages_in.inc();
                                if let Some(r) = rec.as_mut() {
                                    r.upstream_message(Dir::RealtimeIn, generation, t.as_str());
                                }
                                match ServerEvent::parse(t.as_str()) {
                                    Ok(ServerEvent::Unknown) => {
                                        // New or uninteresting event types: fine, but visible at debug.
                                        if tracing::enabled!(tracing::Level::DEBUG) {
                                            debug!(
                                                event = event_type(t.as_str()),
                                                "Realtime event ignored"
                                            );
                                        }
                                    }
                                    Ok(ev) => {
                                        if matches!(ev, ServerEvent::SpeechStopped { .. }) {
                                            report.on_caller_turn_end(now);
                                        }
                                        timer.read(
                                            match ev {
                                                ServerEvent::AudioDelta(_) => Read::AudioDelta,
                                                _ => Read::Other,
                                            },
                                            now,
                                        );
                                        call.on_realtime(generation, ev, now)
                                    }
                                    Err(e) => {
                                        s.metrics
                                            .anomalies
                                            .with_label_values(&["bad_realtime_json"])
                                            .inc();
                                        warn!(error = %e, len = t.len(), "unparseable Realtime event ignored");
                                    }
                                }
                            }
                            Received::Message(UpMessage::Binary(b)) => {
                                s.metrics
                                    .anomalies
                                    .with_label_values(&["realtime_binary"])
                                    .inc();
                                warn!(len = b.len(), "binary frame from the Realtime API ignored");
                            }
                            Received::Message(_) => {}
                            Received::Lost(loss) => {
                                if let Some(r) = rec.as_mut() {
                                    match &loss {
                                        crate::call::UpstreamLoss::Closed { code, reason } => r
                                            .upstream_close(
                                                Dir::RealtimeIn,
                                                generation,
                                                Some(*code),
                                                reason,
                                            ),
                                        _ => {
                                            r.upstream_close(Dir::RealtimeIn, generation, None, "")
                                        }
                                    }
                                }
                                call.on_upstream_lost(generation, loss, now);
                            }
                        }
                    }
                    Wake::Effect(done) => match done {
                        Ok((id, result)) => call.on_effect_done(id, result, Instant::now()),
                        Err(e) => warn!(error = %e, "an effect task failed"),
                    },
                    Wake::Lookup(answer) => {
                        let settings = setup.on_lookup(*answer, &mut report);
                        let now = Instant::now();
                        if setup.rejected {
                            // Said once the session is configured (just below, if it is open).
                            call.reject_politely(now);
                        }
                        call.settings_decided(settings, now);
                        settle_recording(&mut rec, &setup, &call);
                    }
                    Wake::Timer => call.on_tick(Instant::now()),
                    Wake::Command(super::running::CallCommand::MachineAnswered) => {
                        call.on_machine_answered(Instant::now())
                    }
                    Wake::Drain => call.on_drain(
                        s.cfg.drain_goodbye.clone(),
                        s.cfg.drain_goodbye_timeout,
                        Instant::now(),
                    ),
                }
            }
        }

        // A call can end before Twilio's `start` was read (an upstream refused at once): wait a
        // moment for it, so that the report names the call.
        if !report.has_start() && !matches!(outcome, EndReason::NoStart | EndReason::Shutdown) {
            // Futures awaited once, at the end, are boxed: inline, the largest of them would
            // be reserved in every call's task for the whole call.
            let _ = Box::pin(tokio::time::timeout(START_FOR_REPORT, async {
                while let Some(Ok(Message::Text(t))) = socket.next().await {
                    if let Ok(Inbound::Start { stream_sid, start }) = Inbound::parse(t.as_str()) {
                        report.on_start(&stream_sid, &start);
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
                reason: outcome.as_str().into(),
            })))
            .await;
        if let (Some(r), Ok(())) = (rec.as_mut(), &closed_tw) {
            r.close(Dir::TwilioOut, Some(1000), outcome.as_str());
        }
        for generation in Box::pin(ups.close_all()).await {
            if let Some(r) = rec.as_mut() {
                r.upstream_close(Dir::RealtimeOut, generation, Some(1005), "");
            }
        }
        if let Some(r) = rec.take() {
            match Box::pin(r.finish(call.stream_sid())).await {
                Ok(path) => {
                    info!(path = %path.display(), "call recorded");
                    report.add_recording("file", path.display().to_string());
                }
                Err(e) => warn!(error = %e, "recording failed"),
            }
        }
        live.ended(outcome.as_str());
        let secs = opened.elapsed().as_secs_f64();
        s.metrics
            .calls_total
            .with_label_values(&[outcome.as_str()])
            .inc();
        s.metrics
            .calls_by_profile_total
            .with_label_values(&[setup.profile.as_deref().unwrap_or("none"), outcome.as_str()])
            .inc();
        s.metrics.call_duration_seconds.observe(secs);
        info!(
            outcome = outcome.as_str(),
            duration_s = format!("{secs:.1}"),
            stream_sid = call.stream_sid().unwrap_or("-"),
            "call ended"
        );
        // One report per call, whatever ended it; on disk before this task ends.
        report.set_tool_calls(call.tool_calls(), call.transfer_targets());
        report.use_conversation(call.conversation().entries());
        // Boxed: awaited once, at the end; inline it would be reserved in the task all call long.
        let report = Box::new(report.finish(outcome.as_str(), Instant::now()));
        Box::pin(
            s.reports
                .submit(setup.report_url.as_deref(), &report.report_id, &report),
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
