//! OpenAI GPT-Live's side of a call (a second upstream beside `realtime`): the client events
//! the bridge sends, the server events it reads, and the `session.start` built from settings.
//!
//! The authoritative wire schema is the OpenAI Python SDK's generated models,
//! `openai/types/live/` (SDK 3.63.0, pinned in `.ci/run`); `tests/live_schema.rs` checks every
//! event built here against them. Where the team's protocol notes (`shared/protocol.md`, "OpenAI
//! GPT-Live") and the SDK disagree, the SDK wins and the fact is cited beside the code.
//!
//! Knows nothing of sockets, of Twilio, or of the call machine: it is not wired into a call
//! yet (see docs/gpt-live.md).

pub mod client;
pub mod server;
pub mod settings;

pub use client::{ClientEvent, SessionConfig};
pub use server::{CloseReason, LiveError, ServerEvent, SessionUsage};
pub use settings::{LiveSettings, SettingsError};

/// Where the Live WebSocket is (no query string: the model goes in `session.start`; SDK
/// `session_config.py`, `model`: "do not pass it as a URL query parameter").
pub const DEFAULT_URL: &str = "wss://api.openai.com/v1/live/sessions";
