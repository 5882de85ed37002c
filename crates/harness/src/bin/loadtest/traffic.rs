//! What crossed the measured process's two sockets, counted at its peers, and the floor's
//! pattern derived from it: the bridge run measures the traffic, the floor run replays it.

use serde::{Deserialize, Serialize};

/// Messages and their bytes (WebSocket payload, not framing).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Count {
    pub msgs: u64,
    pub bytes: u64,
}

impl Count {
    #[inline]
    pub fn add(&mut self, bytes: usize) {
        self.msgs += 1;
        self.bytes += bytes as u64;
    }

    pub fn add_n(&mut self, msgs: usize, bytes: usize) {
        self.msgs += msgs as u64;
        self.bytes += bytes as u64;
    }

    fn merge(&mut self, o: Count) {
        self.msgs += o.msgs;
        self.bytes += o.bytes;
    }

    /// Average message size, bytes.
    pub fn avg(&self) -> usize {
        (self.bytes as f64 / self.msgs.max(1) as f64).round() as usize
    }

    fn cell(&self, call_s: f64) -> String {
        format!("{:.1} × {} B", self.msgs as f64 / call_s, self.avg())
    }
}

/// Traffic of the measured process, by socket, direction and kind. "In" is into the measured
/// process (the bridge or the floor relay).
#[derive(Debug, Default, Clone)]
pub struct Traffic {
    /// Caller → process: `media`, and everything else (mark echoes, connected/start/stop).
    pub tw_in_media: Count,
    pub tw_in_other: Count,
    /// Process → caller.
    pub tw_out_media: Count,
    pub tw_out_mark: Count,
    pub tw_out_clear: Count,
    pub tw_out_other: Count,
    /// Upstream → process: audio deltas and other events.
    pub rt_in_delta: Count,
    pub rt_in_other: Count,
    /// Upstream flushes that carried a delta, and the other events that went out with them.
    pub rt_in_delta_flushes: u64,
    pub rt_in_others_with_delta: u64,
    /// Upstream flushes without a delta.
    pub rt_in_event_flushes: u64,
    /// Process → upstream: `input_audio_buffer.append` and everything else.
    pub rt_out_append: Count,
    pub rt_out_other: Count,
}

impl Traffic {
    pub fn merge(&mut self, o: &Traffic) {
        self.tw_in_media.merge(o.tw_in_media);
        self.tw_in_other.merge(o.tw_in_other);
        self.tw_out_media.merge(o.tw_out_media);
        self.tw_out_mark.merge(o.tw_out_mark);
        self.tw_out_clear.merge(o.tw_out_clear);
        self.tw_out_other.merge(o.tw_out_other);
        self.rt_in_delta.merge(o.rt_in_delta);
        self.rt_in_other.merge(o.rt_in_other);
        self.rt_in_delta_flushes += o.rt_in_delta_flushes;
        self.rt_in_others_with_delta += o.rt_in_others_with_delta;
        self.rt_in_event_flushes += o.rt_in_event_flushes;
        self.rt_out_append.merge(o.rt_out_append);
        self.rt_out_other.merge(o.rt_out_other);
    }

    /// Counts a message the process sent to a caller.
    #[inline]
    pub fn tw_out(&mut self, text: &str) {
        let b = text.as_bytes();
        // `{"event":"media"` / `"mark"` / `"clear"`: the byte after `{"event":"` and the next.
        match (b.get(10), b.get(11)) {
            (Some(b'm'), Some(b'e')) => self.tw_out_media.add(b.len()),
            (Some(b'm'), Some(b'a')) => self.tw_out_mark.add(b.len()),
            (Some(b'c'), _) => self.tw_out_clear.add(b.len()),
            _ => self.tw_out_other.add(b.len()),
        }
    }

    /// Counts a message the process sent upstream.
    #[inline]
    pub fn rt_out(&mut self, text: &str) {
        if text.starts_with(crate::relay::APPEND) {
            self.rt_out_append.add(text.len());
        } else {
            self.rt_out_other.add(text.len());
        }
    }

    /// The per-call-second table lines (one per socket direction).
    pub fn describe(&self, call_s: f64) -> String {
        let call_s = call_s.max(1e-9);
        format!(
            "  Twilio in: media {}, other {}\n  Twilio out: media {}, mark {}, clear {}, other {}\n  \
             Realtime in: delta {}, other {} ({:.1} flushes with a delta, {:.1} without)\n  \
             Realtime out: append {}, other {}",
            self.tw_in_media.cell(call_s),
            self.tw_in_other.cell(call_s),
            self.tw_out_media.cell(call_s),
            self.tw_out_mark.cell(call_s),
            self.tw_out_clear.cell(call_s),
            self.tw_out_other.cell(call_s),
            self.rt_in_delta.cell(call_s),
            self.rt_in_other.cell(call_s),
            self.rt_in_delta_flushes as f64 / call_s,
            self.rt_in_event_flushes as f64 / call_s,
            self.rt_out_append.cell(call_s),
            self.rt_out_other.cell(call_s),
        )
    }

    pub fn to_json(&self, call_s: f64) -> serde_json::Value {
        let c = |c: &Count| serde_json::json!({"msgs_per_call_s": c.msgs as f64 / call_s.max(1e-9), "avg_bytes": c.avg()});
        serde_json::json!({
            "twilio_in_media": c(&self.tw_in_media),
            "twilio_in_other": c(&self.tw_in_other),
            "twilio_out_media": c(&self.tw_out_media),
            "twilio_out_mark": c(&self.tw_out_mark),
            "twilio_out_clear": c(&self.tw_out_clear),
            "twilio_out_other": c(&self.tw_out_other),
            "realtime_in_delta": c(&self.rt_in_delta),
            "realtime_in_other": c(&self.rt_in_other),
            "realtime_out_append": c(&self.rt_out_append),
            "realtime_out_other": c(&self.rt_out_other),
        })
    }
}

/// What the floor reproduces, per call: message sizes on each socket, the relay's fan-out
/// (frames and mark per delta, clear and upstream events per barge-in) and the upstream
/// peer's rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// Caller → relay.
    pub media_in_bytes: usize,
    pub echo_bytes: usize,
    /// Relay → upstream: one append per caller media message; `up_per_barge` others per
    /// barge-in (truncate, cancel).
    pub append_bytes: usize,
    pub up_other_bytes: usize,
    pub up_per_barge: usize,
    /// Relay → caller: per upstream delta, `frames_per_delta` media messages and one mark
    /// in one flush; a clear per barge-in.
    pub frames_per_delta: usize,
    pub frame_bytes: usize,
    pub mark_bytes: usize,
    pub clear_bytes: usize,
    /// Upstream peer → relay.
    pub delta_bytes: usize,
    pub event_bytes: usize,
    /// Per call-second.
    pub deltas_per_s: f64,
    pub others_per_delta: f64,
    pub event_flushes_per_s: f64,
    pub others_per_event_flush: f64,
    pub barges_per_s: f64,
}

/// The simulator's delta burst: a 3 s answer in 100 ms deltas, sent at 4× real time.
pub const DELTAS_PER_ANSWER: u32 = 30;
pub const DELTA_GAP_MS: u64 = 25;

impl Pattern {
    /// The floor's pattern for the traffic a bridge run measured over `call_s` call-seconds.
    pub fn from_traffic(t: &Traffic, call_s: f64) -> Pattern {
        let per_s = |n: u64| n as f64 / call_s.max(1e-9);
        let deltas = t.rt_in_delta.msgs.max(1) as f64;
        let clears = t.tw_out_clear.msgs;
        Pattern {
            media_in_bytes: t.tw_in_media.avg(),
            echo_bytes: t.tw_in_other.avg(),
            append_bytes: t.rt_out_append.avg(),
            up_other_bytes: t.rt_out_other.avg(),
            up_per_barge: (t.rt_out_other.msgs as f64 / clears.max(1) as f64).round() as usize,
            frames_per_delta: (t.tw_out_media.msgs as f64 / deltas).round().max(1.0) as usize,
            frame_bytes: t.tw_out_media.avg(),
            mark_bytes: t.tw_out_mark.avg(),
            clear_bytes: t.tw_out_clear.avg(),
            delta_bytes: t.rt_in_delta.avg(),
            event_bytes: t.rt_in_other.avg(),
            deltas_per_s: per_s(t.rt_in_delta.msgs),
            others_per_delta: t.rt_in_others_with_delta as f64 / deltas,
            event_flushes_per_s: per_s(t.rt_in_event_flushes),
            others_per_event_flush: t.rt_in_other.msgs.saturating_sub(t.rt_in_others_with_delta)
                as f64
                / t.rt_in_event_flushes.max(1) as f64,
            barges_per_s: per_s(clears),
        }
    }

    /// For a floor run without a bridge run before it: the pattern of a 100-call pcmu bridge
    /// run on this load (12 s calls, `--target both`; see docs/performance.md).
    pub fn nominal(pcm: bool) -> Pattern {
        let mut p = Pattern {
            media_in_bytes: 379,
            echo_bytes: 116,
            append_bytes: 263,
            up_other_bytes: 214,
            up_per_barge: 1,
            frames_per_delta: 5,
            frame_bytes: 305,
            mark_bytes: 91,
            clear_bytes: 66,
            delta_bytes: 1257,
            event_bytes: 254,
            deltas_per_s: 7.5,
            others_per_delta: 0.6,
            event_flushes_per_s: 0.9,
            others_per_event_flush: 3.0,
            barges_per_s: 0.15,
        };
        if pcm {
            // PCM16 24 kHz: 960 bytes per 20 ms append, 4800 per 100 ms delta, in base64.
            p.append_bytes = 1330;
            p.delta_bytes = 6450;
        }
        p
    }
}
