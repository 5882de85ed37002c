//! Faults a test injects while a call runs, to see the bridge survive them: drop a session
//! with FIN or RST, `server_error` then a close, `session_expired` then a 1001 close, refuse
//! the next connections, answer 401.
//!
//! Unlike [`super::Fault`] (configured up front, applied to every session), these act on one
//! session, or the next connections, when the test says so — so a test can wait until the
//! caller is mid-sentence or the agent mid-answer, then pull the plug, and the reconnected
//! session is left alone.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{lock, ClosedBy, SessionLog, Simulator};

/// The reason the real server gives when a session reaches its time limit.
pub const SESSION_EXPIRED_REASON: &str = "Your session hit the maximum duration of 60 minutes.";

/// A fault for one open session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFault {
    /// Close the TCP connection without a WebSocket close frame (FIN: the client reads EOF).
    DropFin,
    /// Reset the TCP connection (RST: the client reads a connection-reset error).
    DropRst,
    /// Send an `error` event (`server_error`), then close with code 1011.
    ServerErrorThenClose,
    /// Send the `session_expired` error, then after this long close with code 1001 and the
    /// 60-minute reason, as the real server does at its limit.
    SessionExpired { close_after: Duration },
}

/// The fault controls of one simulator (shared by its sessions).
#[derive(Default)]
pub(crate) struct Faults {
    refuse: AtomicU32,
    unauthorized: AtomicU32,
    /// Open sessions by index (connection order), with their fault inbox.
    inboxes: Mutex<Vec<(usize, mpsc::UnboundedSender<SessionFault>)>>,
}

fn take_one(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
        .is_ok()
}

impl Faults {
    /// Whether to drop this incoming connection before its handshake.
    pub(crate) fn refuse_this(&self) -> bool {
        take_one(&self.refuse)
    }

    /// Whether to answer this upgrade with HTTP 401.
    pub(crate) fn unauthorized_this(&self) -> bool {
        take_one(&self.unauthorized)
    }

    /// The inbox of session `index`.
    pub(crate) fn register(&self, index: usize) -> mpsc::UnboundedReceiver<SessionFault> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inboxes = lock(&self.inboxes);
        inboxes.retain(|(_, tx)| !tx.is_closed());
        inboxes.push((index, tx));
        rx
    }
}

impl Simulator {
    /// The next `n` connections are closed before the WebSocket handshake (the client's
    /// connect fails).
    pub fn refuse_next(&self, n: u32) {
        self.shared.faults.refuse.store(n, Ordering::Relaxed);
    }

    /// The next `n` upgrades are answered with HTTP 401 (`invalid_api_key`).
    pub fn unauthorized_next(&self, n: u32) {
        self.shared.faults.unauthorized.store(n, Ordering::Relaxed);
    }

    /// Injects a fault into session `index` (connection order, as in
    /// [`Simulator::session`]). Returns false if that session is not open.
    pub fn inject(&self, index: usize, fault: SessionFault) -> bool {
        let inboxes = lock(&self.shared.faults.inboxes);
        inboxes
            .iter()
            .find(|(i, _)| *i == index)
            .is_some_and(|(_, tx)| tx.send(fault).is_ok())
    }
}

impl SessionLog {
    /// The `item` of every `conversation.item.create` the session received, in order.
    pub fn items_created(&self) -> Vec<&Value> {
        self.received
            .iter()
            .filter(|e| e.get("type").and_then(Value::as_str) == Some("conversation.item.create"))
            .filter_map(|e| e.get("item"))
            .collect()
    }

    /// Bytes of caller audio per `input_audio_buffer.append`, in order.
    pub fn appends(&self) -> Vec<usize> {
        self.received
            .iter()
            .filter(|e| e.get("type").and_then(Value::as_str) == Some("input_audio_buffer.append"))
            .filter_map(|e| e.get("audio_bytes").and_then(Value::as_u64))
            .map(|n| n as usize)
            .collect()
    }
}

/// Reads and discards what the client still sends, until it closes or `within` passes.
async fn drain(ws: &mut WebSocketStream<TcpStream>, within: Duration) {
    let _ =
        tokio::time::timeout(within, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

async fn send_error(
    ws: &mut WebSocketStream<TcpStream>,
    log: &Mutex<SessionLog>,
    kind: &str,
    code: &str,
    message: &str,
) {
    let v = json!({"type": "error", "event_id": format!("event_fault_{code}"),
        "error": {"type": kind, "code": code, "message": message, "param": null, "event_id": null}});
    let _ = ws.send(Message::text(v.to_string())).await;
    let mut l = lock(log);
    l.errors_sent += 1;
    l.sent.push(v);
}

async fn close(ws: &mut WebSocketStream<TcpStream>, code: CloseCode, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if ws.send(Message::Close(Some(frame))).await.is_ok() {
        drain(ws, Duration::from_secs(1)).await;
    }
}

/// Carries out `fault` on the session's socket; the session is over afterwards.
pub(crate) async fn apply(
    fault: SessionFault,
    ws: &mut WebSocketStream<TcpStream>,
    log: &Mutex<SessionLog>,
) -> ClosedBy {
    let by = |what: &str| ClosedBy::Fault(what.into());
    match fault {
        SessionFault::DropFin => {
            lock(log).closed_by = Some(by("drop_fin"));
            // Half-close, then read until the client closes too: closing with unread data
            // would turn the FIN into a reset.
            let _ = ws.get_mut().shutdown().await;
            drain(ws, Duration::from_secs(2)).await;
            by("drop_fin")
        }
        SessionFault::DropRst => {
            lock(log).closed_by = Some(by("drop_rst"));
            // Zero linger: closing the socket sends RST instead of FIN.
            let _ = ws.get_ref().set_zero_linger();
            by("drop_rst")
        }
        SessionFault::ServerErrorThenClose => {
            send_error(
                ws,
                log,
                "server_error",
                "server_error",
                "The server had an error while processing your request. Sorry about that!",
            )
            .await;
            lock(log).closed_by = Some(by("server_error"));
            close(ws, CloseCode::Error, "server error").await;
            by("server_error")
        }
        SessionFault::SessionExpired { close_after } => {
            send_error(
                ws,
                log,
                "invalid_request_error",
                "session_expired",
                SESSION_EXPIRED_REASON,
            )
            .await;
            // The real server keeps the socket a moment; the client may leave first.
            drain(ws, close_after).await;
            lock(log).closed_by = Some(by("session_expired"));
            close(ws, CloseCode::Away, SESSION_EXPIRED_REASON).await;
            by("session_expired")
        }
    }
}
