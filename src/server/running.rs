//! Running calls by Twilio CallSid, so that a Twilio callback (answering machine detection)
//! can reach the task of the call it is about. Each call's task owns the receiver of its
//! channel and selects on it beside its sockets.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

/// What a callback can ask of a running call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallCommand {
    /// Answering machine detection: a machine answered; leave the voicemail and hang up.
    MachineAnswered,
}

#[derive(Debug, Default)]
pub struct RunningCalls {
    by_sid: Mutex<HashMap<String, mpsc::Sender<CallCommand>>>,
}

impl RunningCalls {
    /// A call's stream started with this CallSid.
    pub fn add(&self, call_sid: &str, tx: mpsc::Sender<CallCommand>) {
        if let Ok(mut m) = self.by_sid.lock() {
            m.insert(call_sid.to_owned(), tx);
        }
    }

    /// The call ended (only its own entry is removed, should a SID come twice).
    pub fn remove(&self, call_sid: &str, tx: &mpsc::Sender<CallCommand>) {
        if let Ok(mut m) = self.by_sid.lock() {
            if m.get(call_sid).is_some_and(|t| t.same_channel(tx)) {
                m.remove(call_sid);
            }
        }
    }

    /// Sends `cmd` to the running call with this SID; false if none runs (or it is gone).
    pub fn send(&self, call_sid: &str, cmd: CallCommand) -> bool {
        let tx = match self.by_sid.lock() {
            Ok(m) => m.get(call_sid).cloned(),
            Err(_) => None,
        };
        tx.is_some_and(|tx| tx.try_send(cmd).is_ok())
    }
}

/// A call task's entry, removed when the task ends (whatever way it does).
#[derive(Default)]
pub struct Registered(
    Option<(
        std::sync::Arc<RunningCalls>,
        String,
        mpsc::Sender<CallCommand>,
    )>,
);

impl Registered {
    pub fn add(
        &mut self,
        calls: &std::sync::Arc<RunningCalls>,
        call_sid: Option<&str>,
        tx: &mpsc::Sender<CallCommand>,
    ) {
        if let (None, Some(sid)) = (&self.0, call_sid) {
            calls.add(sid, tx.clone());
            self.0 = Some((calls.clone(), sid.to_owned(), tx.clone()));
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some((calls, sid, tx)) = self.0.take() {
            calls.remove(&sid, &tx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_reach_the_call_with_that_sid_only_while_it_runs() {
        let calls = RunningCalls::default();
        let (tx, mut rx) = mpsc::channel(4);
        assert!(!calls.send("CA1", CallCommand::MachineAnswered));
        calls.add("CA1", tx.clone());
        assert!(!calls.send("CA2", CallCommand::MachineAnswered));
        assert!(calls.send("CA1", CallCommand::MachineAnswered));
        assert_eq!(rx.try_recv().ok(), Some(CallCommand::MachineAnswered));
        // A newer call with the same SID is not removed by the older one's end.
        let (tx2, _rx2) = mpsc::channel(4);
        calls.add("CA1", tx2.clone());
        calls.remove("CA1", &tx);
        assert!(calls.send("CA1", CallCommand::MachineAnswered));
        calls.remove("CA1", &tx2);
        assert!(!calls.send("CA1", CallCommand::MachineAnswered));
    }
}
