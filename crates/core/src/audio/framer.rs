//! Cut a byte stream into exact 20 ms μ-law frames for Twilio.
//!
//! Twilio accepts any payload size, but sending whole 160-byte frames keeps its jitter buffer
//! and our playback-position bookkeeping (marks, barge-in truncation) in exact 20 ms steps.

use super::ULAW_SILENCE;

/// One frame: 20 ms of 8 kHz μ-law, one byte per sample.
pub const FRAME_BYTES: usize = 160;

/// Accumulates bytes and hands out exact [`FRAME_BYTES`]-byte frames. Holds at most one
/// partial frame, in a fixed array: never allocates.
#[derive(Debug, Clone)]
pub struct Framer {
    buf: [u8; FRAME_BYTES],
    len: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer {
    pub fn new() -> Self {
        Self {
            buf: [ULAW_SILENCE; FRAME_BYTES],
            len: 0,
        }
    }

    /// Append `bytes`, calling `emit` once for every complete frame, in order. Whole frames
    /// are passed straight from `bytes` without copying when nothing is pending.
    pub fn push(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8; FRAME_BYTES])) {
        if self.len > 0 {
            let take = (FRAME_BYTES - self.len).min(bytes.len());
            self.buf[self.len..self.len + take].copy_from_slice(&bytes[..take]);
            self.len += take;
            bytes = &bytes[take..];
            if self.len < FRAME_BYTES {
                return;
            }
            emit(&self.buf);
            self.len = 0;
        }
        let mut chunks = bytes.chunks_exact(FRAME_BYTES);
        for chunk in &mut chunks {
            if let Ok(frame) = <&[u8; FRAME_BYTES]>::try_from(chunk) {
                emit(frame);
            }
        }
        let rest = chunks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.len = rest.len();
    }

    /// The pending partial frame padded with μ-law silence, or `None` if nothing is pending.
    /// Leaves the framer empty.
    pub fn flush(&mut self) -> Option<[u8; FRAME_BYTES]> {
        if self.len == 0 {
            return None;
        }
        let mut frame = self.buf;
        frame[self.len..].fill(ULAW_SILENCE);
        self.len = 0;
        Some(frame)
    }

    /// Bytes waiting for a full frame (always `< FRAME_BYTES`).
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Drop the pending partial frame (e.g. on barge-in, when queued audio is discarded).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}
