//! Twilio's side of a call: Media Streams messages and TwiML rendering.
//!
//! Knows nothing of sockets or of the Realtime API.

pub mod media;
pub mod rest;
pub mod signature;
pub mod transfer;
pub mod twiml;

pub use media::{Inbound, MediaFormat, Outbound, StartMeta};
