//! The filler: a short, quiet sound the caller hears while a slow tool runs, so the line is
//! not dead. It is not model audio: it carries no marks, never enters [`super::playback`]'s
//! accounting (so truncation ignores it), and a `clear` stops it the instant the model's
//! audio arrives or the caller barges in. It only starts when nothing of the agent's is
//! queued at Twilio (a `clear` then drops the filler and nothing else).

use std::time::{Duration, Instant};

use super::{Call, CallEvent, Output};
use crate::audio::{FRAME_BYTES, ULAW_SILENCE};
use crate::twilio::Outbound;

/// How often to look again when the filler is due but the agent's audio is still playing.
const RETRY: Duration = Duration::from_millis(100);

#[derive(Default)]
pub(crate) struct Filler {
    /// When the clip sent last stops playing (by the clock).
    playing_until: Option<Instant>,
    /// Played for the tools running now: once per wait.
    played: bool,
    retry_at: Option<Instant>,
}

impl Filler {
    pub(super) fn is_playing(&self) -> bool {
        self.playing_until.is_some()
    }
}

impl Call {
    pub(super) fn filler_next_deadline(&self) -> Option<Instant> {
        if self.cfg.tools.filler.is_none() || self.filler.played {
            return None;
        }
        let due = self.tools.filler_due()?;
        Some(self.filler.retry_at.map_or(due, |r| r.max(due)))
    }

    pub(super) fn filler_on_tick(&mut self, now: Instant) {
        if !self.tools.any_running() {
            self.filler.played = false;
            self.filler.retry_at = None;
            return;
        }
        let Some(due) = self.filler_next_deadline() else {
            return;
        };
        if now < due {
            return;
        }
        let busy = self.playback.audible(now)
            || self.playback.pending_marks() > 0
            || self.current_item.is_some()
            || self.framer.pending() > 0;
        if busy {
            self.filler.retry_at = Some(now + RETRY);
            return;
        }
        let Some(clip) = self.cfg.tools.filler.clone() else {
            return;
        };
        self.filler.played = true;
        self.filler.retry_at = None;
        for chunk in clip.chunks(FRAME_BYTES) {
            let mut frame = [ULAW_SILENCE; FRAME_BYTES];
            frame[..chunk.len()].copy_from_slice(chunk);
            self.send_twilio(Outbound::Media(frame));
        }
        let ms = clip.len().div_ceil(FRAME_BYTES) as u64 * 20;
        self.filler.playing_until = Some(now + Duration::from_millis(ms));
        self.out.push_back(Output::Event(CallEvent::FillerPlayed));
    }

    /// Stops the filler if it may still be playing (model audio is about to go out, or the
    /// caller spoke). Returns whether a `clear` was sent.
    pub(super) fn filler_stop(&mut self, now: Instant) -> bool {
        match self.filler.playing_until.take() {
            Some(until) if now < until => {
                self.send_twilio(Outbound::Clear);
                true
            }
            _ => false,
        }
    }

    /// Tools are all done: the next slow tool may have its filler again.
    pub(super) fn filler_rearm(&mut self) {
        if !self.tools.any_running() {
            self.filler.played = false;
            self.filler.retry_at = None;
        }
    }
}
