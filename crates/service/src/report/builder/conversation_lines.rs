//! The report's transcript lines matched with the call's conversation log, which knows what
//! the caller heard of each agent line and when every line was said.

use super::{ReportBuilder, AGENT, CALLER};
use crate::call::conversation::Entry;

impl ReportBuilder {
    /// Lines as the caller heard them, from the call's conversation log: an agent line the
    /// caller cut off is cut to what was heard and flagged with how much of its audio played
    /// (the log knows; the events only let this builder guess), and every line takes the
    /// log's `at_ms` — when it was said, from the audio — then the lines go in that order.
    /// Lines are matched in order by their text; one the log no longer holds (or holds no time
    /// for) keeps when its transcript arrived. The log holds the words as said: they are
    /// redacted as the events' were before they compare.
    pub fn use_conversation(&mut self, entries: &[Entry]) {
        self.time_caller_lines(entries);
        self.use_agent_lines(entries);
        // A caller's transcript often arrives after the agent began answering it.
        self.lines.sort_by_key(|l| l.at_ms);
    }

    fn time_caller_lines(&mut self, entries: &[Entry]) {
        let redact = self.redact;
        let mut said = entries.iter().filter_map(|e| match e {
            Entry::Caller(c) => Some(c),
            _ => None,
        });
        for line in self.lines.iter_mut().filter(|l| l.role == CALLER) {
            let mut rest = said.clone();
            if let Some(c) = rest.find(|c| redact.apply(&c.text) == *line.text) {
                if let Some(at) = c.at_ms {
                    line.at_ms = at;
                }
                said = rest;
            }
        }
    }

    fn use_agent_lines(&mut self, entries: &[Entry]) {
        let redact = self.redact;
        let mut heard = entries.iter().filter_map(|e| match e {
            Entry::Agent(a) if !a.full_text().is_empty() => Some(a),
            _ => None,
        });
        let mut next = heard.next();
        for line in self.lines.iter_mut().filter(|l| l.role == AGENT) {
            // Skip log lines the events never finished (and so never reached the report).
            let mut look = next;
            let mut rest = heard.clone();
            while let Some(a) = look {
                if redact.apply(a.full_text()) == *line.text {
                    break;
                }
                look = rest.next();
            }
            let Some(a) = look else { continue };
            // The heard text is the whole line unless the caller cut it off.
            if a.interrupted_after_ms.is_some() {
                line.text = redact.apply_heard(a.full_text(), &a.text()).into();
            }
            line.interrupted_after_ms = a.interrupted_after_ms;
            if let Some(at) = a.at_ms {
                line.at_ms = at;
            }
            heard = rest;
            next = heard.next();
        }
    }
}
