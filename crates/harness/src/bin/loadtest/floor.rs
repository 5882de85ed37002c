//! The floor run's peers, in the load tool's process: dumb callers (a media message every
//! 20 ms, a mark echoed for every mark, as Twilio does) and a dumb upstream that sends deltas
//! and other events at the rates and in the bursts a bridge run measured. Both count what
//! crossed the relay's sockets, so the floor's traffic can be checked against the bridge's.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::probe::us_since;
use crate::relay::{padded, BARGE, DELTA, MARK, MEDIA};
use crate::traffic::{Pattern, Traffic, DELTAS_PER_ANSWER, DELTA_GAP_MS};

/// One floor call as its caller saw it.
#[derive(Debug, Default)]
pub struct FloorOutcome {
    pub error: Option<String>,
    pub lateness_us: Vec<u32>,
    pub traffic: Traffic,
}

/// A floor caller: talks every 20 ms for `duration`, echoes marks at once.
/// `phase_us`: when its 20 ms clock starts after connecting (as the bridge run's callers).
pub async fn caller(
    url: String,
    p: Arc<Pattern>,
    duration: Duration,
    phase_us: u64,
) -> FloorOutcome {
    let mut out = FloorOutcome::default();
    if let Err(e) = floor_call(&url, &p, duration, phase_us, &mut out).await {
        out.error = Some(e);
    }
    out
}

async fn floor_call(
    url: &str,
    p: &Pattern,
    duration: Duration,
    phase_us: u64,
    out: &mut FloorOutcome,
) -> Result<(), String> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(crate::small_reads()), true)
            .await
            .map_err(|e| format!("relay socket: {e}"))?;
    let media = padded(MEDIA, p.media_in_bytes);
    let echo = padded(MARK, p.echo_bytes);
    let begin = Instant::now();
    let end = begin + duration;
    let mut next = begin + Duration::from_micros(phase_us);
    out.lateness_us
        .reserve(duration.as_millis() as usize / 20 + 2);
    let e = |e: tokio_tungstenite::tungstenite::Error| e.to_string();
    while next < end {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    out.traffic.tw_out(t.as_str());
                    if t.starts_with(MARK) {
                        out.traffic.tw_in_other.add(echo.len());
                        ws.send(Message::Text(echo.clone())).await.map_err(e)?;
                    }
                }
                Some(Ok(_)) => {}
                _ => return Err("the relay closed the call".into()),
            },
            _ = tokio::time::sleep_until(next.into()) => {
                out.lateness_us.push(us_since(next, Instant::now()));
                next += Duration::from_millis(20);
                out.traffic.tw_in_media.add(media.len());
                ws.send(Message::Text(media.clone())).await.map_err(e)?;
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// The floor's upstream: answers each relay connection with the pattern's deltas and events.
pub struct Upstream {
    pub url: String,
    traffic: Arc<Mutex<Traffic>>,
    open: Arc<std::sync::atomic::AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(p: Arc<Pattern>) -> std::io::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ws://{}/v1/realtime", listener.local_addr()?);
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (t, o) = (traffic.clone(), open.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (p, t, o) = (p.clone(), t.clone(), o.clone());
                o.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut mine = Traffic::default();
                    let accepted = tokio_tungstenite::accept_async_with_config(
                        tcp,
                        Some(crate::small_reads()),
                    );
                    if let Ok(ws) = accepted.await {
                        upstream_session(ws, &p, &mut mine).await;
                    }
                    crate::probe::lock(&t).merge(&mine);
                    o.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                });
            }
        });
        Ok(Upstream {
            url,
            traffic,
            open,
            accept,
        })
    }

    /// Waits (at most `wait`) for the relay to close every session, then the totals.
    pub async fn finish(self, wait: Duration) -> Traffic {
        let until = Instant::now() + wait;
        while self.open.load(std::sync::atomic::Ordering::Relaxed) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.accept.abort();
        std::mem::take(&mut *crate::probe::lock(&self.traffic))
    }
}

/// One answer's schedule: the simulator's burst (`DELTAS_PER_ANSWER` deltas, `DELTA_GAP_MS`
/// apart), then the event-only flushes spread over the rest of the cycle; the cycle's length
/// gives the measured delta rate.
struct Schedule {
    cycle: u64,
    events_per_cycle: f64,
}

impl Schedule {
    fn new(p: &Pattern) -> Schedule {
        let ticks_per_s = 1000.0 / DELTA_GAP_MS as f64;
        let burst = u64::from(DELTAS_PER_ANSWER);
        let cycle = if p.deltas_per_s > 0.0 {
            ((f64::from(DELTAS_PER_ANSWER) / p.deltas_per_s) * ticks_per_s).round() as u64
        } else {
            u64::MAX / 2
        };
        let cycle = cycle.max(burst + 1);
        Schedule {
            cycle,
            events_per_cycle: p.event_flushes_per_s * cycle as f64 / ticks_per_s,
        }
    }
}

async fn upstream_session<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    p: &Pattern,
    t: &mut Traffic,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let delta = padded(DELTA, p.delta_bytes);
    let event = padded(
        r#"{"type":"response.output_audio_transcript.delta""#,
        p.event_bytes,
    );
    let barge = padded(BARGE, p.event_bytes);
    let sched = Schedule::new(p);
    let gap = Duration::from_millis(DELTA_GAP_MS);
    let start = tokio::time::Instant::now();
    // Tick numbers since the start; within a cycle, ticks < DELTAS_PER_ANSWER carry a delta and
    // event-only flushes are spread over the rest.
    let (mut acc_others, mut acc_events, mut acc_barges) = (0.0f64, 0.0f64, 0.0f64);
    let mut tick: u64 = 0;
    let mut due_events: Vec<u64> = Vec::new();
    let barges_per_event = if p.event_flushes_per_s > 0.0 {
        p.barges_per_s / p.event_flushes_per_s
    } else {
        0.0
    };
    loop {
        let in_cycle = tick % sched.cycle;
        if in_cycle == 0 {
            acc_events += sched.events_per_cycle;
            let n = acc_events.floor() as u64;
            acc_events -= n as f64;
            let rest = sched.cycle - u64::from(DELTAS_PER_ANSWER);
            due_events.clear();
            due_events.extend((0..n).map(|k| u64::from(DELTAS_PER_ANSWER) + k * rest / n.max(1)));
        }
        let is_delta = in_cycle < u64::from(DELTAS_PER_ANSWER);
        let events_now = due_events.iter().filter(|&&d| d == in_cycle).count();
        if is_delta || events_now > 0 {
            let sent = async {
                if is_delta {
                    acc_others += p.others_per_delta;
                    let n = acc_others.floor() as usize;
                    acc_others -= n as f64;
                    t.rt_in_delta.add(delta.len());
                    t.rt_in_delta_flushes += 1;
                    t.rt_in_others_with_delta += n as u64;
                    ws.feed(Message::Text(delta.clone())).await?;
                    for _ in 0..n {
                        t.rt_in_other.add(event.len());
                        ws.feed(Message::Text(event.clone())).await?;
                    }
                }
                for _ in 0..events_now {
                    acc_others += p.others_per_event_flush;
                    let mut n = acc_others.floor() as usize;
                    acc_others -= n as f64;
                    t.rt_in_event_flushes += 1;
                    acc_barges += barges_per_event;
                    if acc_barges >= 1.0 && n > 0 {
                        acc_barges -= 1.0;
                        n -= 1;
                        t.rt_in_other.add(barge.len());
                        ws.feed(Message::Text(barge.clone())).await?;
                    }
                    for _ in 0..n {
                        t.rt_in_other.add(event.len());
                        ws.feed(Message::Text(event.clone())).await?;
                    }
                }
                ws.flush().await
            };
            if sent.await.is_err() {
                return;
            }
        }
        tick += 1;
        // Sleep to the next tick that has something to send, reading the relay meanwhile.
        let mut next = tick;
        loop {
            let c = next % sched.cycle;
            if c < u64::from(DELTAS_PER_ANSWER) || due_events.contains(&c) {
                break;
            }
            next += 1;
        }
        tick = next;
        let due = start + gap * tick as u32;
        loop {
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(Message::Text(m))) => t.rt_out(m.as_str()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep_until(due) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_matches_the_delta_rate() {
        let p = Pattern::nominal(false);
        let s = Schedule::new(&p);
        let secs = s.cycle as f64 * DELTA_GAP_MS as f64 / 1000.0;
        let rate = f64::from(DELTAS_PER_ANSWER) / secs;
        assert!(
            (rate - p.deltas_per_s).abs() / p.deltas_per_s < 0.02,
            "{rate}"
        );
    }
}
