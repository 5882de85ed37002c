//! What a call gives out: the messages for the two sockets and the effects for the shell
//! ([`Output`]), what the console, metrics and report are told ([`CallEvent`]), and how a call
//! ended ([`EndReason`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bargein::BargeInDecision;
use super::effects::{Effect, EffectId, UpstreamEffect};
use crate::realtime::{ClientEvent, TokenUsage};
use crate::twilio::Outbound;

/// Everything observable about a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    ToTwilio(Outbound),
    /// An event for the model, on the socket of this generation: the session in use, or a
    /// successor being set up (see [`upstream`]). The only way anything reaches the model.
    ToRealtime {
        generation: u64,
        event: ClientEvent,
    },
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
    /// Confirmed caller speech paused the agent (`clear`; the rest is kept): how long after
    /// the caller's onset (the first speech block the voice activity model heard).
    BargeInPaused {
        onset_to_clear: Duration,
    },
    /// What became of a caller onset over the agent (see [`BargeInDecision`]).
    BargeInDecided(BargeInDecision),
    ResponseDone {
        id: String,
        status: Option<String>,
    },
    /// A `response.done` of any session of the call (current, successor or replaced) reported
    /// `usage`: each once, for the shell to sum (report, metric). See `call/usage.rs`.
    Usage {
        generation: u64,
        usage: TokenUsage,
    },
    /// The stream's labels from `start.customParameters` (`profile`, `direction`), for the
    /// live console. Sent once, right after `Started`.
    Labels {
        profile: Option<String>,
        direction: Option<String>,
    },
    /// Twilio echoed the last mark of a finished agent turn: the caller heard all of it.
    PlayoutDone,
    /// A line as the conversation log keeps it (trimmed, clipped), shared with it.
    CallerTranscript(Arc<str>),
    AgentTranscript(Arc<str>),
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
    /// A tool's request went out to its endpoint; its answer (or timeout) comes as
    /// [`CallEvent::ToolCall`] with the same `call_id`.
    ToolStarted {
        tool: String,
        call_id: String,
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
    /// Twilio's stream never sent a usable `start` (or, on a socket opened for one call, a
    /// `start` of another: see [`Call::require_call_sid`]).
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
    /// The caller stayed silent (`silence_hangup_s`): the agent said goodbye and hung up.
    CallerSilent,
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
            EndReason::CallerSilent => "caller_silent",
        }
    }
}
