//! The sans-IO core of callbridge. The pipeline reads top to bottom: `twilio` and `realtime`
//! hold the two protocols, `audio` the bytes between them, `call` one call's state machine
//! (inputs with their time in, outputs and effects out; no clock, no socket). `live` holds
//! GPT-Live's protocol, a second upstream not wired into calls yet (docs/gpt-live.md).

pub mod audio;
pub mod call;
pub mod live;
pub mod realtime;
pub mod redact;
pub mod twilio;
