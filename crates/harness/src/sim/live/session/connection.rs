//! The socket side of a simulated Live session: the upgrade (only `/v1/live/sessions`), then
//! a loop that sends the outbox, publishes the log and waits for a frame, a deadline, a fault
//! or shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{lock, ClosedBy, Out, Session};
use crate::sim::live::{LiveFault, LiveShared};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn close(ws: &mut WebSocketStream<TcpStream>, code: CloseCode, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    let _ = ws.send(Message::Close(Some(frame))).await;
    // Let the client answer the close before the socket goes.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Serves one connection to the end.
pub(in crate::sim::live) async fn run(
    tcp: TcpStream,
    shared: Arc<LiveShared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut path = String::new();
    #[allow(clippy::result_large_err)] // the Err type is fixed by tungstenite's `Callback`
    let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        path = req.uri().to_string();
        if req.uri().path().trim_end_matches('/') != "/v1/live/sessions" {
            let mut r = ErrorResponse::new(Some("Unknown path; use /v1/live/sessions.".into()));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return Err(r);
        }
        Ok(resp)
    };
    let accepted = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async(tcp, cb),
    );
    let mut ws = match accepted.await {
        Ok(Ok(ws)) => ws,
        _ => return,
    };
    let (log, n, mut faults) = shared.register(path);
    let mut s = Session::new(shared, n);
    let far = Duration::from_secs(24 * 3600);
    loop {
        // The log first: a test that read an event finds it (and what led to it) logged.
        let outs = s.take_out();
        s.publish(&log);
        for out in outs {
            match out {
                Out::Event(v) => {
                    if ws.send(Message::text(v.to_string())).await.is_err() {
                        s.log.closed_by = Some(ClosedBy::ClientDropped);
                        s.publish(&log);
                        return;
                    }
                }
                Out::Close(code, reason) => return close(&mut ws, code, reason).await,
            }
        }
        if lock(&log).closed_by.is_some() {
            return;
        }
        let deadline = s.next_deadline();
        tokio::select! {
            _ = stop.changed() => {
                s.log.closed_by = Some(ClosedBy::Shutdown);
                s.publish(&log);
                return close(&mut ws, CloseCode::Away, "shutdown").await;
            }
            Some(fault) = faults.recv() => match fault {
                LiveFault::Drop => {
                    s.log.closed_by = Some(ClosedBy::Fault("drop".into()));
                    s.publish(&log);
                    let _ = ws.get_mut().shutdown().await;
                    return;
                }
                LiveFault::FatalError(code) => s.fatal(&code),
                LiveFault::Expire => s.expire(),
            },
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => s.on_text(&t),
                Some(Ok(Message::Close(_))) => s.log.closed_by = Some(ClosedBy::Client),
                None => s.log.closed_by = Some(ClosedBy::ClientDropped),
                Some(Err(e)) => s.log.closed_by = Some(ClosedBy::Error(e.to_string())),
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + far)) => {
                s.on_timer(Instant::now());
            }
        }
    }
}
