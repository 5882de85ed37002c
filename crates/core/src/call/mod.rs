//! One call's state, as a sans-IO state machine.
//!
//! The shell feeds it inputs — a Twilio message, a Realtime event, the upstream connecting or
//! closing, a tick — each with the time it happened, and drains [`Output`]s with
//! [`Call::poll_output`]. Nothing in here awaits, reads a clock or touches a socket, so tests
//! drive it from scripts and fixtures deterministically.

pub mod bargein;
pub mod conversation;
mod downlink;
pub mod effects;
mod filler;
mod hangup;
mod held;
mod keypad_out;
pub mod mcp;
mod output;
pub mod phase;
pub mod playback;
mod settings;
pub mod silence;
mod timers;
pub mod timing;
pub mod tools;
mod uplink;
pub mod upstream;
mod usage;
pub mod wrapup;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audio::{Downsampler, Framer, Upsampler};
use crate::realtime::{AudioFormat, AudioPool, ClientEvent, Dialect, ServerEvent, SessionConfig};
use bargein::BargeInMode;
use conversation::Conversation;
pub use effects::{Effect, EffectId, EffectResult, UpstreamEffect};
pub use output::{CallEvent, EndReason, Output};
pub use phase::Phase;
use playback::Playback;
pub use timers::{Timer, DRAIN_HANGUP_MARGIN};
use tools::{CallInfo, ToolState, ToolsConfig};
pub use upstream::UpstreamLoss;

/// Per-call settings, shared by every call (validated once at start-up).
#[derive(Debug, Clone)]
pub struct CallConfig {
    pub dialect: Dialect,
    pub session: SessionConfig,
    /// If set, the model speaks first with these instructions.
    pub greeting: Option<String>,
    /// Whether and how the caller interrupts the agent (see [`bargein`]).
    pub barge_in: bargein::BargeInConfig,
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
    /// Checking on a caller who went quiet, and hanging up on one who stays so (off by default).
    pub silence: silence::SilenceConfig,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig {
            dialect: Dialect::Ga,
            session: SessionConfig::default(),
            greeting: None,
            barge_in: bargein::BargeInConfig::default(),
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
            silence: silence::SilenceConfig::default(),
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
    /// Where the call is in its life (see [`phase`]).
    phase: Phase,
    stream_sid: Option<String>,
    /// Messages for Twilio made before `start` named the stream (see [`held`]).
    held: held::Held,
    /// Settings still being decided, and a session parked meanwhile (see [`settings`]).
    settings: settings::Settings,
    /// The drain's hard end: the call ends as `Shutdown` then, goodbye heard or not.
    drain_deadline: Option<Instant>,
    last_twilio: Instant,
    opened_at: Instant,

    // Uplink.
    upstream_ready: bool,
    prebuffer: Vec<u8>,
    next_timestamp_ms: Option<u64>,
    /// Boxed, like `downsampler`: only a pcm call has them, and inline they would be reserved
    /// in every call's task (~330 bytes).
    upsampler: Option<Box<Upsampler>>,

    // Downlink.
    downsampler: Option<Box<Downsampler>>,
    framer: Framer,
    odd_byte: Option<u8>,
    /// The item whose audio is in the framer/resampler right now.
    current_item: Option<String>,
    live_response: Option<String>,
    /// Keys pressed but not yet told to the model, and when to tell it.
    dtmf_keys: String,
    dtmf_deadline: Option<Instant>,
    /// Agent frames handed out since the last `after_frames` recorded them as sent.
    framed_unsent: u64,
    /// Confirmed barge-in (pause, resume, the caller's voice activity): boxed, allocated once
    /// per call, `None` unless `barge_in.mode` is `confirm`.
    bargein: Option<Box<bargein::BargeIn>>,
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
    upstream: upstream::Lifecycle,

    /// The CallSid `start` must name, when the socket was opened for one call only (a softphone
    /// ticket). Boxed str: 16 bytes, and `None` for every phone call.
    required_call_sid: Option<Box<str>>,

    // Tools, hang-up, transfer.
    info: Option<CallInfo>,
    tools: ToolState,
    /// Boxed: set only while the call ends; inline it would be reserved all call long.
    ending: Option<Box<hangup::Ending>>,
    /// The call is to be refused politely once its session is ready (see `wrapup`).
    reject_pending: bool,
    filler: filler::Filler,
    silence: silence::Silence,
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
        let (upsampler, downsampler) = settings::resamplers(format);
        let mut out = VecDeque::with_capacity(8);
        // The first session is dialled at once, in parallel with Twilio's `start`: the shell
        // performs this like any other effect, before it waits for anything.
        out.push_back(Output::Upstream(UpstreamEffect::ConnectUpstream {
            generation: 1,
        }));
        let mut call = Call {
            cfg,
            format,
            // A 100 ms delta makes 5 frames + a mark; the queue grows if a batch is bigger.
            out,
            phase: Phase::AwaitingStart,
            stream_sid: None,
            held: held::Held::default(),
            settings: settings::Settings::default(),
            drain_deadline: None,
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
            framed_unsent: 0,
            bargein: None,
            dtmf_keys: String::new(),
            dtmf_deadline: None,
            before_start: 0,
            cancelled: VecDeque::new(),
            playback: Playback::new(format.bytes_per_ms()),
            required_call_sid: None,
            info: None,
            tools: ToolState::default(),
            ending: None,
            reject_pending: false,
            filler: filler::Filler::default(),
            silence: silence::Silence::default(),
            next_effect: 0,
            agent_speaking: false,
            turn_clock: timing::TurnClock::default(),
            conversation: Conversation::new(),
            upstream: upstream::Lifecycle::default(),
            bytes_buf: Vec::with_capacity(1024),
            ulaw_buf: Vec::new(),
            append_pool: Arc::new(AudioPool::default()),
            pcm_in: Vec::new(),
            pcm_out: Vec::new(),
        };
        call.bargein_configure();
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
        self.phase == Phase::Ended
    }

    /// Where the call is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn stream_sid(&self) -> Option<&str> {
        self.stream_sid.as_deref()
    }

    pub fn dialect(&self) -> Dialect {
        self.cfg.dialect
    }

    /// The call's settings as they stand (its profile's, once `start` chose it).
    pub fn config(&self) -> &Arc<CallConfig> {
        &self.cfg
    }

    /// Playback state, for tests and diagnostics.
    pub fn playback(&self) -> &Playback {
        &self.playback
    }

    /// The conversation so far.
    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// The shell finished effect `id`. A result for an effect the call no longer waits for
    /// (its call ended, or it gave up waiting) is ignored.
    pub fn on_effect_done(&mut self, id: EffectId, result: EffectResult, now: Instant) {
        if self.is_ended() {
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
        self.send_model(ClientEvent::UserText(format!(
            "[The caller pressed these keys on the phone keypad: {keys}]"
        )));
        if self.live_response.is_none() {
            self.send_model(ClientEvent::ResponseCreate { instructions: None });
        }
    }

    // ---- Realtime ----------------------------------------------------------------------

    /// The first session: configure it, greet, send what the caller said meanwhile.
    fn configure_first_session(&mut self, now: Instant) {
        self.upstream_ready = true;
        self.opening_progressed();
        self.send_model(ClientEvent::SessionUpdate(Box::new(
            self.cfg.session.clone(),
        )));
        if let Some(greeting) = &self.cfg.greeting {
            self.send_model(ClientEvent::ResponseCreate {
                instructions: Some(greeting.clone()),
            });
        }
        let buffered_ms = self.prebuffered_ms();
        self.flush_prebuffer();
        self.out
            .push_back(Output::Event(CallEvent::UpstreamReady { buffered_ms }));
        // Keys pressed while the session was being set up.
        self.flush_dtmf();
        self.wrapup_on_ready(now);
    }

    /// A server event from the session in use (see [`Call::on_realtime`]).
    fn on_session_event(&mut self, ev: ServerEvent<'_>, now: Instant) {
        if self.is_ended() {
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
            ServerEvent::SpeechStarted {
                audio_start_ms,
                item_id,
            } => {
                self.conversation
                    .caller_started(item_id.as_deref(), audio_start_ms);
                self.upstream.caller_speaking = true;
                self.out.push_back(Output::Event(CallEvent::SpeechStarted));
                self.turn_clock.on_speech_started();
                self.silence_caller_spoke();
                match self.cfg.barge_in.mode {
                    // The server's onset acts alone (the behaviour before confirmation).
                    BargeInMode::Server => self.barge_in(now),
                    // The bridge's own voice activity decides (see `bargein`).
                    BargeInMode::Confirm => self.bargein_turn_started(now),
                    BargeInMode::Off => {}
                }
            }
            ServerEvent::SpeechStopped { .. } => {
                self.turn_clock.on_speech_stopped(now);
                self.caller_stopped(now);
                self.bargein_turn_ended(now);
            }
            ServerEvent::ResponseCreated { response } => {
                self.answer_started();
                self.silence_response_started();
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
                let said = self
                    .conversation
                    .agent_said(item_id.as_deref(), &transcript);
                self.out
                    .push_back(Output::Event(CallEvent::AgentTranscript(said)));
            }
            ServerEvent::CallerTranscript {
                item_id,
                transcript,
            } => {
                self.bargein_words(&transcript, now);
                let said = self
                    .conversation
                    .caller_transcribed(item_id.as_deref(), &transcript);
                if let Some(said) = said {
                    self.out
                        .push_back(Output::Event(CallEvent::CallerTranscript(said)));
                }
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
                self.silence_agent_done(now);
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
                } else {
                    self.mcp_item_done(&item, now);
                }
            }
            ServerEvent::McpCallInProgress { item_id } => self.mcp_call_started(item_id, now),
            ServerEvent::Unknown => {}
        }
    }

    // ---- common -----------------------------------------------------------------------

    /// An event for the session in use.
    fn send_model(&mut self, event: ClientEvent) {
        self.out.push_back(Output::ToRealtime {
            generation: self.upstream.current(),
            event,
        });
    }

    fn anomaly(&mut self, kind: &'static str, detail: String) {
        self.out
            .push_back(Output::Event(CallEvent::Anomaly { kind, detail }));
    }

    fn end(&mut self, reason: EndReason) {
        if self.phase != Phase::Ended {
            self.phase = Phase::Ended;
            // Whatever was held for a stream that never started is never sent.
            self.held.discard();
            self.out.push_back(Output::Hangup(reason));
        }
    }

    /// An opening step happened (`start`, or the first session configured): the phase moves
    /// on unless the call is already on its way out.
    fn opening_progressed(&mut self) {
        if !self.phase.is_closing() {
            self.phase = Phase::opening(self.stream_sid.is_some(), self.upstream.ever_ready());
        }
    }

    /// The call began to end on purpose (`ending` was just set).
    fn ending_began(&mut self) {
        if self.phase != Phase::Ended {
            self.phase = Phase::Ending;
        }
    }

    /// An ending was abandoned (a transfer Twilio refused): the call goes on where it was.
    fn ending_abandoned(&mut self) {
        if self.phase == Phase::Ending {
            self.phase = Phase::opening(self.stream_sid.is_some(), self.upstream.ever_ready());
        }
    }
}
