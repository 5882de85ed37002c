//! Side effects the call asks the shell to perform, and their results.
//!
//! The call decides, the shell does: the call emits [`crate::call::Output::Effect`] with an id;
//! the shell performs it (an HTTP request to a tool, a Twilio REST command, ...) and hands the
//! result back with [`crate::call::Call::on_effect_done`]. A result for an id the call no
//! longer waits for (a late tool answer after hang-up) is ignored.
//!
//! Upstream connections (reconnects, rotation) are effects too ([`UpstreamEffect`]), named by
//! the generation of the socket rather than by an [`EffectId`].

use std::time::Duration;

/// Names one effect of one call (per-call counter).
pub type EffectId = u64;

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// POST `body` to an integrator's tool, signed with `tool_secret`.
    RunTool(ToolRequest),
    /// Change the live call through Twilio's REST API (hang up, or redirect it to a `<Dial>`).
    UpdateCall(CallUpdateRequest),
}

/// An HTTP request to a function tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest {
    pub tool: String,
    pub url: String,
    /// The whole request, connection included, must finish within this.
    pub timeout: Duration,
    /// JSON: `{tool, call_id, arguments, call: {..}}`.
    pub body: String,
}

/// A Twilio REST update of the call this stream belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct CallUpdateRequest {
    pub account_sid: String,
    pub call_sid: String,
    pub update: crate::twilio::rest::CallUpdate,
}

/// What became of an effect.
#[derive(Debug, Clone, PartialEq)]
pub enum EffectResult {
    Tool(ToolOutcome),
    /// `Err` carries a description fit for logs (never credentials).
    CallUpdated(Result<(), String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutcome {
    /// A 2xx answer whose body is a JSON document of at most 64 KiB, as received.
    Ok(String),
    Failed {
        kind: ToolFailure,
        message: String,
    },
}

/// Why a tool gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFailure {
    Timeout,
    /// The connection could not be made (after the one retry of a refused connection).
    Connect,
    /// A non-2xx status.
    Status(u16),
    NotJson,
    TooLarge,
    /// A 3xx: redirects are never followed (the signed body would go to a host that was not
    /// configured), so the tool's URL must be the final one.
    Redirect(u16),
    /// Anything else on the way (a broken body, a bad URL).
    Other,
}

impl ToolFailure {
    /// Label for `callbridge_tool_calls_total{result}`.
    pub fn label(self) -> &'static str {
        match self {
            ToolFailure::Timeout => "timeout",
            ToolFailure::Connect => "connect_error",
            ToolFailure::Status(_) => "http_error",
            ToolFailure::NotJson => "not_json",
            ToolFailure::TooLarge => "too_large",
            ToolFailure::Redirect(_) => "redirect",
            ToolFailure::Other => "error",
        }
    }

    /// Whether trying the same call again later may work (told to the model).
    pub fn retryable(self) -> bool {
        match self {
            ToolFailure::Timeout | ToolFailure::Connect | ToolFailure::Other => true,
            ToolFailure::Status(s) => s >= 500 || s == 429 || s == 408,
            ToolFailure::NotJson | ToolFailure::TooLarge | ToolFailure::Redirect(_) => false,
        }
    }
}

/// Upstream (Realtime socket) work for the shell. Named by the *generation* of the socket
/// (its number in the call's life); the shell reports back with `Call::on_upstream_open` /
/// `Call::on_upstream_lost` for that generation, and results for generations the call no
/// longer waits for are ignored.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamEffect {
    /// Dial a new Realtime socket for this generation. The shell answers with
    /// `Call::on_upstream_open(generation, ..)` or `Call::on_upstream_lost(generation, ..)`.
    /// (Generation 1 is asked for by `Call::new`: the call's first output.) Events for
    /// a generation come as [`crate::call::Output::ToRealtime`], which names it.
    ConnectUpstream { generation: u64 },
    /// Close this generation's socket (a normal close), if the shell still has it.
    CloseUpstream { generation: u64 },
}
