//! A plain tokio-tungstenite client of the Realtime simulator (the `sim*` tests): connecting in
//! either dialect, sending and reading JSON events, and the caller audio it is fed.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use callbridge::sim::{SimConfig, Simulator};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn fast() -> SimConfig {
    SimConfig {
        pace: 0.0,
        ..SimConfig::default()
    }
}

pub async fn connect(sim: &Simulator, beta: bool) -> Ws {
    let mut req = sim.url().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer sk-test".parse().unwrap());
    if beta {
        req.headers_mut()
            .insert("openai-beta", "realtime=v1".parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Next JSON event; panics after 5 s.
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("timed out waiting for an event")
            .expect("socket ended")
            .expect("socket error");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// Events up to and including the first of type `ty`.
pub async fn until(ws: &mut Ws, ty: &str) -> Vec<Value> {
    let mut out = vec![];
    loop {
        let e = recv(ws).await;
        let done = e["type"] == ty;
        out.push(e);
        if done {
            return out;
        }
    }
}

pub fn types(evs: &[Value]) -> Vec<&str> {
    evs.iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect()
}

pub fn of<'a>(evs: &'a [Value], ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    evs.iter().filter(move |e| e["type"] == ty)
}

pub fn audio_of(evs: &[Value], ty: &str) -> Vec<u8> {
    of(evs, ty)
        .flat_map(|e| B64.decode(e["delta"].as_str().unwrap()).unwrap())
        .collect()
}

/// `ms` of a 300 Hz tone (amplitude 8000) then `silence_ms` of silence, as μ-law 20 ms frames.
pub fn ulaw_speech(ms: u32, silence_ms: u32) -> Vec<Vec<u8>> {
    let mut frames = vec![];
    for f in 0..(ms + silence_ms) / 20 {
        let frame = (0..160)
            .map(|i| {
                let n = f * 160 + i;
                let s = if f * 20 < ms {
                    (8000.0 * (std::f64::consts::TAU * 300.0 * n as f64 / 8000.0).sin()) as i16
                } else {
                    0
                };
                audio_codec_algorithms::encode_ulaw(s)
            })
            .collect();
        frames.push(frame);
    }
    frames
}

/// Same, as PCM16 LE 24 kHz.
pub fn pcm_speech(ms: u32, silence_ms: u32) -> Vec<Vec<u8>> {
    let mut frames = vec![];
    for f in 0..(ms + silence_ms) / 20 {
        let mut frame = Vec::with_capacity(960);
        for i in 0..480 {
            let n = f * 480 + i;
            let s = if f * 20 < ms {
                (8000.0 * (std::f64::consts::TAU * 300.0 * n as f64 / 24000.0).sin()) as i16
            } else {
                0
            };
            frame.extend_from_slice(&s.to_le_bytes());
        }
        frames.push(frame);
    }
    frames
}

pub async fn append_all(ws: &mut Ws, frames: &[Vec<u8>]) {
    for f in frames {
        send(
            ws,
            json!({"type": "input_audio_buffer.append", "audio": B64.encode(f)}),
        )
        .await;
    }
}

pub async fn ga_pcmu(ws: &mut Ws) {
    let created = recv(ws).await;
    assert_eq!(created["type"], "session.created");
    send(
        ws,
        json!({"type": "session.update", "session": {"type": "realtime",
            "audio": {"input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcmu"}}}}}),
    )
    .await;
    let upd = recv(ws).await;
    assert_eq!(upd["type"], "session.updated", "{upd}");
}

/// A simulator with `cfg` and a GA (or, with `beta`, a beta) session on it whose
/// `session.created` has been read.
pub async fn opened(cfg: SimConfig, beta: bool) -> (Simulator, Ws) {
    let sim = super::simulator(cfg).await;
    let mut ws = connect(&sim, beta).await;
    recv(&mut ws).await;
    (sim, ws)
}

/// Sends an event that is nothing but its `type`.
pub async fn send_type(ws: &mut Ws, ty: &str) {
    send(ws, json!({ "type": ty })).await;
}

/// Sends `session.update` with `session`.
pub async fn update_session(ws: &mut Ws, session: Value) {
    send(ws, json!({"type": "session.update", "session": session})).await;
}

/// The next thing on the socket, whatever it is; panics after 5 s.
pub async fn next_message(ws: &mut Ws) -> Option<Result<Message, Error>> {
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the socket answers within 5 s")
}

/// Answers of `response_audio_ms` paced in real time, so one is still streaming when the test
/// acts on it.
pub fn real_time(response_audio_ms: u32) -> SimConfig {
    SimConfig {
        pace: 1.0,
        response_audio_ms,
        ..SimConfig::default()
    }
}

/// A simulator with `cfg` and a GA session on it set to μ-law both ways (see [`ga_pcmu`]).
pub async fn ga_pcmu_session(cfg: SimConfig) -> (Simulator, Ws) {
    let sim = super::simulator(cfg).await;
    let mut ws = connect(&sim, false).await;
    ga_pcmu(&mut ws).await;
    (sim, ws)
}
