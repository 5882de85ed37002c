//! The floor: `loadtest relay`, a minimal relay run in place of the bridge, spawned, pinned and
//! measured from /proc exactly like it. Per call it does the socket reads and writes the bridge
//! does (the [`Pattern`] a bridge run measured) and nothing else: tokio + tokio-tungstenite, one
//! task per call owning both whole sockets, pre-built payloads, a prefix comparison instead of
//! parsing. What it costs is the floor of this stack: kernel loopback TCP, epoll and
//! WebSocket framing.
//!
//! - Caller `media` → one upstream message (`append_bytes`, one write each).
//! - Any other caller message (mark echoes, start, stop) → read and dropped.
//! - Upstream delta (`{"type":"response.output_audio.delta"…`) → `frames_per_delta` media messages + one mark to the
//!   caller, one flush.
//! - Upstream barge-in (`{"type":"input_audio_buffer.speech_started"…`) → a clear to the caller, then `up_per_barge` upstream
//!   messages in one flush (the bridge's `response.cancel` / `conversation.item.truncate`).
//! - Any other upstream event → read and dropped.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::traffic::Pattern;

pub const MEDIA: &str = r#"{"event":"media""#;
pub const MARK: &str = r#"{"event":"mark""#;
pub const CLEAR: &str = r#"{"event":"clear""#;
pub const APPEND: &str = r#"{"type":"input_audio_buffer.append""#;
pub const DELTA: &str = r#"{"type":"response.output_audio.delta""#;
pub const BARGE: &str = r#"{"type":"input_audio_buffer.speech_started""#;

/// `loadtest relay --listen ADDR --upstream URL --pattern JSON`
#[derive(clap::Parser, Debug)]
#[command(
    name = "loadtest relay",
    about = "The floor relay (spawned by loadtest)"
)]
pub struct RelayArgs {
    #[arg(long)]
    pub listen: String,
    #[arg(long)]
    pub upstream: String,
    /// A [`Pattern`] as JSON.
    #[arg(long)]
    pub pattern: String,
}

/// A pre-built text message of exactly `len` bytes starting with `prefix` (padded with `x`
/// inside a JSON string, so it is still a JSON object).
pub fn padded(prefix: &str, len: usize) -> Utf8Bytes {
    let head = format!(r#"{prefix},"pad":""#);
    let fill = len.saturating_sub(head.len() + 2);
    let mut s = String::with_capacity(head.len() + fill + 2);
    s.push_str(&head);
    s.extend(std::iter::repeat_n('x', fill));
    s.push_str(r#""}"#);
    Utf8Bytes::from(s)
}

/// The relay's pre-built messages.
pub struct Payloads {
    append: Utf8Bytes,
    up_other: Utf8Bytes,
    up_per_barge: usize,
    frame: Utf8Bytes,
    frames_per_delta: usize,
    mark: Utf8Bytes,
    clear: Utf8Bytes,
}

impl Payloads {
    pub fn new(p: &Pattern) -> Payloads {
        Payloads {
            append: padded(r#"{"type":"input_audio_buffer.append""#, p.append_bytes),
            up_other: padded(r#"{"type":"conversation.item.truncate""#, p.up_other_bytes),
            up_per_barge: p.up_per_barge,
            frame: padded(MEDIA, p.frame_bytes),
            frames_per_delta: p.frames_per_delta,
            mark: padded(MARK, p.mark_bytes),
            clear: padded(CLEAR, p.clear_bytes),
        }
    }
}

/// Socket settings as the bridge has them (read buffers are resident per call).
fn twilio_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(2048)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(4 * 1024 * 1024)
}

fn upstream_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(4 * 1024 * 1024)
}

pub fn main(args: RelayArgs) -> std::process::ExitCode {
    let pattern: Pattern = match serde_json::from_str(&args.pattern) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("loadtest relay: --pattern: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Built like the bridge's runtime: one worker per core this process may use.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest relay: tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let listener = match TcpListener::bind(&args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("loadtest relay: {}: {e}", args.listen);
                return std::process::ExitCode::FAILURE;
            }
        };
        serve(listener, args.upstream, Arc::new(Payloads::new(&pattern))).await;
        std::process::ExitCode::SUCCESS
    })
}

/// Accepts calls until the process is killed.
pub async fn serve(listener: TcpListener, upstream: String, p: Arc<Payloads>) {
    let upstream: Arc<str> = upstream.into();
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                let (p, upstream) = (p.clone(), upstream.clone());
                tokio::spawn(async move {
                    // (The load tool's readiness probe connects and closes: no handshake, no
                    // call, nothing to report.)
                    if let Err(Some(e)) = call(tcp, &upstream, &p).await {
                        eprintln!("loadtest relay: call: {e}");
                    }
                });
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// `Err(None)`: the connection closed before a WebSocket handshake.
async fn call(tcp: TcpStream, upstream: &str, p: &Payloads) -> Result<(), Option<String>> {
    // The bridge's route: only `/media` upgrades.
    #[allow(clippy::result_large_err)]
    let only_media = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == "/media" {
            Ok(resp)
        } else {
            let mut r = ErrorResponse::new(None);
            *r.status_mut() = StatusCode::NOT_FOUND;
            Err(r)
        }
    };
    let mut tw =
        tokio_tungstenite::accept_hdr_async_with_config(tcp, only_media, Some(twilio_config()))
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Protocol(_)
                | tokio_tungstenite::tungstenite::Error::Io(_) => None,
                e => Some(format!("accept: {e}")),
            })?;
    let (mut up, _) =
        tokio_tungstenite::connect_async_with_config(upstream, Some(upstream_config()), true)
            .await
            .map_err(|e| Some(format!("upstream: {e}")))?;
    let res = relay(&mut tw, &mut up, p).await;
    let _ = up.close(None).await;
    let _ = tw.close(None).await;
    res.map_err(Some)
}

type Ws<S> = tokio_tungstenite::WebSocketStream<S>;

async fn relay<A, B>(tw: &mut Ws<A>, up: &mut Ws<B>, p: &Payloads) -> Result<(), String>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let e = |e: tokio_tungstenite::tungstenite::Error| e.to_string();
    loop {
        tokio::select! {
            m = tw.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if t.starts_with(MEDIA) {
                        up.send(Message::Text(p.append.clone())).await.map_err(e)?;
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(e(err)),
            },
            m = up.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if t.starts_with(DELTA) {
                        for _ in 0..p.frames_per_delta {
                            tw.feed(Message::Text(p.frame.clone())).await.map_err(e)?;
                        }
                        tw.feed(Message::Text(p.mark.clone())).await.map_err(e)?;
                        tw.flush().await.map_err(e)?;
                    } else if t.starts_with(BARGE) {
                        tw.send(Message::Text(p.clear.clone())).await.map_err(e)?;
                        for _ in 0..p.up_per_barge {
                            up.feed(Message::Text(p.up_other.clone())).await.map_err(e)?;
                        }
                        up.flush().await.map_err(e)?;
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(e(err)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_pattern_sizes() {
        let p = Pattern::nominal(false);
        let b = Payloads::new(&p);
        assert_eq!(b.append.len(), p.append_bytes);
        assert_eq!(b.frame.len(), p.frame_bytes);
        assert_eq!(b.mark.len(), p.mark_bytes);
        assert!(serde_json::from_str::<serde_json::Value>(b.frame.as_str()).is_ok());
        assert!(b.frame.starts_with(r#"{"event":"media""#));
    }

    /// The relay's whole contract: caller media → one append each, other caller messages
    /// dropped; a delta → frames + mark; a barge-in → clear + upstream events.
    #[test]
    fn relay_forwards_the_pattern() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let p = Pattern::nominal(false);
            let up_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let up_url = format!("ws://{}/v1/realtime", up_listener.local_addr().unwrap());
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(serve(listener, up_url, Arc::new(Payloads::new(&p))));
            let (mut caller, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/media"))
                .await
                .unwrap();
            let (tcp, _) = up_listener.accept().await.unwrap();
            let mut up = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let text = |s: &str| Message::Text(s.into());
            for _ in 0..3 {
                caller
                    .send(text(r#"{"event":"media","media":{}}"#))
                    .await
                    .unwrap();
                caller
                    .send(text(r#"{"event":"mark","mark":{}}"#))
                    .await
                    .unwrap();
            }
            for _ in 0..3 {
                let m = up.next().await.unwrap().unwrap();
                assert_eq!(m.len(), p.append_bytes);
                assert!(m
                    .to_text()
                    .unwrap()
                    .starts_with(r#"{"type":"input_audio_buffer.append""#));
            }
            up.send(text(r#"{"type":"rate_limits.updated"}"#))
                .await
                .unwrap();
            up.send(text(r#"{"type":"response.output_audio.delta"}"#))
                .await
                .unwrap();
            for _ in 0..p.frames_per_delta {
                let m = caller.next().await.unwrap().unwrap();
                assert!(m.to_text().unwrap().starts_with(r#"{"event":"media""#));
                assert_eq!(m.len(), p.frame_bytes);
            }
            let m = caller.next().await.unwrap().unwrap();
            assert!(m.to_text().unwrap().starts_with(r#"{"event":"mark""#));
            up.send(text(r#"{"type":"input_audio_buffer.speech_started"}"#))
                .await
                .unwrap();
            let m = caller.next().await.unwrap().unwrap();
            assert!(m.to_text().unwrap().starts_with(r#"{"event":"clear""#));
            for _ in 0..p.up_per_barge {
                let m = up.next().await.unwrap().unwrap();
                assert_eq!(m.len(), p.up_other_bytes);
            }
            // Nothing else was sent either way: the next message upstream is a new append.
            caller.send(text(r#"{"event":"media"}"#)).await.unwrap();
            let m = up.next().await.unwrap().unwrap();
            assert!(m
                .to_text()
                .unwrap()
                .starts_with(r#"{"type":"input_audio_buffer.append""#));
        });
    }
}
