//! What woke the task, fed to the call: Twilio's messages, the upstream sockets, effects
//! done, the setup lookup, the timer, callbacks and the drain. Each is stamped with the time
//! it was read; the call decides what it means.

use std::ops::ControlFlow;
use std::time::Instant;

use axum::extract::ws::Message;
use tokio_tungstenite::tungstenite::Message as UpMessage;
use tracing::{debug, warn};

use super::wake::Wake;
use super::Task;
use crate::call::{EndReason, UpstreamLoss};
use crate::realtime::ServerEvent;
use crate::recording::Dir;
use crate::server::call_setup::SetupAnswer;
use crate::server::latency::Read;
use crate::server::links::{self, Received};
use crate::server::running::CallCommand;
use crate::twilio::{Inbound, StartMeta};

impl Task<'_> {
    /// Feeds one thing that woke the task to the call. `Break`: the call's time is up (the
    /// drain's hard limit passed).
    pub(super) fn feed(&mut self, wake: Wake) -> ControlFlow<()> {
        match wake {
            Wake::Twilio(msg) => self.on_twilio(msg),
            Wake::Upstream(generation, received) => self.on_upstream(generation, received),
            Wake::Effect(done) => match done {
                Ok((id, result)) => self.call.on_effect_done(id, result, Instant::now()),
                Err(e) => warn!(error = %e, "an effect task failed"),
            },
            Wake::Lookup(answer) => self.on_lookup(*answer),
            Wake::Timer => {
                if self
                    .shutdown_at
                    .is_some_and(|at| tokio::time::Instant::now() >= at)
                {
                    self.outcome = EndReason::Shutdown;
                    return ControlFlow::Break(());
                }
                self.call.on_tick(Instant::now());
            }
            Wake::Command(CallCommand::MachineAnswered) => {
                self.call.on_machine_answered(Instant::now())
            }
            Wake::Drain => {
                let wait = self.s.cfg.drain_goodbye_timeout;
                self.call.end_after_heard(
                    self.s.cfg.drain_goodbye.clone(),
                    EndReason::Shutdown,
                    wait,
                    Instant::now(),
                );
                self.shutdown_at =
                    Some(tokio::time::Instant::now() + wait + crate::server::drain::GOODBYE_MARGIN);
            }
        }
        ControlFlow::Continue(())
    }

    fn on_twilio(&mut self, msg: Option<Result<Message, axum::Error>>) {
        let now = Instant::now();
        match msg {
            Some(Ok(Message::Text(t))) => self.on_twilio_text(t.as_str(), now),
            Some(Ok(Message::Binary(b))) => {
                self.s
                    .metrics
                    .anomalies
                    .with_label_values(&["twilio_binary"])
                    .inc();
                warn!(len = b.len(), "binary frame from Twilio ignored");
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(frame))) => {
                if let Some(r) = self.rec.as_mut() {
                    let (code, reason) =
                        frame.map_or((1005, String::new()), |f| (f.code, f.reason.to_string()));
                    r.close(Dir::TwilioIn, Some(code), &reason);
                }
                self.call.on_twilio_closed(now)
            }
            None => {
                if let Some(r) = self.rec.as_mut() {
                    r.close(Dir::TwilioIn, None, "");
                }
                self.call.on_twilio_closed(now)
            }
            Some(Err(e)) => {
                warn!(error = %e, "Twilio socket error");
                if let Some(r) = self.rec.as_mut() {
                    r.close(Dir::TwilioIn, None, "");
                }
                self.call.on_twilio_closed(now);
            }
        }
    }

    fn on_twilio_text(&mut self, t: &str, now: Instant) {
        self.s.metrics.twilio_messages_in.inc();
        if let Some(r) = self.rec.as_mut() {
            r.message(Dir::TwilioIn, t);
        }
        let m = match Inbound::parse(t) {
            Ok(m) => m,
            Err(e) => {
                self.s
                    .metrics
                    .anomalies
                    .with_label_values(&["bad_twilio_json"])
                    .inc();
                warn!(error = %e, len = t.len(), "unparseable Twilio message ignored");
                return;
            }
        };
        if let Inbound::Start { stream_sid, start } = &m {
            self.on_start(stream_sid, start);
        }
        let mark = matches!(m, Inbound::Mark { .. });
        self.timer.read(
            match m {
                Inbound::Media { .. } => Read::TwilioMedia,
                _ => Read::Other,
            },
            now,
        );
        self.call.on_twilio(m, now);
        if let Some(g) = self.setup.ready_upstream() {
            self.call.on_upstream_open(g, now);
        }
        if mark {
            self.timer
                .mark_echoed(self.call.playback(), now, &self.s.metrics.latency);
        }
    }

    /// Twilio's `start`, before the call sees it: the report, the callbacks' registry, the
    /// profile and its setup lookup.
    fn on_start(&mut self, stream_sid: &str, start: &StartMeta) {
        self.report.on_start(stream_sid, start);
        self.registered
            .add(&self.s.running, start.call_sid.as_deref(), &self.mailbox);
        if let Some(c) = self.setup.on_start(self.s, start, &mut self.report) {
            self.call.set_config(c);
        }
        self.settle_recording();
        // A setup lookup may have started.
        self.sources.others_changed();
    }

    fn on_upstream(&mut self, generation: u64, received: Received) {
        let now = Instant::now();
        match received {
            Received::Dialled(Ok(()), took) => {
                self.s
                    .metrics
                    .upstream_connect_seconds
                    .observe(took.as_secs_f64());
                debug!(
                    generation,
                    ms = took.as_millis() as u64,
                    "upstream connected"
                );
                // With profiles, the first session waits until `start` decided them.
                if let Some(g) = self.setup.upstream_opened(generation) {
                    self.call.on_upstream_open(g, now);
                }
            }
            Received::Dialled(Err(e), _) => {
                warn!(generation, error = %e, "upstream connection failed");
                let loss = links::loss_of(&e);
                if let Some(r) = self.rec.as_mut() {
                    let status = match loss {
                        UpstreamLoss::Refused { status } => Some(status),
                        _ => None,
                    };
                    r.dial_failed(generation, status);
                }
                self.call.on_upstream_lost(generation, loss, now);
            }
            Received::Message(UpMessage::Text(t)) => {
                self.on_realtime_text(generation, t.as_str(), now)
            }
            Received::Message(UpMessage::Binary(b)) => {
                self.s
                    .metrics
                    .anomalies
                    .with_label_values(&["realtime_binary"])
                    .inc();
                warn!(len = b.len(), "binary frame from the Realtime API ignored");
            }
            Received::Message(_) => {}
            Received::Lost(loss) => {
                if let Some(r) = self.rec.as_mut() {
                    match &loss {
                        UpstreamLoss::Closed { code, reason } => {
                            r.upstream_close(Dir::RealtimeIn, generation, Some(*code), reason)
                        }
                        _ => r.upstream_close(Dir::RealtimeIn, generation, None, ""),
                    }
                }
                self.call.on_upstream_lost(generation, loss, now);
            }
        }
    }

    fn on_realtime_text(&mut self, generation: u64, t: &str, now: Instant) {
        self.s.metrics.realtime_messages_in.inc();
        if let Some(r) = self.rec.as_mut() {
            r.upstream_message(Dir::RealtimeIn, generation, t);
        }
        match ServerEvent::parse(t) {
            Ok(ServerEvent::Unknown) => {
                // New or uninteresting event types: fine, but visible at debug.
                if tracing::enabled!(tracing::Level::DEBUG) {
                    debug!(event = event_type(t), "Realtime event ignored");
                }
            }
            Ok(ev) => {
                if matches!(ev, ServerEvent::SpeechStopped { .. }) {
                    self.report.on_caller_turn_end(now);
                }
                self.timer.read(
                    match ev {
                        ServerEvent::AudioDelta(_) => Read::AudioDelta,
                        _ => Read::Other,
                    },
                    now,
                );
                self.call.on_realtime(generation, ev, now)
            }
            Err(e) => {
                self.s
                    .metrics
                    .anomalies
                    .with_label_values(&["bad_realtime_json"])
                    .inc();
                warn!(error = %e, len = t.len(), "unparseable Realtime event ignored");
            }
        }
    }

    /// The setup lookup answered (or failed): the call's settings are decided.
    fn on_lookup(&mut self, answer: Option<SetupAnswer>) {
        if let Some(c) = self.setup.on_lookup(answer, &mut self.report) {
            self.call.set_config(c);
        }
        self.settle_recording();
        if self.setup.rejected {
            self.call.reject_politely(Instant::now());
        }
        if let Some(g) = self.setup.ready_upstream() {
            self.call.on_upstream_open(g, Instant::now());
        }
    }
}

/// The `type` of a Realtime event, for logs.
fn event_type(text: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Typed>(text).map_or_else(|_| "?".into(), |t| t.kind)
}
