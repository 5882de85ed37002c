//! Rendering the call's outputs for the two sockets (and the recording) and feeding them to
//! the Twilio socket; the call's task writes, then flushes once per batch.

use std::time::Instant;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use tracing::{debug, warn};

use super::super::links::Links;
use super::super::AppState;
use super::WRITE_STALL;
use crate::call::Call;
use crate::recording::recorder::Recorder;
use crate::recording::Dir;
use crate::twilio::Outbound;

/// What an output leaves for the shell to write, already rendered into the call's `text`.
pub(super) enum Write {
    Nothing,
    /// One message to Twilio.
    Twilio,
    /// One event to the upstream socket of this generation.
    Up(u64),
}

/// Renders a Twilio-bound message into `text` (and the recording).
pub(super) fn render_twilio(
    s: &AppState,
    rec: &mut Option<Box<Recorder>>,
    sid_json: &str,
    msg: &Outbound,
    text: &mut String,
) {
    msg.write_json(sid_json, text);
    if let Some(r) = rec.as_mut() {
        r.message(Dir::TwilioOut, text);
    }
    s.metrics.twilio_messages_out.inc();
}

/// Feeds one rendered message to Twilio's socket (flushed once per batch, later); a write that
/// fails or stalls ends the call's Twilio side.
pub(super) async fn feed_twilio(socket: &mut WebSocket, text: &str, call: &mut Call) {
    let fed = tokio::time::timeout(WRITE_STALL, socket.feed(Message::Text(text.into()))).await;
    if !matches!(fed, Ok(Ok(()))) {
        warn!("write to Twilio failed or stalled");
        call.on_twilio_closed(Instant::now());
    }
}

/// Renders a Realtime event into `text` (and the recording) for the socket of `generation`,
/// or drops it when that socket is gone.
pub(super) fn render_realtime(
    s: &AppState,
    call: &Call,
    realtime: &Links,
    rec: &mut Option<Box<Recorder>>,
    text: &mut String,
    generation: u64,
    ev: &crate::realtime::ClientEvent,
) -> Write {
    if !realtime.has(generation) {
        // Between a drop and the next session the call buffers audio itself; anything else
        // for a socket that is gone is dropped here.
        debug!(
            generation,
            event = ev.name(),
            "upstream event with no socket; dropped"
        );
        return Write::Nothing;
    }
    ev.write_json(call.dialect(), text);
    if let Some(r) = rec.as_mut() {
        r.upstream_message(Dir::RealtimeOut, generation, text);
    }
    s.metrics.realtime_messages_out.inc();
    Write::Up(generation)
}

/// The `type` of a Realtime event, for logs.
pub(super) fn event_type(text: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Typed>(text).map_or_else(|_| "?".into(), |t| t.kind)
}
