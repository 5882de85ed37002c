//! What drives callbridge without a phone or an OpenAI account: `sim` (a Realtime API
//! simulator, a fake Twilio REST, a report receiver), `caller` (a simulated Twilio caller),
//! `fixture` (recorded-call replay and fixture generation), `demo` (the offline demo). The
//! load tool is this crate's `loadtest` binary.

// The service's modules by the names the product uses, for the harness's own code.
pub(crate) use callbridge_service::{config, integrator, metrics, recording, server};

pub mod bargein_bench;
pub mod caller;
pub mod demo;
pub mod fixture;
pub mod sim;
