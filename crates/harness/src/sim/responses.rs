//! A fake of OpenAI's Responses API (`POST /v1/responses`) on the simulator's port, for the
//! bridge's post-call analysis: it records each request and answers as the test scripted —
//! a structured output (the JSON text in an `output_text` item, as the real API returns it),
//! any other text, an HTTP error, or nothing at all (it hangs). Every other connection is a
//! Realtime session, as before.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Shared;

/// How the fake answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `output_text` holding this text (JSON for a valid structured output).
    Text(String),
    /// This HTTP status, with an error body.
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

/// The fake's script and what it received (shared with the test through clones).
#[derive(Debug, Clone)]
pub struct FakeResponses {
    pub answer: Answer,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl Default for FakeResponses {
    fn default() -> Self {
        FakeResponses::answering(Answer::Text("{}".into()))
    }
}

impl FakeResponses {
    pub fn answering(answer: Answer) -> FakeResponses {
        FakeResponses {
            answer,
            requests: Arc::default(),
        }
    }

    /// The request bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

const PATH: &[u8] = b"POST /v1/responses ";
/// Request heads and bodies larger than this are refused (a test's transcript is small).
const MAX_REQUEST: usize = 1 << 20;

/// Serves `tcp`: a Responses request when it starts with `POST /v1/responses`, else a
/// Realtime session.
pub(crate) async fn or_session(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let mut first = [0u8; PATH.len()];
    let is_responses = matches!(
        tokio::time::timeout(Duration::from_secs(5), tcp.peek(&mut first)).await,
        Ok(Ok(n)) if n == PATH.len() && first == PATH
    );
    if is_responses {
        serve(tcp, &shared.cfg.responses, stop).await;
    } else {
        super::session::run(tcp, peer, shared, stop).await;
    }
}

/// One request on the connection (the bridge's client sends one at a time), then closes.
async fn serve(mut tcp: TcpStream, fake: &FakeResponses, mut stop: watch::Receiver<bool>) {
    let Some(body) = read_request(&mut tcp).await else {
        return;
    };
    if let Ok(mut r) = fake.requests.lock() {
        r.push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    }
    let (status, answer) = match &fake.answer {
        Answer::Hang => {
            // Until the bridge gives up (closes) or the simulator stops.
            let mut buf = [0u8; 64];
            tokio::select! {
                _ = tcp.read(&mut buf) => {}
                _ = stop.changed() => {}
            }
            return;
        }
        Answer::Status(code) => (
            *code,
            json!({"error": {"type": "server_error", "message": "scripted failure"}}),
        ),
        Answer::Text(text) => (
            200,
            json!({
                "id": "resp_sim",
                "object": "response",
                "status": "completed",
                "output": [{
                    "type": "message",
                    "id": "msg_sim",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]
                }]
            }),
        ),
    };
    let body = answer.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let _ = tcp.write_all(body.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// The body of the HTTP/1.1 request on `tcp` (by its `content-length`).
async fn read_request(tcp: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tcp.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n <= MAX_REQUEST)?;
    while buf.len() < head_end + len {
        let n = tcp.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + len].to_vec())
}
