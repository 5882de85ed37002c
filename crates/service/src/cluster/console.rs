//! One console for every replica. Each replica publishes its calls' console events (the
//! once-per-turn ones the hub already makes; nothing per frame) on
//! `callbridge.console.<pod>`, and keeps the other replicas' calls here, bounded like its own
//! hub: active calls (those of a replica whose heartbeats stopped are ended as `pod_lost`),
//! the last [`RECENT`] ended ones, [`MAX_LINES`] lines each. Its watchers get those events as
//! they come, and this registry in their snapshot. A replica that joins sees calls already
//! running elsewhere from their next event on.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::StreamExt;
use serde_json::Value;
use tracing::{debug, warn};

use super::{Cluster, OP_TIMEOUT};
use crate::server::console::{CallView, Hub};

pub const CONSOLE_SUBJECT_PREFIX: &str = "callbridge.console.";
/// Ended calls of other replicas kept (as the hub keeps this replica's).
const RECENT: usize = 20;
/// Lines kept per call (as the hub).
const MAX_LINES: usize = 200;
/// Other replicas' active calls followed at most (a bound, far above any real deployment's).
const MAX_ACTIVE: usize = 20_000;
/// Events waiting to be published; past it, events are dropped (the console is best effort;
/// a call never waits for it).
const OUTBOX: usize = 4096;

type Key = (String, u64);

struct Followed {
    summary: Value,
    lines: VecDeque<Value>,
}

#[derive(Default)]
struct Registry {
    active: BTreeMap<Key, Followed>,
    recent: VecDeque<(Key, Followed)>,
}

/// The other replicas' calls.
#[derive(Default)]
pub struct RemoteCalls {
    calls: Mutex<Registry>,
    hub: OnceLock<Arc<Hub>>,
}

impl RemoteCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one event of `pod`'s call; false if it is not an event of a call.
    fn apply(&self, pod: &str, ev: &Value) -> bool {
        let (Some(n), Some(call)) = (ev["n"].as_u64(), ev.get("call")) else {
            return false;
        };
        let key = (pod.to_owned(), n);
        let mut reg = self.lock();
        let ended = ev["type"] == "ended";
        // A call ended as `pod_lost` whose replica speaks again (its heartbeats were late, not
        // gone) goes on where it was, with its lines.
        let revived = reg
            .recent
            .iter()
            .position(|(k, f)| *k == key && f.summary["outcome"] == "pod_lost")
            .and_then(|i| reg.recent.remove(i))
            .map(|(_, f)| f);
        let mut followed = match reg.active.remove(&key).or(revived) {
            Some(f) => f,
            None if reg.active.len() >= MAX_ACTIVE => return false,
            None => Followed {
                summary: Value::Null,
                lines: VecDeque::new(),
            },
        };
        followed.summary = call.clone();
        if let Some(line) = ev.get("line").filter(|l| !l.is_null()) {
            if followed.lines.len() == MAX_LINES {
                followed.lines.pop_front();
            }
            followed.lines.push_back(line.clone());
        }
        if ended {
            reg.recent.retain(|(k, _)| *k != key);
            if reg.recent.len() == RECENT {
                reg.recent.pop_front();
            }
            reg.recent.push_back((key, followed));
        } else {
            reg.active.insert(key, followed);
        }
        true
    }

    /// One call of `pod` with its transcript, as `/console/calls/{n}` answers for this pod's.
    pub fn call(&self, pod: &str, n: u64) -> Option<Value> {
        let reg = self.lock();
        let key = (pod.to_owned(), n);
        let f = reg
            .active
            .get(&key)
            .or_else(|| reg.recent.iter().find(|(k, _)| *k == key).map(|(_, f)| f))?;
        let mut detail = f.summary.clone();
        detail["transcript"] = Value::Array(f.lines.iter().cloned().collect());
        Some(detail)
    }

    /// Ends the active calls of replicas no longer alive (their heartbeats expired), telling
    /// the watchers: a replica killed mid-call leaves no ghost.
    pub fn retain_pods(&self, alive: &HashSet<String>) {
        let lost: Vec<(Key, Followed)> = {
            let mut reg = self.lock();
            let gone: Vec<Key> = reg
                .active
                .keys()
                .filter(|(pod, _)| !alive.contains(pod))
                .cloned()
                .collect();
            gone.into_iter()
                .filter_map(|k| reg.active.remove(&k).map(|f| (k, f)))
                .collect()
        };
        for ((pod, n), mut f) in lost {
            f.summary["state"] = "ended".into();
            f.summary["outcome"] = "pod_lost".into();
            let ev = serde_json::json!({
                "type": "ended", "call_sid": f.summary["call_sid"], "n": n, "call": f.summary,
            });
            {
                let mut reg = self.lock();
                if reg.recent.len() == RECENT {
                    reg.recent.pop_front();
                }
                reg.recent.push_back(((pod, n), f));
            }
            if let Some(hub) = self.hub.get() {
                hub.relay(ev.to_string().into());
            }
        }
    }
}

/// This replica's snapshot (`active`, `recent`) with the other replicas' calls added: recent
/// ones newest first, as many as the hub keeps.
pub fn merged(
    active: Vec<CallView>,
    recent: Vec<CallView>,
    cluster: Option<&Cluster>,
) -> (Vec<Value>, Vec<Value>) {
    let to_values = |v: Vec<CallView>| -> Vec<Value> {
        v.into_iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect()
    };
    let (mut active, mut recent) = (to_values(active), to_values(recent));
    let Some(c) = cluster else {
        return (active, recent);
    };
    let reg = c.console.lock();
    active.extend(reg.active.values().map(|f| f.summary.clone()));
    recent.extend(reg.recent.iter().map(|(_, f)| f.summary.clone()));
    recent.sort_by_key(|v| std::cmp::Reverse(v["ended_ms"].as_u64().unwrap_or(0)));
    recent.truncate(RECENT);
    (active, recent)
}

/// Publishes this replica's console events and follows the others'.
pub fn start(hub: &Arc<Hub>, c: &Arc<Cluster>) {
    let _ = c.console.hub.set(hub.clone());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Arc<str>>(OUTBOX);
    hub.join_cluster(
        c.cfg.pod.clone(),
        Box::new(move |json| {
            // Full (NATS slow or down): the event is dropped; the console shows the next one.
            let _ = tx.try_send(json.clone());
        }),
    );
    let publisher = c.clone();
    tokio::spawn(async move {
        let subject = format!("{CONSOLE_SUBJECT_PREFIX}{}", publisher.cfg.pod);
        while let Some(json) = rx.recv().await {
            if publisher.is_leaving() {
                return;
            }
            if !publisher.connected() {
                continue;
            }
            let sent = publisher
                .client
                .publish(subject.clone(), json.as_bytes().to_vec().into());
            if let Ok(Err(e)) = tokio::time::timeout(OP_TIMEOUT, sent).await {
                debug!(error = %e, "cluster: console event not published");
            }
        }
    });
    let (follower, hub) = (c.clone(), hub.clone());
    tokio::spawn(async move {
        let mut sub = match follower
            .client
            .subscribe(format!("{CONSOLE_SUBJECT_PREFIX}*"))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cluster: the console shows this replica's calls only");
                return;
            }
        };
        let mine = format!("{CONSOLE_SUBJECT_PREFIX}{}", follower.cfg.pod);
        while let Some(msg) = sub.next().await {
            if msg.subject.as_str() == mine {
                continue;
            }
            let pod = msg
                .subject
                .as_str()
                .strip_prefix(CONSOLE_SUBJECT_PREFIX)
                .unwrap_or_default();
            let Ok(text) = std::str::from_utf8(&msg.payload) else {
                continue;
            };
            let Ok(ev) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if follower.console.apply(pod, &ev) {
                hub.relay(text.into());
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, n: u64, line: Option<&str>) -> Value {
        serde_json::json!({
            "type": kind, "n": n, "call_sid": format!("CA{n}"),
            "line": line.map(|t| serde_json::json!({"at_ms": 1, "who": "caller", "text": t})),
            "call": {"n": n, "pod": "pod-a", "state": if kind == "ended" {"ended"} else {"listening"},
                     "ended_ms": if kind == "ended" {Some(n)} else {None}},
        })
    }

    #[test]
    fn other_replicas_calls_are_followed_bounded_and_ended_with_their_replica() {
        let remote = RemoteCalls::default();
        for n in 0..(RECENT as u64 + 3) {
            assert!(remote.apply("pod-a", &ev("started", n, None)));
            remote.apply("pod-a", &ev("ended", n, None));
        }
        let (active, recent) = merged(vec![], vec![], None);
        assert!(active.is_empty() && recent.is_empty());
        assert_eq!(remote.lock().recent.len(), RECENT, "recent bounded");
        remote.apply("pod-b", &ev("started", 1, None));
        for i in 0..(MAX_LINES + 5) {
            remote.apply("pod-b", &ev("transcript", 1, Some(&format!("line {i}"))));
        }
        let detail = remote.call("pod-b", 1).expect("followed");
        assert_eq!(
            detail["transcript"].as_array().map(Vec::len),
            Some(MAX_LINES)
        );
        assert!(remote.call("pod-c", 1).is_none());
        remote.retain_pods(&HashSet::from(["pod-a".to_owned()]));
        assert!(
            remote.lock().active.is_empty(),
            "pod-b's call ended with pod-b"
        );
        assert_eq!(
            remote.call("pod-b", 1).expect("recent")["outcome"],
            "pod_lost"
        );
        // pod-b was only late: its call goes on with its lines.
        remote.apply("pod-b", &ev("transcript", 1, Some("still here")));
        let detail = remote.call("pod-b", 1).expect("active again");
        assert_eq!(detail["state"], "listening");
        let lines = detail["transcript"].as_array().cloned().unwrap_or_default();
        assert_eq!(lines.len(), MAX_LINES);
        assert_eq!(lines[MAX_LINES - 1]["text"], "still here");
        assert!(!remote.apply("pod-a", &serde_json::json!({"type": "snapshot"})));
    }
}
