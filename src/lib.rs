//! callbridge: a Twilio Media Streams ⇄ OpenAI Realtime API bridge.
//!
//! The pieces are crates of their own (see docs/architecture.md): `callbridge-core` (the
//! sans-IO call: `twilio`, `realtime`, `audio`, `call`), `callbridge-service` (the server
//! around it), `callbridge-harness` (simulators, fake caller, replay, demo, load tool). This
//! facade re-exports their modules under one name for the `callbridge` binary and the
//! end-to-end tests in `tests/`.

pub use callbridge_service::*;

#[cfg(feature = "harness")]
pub use callbridge_harness::{bargein_bench, caller, demo, fixture, sim};
