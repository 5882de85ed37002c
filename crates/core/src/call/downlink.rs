//! The agent's side, on its way to the caller: a model delta becomes 20 ms μ-law frames and a
//! mark for Twilio; when the caller talks over the agent, Twilio's queue is cleared, the
//! response cancelled and the model's item truncated at what the caller heard.

use std::time::Instant;

use base64::Engine;

use super::{Call, CallEvent, Output, MAX_DELTA_BYTES, ULAW_BYTES_PER_MS};
use crate::audio::g711;
use crate::realtime::{AudioFormat, ClientEvent};
use crate::twilio::Outbound;

impl Call {
    /// The caller started talking over the agent: stop the agent's audio at the caller's ear
    /// first (`clear`), then stop the model generating (`response.cancel`), then tell the model
    /// where it was cut off (`conversation.item.truncate` at what was heard, not what was sent).
    pub(super) fn barge_in(&mut self, now: Instant) {
        if let Some(heard) = self.bargein_paused_at() {
            // A confirmed barge-in already cleared Twilio's queue: cut where it paused.
            self.filler_stop(now);
            let cancel = self.live_response.take();
            self.agent_speaking = false;
            let truncated = self.playback.truncate_paused(heard);
            self.reset_downlink();
            self.cut_model(cancel, truncated, true);
            return;
        }
        self.filler_stop(now);
        // Keys being played are not cut (see `keypad_out`): nothing is cleared meanwhile.
        let audible =
            (self.playback.audible(now) || self.framer.pending() > 0) && !self.keys_playing(now);
        let cancel = self.live_response.take();
        if !audible && cancel.is_none() {
            return;
        }
        let mut truncated = Vec::new();
        self.agent_speaking = false;
        if audible {
            self.send_twilio(Outbound::Clear);
            let heard = self.playback.on_clear(now);
            // Before `start` every message for Twilio is still held: the caller heard nothing.
            let heard = if self.holding_for_start() { 0 } else { heard };
            truncated = self.playback.truncate_after(heard);
            self.reset_downlink();
        }
        self.cut_model(cancel, truncated, audible);
    }

    /// The model's side of a barge-in: stop the response (`response.cancel`), and tell the
    /// model where each item was cut off (`conversation.item.truncate`).
    fn cut_model(&mut self, cancel: Option<String>, truncated: Vec<(String, u64)>, cleared: bool) {
        if let Some(id) = &cancel {
            self.send_model(ClientEvent::ResponseCancel);
            if self.cancelled.len() == 8 {
                self.cancelled.pop_front();
            }
            self.cancelled.push_back(id.clone());
        }
        // In pcm mode the downsampler trims its filter delay, so a μ-law byte position maps to
        // the same instant of the model's 24 kHz audio: no correction needed here.
        for (item_id, ms) in &truncated {
            let produced = self
                .playback
                .find(item_id)
                .map_or(*ms, |i| i.model_bytes / self.format.bytes_per_ms());
            self.conversation.agent_interrupted(item_id, *ms, produced);
            self.send_model(ClientEvent::Truncate {
                item_id: item_id.clone(),
                audio_end_ms: *ms,
            });
        }
        self.out.push_back(Output::Event(CallEvent::BargeIn {
            cleared,
            cancelled: cancel.is_some(),
            truncated,
        }));
    }

    pub(super) fn reset_downlink(&mut self) {
        self.framer.clear();
        self.odd_byte = None;
        self.current_item = None;
        if let Some(d) = self.downsampler.as_mut() {
            d.reset();
        }
    }

    /// Model audio on its way to the caller: decoded, resampled if need be, cut into 20 ms
    /// frames, sent at once (Twilio queues and plays in order; sending ahead costs no latency),
    /// then a mark so we learn when the caller has heard it.
    pub(super) fn downlink(&mut self, response_id: &str, item_id: &str, delta: &str, now: Instant) {
        if self.cancelled.iter().any(|r| r == response_id) || self.playback.is_truncated(item_id) {
            return; // late audio of an interrupted response
        }
        if delta.len() > MAX_DELTA_BYTES * 4 / 3 + 4 {
            self.anomaly("oversize_delta", format!("{} base64 chars", delta.len()));
            return;
        }
        let mut bytes = std::mem::take(&mut self.bytes_buf);
        bytes.clear();
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode_vec(delta, &mut bytes) {
            self.anomaly("bad_audio_delta", e.to_string());
            self.bytes_buf = bytes;
            return;
        }
        if self.filler.is_playing() {
            self.filler_stop(now);
        }
        self.turn_clock.on_delta(now);
        if self.current_item.as_deref() != Some(item_id) {
            // A new item: finish the previous one's tail first.
            if self.current_item.is_some() {
                self.finish_item(now);
            }
            self.current_item = Some(item_id.to_owned());
            // It plays once what Twilio still queues ahead of it has played.
            let queued_ms = self
                .playback
                .sent()
                .saturating_sub(self.playback.heard(now))
                / ULAW_BYTES_PER_MS;
            let opened_ms = now.saturating_duration_since(self.opened_at).as_millis() as u64;
            self.conversation
                .agent_started(item_id, opened_ms + queued_ms);
        }
        match self.playback.item(item_id, response_id) {
            Some(item) => item.model_bytes += bytes.len() as u64,
            None => {
                self.bytes_buf = bytes;
                return;
            }
        }
        let sent = match self.format {
            AudioFormat::Pcmu => self.frame_out(&bytes),
            AudioFormat::Pcm24k => {
                self.pcm_in.clear();
                let mut it = bytes.iter().copied();
                if let Some(lo) = self.odd_byte.take() {
                    if let Some(hi) = it.next() {
                        self.pcm_in.push(i16::from_le_bytes([lo, hi]));
                    }
                }
                let rest: &[u8] = &bytes[bytes.len() - it.len()..];
                let mut pairs = rest.chunks_exact(2);
                for p in &mut pairs {
                    self.pcm_in.push(i16::from_le_bytes([p[0], p[1]]));
                }
                if let [b] = pairs.remainder() {
                    self.odd_byte = Some(*b);
                }
                self.resample_and_frame(false)
            }
        };
        self.bytes_buf = bytes;
        self.after_frames(item_id, sent, now);
    }

    /// Downsamples `pcm_in` (or flushes the resampler), encodes, frames. Returns bytes framed.
    pub(super) fn resample_and_frame(&mut self, flush: bool) -> u64 {
        let Some(down) = self.downsampler.as_mut() else {
            return 0;
        };
        self.pcm_out.clear();
        let r = if flush {
            down.flush(&mut self.pcm_out)
        } else {
            down.process(&self.pcm_in, &mut self.pcm_out)
        };
        if let Err(e) = r {
            self.anomaly("resample_down", e.to_string());
            return 0;
        }
        let mut ulaw = std::mem::take(&mut self.ulaw_buf);
        ulaw.clear();
        g711::encode_into(&self.pcm_out, &mut ulaw);
        let n = self.frame_out(&ulaw);
        self.ulaw_buf = ulaw;
        n
    }

    /// Pushes μ-law bytes through the framer; complete frames go to Twilio.
    pub(super) fn frame_out(&mut self, ulaw: &[u8]) -> u64 {
        if self.holding_for_start() {
            let mut made = Vec::new();
            self.framer.push(ulaw, |f| made.push(*f));
            let before = self.framed_unsent;
            for f in made {
                self.agent_frame(f);
            }
            return self.framed_unsent - before;
        }
        let mut frames = 0u64;
        {
            let out = &mut self.out;
            let mut keep = self.bargein.as_deref_mut();
            let mut sent = self.playback.sent() + self.framed_unsent;
            self.framer.push(ulaw, |f| {
                frames += 1;
                // With confirmed barge-in the frame is kept for a resume (and, while paused,
                // only kept).
                let now = keep
                    .as_deref_mut()
                    .is_none_or(|b| b.on_agent_frame(f, sent));
                sent += crate::audio::FRAME_BYTES as u64;
                if now {
                    out.push_back(Output::ToTwilio(Outbound::Media(*f)));
                }
            });
        }
        self.framed_unsent += frames * crate::audio::FRAME_BYTES as u64;
        frames * crate::audio::FRAME_BYTES as u64
    }

    /// One agent frame for Twilio (kept for a resume first; only kept while paused). Frames of
    /// one batch go out before their `after_frames` counts them as sent.
    fn agent_frame(&mut self, f: [u8; crate::audio::FRAME_BYTES]) {
        let before = self.playback.sent() + self.framed_unsent;
        self.framed_unsent += crate::audio::FRAME_BYTES as u64;
        if let Some(b) = self.bargein.as_deref_mut() {
            if !b.on_agent_frame(&f, before) {
                return;
            }
        }
        self.send_twilio(Outbound::Media(f));
    }

    pub(super) fn after_frames(&mut self, item_id: &str, sent: u64, now: Instant) {
        self.framed_unsent = 0;
        if sent == 0 || self.bargein_kept(item_id, sent) {
            return;
        }
        // Until the last mark of the turn echoes (`PlayoutDone`) or a barge-in cuts it.
        self.agent_speaking = true;
        self.playback.on_sent(item_id, sent, now);
        if let Some(name) = self.playback.mark(item_id) {
            self.send_twilio(Outbound::Mark(name));
        }
        if let Some(ev) = self.turn_clock.on_frames_sent() {
            self.out.push_back(Output::Event(ev));
        }
    }

    /// The end of an item's audio: push out what the resampler and framer still hold (the
    /// last frame padded with μ-law silence) and mark it.
    pub(super) fn finish_item(&mut self, now: Instant) {
        let Some(item_id) = self.current_item.take() else {
            return;
        };
        let mut sent = 0;
        if self.format == AudioFormat::Pcm24k {
            self.odd_byte = None;
            sent += self.resample_and_frame(true);
        }
        if let Some(last) = self.framer.flush() {
            self.agent_frame(last);
            sent += crate::audio::FRAME_BYTES as u64;
        }
        self.after_frames(&item_id, sent, now);
        // Nothing left to send and every mark already echoed: no later echo will say so.
        let paused = self.bargein_paused();
        if sent == 0 && self.agent_speaking && !paused && !self.playback.audible(now) {
            self.agent_speaking = false;
            self.out.push_back(Output::Event(CallEvent::PlayoutDone));
            self.silence_agent_done(now);
        }
    }
}
