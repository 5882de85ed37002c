//! The call's outputs out of the task: each rendered into the task's text buffer, then fed to
//! its socket; one flush per socket per batch. Twilio-bound messages wait for the stream SID.

use std::time::Instant;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use tracing::{debug, warn};

use super::{log_event, Task, MAX_HELD, WRITE_STALL};
use crate::call::{Call, CallEvent, Output, UpstreamEffect};
use crate::realtime::{ClientEvent, Dialect};
use crate::recording::recorder::Recorder;
use crate::recording::Dir;
use crate::server::links::Links;
use crate::server::{effects, AppState};
use crate::twilio::Outbound;

/// Which sockets were fed in one pass (and need a flush).
#[derive(Clone, Copy, Default)]
pub(super) struct Wrote {
    pub(super) twilio: bool,
    pub(super) up: bool,
}

/// What an output leaves for the shell to write, already rendered into the task's `text`.
enum Write {
    Nothing,
    /// One message to Twilio.
    Twilio,
    /// One event to the upstream socket of this generation.
    Up(u64),
}

impl Task<'_> {
    /// Feeds every output the call has to its socket (flushed by [`Task::flush`]).
    pub(super) async fn write_outputs(&mut self) -> Wrote {
        let mut wrote = Wrote::default();
        if self.sid_json.is_none() {
            self.sid_json = self
                .call
                .stream_sid()
                .and_then(|sid| serde_json::to_string(sid).ok());
        }
        wrote.twilio |= self.release_held().await;
        while let Some(out) = self.call.poll_output() {
            self.timer.output(&out, &self.s.metrics.latency);
            match self.render(out) {
                Write::Nothing => {}
                Write::Twilio => {
                    feed_twilio(&mut self.socket, &self.text, &mut self.call).await;
                    wrote.twilio = true;
                }
                Write::Up(generation) => {
                    match self.ups.feed(generation, &self.text, WRITE_STALL).await {
                        Ok(written) => wrote.up |= written,
                        Err(loss) => {
                            warn!(generation, %loss, "upstream write failed");
                            self.call.on_upstream_lost(generation, loss, Instant::now());
                        }
                    }
                }
            }
        }
        wrote
    }

    /// What was held before `start` goes out as soon as `start` named the stream (not with
    /// the next message: a greeting made before `start` may be all there is), in order, each
    /// rendered just before its write.
    async fn release_held(&mut self) -> bool {
        let mut wrote = false;
        while let Some(sid) = self.sid_json.as_deref().filter(|_| !self.held.is_empty()) {
            render_twilio(
                self.s,
                &mut self.rec,
                sid,
                &self.held.remove(0),
                &mut self.text,
            );
            feed_twilio(&mut self.socket, &self.text, &mut self.call).await;
            wrote = true;
        }
        wrote
    }

    /// Renders one output into `text`, or does what it asks that is not a write.
    fn render(&mut self, out: Output) -> Write {
        match out {
            Output::ToTwilio(msg) => {
                if matches!(msg, Outbound::Media(_)) {
                    self.report.on_agent_audio(Instant::now);
                }
                match &self.sid_json {
                    // Only a greeting can get here before Twilio's `start`; bounded so a
                    // stream that never starts costs no memory.
                    None => {
                        if self.held.len() < MAX_HELD {
                            self.held.push(msg);
                        }
                        Write::Nothing
                    }
                    Some(sid) => {
                        render_twilio(self.s, &mut self.rec, sid, &msg, &mut self.text);
                        Write::Twilio
                    }
                }
            }
            Output::ToRealtime { generation, event } => render_up(
                self.s,
                self.call.dialect(),
                &self.ups,
                &mut self.rec,
                &mut self.text,
                generation,
                &event,
            ),
            Output::Upstream(effect) => {
                self.upstream_effect(effect);
                Write::Nothing
            }
            Output::Event(ev) => {
                self.on_event(ev);
                Write::Nothing
            }
            Output::Hangup(reason) => {
                self.outcome = reason;
                Write::Nothing
            }
            Output::Effect { id, effect } => {
                effects::spawn(self.s, &mut self.effects, id, effect);
                self.sources.others_changed();
                Write::Nothing
            }
        }
    }

    fn upstream_effect(&mut self, effect: UpstreamEffect) {
        match effect {
            UpstreamEffect::ConnectUpstream { generation } => {
                debug!(generation, "dialling a new upstream session");
                self.ups.dial(generation);
                self.sources.upstream_changed();
            }
            UpstreamEffect::CloseUpstream { generation } => {
                if self.ups.close(generation) {
                    if let Some(r) = self.rec.as_mut() {
                        r.upstream_close(Dir::RealtimeOut, generation, Some(1005), "");
                    }
                }
            }
        }
    }

    /// A call event: to the live console, the report and the log.
    fn on_event(&mut self, ev: CallEvent) {
        self.live.on_event(&ev);
        self.report.on_event(&ev, Instant::now());
        log_event(self.s, &mut self.anomalies, ev);
    }

    /// Flushes the sockets fed; a flush that fails or stalls is a loss for the call.
    pub(super) async fn flush(&mut self, wrote: Wrote) {
        if wrote.twilio
            && !matches!(
                tokio::time::timeout(WRITE_STALL, self.socket.flush()).await,
                Ok(Ok(()))
            )
        {
            warn!("flush to Twilio failed or stalled");
            self.call.on_twilio_closed(Instant::now());
        }
        for (generation, loss) in self.ups.flush(WRITE_STALL).await {
            warn!(generation, %loss, "upstream flush failed");
            self.call.on_upstream_lost(generation, loss, Instant::now());
        }
    }

    /// The call ended: the outputs produced by failed writes are only events and the hangup.
    pub(super) fn drain_events(&mut self) {
        while let Some(out) = self.call.poll_output() {
            if let Output::Event(ev) = out {
                self.on_event(ev);
            }
        }
    }
}

/// Renders a Twilio-bound message into `text` (and the recording).
fn render_twilio(
    s: &AppState,
    rec: &mut Option<Box<Recorder>>,
    sid_json: &str,
    msg: &Outbound,
    text: &mut String,
) {
    msg.write_json(sid_json, text);
    if let Some(r) = rec.as_mut() {
        r.message(Dir::TwilioOut, text);
    }
    s.metrics.twilio_messages_out.inc();
}

/// Feeds one rendered message to Twilio's socket (flushed once per batch, later); a write that
/// fails or stalls ends the call's Twilio side.
async fn feed_twilio(socket: &mut WebSocket, text: &str, call: &mut Call) {
    let fed = tokio::time::timeout(WRITE_STALL, socket.feed(Message::Text(text.into()))).await;
    if !matches!(fed, Ok(Ok(()))) {
        warn!("write to Twilio failed or stalled");
        call.on_twilio_closed(Instant::now());
    }
}

/// Renders a Realtime event into `text` (and the recording) for the socket of `generation`,
/// or drops it when that socket is gone.
fn render_up(
    s: &AppState,
    dialect: Dialect,
    ups: &Links,
    rec: &mut Option<Box<Recorder>>,
    text: &mut String,
    generation: u64,
    ev: &ClientEvent,
) -> Write {
    if !ups.has(generation) {
        // Between a drop and the next session the call buffers audio itself; anything else
        // for a socket that is gone is dropped here.
        debug!(
            generation,
            event = ev.name(),
            "upstream event with no socket; dropped"
        );
        return Write::Nothing;
    }
    ev.write_json(dialect, text);
    if let Some(r) = rec.as_mut() {
        r.upstream_message(Dir::RealtimeOut, generation, text);
    }
    s.metrics.realtime_messages_out.inc();
    Write::Up(generation)
}
