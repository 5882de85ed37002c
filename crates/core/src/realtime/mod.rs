//! The OpenAI Realtime API's side of a call: client and server events in the GA dialect (the
//! default) and the beta dialect (kept for self-hosted Realtime-compatible servers only:
//! OpenAI shut the beta shape down in 2026), and the session configuration.
//!
//! Knows nothing of sockets or of Twilio.

pub mod events;
pub mod items;
pub mod session;
pub mod settings;
pub mod usage;

pub use events::{AudioBytes, AudioPool, ClientEvent, FunctionCall, OutputItem, ServerEvent};
pub use items::Item;
pub use session::{AudioFormat, Dialect, SessionConfig, TurnDetection};
pub use settings::SessionSettings;
pub use usage::TokenUsage;
