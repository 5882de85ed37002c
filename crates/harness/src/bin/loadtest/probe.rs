//! The simulator side of the measurement: what each Realtime session received and sent, and
//! when (µs since the run started, on the same clock as the callers).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::mpsc;

use callbridge_harness::sim::{Probe, SessionProbe};

/// μ-law frame bytes (20 ms at 8 kHz).
pub const FRAME: usize = 160;
/// Bytes of the frame sequence number written into each caller frame (4 bits per byte, as
/// μ-law codes 0xF0..=0xFF: within ±30 of zero, far below any VAD threshold).
pub const SEQ_BYTES: usize = 6;

pub fn write_seq(frame: &mut [u8], seq: u32) {
    for (i, b) in frame.iter_mut().take(SEQ_BYTES).enumerate() {
        *b = 0xF0 | ((seq >> (4 * i)) & 0xF) as u8;
    }
}

pub fn read_seq(frame: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for (i, &b) in frame.iter().take(SEQ_BYTES).enumerate() {
        if b & 0xF0 != 0xF0 {
            return None;
        }
        v |= u32::from(b & 0xF) << (4 * i);
    }
    Some(v)
}

pub fn us_since(t0: Instant, t: Instant) -> u32 {
    t.saturating_duration_since(t0)
        .as_micros()
        .min(u32::MAX as u128) as u32
}

#[derive(Debug, Clone, Copy)]
pub struct Append {
    /// Audio bytes appended in this session up to and including this append.
    pub cum_end: u64,
    pub len: u32,
    pub at_us: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Delta {
    /// This session's n-th response with audio (1-based): the bridge's item sequence number.
    pub response: u32,
    /// Byte offset within the response's audio, in the output format.
    pub offset: u32,
    pub len: u32,
    pub at_us: u32,
}

/// One Realtime session as the simulator saw it.
#[derive(Debug, Default)]
pub struct SimSide {
    pub call: Option<usize>,
    pub appends: Vec<Append>,
    pub deltas: Vec<Delta>,
    pub speech_started_us: Vec<u32>,
    /// pcmu: appends whose last frame did not carry the sequence number its byte offset says.
    pub seq_mismatches: u64,
    /// When the bridge's `session.update` arrived: caller frames sent before it were held in
    /// the bridge's pre-session buffer by design and are not timed.
    pub session_update_us: Option<u32>,
    /// The bridge's traffic on this upstream socket.
    pub traffic: crate::traffic::Traffic,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct LoadProbe {
    t0: Instant,
    pcm: bool,
    /// Calls whose media socket is being opened, waiting for their upstream session.
    pending: Mutex<VecDeque<usize>>,
    opened: mpsc::UnboundedSender<usize>,
    done: Arc<Mutex<Vec<SimSide>>>,
}

impl LoadProbe {
    pub fn new(t0: Instant, pcm: bool) -> (Arc<LoadProbe>, mpsc::UnboundedReceiver<usize>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let p = LoadProbe {
            t0,
            pcm,
            pending: Mutex::new(VecDeque::new()),
            opened: tx,
            done: Arc::new(Mutex::new(Vec::new())),
        };
        (Arc::new(p), rx)
    }

    pub fn expect_call(&self, call: usize) {
        lock(&self.pending).push_back(call);
    }

    /// The expected session never came: later sessions belong to later calls.
    pub fn forget_expected(&self) {
        lock(&self.pending).clear();
    }

    pub fn sessions_done(&self) -> usize {
        lock(&self.done).len()
    }

    pub fn take_sessions(&self) -> Vec<SimSide> {
        std::mem::take(&mut *lock(&self.done))
    }
}

impl Probe for LoadProbe {
    fn session(&self, _n: u64) -> Box<dyn SessionProbe> {
        let call = lock(&self.pending).pop_front();
        if let Some(c) = call {
            let _ = self.opened.send(c);
        }
        Box::new(Session {
            t0: self.t0,
            pcm: self.pcm,
            cum: 0,
            side: SimSide {
                call,
                appends: Vec::with_capacity(4096),
                ..SimSide::default()
            },
            done: self.done.clone(),
        })
    }
}

struct Session {
    t0: Instant,
    pcm: bool,
    cum: u64,
    side: SimSide,
    done: Arc<Mutex<Vec<SimSide>>>,
}

impl SessionProbe for Session {
    fn event_received(&mut self, ty: &str, at: Instant) {
        if ty == "session.update" && self.side.session_update_us.is_none() {
            self.side.session_update_us = Some(us_since(self.t0, at));
        }
    }

    fn append(&mut self, audio: &[u8], at: Instant) {
        self.cum += audio.len() as u64;
        if !self.pcm && audio.len() >= FRAME && audio.len().is_multiple_of(FRAME) {
            // pcmu passes bytes through: the last frame must be the caller's frame number
            // cum/160 - 1.
            let expect = (self.cum / FRAME as u64).saturating_sub(1) as u32 & 0xFF_FFFF;
            if read_seq(&audio[audio.len() - FRAME..]) != Some(expect) {
                self.side.seq_mismatches += 1;
            }
        }
        self.side.appends.push(Append {
            cum_end: self.cum,
            len: audio.len() as u32,
            at_us: us_since(self.t0, at),
        });
    }

    fn delta_sent(&mut self, response: u32, offset: usize, len: usize, at: Instant) {
        self.side.deltas.push(Delta {
            response,
            offset: offset as u32,
            len: len as u32,
            at_us: us_since(self.t0, at),
        });
    }

    fn speech_started_sent(&mut self, at: Instant) {
        self.side.speech_started_us.push(us_since(self.t0, at));
    }

    fn frame_received(&mut self, text: &str) {
        self.side.traffic.rt_out(text);
    }

    fn flush_sent(&mut self, deltas: usize, delta_bytes: usize, others: usize, other_bytes: usize) {
        let t = &mut self.side.traffic;
        t.rt_in_delta.add_n(deltas, delta_bytes);
        t.rt_in_other.add_n(others, other_bytes);
        if deltas > 0 {
            t.rt_in_delta_flushes += 1;
            t.rt_in_others_with_delta += others as u64;
        } else if others > 0 {
            t.rt_in_event_flushes += 1;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let side = std::mem::take(&mut self.side);
        lock(&self.done).push(side);
    }
}
