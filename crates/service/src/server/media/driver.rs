//! The call's task as a driver, in small named steps: take the call's outputs and render what
//! to write ([`Driver::next_write`]), feed what woke the task to the call ([`Driver::on_wakes`]),
//! arm its deadline. No decision about the call is made here: every step either performs an
//! output or hands an input to the [`Call`].
//!
//! The steps are plain `fn`s on the per-call state; the few awaits (feed, flush, the wait for a
//! wake-up) stay in the task's loop (`media::run`). That keeps the task's future what it was:
//! an `async fn` per step would be a future of its own inside the task, sized for its largest
//! state, and an `Output` alive across an await would be reserved there all call long.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::Message;
use tokio_tungstenite::tungstenite::Message as UpMessage;
use tracing::{debug, info, warn};

use super::super::call_setup::CallSetup;
use super::super::console::LiveCall;
use super::super::effect_tasks::{self, EffectTasks};
use super::super::latency::{Read, WriteTimer};
use super::super::links::{self, Links, Received};
use super::super::prewarm;
use super::super::running::{CallCommand, Mailbox, Registered};
use super::super::AppState;
use super::call_log::{log_event, redacted, AnomalyCounts};
use super::wake::{Sources, Wake};
use super::write::{event_type, render_realtime, render_twilio, Write};
use super::{settle_recording, RECORDED_BY};
use crate::call::{Call, CallEvent, EndReason, Output, UpstreamEffect, UpstreamLoss};
use crate::realtime::ServerEvent;
use crate::recording::recorder::Recorder;
use crate::recording::{Dir, Header};
use crate::report::builder::ReportBuilder;
use crate::twilio::{Inbound, Outbound, StartMeta};

/// One call's state in its task, besides the Twilio socket (which the awaits borrow apart).
pub(super) struct Driver<'a> {
    pub s: &'a AppState,
    pub call: Call,
    pub opened: Instant,
    pub live: LiveCall,
    pub report: ReportBuilder,
    /// Chooses the profile at `start` and runs its setup lookup.
    pub setup: CallSetup,
    /// Recording is the shell's job (the call stays sans-IO): every message on either socket,
    /// as sent or received, with its time since this socket opened. Boxed: recording is off
    /// unless `record_dir` is set, and inline every call's task would reserve the recorder.
    pub rec: Option<Box<Recorder>>,
    /// The Realtime sockets by generation.
    pub realtime: Links,
    pub sources: Sources,
    /// What woke the task. Grows to the largest batch seen (a few entries); not reserved up
    /// front: every byte of it is held for the whole call.
    pub batch: Vec<Wake>,
    /// Commands from Twilio callbacks (answering machine), once `start` named the CallSid.
    pub mailbox: Arc<Mailbox>,
    registered: Registered,
    /// The stream SID as JSON, once `start` named it.
    sid_json: Option<String>,
    pub outcome: EndReason,
    /// The message being written, rendered (one buffer, reused).
    pub text: String,
    anomalies: AnomalyCounts,
    /// Tool requests and Twilio REST updates in flight (abandoned if the call ends first).
    pub effects: EffectTasks,
    pub timer: WriteTimer,
}

impl<'a> Driver<'a> {
    /// The state of a call whose media socket opened at `opened`. Its first output connects the
    /// upstream (generation 1), before the task first waits: in parallel with Twilio's `start`.
    pub fn new(s: &'a AppState, n: u64, only_call: Option<Box<str>>, opened: Instant) -> Self {
        let live = match &s.console {
            Some(hub) => hub.open(n),
            None => LiveCall::off(),
        };
        let mut call = Call::new(s.call_cfg.clone(), opened);
        if let Some(sid) = only_call {
            call.require_call_sid(sid);
        }
        let mut report = ReportBuilder::new(opened, std::time::SystemTime::now());
        report.redact = s.cfg.redact;
        // With profiles, the session is configured only once `start` (and the profile's setup
        // lookup) said which settings apply.
        let setup = CallSetup::new(s);
        if setup.waits_for_start() {
            call.defer_settings();
        }
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
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            call.on_wall_clock(d.as_secs(), opened);
        }
        Driver {
            s,
            call,
            opened,
            live,
            report,
            setup,
            rec,
            realtime: Links::new(s.cfg.clone()),
            sources: Sources::new(s.stop_calls.clone()),
            batch: Vec::new(),
            mailbox: Arc::new(Mailbox::default()),
            registered: Registered::default(),
            sid_json: None,
            outcome: EndReason::TwilioDisconnected,
            text: String::with_capacity(512),
            anomalies: AnomalyCounts::default(),
            effects: EffectTasks::new(),
            timer: WriteTimer::default(),
        }
    }

    /// The webhook warmed this call up: its setup starts now, with what the webhook saw
    /// (exactly what `start` will carry), so the session is configured and the greeting asked
    /// for before the media socket opens.
    pub fn prewarm(&mut self, start: &StartMeta) {
        let settings = self.setup.on_start(self.s, start, &mut self.report);
        // A setup lookup may have started.
        self.sources.others_changed();
        if self.setup.decided() {
            self.call.settings_decided(settings, Instant::now());
            settle_recording(&mut self.rec, &self.setup, &self.call);
        }
    }

    /// A warm call no media socket claimed (`expired`: within the TTL; else it ended first, or
    /// the drain is over): its sessions are closed and it is counted. It writes no call report:
    /// it never reached a caller (its CallSid's media socket, if one comes, is a call of its own).
    pub async fn close_unclaimed(mut self, expired: bool) {
        let result = if expired { "expired" } else { "closed" };
        prewarm::count(self.s, result);
        info!(
            result,
            "warm call not claimed by its media socket: closed, no call report"
        );
        self.realtime.close_all().await;
        // With `record_dir`, what the warm session did is kept (not left as a `.part` file).
        if let Some(r) = self.rec.take() {
            match r.finish(None).await {
                Ok(path) => info!(path = %path.display(), "warm call recorded"),
                Err(e) => warn!(error = %e, "recording failed"),
            }
        }
        self.live.ended("prewarm_unclaimed");
    }

    // ---- outputs ------------------------------------------------------------------------

    /// Takes the call's outputs until one is to be written: it is rendered into `text` and
    /// named; everything else (effects, events, the hang-up) is performed on the way. `None`
    /// once the call has no more. Each output is consumed here, so none is alive while the
    /// task awaits its write.
    pub fn next_write(&mut self) -> Option<Write> {
        if self.sid_json.is_none() {
            self.sid_json = self
                .call
                .stream_sid()
                .and_then(|sid| serde_json::to_string(sid).ok());
        }
        loop {
            let out = self.call.poll_output()?;
            self.timer.output(&out, &self.s.metrics.latency);
            match self.perform(out) {
                Write::Nothing => {}
                write => return Some(write),
            }
        }
    }

    fn perform(&mut self, out: Output) -> Write {
        match out {
            Output::ToTwilio(msg) => {
                if matches!(msg, Outbound::Media(_)) {
                    self.report.on_agent_audio(Instant::now);
                }
                match &self.sid_json {
                    // Not before `start`: the call holds them until then.
                    None => Write::Nothing,
                    Some(sid) => {
                        render_twilio(self.s, &mut self.rec, sid, &msg, &mut self.text);
                        Write::Twilio
                    }
                }
            }
            Output::ToRealtime { generation, event } => render_realtime(
                self.s,
                &self.call,
                &self.realtime,
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
                effect_tasks::spawn(self.s, &mut self.effects, id, effect);
                self.sources.others_changed();
                Write::Nothing
            }
        }
    }

    fn upstream_effect(&mut self, effect: UpstreamEffect) {
        match effect {
            UpstreamEffect::ConnectUpstream { generation } => {
                debug!(generation, "connecting a new upstream session");
                self.realtime.connect(generation, self.call.dialect());
                self.sources.upstream_changed();
            }
            UpstreamEffect::CloseUpstream { generation } => {
                if self.realtime.close(generation) {
                    if let Some(r) = self.rec.as_mut() {
                        r.upstream_close(Dir::RealtimeOut, generation, Some(1005), "");
                    }
                }
            }
        }
    }

    fn on_event(&mut self, ev: CallEvent) {
        let ev = redacted(self.report.redact, ev);
        self.live.on_event(&ev);
        self.report.on_event(&ev, Instant::now());
        log_event(self.s, &mut self.anomalies, ev);
    }

    /// A write or flush to an upstream socket failed: the socket is gone, the call is told.
    pub fn upstream_write_failed(&mut self, generation: u64, loss: UpstreamLoss, what: &str) {
        warn!(generation, %loss, "upstream {what} failed");
        self.call.on_upstream_lost(generation, loss, Instant::now());
    }

    /// The call ended: what is left of its outputs (produced by failed writes) are only
    /// events and the hang-up.
    pub fn take_last_events(&mut self) {
        while let Some(out) = self.call.poll_output() {
            if let Output::Event(ev) = out {
                self.on_event(ev);
            }
        }
    }

    /// Makes the task wake by the call's next deadline.
    pub fn arm_deadline(&mut self) {
        if let Some(d) = self.call.next_deadline() {
            self.sources.wake_by(tokio::time::Instant::from_std(d));
        }
    }

    /// The call is over: the metrics and the log are told how.
    pub fn count_outcome(&self) {
        let outcome = self.outcome.as_str();
        let secs = self.opened.elapsed().as_secs_f64();
        let metrics = &self.s.metrics;
        metrics.calls_total.with_label_values(&[outcome]).inc();
        metrics
            .calls_by_profile_total
            .with_label_values(&[self.setup.profile.as_deref().unwrap_or("none"), outcome])
            .inc();
        metrics.call_duration_seconds.observe(secs);
        info!(
            outcome,
            duration_s = format!("{secs:.1}"),
            stream_sid = self.call.stream_sid().unwrap_or("-"),
            "call ended"
        );
    }

    /// The report's last parts: the call's tool calls and conversation.
    pub fn complete_report(&mut self) {
        self.report
            .set_tool_calls(self.call.tool_calls(), self.call.transfer_targets());
        self.report
            .use_conversation(self.call.conversation().entries());
    }

    // ---- inputs -------------------------------------------------------------------------

    /// Hands everything that woke the task to the call, in order.
    pub fn on_wakes(&mut self) {
        let mut batch = std::mem::take(&mut self.batch);
        for wake in batch.drain(..) {
            self.on_wake(wake);
        }
        // Its capacity is kept for the next wake-up.
        self.batch = batch;
    }

    fn on_wake(&mut self, wake: Wake) {
        match wake {
            Wake::Twilio(msg) => self.on_twilio(msg, Instant::now()),
            Wake::Upstream(generation, received) => {
                self.on_upstream_received(generation, received, Instant::now())
            }
            Wake::Effect(done) => match done {
                Ok((id, result)) => self.call.on_effect_done(id, result, Instant::now()),
                Err(e) => warn!(error = %e, "an effect task failed"),
            },
            Wake::Lookup(answer) => self.on_lookup(*answer),
            Wake::Timer => self.call.on_tick(Instant::now()),
            Wake::Command(CallCommand::MachineAnswered) => {
                self.call.on_machine_answered(Instant::now())
            }
            Wake::Drain => self.call.on_drain(
                self.s.cfg.drain_goodbye.clone(),
                self.s.cfg.drain_goodbye_timeout,
                Instant::now(),
            ),
        }
    }

    fn on_twilio(&mut self, msg: Option<Result<Message, axum::Error>>, now: Instant) {
        let s = self.s;
        match msg {
            Some(Ok(Message::Text(t))) => {
                s.metrics.twilio_messages_in.inc();
                if let Some(r) = self.rec.as_mut() {
                    r.message(Dir::TwilioIn, t.as_str());
                }
                match Inbound::parse(t.as_str()) {
                    Ok(m) => self.on_twilio_message(m, now),
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

    fn on_twilio_message(&mut self, m: Inbound<'_>, now: Instant) {
        let mut settings = None;
        let start = matches!(m, Inbound::Start { .. });
        if let Inbound::Start { stream_sid, start } = &m {
            self.report.on_start(stream_sid, start);
            self.registered
                .add(&self.s.running, start.call_sid.as_deref(), &self.mailbox);
            settings = self.setup.on_start(self.s, start, &mut self.report);
            // A setup lookup may have started.
            self.sources.others_changed();
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
        if start && self.setup.decided() {
            self.call.settings_decided(settings, now);
            settle_recording(&mut self.rec, &self.setup, &self.call);
        }
        if mark {
            self.timer
                .mark_echoed(self.call.playback(), now, &self.s.metrics.latency);
        }
    }

    fn on_upstream_received(&mut self, generation: u64, received: Received, now: Instant) {
        match received {
            Received::Connected(Ok(()), took) => {
                self.s
                    .metrics
                    .upstream_connect_seconds
                    .observe(took.as_secs_f64());
                debug!(
                    generation,
                    ms = took.as_millis() as u64,
                    "upstream connected"
                );
                // With profiles, the call keeps it unconfigured until its settings are decided.
                self.call.on_upstream_open(generation, now);
            }
            Received::Connected(Err(e), _) => {
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

    /// The setup lookup answered (or failed, or timed out): the call's settings are decided.
    fn on_lookup(&mut self, answer: Option<super::super::call_setup::SetupAnswer>) {
        let settings = self.setup.on_lookup(answer, &mut self.report);
        let now = Instant::now();
        if self.setup.rejected {
            // Said once the session is configured (just below, if it is open).
            self.call.reject_politely(now);
        }
        self.call.settings_decided(settings, now);
        settle_recording(&mut self.rec, &self.setup, &self.call);
    }
}
