//! A simulated Twilio caller: the Media Streams peer, as Twilio behaves.
//!
//! It fetches TwiML like Twilio's webhook, opens the `<Stream url>`, sends `connected`,
//! `start` and a `media` frame every 20 ms (real time) from a script of speech and silence,
//! and plays what the bridge sends back at real time: media is queued, a `mark` is echoed
//! when playback reaches it, a `clear` drops the queue and echoes the pending marks at once.
//! Used by the integration tests, the demo and the load tool; it shares no code with the
//! bridge's own Twilio types, so a bug there is not mirrored here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub mod dtmf_detect;
mod echo;
mod http;
pub use echo::{Biquad, SpeakerEcho};
pub use http::{
    check_outbound_shape, fetch_twiml, post_form, stream_parameters_from_twiml,
    stream_url_from_twiml,
};

/// μ-law bytes per ms at 8 kHz.
const BPMS: u64 = 8;
const FRAME: usize = 160;
/// Quiet longer than this between agent audio starts a new stretch (a new answer).
const STRETCH_GAP: Duration = Duration::from_millis(250);

/// One step of what the caller does.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send this μ-law audio, 20 ms a frame, in real time.
    Say(Vec<u8>),
    /// Send μ-law silence for this long.
    Silence(Duration),
    /// Send silence until the agent's audio has played this long since its current stretch
    /// started (then carry on: e.g. talk over it), or `timeout` passes.
    WaitAgentAudio { heard: Duration, timeout: Duration },
    /// Send silence until the agent, having spoken since this step began, has been quiet for
    /// `quiet`, or `timeout` passes.
    WaitAgentDone { quiet: Duration, timeout: Duration },
    /// Send a DTMF digit.
    Dtmf(char),
    /// Lose this many frames: Twilio's timestamps jump, nothing is sent meanwhile.
    DropFrames(u32),
}

/// The account the simulated Twilio calls from (in `start` and the TwiML request).
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";

#[derive(Debug, Clone)]
pub struct CallerOptions {
    /// Base URL of the bridge, e.g. `http://127.0.0.1:8080`.
    pub bridge: String,
    pub call_sid: String,
    pub from: String,
    pub script: Vec<Step>,
    /// After the script: send `stop` (a hang-up) or just close the socket.
    pub send_stop: bool,
    /// Silence kept streaming after the script (to hear the last answer).
    pub tail: Duration,
    /// Where to report what happens as it happens (the demo's live view).
    pub events: Option<tokio::sync::mpsc::UnboundedSender<CallerEvent>>,
    /// Turns `true` when Twilio ends the stream on its side (the call was hung up or
    /// redirected through REST): the caller then sends `stop` and closes, as Twilio does.
    pub twilio_ends: Option<tokio::sync::watch::Receiver<bool>>,
    /// Playout that runs late (a deep jitter buffer, a busy network, a slow phone): agent audio
    /// arriving at an empty queue starts playing this long after it arrived, so marks echo that
    /// much later than the bridge's clock expects. Zero plays at once, as Twilio normally does.
    pub playout_delay: Duration,
    /// Open this `<Stream url>` instead of asking the webhook: its TwiML was fetched earlier
    /// (e.g. just before the bridge began to drain).
    pub stream_url: Option<String>,
    /// The `<Stream>`'s `<Parameter>`s when no TwiML is fetched (`stream_url` given: an
    /// outbound call's `direction`, `profile`), added to `start.customParameters` as Twilio does.
    pub parameters: Vec<(String, String)>,
    /// Twilio's time between our TwiML answer and opening the media socket (hundreds of ms
    /// on real calls). Zero opens it at once.
    pub stream_delay: Duration,
    /// A speakerphone: the agent audio as played comes back into what the caller sends.
    pub echo: Option<SpeakerEcho>,
}

/// Something the caller experienced, with the time since the call started.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerEvent {
    pub at: Duration,
    pub kind: CallerEventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallerEventKind {
    /// The caller started saying the `n`-th `Step::Say` (0-based).
    SayStarted(usize),
    /// The caller finished it.
    SayEnded(usize),
    /// Agent audio reached the caller after it finished speaking (`latency` since then).
    AgentAudio { latency: Duration },
    /// The bridge cleared the caller's playback after this much of the answer was heard.
    Clear { heard_ms: f64 },
    /// The caller pressed a key.
    Dtmf(char),
}

impl Default for CallerOptions {
    fn default() -> Self {
        CallerOptions {
            bridge: "http://127.0.0.1:8080".into(),
            call_sid: "CA00000000000000000000000000000001".into(),
            from: "+15550100".into(),
            script: Vec::new(),
            send_stop: true,
            tail: Duration::from_millis(500),
            events: None,
            twilio_ends: None,
            playout_delay: Duration::ZERO,
            stream_url: None,
            parameters: Vec::new(),
            stream_delay: Duration::ZERO,
            echo: None,
        }
    }
}

/// A `clear` as the caller experienced it.
#[derive(Debug, Clone)]
pub struct ClearSeen {
    /// Since the call started.
    pub at: Duration,
    /// Agent audio heard in the stretch that was playing (since the queue was last empty).
    pub heard_in_stretch_ms: f64,
    /// Audio discarded from the queue.
    pub discarded_bytes: usize,
}

/// When the caller said one `Step::Say`, since the call started (its first and last frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaySpan {
    pub started: Duration,
    pub ended: Option<Duration>,
}

/// What happened on the call, from the caller's side.
#[derive(Debug, Default, Clone)]
pub struct CallerReport {
    pub twiml: String,
    pub stream_url: String,
    pub frames_sent: u64,
    pub media_received: u64,
    /// Media messages whose payload was not exactly 160 bytes.
    pub odd_frames: u64,
    pub bytes_received: u64,
    pub bytes_played: u64,
    pub marks_received: u64,
    pub marks_echoed: u64,
    pub clears: Vec<ClearSeen>,
    /// Every `Step::Say`, in script order.
    pub says: Vec<SaySpan>,
    /// Messages that were not exactly one of Twilio's three outbound shapes.
    pub protocol_violations: Vec<String>,
    /// Time from the end of each `Say` to the first agent audio received after it.
    pub response_latencies: Vec<Duration>,
    /// Time from sending `start` to the first agent audio (the greeting, usually).
    pub first_audio_after_start: Option<Duration>,
    /// The agent audio as played (μ-law), with silence where nothing played.
    pub agent_audio: Vec<u8>,
    /// The caller's audio as sent (μ-law), silence where frames were dropped; starts at the same
    /// instant as `agent_audio`, so the two line up.
    pub caller_audio: Vec<u8>,
    /// Whether the bridge closed the socket (instead of us).
    pub closed_by_bridge: bool,
    /// Set when Twilio ended the stream (`twilio_ends`): agent audio played, received and
    /// still queued at that moment.
    pub ended_by_twilio: Option<EndedByTwilio>,
    pub duration: Duration,
}

/// Playback at the moment Twilio ended the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndedByTwilio {
    pub played: u64,
    pub received: u64,
    pub queued: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("TwiML request failed: {0}")]
    Twiml(String),
    #[error("no <Stream url> in TwiML: {0}")]
    NoStream(String),
    #[error("media socket: {0}")]
    Socket(String),
}

enum Queued {
    Audio(Vec<u8>, usize),
    Mark(String),
}

/// Twilio's playback of what the bridge sent.
struct Player {
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    /// Playback time already accounted for.
    clock: Instant,
    stretch_heard: u64,
    /// When the queue last ran empty.
    idle_since: Option<Instant>,
    played: u64,
}

impl Player {
    /// Plays the queue up to `now`; returns marks reached (echo them), recording audio played.
    fn advance(&mut self, now: Instant, played_out: &mut Vec<u8>, echoes: &mut Vec<String>) {
        if self.queue.is_empty() {
            // Nothing playing: silence on the line; the clock follows now.
            let idle_ms = now.saturating_duration_since(self.clock).as_millis() as u64;
            played_out.extend(std::iter::repeat_n(0xFFu8, (idle_ms * BPMS) as usize));
            self.clock = now;
            // A stretch of agent audio ends when the line has been quiet a while (a momentary
            // underrun inside one answer does not start a new stretch).
            if now.saturating_duration_since(self.idle_since.unwrap_or(now)) >= STRETCH_GAP {
                self.stretch_heard = 0;
            }
            self.idle_since.get_or_insert(now);
            return;
        }
        self.idle_since = None;
        let mut budget =
            (now.saturating_duration_since(self.clock).as_micros() as u64 * BPMS / 1000) as usize;
        self.clock += Duration::from_micros(budget as u64 * 1000 / BPMS);
        while let Some(front) = self.queue.front_mut() {
            match front {
                Queued::Mark(name) => {
                    echoes.push(std::mem::take(name));
                    self.queue.pop_front();
                }
                Queued::Audio(bytes, off) => {
                    if budget == 0 {
                        break;
                    }
                    let n = budget.min(bytes.len() - *off);
                    played_out.extend_from_slice(&bytes[*off..*off + n]);
                    *off += n;
                    budget -= n;
                    self.queued_bytes -= n;
                    self.played += n as u64;
                    self.stretch_heard += n as u64;
                    if *off == bytes.len() {
                        self.queue.pop_front();
                    }
                }
            }
        }
        if self.queue.is_empty() && budget > 0 {
            // Ran dry mid-interval: the rest was silence.
            played_out.extend(std::iter::repeat_n(0xFFu8, budget));
        }
    }

    /// When the next queued mark will be reached, if one is queued.
    fn next_mark_due(&self) -> Option<Instant> {
        let mut bytes = 0usize;
        for q in &self.queue {
            match q {
                Queued::Audio(b, off) => bytes += b.len() - off,
                Queued::Mark(_) => {
                    return Some(self.clock + Duration::from_micros(bytes as u64 * 1000 / BPMS))
                }
            }
        }
        None
    }
}

/// Places one call against the bridge and plays the script. Returns when the script (and
/// tail) is done, or the bridge closes the socket.
pub async fn run(opts: CallerOptions) -> Result<CallerReport, CallerError> {
    let mut report = CallerReport::default();
    // What `start.customParameters` carries: the TwiML's `<Parameter>`s, as Twilio sends them.
    let mut parameters = json!({"From":opts.from,"To":"+15550199","CallSid":opts.call_sid});
    let url = match &opts.stream_url {
        Some(url) => url.clone(),
        None => {
            let twiml = fetch_twiml(&opts).await?;
            let url = stream_url_from_twiml(&twiml)
                .ok_or_else(|| CallerError::NoStream(twiml.clone()))?;
            if let Some(p) = parameters.as_object_mut() {
                p.extend(stream_parameters_from_twiml(&twiml));
            }
            report.twiml = twiml;
            url
        }
    };
    tokio::time::sleep(opts.stream_delay).await;
    report.stream_url = url.clone();
    // The TwiML says wss:// (Twilio only speaks TLS); on loopback the bridge is plain ws.
    let ws_url = url.replacen("wss://", "ws://", 1);
    // Nagle off, as Twilio's media servers send: a mark echo written right after a media frame
    // must not wait for the bridge's delayed ACK (up to 40 ms), or the bridge's estimate of
    // what was heard is skewed by the test peer itself.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(ws_url.as_str(), None, true)
        .await
        .map_err(|e| CallerError::Socket(e.to_string()))?;
    let (mut tx, mut rx) = ws.split();
    let sid = format!("MZ{}", &opts.call_sid.trim_start_matches("CA"));
    let t0 = Instant::now();
    let events = opts.events.clone();
    let emit = |kind: CallerEventKind| {
        if let Some(tx) = &events {
            let _ = tx.send(CallerEvent {
                at: t0.elapsed(),
                kind,
            });
        }
    };
    let mut says = 0usize;
    for (name, value) in &opts.parameters {
        parameters[name] = value.as_str().into();
    }
    let send = |v: Value| Message::Text(v.to_string().into());
    let _ = tx
        .send(send(
            json!({"event":"connected","protocol":"Call","version":"1.0.0"}),
        ))
        .await;
    let _ = tx
        .send(send(json!({"event":"start","sequenceNumber":"1","streamSid":sid,
            "start":{"accountSid":"AC00000000000000000000000000000001","streamSid":sid,"callSid":opts.call_sid,
              "tracks":["inbound"],"customParameters":parameters,
              "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}})))
        .await;

    let mut seq: u64 = 2;
    let mut ts_ms: u64 = 0;
    let mut chunk: u64 = 1;
    let mut player = Player {
        queue: VecDeque::new(),
        queued_bytes: 0,
        clock: t0,
        stretch_heard: 0,
        idle_since: None,
        played: 0,
    };
    let mut echoes = Vec::new();
    let mut steps: VecDeque<Step> = opts.script.into();
    let mut current: Option<(Vec<u8>, usize)> = None;
    let mut step_started = t0;
    let mut waiting_since_say: Option<Instant> = None;
    let mut last_agent_audio: Option<Instant> = None;
    let mut tail_until: Option<Instant> = None;
    let mut next_frame = t0;
    let silence = [0xFFu8; FRAME];
    let mut twilio_ends = opts.twilio_ends.clone();
    let mut echo_path = opts.echo.map(echo::EchoPath::new);

    'call: loop {
        let mark_due = player.next_mark_due();
        let wake = mark_due.map_or(next_frame, |m| m.min(next_frame));
        tokio::select! {
            msg = rx.next() => {
                let now = Instant::now();
                player.advance(now, &mut report.agent_audio, &mut echoes);
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = match serde_json::from_str(t.as_str()) {
                            Ok(v) => v,
                            Err(e) => { report.protocol_violations.push(format!("invalid JSON: {e}")); continue; }
                        };
                        if let Err(e) = check_outbound_shape(&v, &sid) {
                            report.protocol_violations.push(e);
                            continue;
                        }
                        match v["event"].as_str() {
                            Some("media") => {
                                let bytes = B64.decode(v["media"]["payload"].as_str().unwrap_or("")).unwrap_or_default();
                                report.media_received += 1;
                                if bytes.len() != FRAME { report.odd_frames += 1; }
                                report.bytes_received += bytes.len() as u64;
                                report.first_audio_after_start.get_or_insert(now - t0);
                                if let Some(since) = waiting_since_say.take() {
                                    report.response_latencies.push(now - since);
                                    emit(CallerEventKind::AgentAudio { latency: now - since });
                                }
                                last_agent_audio = Some(now);
                                if player.queue.is_empty() && !opts.playout_delay.is_zero() {
                                    // Playback of this stretch starts late: silence meanwhile.
                                    let late = opts.playout_delay;
                                    report.agent_audio.extend(std::iter::repeat_n(
                                        0xFFu8,
                                        (late.as_millis() as u64 * BPMS) as usize,
                                    ));
                                    player.clock = now + late;
                                }
                                player.queued_bytes += bytes.len();
                                player.queue.push_back(Queued::Audio(bytes, 0));
                            }
                            Some("mark") => {
                                report.marks_received += 1;
                                player.queue.push_back(Queued::Mark(v["mark"]["name"].as_str().unwrap_or("").to_owned()));
                            }
                            Some("clear") => {
                                let heard = player.stretch_heard as f64 / BPMS as f64;
                                emit(CallerEventKind::Clear { heard_ms: heard });
                                report.clears.push(ClearSeen {
                                    at: now - t0,
                                    heard_in_stretch_ms: heard,
                                    discarded_bytes: player.queued_bytes,
                                });
                                // Twilio drops the audio and echoes every pending mark.
                                for q in player.queue.drain(..) {
                                    if let Queued::Mark(name) = q { echoes.push(name); }
                                }
                                player.queued_bytes = 0;
                                player.stretch_heard = 0;
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Binary(_))) => report.protocol_violations.push("binary frame".into()),
                    Some(Ok(Message::Close(_))) | None => { report.closed_by_bridge = true; break 'call; }
                    Some(Ok(_)) => {}
                    Some(Err(_)) => { report.closed_by_bridge = true; break 'call; }
                }
            }
            _ = async {
                let ended = match twilio_ends.as_mut() {
                    Some(rx) => rx.wait_for(|v| *v).await.is_ok(),
                    None => false,
                };
                if !ended {
                    std::future::pending::<()>().await;
                }
            } => {
                player.advance(Instant::now(), &mut report.agent_audio, &mut echoes);
                report.ended_by_twilio = Some(EndedByTwilio {
                    played: player.played,
                    received: report.bytes_received,
                    queued: player.queued_bytes,
                });
                break 'call;
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                let now = Instant::now();
                player.advance(now, &mut report.agent_audio, &mut echoes);
                if now < next_frame {
                    // A mark came due: echoed below.
                } else {
                    next_frame += Duration::from_millis(20);
                    // Choose this frame's audio from the script.
                    let mut frame: Option<Vec<u8>> = None;
                    let mut dropped = false;
                    loop {
                        if let Some((audio, off)) = current.as_mut() {
                            let end = (*off + FRAME).min(audio.len());
                            let mut f = audio[*off..end].to_vec();
                            f.resize(FRAME, 0xFF);
                            *off = end;
                            if *off >= audio.len() {
                                current = None;
                                waiting_since_say = Some(now + Duration::from_millis(20));
                                // The next step's waits count from the end of the speech: agent
                                // audio cut off by this very utterance is not an answer to it.
                                step_started = now;
                                if let Some(span) = report.says.last_mut() {
                                    span.ended = Some(now - t0);
                                }
                                emit(CallerEventKind::SayEnded(says - 1));
                            }
                            frame = Some(f);
                            break;
                        }
                        match steps.front().cloned() {
                            None => {
                                let until = *tail_until.get_or_insert(now + opts.tail);
                                if now >= until { break 'call; }
                                break;
                            }
                            Some(Step::Say(a)) => {
                                steps.pop_front();
                                current = Some((a, 0));
                                step_started = now;
                                report.says.push(SaySpan { started: now - t0, ended: None });
                                emit(CallerEventKind::SayStarted(says));
                                says += 1;
                            }
                            Some(Step::Silence(d)) => {
                                if now >= step_started + d { steps.pop_front(); step_started = now; continue; }
                                break;
                            }
                            Some(Step::WaitAgentAudio { heard, timeout }) => {
                                let heard_ms = player.stretch_heard / BPMS;
                                if heard_ms >= heard.as_millis() as u64 || now >= step_started + timeout {
                                    steps.pop_front(); step_started = now; continue;
                                }
                                break;
                            }
                            Some(Step::WaitAgentDone { quiet, timeout }) => {
                                let done = last_agent_audio.is_some_and(|t| t > step_started && now >= t + quiet)
                                    && player.queue.is_empty();
                                if done || now >= step_started + timeout {
                                    steps.pop_front(); step_started = now; continue;
                                }
                                break;
                            }
                            Some(Step::Dtmf(d)) => {
                                steps.pop_front();
                                seq += 1;
                                let _ = tx.feed(send(json!({"event":"dtmf","sequenceNumber":seq.to_string(),"streamSid":sid,
                                    "dtmf":{"track":"inbound_track","digit":d.to_string()}}))).await;
                                emit(CallerEventKind::Dtmf(d));
                                step_started = now;
                            }
                            Some(Step::DropFrames(n)) => {
                                steps.pop_front();
                                ts_ms += 20 * u64::from(n);
                                report.caller_audio.extend(std::iter::repeat_n(0xFFu8, FRAME * n as usize));
                                chunk += u64::from(n);
                                seq += u64::from(n);
                                step_started = now;
                                dropped = true;
                                break;
                            }
                        }
                    }
                    if !dropped {
                        let mut f = frame.unwrap_or_else(|| silence.to_vec());
                        if let Some(path) = echo_path.as_mut() {
                            path.mix(&mut f, report.caller_audio.len(), &report.agent_audio);
                        }
                        report.caller_audio.extend_from_slice(&f);
                        seq += 1;
                        let msg = json!({"event":"media","sequenceNumber":seq.to_string(),"streamSid":sid,
                            "media":{"track":"inbound","chunk":chunk.to_string(),"timestamp":ts_ms.to_string(),"payload":B64.encode(&f)}});
                        if tx.feed(send(msg)).await.is_err() { report.closed_by_bridge = true; break 'call; }
                        report.frames_sent += 1;
                        ts_ms += 20;
                        chunk += 1;
                    }
                }
            }
        }
        for name in echoes.drain(..) {
            seq += 1;
            report.marks_echoed += 1;
            let _ = tx
                .feed(send(json!({"event":"mark","sequenceNumber":seq.to_string(),"streamSid":sid,"mark":{"name":name}})))
                .await;
        }
        if tx.flush().await.is_err() {
            report.closed_by_bridge = true;
            break;
        }
    }
    if !report.closed_by_bridge {
        if opts.send_stop || report.ended_by_twilio.is_some() {
            seq += 1;
            let _ = tx
                .send(send(json!({"event":"stop","sequenceNumber":seq.to_string(),"streamSid":sid,
                    "stop":{"accountSid":"AC00000000000000000000000000000001","callSid":opts.call_sid}})))
                .await;
        }
        let _ = tx.send(Message::Close(None)).await;
        // Let the bridge's close arrive.
        await_close(&mut rx, Duration::from_secs(2)).await;
    }
    report.bytes_played = player.played;
    report.duration = t0.elapsed();
    Ok(report)
}

/// A speech-like test signal in μ-law: a 180 Hz voice with harmonics, syllable-modulated, loud
/// enough for any VAD.
pub fn synthetic_speech(ms: u32) -> Vec<u8> {
    let n = (ms as usize) * 8;
    (0..n)
        .map(|i| {
            let t = i as f32 / 8000.0;
            let f0 = 180.0;
            let voice = (2.0 * std::f32::consts::PI * f0 * t).sin()
                + 0.5 * (2.0 * std::f32::consts::PI * 2.0 * f0 * t).sin()
                + 0.3 * (2.0 * std::f32::consts::PI * 3.0 * f0 * t).sin();
            let syllable = 0.6 + 0.4 * (2.0 * std::f32::consts::PI * 4.0 * t).sin().abs();
            let s = (voice * syllable * 7000.0).clamp(-32000.0, 32000.0) as i16;
            audio_codec_algorithms::encode_ulaw(s)
        })
        .collect()
}

/// Reads and drops what the socket brings for at most `within`, until the other end's close
/// (or the end of the stream, or an error).
pub async fn await_close<S, E>(ws: &mut S, within: Duration)
where
    S: futures_util::Stream<Item = Result<Message, E>> + Unpin,
{
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
