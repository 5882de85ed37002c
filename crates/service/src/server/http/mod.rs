//! What the bridge serves over plain HTTP: the edge that accepts connections, Twilio's
//! webhooks and callbacks (signed), the outbound-call API, and the softphone and console pages.
//! The media socket's upgrade is routed here too, but the call it starts lives in
//! `server::media`.

pub mod callbacks;
pub mod console;
pub mod edge;
pub mod outbound;
pub mod signature;
pub mod twiml;
pub mod unsigned;
pub mod web;
