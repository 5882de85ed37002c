//! The live call console's hub: a small registry of this pod's active and recently ended
//! calls, and a broadcast of their events as JSON for `GET /console/events`.
//!
//! Fed from the calls' [`CallEvent`]s (the once-per-turn ones: no per-frame work), one lock
//! per event. With no console configured the media task holds a no-op handle; with nobody
//! watching, nothing is serialized. A fleet view (every pod) is Grafana's job: this is one
//! pod's calls, in memory.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::call::CallEvent;

/// Ended calls kept for the console.
const RECENT: usize = 20;
/// Transcript lines and events kept per call (a long call keeps its last ones).
const MAX_LINES: usize = 200;
/// Longest line kept (characters): bounds a call's memory with the line count.
const MAX_LINE_CHARS: usize = 1000;
/// Anomalies shown per call: a peer repeating a mistake 50 times a second must not flood the
/// console (the metrics count every one).
const MAX_ANOMALIES_SHOWN: u32 = 10;
/// Events a slow console may fall behind by before it skips (it then reloads the snapshot).
const CHANNEL: usize = 1024;

/// What the console shows of one call.
#[derive(Debug, Clone, Serialize)]
pub struct CallView {
    /// This pod's number for the call (also the key before Twilio names the call).
    pub n: u64,
    /// The pod running the call, with a cluster (`cluster/console.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub call_sid: Option<String>,
    pub stream_sid: Option<String>,
    pub caller: Option<String>,
    pub profile: Option<String>,
    pub direction: String,
    /// Unix time in ms when the media socket opened.
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// listening | agent speaking | tool running | transferring | ended.
    pub state: &'static str,
    /// Tools whose answer is awaited: the call shows `tool running` while there are any.
    #[serde(skip)]
    tools_running: u32,
    pub barge_ins: u32,
    pub last_turn_latency_ms: Option<u64>,
    pub outcome: Option<&'static str>,
    /// Omitted in summaries (the table); sent with a call's detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<VecDeque<Line>>,
}

impl CallView {
    /// Moves the shown state to `state`, except that a call being transferred stays so, and
    /// one waiting for a tool shows that until the answer came (a filler or the model talking
    /// meanwhile does not hide it).
    fn show(&mut self, state: &'static str) {
        if self.state == "transferring" {
            return;
        }
        self.state = if self.tools_running > 0 && state != "transferring" {
            "tool running"
        } else {
            state
        };
    }
}

/// One line of a call's transcript or event log.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub at_ms: u64,
    /// caller | agent | event
    pub who: &'static str,
    pub text: String,
}

/// One live event, as sent on `/console/events`.
#[derive(Serialize)]
struct Live<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    call_sid: Option<&'a str>,
    n: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<&'a Line>,
    call: &'a CallView,
}

#[derive(Default)]
struct Registry {
    active: BTreeMap<u64, CallView>,
    recent: VecDeque<CallView>,
}

/// This pod's calls for the console.
pub struct Hub {
    tx: broadcast::Sender<Arc<str>>,
    /// Flips when the server shuts down: watchers' streams end, so the graceful shutdown is
    /// not held open by a console left watching.
    closing: tokio::sync::watch::Sender<bool>,
    calls: Mutex<Registry>,
    /// With a cluster: this pod's name, and where every event also goes (to the other pods).
    cluster: std::sync::OnceLock<(String, Tap)>,
}

/// Takes each event's JSON for the other pods; must not block (it runs under the hub's lock).
pub type Tap = Box<dyn Fn(&Arc<str>) + Send + Sync>;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        let (tx, _) = broadcast::channel(CHANNEL);
        Arc::new(Hub {
            tx,
            closing: tokio::sync::watch::channel(false).0,
            calls: Mutex::new(Registry::default()),
            cluster: std::sync::OnceLock::new(),
        })
    }

    /// Names this pod's calls `pod` and hands every event to `tap` too (`cluster/console.rs`).
    pub fn join_cluster(&self, pod: String, tap: Tap) {
        let _ = self.cluster.set((pod, tap));
    }

    /// Sends an event of another pod's call to this pod's watchers.
    pub fn relay(&self, json: Arc<str>) {
        let _ = self.tx.send(json);
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic elsewhere while holding the lock leaves plain data: keep serving it.
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new media socket: the call shows up as listening until it says more.
    pub fn open(self: &Arc<Hub>, n: u64) -> LiveCall {
        let view = CallView {
            n,
            pod: self.cluster.get().map(|(pod, _)| pod.clone()),
            call_sid: None,
            stream_sid: None,
            caller: None,
            profile: None,
            direction: "inbound".into(),
            started_ms: unix_ms(),
            ended_ms: None,
            state: "listening",
            tools_running: 0,
            barge_ins: 0,
            last_turn_latency_ms: None,
            outcome: None,
            transcript: Some(VecDeque::new()),
        };
        self.lock().active.insert(n, view);
        LiveCall {
            hub: Some(self.clone()),
            n,
            opened: Instant::now(),
            anomalies: std::cell::Cell::new(0),
        }
    }

    /// Summaries of the active calls, then the recently ended ones (newest first).
    pub fn snapshot(&self) -> (Vec<CallView>, Vec<CallView>) {
        let reg = self.lock();
        let strip = |c: &CallView| CallView {
            transcript: None,
            ..c.clone()
        };
        (
            reg.active.values().map(strip).collect(),
            reg.recent.iter().rev().map(strip).collect(),
        )
    }

    /// One call with its transcript, active or recent.
    pub fn call(&self, n: u64) -> Option<CallView> {
        let reg = self.lock();
        reg.active
            .get(&n)
            .or_else(|| reg.recent.iter().find(|c| c.n == n))
            .cloned()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    /// Resolves when the server starts shutting down.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Ends every watcher's stream (server shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Applies `f` to call `n` and tells the watchers (if any) what happened.
    fn update(&self, n: u64, kind: &str, f: impl FnOnce(&mut CallView) -> Option<Line>) {
        let mut reg = self.lock();
        let Some(view) = reg.active.get_mut(&n) else {
            return;
        };
        let mut line = f(view);
        if let Some(l) = line.as_mut() {
            if let Some((cut, _)) = l.text.char_indices().nth(MAX_LINE_CHARS) {
                l.text.truncate(cut);
                l.text.push('…');
            }
        }
        if let (Some(l), Some(t)) = (&line, view.transcript.as_mut()) {
            if t.len() == MAX_LINES {
                t.pop_front();
            }
            t.push_back(l.clone());
        }
        self.publish(kind, view, line.as_ref());
    }

    fn publish(&self, kind: &str, view: &CallView, line: Option<&Line>) {
        let tap = self.cluster.get().map(|(_, tap)| tap);
        if self.tx.receiver_count() == 0 && tap.is_none() {
            return;
        }
        let summary = CallView {
            transcript: None,
            ..view.clone()
        };
        let live = Live {
            kind,
            call_sid: view.call_sid.as_deref(),
            n: view.n,
            line,
            call: &summary,
        };
        if let Ok(json) = serde_json::to_string(&live) {
            let json: Arc<str> = json.into();
            if let Some(tap) = tap {
                tap(&json);
            }
            let _ = self.tx.send(json);
        }
    }

    fn end(&self, n: u64, outcome: &'static str) {
        let mut reg = self.lock();
        let Some(mut view) = reg.active.remove(&n) else {
            return;
        };
        view.state = "ended";
        view.outcome = Some(outcome);
        view.ended_ms = Some(unix_ms());
        self.publish("ended", &view, None);
        if reg.recent.len() == RECENT {
            reg.recent.pop_front();
        }
        reg.recent.push_back(view);
    }
}

/// One call's handle on the hub, held by its media task. A no-op without a console.
pub struct LiveCall {
    hub: Option<Arc<Hub>>,
    n: u64,
    opened: Instant,
    anomalies: std::cell::Cell<u32>,
}

impl LiveCall {
    /// For a server without a console.
    pub fn off() -> LiveCall {
        LiveCall {
            hub: None,
            n: 0,
            opened: Instant::now(),
            anomalies: std::cell::Cell::new(0),
        }
    }

    /// Records what the console shows of `ev`. Per-frame events do not exist; anomalies
    /// and upstream errors are shown by kind only (their details may quote caller input).
    pub fn on_event(&self, ev: &CallEvent) {
        let Some(hub) = &self.hub else { return };
        let at_ms = self.opened.elapsed().as_millis() as u64;
        let line = |who: &'static str, text: String| Some(Line { at_ms, who, text });
        match ev {
            CallEvent::Started {
                stream_sid,
                call_sid,
                from,
            } => hub.update(self.n, "started", |v| {
                v.stream_sid = Some(stream_sid.clone());
                v.call_sid = call_sid.clone().or_else(|| Some(stream_sid.clone()));
                v.caller = from.clone();
                line("event", "call started".into())
            }),
            CallEvent::Labels { profile, direction } => hub.update(self.n, "labels", |v| {
                v.profile = profile.clone();
                if let Some(d) = direction {
                    v.direction = d.clone();
                }
                None
            }),
            CallEvent::UpstreamReady { .. } => hub.update(self.n, "ready", |_| {
                line("event", "model session ready".into())
            }),
            CallEvent::SpeechStarted => hub.update(self.n, "speech_started", |v| {
                v.show("listening");
                None
            }),
            CallEvent::AgentAudio {
                speech_stopped_at, ..
            } => {
                // The event comes as the turn's first frames are written: now is when the
                // answer started reaching the caller.
                let turn_latency_ms = speech_stopped_at
                    .map(|t| Instant::now().saturating_duration_since(t).as_millis() as u64);
                hub.update(self.n, "agent_speaking", |v| {
                    v.show("agent speaking");
                    if turn_latency_ms.is_some() {
                        v.last_turn_latency_ms = turn_latency_ms;
                    }
                    turn_latency_ms.map(|ms| line("event", format!("agent answered in {ms} ms")))?
                })
            }
            CallEvent::PlayoutDone => hub.update(self.n, "listening", |v| {
                v.show("listening");
                None
            }),
            CallEvent::BargeIn { truncated, .. } => hub.update(self.n, "barge_in", |v| {
                v.show("listening");
                v.barge_ins += 1;
                let at = truncated.first().map_or(String::new(), |(_, ms)| {
                    format!(" (agent cut at {ms} ms of its answer)")
                });
                line("event", format!("barge-in{at}"))
            }),
            CallEvent::CallerTranscript(t) => {
                hub.update(self.n, "transcript", |_| line("caller", t.to_string()))
            }
            CallEvent::AgentTranscript(t) => {
                hub.update(self.n, "transcript", |_| line("agent", t.to_string()))
            }
            CallEvent::Dtmf(d) => {
                hub.update(self.n, "dtmf", |_| line("event", format!("keypad {d}")))
            }
            CallEvent::UpstreamError {
                code,
                harmless: false,
                ..
            } => hub.update(self.n, "error", |_| {
                line(
                    "event",
                    format!("model error {}", code.as_deref().unwrap_or("unknown")),
                )
            }),
            CallEvent::UpstreamReconnecting { reason, .. } => {
                hub.update(self.n, "reconnecting", |_| {
                    line(
                        "event",
                        format!("model session lost ({reason}); reconnecting"),
                    )
                })
            }
            CallEvent::UpstreamRestored { gap_ms, .. } => hub.update(self.n, "restored", |_| {
                line(
                    "event",
                    format!("model session restored after {gap_ms} ms; conversation replayed"),
                )
            }),
            CallEvent::SessionRotated { forced, .. } => hub.update(self.n, "rotated", |_| {
                line(
                    "event",
                    format!(
                        "model session rotated{}",
                        if *forced {
                            " (forced before the limit)"
                        } else {
                            ""
                        }
                    ),
                )
            }),
            CallEvent::Anomaly { kind, .. } => {
                let seen = self.anomalies.get() + 1;
                self.anomalies.set(seen);
                if seen <= MAX_ANOMALIES_SHOWN {
                    let more = if seen == MAX_ANOMALIES_SHOWN {
                        " (further anomalies: see the logs and metrics)"
                    } else {
                        ""
                    };
                    hub.update(self.n, "anomaly", |_| {
                        line("event", format!("anomaly {kind}{more}"))
                    })
                }
            }
            CallEvent::ToolStarted { tool, .. } => hub.update(self.n, "tool_started", |v| {
                v.tools_running += 1;
                v.show("tool running");
                line("event", format!("tool {tool} running"))
            }),
            CallEvent::ToolCall {
                tool,
                result,
                seconds,
                ..
            } => hub.update(self.n, "tool", |v| {
                // Only a tool that ran (it has a duration) was counted as running.
                if seconds.is_some() {
                    v.tools_running = v.tools_running.saturating_sub(1);
                    if v.tools_running == 0 && v.state == "tool running" {
                        // The model answers with the result next.
                        v.show("listening");
                    }
                }
                line("event", format!("tool {tool}: {result}"))
            }),
            CallEvent::Transferring { destination } => hub.update(self.n, "transfer", |v| {
                v.show("transferring");
                line("event", format!("transferring to {destination}"))
            }),
            CallEvent::UpstreamError { .. }
            | CallEvent::ResponseDone { .. }
            | CallEvent::Usage { .. }
            | CallEvent::ToolSkipped { .. }
            | CallEvent::EndRequested { .. }
            | CallEvent::CallUpdated { .. }
            | CallEvent::FillerPlayed
            | CallEvent::BargeInPaused { .. }
            | CallEvent::BargeInDecided(_) => {}
        }
    }

    /// The call is over: it moves to the recent list with its outcome.
    pub fn ended(mut self, outcome: &'static str) {
        if let Some(hub) = self.hub.take() {
            hub.end(self.n, outcome);
        }
    }
}

impl Drop for LiveCall {
    /// A task that ends without [`LiveCall::ended`] (a panic) must not leave a ghost call.
    fn drop(&mut self) {
        if let Some(hub) = self.hub.take() {
            hub.end(self.n, "aborted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(hub: &Arc<Hub>) -> LiveCall {
        let live = hub.open(7);
        live.on_event(&CallEvent::Started {
            stream_sid: "MZ1".into(),
            call_sid: Some("CA1".into()),
            from: Some("+15550001".into()),
        });
        live
    }

    #[test]
    fn a_call_moves_from_active_to_recent_with_its_outcome() {
        let hub = Hub::new();
        let live = started(&hub);
        live.on_event(&CallEvent::AgentAudio {
            model_latency: None,
            speech_stopped_at: Instant::now().checked_sub(std::time::Duration::from_millis(420)),
        });
        let (active, recent) = hub.snapshot();
        assert_eq!(active.len(), 1);
        assert!(recent.is_empty());
        assert_eq!(active[0].state, "agent speaking");
        let latency = active[0].last_turn_latency_ms.expect("a turn latency");
        assert!((420..5000).contains(&latency), "{latency}");
        assert!(
            active[0].transcript.is_none(),
            "summaries carry no transcript"
        );
        live.ended("caller_hung_up");
        let (active, recent) = hub.snapshot();
        assert!(active.is_empty());
        assert_eq!(recent[0].outcome, Some("caller_hung_up"));
        assert_eq!(recent[0].call_sid.as_deref(), Some("CA1"));
    }

    #[test]
    fn watchers_get_one_json_object_per_event_with_type_and_call_sid() {
        let hub = Hub::new();
        let mut rx = hub.subscribe();
        let live = started(&hub);
        live.on_event(&CallEvent::CallerTranscript("hello there".into()));
        live.on_event(&CallEvent::BargeIn {
            cleared: true,
            cancelled: true,
            truncated: vec![("item_1".into(), 1500)],
        });
        drop(live);
        let mut got = Vec::new();
        while let Ok(m) = rx.try_recv() {
            got.push(serde_json::from_str::<serde_json::Value>(&m).expect("json"));
        }
        let types: Vec<&str> = got.iter().filter_map(|v| v["type"].as_str()).collect();
        assert_eq!(types, ["started", "transcript", "barge_in", "ended"]);
        assert!(got.iter().all(|v| v["call_sid"] == "CA1"));
        assert_eq!(got[1]["line"]["who"], "caller");
        assert_eq!(got[1]["line"]["text"], "hello there");
        assert_eq!(got[2]["call"]["barge_ins"], 1);
        assert_eq!(
            got[3]["call"]["outcome"], "aborted",
            "dropped without ended()"
        );
        let detail = hub.call(7).expect("kept in recent");
        let lines = detail.transcript.expect("detail has the transcript");
        assert!(lines.iter().any(|l| l.text == "hello there"));
    }

    #[test]
    fn a_call_shows_tool_running_until_the_answer_and_transferring_to_the_end() {
        let hub = Hub::new();
        let live = started(&hub);
        let state = || hub.snapshot().0[0].state;
        let audio = CallEvent::AgentAudio {
            model_latency: None,
            speech_stopped_at: None,
        };
        let tool = |call_id: &str| CallEvent::ToolStarted {
            tool: "lookup_order".into(),
            call_id: call_id.into(),
        };
        let answered = |call_id: &str| CallEvent::ToolCall {
            tool: "lookup_order".into(),
            call_id: call_id.into(),
            result: "ok",
            seconds: Some(0.8),
        };
        live.on_event(&tool("c1"));
        live.on_event(&tool("c2"));
        assert_eq!(state(), "tool running");
        // The filler (or the model) speaking meanwhile does not hide the wait.
        live.on_event(&audio);
        assert_eq!(state(), "tool running");
        live.on_event(&answered("c1"));
        assert_eq!(state(), "tool running", "one of two answered");
        live.on_event(&answered("c2"));
        assert_eq!(state(), "listening");
        live.on_event(&audio);
        assert_eq!(state(), "agent speaking");
        live.on_event(&CallEvent::Transferring {
            destination: "sales".into(),
        });
        assert_eq!(state(), "transferring");
        live.on_event(&CallEvent::PlayoutDone);
        assert_eq!(state(), "transferring", "until the call ends");
        let lines = hub.call(7).and_then(|c| c.transcript).expect("lines");
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert!(texts.contains(&"tool lookup_order running"), "{texts:?}");
        assert!(texts.contains(&"transferring to sales"), "{texts:?}");
    }

    #[test]
    fn a_flood_of_anomalies_and_a_huge_line_stay_bounded() {
        let hub = Hub::new();
        let live = hub.open(1);
        for _ in 0..500 {
            live.on_event(&CallEvent::Anomaly {
                kind: "bad_twilio_json",
                detail: "x".into(),
            });
        }
        live.on_event(&CallEvent::CallerTranscript("é".repeat(50_000).into()));
        let lines = hub.call(1).and_then(|c| c.transcript).expect("lines");
        let anomalies = lines
            .iter()
            .filter(|l| l.text.starts_with("anomaly"))
            .count();
        assert_eq!(anomalies, MAX_ANOMALIES_SHOWN as usize);
        let last = lines.back().expect("the transcript line");
        assert_eq!(
            last.text.chars().count(),
            MAX_LINE_CHARS + 1,
            "cut, with an ellipsis"
        );
    }

    #[test]
    fn recent_calls_and_transcripts_are_bounded() {
        let hub = Hub::new();
        for n in 0..(RECENT as u64 + 5) {
            let live = hub.open(n);
            for i in 0..(MAX_LINES + 10) {
                live.on_event(&CallEvent::AgentTranscript(format!("line {i}").into()));
            }
            live.ended("caller_hung_up");
        }
        let (_, recent) = hub.snapshot();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0].n, RECENT as u64 + 4, "newest first");
        let t = hub.call(RECENT as u64 + 4).and_then(|c| c.transcript);
        assert_eq!(t.map(|t| t.len()), Some(MAX_LINES));
    }
}
