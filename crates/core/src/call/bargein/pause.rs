//! The playout side of a confirmed barge-in: the agent's audio the caller has not heard yet is
//! kept, so that a pause (`clear`) can be undone by sending it again from where it stopped, or
//! made final by cancelling and truncating at what was heard.
//!
//! Positions are [`Playback`](super::super::playback::Playback)'s global μ-law offsets. While
//! the agent plays, `kept` mirrors the bytes from the last echoed mark up to what was sent
//! (what Twilio may still play). While paused, the model's new audio is added to it instead of
//! going to Twilio. A resume rewinds the playback to the paused position (rounded down to a
//! frame: the caller hears at most 20 ms twice) and sends `kept` again with new marks: the
//! bytes land on the same offsets as the first time, so every later truncation is measured on
//! the same line and stays exact.

use std::collections::VecDeque;
use std::time::Instant;

use super::{BargeInConfig, BargeInDecision, BargeInMode, Decider, Step};
use crate::audio::{SpeechDetector, FRAME_BYTES, ULAW_SILENCE};
use crate::call::{Call, CallEvent, Output};
use crate::realtime::ClientEvent;
use crate::twilio::Outbound;

/// A call's state for confirmed barge-in, boxed once per call.
#[derive(Debug)]
pub(in crate::call) struct BargeIn {
    cfg: BargeInConfig,
    detector: SpeechDetector,
    decider: Decider,
    armed: bool,
    onset_at: Option<Instant>,
    kept: VecDeque<u8>,
    /// Global offset of `kept`'s first byte.
    kept_from: u64,
    paused: Option<Paused>,
    /// The server's caller turn began while the agent was audible (it is answered only if it
    /// proves real: see [`Call::bargein_turn_ended`]).
    turn_over_agent: bool,
    /// The caller's sound since the last turn end was a real turn: it cut the agent off, or its
    /// speech was confirmed when the agent had already finished.
    turn_real: bool,
    /// A short sound paused the answer: waiting (until then) for its transcript to tell a
    /// backchannel from a short command.
    awaiting_words: Option<Instant>,
    /// The server's caller turn ended while the words were awaited (its answer, if any, is
    /// asked for once they decide).
    turn_ended_waiting: bool,
    /// The paused sound's transcript came before the bridge heard the sound end (whether it
    /// was a backchannel).
    early_words: Option<bool>,
    /// The echo gate (`echo_suppression`), before everything else that hears the caller.
    pub(super) echo: Option<super::echo::EchoStage>,
}

#[derive(Debug)]
struct Paused {
    /// What the caller had heard at the `clear` (exact: the truncation point if it is cut).
    heard: u64,
    /// Where a resume plays from (`heard` rounded down to a frame).
    resume_from: u64,
    /// `kept`, from `resume_from`, by item: (item id, bytes).
    segments: Vec<(String, u64)>,
}

impl BargeIn {
    pub(in crate::call) fn new(cfg: BargeInConfig) -> BargeIn {
        let cfg_echo = cfg.echo_suppression;
        BargeIn {
            detector: SpeechDetector::new(cfg.vad_threshold),
            cfg,
            decider: Decider::default(),
            armed: false,
            onset_at: None,
            kept: VecDeque::new(),
            kept_from: 0,
            paused: None,
            turn_over_agent: false,
            turn_real: false,
            awaiting_words: None,
            turn_ended_waiting: false,
            early_words: None,
            echo: cfg_echo.then(super::echo::EchoStage::new),
        }
    }

    pub(in crate::call) fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// An agent frame on its way to Twilio (sent is `sent_before` bytes so far): kept. Returns
    /// whether it goes to Twilio now (not while paused).
    pub(in crate::call) fn on_agent_frame(&mut self, frame: &[u8], sent_before: u64) -> bool {
        if self.paused.is_none() && self.kept_from + self.kept.len() as u64 != sent_before {
            // Audio went out without passing here (never expected): start over from now on.
            self.kept.clear();
            self.kept_from = sent_before;
        }
        self.kept.extend(frame);
        self.paused.is_none()
    }

    /// Twilio played up to `at`: what is before it will never be needed again.
    pub(in crate::call) fn played_up_to(&mut self, at: u64) {
        if self.paused.is_some() || at <= self.kept_from {
            return;
        }
        let n = ((at - self.kept_from) as usize).min(self.kept.len());
        self.kept.drain(..n);
        self.kept_from += n as u64;
        if self.kept.is_empty() {
            // Give back the memory of a long answer (a call keeps at most a few seconds).
            self.kept.shrink_to(KEPT_RETAINED);
        }
    }
}

/// Resent audio gets a mark every 100 ms (the size of a model delta).
const RESUME_MARK_BYTES: usize = 800;

/// Capacity `kept` keeps between answers (2 s of μ-law); a longer answer grows it meanwhile.
const KEPT_RETAINED: usize = 16_000;

impl Call {
    /// Sets up (or drops) the confirmed barge-in state for the call's settings.
    pub(in crate::call) fn bargein_configure(&mut self) {
        self.bargein = match self.cfg.barge_in.mode {
            BargeInMode::Confirm => Some(Box::new(BargeIn::new(self.cfg.barge_in.clone()))),
            BargeInMode::Server | BargeInMode::Off => None,
        };
    }

    /// Caller μ-law (already past the echo gate) scored while the agent is audible or paused.
    pub(in crate::call) fn bargein_hear(&mut self, ulaw: &[u8], now: Instant) {
        // Caller frames come every 20 ms: they also time the wait for a short sound's words.
        if self
            .bargein
            .as_deref()
            .and_then(|b| b.awaiting_words)
            .is_some_and(|until| now >= until)
        {
            self.bargein_words_decide(false, now);
        }
        let audible = self.agent_audible(now);
        let Some(b) = self.bargein.as_deref_mut() else {
            return;
        };
        let arm =
            audible || b.paused.is_some() || (b.turn_over_agent && self.upstream.caller_speaking);
        if !arm {
            if b.armed {
                // Nothing to interrupt any more: an onset in progress is moot.
                b.armed = false;
                b.decider.reset();
                b.detector.reset();
            }
            return;
        }
        b.armed = true;
        let mut steps = [Step::Nothing; 4];
        let mut n = 0;
        let (detector, decider, cfg) = (&mut b.detector, &mut b.decider, &b.cfg);
        detector.push(ulaw, |speech| {
            let step = decider.on_block(speech, cfg);
            if step != Step::Nothing && n < steps.len() {
                steps[n] = step;
                n += 1;
            }
        });
        for step in steps.into_iter().take(n) {
            self.bargein_step(step, now);
        }
    }

    pub(super) fn agent_audible(&self, now: Instant) -> bool {
        self.playback.audible(now) || self.framer.pending() > 0
    }

    fn bargein_step(&mut self, step: Step, now: Instant) {
        match step {
            Step::Nothing => {}
            Step::Onset => {
                if let Some(b) = self.bargein.as_deref_mut() {
                    b.onset_at = Some(now);
                }
            }
            Step::Noise => self.bargein_decided(BargeInDecision::IgnoredNoise),
            Step::Pause => self.bargein_pause(now),
            Step::Resume => self.bargein_short_sound(now),
            Step::Cut => self.bargein_cut(now),
        }
    }

    /// The caller's sound is a real turn: a paused answer is cut off (cancel + truncate).
    fn bargein_cut(&mut self, now: Instant) {
        let paused = self.bargein.as_deref().is_some_and(BargeIn::is_paused);
        if let Some(b) = self.bargein.as_deref_mut() {
            b.turn_real = true;
            b.awaiting_words = None;
        }
        if paused {
            self.barge_in(now);
        }
    }

    /// A short sound paused the answer and ended: its words decide (see [`super`]); without
    /// input transcription there will be none, and it is taken as an interruption.
    fn bargein_short_sound(&mut self, now: Instant) {
        let transcribing = self.cfg.session.transcription_model.is_some();
        match self.bargein.as_deref_mut() {
            Some(b) if transcribing && b.paused.is_some() => {
                b.awaiting_words = Some(now + super::WORDS_WAIT);
                if let Some(backchannel) = b.early_words.take() {
                    self.bargein_words_decide(backchannel, now);
                }
            }
            _ => self.bargein_cut(now),
        }
    }

    /// The caller's transcript arrived (`conversation.item.input_audio_transcription.completed`).
    pub(in crate::call) fn bargein_words(&mut self, transcript: &str, now: Instant) {
        let Some(b) = self.bargein.as_deref_mut() else {
            return;
        };
        let backchannel = super::is_backchannel(transcript);
        if b.awaiting_words.is_some() {
            self.bargein_words_decide(backchannel, now);
        } else if b.paused.is_some() {
            b.early_words = Some(backchannel);
        }
    }

    /// Resume after a backchannel; otherwise cut off, and answer the turn if the server ended
    /// it while the words were awaited.
    fn bargein_words_decide(&mut self, backchannel: bool, now: Instant) {
        let Some(b) = self.bargein.as_deref_mut() else {
            return;
        };
        b.awaiting_words = None;
        let ended = std::mem::take(&mut b.turn_ended_waiting);
        if backchannel {
            self.bargein_resume(now);
            return;
        }
        // The cut marks the turn real, so the turn's end (already past) asks for its answer.
        self.bargein_cut(now);
        if ended {
            self.bargein_turn_ended(now);
        }
    }

    fn bargein_decided(&mut self, decision: BargeInDecision) {
        self.out
            .push_back(Output::Event(CallEvent::BargeInDecided(decision)));
    }

    /// Confirmed speech over the agent: stop its audio at the caller's ear, keep the rest.
    fn bargein_pause(&mut self, now: Instant) {
        if !self.agent_audible(now) {
            // The agent already finished: this is simply the caller's turn.
            if let Some(b) = self.bargein.as_deref_mut() {
                b.turn_real = true;
            }
            return;
        }
        self.filler_stop(now);
        self.send_twilio(Outbound::Clear);
        let heard = self.playback.on_clear(now);
        let heard = if self.holding_for_start() { 0 } else { heard };
        let sent = self.playback.sent();
        let frame = FRAME_BYTES as u64;
        let Some(b) = self.bargein.as_deref_mut() else {
            return;
        };
        b.early_words = None;
        let onset_to_clear = b
            .onset_at
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        let resume_from = (heard - heard % frame).max(b.kept_from);
        if b.kept_from + b.kept.len() as u64 != sent || resume_from > sent {
            // The kept audio does not line up with what was sent (not expected): what was
            // queued cannot be played again; a resume plays only what comes from now on.
            b.kept.clear();
            b.kept_from = sent;
            b.paused = Some(Paused {
                heard,
                resume_from: sent,
                segments: Vec::new(),
            });
            self.out
                .push_back(Output::Event(CallEvent::BargeInPaused { onset_to_clear }));
            return;
        }
        let n = (resume_from - b.kept_from) as usize;
        b.kept.drain(..n);
        b.kept_from = resume_from;
        b.paused = Some(Paused {
            heard,
            resume_from,
            segments: self.playback.unplayed_from(resume_from),
        });
        self.out
            .push_back(Output::Event(CallEvent::BargeInPaused { onset_to_clear }));
    }

    /// While paused, `bytes` of `item_id` were added to the kept audio instead of being sent.
    /// Returns false when not paused (the bytes went to Twilio).
    pub(in crate::call) fn bargein_kept(&mut self, item_id: &str, bytes: u64) -> bool {
        let Some(p) = self.bargein.as_deref_mut().and_then(|b| b.paused.as_mut()) else {
            return false;
        };
        match p.segments.last_mut() {
            Some((id, n)) if id == item_id => *n += bytes,
            _ => p.segments.push((item_id.to_owned(), bytes)),
        }
        true
    }

    /// The caller's sound was a backchannel: play the kept audio again from where it paused.
    fn bargein_resume(&mut self, now: Instant) {
        let Some(b) = self.bargein.as_deref_mut() else {
            return;
        };
        let Some(p) = b.paused.take() else {
            return;
        };
        self.playback.rewind(p.resume_from, now);
        let mut at = 0usize;
        for (item_id, len) in &p.segments {
            let end = at + *len as usize;
            // A mark every `RESUME_MARK_BYTES`, as the model's deltas had: the echoes keep the
            // position heard (and a later truncation) as precise as the first time.
            while at < end {
                let Some(b) = self.bargein.as_deref() else {
                    return;
                };
                let stop = (at + RESUME_MARK_BYTES).min(end).min(b.kept.len());
                if stop <= at {
                    break;
                }
                let mut i = at;
                while i < stop {
                    let n = FRAME_BYTES.min(stop - i);
                    let mut frame = [ULAW_SILENCE; FRAME_BYTES];
                    for (slot, byte) in frame.iter_mut().zip(b.kept.range(i..i + n)) {
                        *slot = *byte;
                    }
                    self.out.push_back(Output::ToTwilio(Outbound::Media(frame)));
                    i += n;
                }
                self.after_frames(item_id, (stop - at) as u64, now);
                at = stop;
            }
            at = end;
        }
        self.bargein_decided(BargeInDecision::Resumed);
    }

    /// The pause became final (the caller kept speaking, or the call must stop the agent):
    /// cancel and truncate at what the caller had heard when it paused. `None` when not
    /// paused.
    pub(in crate::call) fn bargein_paused_at(&mut self) -> Option<u64> {
        let b = self.bargein.as_deref_mut()?;
        let p = b.paused.take()?;
        b.kept.clear();
        b.kept_from = self.playback.sent();
        self.bargein_decided(BargeInDecision::Confirmed);
        Some(p.heard)
    }

    /// A caller turn ended on the server (`speech_stopped`). With confirmation on the server
    /// does not answer by itself (`create_response: false`): the bridge asks for an answer
    /// when the turn was real — not one that began over the agent and was only a backchannel
    /// (resumed) or noise. Such a turn's committed input item stays in the model's
    /// conversation (it is what the caller said; the next real turn comes after it).
    pub(in crate::call) fn bargein_turn_ended(&mut self, now: Instant) {
        let Some(b) = self.bargein.as_deref_mut() else {
            return;
        };
        if b.awaiting_words.is_some() {
            // Whether to answer is known once the words are.
            b.turn_ended_waiting = true;
            b.turn_over_agent = false;
            return;
        }
        let answer = !b.turn_over_agent || b.turn_real;
        b.turn_over_agent = false;
        b.turn_real = false;
        // A session that answers by itself (set up without `bridge_decides_turns`) needs no
        // request, and would refuse a second one.
        let server_answers = self.cfg.session.create_response();
        if answer && !server_answers && self.live_response.is_none() && self.ending.is_none() {
            self.send_model(ClientEvent::ResponseCreate { instructions: None });
            // An answer is on its way, as when the server creates it (no rotation meanwhile).
            self.upstream.turn_pending_since = Some(now);
        }
    }

    /// The agent's answer is paused (agent audio is kept, not audible, and not finished).
    pub(in crate::call) fn bargein_paused(&self) -> bool {
        self.bargein.as_deref().is_some_and(BargeIn::is_paused)
    }

    /// The server heard the caller start (`speech_started`): note whether it was over the
    /// agent.
    pub(in crate::call) fn bargein_turn_started(&mut self, now: Instant) {
        let over_agent = self.agent_audible(now);
        if let Some(b) = self.bargein.as_deref_mut() {
            b.turn_over_agent = over_agent || b.paused.is_some();
        }
    }

    /// The agent frame the caller hears at `now` (μ-law silence when none): the reference for
    /// the echo gate (`EchoGate::on_played`).
    pub fn agent_frame_heard(&self, now: Instant) -> [u8; FRAME_BYTES] {
        let mut frame = [ULAW_SILENCE; FRAME_BYTES];
        let Some(b) = self.bargein.as_deref() else {
            return frame;
        };
        if b.paused.is_some() || !self.playback.audible(now) {
            return frame;
        }
        let heard = self.playback.heard(now);
        let Some(i) = heard.checked_sub(b.kept_from).map(|i| i as usize) else {
            return frame;
        };
        for (slot, byte) in frame.iter_mut().zip(b.kept.range(i.min(b.kept.len())..)) {
            *slot = *byte;
        }
        frame
    }
}
