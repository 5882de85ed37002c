//! The ids of the reports submitted lately, so that a replayed callback (the same CallSid's final
//! status, the same RecordingSid) is not spooled and sent a second time. Bounded: a replay older
//! than the memory is spooled again, under the same id, and the receiver's Idempotency-Key
//! dedupe is what keeps it from being stored twice.

use std::collections::{HashSet, VecDeque};

/// Report ids remembered. Twilio retries a callback within minutes and a replay is an attack
/// on a recent call; 10 000 ids (about 1.5 MB) span hours of a busy bridge's reports.
pub const RECENT_REPORT_IDS: usize = 10_000;

pub struct RecentIds {
    /// Oldest first: the next to forget.
    order: VecDeque<String>,
    known: HashSet<String>,
    capacity: usize,
}

impl RecentIds {
    pub fn new(capacity: usize) -> RecentIds {
        RecentIds {
            order: VecDeque::new(),
            known: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Remembers `id` (forgetting the oldest past the bound); false if it was already known.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.known.contains(id) {
            return false;
        }
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.known.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(id.to_owned());
        self.known.insert(id.to_owned());
        true
    }

    /// Forgets `id`: its report never reached the spool, so a retried callback may try again.
    pub fn remove(&mut self, id: &str) {
        if self.known.remove(id) {
            self.order.retain(|k| k != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_id_is_refused_until_forgotten_and_the_oldest_go_first() {
        let mut r = RecentIds::new(2);
        assert!(r.insert("a"));
        assert!(!r.insert("a"), "a replay");
        assert!(r.insert("b"));
        assert!(r.insert("c"), "over the bound: a is forgotten");
        assert!(r.insert("a"), "a was the oldest");
        assert!(!r.insert("c"));
        r.remove("c");
        assert!(r.insert("c"), "removed ids can come again");
    }
}
