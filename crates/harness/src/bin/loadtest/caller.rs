//! A lean simulated Twilio caller for load: the same behaviour as `callbridge_harness::caller` (20 ms
//! real-time media, playback at real time, marks echoed when playback reaches them, `clear`
//! drops the queue and echoes the pending marks) without its per-message `serde_json::Value`
//! and recording, so a thousand of them fit beside the bridge on two cores.
//!
//! Each call loops: talk 1.2 s → listen until 1 s of the answer was heard → talk 1.2 s over it
//! (barge-in) → listen until the answer is done → again, until its duration is up.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::probe::{us_since, write_seq, FRAME};

const TALK: Duration = Duration::from_millis(1200);
const HEAR_BEFORE_BARGE: Duration = Duration::from_millis(1000);
const QUIET_AFTER_ANSWER: Duration = Duration::from_millis(400);
const PHASE_TIMEOUT: Duration = Duration::from_secs(8);
const FRAME_DT: Duration = Duration::from_millis(20);

pub struct Opts {
    pub id: usize,
    pub bridge: String,
    pub t0: Instant,
    pub duration: Duration,
    pub speech: Arc<Vec<u8>>,
    /// Start the 20 ms frame clock at [`phase_us`] after connecting (else at once).
    pub spread_phases: bool,
    /// Twilio's delay between the TwiML answer and opening the media socket.
    pub stream_delay: Duration,
}

/// Call `id`'s frame-clock phase: golden-ratio steps spread the calls evenly over 20 ms.
pub fn phase_us(id: usize) -> u64 {
    (id as u64 * 12_361) % 20_000
}

/// The frames of one delta as they arrived: Twilio-bound media between two marks.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    /// The bridge's item sequence number (mark name `item:bytes`).
    pub item: u32,
    /// μ-law bytes of that item framed up to the mark.
    pub end: u32,
    pub first_us: u32,
    pub bytes: u32,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub id: usize,
    pub error: Option<String>,
    pub closed_by_bridge: bool,
    /// Send time of frame j (µs since the run started).
    pub send_us: Vec<u32>,
    pub groups: Vec<Group>,
    /// Media received and not (yet) followed by a mark when the call ended.
    pub unmarked_bytes: u64,
    pub media_bytes: u64,
    pub odd_frames: u64,
    pub bad_messages: u64,
    pub clears_us: Vec<u32>,
    /// How late the 20 ms frame timer fired (µs): the load tool's own lag.
    pub lateness_us: Vec<u32>,
    pub stop_us: u32,
    pub marks_received: u64,
    pub marks_echoed: u64,
    /// What crossed the bridge's Twilio socket (counted here, from the other end).
    pub traffic: crate::traffic::Traffic,
}

enum Queued {
    Audio(usize),
    Mark(String),
}

/// Twilio's playback of what the bridge sent (byte counts only).
struct Player {
    queue: VecDeque<Queued>,
    clock: Instant,
    /// Agent audio heard since the line was last quiet for a while.
    stretch_heard: u64,
    idle_since: Option<Instant>,
    last_audio: Option<Instant>,
}

impl Player {
    fn advance(&mut self, now: Instant, echoes: &mut Vec<String>) {
        if self.queue.is_empty() {
            self.clock = now;
            if now.saturating_duration_since(self.idle_since.unwrap_or(now))
                >= Duration::from_millis(250)
            {
                self.stretch_heard = 0;
            }
            self.idle_since.get_or_insert(now);
            return;
        }
        self.idle_since = None;
        let mut budget =
            (now.saturating_duration_since(self.clock).as_micros() as u64 * 8 / 1000) as usize;
        self.clock += Duration::from_micros(budget as u64 * 1000 / 8);
        while let Some(front) = self.queue.front_mut() {
            match front {
                Queued::Mark(name) => {
                    echoes.push(std::mem::take(name));
                    self.queue.pop_front();
                }
                Queued::Audio(left) => {
                    if budget == 0 {
                        break;
                    }
                    let n = budget.min(*left);
                    *left -= n;
                    budget -= n;
                    self.stretch_heard += n as u64;
                    self.last_audio = Some(now);
                    if *left == 0 {
                        self.queue.pop_front();
                    }
                }
            }
        }
    }

    fn next_mark_due(&self) -> Option<Instant> {
        let mut bytes = 0usize;
        for q in &self.queue {
            match q {
                Queued::Audio(n) => bytes += n,
                Queued::Mark(_) => {
                    return Some(self.clock + Duration::from_micros(bytes as u64 * 1000 / 8))
                }
            }
        }
        None
    }
}

#[derive(Clone, Copy)]
enum Phase {
    Talk { since: Instant, barge: bool },
    WaitHear { since: Instant },
    WaitDone { since: Instant },
}

/// Text between `key` (e.g. `"payload":"`) and the next quote.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

fn b64_len(s: &str) -> usize {
    let pad = s.bytes().rev().take_while(|&b| b == b'=').count();
    (s.len() / 4 * 3).saturating_sub(pad)
}

pub async fn run(o: Opts) -> Outcome {
    let mut out = Outcome {
        id: o.id,
        ..Outcome::default()
    };
    if let Err(e) = call(&o, &mut out).await {
        out.error = Some(e);
    }
    out
}

async fn call(o: &Opts, out: &mut Outcome) -> Result<(), String> {
    let call_sid = format!("CA{:032}", o.id);
    let sid = format!("MZ{:032}", o.id);
    let twiml = callbridge_harness::caller::post_form(
        &o.bridge,
        "/twiml",
        &[
            ("CallSid", &call_sid),
            ("AccountSid", "AC00000000000000000000000000000001"),
            ("From", "+15550100"),
            ("To", "+15550199"),
        ],
    )
    .await
    .map_err(|e| e.to_string())?;
    let url = callbridge_harness::caller::stream_url_from_twiml(&twiml).ok_or("no <Stream url>")?;
    let ws_url = url.replacen("wss://", "ws://", 1);
    // Twilio hands the `<Stream>`'s `<Parameter>`s to `start` (a warm call's token among them).
    let mut parameters = callbridge_harness::caller::stream_parameters_from_twiml(&twiml);
    parameters.insert("From".into(), "+15550100".into());
    let parameters = serde_json::Value::Object(parameters);
    tokio::time::sleep(o.stream_delay).await;
    // Nagle off on our side, as a latency-minded media server would have it.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(
        ws_url.as_str(),
        Some(crate::small_reads()),
        true,
    )
    .await
    .map_err(|e| format!("media socket: {e}"))?;
    // One owner for the whole socket (no split halves: no lock, no second waker per message).
    let mut ws = ws;
    let text = |s: String| Message::Text(s.into());
    let start = format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"AC00000000000000000000000000000001","streamSid":"{sid}","callSid":"{call_sid}","tracks":["inbound"],"customParameters":{parameters},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    );
    let connected = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
    out.traffic.tw_in_other.add(connected.len());
    out.traffic.tw_in_other.add(start.len());
    ws.feed(text(connected.into()))
        .await
        .map_err(|e| e.to_string())?;
    ws.send(text(start)).await.map_err(|e| e.to_string())?;

    let begin = Instant::now();
    let end = begin + o.duration;
    let mut player = Player {
        queue: VecDeque::new(),
        clock: begin,
        stretch_heard: 0,
        idle_since: None,
        last_audio: None,
    };
    let mut phase = Phase::Talk {
        since: begin,
        barge: false,
    };
    // Each call's 20 ms frame clock at its own phase (golden-ratio spread over the 20 ms), as
    // real calls have: calls ramped 10 ms apart would otherwise all tick on two phases and the
    // tool (and the bridge) would see a burst of hundreds of frames at the same instant.
    let phase_us = if o.spread_phases { phase_us(o.id) } else { 0 };
    let mut next_frame = begin + Duration::from_micros(phase_us);
    let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next_frame));
    tokio::pin!(sleep);
    let mut armed = next_frame;
    let mut seq: u64 = 1;
    let mut frame_no: u32 = 0;
    let mut echoes: Vec<String> = Vec::new();
    let mut msg = String::with_capacity(512);
    let mut frame = [0xFFu8; FRAME];
    let mut group: Option<(u32, u32)> = None; // (first_us, bytes)
    out.send_us
        .reserve(o.duration.as_millis() as usize / 20 + 8);
    out.lateness_us
        .reserve(o.duration.as_millis() as usize / 20 + 8);

    loop {
        let wake = player
            .next_mark_due()
            .map_or(next_frame, |m| m.min(next_frame));
        // The timer is re-armed only when the next wake-up moves (not on every message).
        if wake != armed {
            sleep.as_mut().reset(tokio::time::Instant::from_std(wake));
            armed = wake;
        }
        tokio::select! {
            m = ws.next() => {
                let now = Instant::now();
                player.advance(now, &mut echoes);
                match m {
                    Some(Ok(Message::Text(t))) => {
                        let t = t.as_str();
                        out.traffic.tw_out(t);
                        if t.starts_with(r#"{"event":"media""#) {
                            let n = field(t, r#""payload":""#).map_or(0, b64_len);
                            if n != FRAME {
                                out.odd_frames += 1;
                            }
                            out.media_bytes += n as u64;
                            let g = group.get_or_insert((us_since(o.t0, now), 0));
                            g.1 += n as u32;
                            player.queue.push_back(Queued::Audio(n));
                        } else if t.starts_with(r#"{"event":"mark""#) {
                            out.marks_received += 1;
                            let name = field(t, r#""name":""#).unwrap_or("");
                            let (item, end) = name.split_once(':').unwrap_or(("0", "0"));
                            if let (Some((first_us, bytes)), Ok(item), Ok(end)) =
                                (group.take(), item.parse(), end.parse())
                            {
                                out.groups.push(Group { item, end, first_us, bytes });
                            }
                            player.queue.push_back(Queued::Mark(name.to_owned()));
                        } else if t.starts_with(r#"{"event":"clear""#) {
                            out.clears_us.push(us_since(o.t0, now));
                            for q in player.queue.drain(..) {
                                if let Queued::Mark(name) = q {
                                    echoes.push(name);
                                }
                            }
                            player.stretch_heard = 0;
                        } else {
                            out.bad_messages += 1;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        out.closed_by_bridge = true;
                        break;
                    }
                    Some(Ok(_)) => out.bad_messages += 1,
                }
            }
            _ = &mut sleep => {
                let now = Instant::now();
                player.advance(now, &mut echoes);
                if now >= next_frame {
                    out.lateness_us.push(us_since(next_frame, now));
                    next_frame += FRAME_DT;
                    // This frame's audio, from the phase.
                    let talking = match phase {
                        Phase::Talk { since, barge } => {
                            if now >= since + TALK {
                                phase = if barge {
                                    Phase::WaitDone { since: now }
                                } else {
                                    Phase::WaitHear { since: now }
                                };
                                false
                            } else {
                                true
                            }
                        }
                        Phase::WaitHear { since } => {
                            if player.stretch_heard >= HEAR_BEFORE_BARGE.as_millis() as u64 * 8
                                || now >= since + PHASE_TIMEOUT
                            {
                                phase = Phase::Talk { since: now, barge: true };
                                true
                            } else {
                                false
                            }
                        }
                        Phase::WaitDone { since } => {
                            let done = player.queue.is_empty()
                                && player.last_audio.is_some_and(|t| {
                                    t > since && now >= t + QUIET_AFTER_ANSWER
                                });
                            if done || now >= since + PHASE_TIMEOUT {
                                phase = Phase::Talk { since: now, barge: false };
                                true
                            } else {
                                false
                            }
                        }
                    };
                    if talking {
                        let since = match phase {
                            Phase::Talk { since, .. } => since,
                            _ => now,
                        };
                        let i = (now.saturating_duration_since(since).as_millis() as usize / 20)
                            * FRAME
                            % o.speech.len().max(FRAME);
                        let src = o.speech.get(i..i + FRAME).unwrap_or(&[0xFF; FRAME]);
                        frame.copy_from_slice(src);
                    } else {
                        frame.fill(0xFF);
                    }
                    write_seq(&mut frame, frame_no);
                    seq += 1;
                    msg.clear();
                    let _ = write!(
                        msg,
                        r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"{sid}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":""#,
                        frame_no + 1,
                        frame_no * 20
                    );
                    B64.encode_string(frame, &mut msg);
                    msg.push_str(r#""}}"#);
                    out.send_us.push(us_since(o.t0, Instant::now()));
                    out.traffic.tw_in_media.add(msg.len());
                    if ws.feed(Message::Text(msg.as_str().into())).await.is_err() {
                        out.closed_by_bridge = true;
                        break;
                    }
                    frame_no += 1;
                }
            }
        }
        for name in echoes.drain(..) {
            seq += 1;
            out.marks_echoed += 1;
            let m: String = format!(
                r#"{{"event":"mark","sequenceNumber":"{seq}","streamSid":"{sid}","mark":{{"name":"{name}"}}}}"#
            );
            out.traffic.tw_in_other.add(m.len());
            if ws.feed(text(m)).await.is_err() {
                out.closed_by_bridge = true;
            }
        }
        if out.closed_by_bridge || ws.flush().await.is_err() {
            out.closed_by_bridge = true;
            break;
        }
        if Instant::now() >= end {
            break;
        }
    }
    out.unmarked_bytes = group.map_or(0, |g| u64::from(g.1));
    out.stop_us = us_since(o.t0, Instant::now());
    if out.closed_by_bridge {
        return Err("the bridge closed the call".into());
    }
    seq += 1;
    let stop = format!(
        r#"{{"event":"stop","sequenceNumber":"{seq}","streamSid":"{sid}","stop":{{"accountSid":"AC00000000000000000000000000000001","callSid":"{call_sid}"}}}}"#
    );
    let _ = ws.send(text(stop)).await;
    let _ = ws.send(Message::Close(None)).await;
    callbridge_harness::caller::await_close(&mut ws, Duration::from_secs(5)).await;
    Ok(())
}
