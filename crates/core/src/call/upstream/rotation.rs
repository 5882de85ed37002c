//! Rotation: a session is replaced by a successor before its time limit, at a quiet moment
//! and between two caller frames (see the parent module's docs). The successor's socket, its
//! setup and the switch are decided here; the clock that starts a rotation lives with the
//! other session timings in the parent.

use std::time::{Duration, Instant};

use super::super::conversation::CONTINUATION_NOTE;
use super::super::effects::UpstreamEffect;
use super::super::{Call, CallEvent, Output};
use super::Rotation;
use crate::realtime::{ClientEvent, Item};

/// Rotation starts at least this long before the session's limit.
pub const ROTATE_MARGIN: Duration = Duration::from_secs(300);

/// Without a quiet moment, the switch is forced this long before the limit.
pub const FORCE_MARGIN: Duration = Duration::from_secs(60);

/// A rotation switches only after this many caller frames in a row without speech-level
/// audio (300 ms): the server's VAD reports speech a moment after it begins, and a switch in
/// that moment would split the caller's first words across two sessions.
pub const QUIET_FRAMES: u32 = 15;

/// How long an answer to a finished caller turn is expected before the call counts as quiet
/// again without it.
const TURN_ANSWER_WAIT: Duration = Duration::from_secs(5);

/// Peak sample (PCM16) below which a caller frame counts as quiet.
const QUIET_PEAK: u16 = 1000;

impl Call {
    /// The rotation's successor is open: configure it and replay the conversation, then
    /// switch when the call is quiet.
    pub(super) fn successor_ready(&mut self, generation: u64, now: Instant) {
        let replay = self.conversation.replay();
        self.upstream.rotation = Rotation::Ready {
            generation,
            replayed_to: self.conversation.end(),
            noted: !replay.is_empty(),
        };
        self.upstream.successor_opened = Some(now);
        self.upstream.successor_limit = None;
        self.upstream.quiet_frames = 0;
        // To the successor, not to the session in use.
        self.out.push_back(Output::ToRealtime {
            generation,
            event: ClientEvent::SessionUpdate(Box::new(self.cfg.session.clone())),
        });
        self.out.extend(
            replay
                .into_iter()
                .map(|event| Output::ToRealtime { generation, event }),
        );
        self.maybe_switch(now);
    }

    /// Nothing is going on that a switch would cut: no answer in flight, the caller silent,
    /// no agent audio still queued at the caller.
    pub(super) fn quiet(&self, now: Instant) -> bool {
        self.upstream.quiet_frames >= QUIET_FRAMES
            && self
                .upstream
                .turn_pending_since
                .is_none_or(|t| now >= t + TURN_ANSWER_WAIT)
            && self.live_response.is_none()
            && self.current_item.is_none()
            && !self.upstream.caller_speaking
            && self.framer.pending() == 0
            && !self.playback.audible(now)
            && !self.bargein_paused()
    }

    /// A caller frame (μ-law) went up: while a successor waits, count quiet frames and
    /// switch when the moment has come. Costs one comparison otherwise.
    pub(crate) fn rotation_frame(&mut self, ulaw: &[u8], now: Instant) {
        if !matches!(self.upstream.rotation, Rotation::Ready { .. }) {
            return;
        }
        let loud = ulaw
            .iter()
            .any(|&b| audio_codec_algorithms::decode_ulaw(b).unsigned_abs() >= QUIET_PEAK);
        self.upstream.quiet_frames = if loud {
            0
        } else {
            self.upstream.quiet_frames.saturating_add(1)
        };
        self.maybe_switch(now);
    }

    /// Switches to a ready successor if the call is quiet.
    pub(crate) fn maybe_switch(&mut self, now: Instant) {
        if matches!(self.upstream.rotation, Rotation::Ready { .. }) && self.quiet(now) {
            self.switch(now, false);
        }
    }

    /// An answer started (it is now the one in flight).
    pub(crate) fn answer_started(&mut self) {
        self.upstream.turn_pending_since = None;
    }

    /// The configured successor waiting to take over, if there is one (the rotation is idle
    /// again): its generation, how much of the conversation it was given, and whether it was
    /// told of a continuation.
    fn take_ready_successor(&mut self) -> Option<(u64, usize, bool)> {
        let Rotation::Ready {
            generation,
            replayed_to,
            noted,
        } = self.upstream.rotation
        else {
            return None;
        };
        self.upstream.rotation = Rotation::Idle;
        Some((generation, replayed_to, noted))
    }

    /// Makes the ready successor the current session and closes the old one.
    pub(super) fn switch(&mut self, now: Instant, forced: bool) {
        let Some((generation, replayed_to, noted)) = self.take_ready_successor() else {
            return;
        };
        if forced {
            self.cut_answer_in_flight(now);
        }
        let old = self.upstream.current;
        self.upstream.current = generation;
        // What was said since the successor was set up.
        self.replay_rest(replayed_to, noted);
        if forced && self.upstream.caller_speaking {
            // The old session never committed this sentence.
            self.resend_tail();
        }
        self.effect(UpstreamEffect::CloseUpstream { generation: old });
        let opened = self.upstream.successor_opened.take().unwrap_or(now);
        let limit = self.upstream.successor_limit.take();
        self.session_began(opened, limit);
        self.out.push_back(Output::Event(CallEvent::SessionRotated {
            generation,
            forced,
        }));
    }

    /// The current session was lost while a configured successor waited: it takes over at
    /// once, with the caller audio kept since.
    pub(super) fn switch_after_loss(&mut self, now: Instant) {
        let Some((generation, replayed_to, noted)) = self.take_ready_successor() else {
            return;
        };
        let old = self.upstream.current;
        self.upstream.current = generation;
        self.replay_rest(replayed_to, noted);
        self.upstream_ready = true;
        let resent_ms = self.prebuffered_ms();
        self.flush_prebuffer();
        let opened = self.upstream.successor_opened.take().unwrap_or(now);
        let limit = self.upstream.successor_limit.take();
        self.session_began(opened, limit);
        self.out
            .push_back(Output::Event(CallEvent::UpstreamRestored {
                generation,
                previous: old,
                gap_ms: 0,
                replayed_items: 0,
                resent_ms,
            }));
    }

    /// The conversation since position `from`, to the session now in use; with the
    /// continuation note if the session has not had it yet (it started empty).
    pub(super) fn replay_rest(&mut self, from: usize, noted: bool) {
        let since = self.conversation.replay_since(from);
        let note = !noted && !since.is_empty();
        for event in since {
            self.send_model(event);
        }
        if note {
            self.send_model(ClientEvent::CreateItem(Item::SystemText(
                CONTINUATION_NOTE.into(),
            )));
        }
    }

    pub(super) fn force_at(&self) -> Option<Instant> {
        let limit = self.upstream.limit_at?;
        Some(limit.checked_sub(FORCE_MARGIN).unwrap_or(limit))
    }

    /// `expires_at` of the current session, from `session.created`/`session.updated`.
    pub(crate) fn on_session_expiry(&mut self, expires_at: Option<u64>, now: Instant) {
        let Some(limit) = expires_at.and_then(|at| self.upstream.unix_to_instant(at, now)) else {
            return;
        };
        if let Some(opened) = self.upstream.ready_at {
            if self.upstream.rotation == Rotation::Idle {
                self.session_began(opened, Some(limit));
            } else {
                self.upstream.limit_at = Some(limit);
            }
        }
    }
}
