//! callbridge: a Twilio Media Streams ⇄ OpenAI Realtime API bridge.
//!
//! The pipeline reads top to bottom: `twilio` and `realtime` hold the two protocols, `audio`
//! the bytes between them, `call` one call's sans-IO state machine, `recording` the format and
//! recorder of recorded calls, `server` the async shell. Above the server, what runs it:
//! `fixture` (replay, fixture generation), `demo`, `caller` (a simulated Twilio caller); `sim`
//! is an in-process Realtime API simulator used by tests, the demo and the load tool.

pub mod audio;
pub mod call;
pub mod caller;
pub mod config;
pub mod demo;
pub mod dial;
pub mod fixture;
pub mod integrator;
pub mod logging;
pub mod metrics;
pub mod profile;
pub mod realtime;
pub mod recording;
pub mod report;
pub mod server;
pub mod sim;
pub mod twilio;
