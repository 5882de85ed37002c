//! What the caller has actually heard.
//!
//! Twilio queues our media and plays it in order; a `mark` we send after some audio is echoed
//! back when playback reaches it. So audio is audible until the mark after it has been echoed:
//! only the echoes say where the caller is, and when Twilio's playout runs late (jitter, a busy
//! network, a slow phone) audio that our clock calls finished is still playing. Marks after each
//! delta are up to a whole delta (~100 ms) apart, too coarse for a truncation, so between echoes
//! the clock (8 μ-law bytes per ms) refines *where* in the unechoed audio the caller is: never
//! before the last echoed mark, never past the next unechoed one. After a `clear`, Twilio echoes
//! the marks that were pending: those stand for discarded audio and must not move the position.
//!
//! Positions are in μ-law bytes at 8 kHz since the call started ("global" offsets): one
//! number line for every item the model spoke.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Instant;

/// A mark's name, `"{item seq}:{item bytes}"`, as its two numbers.
type MarkId = (u64, u64);

fn parse_mark(name: &str) -> Option<MarkId> {
    let (a, b) = name.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// μ-law bytes per millisecond at 8 kHz.
const BYTES_PER_MS: u64 = 8;
/// How many discarded mark names we remember (their echoes arrive right after a `clear`).
const MAX_DISCARDED: usize = 256;
/// How many recent items we keep for truncation and late-delta filtering.
const MAX_ITEMS: usize = 16;
/// Marks sent and not yet echoed that we remember (one per delta: minutes of audio queued at
/// Twilio). A peer that never echoes cannot grow the call's memory past this; forgetting the
/// oldest only loosens the bound on where the caller is.
const MAX_PENDING: usize = 4096;

/// One assistant audio item as it went to Twilio.
#[derive(Debug, Clone)]
pub struct ItemAudio {
    pub item_id: String,
    pub response_id: String,
    /// Short per-call number used in mark names (item ids can be long).
    pub seq: u64,
    /// Global offset of the item's first byte.
    pub start: u64,
    /// μ-law bytes of this item sent to Twilio (including the silence padding its last frame).
    pub sent: u64,
    /// Bytes of audio the model produced for this item, in the upstream format.
    pub model_bytes: u64,
    /// Set once the item was truncated: late deltas for it are dropped.
    pub truncated: bool,
}

/// What an echoed mark meant.
#[derive(Debug, PartialEq, Eq)]
pub enum MarkEcho {
    /// Playback reached this global offset.
    Played(u64),
    /// The mark stood for audio discarded by a `clear`.
    Discarded,
    /// Not a mark of ours (or one we forgot): ignored.
    Unknown,
}

#[derive(Debug)]
pub struct Playback {
    /// Upstream audio bytes per ms (8 for μ-law, 48 for PCM16 24 kHz): converts `model_bytes`.
    model_bytes_per_ms: u64,
    sent: u64,
    /// (time, offset): playback was at `offset` at `time` and runs on from there.
    anchor: Option<(Instant, u64)>,
    /// Marks sent and not yet echoed, as (item seq, item bytes) — the two numbers of the name,
    /// kept as numbers so that remembering a mark allocates nothing — with the stream offset.
    pending: VecDeque<(MarkId, u64)>,
    discarded: VecDeque<MarkId>,
    items: VecDeque<ItemAudio>,
    next_seq: u64,
}

impl Playback {
    pub fn new(model_bytes_per_ms: u64) -> Playback {
        Playback {
            model_bytes_per_ms: model_bytes_per_ms.max(1),
            sent: 0,
            anchor: None,
            pending: VecDeque::new(),
            discarded: VecDeque::new(),
            items: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// Bytes queued at Twilio since the call started.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Estimated global offset the caller has heard up to at `now`: the clock running on from
    /// the last anchor, but short of the first mark Twilio has not echoed yet (playback has not
    /// reached it, whatever the clock says) and never past what was sent.
    pub fn heard(&self, now: Instant) -> u64 {
        match self.anchor {
            None => 0,
            Some((t, at)) => {
                let elapsed_us = now.saturating_duration_since(t).as_micros() as u64;
                // Playback has not reached an unechoed mark: it is at most just before it.
                let cap = self
                    .pending
                    .front()
                    .map_or(self.sent, |(_, off)| off.saturating_sub(1));
                (at + elapsed_us * BYTES_PER_MS / 1000)
                    .min(cap)
                    .min(self.sent)
            }
        }
    }

    /// Marks sent and not yet echoed: 0 means the caller heard (or we cleared) everything.
    pub fn pending_marks(&self) -> usize {
        self.pending.len()
    }

    /// Whether agent audio is still playing (or queued) at `now`: until its mark is echoed,
    /// audio counts as audible even when the clock says it must have finished.
    pub fn audible(&self, now: Instant) -> bool {
        !self.pending.is_empty() || self.heard(now) < self.sent
    }

    /// The item a delta belongs to, created on first sight. Returns `None` for an item that was
    /// truncated (its late audio must be dropped).
    pub fn item(&mut self, item_id: &str, response_id: &str) -> Option<&mut ItemAudio> {
        let known = self.items.iter().position(|i| i.item_id == item_id);
        let idx = match known {
            Some(i) => i,
            None => {
                if self.items.len() == MAX_ITEMS {
                    self.items.pop_front();
                }
                self.next_seq += 1;
                self.items.push_back(ItemAudio {
                    item_id: item_id.to_owned(),
                    response_id: response_id.to_owned(),
                    seq: self.next_seq,
                    start: self.sent,
                    sent: 0,
                    model_bytes: 0,
                    truncated: false,
                });
                self.items.len() - 1
            }
        };
        let item = self.items.get_mut(idx)?;
        if item.truncated {
            None
        } else {
            Some(item)
        }
    }

    /// Records `bytes` of item audio handed to Twilio at `now`.
    pub fn on_sent(&mut self, item_id: &str, bytes: u64, now: Instant) {
        // If the queue had drained (every mark echoed), playback (re)starts now, not where the
        // old anchor says.
        if self.pending.is_empty() && self.heard(now) >= self.sent {
            self.anchor = Some((now, self.sent));
        }
        if let Some(item) = self.items.iter_mut().rev().find(|i| i.item_id == item_id) {
            if item.sent == 0 {
                // An item's audio starts where it is first sent (one created during a
                // barge-in pause starts after the audio kept before it).
                item.start = self.sent;
            }
            item.sent += bytes;
        }
        self.sent += bytes;
    }

    /// A mark name for the audio sent so far, remembered until Twilio echoes it.
    pub fn mark(&mut self, item_id: &str) -> Option<String> {
        let item = self.items.iter().rev().find(|i| i.item_id == item_id)?;
        let id = (item.seq, item.sent);
        let mut name = String::with_capacity(24);
        let _ = write!(name, "{}:{}", id.0, id.1);
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back((id, self.sent));
        Some(name)
    }

    /// Twilio echoed a mark at `now`.
    pub fn on_mark(&mut self, name: &str, now: Instant) -> MarkEcho {
        let Some(id) = parse_mark(name) else {
            return MarkEcho::Unknown;
        };
        if let Some(pos) = self.pending.iter().position(|(n, _)| *n == id) {
            // Marks echo in order; any earlier pending one was passed too.
            let mut at = 0;
            for _ in 0..=pos {
                if let Some((_, off)) = self.pending.pop_front() {
                    at = off;
                }
            }
            self.anchor = Some((now, at));
            return MarkEcho::Played(at);
        }
        if let Some(pos) = self.discarded.iter().position(|n| *n == id) {
            self.discarded.remove(pos);
            return MarkEcho::Discarded;
        }
        MarkEcho::Unknown
    }

    /// Twilio was told to `clear` at `now`: what is queued is gone. Returns the offset heard.
    pub fn on_clear(&mut self, now: Instant) -> u64 {
        let heard = self.heard(now);
        for (name, _) in self.pending.drain(..) {
            if self.discarded.len() == MAX_DISCARDED {
                self.discarded.pop_front();
            }
            self.discarded.push_back(name);
        }
        // Nothing is queued any more: the next audio starts playing when it is sent.
        self.anchor = Some((now, self.sent));
        heard
    }

    /// For a barge-in heard up to `heard`: every item with audio past that point, with the ms
    /// the caller heard of it (capped by what the model produced), marked truncated.
    pub fn truncate_after(&mut self, heard: u64) -> Vec<(String, u64)> {
        let mut cut = Vec::new();
        for item in self.items.iter_mut() {
            let end = item.start + item.sent;
            if end > heard && !item.truncated && item.sent > 0 {
                let heard_ms = heard.saturating_sub(item.start) / BYTES_PER_MS;
                item.truncated = true;
                let model_ms = item.model_bytes / self.model_bytes_per_ms;
                cut.push((item.item_id.clone(), heard_ms.min(model_ms)));
            }
        }
        cut
    }

    /// The audio sent from `from` on, by item in order: (item id, bytes). What a barge-in pause
    /// keeps to play again.
    pub fn unplayed_from(&self, from: u64) -> Vec<(String, u64)> {
        self.items
            .iter()
            .filter(|i| !i.truncated && i.start + i.sent > from)
            .map(|i| (i.item_id.clone(), i.start + i.sent - i.start.max(from)))
            .collect()
    }

    /// A paused answer resumes at `to` (at most what was sent), at `now`: what was sent past it
    /// is forgotten, to be sent again on the same offsets. Its items get new mark names, so the
    /// echoes of the marks the `clear` discarded cannot be taken for the new ones.
    pub fn rewind(&mut self, to: u64, now: Instant) {
        let to = to.min(self.sent);
        for item in self.items.iter_mut() {
            if item.start + item.sent > to {
                item.sent = to.saturating_sub(item.start);
                self.next_seq += 1;
                item.seq = self.next_seq;
            }
        }
        self.sent = to;
        self.anchor = Some((now, to));
    }

    /// Like [`Playback::truncate_after`] for an answer cut while paused: also the items whose
    /// audio came only during the pause (never sent: the caller heard none of it).
    pub fn truncate_paused(&mut self, heard: u64) -> Vec<(String, u64)> {
        let mut cut = self.truncate_after(heard);
        for item in self.items.iter_mut() {
            if item.sent == 0 && item.model_bytes > 0 && !item.truncated {
                item.truncated = true;
                cut.push((item.item_id.clone(), 0));
            }
        }
        cut
    }

    /// The item with this id, if still remembered.
    pub fn find(&self, item_id: &str) -> Option<&ItemAudio> {
        self.items.iter().rev().find(|i| i.item_id == item_id)
    }

    /// Whether audio of this item must be dropped (it was truncated).
    pub fn is_truncated(&self, item_id: &str) -> bool {
        self.items
            .iter()
            .any(|i| i.item_id == item_id && i.truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Item `i1` of `model_bytes` from the model, sent at `t0` in two pieces of `each` bytes,
    /// each followed by its mark: the playback and the two marks' names.
    fn two_marked_sends(model_bytes: u64, each: u64, t0: Instant) -> (Playback, String, String) {
        let mut p = Playback::new(8);
        p.item("i1", "r1").unwrap().model_bytes = model_bytes;
        p.on_sent("i1", each, t0);
        let m1 = p.mark("i1").unwrap();
        p.on_sent("i1", each, t0);
        let m2 = p.mark("i1").unwrap();
        (p, m1, m2)
    }

    #[test]
    fn interpolates_between_marks_and_caps_at_sent() {
        let t0 = Instant::now();
        let mut p = Playback::new(8);
        p.item("i1", "r1").unwrap().model_bytes = 8000;
        p.on_sent("i1", 800, t0); // 100 ms
        let m1 = p.mark("i1").unwrap();
        assert_eq!(p.heard(t0 + ms(40)), 320);
        assert_eq!(
            p.heard(t0 + ms(500)),
            799,
            "never past what was sent, short of the unechoed mark"
        );
        // Twilio's playback started 30 ms late: the echo corrects us.
        assert_eq!(p.on_mark(&m1, t0 + ms(130)), MarkEcho::Played(800));
        assert_eq!(p.heard(t0 + ms(130)), 800);
        assert!(!p.audible(t0 + ms(130)));
        // Queue drained; new audio 200 ms later starts playing when it is sent.
        p.on_sent("i1", 1600, t0 + ms(330));
        assert_eq!(p.heard(t0 + ms(355)), 800 + 200);
    }

    #[test]
    fn marks_after_clear_are_discarded_not_heard() {
        let t0 = Instant::now();
        let (mut p, m1, m2) = two_marked_sends(80_000, 8000, t0);
        let heard = p.on_clear(t0 + ms(250));
        assert_eq!(heard, 2000);
        assert_eq!(p.on_mark(&m1, t0 + ms(260)), MarkEcho::Discarded);
        assert_eq!(p.on_mark(&m2, t0 + ms(260)), MarkEcho::Discarded);
        assert_eq!(p.on_mark("nope", t0 + ms(260)), MarkEcho::Unknown);
        assert!(!p.audible(t0 + ms(260)));
        assert_eq!(p.truncate_after(heard), vec![("i1".to_string(), 250)]);
        assert!(
            p.item("i1", "r1").is_none(),
            "late audio of a truncated item is refused"
        );
    }

    #[test]
    fn audio_whose_mark_is_not_echoed_is_still_audible() {
        let t0 = Instant::now();
        let (mut p, m1, _m2) = two_marked_sends(1600, 800, t0);
        // The clock says all 200 ms played by t0+200; Twilio's playout is 300 ms late.
        assert!(p.audible(t0 + ms(400)), "no echo yet: still audible");
        assert_eq!(
            p.heard(t0 + ms(400)),
            799,
            "not up to the first unechoed mark"
        );
        // More audio while the marks are pending does not restart the clock.
        assert_eq!(p.on_mark(&m1, t0 + ms(400)), MarkEcho::Played(800));
        assert_eq!(p.heard(t0 + ms(450)), 800 + 400);
        assert!(p.audible(t0 + ms(900)), "the second mark is not echoed yet");
        assert_eq!(p.heard(t0 + ms(900)), 1599);
    }

    #[test]
    fn a_peer_that_never_echoes_costs_bounded_memory() {
        let t0 = Instant::now();
        let mut p = Playback::new(8);
        for _ in 0..(MAX_PENDING + 100) {
            p.item("i1", "r1").unwrap().model_bytes += 160;
            p.on_sent("i1", 160, t0);
            p.mark("i1").unwrap();
        }
        assert_eq!(p.pending.len(), MAX_PENDING);
        assert!(p.audible(t0 + ms(1_000_000)));
    }

    #[test]
    fn truncation_never_exceeds_the_models_audio() {
        let t0 = Instant::now();
        let mut p = Playback::new(8);
        p.item("i1", "r1").unwrap().model_bytes = 760; // 95 ms; last frame padded to 100 ms
        p.on_sent("i1", 800, t0);
        assert_eq!(
            p.truncate_after(p.heard(t0 + ms(99))),
            vec![("i1".into(), 95)]
        );
    }
}
