//! The Realtime API client socket: one per call.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::config::{AuthStyle, Config};
use crate::realtime::Dialect;

pub type Upstream = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("bad realtime_url: {0}")]
    Url(String),
    #[error("connecting to the Realtime API timed out after {0:?}")]
    Timeout(Duration),
    #[error("the Realtime API refused the connection: HTTP {status}")]
    Refused { status: u16 },
    #[error("connecting to the Realtime API failed: {0}")]
    Connect(String),
}

/// Socket buffers sized for this traffic: events are a few KiB (a 20 ms append is ~300 B,
/// a 100 ms PCM16 delta ~6.5 KiB), so tungstenite's 128 KiB defaults would only cost memory
/// per call. Messages may still be large (session events carry instructions): the cap is on
/// what one message may grow to, not on what is reserved.
///
/// - Read: tungstenite zero-fills the whole read buffer on every read, so all of it is
///   resident per call; a larger message reserves its own length anyway. 4 KiB holds a pcmu
///   delta (~1.1 KiB) in one read; a 100 ms PCM16 delta takes two.
/// - Write: the shell `feed`s a batch then `flush`es once, so a threshold above a usual batch
///   means one write syscall per batch (e.g. `response.cancel` + `truncate` on a barge-in, or
///   a few 20 ms appends taken in one wake-up). The buffer keeps the largest capacity it
///   reached for the rest of the call, so the threshold also bounds what every call holds.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(4 * 1024 * 1024)
        .max_message_size(Some(8 * 1024 * 1024))
        .max_frame_size(Some(8 * 1024 * 1024))
}

/// Opens the Realtime socket with the configured auth and the headers of the call's dialect
/// (its profile's, or the top level's).
pub async fn connect(cfg: &Config, dialect: Dialect) -> Result<Upstream, UpstreamError> {
    let mut req = cfg
        .realtime_url
        .as_str()
        .into_client_request()
        .map_err(|e| UpstreamError::Url(e.to_string()))?;
    let headers = req.headers_mut();
    if let Some(key) = &cfg.api_key {
        let (name, value) = match cfg.auth {
            AuthStyle::Bearer => ("authorization", format!("Bearer {}", key.0)),
            AuthStyle::ApiKey => ("api-key", key.0.clone()),
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| UpstreamError::Url("API key is not a valid header value".into()))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    if dialect == Dialect::Beta {
        headers.insert("openai-beta", HeaderValue::from_static("realtime=v1"));
    }
    headers.insert(
        "user-agent",
        HeaderValue::from_static(concat!("callbridge/", env!("CARGO_PKG_VERSION"))),
    );
    let timeout = cfg.upstream_connect_timeout;
    // Nagle off: a 20 ms append must not wait for the previous one's ACK.
    let fut = tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), true);
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(UpstreamError::Timeout(timeout)),
        Ok(Ok((ws, _resp))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => Err(UpstreamError::Refused {
            status: resp.status().as_u16(),
        }),
        Ok(Err(e)) => Err(UpstreamError::Connect(e.to_string())),
    }
}
