//! Assembles one call's report from what the shell saw: Twilio's `start`, the call's events,
//! the caller's turn ends and the agent's first audio after each. Pure: every input carries its
//! time, so tests script it.
//!
//! At call end the agent lines are taken as the caller heard them from the call's conversation
//! log ([`ReportBuilder::use_conversation`]); until then (and for a line the log no longer
//! holds) an agent line's interruption is inferred: a barge-in that truncated audio belongs to the agent line being spoken (its transcript not yet
//! done) or, when the transcript was already done (generation runs ahead of playback), to the
//! last agent line. Tool calls come from the call's own records at call end
//! ([`ReportBuilder::set_tool_calls`]) with their times and results from the call's events;
//! the transfer from the call's `Transferring` event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::redact::stored_json;
use super::{
    new_report_id, time::rfc3339, turn_latency, unconnected_report_id, CallReport, Recording,
    ToolCall, TranscriptLine, Transfer, CALL_COMPLETED,
};
use crate::call::tools::ToolCallRecord;
use crate::call::CallEvent;
use crate::twilio::StartMeta;
use callbridge_core::redact::Redact;

mod conversation_lines;

/// `<Parameter>` names the bridge's own TwiML uses.
pub const PARAM_PROFILE: &str = "profile";
pub const PARAM_DIRECTION: &str = "direction";
/// Integrator variables travel as `<Parameter name="var.NAME">`.
pub const VAR_PREFIX: &str = "var.";

/// Bounds so a hostile or endless call cannot grow the report without limit.
const MAX_LINES: usize = 2000;
const MAX_DTMF: usize = 500;
const MAX_TURNS: usize = 2000;
const MAX_TOOL_CALLS: usize = 256;

pub struct ReportBuilder {
    opened: Instant,
    opened_wall: SystemTime,
    report: CallReport,
    /// The transcript so far; its texts are the conversation log's own (shared, not copied:
    /// a long call's lines would otherwise be held twice). Becomes `report.transcript` at the end.
    lines: Vec<Line>,
    /// The caller's last turn ended here and the agent has not answered yet.
    turn_end: Option<Instant>,
    latencies: Vec<u64>,
    /// Agent audio went out since the last agent transcript line.
    agent_speaking: bool,
    /// A barge-in cut the agent line still being transcribed after this many ms.
    pending_interrupt: Option<u64>,
    /// Per tool call_id: the result label and seconds the call's `ToolCall` event gave.
    tool_results: BTreeMap<String, (&'static str, Option<f64>)>,
    /// The destination the call was handed to, and when.
    transferred: Option<(String, u64)>,
    /// What this call redacts (`redact`; the events come redacted, the log and tools do not).
    pub redact: Redact,
}

impl ReportBuilder {
    /// A call whose media socket opened at `opened` (monotonic) / `opened_wall` (wall clock).
    pub fn new(opened: Instant, opened_wall: SystemTime) -> ReportBuilder {
        ReportBuilder {
            opened,
            opened_wall,
            // The id is random, not derived from the CallSid like a callback's report: a media
            // stream is not something Twilio replays, and one call can carry more than one
            // stream (a redirect to a second <Connect>), each with its own report.
            report: blank_report(new_report_id(), "inbound", rfc3339(opened_wall)),
            lines: Vec::new(),
            turn_end: None,
            latencies: Vec::new(),
            agent_speaking: false,
            pending_interrupt: None,
            tool_results: BTreeMap::new(),
            transferred: None,
            redact: Redact::NONE,
        }
    }

    /// Twilio's `start`: the call's identity and the `<Parameter>`s our TwiML set.
    pub fn on_start(&mut self, stream_sid: &str, start: &StartMeta) {
        let r = &mut self.report;
        r.stream_sid = Some(stream_sid.to_owned());
        r.call_sid = start.call_sid.clone();
        r.account_sid = start.account_sid.clone();
        let p = &start.custom_parameters;
        r.from = p.get("From").cloned();
        r.to = p.get("To").cloned();
        r.profile = p.get(PARAM_PROFILE).filter(|s| !s.is_empty()).cloned();
        if p.get(PARAM_DIRECTION).map(String::as_str) == Some("outbound") {
            r.direction = "outbound".into();
        }
        for (k, v) in p {
            if let Some(name) = k.strip_prefix(VAR_PREFIX) {
                r.variables.insert(name.to_owned(), v.clone());
            }
        }
    }

    pub fn on_event(&mut self, ev: &CallEvent, now: Instant) {
        let at_ms = self.ms_since_open(now);
        match ev {
            CallEvent::CallerTranscript(t) => self.line(CALLER, t, at_ms, None),
            CallEvent::AgentTranscript(t) => {
                self.agent_speaking = false;
                let cut = self.pending_interrupt.take();
                self.line(AGENT, t, at_ms, cut);
            }
            CallEvent::Usage { usage, .. } => self.report.usage.add(usage),
            CallEvent::Dtmf(d) if self.report.dtmf.len() < MAX_DTMF => {
                self.report.dtmf.push(d.clone());
            }
            CallEvent::BargeIn { truncated, .. } => {
                self.report.barge_ins += 1;
                self.turn_end = None;
                if let Some((_, heard_ms)) = truncated.last() {
                    if self.agent_speaking {
                        self.pending_interrupt = Some(*heard_ms);
                    } else if let Some(line) = self.lines.iter_mut().rev().find(|l| l.role == AGENT)
                    {
                        line.interrupted_after_ms = Some(*heard_ms);
                    }
                }
            }
            CallEvent::ToolCall {
                call_id,
                result,
                seconds,
                ..
            } if self.tool_results.len() < MAX_TOOL_CALLS => {
                self.tool_results
                    .insert(call_id.clone(), (*result, *seconds));
            }
            CallEvent::Transferring { destination } => {
                self.transferred = Some((destination.clone(), at_ms));
            }
            _ => {}
        }
    }

    /// The call's tool calls (its own records, at call end) and its transfer destinations
    /// (`(name, number or sip: URI)`, to name where a transfer went).
    pub fn set_tool_calls(&mut self, records: &[ToolCallRecord], targets: &[(String, String)]) {
        let json = |s: &str| stored_json(self.redact, s);
        self.report.tool_calls = records
            .iter()
            .take(MAX_TOOL_CALLS)
            .map(|r| {
                let seen = self.tool_results.get(&r.call_id);
                // The event has the final word (a transfer's output is never sent: the call
                // is handed over); a call still running at the end has neither.
                let result = seen.map(|(res, _)| *res).or(r.result);
                ToolCall {
                    name: r.tool.clone(),
                    arguments: json(&r.arguments),
                    output: r.output.as_deref().map_or(serde_json::Value::Null, json),
                    ms: seen
                        .and_then(|(_, s)| *s)
                        .map_or(0, |s| (s * 1000.0).round() as u64),
                    ok: result == Some("ok"),
                }
            })
            .collect();
        self.report.transfer = self.transferred.as_ref().map(|(name, at_ms)| Transfer {
            target: name.clone(),
            to: targets
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, to)| to.clone())
                .unwrap_or_default(),
            at_ms: *at_ms,
        });
    }

    /// The id the report will carry (known from the start, so later events can name it).
    pub fn report_id(&self) -> &str {
        &self.report.report_id
    }

    /// The agent profile the call runs with.
    pub fn set_profile(&mut self, name: &str) {
        self.report.profile = Some(name.to_owned());
    }

    /// Variables the setup lookup added.
    pub fn add_variables(&mut self, vars: &BTreeMap<String, String>) {
        for (k, v) in vars {
            self.report.variables.insert(k.clone(), v.clone());
        }
    }

    /// Whether Twilio's `start` was seen.
    pub fn has_start(&self) -> bool {
        self.report.stream_sid.is_some()
    }

    /// The server's VAD says the caller stopped speaking.
    pub fn on_caller_turn_end(&mut self, now: Instant) {
        self.turn_end = Some(now);
    }

    /// A frame of agent audio went to Twilio. Called per frame: reads the clock (`now`) only
    /// for the first frame of an answer.
    pub fn on_agent_audio(&mut self, now: impl FnOnce() -> Instant) {
        self.agent_speaking = true;
        if let Some(t) = self.turn_end.take() {
            let now = now();
            if self.latencies.len() < MAX_TURNS {
                self.latencies
                    .push(now.saturating_duration_since(t).as_millis() as u64);
            }
        }
    }

    /// A recording of the call (the bridge's own `record_dir` file).
    pub fn add_recording(&mut self, kind: &str, location: String) {
        self.report.recording.push(Recording {
            kind: kind.into(),
            location,
        });
    }

    /// The finished report, for a call that ended at `now` with `outcome`.
    pub fn finish(mut self, outcome: &str, now: Instant) -> CallReport {
        let took = now.saturating_duration_since(self.opened);
        let r = &mut self.report;
        r.outcome = outcome.to_owned();
        r.ended_at = rfc3339(self.opened_wall + took);
        r.duration_s = (took.as_millis() as f64) / 1000.0;
        r.turn_latency_ms = turn_latency(&self.latencies);
        r.transcript = self
            .lines
            .into_iter()
            .map(|l| TranscriptLine {
                role: l.role.into(),
                text: l.text.to_string(),
                at_ms: l.at_ms,
                interrupted_after_ms: l.interrupted_after_ms,
            })
            .collect();
        self.report
    }

    fn ms_since_open(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.opened).as_millis() as u64
    }

    fn line(
        &mut self,
        role: &'static str,
        text: &Arc<str>,
        at_ms: u64,
        interrupted_after_ms: Option<u64>,
    ) {
        if text.is_empty() || self.lines.len() >= MAX_LINES {
            return;
        }
        self.lines.push(Line {
            role,
            text: text.clone(),
            at_ms,
            interrupted_after_ms,
        });
    }
}

const CALLER: &str = "caller";
const AGENT: &str = "agent";

/// A transcript line while the call runs (see [`ReportBuilder::lines`]).
struct Line {
    role: &'static str,
    text: Arc<str>,
    at_ms: u64,
    interrupted_after_ms: Option<u64>,
}

/// A report for a call that never reached the bridge (outbound: no answer, busy, failed), from
/// Twilio's status callback; its id derives from the CallSid, so a replayed callback is the
/// same report.
#[allow(clippy::too_many_arguments)]
pub fn unconnected(
    outcome: &str,
    call_sid: &str,
    account_sid: Option<String>,
    from: Option<String>,
    to: Option<String>,
    profile: Option<String>,
    variables: BTreeMap<String, String>,
    duration: Duration,
    now_wall: SystemTime,
) -> CallReport {
    let started = now_wall.checked_sub(duration).unwrap_or(now_wall);
    CallReport {
        call_sid: Some(call_sid.to_owned()),
        account_sid,
        from,
        to,
        profile,
        variables,
        ended_at: rfc3339(now_wall),
        duration_s: duration.as_secs_f64(),
        outcome: outcome.to_owned(),
        ..blank_report(
            unconnected_report_id(call_sid),
            "outbound",
            rfc3339(started),
        )
    }
}

/// A report with its id, direction and start, and nothing else known yet.
fn blank_report(report_id: String, direction: &str, started_at: String) -> CallReport {
    CallReport {
        kind: CALL_COMPLETED.into(),
        report_id,
        call_sid: None,
        stream_sid: None,
        account_sid: None,
        direction: direction.into(),
        from: None,
        to: None,
        profile: None,
        variables: BTreeMap::new(),
        started_at,
        ended_at: String::new(),
        duration_s: 0.0,
        outcome: String::new(),
        transcript: Vec::new(),
        tool_calls: Vec::new(),
        transfer: None,
        dtmf: Vec::new(),
        barge_ins: 0,
        turn_latency_ms: None,
        recording: Vec::new(),
        usage: Default::default(),
        cost_usd: None,
        analysis: None,
        analysis_error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn start(params: &[(&str, &str)]) -> StartMeta {
        serde_json::from_value(serde_json::json!({
            "accountSid": "AC1", "callSid": "CA1",
            "customParameters": params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        }))
        .unwrap()
    }

    /// The caller talked over the agent: Twilio's buffer cleared, `item` truncated at
    /// `heard_ms`, the response `cancelled` if it was still being generated.
    fn barge_in(cancelled: bool, item: &str, heard_ms: u64) -> CallEvent {
        CallEvent::BargeIn {
            cleared: true,
            cancelled,
            truncated: vec![(item.into(), heard_ms)],
        }
    }

    #[test]
    fn a_conversation_becomes_a_report() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut b = ReportBuilder::new(t0, SystemTime::UNIX_EPOCH);
        b.on_start(
            "MZ1",
            &start(&[
                ("From", "+15550001"),
                ("To", "+15550002"),
                ("profile", "sales"),
                ("direction", "outbound"),
                ("var.caller_name", "Ada"),
            ]),
        );
        // Caller speaks, the agent answers 400 ms after the turn ended, and is interrupted
        // after its transcript was complete (generation ran ahead of playback).
        b.on_caller_turn_end(at(1000));
        b.on_agent_audio(|| at(1400));
        b.on_agent_audio(|| at(1420));
        b.on_event(
            &CallEvent::CallerTranscript("Where is my order?".into()),
            at(1500),
        );
        b.on_event(
            &CallEvent::AgentTranscript("It ships tomorrow and".into()),
            at(1600),
        );
        b.on_event(&barge_in(false, "item1", 900), at(2300));
        b.on_event(&CallEvent::Dtmf("1".into()), at(2500));
        // Second turn: interrupted while still being generated.
        b.on_caller_turn_end(at(3000));
        b.on_agent_audio(|| at(3800));
        b.on_event(&barge_in(true, "item2", 120), at(4000));
        b.on_event(&CallEvent::AgentTranscript("Let me".into()), at(4100));
        let r = b.finish("caller_hung_up", at(5250));
        assert_eq!(r.call_sid.as_deref(), Some("CA1"));
        assert_eq!(r.direction, "outbound");
        assert_eq!(r.profile.as_deref(), Some("sales"));
        assert_eq!(
            r.variables.get("caller_name").map(String::as_str),
            Some("Ada")
        );
        assert_eq!(r.outcome, "caller_hung_up");
        assert_eq!(r.duration_s, 5.25);
        assert_eq!(r.started_at, "1970-01-01T00:00:00.000Z");
        assert_eq!(r.ended_at, "1970-01-01T00:00:05.250Z");
        assert_eq!(r.barge_ins, 2);
        assert_eq!(r.dtmf, ["1"]);
        let lines: Vec<_> = r
            .transcript
            .iter()
            .map(|l| (l.role.as_str(), l.at_ms, l.interrupted_after_ms))
            .collect();
        assert_eq!(
            lines,
            [
                ("caller", 1500, None),
                ("agent", 1600, Some(900)),
                ("agent", 4100, Some(120))
            ]
        );
        assert_eq!(
            r.turn_latency_ms,
            Some(crate::report::TurnLatency { p50: 400, max: 800 })
        );
    }

    /// A long call's transcript is held once: the report's lines are the conversation log's
    /// texts, shared, until the report is finished.
    #[test]
    fn transcript_lines_share_the_conversation_logs_text() {
        use crate::call::conversation::Conversation;
        let t0 = Instant::now();
        let mut log = Conversation::new();
        let caller = log.caller_said("  Where is my order?  ").expect("a line");
        let agent = log.agent_said(Some("i1"), "It ships tomorrow.");
        let mut b = ReportBuilder::new(t0, SystemTime::UNIX_EPOCH);
        b.on_event(&CallEvent::CallerTranscript(caller.clone()), t0);
        b.on_event(&CallEvent::AgentTranscript(agent.clone()), t0);
        // The log, the builder and this test: three holders of one text each.
        assert_eq!(Arc::strong_count(&caller), 3);
        assert_eq!(Arc::strong_count(&agent), 3);
        b.use_conversation(log.entries());
        let r = b.finish("caller_hung_up", t0);
        let texts: Vec<_> = r.transcript.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["Where is my order?", "It ships tomorrow."]);
        assert_eq!(Arc::strong_count(&caller), 2);
    }

    #[test]
    fn agent_lines_are_what_the_caller_heard_per_the_conversation_log() {
        use crate::call::conversation::Conversation;
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut log = Conversation::new();
        log.caller_said("Hello?");
        log.agent_said(Some("i1"), "Hi there.");
        // An answer the model finished but the caller cut off after a quarter of its audio.
        let long = "one two three four five six seven eight";
        log.agent_said(Some("i2"), long);
        log.agent_interrupted("i2", 1000, 4000);
        let mut b = ReportBuilder::new(t0, SystemTime::UNIX_EPOCH);
        b.on_event(&CallEvent::CallerTranscript("Hello?".into()), at(100));
        b.on_event(&CallEvent::AgentTranscript("Hi there.".into()), at(200));
        b.on_event(&CallEvent::AgentTranscript(long.into()), at(300));
        b.use_conversation(log.entries());
        let r = b.finish("caller_hung_up", at(5000));
        let lines: Vec<_> = r
            .transcript
            .iter()
            .map(|l| (l.role.as_str(), l.text.as_str(), l.interrupted_after_ms))
            .collect();
        assert_eq!(
            lines,
            [
                ("caller", "Hello?", None),
                ("agent", "Hi there.", None),
                ("agent", "one two…", Some(1000)),
            ]
        );
    }

    #[test]
    fn tool_calls_and_the_transfer_come_from_the_call_records() {
        let t0 = Instant::now();
        let mut b = ReportBuilder::new(t0, SystemTime::UNIX_EPOCH);
        let rec = |id: &str, tool: &str, args: &str, out: Option<&str>, res| ToolCallRecord {
            call_id: id.into(),
            tool: tool.into(),
            arguments: args.into(),
            output: out.map(str::to_owned),
            result: res,
        };
        b.on_event(
            &CallEvent::ToolCall {
                tool: "lookup_order".into(),
                call_id: "c1".into(),
                result: "ok",
                seconds: Some(0.25),
            },
            t0,
        );
        b.on_event(
            &CallEvent::ToolCall {
                tool: "transfer_call".into(),
                call_id: "c2".into(),
                result: "ok",
                seconds: Some(0.1),
            },
            t0,
        );
        b.on_event(
            &CallEvent::Transferring {
                destination: "sales".into(),
            },
            t0 + Duration::from_millis(3000),
        );
        b.set_tool_calls(
            &[
                rec(
                    "c1",
                    "lookup_order",
                    r#"{"order_id":"1"}"#,
                    Some(r#"{"status":"shipped"}"#),
                    Some("ok"),
                ),
                rec(
                    "c0",
                    "broken",
                    "not json",
                    Some("plain text"),
                    Some("http_error"),
                ),
                rec(
                    "c2",
                    "transfer_call",
                    r#"{"destination":"sales"}"#,
                    None,
                    None,
                ),
            ],
            &[("sales".into(), "+15551230000".into())],
        );
        let r = b.finish("transferred", t0 + Duration::from_millis(4000));
        let calls: Vec<_> = r
            .tool_calls
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.arguments.clone(),
                    c.output.clone(),
                    c.ms,
                    c.ok,
                )
            })
            .collect();
        assert_eq!(
            calls,
            [
                (
                    "lookup_order",
                    serde_json::json!({"order_id":"1"}),
                    serde_json::json!({"status":"shipped"}),
                    250,
                    true
                ),
                (
                    "broken",
                    serde_json::json!("not json"),
                    serde_json::json!("plain text"),
                    0,
                    false
                ),
                (
                    "transfer_call",
                    serde_json::json!({"destination":"sales"}),
                    serde_json::Value::Null,
                    100,
                    true
                ),
            ]
        );
        assert_eq!(
            r.transfer,
            Some(Transfer {
                target: "sales".into(),
                to: "+15551230000".into(),
                at_ms: 3000
            })
        );
    }

    #[test]
    fn a_call_without_start_still_reports() {
        let t0 = Instant::now();
        let r = ReportBuilder::new(t0, SystemTime::now()).finish("no_start", t0);
        assert_eq!(r.outcome, "no_start");
        assert_eq!(r.direction, "inbound");
        assert!(r.call_sid.is_none() && r.transcript.is_empty());
    }
}
