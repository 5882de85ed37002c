//! Function tools: what the model may call, and what the call does when it does.
//!
//! The model's call can be seen three times (`…arguments.done`, `output_item.done`,
//! `response.done`); it is collected under its `call_id` and acted on once, when its response
//! is done — and only if that response completed (a cancelled or interrupted response's calls
//! are dropped). An integrator's tool becomes an [`Effect::RunTool`]; its answer comes back
//! through [`Call::on_effect_done`] and goes to the model as a `function_call_output`. Once
//! every call of a response has its output, one `response.create` asks the model to speak.
//! The built-ins `end_call` and `transfer_call` are handled in [`super::hangup`], `send_dtmf`
//! in [`super::keypad_out`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::effects::{Effect, EffectId, ToolFailure, ToolOutcome, ToolRequest};
use super::{Call, CallEvent, Output};
use crate::realtime::ClientEvent;

pub const END_CALL: &str = "end_call";
pub const TRANSFER_CALL: &str = "transfer_call";
/// Names the model sees for the built-ins; a configured tool may not take them.
pub const BUILT_INS: &[&str] = &[END_CALL, TRANSFER_CALL, SEND_DTMF];
pub use super::keypad_out::SEND_DTMF;

/// One integrator tool (validated at start-up).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// A JSON Schema object.
    pub parameters: Value,
    pub url: String,
    pub timeout: Duration,
    /// Play the filler if the tool is still running after this long.
    pub filler_after: Duration,
}

/// Everything about tools, hang-up and transfer a call needs.
#[derive(Debug, Clone)]
pub struct ToolsConfig {
    pub tools: Vec<ToolSpec>,
    /// Offer the built-in `end_call`.
    pub end_call: bool,
    /// `(name, E.164 number or sip: URI)`; non-empty offers the built-in `transfer_call`.
    pub transfer_targets: Vec<(String, String)>,
    pub transfer_caller_id: Option<String>,
    /// Offer the built-in `send_dtmf` (the agent presses keys).
    pub send_dtmf: bool,
    /// The longest wait for the goodbye (or handover line) to be heard before the call is
    /// ended (or transferred) anyway.
    pub goodbye_timeout: Duration,
    /// μ-law 8 kHz clip played while a slow tool runs (`None`: no filler).
    pub filler: Option<Arc<Vec<u8>>>,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            tools: Vec::new(),
            end_call: false,
            transfer_targets: Vec::new(),
            transfer_caller_id: None,
            send_dtmf: false,
            goodbye_timeout: Duration::from_secs(15),
            filler: None,
        }
    }
}

impl ToolsConfig {
    /// The `tools` array of `session.update`: the integrator's tools and the enabled built-ins.
    pub fn declarations(&self) -> Vec<Value> {
        let mut out: Vec<Value> = self
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "name": t.name, "description": t.description,
                       "parameters": t.parameters})
            })
            .collect();
        if self.end_call {
            out.push(json!({"type": "function", "name": END_CALL,
                "description": "End the phone call when the conversation is over or the caller asks to hang up. After calling it, say a short goodbye; the line is closed once the caller has heard it.",
                "parameters": {"type": "object", "properties": {
                    "reason": {"type": "string", "description": "Why the call ends, in a few words."}}}}));
        }
        if !self.transfer_targets.is_empty() {
            let names: Vec<&str> = self
                .transfer_targets
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            out.push(json!({"type": "function", "name": TRANSFER_CALL,
                "description": "Transfer the caller to a person. In the same turn, first tell the caller you are transferring them; the transfer happens once they have heard it.",
                "parameters": {"type": "object", "properties": {
                    "destination": {"type": "string", "enum": names,
                                    "description": "Who to transfer the caller to."}},
                    "required": ["destination"]}}));
        }
        if self.send_dtmf {
            out.push(super::keypad_out::declaration());
        }
        out
    }

    fn tool(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// One tool call as the conversation saw it (for the conversation log and reports).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallRecord {
    pub call_id: String,
    pub tool: String,
    /// As the model sent them (a JSON string).
    pub arguments: String,
    /// The `function_call_output` sent, once sent.
    pub output: Option<String>,
    /// `ok`, or why not (the `result` label of `callbridge_tool_calls_total`).
    pub result: Option<&'static str>,
}

/// Who the call is, as told to tools.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallInfo {
    pub stream_sid: String,
    pub call_sid: Option<String>,
    pub account_sid: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub parameters: BTreeMap<String, String>,
}

/// A call seen in events of a response that is not done yet.
struct Seen {
    response_id: String,
    call_id: String,
    name: Option<String>,
    arguments: String,
}

struct Running {
    id: EffectId,
    call_id: String,
    tool: String,
    started: Instant,
    /// The shell enforces the tool's timeout; this is the call's own backstop.
    deadline: Instant,
    filler_at: Instant,
}

/// Outputs a response's calls still owe before its one `response.create`.
struct Group {
    call_ids: Vec<String>,
    answered: usize,
}

/// Tool-call bookkeeping of one call.
#[derive(Default)]
pub(crate) struct ToolState {
    seen: Vec<Seen>,
    /// call_ids already acted on (run, refused, or dropped with their response).
    decided: VecDeque<String>,
    running: Vec<Running>,
    groups: Vec<Group>,
    /// A `response.create` is owed as soon as no response is live.
    pub(super) create_when_idle: bool,
    pub(super) records: Vec<ToolCallRecord>,
    /// Remote MCP calls (run by OpenAI; recorded only): `mcp.rs`.
    pub(super) mcp: super::mcp::McpCalls,
    /// Keys the agent pressed, until heard: `keypad_out.rs`.
    pub(super) keypad: super::keypad_out::KeypadOut,
}

/// How many decided call_ids and records are kept (a call never makes this many).
const MAX_REMEMBERED: usize = 256;
/// Largest arguments string accepted from the model.
const MAX_ARGUMENTS: usize = 64 * 1024;
/// Grace past a tool's timeout before the call stops waiting for the shell's answer.
const BACKSTOP: Duration = Duration::from_secs(2);

pub(crate) fn error_output(message: &str, retryable: bool) -> String {
    json!({"error": message, "retryable": retryable}).to_string()
}

impl ToolState {
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let keys = self.keypad.next_deadline();
        self.running.iter().map(|r| r.deadline).chain(keys).min()
    }

    /// The earliest time a running tool wants the filler.
    pub(crate) fn filler_due(&self) -> Option<Instant> {
        self.running.iter().map(|r| r.filler_at).min()
    }

    pub(crate) fn any_running(&self) -> bool {
        !self.running.is_empty()
    }

    fn is_decided(&self, call_id: &str) -> bool {
        self.decided.iter().any(|c| c == call_id)
    }

    fn decide(&mut self, call_id: &str) {
        if self.decided.len() == MAX_REMEMBERED {
            self.decided.pop_front();
        }
        self.decided.push_back(call_id.to_owned());
    }
}

impl Call {
    /// Tool calls of this call so far, in the order the model made them.
    pub fn tool_calls(&self) -> &[ToolCallRecord] {
        &self.tools.records
    }

    /// Where `transfer_call` may hand this call (`(name, number or sip: URI)`), as configured
    /// for it (its profile, its setup answer).
    pub fn transfer_targets(&self) -> &[(String, String)] {
        &self.cfg.tools.transfer_targets
    }

    /// Who the call is (from Twilio's `start`), once known.
    pub fn info(&self) -> Option<&CallInfo> {
        self.info.as_ref()
    }

    /// A function call seen in `…arguments.done` or `output_item.done`: remembered until its
    /// response is done.
    pub(super) fn tool_call_seen(
        &mut self,
        response_id: Option<&str>,
        call_id: &str,
        name: Option<&str>,
        arguments: &str,
    ) {
        if self.tools.is_decided(call_id) {
            return;
        }
        if let Some(s) = self.tools.seen.iter_mut().find(|s| s.call_id == call_id) {
            if s.name.is_none() {
                s.name = name.map(str::to_owned);
            }
            return;
        }
        if self.tools.seen.len() >= 64 {
            self.anomaly("too_many_tool_calls", format!("call {call_id} ignored"));
            return;
        }
        let response_id = response_id
            .or(self.live_response.as_deref())
            .unwrap_or_default()
            .to_owned();
        self.tools.seen.push(Seen {
            response_id,
            call_id: call_id.to_owned(),
            name: name.map(str::to_owned),
            arguments: arguments.to_owned(),
        });
    }

    /// A response is done (after `live_response` was updated): run its calls if it completed,
    /// drop them otherwise.
    pub(super) fn tools_on_response_done(
        &mut self,
        response: &crate::realtime::events::ResponseRef,
        now: Instant,
    ) {
        for item in &response.output {
            if let Some((call_id, name, args)) = item.function_call() {
                self.tool_call_seen(Some(&response.id), call_id, Some(name), args);
            }
        }
        let mine: Vec<Seen> = {
            let (mine, rest) = std::mem::take(&mut self.tools.seen)
                .into_iter()
                .partition(|s| s.response_id == response.id || s.response_id.is_empty());
            self.tools.seen = rest;
            mine
        };
        if !mine.is_empty() {
            if response.completed() {
                self.tools.groups.push(Group {
                    call_ids: mine.iter().map(|s| s.call_id.clone()).collect(),
                    answered: 0,
                });
                for s in mine {
                    self.start_tool_call(&response.id, s, now);
                }
            } else {
                for s in mine {
                    self.tools.decide(&s.call_id);
                    self.out.push_back(Output::Event(CallEvent::ToolSkipped {
                        call_id: s.call_id,
                        tool: s.name.unwrap_or_default(),
                        response_status: response.status.clone().unwrap_or_default(),
                    }));
                }
            }
        }
        if self.tools.create_when_idle && self.live_response.is_none() {
            self.tools.create_when_idle = false;
            if self.wrapping_up() {
                return;
            }
            self.send_model(ClientEvent::ResponseCreate { instructions: None });
        }
    }

    fn start_tool_call(&mut self, response_id: &str, s: Seen, now: Instant) {
        self.tools.decide(&s.call_id);
        let name = s.name.unwrap_or_default();
        // In the conversation log, so a new session after a reconnect sees the call.
        self.conversation.tool_call(&s.call_id, &name, &s.arguments);
        if self.tools.records.len() < MAX_REMEMBERED {
            self.tools.records.push(ToolCallRecord {
                call_id: s.call_id.clone(),
                tool: name.clone(),
                arguments: s.arguments.clone(),
                output: None,
                result: None,
            });
        }
        let args = if s.arguments.len() > MAX_ARGUMENTS {
            Err("arguments too long".to_owned())
        } else {
            parse_arguments(&s.arguments)
        };
        let args = match args {
            Ok(a) => a,
            Err(e) => {
                let label = if self.is_known_tool(&name) {
                    name.as_str()
                } else {
                    "unknown"
                };
                return self.refuse(
                    &s.call_id,
                    label,
                    "bad_arguments",
                    &format!("arguments are not valid: {e}"),
                );
            }
        };
        let cfg = self.cfg.clone();
        let tc = &cfg.tools;
        match name.as_str() {
            END_CALL if tc.end_call => self.end_call_requested(&s.call_id, &args, now),
            SEND_DTMF if tc.send_dtmf => self.send_dtmf_requested(&s.call_id, &args, now),
            TRANSFER_CALL if !tc.transfer_targets.is_empty() => {
                self.transfer_requested(response_id, &s.call_id, &args, now)
            }
            _ => match tc.tool(&name) {
                None => self.refuse(
                    &s.call_id,
                    "unknown",
                    "unknown_tool",
                    &format!("there is no tool named {name:?}"),
                ),
                Some(spec) => {
                    if let Err(e) = check_required(&spec.parameters, &args) {
                        return self.refuse(&s.call_id, &spec.name, "bad_arguments", &e);
                    }
                    self.run_tool(spec, s.call_id, args, now);
                }
            },
        }
    }

    fn is_known_tool(&self, name: &str) -> bool {
        (name == END_CALL && self.cfg.tools.end_call)
            || (name == TRANSFER_CALL && !self.cfg.tools.transfer_targets.is_empty())
            || (name == SEND_DTMF && self.cfg.tools.send_dtmf)
            || self.cfg.tools.tool(name).is_some()
    }

    fn run_tool(&mut self, spec: &ToolSpec, call_id: String, arguments: Value, now: Instant) {
        let info = self.info.clone().unwrap_or_default();
        let body = json!({
            "tool": spec.name,
            "call_id": call_id,
            "arguments": arguments,
            "call": {
                "call_sid": info.call_sid,
                "stream_sid": info.stream_sid,
                "account_sid": info.account_sid,
                "from": info.from,
                "to": info.to,
                "parameters": info.parameters,
            }
        })
        .to_string();
        let id = self.next_effect_id();
        self.out.push_back(Output::Event(CallEvent::ToolStarted {
            tool: spec.name.clone(),
            call_id: call_id.clone(),
        }));
        self.tools.running.push(Running {
            id,
            call_id,
            tool: spec.name.clone(),
            started: now,
            deadline: now + spec.timeout + BACKSTOP,
            filler_at: now + spec.filler_after,
        });
        self.out.push_back(Output::Effect {
            id,
            effect: Effect::RunTool(ToolRequest {
                tool: spec.name.clone(),
                url: spec.url.clone(),
                timeout: spec.timeout,
                body,
            }),
        });
    }

    /// A tool's answer arrived. Returns false if no running tool had this effect id.
    pub(super) fn tool_done(&mut self, id: EffectId, outcome: ToolOutcome, now: Instant) -> bool {
        let Some(pos) = self.tools.running.iter().position(|r| r.id == id) else {
            return false;
        };
        let r = self.tools.running.remove(pos);
        self.filler_rearm();
        let seconds = now.saturating_duration_since(r.started).as_secs_f64();
        let (output, result) = match outcome {
            ToolOutcome::Ok(body) => (body, "ok"),
            ToolOutcome::Failed { kind, message } => {
                (error_output(&message, kind.retryable()), kind.label())
            }
        };
        self.out.push_back(Output::Event(CallEvent::ToolCall {
            tool: r.tool,
            call_id: r.call_id.clone(),
            result,
            seconds: Some(seconds),
        }));
        self.send_output(&r.call_id, output, result);
        true
    }

    /// Tools whose answer is overdue (the shell should have timed them out) get a timeout.
    pub(super) fn tools_on_tick(&mut self, now: Instant) {
        self.keypad_out_progress(now);
        let overdue: Vec<EffectId> = self
            .tools
            .running
            .iter()
            .filter(|r| now >= r.deadline)
            .map(|r| r.id)
            .collect();
        for id in overdue {
            self.tool_done(
                id,
                ToolOutcome::Failed {
                    kind: ToolFailure::Timeout,
                    message: "the tool did not answer in time".into(),
                },
                now,
            );
        }
    }

    /// Refuses a call without running anything: an error output the model can talk about.
    pub(super) fn refuse(&mut self, call_id: &str, tool: &str, result: &'static str, why: &str) {
        self.out.push_back(Output::Event(CallEvent::ToolCall {
            tool: tool.to_owned(),
            call_id: call_id.to_owned(),
            result,
            seconds: None,
        }));
        self.anomaly("tool_call_refused", format!("{tool} ({call_id}): {why}"));
        self.send_output(call_id, error_output(why, false), result);
    }

    /// Sends a call's output (never twice for one call_id) and, once every call of its
    /// response has one, one `response.create` (deferred while another response is live).
    pub(super) fn send_output(&mut self, call_id: &str, output: String, result: &'static str) {
        if self.is_ended() {
            return;
        }
        if let Some(rec) = self
            .tools
            .records
            .iter_mut()
            .rev()
            .find(|r| r.call_id == call_id)
        {
            if rec.output.is_some() {
                self.anomaly("duplicate_tool_output", call_id.to_owned());
                return;
            }
            rec.output = Some(output.clone());
            rec.result = Some(result);
        }
        self.conversation.tool_output(call_id, &output);
        self.send_model(ClientEvent::FunctionCallOutput {
            call_id: call_id.to_owned(),
            output,
        });
        let Some(gi) = self
            .tools
            .groups
            .iter()
            .position(|g| g.call_ids.iter().any(|c| c == call_id))
        else {
            return;
        };
        let g = &mut self.tools.groups[gi];
        g.answered += 1;
        if g.answered < g.call_ids.len() {
            return;
        }
        self.tools.groups.remove(gi);
        if self.wrapping_up() {
            // The call is saying goodbye: the results are in the conversation, no new answer.
            return;
        }
        if self.live_response.is_some() {
            // The model is answering something else (the caller spoke meanwhile): it speaks
            // about the results once that answer is done.
            self.tools.create_when_idle = true;
        } else {
            self.send_model(ClientEvent::ResponseCreate { instructions: None });
        }
    }

    /// The group `call_id` belongs to stops owing an output for it (a transfer that went
    /// through never answers).
    pub(super) fn forget_output(&mut self, call_id: &str) {
        self.tools
            .groups
            .retain(|g| !g.call_ids.iter().any(|c| c == call_id));
    }

    pub(super) fn next_effect_id(&mut self) -> EffectId {
        self.next_effect += 1;
        self.next_effect
    }
}

/// The model's arguments: a JSON object (an empty string counts as `{}`).
fn parse_arguments(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("not a JSON object".into()),
        Err(e) => Err(format!("not JSON ({e})")),
    }
}

/// The schema's `required` properties are present (the rest is the tool's to check).
fn check_required(schema: &Value, args: &Value) -> Result<(), String> {
    let Some(required) = schema.get("required").and_then(Value::as_array) else {
        return Ok(());
    };
    let missing: Vec<&str> = required
        .iter()
        .filter_map(Value::as_str)
        .filter(|k| args.get(*k).is_none_or(Value::is_null))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing required argument(s): {}",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_must_be_an_object_with_the_required_fields() {
        let schema = json!({"type":"object","required":["order_id"]});
        assert!(parse_arguments("not json").is_err());
        assert!(parse_arguments("[1]").is_err());
        assert_eq!(parse_arguments("").unwrap(), json!({}));
        let ok = parse_arguments(r#"{"order_id":"42"}"#).unwrap();
        assert!(check_required(&schema, &ok).is_ok());
        let missing = parse_arguments(r#"{"order_id":null}"#).unwrap();
        assert!(check_required(&schema, &missing)
            .unwrap_err()
            .contains("order_id"));
    }
}
