//! Running calls by Twilio CallSid, so that a Twilio callback (answering machine detection)
//! can reach the task of the call it is about. Each call's task owns a [`Mailbox`] and polls
//! it beside its sockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// What a callback can ask of a running call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallCommand {
    /// Answering machine detection: a machine answered; leave the voicemail and hang up.
    MachineAnswered,
}

impl CallCommand {
    const ALL: [CallCommand; 1] = [CallCommand::MachineAnswered];

    fn bit(self) -> u8 {
        match self {
            CallCommand::MachineAnswered => 1,
        }
    }
}

/// A call's commands from callbacks. A command means the same however often it comes, so
/// pending ones are bits, not a queue: every call has one, and a channel cost ~500 bytes each.
#[derive(Debug, Default)]
pub struct Mailbox {
    pending: AtomicU8,
    waker: AtomicWaker,
}

impl Mailbox {
    pub fn post(&self, cmd: CallCommand) {
        self.pending.fetch_or(cmd.bit(), Ordering::AcqRel);
        self.waker.wake();
    }

    /// A pending command (each is taken once per posting), or `Pending` with `cx` woken when
    /// one is posted.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<CallCommand> {
        // The waker first: a command posted between the two is not lost.
        self.waker.register(cx.waker());
        for cmd in CallCommand::ALL {
            if self.pending.fetch_and(!cmd.bit(), Ordering::AcqRel) & cmd.bit() != 0 {
                return Poll::Ready(cmd);
            }
        }
        Poll::Pending
    }
}

#[derive(Default)]
pub struct RunningCalls {
    by_sid: Mutex<HashMap<String, Arc<Mailbox>>>,
    /// The cluster's routing (`cluster::routing`), told of each call's start and end.
    observer: std::sync::OnceLock<Arc<dyn Observer>>,
}

/// Told when a call with a CallSid starts and ends (the cluster listens for its callbacks).
pub trait Observer: Send + Sync {
    fn started(&self, call_sid: &str, mailbox: &Arc<Mailbox>);
    fn ended(&self, call_sid: &str, mailbox: &Arc<Mailbox>);
}

impl RunningCalls {
    /// A call's stream started with this CallSid.
    pub fn add(&self, call_sid: &str, mailbox: Arc<Mailbox>) {
        if let Some(o) = self.observer.get() {
            o.started(call_sid, &mailbox);
        }
        if let Ok(mut m) = self.by_sid.lock() {
            m.insert(call_sid.to_owned(), mailbox);
        }
    }

    /// Sets the one observer (the cluster's, at start-up).
    pub fn observe(&self, observer: Arc<dyn Observer>) {
        let _ = self.observer.set(observer);
    }

    /// The call ended (only its own entry is removed, should a SID come twice).
    pub fn remove(&self, call_sid: &str, mailbox: &Arc<Mailbox>) {
        if let Some(o) = self.observer.get() {
            o.ended(call_sid, mailbox);
        }
        if let Ok(mut m) = self.by_sid.lock() {
            if m.get(call_sid).is_some_and(|b| Arc::ptr_eq(b, mailbox)) {
                m.remove(call_sid);
            }
        }
    }

    /// Posts `cmd` to the running call with this SID; false if none runs.
    pub fn send(&self, call_sid: &str, cmd: CallCommand) -> bool {
        let mailbox = match self.by_sid.lock() {
            Ok(m) => m.get(call_sid).cloned(),
            Err(_) => None,
        };
        mailbox.map(|b| b.post(cmd)).is_some()
    }
}

/// A call task's entry, removed when the task ends (whatever way it does).
#[derive(Default)]
pub struct Registered(Option<(Arc<RunningCalls>, String, Arc<Mailbox>)>);

impl Registered {
    pub fn add(
        &mut self,
        calls: &Arc<RunningCalls>,
        call_sid: Option<&str>,
        mailbox: &Arc<Mailbox>,
    ) {
        if let (None, Some(sid)) = (&self.0, call_sid) {
            calls.add(sid, mailbox.clone());
            self.0 = Some((calls.clone(), sid.to_owned(), mailbox.clone()));
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some((calls, sid, mailbox)) = self.0.take() {
            calls.remove(&sid, &mailbox);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    fn take(b: &Mailbox) -> Option<CallCommand> {
        match b.poll_take(&mut Context::from_waker(noop_waker_ref())) {
            Poll::Ready(c) => Some(c),
            Poll::Pending => None,
        }
    }

    #[test]
    fn commands_reach_the_call_with_that_sid_only_while_it_runs() {
        let calls = RunningCalls::default();
        let b = Arc::new(Mailbox::default());
        assert!(!calls.send("CA1", CallCommand::MachineAnswered));
        calls.add("CA1", b.clone());
        assert!(!calls.send("CA2", CallCommand::MachineAnswered));
        assert_eq!(take(&b), None);
        assert!(calls.send("CA1", CallCommand::MachineAnswered));
        // Posted twice before the call looked: one command, taken once.
        assert!(calls.send("CA1", CallCommand::MachineAnswered));
        assert_eq!(take(&b), Some(CallCommand::MachineAnswered));
        assert_eq!(take(&b), None);
        // A newer call with the same SID is not removed by the older one's end.
        let b2 = Arc::new(Mailbox::default());
        calls.add("CA1", b2.clone());
        calls.remove("CA1", &b);
        assert!(calls.send("CA1", CallCommand::MachineAnswered));
        assert_eq!(take(&b), None);
        assert_eq!(take(&b2), Some(CallCommand::MachineAnswered));
        calls.remove("CA1", &b2);
        assert!(!calls.send("CA1", CallCommand::MachineAnswered));
    }

    #[test]
    fn a_posted_command_wakes_the_call() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl futures_util::task::ArcWake for Count {
            fn wake_by_ref(arc_self: &Arc<Self>) {
                arc_self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(Default::default()));
        let waker = futures_util::task::waker(count.clone());
        let b = Mailbox::default();
        assert!(b.poll_take(&mut Context::from_waker(&waker)).is_pending());
        b.post(CallCommand::MachineAnswered);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(take(&b), Some(CallCommand::MachineAnswered));
    }
}
