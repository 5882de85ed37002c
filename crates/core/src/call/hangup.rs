//! Ending a call on purpose, after the caller has heard the last words: the built-in
//! `end_call` and `transfer_call` tools, and [`Call::end_after_heard`] for the shell's own
//! wrap-ups (drain, maximum call length).
//!
//! The sequence: (optionally) let the response that says goodbye finish → wait until Twilio
//! has echoed the last mark (the caller heard it; bounded by a timeout) → a Twilio REST update
//! (`Status=completed`, or `Twiml=<Dial>` for a transfer) → Twilio stops the stream, and that
//! `stop`/close is recorded as the planned outcome, not as the caller hanging up.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::effects::{CallUpdateRequest, Effect, EffectId};
use super::tools::{error_output, END_CALL, TRANSFER_CALL};
use super::{Call, CallEvent, EndReason, Output};
use crate::realtime::ClientEvent;
use crate::twilio::rest::CallUpdate;
use crate::twilio::transfer::dial_twiml;

/// Longest wait for Twilio's REST answer.
const REST_WAIT: Duration = Duration::from_secs(15);
/// Longest wait for the stream to stop after Twilio accepted the update.
const STOP_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct Ending {
    reason: EndReason,
    action: Action,
    phase: Phase,
    /// Goodbye instructions still to be asked for: another response was live when the
    /// ending began, and one response at a time is all the Realtime API accepts.
    say_after: Option<String>,
    /// The bridge's own wrap-up (drain, maximum length, voicemail, rejection): the model is
    /// asked for nothing but its goodbye, so a tool answer arriving now is given to the model
    /// without asking it to speak again. Not so for `end_call`, whose goodbye is that answer.
    wrap_up: bool,
    deadline: Instant,
}

enum Action {
    Hangup,
    Transfer {
        call_id: String,
        destination: String,
        twiml: String,
    },
}

#[derive(Debug, PartialEq)]
enum Phase {
    /// Waiting for the goodbye response to be created (`None`), then to be done (`Some`).
    Response(Option<String>),
    /// Waiting for Twilio to echo every mark sent so far.
    Heard,
    /// The REST update is out.
    Rest(EffectId, Instant),
    /// Twilio accepted it; the stream's `stop`/close is expected.
    Stop,
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Hangup => "hangup",
            Action::Transfer { .. } => "transfer",
        }
    }
}

impl Call {
    /// Ends the call with `reason` once the caller has heard the agent's last words. With
    /// `say`, a response with those instructions is asked for first (once no other response
    /// is live); without it, the response being generated, if any, is let finish. Heard means
    /// Twilio echoed the last mark; after `timeout` the call ends regardless. The call is ended
    /// through Twilio REST (`Status=completed`), so no apology plays; if that is impossible
    /// (no call SID) or fails, the stream is closed. Does nothing if the call is already
    /// ending.
    pub fn end_after_heard(
        &mut self,
        say: Option<String>,
        reason: EndReason,
        timeout: Duration,
        now: Instant,
    ) {
        if self.phase.is_closing() {
            return;
        }
        let (phase, say_after) = match (say, &self.live_response) {
            (Some(instructions), None) if self.upstream_ready => {
                self.send_model(ClientEvent::ResponseCreate {
                    instructions: Some(instructions),
                });
                (Phase::Response(None), None)
            }
            // The answer being generated is let finish; the goodbye is asked for after it.
            (say, Some(live)) => (Phase::Response(Some(live.clone())), say),
            (_, None) => (Phase::Heard, None),
        };
        self.ending = Some(Box::new(Ending {
            reason,
            action: Action::Hangup,
            phase,
            say_after,
            wrap_up: true,
            deadline: now + timeout,
        }));
        self.ending_began();
        self.ending_progress(now);
    }

    /// Whether the call is on its way out (goodbye or handover line playing, REST sent).
    pub fn is_ending(&self) -> bool {
        self.ending.is_some()
    }

    /// Whether the call is in one of the bridge's own wrap-ups, which ask the model for nothing
    /// more than their goodbye.
    pub(super) fn wrapping_up(&self) -> bool {
        self.ending.as_ref().is_some_and(|e| e.wrap_up)
    }

    /// The model called `end_call`.
    pub(super) fn end_call_requested(&mut self, call_id: &str, args: &Value, now: Instant) {
        let why = args.get("reason").and_then(Value::as_str).unwrap_or("");
        self.out.push_back(Output::Event(CallEvent::ToolCall {
            tool: END_CALL.into(),
            call_id: call_id.to_owned(),
            result: "ok",
            seconds: None,
        }));
        self.out.push_back(Output::Event(CallEvent::EndRequested {
            reason: why.chars().take(200).collect(),
        }));
        // The output's response.create makes the model say goodbye: that response is the one
        // whose last mark ends the call.
        let already = self.ending.is_some();
        if !already {
            self.ending = Some(Box::new(Ending {
                reason: EndReason::AgentHungUp,
                action: Action::Hangup,
                phase: Phase::Response(None),
                say_after: None,
                wrap_up: false,
                deadline: now + self.cfg.tools.goodbye_timeout,
            }));
            self.ending_began();
        }
        self.send_output(call_id, json!({"ok": true}).to_string(), "ok");
    }

    /// The model called `transfer_call`: its handover line was in the response just done.
    pub(super) fn transfer_requested(
        &mut self,
        _response_id: &str,
        call_id: &str,
        args: &Value,
        now: Instant,
    ) {
        let dest = args.get("destination").and_then(Value::as_str);
        let target = dest.and_then(|d| {
            self.cfg
                .tools
                .transfer_targets
                .iter()
                .find(|(name, _)| name == d)
                .map(|(_, t)| t.clone())
        });
        let (Some(dest), Some(target)) = (dest, target) else {
            let names: Vec<&str> = self
                .cfg
                .tools
                .transfer_targets
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            let why = format!(
                "no transfer destination named {:?}; allowed: {}",
                dest.unwrap_or(""),
                names.join(", ")
            );
            return self.refuse(call_id, TRANSFER_CALL, "unknown_destination", &why);
        };
        if self.ending.is_some() {
            return self.refuse(
                call_id,
                TRANSFER_CALL,
                "already_ending",
                "the call is already ending",
            );
        }
        let twiml = dial_twiml(&target, self.cfg.tools.transfer_caller_id.as_deref());
        self.ending = Some(Box::new(Ending {
            reason: EndReason::Transferred,
            action: Action::Transfer {
                call_id: call_id.to_owned(),
                destination: dest.to_owned(),
                twiml,
            },
            // The handover line was said in the response that called the tool (done now).
            phase: Phase::Heard,
            say_after: None,
            wrap_up: false,
            deadline: now + self.cfg.tools.goodbye_timeout,
        }));
        self.ending_began();
        self.ending_progress(now);
    }

    pub(super) fn ending_on_response_created(&mut self, id: &str) {
        if let Some(e) = self.ending.as_mut() {
            if e.phase == Phase::Response(None) {
                e.phase = Phase::Response(Some(id.to_owned()));
            }
        }
    }

    pub(super) fn ending_on_response_done(&mut self, id: &str, now: Instant) {
        if let Some(e) = self.ending.as_mut() {
            if matches!(&e.phase, Phase::Response(Some(r)) if r == id) {
                match e.say_after.take() {
                    // The answer that was live when the ending began is done: now the goodbye.
                    Some(instructions) if self.upstream_ready => {
                        e.phase = Phase::Response(None);
                        self.send_model(ClientEvent::ResponseCreate {
                            instructions: Some(instructions),
                        });
                    }
                    _ => e.phase = Phase::Heard,
                }
            }
        }
        self.ending_progress(now);
    }

    pub(super) fn ending_next_deadline(&self) -> Option<Instant> {
        self.ending.as_ref().map(|e| e.deadline)
    }

    /// Twilio ended the stream (`stop` or close). After our own hang-up or transfer that is the
    /// update working — also when Twilio's HTTP answer has not arrived yet: the redirect or
    /// hang-up can end the stream first, and the transfer is then done all the same (counted,
    /// reported, shown). Otherwise the call ends as `otherwise` says.
    pub(super) fn stream_ended(&mut self, otherwise: EndReason, now: Instant) {
        if let Some(Phase::Rest(id, _)) = self.ending.as_ref().map(|e| &e.phase) {
            let id = *id;
            self.call_update_done(id, Ok(()), now);
        }
        self.end(self.planned_end().unwrap_or(otherwise));
    }

    /// The outcome a `stop` or close means now: the planned one once the REST update is out.
    pub(super) fn planned_end(&self) -> Option<EndReason> {
        self.ending
            .as_ref()
            .filter(|e| matches!(e.phase, Phase::Rest(..) | Phase::Stop))
            .map(|e| e.reason)
    }

    /// Moves the ending on: sends the REST update once the last words were heard (or the
    /// wait is over), gives up on a REST answer or a `stop` that does not come.
    pub(super) fn ending_progress(&mut self, now: Instant) {
        let heard = self.all_heard();
        let Some(e) = self.ending.as_mut() else {
            return;
        };
        let overdue = now >= e.deadline;
        match e.phase {
            Phase::Response(_) | Phase::Heard => {
                if e.phase == Phase::Heard && heard {
                    self.send_update(now);
                } else if overdue {
                    self.anomaly(
                        "goodbye_timeout",
                        "the last words were not heard in time; ending anyway".into(),
                    );
                    self.send_update(now);
                }
            }
            Phase::Rest(id, _) => {
                if overdue {
                    self.call_update_done(id, Err("no answer from Twilio REST".into()), now);
                }
            }
            Phase::Stop => {
                if overdue {
                    let reason = e.reason;
                    self.end(reason);
                }
            }
        }
    }

    /// Every audio byte sent to Twilio was played (its mark echoed) or cleared.
    fn all_heard(&self) -> bool {
        self.playback.pending_marks() == 0
            && self.current_item.is_none()
            && self.framer.pending() == 0
    }

    fn send_update(&mut self, now: Instant) {
        let Some(e) = self.ending.as_mut() else {
            return;
        };
        let update = match &e.action {
            Action::Hangup => CallUpdate::Hangup,
            Action::Transfer { twiml, .. } => CallUpdate::Twiml(twiml.clone()),
        };
        let sids = self
            .info
            .as_ref()
            .and_then(|i| Some((i.account_sid.clone()?, i.call_sid.clone()?)));
        let Some((account_sid, call_sid)) = sids else {
            let id = self.next_effect_id();
            self.ending_set_phase(Phase::Rest(id, now), now + REST_WAIT);
            self.call_update_done(
                id,
                Err("the stream's start named no account or call SID".into()),
                now,
            );
            return;
        };
        let id = self.next_effect_id();
        self.ending_set_phase(Phase::Rest(id, now), now + REST_WAIT);
        self.out.push_back(Output::Effect {
            id,
            effect: Effect::UpdateCall(CallUpdateRequest {
                account_sid,
                call_sid,
                update,
            }),
        });
    }

    fn ending_set_phase(&mut self, phase: Phase, deadline: Instant) {
        if let Some(e) = self.ending.as_mut() {
            e.phase = phase;
            e.deadline = deadline;
        }
    }

    /// Twilio's answer to the REST update. Returns false if it was not the one awaited.
    pub(super) fn call_update_done(
        &mut self,
        id: EffectId,
        result: Result<(), String>,
        now: Instant,
    ) -> bool {
        let Some(e) = self.ending.as_ref() else {
            return false;
        };
        let Phase::Rest(awaited, sent) = e.phase else {
            return false;
        };
        if awaited != id {
            return false;
        }
        let seconds = now.saturating_duration_since(sent).as_secs_f64();
        let ok = result.is_ok();
        self.out.push_back(Output::Event(CallEvent::CallUpdated {
            action: e.action.name(),
            ok,
            seconds,
        }));
        match result {
            Ok(()) => {
                if let Action::Transfer {
                    call_id,
                    destination,
                    ..
                } = &e.action
                {
                    let (call_id, destination) = (call_id.clone(), destination.clone());
                    self.out.push_back(Output::Event(CallEvent::ToolCall {
                        tool: TRANSFER_CALL.into(),
                        call_id: call_id.clone(),
                        result: "ok",
                        seconds: Some(seconds),
                    }));
                    self.out
                        .push_back(Output::Event(CallEvent::Transferring { destination }));
                    self.forget_output(&call_id);
                }
                self.ending_set_phase(Phase::Stop, now + STOP_WAIT);
            }
            Err(why) => {
                let Some(e) = self.ending.take() else {
                    return true;
                };
                self.ending_abandoned();
                match e.action {
                    Action::Hangup => {
                        // Closing the stream ends the call too (Twilio runs what follows
                        // </Connect>): the best we can do.
                        self.anomaly(
                            "hangup_failed",
                            format!("Twilio REST hang-up failed ({why}); closing the stream"),
                        );
                        self.end(e.reason);
                    }
                    Action::Transfer { call_id, .. } => {
                        self.anomaly("transfer_failed", format!("Twilio REST update: {why}"));
                        self.out.push_back(Output::Event(CallEvent::ToolCall {
                            tool: TRANSFER_CALL.into(),
                            call_id: call_id.clone(),
                            result: "transfer_failed",
                            seconds: Some(seconds),
                        }));
                        self.send_output(
                            &call_id,
                            error_output(
                                "the transfer could not be made; offer the caller something else",
                                true,
                            ),
                            "transfer_failed",
                        );
                    }
                }
            }
        }
        true
    }
}
