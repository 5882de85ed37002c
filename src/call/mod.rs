//! One call's state, as a sans-IO state machine.
//!
//! The shell feeds it inputs — a Twilio message, a Realtime event, the upstream connecting or
//! closing, a tick — each with the time it happened, and drains [`Output`]s with
//! [`Call::poll_output`]. Nothing in here awaits, reads a clock or touches a socket, so tests
//! drive it from scripts and fixtures deterministically.

pub mod conversation;
pub mod effects;
mod filler;
mod hangup;
pub mod playback;
pub mod timing;
pub mod tools;
pub mod upstream;
pub mod wrapup;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::audio::{g711, Downsampler, Framer, Upsampler, ULAW_SILENCE};
use crate::realtime::{AudioFormat, AudioPool, ClientEvent, Dialect, ServerEvent, SessionConfig};
use crate::twilio::{Inbound, Outbound};
use conversation::Conversation;
pub use effects::{Effect, EffectId, EffectResult, UpstreamEffect};
use playback::{MarkEcho, Playback};
use tools::{CallInfo, ToolState, ToolsConfig};
pub use upstream::UpstreamLoss;

/// Per-call settings, shared by every call (validated once at start-up).
#[derive(Debug, Clone)]
pub struct CallConfig {
    pub dialect: Dialect,
    pub session: SessionConfig,
    /// If set, the model speaks first with these instructions.
    pub greeting: Option<String>,
    /// Interrupt the agent when the caller starts speaking.
    pub barge_in: bool,
    /// Longest gap in Twilio's timestamps filled with silence (a longer one is filled up to this).
    pub max_gap_fill_ms: u64,
    /// Caller audio kept while the upstream session is not ready yet.
    pub prebuffer_limit_ms: u64,
    /// The upstream must be connected within this long after the media socket opened.
    pub upstream_ready_timeout: Duration,
    /// Twilio sends media every 20 ms for the whole call: this long without any message means
    /// the peer vanished without closing.
    pub twilio_idle_timeout: Duration,
    /// Tell the model which keys the caller pressed (as a user text message), so an agent can
    /// take an account number or a menu choice by keypad.
    pub dtmf_to_model: bool,
    /// Keys pressed within this gap of each other go to the model as one message (`#` ends the
    /// entry at once).
    pub dtmf_gap: Duration,
    /// After the upstream drops, new sessions are tried for this long (0: the call ends, as
    /// before reconnects existed). See [`upstream`].
    pub upstream_retry: Duration,
    /// A session is replaced by a fresh one after this long (before the server's limit).
    pub session_rotate_after: Duration,
    /// Function tools, the built-in `end_call` / `transfer_call`, the filler.
    pub tools: ToolsConfig,
    /// The call is wrapped up (goodbye, then hang-up) this long after its media socket opened.
    pub max_call: Option<Duration>,
    /// Said (word for word) when answering machine detection finds a machine; the call then
    /// hangs up. Without it a machine is hung up on at once.
    pub voicemail_message: Option<String>,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            dialect: Dialect::Ga,
            session: SessionConfig::default(),
            greeting: None,
            barge_in: true,
            max_gap_fill_ms: 1000,
            prebuffer_limit_ms: 10_000,
            upstream_ready_timeout: Duration::from_secs(10),
            twilio_idle_timeout: Duration::from_secs(20),
            dtmf_to_model: true,
            dtmf_gap: Duration::from_millis(1500),
            upstream_retry: Duration::from_secs(10),
            session_rotate_after: Duration::from_secs(3300),
            tools: ToolsConfig::default(),
            max_call: None,
            voicemail_message: None,
        }
    }
}

/// Everything observable about a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    ToTwilio(Outbound),
    ToRealtime(ClientEvent),
    Event(CallEvent),
    /// The call is over: close both sockets.
    Hangup(EndReason),
    /// Upstream socket work for the shell; see [`UpstreamEffect`].
    Upstream(UpstreamEffect),
    /// Perform this and report back with [`Call::on_effect_done`] and the same id.
    Effect {
        id: EffectId,
        effect: Effect,
    },
}

/// Things worth a log line, a metric or a transcript entry.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    Started {
        stream_sid: String,
        call_sid: Option<String>,
        from: Option<String>,
    },
    /// `session.update` (and greeting, and buffered caller audio) went upstream.
    UpstreamReady {
        buffered_ms: u64,
    },
    SpeechStarted,
    BargeIn {
        cleared: bool,
        cancelled: bool,
        truncated: Vec<(String, u64)>,
    },
    ResponseDone {
        id: String,
        status: Option<String>,
    },
    /// The stream's labels from `start.customParameters` (`profile`, `direction`), for the
    /// live console. Sent once, right after `Started`.
    Labels {
        profile: Option<String>,
        direction: Option<String>,
    },
    /// Twilio echoed the last mark of a finished agent turn: the caller heard all of it.
    PlayoutDone,
    CallerTranscript(String),
    AgentTranscript(String),
    Dtmf(String),
    UpstreamError {
        code: Option<String>,
        message: Option<String>,
        /// Expected after our own `response.cancel` raced the server's: not a real problem.
        harmless: bool,
    },
    /// A tool call was answered (or refused, or a built-in acted on). `tool` is `unknown` for
    /// a name that is not offered; `seconds` is set for calls that ran something.
    ToolCall {
        tool: String,
        call_id: String,
        result: &'static str,
        seconds: Option<f64>,
    },
    /// Calls of a response that did not complete: not run.
    ToolSkipped {
        call_id: String,
        tool: String,
        response_status: String,
    },
    /// The model called `end_call` (with its reason, if it gave one).
    EndRequested {
        reason: String,
    },
    /// Twilio REST answered the hang-up or transfer update.
    CallUpdated {
        action: &'static str,
        ok: bool,
        seconds: f64,
    },
    /// The call was handed to `destination` (a configured target name).
    Transferring {
        destination: String,
    },
    /// The filler started playing while a tool runs.
    FillerPlayed,
    /// A response's first audio frames went to Twilio (just before this event): how long the
    /// model took to start (`response.created` → first delta), and when the caller's turn ended
    /// (`speech_stopped`), if this answers one. The shell times the write.
    AgentAudio {
        model_latency: Option<Duration>,
        speech_stopped_at: Option<Instant>,
    },
    /// The session in use was lost; a new one is on its way (`reason` is stable for metrics).
    UpstreamReconnecting {
        generation: u64,
        reason: &'static str,
        detail: String,
    },
    /// A new session took over after a loss: configured, conversation replayed, caller audio
    /// kept since the loss sent.
    UpstreamRestored {
        generation: u64,
        previous: u64,
        gap_ms: u64,
        replayed_items: usize,
        resent_ms: u64,
    },
    /// A successor session took over before the old one's time limit.
    SessionRotated {
        generation: u64,
        /// No quiet moment came before the limit.
        forced: bool,
    },
    /// Bad or unexpected input, handled; `kind` is stable for metrics.
    Anomaly {
        kind: &'static str,
        detail: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Twilio sent `stop`.
    CallerHungUp,
    /// Twilio's socket closed without `stop`.
    TwilioDisconnected,
    /// No Twilio message for `twilio_idle_timeout`.
    TwilioIdle,
    /// Twilio's stream is not μ-law/8000/mono.
    UnsupportedMediaFormat,
    /// Twilio's stream never sent a usable `start`.
    NoStart,
    /// The upstream could not be reached or failed, and every retry failed too.
    UpstreamFailed,
    /// The upstream refused us in a way no retry fixes (HTTP 401/403, `invalid_api_key`,
    /// `insufficient_quota`).
    UpstreamRefused,
    /// The upstream closed the session.
    UpstreamClosed,
    /// The upstream was not ready in time.
    UpstreamTimeout,
    /// The server is shutting down.
    Shutdown,
    /// The agent ended the call (`end_call`) after the caller heard the goodbye.
    AgentHungUp,
    /// The call was handed to a person (`transfer_call`); the stream ended because of it.
    Transferred,
    /// The call reached `max_call_seconds` and was wrapped up.
    MaxDuration,
    /// A machine answered (answering machine detection): the voicemail was left, or none is
    /// configured.
    Voicemail,
    /// The setup lookup answered `reject: true`: the call was refused politely.
    Rejected,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::CallerHungUp => "caller_hung_up",
            EndReason::TwilioDisconnected => "twilio_disconnected",
            EndReason::TwilioIdle => "twilio_idle",
            EndReason::UnsupportedMediaFormat => "unsupported_media_format",
            EndReason::NoStart => "no_start",
            EndReason::UpstreamFailed => "upstream_failed",
            EndReason::UpstreamRefused => "upstream_refused",
            EndReason::UpstreamClosed => "upstream_closed",
            EndReason::UpstreamTimeout => "upstream_timeout",
            EndReason::Shutdown => "shutdown",
            EndReason::AgentHungUp => "agent_hung_up",
            EndReason::Transferred => "transferred",
            EndReason::MaxDuration => "max_duration",
            EndReason::Voicemail => "voicemail",
            EndReason::Rejected => "rejected",
        }
    }
}

/// Largest media payload accepted from Twilio in one message (1 s; Twilio sends 20 ms).
const MAX_INBOUND_PAYLOAD: usize = 8000;
/// Largest audio delta accepted from the model in one event (decoded bytes; 10 s of PCM16).
const MAX_DELTA_BYTES: usize = 480_000;
/// Messages tolerated before Twilio's `start` (50 is one second of media).
const MAX_BEFORE_START: u32 = 50;
/// Buffered caller audio is sent upstream in appends of at most this many ms. (The upstream
/// WebSocket's write buffer keeps the capacity of the largest message it ever held: a call
/// that buffered a whole second of PCM16 keeps ~64 KiB for its life. Rare: the upstream
/// normally connects within a frame or two.)
const FLUSH_CHUNK_MS: u64 = 1000;
/// Outputs the queue keeps room for between wake-ups (a 100 ms delta is ~7: five or six
/// frames and a mark); more is given back once the queue is drained.
const OUTPUTS_KEPT: usize = 16;
/// Caller audio as Twilio sends it: μ-law, 8 kHz.
pub(crate) const ULAW_BYTES_PER_MS: u64 = AudioFormat::Pcmu.bytes_per_ms();

/// One call.
pub struct Call {
    cfg: Arc<CallConfig>,
    format: AudioFormat,
    out: VecDeque<Output>,
    ended: bool,
    stream_sid: Option<String>,
    last_twilio: Instant,
    opened_at: Instant,

    // Uplink.
    upstream_ready: bool,
    prebuffer: Vec<u8>,
    next_timestamp_ms: Option<u64>,
    upsampler: Option<Upsampler>,

    // Downlink.
    downsampler: Option<Downsampler>,
    framer: Framer,
    odd_byte: Option<u8>,
    /// The item whose audio is in the framer/resampler right now.
    current_item: Option<String>,
    live_response: Option<String>,
    /// Keys pressed but not yet told to the model, and when to tell it.
    dtmf_keys: String,
    dtmf_deadline: Option<Instant>,
    /// Twilio messages seen before `start`.
    before_start: u32,
    /// Responses we cancelled: their late deltas are dropped.
    cancelled: VecDeque<String>,
    playback: Playback,
    /// Agent audio went out and its playout has not finished or been cut (for the events).
    agent_speaking: bool,
    turn_clock: timing::TurnClock,
    /// Who said what (feeds context replay into a new session).
    conversation: Conversation,
    /// Upstream generations, reconnects, rotation.
    up: upstream::Lifecycle,

    // Tools, hang-up, transfer.
    info: Option<CallInfo>,
    tools: ToolState,
    ending: Option<hangup::Ending>,
    /// The call is to be refused politely once its session is ready (see `wrapup`).
    reject_pending: bool,
    filler: filler::Filler,
    next_effect: EffectId,

    // Reused scratch buffers (no per-frame allocation once warm). They start small and grow
    // to the largest frame/delta seen: capacity that is never touched still costs RSS once
    // malloc hands out pages, and a thousand calls multiply it.
    bytes_buf: Vec<u8>,
    /// μ-law out of the downsampler (separate: `bytes_buf` holds the delta meanwhile).
    ulaw_buf: Vec<u8>,
    /// Buffers for appends, returned when the shell drops the event.
    append_pool: Arc<AudioPool>,
    pcm_in: Vec<i16>,
    pcm_out: Vec<i16>,
}

impl Call {
    /// A new call whose media socket opened at `now`.
    pub fn new(cfg: Arc<CallConfig>, now: Instant) -> Call {
        let format = cfg.session.audio_format;
        let (upsampler, downsampler) = match format {
            AudioFormat::Pcmu => (None, None),
            AudioFormat::Pcm24k => (Upsampler::new().ok(), Downsampler::new().ok()),
        };
        let mut call = Call {
            cfg,
            format,
            // A 100 ms delta makes 5 frames + a mark; the queue grows if a batch is bigger.
            out: VecDeque::with_capacity(8),
            ended: false,
            stream_sid: None,
            last_twilio: now,
            opened_at: now,
            upstream_ready: false,
            prebuffer: Vec::new(),
            next_timestamp_ms: None,
            upsampler,
            downsampler,
            framer: Framer::new(),
            odd_byte: None,
            current_item: None,
            live_response: None,
            dtmf_keys: String::new(),
            dtmf_deadline: None,
            before_start: 0,
            cancelled: VecDeque::new(),
            playback: Playback::new(format.bytes_per_ms()),
            info: None,
            tools: ToolState::default(),
            ending: None,
            reject_pending: false,
            filler: filler::Filler::default(),
            next_effect: 0,
            agent_speaking: false,
            turn_clock: timing::TurnClock::default(),
            conversation: Conversation::new(),
            up: upstream::Lifecycle::default(),
            bytes_buf: Vec::with_capacity(1024),
            ulaw_buf: Vec::new(),
            append_pool: Arc::new(AudioPool::default()),
            pcm_in: Vec::new(),
            pcm_out: Vec::new(),
        };
        if format == AudioFormat::Pcm24k && (call.upsampler.is_none() || call.downsampler.is_none())
        {
            call.anomaly("resampler_init", "could not build the resamplers".into());
            call.end(EndReason::UpstreamFailed);
        }
        call
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.out.pop_front();
        if out.is_none() && self.out.capacity() > OUTPUTS_KEPT {
            // A burst (several deltas taken in one wake-up, or one long delta: a frame each)
            // grew the queue; a queue keeps its largest capacity, so give it back once drained.
            self.out.shrink_to(OUTPUTS_KEPT);
        }
        out
    }

    /// Whether outputs are waiting to be polled.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn stream_sid(&self) -> Option<&str> {
        self.stream_sid.as_deref()
    }

    pub fn dialect(&self) -> Dialect {
        self.cfg.dialect
    }

    /// Playback state, for tests and diagnostics.
    pub fn playback(&self) -> &Playback {
        &self.playback
    }

    /// The conversation so far.
    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// When the shell should call [`Call::on_tick`] next.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        let idle = self.last_twilio + self.cfg.twilio_idle_timeout;
        let mut next = if self.up.ever_ready() {
            idle
        } else {
            idle.min(self.opened_at + self.cfg.upstream_ready_timeout)
        };
        for d in [
            self.dtmf_deadline,
            self.tools.next_deadline(),
            self.ending_next_deadline(),
            self.filler_next_deadline(),
            self.wrapup_next_deadline(),
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(d);
        }
        if let Some(d) = self.upstream_deadline() {
            next = next.min(d);
        }
        Some(next)
    }

    /// The shell finished effect `id`. A result for an effect the call no longer waits for
    /// (its call ended, or it gave up waiting) is ignored.
    pub fn on_effect_done(&mut self, id: EffectId, result: EffectResult, now: Instant) {
        if self.ended {
            return;
        }
        let awaited = match result {
            EffectResult::Tool(outcome) => self.tool_done(id, outcome, now),
            EffectResult::CallUpdated(r) => self.call_update_done(id, r, now),
        };
        if !awaited {
            self.anomaly("late_effect_result", format!("effect {id} ignored"));
        }
    }

    pub fn on_tick(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        self.upstream_tick(now);
        if self.ended {
            return;
        }
        if !self.up.ever_ready() && now >= self.opened_at + self.cfg.upstream_ready_timeout {
            self.anomaly(
                "upstream_timeout",
                format!(
                    "upstream not ready after {:?}",
                    self.cfg.upstream_ready_timeout
                ),
            );
            self.end(EndReason::UpstreamTimeout);
        } else if now >= self.last_twilio + self.cfg.twilio_idle_timeout {
            self.anomaly(
                "twilio_idle",
                format!(
                    "no message from Twilio for {:?}",
                    self.cfg.twilio_idle_timeout
                ),
            );
            self.end(EndReason::TwilioIdle);
        } else if self.dtmf_deadline.is_some_and(|d| now >= d) {
            self.flush_dtmf();
        }
        if !self.ended {
            self.tools_on_tick(now);
            self.filler_on_tick(now);
            self.wrapup_on_tick(now);
            self.ending_progress(now);
        }
    }

    /// Sends the keys pressed so far to the model as one user message, and asks for an answer
    /// unless one is being generated (a `response.create` then would be refused; the model sees
    /// the keys in its next turn). Before the session is ready the keys wait for it.
    fn flush_dtmf(&mut self) {
        if self.dtmf_keys.is_empty() || !self.upstream_ready {
            self.dtmf_deadline = None;
            return;
        }
        self.dtmf_deadline = None;
        let keys = std::mem::take(&mut self.dtmf_keys);
        self.conversation.caller_said(&format!(
            "[The caller pressed these keys on the phone keypad: {keys}]"
        ));
        self.out
            .push_back(Output::ToRealtime(ClientEvent::UserText(format!(
                "[The caller pressed these keys on the phone keypad: {keys}]"
            ))));
        if self.live_response.is_none() {
            self.out
                .push_back(Output::ToRealtime(ClientEvent::ResponseCreate {
                    instructions: None,
                }));
        }
    }

    // ---- Twilio ------------------------------------------------------------------------

    pub fn on_twilio(&mut self, msg: Inbound<'_>, now: Instant) {
        if self.ended {
            return;
        }
        self.last_twilio = now;
        match msg {
            Inbound::Connected { .. } => {}
            Inbound::Start { stream_sid, start } => {
                if self.stream_sid.is_some() {
                    self.anomaly("duplicate_start", format!("second start for {stream_sid}"));
                    return;
                }
                if !start.media_format.is_mulaw_8k_mono() {
                    self.anomaly(
                        "unsupported_media_format",
                        format!(
                            "{:?}: only audio/x-mulaw 8000 Hz mono is supported",
                            start.media_format
                        ),
                    );
                    self.end(EndReason::UnsupportedMediaFormat);
                    return;
                }
                self.stream_sid = Some(stream_sid.clone().into_owned());
                let params = &start.custom_parameters;
                self.info = Some(CallInfo {
                    stream_sid: stream_sid.clone().into_owned(),
                    call_sid: start.call_sid.clone(),
                    account_sid: start.account_sid.clone(),
                    from: params.get("From").cloned(),
                    to: params.get("To").cloned(),
                    parameters: params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                });
                self.out.push_back(Output::Event(CallEvent::Started {
                    stream_sid: stream_sid.into_owned(),
                    call_sid: start.call_sid,
                    from: start.custom_parameters.get("From").cloned(),
                }));
                self.out.push_back(Output::Event(CallEvent::Labels {
                    profile: start.custom_parameters.get("profile").cloned(),
                    direction: start.custom_parameters.get("direction").cloned(),
                }));
            }
            Inbound::Media { stream_sid, media } => {
                if !self.is_our_stream(&stream_sid, "media") {
                    return;
                }
                if media.track.as_deref().is_some_and(|t| t != "inbound") {
                    return; // outbound track echo of a both_tracks stream
                }
                if media.payload.len() > MAX_INBOUND_PAYLOAD * 4 / 3 + 4 {
                    self.anomaly(
                        "oversize_media",
                        format!("{} base64 chars", media.payload.len()),
                    );
                    return;
                }
                let mut bytes = std::mem::take(&mut self.bytes_buf);
                bytes.clear();
                if let Err(e) = base64::engine::general_purpose::STANDARD
                    .decode_vec(&*media.payload, &mut bytes)
                {
                    self.anomaly("bad_media_payload", e.to_string());
                    self.bytes_buf = bytes;
                    return;
                }
                self.fill_gap(media.timestamp, bytes.len() as u64);
                self.uplink(&bytes);
                // A rotation waits for a quiet moment; frames come every 20 ms.
                self.rotation_frame(&bytes, now);
                self.bytes_buf = bytes;
            }
            Inbound::Dtmf { stream_sid, dtmf } => {
                if !self.is_our_stream(&stream_sid, "dtmf") {
                    return;
                }
                if self.cfg.dtmf_to_model && dtmf.digit.len() <= 2 && self.dtmf_keys.len() < 64 {
                    self.dtmf_keys.push_str(&dtmf.digit);
                    self.dtmf_deadline = Some(now + self.cfg.dtmf_gap);
                    if dtmf.digit == "#" {
                        self.flush_dtmf();
                    }
                }
                self.out
                    .push_back(Output::Event(CallEvent::Dtmf(dtmf.digit)));
            }
            Inbound::Mark { stream_sid, mark } => {
                if !self.is_our_stream(&stream_sid, "mark") {
                    return;
                }
                match self.playback.on_mark(&mark.name, now) {
                    MarkEcho::Unknown => self.anomaly("unknown_mark", mark.name.into_owned()),
                    MarkEcho::Played(_)
                        if self.agent_speaking
                            && self.current_item.is_none()
                            && !self.playback.audible(now) =>
                    {
                        self.agent_speaking = false;
                        self.out.push_back(Output::Event(CallEvent::PlayoutDone));
                    }
                    _ => {}
                }
                if self.ending.is_some() {
                    self.ending_progress(now);
                }
            }
            Inbound::Stop { stream_sid } => {
                if self.is_our_stream(&stream_sid, "stop") {
                    // After our own hang-up or transfer, the stop is that working.
                    self.end(self.planned_end().unwrap_or(EndReason::CallerHungUp));
                }
            }
            Inbound::Unknown => {}
        }
    }

    /// Twilio's socket closed (with or without `stop`).
    pub fn on_twilio_closed(&mut self, _now: Instant) {
        self.end(self.planned_end().unwrap_or(EndReason::TwilioDisconnected));
    }

    fn is_our_stream(&mut self, sid: &str, what: &str) -> bool {
        match &self.stream_sid {
            Some(ours) if ours == sid => true,
            Some(_) => {
                self.anomaly("foreign_stream", format!("{what} for stream {sid} ignored"));
                false
            }
            None => {
                self.anomaly("before_start", format!("{what} before start ignored"));
                // Twilio always sends `start` first; a stream still without one after a second
                // of messages (e.g. a `start` we could not parse) would be a silently dead call.
                self.before_start += 1;
                if self.before_start >= MAX_BEFORE_START {
                    self.end(EndReason::NoStart);
                }
                false
            }
        }
    }

    /// Twilio's timestamps are ms since the stream started; a jump means lost packets. Filling
    /// the gap with silence keeps the model's clock (VAD, `audio_start_ms`) on the caller's.
    fn fill_gap(&mut self, timestamp: Option<u64>, payload_bytes: u64) {
        let Some(ts) = timestamp else { return };
        if let Some(expected) = self.next_timestamp_ms {
            // Half a frame of slack: Twilio's timestamps jitter by a millisecond or two.
            if ts > expected + 10 {
                let gap = (ts - expected).min(self.cfg.max_gap_fill_ms);
                self.anomaly(
                    "media_gap",
                    format!("{} ms missing, filled {gap} ms", ts - expected),
                );
                let silence = [ULAW_SILENCE; 160];
                let mut left = gap * 8;
                while left > 0 {
                    let n = left.min(160) as usize;
                    self.uplink(&silence[..n]);
                    left -= n as u64;
                }
            }
        }
        self.next_timestamp_ms = Some(ts + payload_bytes / 8);
    }

    /// Caller μ-law audio on its way to the model. Until a session is ready it waits in the
    /// prebuffer as μ-law (8 bytes per ms whatever the upstream format: PCM16 at 24 kHz
    /// would be 48), and is converted when it is sent.
    fn uplink(&mut self, ulaw: &[u8]) {
        if !self.upstream_ready {
            let limit = (self.cfg.prebuffer_limit_ms * ULAW_BYTES_PER_MS) as usize;
            if self.prebuffer.len() + ulaw.len() > limit {
                self.anomaly(
                    "prebuffer_full",
                    format!(
                        "upstream not ready; {} bytes of caller audio dropped",
                        ulaw.len()
                    ),
                );
                return;
            }
            self.prebuffer.extend_from_slice(ulaw);
            return;
        }
        self.send_caller_audio(ulaw);
    }

    /// Converts caller μ-law to the session's format and appends it; a copy is kept for a
    /// reconnect (see `Lifecycle::tail`).
    fn send_caller_audio(&mut self, ulaw: &[u8]) {
        let mut upstream = self.append_pool.take();
        match self.format {
            AudioFormat::Pcmu => upstream.extend_from_slice(ulaw),
            AudioFormat::Pcm24k => {
                let Some(up) = self.upsampler.as_mut() else {
                    return;
                };
                self.pcm_in.clear();
                g711::decode_into(ulaw, &mut self.pcm_in);
                self.pcm_out.clear();
                if let Err(e) = up.process(&self.pcm_in, &mut self.pcm_out) {
                    self.anomaly("resample_up", e.to_string());
                    return;
                }
                upstream.reserve(self.pcm_out.len() * 2);
                for s in &self.pcm_out {
                    upstream.extend_from_slice(&s.to_le_bytes());
                }
            }
        }
        self.keep_tail(ulaw);
        if upstream.is_empty() {
            return;
        }
        self.out
            .push_back(Output::ToRealtime(ClientEvent::AppendAudio(upstream)));
    }

    /// Replaces the call's settings — the agent profile chosen at Twilio's `start` — while the
    /// upstream session is not configured yet. Refused (`false`) after that, or when the audio
    /// format or dialect would change (the codecs are set up when the call is created).
    pub fn set_config(&mut self, cfg: Arc<CallConfig>) -> bool {
        if self.upstream_ready
            || cfg.session.audio_format != self.format
            || cfg.dialect != self.cfg.dialect
        {
            return false;
        }
        self.cfg = cfg;
        true
    }

    // ---- Realtime ----------------------------------------------------------------------

    /// The upstream socket the shell dialled is open (generation 1, or whichever is being
    /// dialled): see [`Call::on_upstream_open`].
    pub fn on_upstream_connected(&mut self, now: Instant) {
        if let Some(generation) = self.up_dialing() {
            self.on_upstream_open(generation, now);
        }
    }

    fn up_dialing(&self) -> Option<u64> {
        if self.up.ever_ready() {
            None
        } else {
            Some(1)
        }
    }

    /// The first session: configure it, greet, send what the caller said meanwhile.
    fn configure_first_session(&mut self, now: Instant) {
        self.upstream_ready = true;
        self.out
            .push_back(Output::ToRealtime(ClientEvent::SessionUpdate(Box::new(
                self.cfg.session.clone(),
            ))));
        if let Some(greeting) = &self.cfg.greeting {
            self.out
                .push_back(Output::ToRealtime(ClientEvent::ResponseCreate {
                    instructions: Some(greeting.clone()),
                }));
        }
        let buffered_ms = self.prebuffered_ms();
        self.flush_prebuffer();
        self.out
            .push_back(Output::Event(CallEvent::UpstreamReady { buffered_ms }));
        // Keys pressed while the session was being set up.
        self.flush_dtmf();
        self.wrapup_on_ready(now);
    }

    /// Caller audio waiting for a session, in ms.
    fn prebuffered_ms(&self) -> u64 {
        self.prebuffer.len() as u64 / ULAW_BYTES_PER_MS
    }

    /// Sends the buffered caller audio to the session in use, in appends of bounded size.
    fn flush_prebuffer(&mut self) {
        let chunk = (FLUSH_CHUNK_MS * ULAW_BYTES_PER_MS) as usize;
        let buffered = std::mem::take(&mut self.prebuffer);
        for part in buffered.chunks(chunk) {
            self.send_caller_audio(part);
        }
    }

    /// The socket in use closed or failed (`failed`: an error rather than a close frame): see
    /// [`Call::on_upstream_lost`], which the shell calls with the generation and the cause.
    pub fn on_upstream_closed(&mut self, failed: bool, detail: String, now: Instant) {
        let generation = self.up_dialing().unwrap_or(self.upstream_generation());
        let loss = if !self.up.ever_ready() {
            UpstreamLoss::ConnectFailed(detail)
        } else if failed {
            UpstreamLoss::Dropped(detail)
        } else {
            UpstreamLoss::Closed {
                code: 1000,
                reason: detail,
            }
        };
        self.on_upstream_lost(generation, loss, now);
    }

    pub fn on_realtime(&mut self, ev: ServerEvent<'_>, now: Instant) {
        if self.ended {
            return;
        }
        match ev {
            ServerEvent::SessionCreated { session } | ServerEvent::SessionUpdated { session } => {
                self.on_session_expiry(session.expires_at, now);
            }
            ServerEvent::Error { error } => {
                let harmless = error.code.as_deref() == Some("response_cancel_not_active");
                let code = error.code.clone();
                self.out.push_back(Output::Event(CallEvent::UpstreamError {
                    code: error.code,
                    message: error.message,
                    harmless,
                }));
                self.on_session_error(code.as_deref(), now);
            }
            ServerEvent::SpeechStarted { .. } => {
                self.up.caller_speaking = true;
                self.out.push_back(Output::Event(CallEvent::SpeechStarted));
                self.turn_clock.on_speech_started();
                if self.cfg.barge_in {
                    self.barge_in(now);
                }
            }
            ServerEvent::SpeechStopped { .. } => {
                self.turn_clock.on_speech_stopped(now);
                self.caller_stopped(now);
            }
            ServerEvent::ResponseCreated { response } => {
                self.answer_started();
                self.ending_on_response_created(&response.id);
                self.live_response = Some(response.id);
                self.turn_clock.on_response_created(now);
            }
            ServerEvent::AudioDelta(d) => self.downlink(&d.response_id, &d.item_id, &d.delta, now),
            ServerEvent::AudioDone { item_id, .. } => {
                if let Some(id) = item_id {
                    if self.current_item.as_deref() == Some(id.as_str()) {
                        self.finish_item(now);
                    }
                }
            }
            ServerEvent::AgentTranscriptDelta { item_id, delta } => {
                self.conversation.agent_delta(item_id.as_deref(), &delta);
            }
            ServerEvent::AgentTranscript {
                item_id,
                transcript,
            } => {
                self.conversation
                    .agent_said(item_id.as_deref(), &transcript);
                self.out
                    .push_back(Output::Event(CallEvent::AgentTranscript(transcript)));
            }
            ServerEvent::CallerTranscript { transcript } => {
                self.conversation.caller_said(&transcript);
                self.out
                    .push_back(Output::Event(CallEvent::CallerTranscript(transcript)));
            }
            ServerEvent::ResponseDone { response } => {
                // A response.done without output_audio.done (e.g. failed): flush what we hold.
                if self.current_item.is_some() {
                    self.finish_item(now);
                }
                if self.live_response.as_deref() == Some(response.id.as_str()) {
                    self.live_response = None;
                }
                self.tools_on_response_done(&response, now);
                self.ending_on_response_done(&response.id, now);
                self.out.push_back(Output::Event(CallEvent::ResponseDone {
                    id: response.id,
                    status: response.status,
                }));
                self.maybe_switch(now);
            }
            ServerEvent::FunctionCallArgumentsDone(f) => {
                self.tool_call_seen(
                    f.response_id.as_deref(),
                    &f.call_id,
                    f.name.as_deref(),
                    &f.arguments,
                );
            }
            ServerEvent::OutputItemDone { response_id, item } => {
                if let Some((call_id, name, args)) = item.function_call() {
                    self.tool_call_seen(response_id.as_deref(), call_id, Some(name), args);
                }
            }
            ServerEvent::Unknown => {}
        }
    }

    /// The caller started talking over the agent: stop the agent's audio at the caller's ear
    /// first (`clear`), then stop the model generating (`response.cancel`), then tell the model
    /// where it was cut off (`conversation.item.truncate` at what was heard, not what was sent).
    fn barge_in(&mut self, now: Instant) {
        self.filler_stop(now);
        let audible = self.playback.audible(now) || self.framer.pending() > 0;
        let cancel = self.live_response.take();
        if !audible && cancel.is_none() {
            return;
        }
        let mut truncated = Vec::new();
        self.agent_speaking = false;
        if audible {
            self.out.push_back(Output::ToTwilio(Outbound::Clear));
            let heard = self.playback.on_clear(now);
            truncated = self.playback.truncate_after(heard);
            self.reset_downlink();
        }
        if let Some(id) = &cancel {
            self.out
                .push_back(Output::ToRealtime(ClientEvent::ResponseCancel));
            if self.cancelled.len() == 8 {
                self.cancelled.pop_front();
            }
            self.cancelled.push_back(id.clone());
        }
        // In pcm mode the downsampler trims its filter delay, so a μ-law byte position maps to
        // the same instant of the model's 24 kHz audio: no correction needed here.
        for (item_id, ms) in &truncated {
            let produced = self
                .playback
                .find(item_id)
                .map_or(*ms, |i| i.model_bytes / self.format.bytes_per_ms());
            self.conversation.agent_interrupted(item_id, *ms, produced);
            self.out
                .push_back(Output::ToRealtime(ClientEvent::Truncate {
                    item_id: item_id.clone(),
                    audio_end_ms: *ms,
                }));
        }
        self.out.push_back(Output::Event(CallEvent::BargeIn {
            cleared: audible,
            cancelled: cancel.is_some(),
            truncated,
        }));
    }

    fn reset_downlink(&mut self) {
        self.framer.clear();
        self.odd_byte = None;
        self.current_item = None;
        if let Some(d) = self.downsampler.as_mut() {
            d.reset();
        }
    }

    /// Model audio on its way to the caller: decoded, resampled if need be, cut into 20 ms
    /// frames, sent at once (Twilio queues and plays in order; sending ahead costs no latency),
    /// then a mark so we learn when the caller has heard it.
    fn downlink(&mut self, response_id: &str, item_id: &str, delta: &str, now: Instant) {
        if self.cancelled.iter().any(|r| r == response_id) || self.playback.is_truncated(item_id) {
            return; // late audio of an interrupted response
        }
        if delta.len() > MAX_DELTA_BYTES * 4 / 3 + 4 {
            self.anomaly("oversize_delta", format!("{} base64 chars", delta.len()));
            return;
        }
        let mut bytes = std::mem::take(&mut self.bytes_buf);
        bytes.clear();
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode_vec(delta, &mut bytes) {
            self.anomaly("bad_audio_delta", e.to_string());
            self.bytes_buf = bytes;
            return;
        }
        if self.filler.is_playing() {
            self.filler_stop(now);
        }
        self.turn_clock.on_delta(now);
        if self.current_item.as_deref() != Some(item_id) {
            // A new item: finish the previous one's tail first.
            if self.current_item.is_some() {
                self.finish_item(now);
            }
            self.current_item = Some(item_id.to_owned());
        }
        match self.playback.item(item_id, response_id) {
            Some(item) => item.model_bytes += bytes.len() as u64,
            None => {
                self.bytes_buf = bytes;
                return;
            }
        }
        let sent = match self.format {
            AudioFormat::Pcmu => self.frame_out(&bytes),
            AudioFormat::Pcm24k => {
                self.pcm_in.clear();
                let mut it = bytes.iter().copied();
                if let Some(lo) = self.odd_byte.take() {
                    if let Some(hi) = it.next() {
                        self.pcm_in.push(i16::from_le_bytes([lo, hi]));
                    }
                }
                let rest: &[u8] = &bytes[bytes.len() - it.len()..];
                let mut pairs = rest.chunks_exact(2);
                for p in &mut pairs {
                    self.pcm_in.push(i16::from_le_bytes([p[0], p[1]]));
                }
                if let [b] = pairs.remainder() {
                    self.odd_byte = Some(*b);
                }
                self.resample_and_frame(false)
            }
        };
        self.bytes_buf = bytes;
        self.after_frames(item_id, sent, now);
    }

    /// Downsamples `pcm_in` (or flushes the resampler), encodes, frames. Returns bytes framed.
    fn resample_and_frame(&mut self, flush: bool) -> u64 {
        let Some(down) = self.downsampler.as_mut() else {
            return 0;
        };
        self.pcm_out.clear();
        let r = if flush {
            down.flush(&mut self.pcm_out)
        } else {
            down.process(&self.pcm_in, &mut self.pcm_out)
        };
        if let Err(e) = r {
            self.anomaly("resample_down", e.to_string());
            return 0;
        }
        let mut ulaw = std::mem::take(&mut self.ulaw_buf);
        ulaw.clear();
        g711::encode_into(&self.pcm_out, &mut ulaw);
        let n = self.frame_out(&ulaw);
        self.ulaw_buf = ulaw;
        n
    }

    /// Pushes μ-law bytes through the framer; complete frames go to Twilio.
    fn frame_out(&mut self, ulaw: &[u8]) -> u64 {
        let mut frames = 0u64;
        let out = &mut self.out;
        self.framer.push(ulaw, |f| {
            out.push_back(Output::ToTwilio(Outbound::Media(*f)));
            frames += 1;
        });
        frames * crate::audio::FRAME_BYTES as u64
    }

    fn after_frames(&mut self, item_id: &str, sent: u64, now: Instant) {
        if sent == 0 {
            return;
        }
        // Until the last mark of the turn echoes (`PlayoutDone`) or a barge-in cuts it.
        self.agent_speaking = true;
        self.playback.on_sent(item_id, sent, now);
        if let Some(name) = self.playback.mark(item_id) {
            self.out.push_back(Output::ToTwilio(Outbound::Mark(name)));
        }
        if let Some(ev) = self.turn_clock.on_frames_sent() {
            self.out.push_back(Output::Event(ev));
        }
    }

    /// The end of an item's audio: push out what the resampler and framer still hold (the
    /// last frame padded with μ-law silence) and mark it.
    fn finish_item(&mut self, now: Instant) {
        let Some(item_id) = self.current_item.take() else {
            return;
        };
        let mut sent = 0;
        if self.format == AudioFormat::Pcm24k {
            self.odd_byte = None;
            sent += self.resample_and_frame(true);
        }
        if let Some(last) = self.framer.flush() {
            self.out.push_back(Output::ToTwilio(Outbound::Media(last)));
            sent += crate::audio::FRAME_BYTES as u64;
        }
        self.after_frames(&item_id, sent, now);
        // Nothing left to send and every mark already echoed: no later echo will say so.
        if sent == 0 && self.agent_speaking && !self.playback.audible(now) {
            self.agent_speaking = false;
            self.out.push_back(Output::Event(CallEvent::PlayoutDone));
        }
    }

    // ---- common -----------------------------------------------------------------------

    fn anomaly(&mut self, kind: &'static str, detail: String) {
        self.out
            .push_back(Output::Event(CallEvent::Anomaly { kind, detail }));
    }

    fn end(&mut self, reason: EndReason) {
        if !self.ended {
            self.ended = true;
            self.out.push_back(Output::Hangup(reason));
        }
    }
}
