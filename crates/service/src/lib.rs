//! The callbridge service: the async shell around the sans-IO core (`callbridge-core`,
//! re-exported here under its own module names). `config` and `profile` say what a call runs
//! with; `server` holds the HTTP edge, the routes and each call's task (a driver of the core's
//! machine); `report`, `recording`, `integrator` what leaves the bridge; `metrics` and
//! `logging` what operators see.

pub use callbridge_core::{audio, call, realtime, twilio};

pub mod cluster;
pub mod config;
pub mod integrator;
pub mod logging;
pub mod metrics;
pub mod place_call;
pub mod profile;
pub mod recording;
pub mod report;
pub mod server;
