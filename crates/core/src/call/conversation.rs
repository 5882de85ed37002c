//! The conversation log: who said what on a call, in order, as far as the caller heard it.
//!
//! The call fills it from the Realtime events it already sees (the caller's input
//! transcription, the agent's output transcript, keys pressed) and from function calls and
//! their outputs. It feeds the context replayed into a new Realtime session after a reconnect
//! or a rotation ([`Conversation::replay`]), and the agent lines of the call report as the
//! caller heard them.
//!
//! The agent's line that the caller cut off (barge-in), or that the session lost mid-answer,
//! is kept cut to what the caller heard: the transcript's characters are taken in proportion
//! to the audio heard (the transcript carries no timings), back to a word boundary, and the
//! line is flagged with [`AgentLine::interrupted_after_ms`].
//!
//! Each line knows when it was said, on the call's clock (ms since the media socket opened),
//! from the audio rather than from when its transcript arrived (a transcription can finish
//! seconds after the caller stopped, after the agent already answered):
//! - a caller line: the server's `input_audio_buffer.speech_started.audio_start_ms` for its
//!   item (`protocol.md`: ms into the audio appended *to that session*), placed on the
//!   caller's audio timeline by where that session's input began ([`Conversation::audio_sent`])
//!   and when Twilio's `start` came (its audio position 0). Caller audio the bridge dropped (a
//!   full prebuffer during a long outage) is not on that timeline;
//! - an agent line: when its audio began playing for the caller — the moment its first frame
//!   went to Twilio plus the audio still queued ahead of it there ([`Conversation::agent_started`]).
//!
//! Bounded: at most [`MAX_ENTRIES`] entries (the oldest go first), and a replay sends at most
//! [`REPLAY_MAX_CHARS`] characters of the most recent entries.

use std::sync::Arc;

use crate::realtime::{ClientEvent, Item};

/// Entries kept per call (an hour of conversation is a few hundred).
pub const MAX_ENTRIES: usize = 2000;
/// Text replayed into a new session, newest first, at most this much (a Realtime session's
/// context is limited; the most recent turns matter most).
pub const REPLAY_MAX_CHARS: usize = 24_000;
/// Characters kept of one line (a runaway transcript must not grow the log without bound).
const MAX_LINE_CHARS: usize = 8_000;
/// Caller speech detected and not yet transcribed that is remembered (a transcript comes a
/// few seconds after its speech at most; a server that never transcribes cannot grow this).
const MAX_UNTRANSCRIBED: usize = 8;
/// μ-law bytes per ms at 8 kHz (the caller's audio timeline).
const ULAW_BYTES_PER_MS: u64 = 8;

/// The system note that ends a replay: without it the model greets the caller again.
pub const CONTINUATION_NOTE: &str = "The phone conversation above continues after a short \
technical interruption on the line. Do not greet the caller again and do not start over: carry \
on from where the conversation was. If your last answer was cut off, the caller heard only the \
part shown; continue naturally from there.";

/// One line of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// What the caller said (input transcription), or keys the caller pressed.
    Caller(CallerLine),
    /// What the agent said.
    Agent(AgentLine),
    /// A function call the model made.
    ToolCall {
        call_id: String,
        name: String,
        arguments: String,
    },
    /// The result given back to the model for `call_id`.
    ToolOutput { call_id: String, output: String },
}

/// What the caller said, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerLine {
    /// Shared with the call's event and the call report (one copy of the text per call, not
    /// one each).
    pub text: Arc<str>,
    /// When the caller began saying it (ms since the media socket opened), from the audio
    /// position the server reported; `None` for keys pressed and for a transcript whose
    /// speech start the server never reported.
    pub at_ms: Option<u64>,
}

/// One agent answer (one assistant audio item).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentLine {
    /// The Realtime item id, when the events named it.
    pub item_id: Option<String>,
    /// The whole transcript the model produced for this item (so far, while it speaks).
    full_text: LineText,
    /// Set when the caller did not hear the whole answer (barge-in, or the session dropped
    /// mid-answer): milliseconds of this item's audio the caller heard.
    pub interrupted_after_ms: Option<u64>,
    /// Milliseconds of audio the model had produced for this item when it was cut (the
    /// transcript then covers about that much).
    produced_ms: u64,
    /// The transcript is still arriving.
    pub in_progress: bool,
    /// When its audio began playing for the caller (ms since the media socket opened); `None`
    /// for an answer none of whose audio went out.
    pub at_ms: Option<u64>,
}

/// An agent line's transcript: built from deltas while the model speaks, then the final
/// transcript, shared with the call's event and the call report.
#[derive(Debug, Clone, PartialEq)]
enum LineText {
    Growing(String),
    Done(Arc<str>),
}

impl Default for LineText {
    fn default() -> Self {
        LineText::Growing(String::new())
    }
}

impl AgentLine {
    /// The whole transcript the model produced for this item (so far, while it speaks).
    pub fn full_text(&self) -> &str {
        match &self.full_text {
            LineText::Growing(s) => s,
            LineText::Done(s) => s,
        }
    }

    /// What the caller heard: `full_text`, or its beginning when the caller did not hear it all.
    /// Computed when asked (a replay, the report), not kept beside `full_text`: re-made on every
    /// transcript delta, a second copy cost a clone of the growing line per delta and its memory
    /// for the rest of the call.
    pub fn text(&self) -> String {
        match self.interrupted_after_ms {
            Some(heard) if self.produced_ms > heard => {
                let chars = self.full_text().chars().count();
                let keep = (chars as u64 * heard / self.produced_ms) as usize;
                cut_at_word(self.full_text(), keep)
            }
            // Cut off while the model was still producing it (the session was lost): all of
            // it was heard, but it stops mid-answer.
            Some(_) if self.in_progress && !self.full_text().trim().is_empty() => {
                format!("{}…", self.full_text().trim_end())
            }
            _ => self.full_text().to_owned(),
        }
    }
}

/// The first `keep` characters of `text`, backed off to the end of a word, with an ellipsis
/// when anything was cut.
fn cut_at_word(text: &str, keep: usize) -> String {
    let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    if end >= text.len() {
        return text.to_owned();
    }
    let head = &text[..end];
    // A word the caller only half heard is dropped.
    let head = match text[end..].chars().next() {
        Some(c) if !c.is_whitespace() => head.rfind(char::is_whitespace).map_or("", |i| &head[..i]),
        _ => head,
    };
    let head = head.trim_end();
    if head.is_empty() {
        String::new()
    } else {
        format!("{head}…")
    }
}

fn clip(s: &mut String) {
    if s.len() > MAX_LINE_CHARS {
        let mut end = MAX_LINE_CHARS;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The log of one call.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    entries: Vec<Entry>,
    /// Entries dropped from the front (so indices handed out stay meaningful).
    dropped: usize,
    clock: AudioClock,
}

/// Where the caller's audio sits on the call's clock (see the module's doc).
#[derive(Debug, Clone, Default)]
struct AudioClock {
    /// ms from the media socket opening to Twilio's `start` (caller audio position 0).
    start_ms: u64,
    /// μ-law bytes of caller audio kept so far (sent to the model or waiting for a session).
    caller_bytes: u64,
    /// The session caller audio goes to (its generation; 0: none yet), and the caller audio
    /// position (bytes) where that session's input began.
    session: (u64, u64),
    /// Caller speech detected and not transcribed yet: (item id, ms since the socket opened).
    untranscribed: Vec<(Option<Box<str>>, u64)>,
}

impl Conversation {
    pub fn new() -> Conversation {
        Conversation::default()
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entries ever added (including any dropped for the bound): a position for
    /// [`Conversation::replay_since`].
    pub fn end(&self) -> usize {
        self.dropped + self.entries.len()
    }

    fn push(&mut self, e: Entry) {
        if self.entries.len() == MAX_ENTRIES {
            self.entries.remove(0);
            self.dropped += 1;
        }
        self.entries.push(e);
    }

    /// The caller said `text` (keys pressed, as a line), untimed. Returns the line as kept
    /// (trimmed, clipped) to be shared, or `None` when there was nothing to keep.
    pub fn caller_said(&mut self, text: &str) -> Option<Arc<str>> {
        self.caller_line(text, None)
    }

    /// The server transcribed the caller's item `item_id` as `text`: the line is timed by
    /// that item's speech start (without an id, the oldest speech not transcribed yet).
    pub fn caller_transcribed(&mut self, item_id: Option<&str>, text: &str) -> Option<Arc<str>> {
        let pending = &mut self.clock.untranscribed;
        let i = match item_id {
            Some(id) => pending.iter().position(|(i, _)| i.as_deref() == Some(id)),
            None if pending.is_empty() => None,
            None => Some(0),
        };
        let at_ms = i.map(|i| pending.remove(i).1);
        self.caller_line(text, at_ms)
    }

    fn caller_line(&mut self, text: &str, at_ms: Option<u64>) -> Option<Arc<str>> {
        let t = text.trim();
        if t.is_empty() {
            return None;
        }
        let mut s = t.to_owned();
        clip(&mut s);
        let said: Arc<str> = s.into();
        self.push(Entry::Caller(CallerLine {
            text: said.clone(),
            at_ms,
        }));
        Some(said)
    }

    /// Twilio's `start` came `at_ms` after the media socket opened: caller audio position 0.
    pub fn stream_started(&mut self, at_ms: u64) {
        self.clock.start_ms = at_ms;
    }

    /// `bytes` more of caller μ-law were kept (sent on, or held for a session).
    pub fn caller_audio_kept(&mut self, bytes: usize) {
        self.clock.caller_bytes += bytes as u64;
    }

    /// μ-law bytes of caller audio kept so far: the position just past the newest.
    pub fn caller_audio_position(&self) -> u64 {
        self.clock.caller_bytes
    }

    /// Caller audio from position `at` (bytes) went to the session of `generation`: the first
    /// such audio of a session is where its input buffer — and its `audio_start_ms` — begins.
    pub fn audio_sent(&mut self, generation: u64, at: u64) {
        if self.clock.session.0 != generation {
            self.clock.session = (generation, at);
        }
    }

    /// The server heard the caller start speaking `audio_start_ms` into the current session's
    /// input (the item `item_id` will carry the transcript).
    pub fn caller_started(&mut self, item_id: Option<&str>, audio_start_ms: u64) {
        let c = &mut self.clock;
        let at_ms = c.start_ms + c.session.1 / ULAW_BYTES_PER_MS + audio_start_ms;
        if c.untranscribed.len() == MAX_UNTRANSCRIBED {
            c.untranscribed.remove(0);
        }
        c.untranscribed.push((item_id.map(Box::from), at_ms));
    }

    /// The agent's item `item_id` begins playing for the caller at `at_ms` (its first frame
    /// went to Twilio; this is when the audio queued ahead of it there has played).
    pub fn agent_started(&mut self, item_id: &str, at_ms: u64) {
        self.with_agent_line(Some(item_id), |line| {
            line.at_ms.get_or_insert(at_ms);
        });
    }

    /// Runs `f` on the agent line for `item_id` (without an id: the line in progress),
    /// created in progress when first seen.
    fn with_agent_line(&mut self, item_id: Option<&str>, f: impl FnOnce(&mut AgentLine)) {
        // Only the last few entries are searched: an item's events come close together, and
        // a lookup must not scan an hour of conversation.
        let found = self.entries.iter_mut().rev().take(8).find_map(|e| match e {
            Entry::Agent(l)
                if match item_id {
                    Some(id) => l.item_id.as_deref() == Some(id),
                    None => l.in_progress,
                } =>
            {
                Some(l)
            }
            _ => None,
        });
        match found {
            Some(line) => f(line),
            None => {
                let mut line = AgentLine {
                    item_id: item_id.map(str::to_owned),
                    in_progress: true,
                    ..AgentLine::default()
                };
                f(&mut line);
                self.push(Entry::Agent(line));
            }
        }
    }

    /// A piece of the agent's transcript while it speaks.
    pub fn agent_delta(&mut self, item_id: Option<&str>, delta: &str) {
        self.with_agent_line(item_id, |line| {
            // After the final transcript, a late delta changes nothing.
            if let LineText::Growing(text) = &mut line.full_text {
                if text.len() < MAX_LINE_CHARS {
                    text.push_str(delta);
                    clip(text);
                }
            }
        });
    }

    /// The agent's transcript for an item is complete. Returns it as kept (clipped), to be
    /// shared.
    pub fn agent_said(&mut self, item_id: Option<&str>, transcript: &str) -> Arc<str> {
        let mut s = transcript.to_owned();
        clip(&mut s);
        let said: Arc<str> = s.into();
        self.with_agent_line(item_id, |line| {
            line.full_text = LineText::Done(said.clone());
            line.in_progress = false;
        });
        said
    }

    /// The caller heard only `heard_ms` of the agent's item `item_id`, of `produced_ms` the
    /// model had produced by then (barge-in, or the session lost mid-answer).
    pub fn agent_interrupted(&mut self, item_id: &str, heard_ms: u64, produced_ms: u64) {
        self.with_agent_line(Some(item_id), |line| {
            line.interrupted_after_ms = Some(heard_ms);
            line.produced_ms = produced_ms;
        });
    }

    /// The model called a function.
    pub fn tool_call(&mut self, call_id: &str, name: &str, arguments: &str) {
        self.push(Entry::ToolCall {
            call_id: call_id.to_owned(),
            name: name.to_owned(),
            arguments: arguments.to_owned(),
        });
    }

    /// The output given back for `call_id`.
    pub fn tool_output(&mut self, call_id: &str, output: &str) {
        self.push(Entry::ToolOutput {
            call_id: call_id.to_owned(),
            output: output.to_owned(),
        });
    }

    /// The whole conversation as `conversation.item.create` events for a new session (the most
    /// recent [`REPLAY_MAX_CHARS`]), then the [`CONTINUATION_NOTE`]. An empty conversation
    /// replays as nothing (a session that dropped before anyone spoke needs no note).
    pub fn replay(&self) -> Vec<ClientEvent> {
        let mut out = self.replay_since(0);
        if !out.is_empty() {
            out.push(ClientEvent::CreateItem(Item::SystemText(
                CONTINUATION_NOTE.into(),
            )));
        }
        out
    }

    /// Entries from position `from` (see [`Conversation::end`]) on, as items, without the note.
    /// Lines the caller heard nothing of are left out; so is a tool output whose call fell
    /// outside the budget.
    pub fn replay_since(&self, from: usize) -> Vec<ClientEvent> {
        let start = from.saturating_sub(self.dropped).min(self.entries.len());
        let slice = &self.entries[start..];
        // Newest first until the budget is spent.
        let mut budget = REPLAY_MAX_CHARS;
        let mut first = slice.len();
        for (i, e) in slice.iter().enumerate().rev() {
            let n = match e {
                Entry::Caller(l) => l.text.len(),
                Entry::Agent(l) => l.text().len(),
                Entry::ToolCall { arguments, .. } => arguments.len() + 32,
                Entry::ToolOutput { output, .. } => output.len() + 32,
            };
            if n > budget {
                break;
            }
            budget -= n;
            first = i;
        }
        let mut calls: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for e in &slice[first..] {
            let item = match e {
                Entry::Caller(l) => Item::UserText(l.text.to_string()),
                Entry::Agent(l) => match l.text() {
                    t if t.is_empty() => continue,
                    t => Item::AssistantText(t),
                },
                Entry::ToolCall {
                    call_id,
                    name,
                    arguments,
                } => {
                    calls.push(call_id);
                    Item::FunctionCall {
                        call_id: call_id.clone(),
                        name: name.clone(),
                        arguments: arguments.clone(),
                    }
                }
                Entry::ToolOutput { call_id, output } => {
                    // An output without its call is refused by the API. (A replay from a later
                    // position continues one that already carried the call.)
                    if from == 0 && !calls.contains(&call_id.as_str()) {
                        continue;
                    }
                    Item::FunctionCallOutput {
                        call_id: call_id.clone(),
                        output: output.clone(),
                    }
                }
            };
            out.push(ClientEvent::CreateItem(item));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(c: &Conversation) -> Vec<Item> {
        c.replay()
            .into_iter()
            .map(|e| match e {
                ClientEvent::CreateItem(i) => i,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn replay_is_the_lines_in_order_then_the_note() {
        let mut c = Conversation::new();
        c.caller_said("Where is my order?");
        c.agent_delta(Some("i1"), "Let me ");
        c.agent_delta(Some("i1"), "check.");
        c.agent_said(Some("i1"), "Let me check.");
        c.tool_call("call_1", "lookup_order", r#"{"id":42}"#);
        c.tool_output("call_1", r#"{"status":"shipped"}"#);
        c.caller_said("  ");
        assert_eq!(
            items(&c),
            [
                Item::UserText("Where is my order?".into()),
                Item::AssistantText("Let me check.".into()),
                Item::FunctionCall {
                    call_id: "call_1".into(),
                    name: "lookup_order".into(),
                    arguments: r#"{"id":42}"#.into()
                },
                Item::FunctionCallOutput {
                    call_id: "call_1".into(),
                    output: r#"{"status":"shipped"}"#.into()
                },
                Item::SystemText(CONTINUATION_NOTE.into()),
            ]
        );
        assert!(Conversation::new().replay().is_empty());
    }

    #[test]
    fn an_interrupted_line_is_cut_to_what_was_heard() {
        let mut c = Conversation::new();
        // 40 characters; the caller heard a quarter of the audio.
        c.agent_said(Some("i1"), "one two three four five six seven eight");
        c.agent_interrupted("i1", 1000, 4000);
        let Entry::Agent(l) = &c.entries()[0] else {
            panic!()
        };
        assert_eq!(l.interrupted_after_ms, Some(1000));
        assert_eq!(l.text(), "one two…");
        assert_eq!(l.full_text(), "one two three four five six seven eight");
        // The interruption may come before the transcript is done: the cut holds.
        c.agent_interrupted("i2", 0, 3000);
        c.agent_said(Some("i2"), "Never heard.");
        assert_eq!(items(&c)[0], Item::AssistantText("one two…".into()));
        assert_eq!(
            items(&c).len(),
            2,
            "the unheard line is left out, the note stays"
        );
    }

    #[test]
    fn a_line_cut_off_upstream_is_kept_as_far_as_it_went_and_marked() {
        let mut c = Conversation::new();
        c.agent_delta(Some("i1"), "All of it, so far ");
        c.agent_interrupted("i1", 2000, 2000);
        assert_eq!(
            items(&c)[0],
            Item::AssistantText("All of it, so far…".into())
        );
        // A finished line the caller heard in full stays as it was.
        c.agent_said(Some("i2"), "Done.");
        c.agent_interrupted("i2", 900, 900);
        assert_eq!(items(&c)[1], Item::AssistantText("Done.".into()));
    }

    #[test]
    fn replay_keeps_the_most_recent_within_budget() {
        let mut c = Conversation::new();
        let long = "x".repeat(REPLAY_MAX_CHARS / 4 + 10);
        for _ in 0..4 {
            c.caller_said(&long);
        }
        c.caller_said("last");
        let it = items(&c);
        assert_eq!(it.len(), 5, "oldest dropped, note added");
        assert_eq!(it[3], Item::UserText("last".into()));
        let since = c.end();
        c.caller_said("after");
        assert_eq!(
            c.replay_since(since),
            [ClientEvent::CreateItem(Item::UserText("after".into()))]
        );
    }

    #[test]
    fn the_log_is_bounded() {
        let mut c = Conversation::new();
        for i in 0..MAX_ENTRIES + 5 {
            c.caller_said(&i.to_string());
        }
        assert_eq!(c.entries().len(), MAX_ENTRIES);
        assert_eq!(c.end(), MAX_ENTRIES + 5);
        assert!(
            matches!(&c.entries()[0], Entry::Caller(l) if &*l.text == "5" && l.at_ms.is_none())
        );
    }
}
