//! The caller audio a session has not committed yet, kept for a reconnect (see
//! [`super::Lifecycle`]).
//!
//! Stored in fixed chunks rather than one growing buffer: a buffer that grows while the caller
//! speaks and shrinks after each sentence leaves blocks of every size behind (the allocator
//! cannot hand a freed 20 KB block to a call that needs 4 KB), so every call paid for its
//! longest sentence. Chunks of one size are reused by whichever call speaks next, and a call
//! holds what it keeps, rounded up to a chunk.

use std::collections::VecDeque;

/// Bytes per chunk: 64 ms of μ-law. A size the allocator serves exactly (no rounding up),
/// small enough that a call keeps at most one chunk's worth more than it needs.
const CHUNK: usize = 512;

#[derive(Debug, Default)]
pub(crate) struct Tail {
    chunks: VecDeque<Box<[u8; CHUNK]>>,
    /// Bytes of the first chunk already dropped.
    head: usize,
    len: usize,
    /// A chunk dropped from the front, reused for the next bytes at the back (so a silent
    /// caller's tail, which drops and adds one chunk every 64 ms, does not allocate).
    spare: Option<Box<[u8; CHUNK]>>,
}

impl Tail {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `bytes`, keeping at most the last `cap` bytes.
    pub(crate) fn push(&mut self, bytes: &[u8], cap: usize) {
        let bytes = &bytes[bytes.len().saturating_sub(cap)..];
        // Room first, so the spare chunk freed here serves the bytes below.
        self.keep_last(cap - bytes.len());
        let mut rest = bytes;
        while !rest.is_empty() {
            let used = (self.head + self.len) % CHUNK;
            if used == 0 {
                let chunk = self.spare.take().unwrap_or_else(|| Box::new([0; CHUNK]));
                self.chunks.push_back(chunk);
            }
            let Some(last) = self.chunks.back_mut() else {
                return; // unreachable: a chunk was just pushed when the last was full
            };
            let n = rest.len().min(CHUNK - used);
            last[used..used + n].copy_from_slice(&rest[..n]);
            self.len += n;
            rest = &rest[n..];
        }
    }

    /// Drops all but the last `keep` bytes.
    pub(crate) fn keep_last(&mut self, keep: usize) {
        if self.len <= keep {
            return;
        }
        self.head += self.len - keep;
        self.len = keep;
        if self.len == 0 {
            // Nothing left: every chunk goes (one stays as the spare), and the next byte starts
            // a fresh chunk.
            self.head = 0;
            if let Some(chunk) = self.chunks.pop_front() {
                self.spare.get_or_insert(chunk);
            }
            self.chunks.clear();
            return;
        }
        // Chunks wholly before the first kept byte.
        while self.head >= CHUNK {
            if let Some(chunk) = self.chunks.pop_front() {
                self.spare.get_or_insert(chunk);
            }
            self.head -= CHUNK;
        }
    }

    /// Gives back the chunk list's own capacity, which a long sentence grew; called once per
    /// sentence, not per frame. (The one spare chunk is kept: a silent caller reuses it.)
    pub(crate) fn shrink(&mut self) {
        self.chunks.shrink_to_fit();
    }

    /// Everything kept, oldest first; the tail is empty afterwards.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        let mut skip = self.head;
        let mut left = self.len;
        for chunk in &self.chunks {
            let n = left.min(CHUNK - skip);
            out.extend_from_slice(&chunk[skip..skip + n]);
            left -= n;
            skip = 0;
        }
        self.keep_last(0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of the tail: a plain byte queue.
    fn model_push(m: &mut Vec<u8>, bytes: &[u8], cap: usize) {
        m.extend_from_slice(bytes);
        let over = m.len().saturating_sub(cap);
        m.drain(..over);
    }

    #[test]
    fn keeps_exactly_the_last_bytes_across_chunk_edges() {
        let mut t = Tail::default();
        let mut m = Vec::new();
        let mut n = 0u8;
        // Frames of 160 B against a 4000 B bound, then a long sentence with a 20 KB bound,
        // odd sizes, a trim, and again.
        let steps: Vec<(usize, usize)> = (0..60)
            .map(|_| (160, 4000))
            .chain((0..200).map(|_| (160, 20_000)))
            .chain([(7, 20_000), (1000, 20_000), (CHUNK, 20_000), (3, 5)])
            .chain((0..40).map(|i| (i * 37 % 300, 4000)))
            .collect();
        for (size, cap) in steps {
            let bytes: Vec<u8> = (0..size)
                .map(|_| {
                    n = n.wrapping_add(1);
                    n
                })
                .collect();
            t.push(&bytes, cap);
            model_push(&mut m, &bytes, cap);
            assert_eq!(t.len(), m.len());
            if size == 1000 {
                t.keep_last(4000);
                model_push(&mut m, &[], 4000);
                t.shrink();
            }
        }
        assert_eq!(t.take(), m);
        assert!(t.is_empty());
        assert!(t.take().is_empty());
    }

    #[test]
    fn memory_follows_what_is_kept() {
        let mut t = Tail::default();
        for _ in 0..1000 {
            t.push(&[1; 160], 4000);
        }
        // 4000 bytes span at most 9 chunks of 512; one spare besides.
        assert!(t.chunks.len() <= 9, "{} chunks", t.chunks.len());
        for _ in 0..100 {
            t.push(&[2; 160], 16_000);
        }
        assert_eq!(t.len(), 16_000);
        assert!(t.chunks.len() <= 16_000 / CHUNK + 1);
        t.keep_last(4000);
        t.shrink();
        assert!(t.chunks.len() <= 9);
        assert_eq!(t.take(), vec![2; 4000]);
        assert_eq!(t.chunks.len(), 0);
    }
}
