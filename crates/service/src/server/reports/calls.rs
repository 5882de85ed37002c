//! Which reports belong to a call (CallSid), remembered for the calls of the last hours, so
//! that an event about the call that comes later — Twilio's recording callback, which arrives
//! once the recording is processed, seconds to minutes after the hang-up — names the call's
//! report (`call_report_ids`) and goes where that report went (the profile's `report_url`).
//! In memory, on the replica that ran the call: a restart, or a callback another replica
//! takes, finds nothing (the event still names the CallSid).

use std::collections::{HashMap, VecDeque};

/// Calls remembered. A recording callback comes within minutes of its call's end; 10 000
/// calls (about 1.5 MB) span hours of a busy bridge.
pub const RECENT_CALLS: usize = 10_000;
/// Reports remembered per call (one per media stream; a call redirected to a second
/// `<Connect>` has two). More would be a CallSid reused by a hostile `start`.
const MAX_REPORTS_PER_CALL: usize = 8;

/// The reports of one call and where they went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLinks {
    pub report_ids: Vec<String>,
    /// The report URL of the call's profile (`None`: the top-level `report_url`).
    pub url: Option<String>,
}

pub struct RecentCalls {
    /// Oldest first: the next to forget.
    order: VecDeque<String>,
    by_call: HashMap<String, CallLinks>,
    capacity: usize,
}

impl RecentCalls {
    pub fn new(capacity: usize) -> RecentCalls {
        RecentCalls {
            order: VecDeque::new(),
            by_call: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The call `call_sid` has (another) report, `report_id`, going to `url`.
    pub fn insert(&mut self, call_sid: &str, report_id: &str, url: Option<&str>) {
        if let Some(links) = self.by_call.get_mut(call_sid) {
            if links.report_ids.len() < MAX_REPORTS_PER_CALL
                && !links.report_ids.iter().any(|r| r == report_id)
            {
                links.report_ids.push(report_id.to_owned());
            }
            return;
        }
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.by_call.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(call_sid.to_owned());
        self.by_call.insert(
            call_sid.to_owned(),
            CallLinks {
                report_ids: vec![report_id.to_owned()],
                url: url.map(str::to_owned),
            },
        );
    }

    pub fn get(&self, call_sid: &str) -> Option<&CallLinks> {
        self.by_call.get(call_sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calls_reports_are_kept_together_and_the_oldest_call_goes_first() {
        let mut r = RecentCalls::new(2);
        r.insert("CA1", "rpt_a", Some("https://crm.example.com/sales"));
        r.insert("CA1", "rpt_b", None);
        r.insert("CA1", "rpt_b", None);
        let one = r.get("CA1").expect("known");
        assert_eq!(one.report_ids, ["rpt_a", "rpt_b"]);
        assert_eq!(one.url.as_deref(), Some("https://crm.example.com/sales"));
        r.insert("CA2", "rpt_c", None);
        r.insert("CA3", "rpt_d", None);
        assert!(
            r.get("CA1").is_none(),
            "over the bound: the oldest call is forgotten"
        );
        assert!(r.get("CA2").is_some() && r.get("CA3").is_some());
    }
}
