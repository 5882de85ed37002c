//! A bare Twilio media stream over a real WebSocket, its messages written by hand: for tests
//! that need the socket itself (a signed upgrade, messages held before `start`, a call that
//! only needs its Realtime session configured). The simulated caller (`callbridge::caller`)
//! is the rest of Twilio.

use std::time::Duration;

use callbridge::sim::{SessionLog, Simulator};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::WAIT;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub fn text(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

/// Twilio's `start` of stream `stream_sid` for call `call_sid` of `account`, with `params` as
/// its customParameters.
pub fn start(account: &str, stream_sid: &str, call_sid: &str, params: Value) -> Message {
    text(
        json!({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
        "start": {"accountSid": account, "streamSid": stream_sid, "callSid": call_sid, "tracks": ["inbound"],
                  "customParameters": params,
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}),
    )
}

pub fn stop(account: &str, stream_sid: &str, call_sid: &str) -> Message {
    text(
        json!({"event": "stop", "sequenceNumber": "2", "streamSid": stream_sid,
        "stop": {"accountSid": account, "callSid": call_sid}}),
    )
}

/// Opens the media socket `req` names and says Twilio's `connected`.
pub async fn connect(req: impl IntoClientRequest + Unpin) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("media socket");
    ws.send(text(
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
    ))
    .await
    .expect("send");
    ws
}

/// A call on the bridge at `addr`: its media socket opened and Twilio's `start` sent (account
/// `AC1`, custom parameters `params`).
pub async fn started(
    addr: std::net::SocketAddr,
    stream_sid: &str,
    call_sid: &str,
    params: Value,
) -> Ws {
    let mut ws = connect(format!("ws://{addr}/media")).await;
    ws.send(start("AC1", stream_sid, call_sid, params))
        .await
        .expect("send");
    ws
}

/// Sends `stop`, then reads the socket until the bridge closes it.
pub async fn hang_up(ws: &mut Ws, stop: Message) {
    ws.send(stop).await.expect("send");
    while let Some(Ok(_)) = ws.next().await {}
}

/// Waits (up to [`WAIT`]) until the simulator's session `n` has received its
/// `session.update`; that session's log.
pub async fn configured(sim: &Simulator, n: usize) -> SessionLog {
    let end = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(s) = sim.sessions().into_iter().nth(n) {
            if s.received.iter().any(|e| e["type"] == "session.update") {
                return s;
            }
        }
        assert!(tokio::time::Instant::now() < end, "no session configured");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
