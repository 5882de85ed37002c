//! The upstream's life: generations, reconnects and session rotation.
//!
//! Each Realtime socket of a call is a *generation* (1, 2, …), each asked for with
//! [`UpstreamEffect::ConnectUpstream`] — generation 1 by [`Call::new`], so that it is dialled
//! as the media socket opens, in parallel with Twilio's `start` — and the shell reports back with [`Call::on_upstream_open`] or
//! [`Call::on_upstream_lost`]. A report about a generation the call no longer waits for is
//! ignored (or, for a socket that opened too late, answered with [`UpstreamEffect::CloseUpstream`]).
//!
//! **Drop.** When the socket in use fails without our asking (reset, EOF without a close
//! frame, a close frame, `server_error` then close, `session_expired`, a write that fails or
//! stalls), the call keeps Twilio's side: agent audio already sent plays on, the answer cut
//! off is marked interrupted in the [`Conversation`](super::conversation::Conversation), and
//! caller audio is kept (bounded by `prebuffer_limit_ms`) — including what the caller said
//! since their current sentence began, which the lost session never committed. The call
//! re-dials at once, then after 250 ms, 1 s, 2 s, 2 s, … until `upstream_retry` has passed
//! since the drop (a session that dies again within [`STABLE_AFTER`] continues the same
//! outage, so a server that accepts and drops at once cannot keep a call in a loop). The new
//! session gets the same `session.update`, the conversation replayed as items with a note not
//! to greet again, then the kept caller audio. Errors no retry fixes (HTTP 401/403 on the
//! upgrade, `invalid_api_key`, `insufficient_quota`, a policy close) end the call at once
//! (`upstream_refused`); a failure before the first session ever opened ends it too (the
//! caller has heard nothing yet: Twilio's apology beats a wait). Every try failed:
//! `upstream_failed`.
//!
//! **Rotation.** A Realtime session ends after 60 minutes. At `session_rotate_after` (or five
//! minutes before the `expires_at` the server announced) the call opens a successor,
//! configures it and replays the conversation into it, then switches at a quiet moment — no
//! response in flight, the caller not speaking, no agent audio still queued at the caller —
//! between two caller frames: every [`Output::ToRealtime`] names its generation, so no frame
//! goes to both sessions or to neither. Then the old socket is closed. Without a
//! quiet moment the switch is forced a minute before the limit.

mod rotation;
mod tail;

pub use rotation::{FORCE_MARGIN, QUIET_FRAMES, ROTATE_MARGIN};

use std::time::{Duration, Instant};

use super::effects::UpstreamEffect;
use super::{Call, CallEvent, EndReason, Output};
use crate::realtime::{ClientEvent, ServerEvent, TurnDetection};

/// Delays before the 1st, 2nd, 3rd, … re-dial after a drop; the last one repeats.
pub const BACKOFF: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(250),
    Duration::from_secs(1),
    Duration::from_secs(2),
];
/// A restored session that fails again sooner than this continues the same outage.
pub const STABLE_AFTER: Duration = Duration::from_secs(5);
/// How long a Realtime session lasts when the server does not say (`protocol.md`, Limits).
pub const SESSION_LIMIT: Duration = Duration::from_secs(3600);
/// A successor that failed is tried again after this long.
const ROTATE_RETRY: Duration = Duration::from_secs(5);
/// Caller audio kept while the caller is not speaking: the beginning of a sentence the
/// server's VAD has not reported yet (its prefix padding plus the event's way back).
pub const TAIL_IDLE_MS: u64 = 500;
/// [`TAIL_IDLE_MS`] of μ-law: what the tail holds while the caller is silent.
const TAIL_IDLE_BYTES: usize = (TAIL_IDLE_MS * super::ULAW_BYTES_PER_MS) as usize;
/// Error codes no retry fixes: the call ends at once.
const FATAL_CODES: [&str; 3] = [
    "invalid_api_key",
    "insufficient_quota",
    "beta_api_shape_disabled",
];

/// How a socket was lost (or could not be opened), as the shell saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamLoss {
    /// The upgrade was answered with this HTTP status.
    Refused { status: u16 },
    /// DNS, TCP, TLS or the handshake failed or timed out.
    ConnectFailed(String),
    /// The server sent a close frame.
    Closed { code: u16, reason: String },
    /// The socket ended without a close frame, or errored (e.g. reset).
    Dropped(String),
    /// A write failed or stalled.
    WriteFailed(String),
}

impl UpstreamLoss {
    /// Whether retrying cannot help.
    pub fn is_fatal(&self) -> bool {
        match self {
            UpstreamLoss::Refused { status } => matches!(status, 401 | 403),
            // Policy violation (e.g. a refused API shape): the next session gets the same.
            UpstreamLoss::Closed { code, .. } => *code == 1008,
            _ => false,
        }
    }

    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            UpstreamLoss::Refused { .. } => "refused",
            UpstreamLoss::ConnectFailed(_) => "connect_failed",
            UpstreamLoss::Closed { .. } => "closed",
            UpstreamLoss::Dropped(_) => "dropped",
            UpstreamLoss::WriteFailed(_) => "write_failed",
        }
    }
}

impl std::fmt::Display for UpstreamLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamLoss::Refused { status } => write!(f, "upgrade refused: HTTP {status}"),
            UpstreamLoss::ConnectFailed(d) => write!(f, "connect failed: {d}"),
            UpstreamLoss::Closed { code, reason } => {
                write!(f, "closed by the server: {code} {reason}")
            }
            UpstreamLoss::Dropped(d) => write!(f, "dropped: {d}"),
            UpstreamLoss::WriteFailed(d) => write!(f, "write failed: {d}"),
        }
    }
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    attempt: usize,
    /// When to dial next; `None` while a dial is in flight.
    next_try: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotation {
    Idle,
    Dialing(u64),
    /// Configured and replayed up to this conversation position (`noted`: the continuation
    /// note went too); waiting for a quiet moment.
    Ready {
        generation: u64,
        replayed_to: usize,
        noted: bool,
    },
}

/// The call's view of its upstream sockets.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// The session in use: the generation events for the model go to.
    current: u64,
    next_generation: u64,
    /// The generation being dialled, if any (at most one at a time).
    dialing: Option<u64>,
    ever_ready: bool,
    outage: Option<Outage>,
    /// When the current session became ready, and the outage it ended (for [`STABLE_AFTER`]).
    ready_at: Option<Instant>,
    last_outage: Option<Instant>,
    /// A `server_error` arrived on the current session (the label of a drop that follows).
    server_error: bool,
    rotation: Rotation,
    rotate_at: Option<Instant>,
    /// When the server will end the current session.
    limit_at: Option<Instant>,
    successor_opened: Option<Instant>,
    successor_limit: Option<Instant>,
    /// Between the server's `speech_started` and `speech_stopped`.
    pub(crate) caller_speaking: bool,
    /// Quiet caller frames in a row, counted while a successor waits.
    quiet_frames: u32,
    /// The server ended a caller turn and will answer it (VAD `create_response`): an answer
    /// is about to start even though none is in flight yet. Cleared when it starts, or after
    /// [`TURN_ANSWER_WAIT`].
    pub(crate) turn_pending_since: Option<Instant>,
    /// Caller audio sent to the current session and not known to be committed: since the
    /// caller's sentence began, or the last [`TAIL_IDLE_MS`] when silent. Kept as Twilio's
    /// μ-law (converted again if it is resent), so a pcm call holds 8 bytes per ms here, not 48.
    tail: tail::Tail,
    /// (instant, unix seconds) at the same moment, to read `expires_at`.
    wall: Option<(Instant, u64)>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            current: 1,
            next_generation: 2,
            dialing: Some(1),
            ever_ready: false,
            outage: None,
            ready_at: None,
            last_outage: None,
            server_error: false,
            rotation: Rotation::Idle,
            rotate_at: None,
            limit_at: None,
            successor_opened: None,
            successor_limit: None,
            caller_speaking: false,
            quiet_frames: 0,
            turn_pending_since: None,
            tail: tail::Tail::default(),
            wall: None,
        }
    }
}

impl Lifecycle {
    pub(crate) fn ever_ready(&self) -> bool {
        self.ever_ready
    }

    pub(crate) fn current(&self) -> u64 {
        self.current
    }

    /// The first session is dialled again (the call's dialect changed before it was
    /// configured): the new generation, now the one the call waits for and will use, so
    /// whatever the old socket still says or does is ignored.
    pub(crate) fn dial_first_again(&mut self) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.dialing = Some(generation);
        self.current = generation;
        generation
    }

    fn successor(&self) -> Option<u64> {
        match self.rotation {
            Rotation::Idle => None,
            Rotation::Dialing(g) => Some(g),
            Rotation::Ready { generation, .. } => Some(generation),
        }
    }

    fn unix_to_instant(&self, unix: u64, now: Instant) -> Option<Instant> {
        let (at, secs) = self.wall?;
        let now_unix = secs + now.saturating_duration_since(at).as_secs();
        Some(now + Duration::from_secs(unix.checked_sub(now_unix)?))
    }
}

impl Call {
    /// The generation of the session in use.
    pub fn upstream_generation(&self) -> u64 {
        self.upstream.current
    }

    /// Tells the call the wall-clock time (Unix seconds) at `now`, so that the `expires_at`
    /// the server announces can be read. Without it, sessions are assumed to last
    /// [`SESSION_LIMIT`].
    pub fn on_wall_clock(&mut self, unix_secs: u64, now: Instant) {
        self.upstream.wall = Some((now, unix_secs));
    }

    fn effect(&mut self, e: UpstreamEffect) {
        self.out.push_back(Output::Upstream(e));
    }

    /// The socket of `generation` is open.
    pub fn on_upstream_open(&mut self, generation: u64, now: Instant) {
        if self.is_ended() || self.park_while_pending(generation) {
            return;
        }
        if self.upstream.dialing != Some(generation) {
            // Opened after we stopped waiting for it.
            self.effect(UpstreamEffect::CloseUpstream { generation });
            return;
        }
        self.upstream.dialing = None;
        if self.upstream.rotation == Rotation::Dialing(generation) && self.upstream.outage.is_none()
        {
            self.successor_ready(generation, now);
            return;
        }
        self.upstream.rotation = Rotation::Idle;
        self.session_began(now, None);
        if !self.upstream.ever_ready {
            self.upstream.ever_ready = true;
            self.upstream.current = generation;
            self.configure_first_session(now);
        } else {
            self.restore(generation, now);
        }
    }

    /// Sets the rotation clock for a session that began at `opened`.
    fn session_began(&mut self, opened: Instant, limit: Option<Instant>) {
        let limit = limit.unwrap_or(opened + SESSION_LIMIT);
        self.upstream.limit_at = Some(limit);
        let by_config = opened + self.cfg.session_rotate_after;
        let by_limit = limit.checked_sub(ROTATE_MARGIN).unwrap_or(opened);
        self.upstream.rotate_at = Some(by_config.min(by_limit).max(opened));
        self.upstream.ready_at = Some(opened);
        self.upstream.server_error = false;
        // Set again by `restore` when this session ends an outage.
        self.upstream.last_outage = None;
    }

    /// A new session after a drop: configure it like the first, replay the conversation, then
    /// the caller audio the lost session never committed and what arrived during the gap.
    fn restore(&mut self, generation: u64, now: Instant) {
        let old = self.upstream.current;
        self.upstream.current = generation;
        let outage = self.upstream.outage.take();
        self.upstream.last_outage = outage.as_ref().map(|o| o.since);
        self.send_model(ClientEvent::SessionUpdate(Box::new(
            self.cfg.session.clone(),
        )));
        let replay = self.conversation.replay();
        let replayed_items = replay.len();
        self.out.extend(
            replay
                .into_iter()
                .map(|event| Output::ToRealtime { generation, event }),
        );
        self.upstream_ready = true;
        let resent_ms = self.prebuffered_ms();
        self.flush_prebuffer();
        self.out
            .push_back(Output::Event(CallEvent::UpstreamRestored {
                generation,
                previous: old,
                gap_ms: outage.map_or(0, |o| {
                    now.saturating_duration_since(o.since).as_millis() as u64
                }),
                replayed_items,
                resent_ms,
            }));
        self.flush_dtmf();
        self.silence_upstream_restored(now);
    }

    /// The answer streaming when its session ends: what was sent to Twilio plays on (the
    /// framer's remainder is flushed), and the conversation records where it stopped.
    fn cut_answer_in_flight(&mut self, now: Instant) {
        if let Some(item_id) = self.current_item.clone() {
            self.finish_item(now);
            if let Some(item) = self.playback.find(&item_id) {
                let heard_ms = item.sent / 8;
                let produced_ms = item.model_bytes / self.format.bytes_per_ms();
                self.conversation
                    .agent_interrupted(&item_id, heard_ms, produced_ms.max(heard_ms));
            }
        }
        self.live_response = None;
    }

    /// Puts the caller audio the current session never committed back in front of the
    /// buffer for the next session.
    fn requeue_tail(&mut self) {
        if self.upstream.tail.is_empty() {
            return;
        }
        let mut kept = self.upstream.tail.take();
        kept.extend_from_slice(&self.prebuffer);
        self.prebuffer = kept;
    }

    fn resend_tail(&mut self) {
        self.requeue_tail();
        self.flush_prebuffer();
    }

    /// Keeps a copy of caller audio sent to the session (see [`Lifecycle::tail`]).
    pub(crate) fn keep_tail(&mut self, bytes: &[u8]) {
        if self.cfg.upstream_retry.is_zero() {
            return;
        }
        let cap = if self.upstream.caller_speaking {
            (self.cfg.prebuffer_limit_ms * super::ULAW_BYTES_PER_MS) as usize
        } else {
            TAIL_IDLE_BYTES
        };
        self.upstream.tail.push(bytes, cap);
    }

    /// The caller stopped speaking (the server committed the sentence).
    pub(crate) fn caller_stopped(&mut self, now: Instant) {
        self.upstream.caller_speaking = false;
        let answers = match &self.cfg.session.turn_detection {
            TurnDetection::ServerVad {
                create_response, ..
            }
            | TurnDetection::SemanticVad {
                create_response, ..
            } => *create_response,
        };
        if answers {
            self.upstream.turn_pending_since = Some(now);
        }
        // A long sentence needed more chunks; they go back now (per sentence, not per frame).
        self.upstream.tail.keep_last(TAIL_IDLE_BYTES);
        self.upstream.tail.shrink();
    }

    /// The socket of `generation` could not be opened, or was lost.
    pub fn on_upstream_lost(&mut self, generation: u64, loss: UpstreamLoss, now: Instant) {
        if self.is_ended() {
            return;
        }
        let relevant = generation == self.upstream.current
            || self.upstream.dialing == Some(generation)
            || self.upstream.successor() == Some(generation);
        if !relevant {
            return; // a socket already replaced
        }
        let detail = format!("generation {generation}: {loss}");
        if loss.is_fatal() {
            self.anomaly("upstream_refused", detail);
            self.end(EndReason::UpstreamRefused);
            return;
        }
        if self.upstream.successor() == Some(generation) && self.upstream.outage.is_none() {
            // Only the successor failed: the current session goes on; try again later.
            self.anomaly("rotation_failed", detail);
            self.upstream.rotation = Rotation::Idle;
            if self.upstream.dialing == Some(generation) {
                self.upstream.dialing = None;
            }
            self.upstream.rotate_at = Some(now + ROTATE_RETRY);
            return;
        }
        let retry = self.cfg.upstream_retry;
        if !self.upstream.ever_ready || retry.is_zero() {
            self.anomaly("upstream_closed", detail);
            self.end(match loss {
                UpstreamLoss::Closed { .. } if self.upstream.ever_ready => {
                    EndReason::UpstreamClosed
                }
                _ => EndReason::UpstreamFailed,
            });
            return;
        }
        if self.upstream.dialing == Some(generation) {
            if let Some(o) = self.upstream.outage.as_mut() {
                // A re-dial failed: wait, then dial again, within the retry window.
                o.attempt += 1;
                let delay = BACKOFF[o.attempt.min(BACKOFF.len() - 1)];
                let next = now + delay;
                let give_up = o.since + retry;
                self.upstream.dialing = None;
                if next >= give_up {
                    self.give_up(detail);
                } else if let Some(o) = self.upstream.outage.as_mut() {
                    o.next_try = Some(next);
                    self.anomaly("upstream_retry", detail);
                }
                return;
            }
        }
        if generation != self.upstream.current || !self.upstream_ready {
            return; // an old socket, or one already being replaced
        }
        self.lost_current(generation, loss.label(), detail, now);
    }

    /// The session in use is gone: keep Twilio's side, and get a new session.
    fn lost_current(&mut self, generation: u64, label: &'static str, detail: String, now: Instant) {
        let reason = if self.upstream.server_error {
            "server_error"
        } else {
            label
        };
        self.upstream_ready = false;
        self.effect(UpstreamEffect::CloseUpstream { generation });
        self.cut_answer_in_flight(now);
        self.requeue_tail();
        // A session that failed soon after an outage ended continues that outage.
        let since = match (self.upstream.ready_at, self.upstream.last_outage) {
            (Some(ready), Some(prev)) if now.saturating_duration_since(ready) < STABLE_AFTER => {
                prev
            }
            _ => now,
        };
        self.out
            .push_back(Output::Event(CallEvent::UpstreamReconnecting {
                generation,
                reason,
                detail,
            }));
        match self.upstream.rotation {
            Rotation::Ready { .. } => {
                // The successor is set up already: use it now.
                self.switch_after_loss(now);
            }
            Rotation::Dialing(g) => {
                self.upstream.rotation = Rotation::Idle;
                self.upstream.dialing = Some(g);
                self.upstream.outage = Some(Outage {
                    since,
                    attempt: 0,
                    next_try: None,
                });
            }
            Rotation::Idle => {
                self.upstream.outage = Some(Outage {
                    since,
                    attempt: 0,
                    next_try: Some(now),
                });
                self.dial_next();
            }
        }
    }

    fn dial_next(&mut self) {
        let generation = self.upstream.next_generation;
        self.upstream.next_generation += 1;
        self.upstream.dialing = Some(generation);
        if let Some(o) = self.upstream.outage.as_mut() {
            o.next_try = None;
        }
        self.effect(UpstreamEffect::ConnectUpstream { generation });
    }

    fn give_up(&mut self, detail: String) {
        self.anomaly(
            "upstream_failed",
            format!(
                "no new session within {:?}: {detail}",
                self.cfg.upstream_retry
            ),
        );
        self.end(EndReason::UpstreamFailed);
    }

    /// When the upstream lifecycle needs a tick.
    pub(crate) fn upstream_deadline(&self) -> Option<Instant> {
        if let Some(o) = &self.upstream.outage {
            let give_up = o.since + self.cfg.upstream_retry;
            return Some(o.next_try.map_or(give_up, |t| t.min(give_up)));
        }
        match self.upstream.rotation {
            Rotation::Idle if self.upstream_ready => self.upstream.rotate_at,
            Rotation::Ready { .. } => self.force_at(),
            _ => None,
        }
    }

    pub(crate) fn upstream_tick(&mut self, now: Instant) {
        if let Some(o) = &self.upstream.outage {
            if now >= o.since + self.cfg.upstream_retry {
                self.give_up("every try failed".into());
            } else if o.next_try.is_some_and(|t| now >= t) && self.upstream.dialing.is_none() {
                self.dial_next();
            }
            return;
        }
        match self.upstream.rotation {
            Rotation::Idle => {
                if self.upstream_ready
                    && self.upstream.dialing.is_none()
                    && self.upstream.rotate_at.is_some_and(|t| now >= t)
                {
                    self.upstream.rotate_at = None;
                    let generation = self.upstream.next_generation;
                    self.upstream.next_generation += 1;
                    self.upstream.dialing = Some(generation);
                    self.upstream.rotation = Rotation::Dialing(generation);
                    self.effect(UpstreamEffect::ConnectUpstream { generation });
                }
            }
            Rotation::Ready { .. } => {
                if self.force_at().is_some_and(|t| now >= t) {
                    self.switch(now, true);
                } else {
                    self.maybe_switch(now);
                }
            }
            Rotation::Dialing(_) => {}
        }
    }

    /// A server event from the socket of `generation`: the session in use, a successor being
    /// set up, or a socket already replaced (ignored).
    pub fn on_realtime(&mut self, generation: u64, ev: ServerEvent<'_>, now: Instant) {
        self.count_usage(generation, &ev);
        if generation == self.upstream.current {
            self.on_session_event(ev, now);
        } else if self.upstream.successor() == Some(generation) && !self.is_ended() {
            // A successor only configures itself: it has no audio, so no turns.
            match ev {
                ServerEvent::SessionCreated { session }
                | ServerEvent::SessionUpdated { session } => {
                    if let Some(at) = session.expires_at {
                        self.upstream.successor_limit = self.upstream.unix_to_instant(at, now);
                    }
                }
                ServerEvent::Error { error } => {
                    let fatal = error
                        .code
                        .as_deref()
                        .is_some_and(|c| FATAL_CODES.contains(&c));
                    self.out.push_back(Output::Event(CallEvent::UpstreamError {
                        code: error.code,
                        message: error.message,
                        harmless: false,
                    }));
                    if fatal {
                        self.end(EndReason::UpstreamRefused);
                    }
                }
                _ => {}
            }
        }
        // Anything else is from a socket already replaced: ignored.
    }

    /// An `error` event on the current session (already reported as an event): the codes
    /// that end the call or its session.
    pub(crate) fn on_session_error(&mut self, code: Option<&str>, now: Instant) {
        match code {
            Some(c) if FATAL_CODES.contains(&c) => {
                self.anomaly("upstream_refused", format!("error {c}"));
                self.end(EndReason::UpstreamRefused);
            }
            Some("server_error") => self.upstream.server_error = true,
            Some("session_expired") if self.upstream_ready => {
                // The close (1001) follows; no point waiting for it.
                let generation = self.upstream.current;
                if self.cfg.upstream_retry.is_zero() {
                    return;
                }
                self.lost_current(
                    generation,
                    "session_expired",
                    format!("generation {generation}: session_expired"),
                    now,
                );
            }
            _ => {}
        }
    }
}
