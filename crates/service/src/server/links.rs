//! A call's Realtime sockets, by generation: the one in use, and during a rotation its
//! successor (at most two at once), plus at most one connection attempt in flight. The call decides which
//! generation to connect, use and close (`call::Effect`); this only holds the sockets.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as UpMessage;

use super::upstream::{self, Upstream, UpstreamError};
use crate::call::UpstreamLoss;
use crate::config::Config;
use crate::realtime::Dialect;

type Connecting = Pin<Box<dyn Future<Output = (Result<Upstream, UpstreamError>, Duration)> + Send>>;

/// One socket, owned whole: reads happen only while the task waits and writes only between
/// waits, so split halves (and the lock between them, taken on every read and write) would
/// buy nothing.
struct Link {
    generation: u64,
    ws: Upstream,
    /// Fed since the last flush.
    dirty: bool,
}

/// What happened on the sockets.
pub enum Received {
    /// The connection attempt for this generation finished (its socket is held here when `Ok`), after
    /// this long.
    Connected(Result<(), UpstreamError>, Duration),
    Message(UpMessage),
    /// The socket is gone (and already forgotten here).
    Lost(UpstreamLoss),
}

pub struct Links {
    cfg: Arc<Config>,
    /// Boxed: a socket is ~1.4 KB (the TLS stream is inline in it) and the second slot is
    /// only used during a rotation; inline, every call's task would carry both.
    links: [Option<Box<Link>>; 2],
    connecting: Option<(u64, Connecting)>,
}

/// The error of a connection attempt, as the call's input.
pub fn loss_of(e: &UpstreamError) -> UpstreamLoss {
    match e {
        UpstreamError::Refused { status } => UpstreamLoss::Refused { status: *status },
        other => UpstreamLoss::ConnectFailed(other.to_string()),
    }
}

impl Links {
    /// No socket yet: the call asks for each generation, the first one included
    /// (`UpstreamEffect::ConnectUpstream`).
    pub fn new(cfg: Arc<Config>) -> Links {
        Links {
            cfg,
            links: [None, None],
            connecting: None,
        }
    }

    /// Connects `generation` in the call's `dialect` (replacing an attempt still in flight,
    /// which the call gave up on).
    pub fn connect(&mut self, generation: u64, dialect: Dialect) {
        let cfg = self.cfg.clone();
        // Boxed, and dropped once it has finished: the connect future (DNS, TCP, TLS,
        // handshake) is several KiB, and kept inline it would sit in every call's task.
        self.connecting = Some((
            generation,
            Box::pin(async move {
                let t = Instant::now();
                let r = upstream::connect(&cfg, dialect).await;
                (r, t.elapsed())
            }),
        ));
    }

    /// The next thing that happens on the sockets: the connection attempt in flight finished, or a socket
    /// produced a message or ended (a socket that ended is forgotten before this returns).
    /// Pending when there is nothing to wait for. The task waits on every source of a call in
    /// one hand-written poll (`media::wake`), so no future is rebuilt per wake-up.
    pub fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> Poll<(u64, Received)> {
        if let Some((generation, fut)) = self.connecting.as_mut() {
            let generation = *generation;
            if let Poll::Ready((r, took)) = fut.as_mut().poll(cx) {
                self.connecting = None;
                return Poll::Ready((generation, self.install(generation, r, took)));
            }
        }
        for slot in self.links.iter_mut() {
            let Some(l) = slot else { continue };
            let Poll::Ready(item) = l.ws.poll_next_unpin(cx) else {
                continue;
            };
            let generation = l.generation;
            let received = match item {
                Some(Ok(UpMessage::Close(frame))) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    });
                    Received::Lost(UpstreamLoss::Closed { code, reason })
                }
                Some(Ok(m)) => return Poll::Ready((generation, Received::Message(m))),
                None => Received::Lost(UpstreamLoss::Dropped("socket ended without close".into())),
                Some(Err(e)) => Received::Lost(UpstreamLoss::Dropped(format!("socket error: {e}"))),
            };
            *slot = None;
            return Poll::Ready((generation, received));
        }
        Poll::Pending
    }

    fn install(
        &mut self,
        generation: u64,
        r: Result<Upstream, UpstreamError>,
        took: Duration,
    ) -> Received {
        let ws = match r {
            Ok(ws) => ws,
            Err(e) => return Received::Connected(Err(e), took),
        };
        let link = Link {
            generation,
            ws,
            dirty: false,
        };
        // The call keeps at most two; a third would be a socket it forgot to close.
        let slot = match self.links.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                tracing::warn!(generation, "a third upstream socket; dropping the oldest");
                usize::from(
                    self.links[0].as_ref().map(|l| l.generation)
                        > self.links[1].as_ref().map(|l| l.generation),
                )
            }
        };
        self.links[slot] = Some(Box::new(link));
        Received::Connected(Ok(()), took)
    }

    fn get(&mut self, generation: u64) -> Option<&mut Link> {
        self.links
            .iter_mut()
            .flatten()
            .find(|l| l.generation == generation)
            .map(|l| &mut **l)
    }

    /// Whether a socket of this generation is open.
    pub fn has(&self, generation: u64) -> bool {
        self.links
            .iter()
            .flatten()
            .any(|l| l.generation == generation)
    }

    /// Feeds a text message to a generation's socket (flushed by [`Links::flush`]). On a
    /// failure or stall the socket is forgotten and the loss returned. `Ok(false)`: no such
    /// socket.
    pub async fn feed(
        &mut self,
        generation: u64,
        text: &str,
        stall: Duration,
    ) -> Result<bool, UpstreamLoss> {
        let Some(link) = self.get(generation) else {
            return Ok(false);
        };
        link.dirty = true;
        let fed = tokio::time::timeout(stall, link.ws.feed(UpMessage::Text(text.into()))).await;
        let loss = match fed {
            Ok(Ok(())) => return Ok(true),
            Ok(Err(e)) => UpstreamLoss::WriteFailed(e.to_string()),
            Err(_) => UpstreamLoss::WriteFailed(format!("stalled for {stall:?}")),
        };
        self.forget(generation);
        Err(loss)
    }

    /// Flushes every socket fed since the last flush; returns the generations that failed
    /// (forgotten).
    pub async fn flush(&mut self, stall: Duration) -> Vec<(u64, UpstreamLoss)> {
        let mut failed = Vec::new();
        for slot in self.links.iter_mut() {
            let Some(l) = slot else { continue };
            if !l.dirty {
                continue;
            }
            l.dirty = false;
            match tokio::time::timeout(stall, l.ws.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed.push((l.generation, UpstreamLoss::WriteFailed(e.to_string()))),
                Err(_) => failed.push((
                    l.generation,
                    UpstreamLoss::WriteFailed(format!("flush stalled for {stall:?}")),
                )),
            }
        }
        for (g, _) in &failed {
            self.forget(*g);
        }
        failed
    }

    fn forget(&mut self, generation: u64) {
        for slot in self.links.iter_mut() {
            if slot.as_ref().is_some_and(|l| l.generation == generation) {
                *slot = None;
            }
        }
    }

    /// Closes a generation's socket (normal close) in the background, so a peer slow to
    /// answer cannot hold up the call. Returns whether there was one.
    pub fn close(&mut self, generation: u64) -> bool {
        for slot in self.links.iter_mut() {
            if slot.as_ref().is_some_and(|l| l.generation == generation) {
                if let Some(mut l) = slot.take() {
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(2),
                            l.ws.send(UpMessage::Close(None)),
                        )
                        .await;
                    });
                    return true;
                }
            }
        }
        false
    }

    /// Closes every socket (the call is over), waiting for each close to be written. Returns
    /// the generations whose close was written (oldest first).
    pub async fn close_all(&mut self) -> Vec<u64> {
        let mut closed = Vec::new();
        let mut open: Vec<Box<Link>> = self.links.iter_mut().filter_map(Option::take).collect();
        open.sort_by_key(|l| l.generation);
        for mut l in open {
            if l.ws.send(UpMessage::Close(None)).await.is_ok() {
                closed.push(l.generation);
            }
        }
        self.connecting = None;
        closed
    }
}
