//! What wakes a call's task, polled in one place.
//!
//! A `tokio::select!` over the call's eight sources rebuilt eight futures on every wake-up —
//! 100 or more a second per call — and re-armed the deadline timer each time (the call's
//! deadline moves with every Twilio frame: it includes Twilio's idle timeout). Here the
//! sources live as long as the call: the timer is armed once and only moved *earlier*; a
//! timer that fires before the call's real deadline just costs one `Call::on_tick`, which
//! acts only on what is due. Every ready message is taken in one wake-up (up to a bound per
//! socket), so a busy event loop writes one batch per socket instead of one per message.
//!
//! Each group of sources (the Twilio socket, the upstream sockets, everything else) gets its
//! own waker, so a wake-up polls only the group that was woken. That matters more than it
//! looks: tungstenite zero-fills its whole read buffer before every read attempt, even one
//! that finds nothing (measured with callgrind: 13% of the bridge's instructions were that
//! `memset` when every socket was polled on every wake-up).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ws::{Message, WebSocket};
use futures_util::task::{waker_ref, ArcWake, AtomicWaker};
use futures_util::StreamExt;
use tokio::task::JoinError;
use tokio::time::{Instant, Sleep};

use super::super::call_setup::CallSetup;
use super::super::effect_tasks::EffectTasks;
use super::super::links::{Links, Received};
use super::super::running::{CallCommand, Mailbox};
use crate::call::{EffectId, EffectResult};
use crate::server::call_setup::SetupAnswer;

/// Messages taken from one socket in one wake-up: enough to catch up after a busy moment,
/// few enough that the other socket and the timer are never kept waiting long.
const BATCH_PER_SOCKET: usize = 8;

/// One thing that happened.
pub enum Wake {
    /// The Twilio socket's next item (`None`: it ended).
    Twilio(Option<Result<Message, axum::Error>>),
    /// An upstream socket (by generation): connected, a message, or lost.
    Upstream(u64, Received),
    /// A tool request or Twilio REST update finished.
    Effect(Result<(EffectId, EffectResult), JoinError>),
    /// The setup lookup answered (or failed). Boxed: it comes once a call, and inline it would
    /// double the size of every entry of the batch, which the call keeps all call long.
    Lookup(Box<Option<SetupAnswer>>),
    /// A Twilio callback for this call (e.g. answering machine).
    Command(CallCommand),
    /// The server's drain is over: the call should end politely.
    Drain,
    /// The timer fired (the call's deadline, or the drain's hard limit, may have passed).
    Timer,
}

/// A group of sources' waker: marks the group as woken, then wakes the call's task.
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Flag {
    fn new() -> Arc<Flag> {
        // Woken at first: nothing has been polled (and so registered) yet.
        Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        })
    }

    fn take(&self) -> bool {
        self.woken.swap(false, Ordering::AcqRel)
    }

    fn set(&self) {
        self.woken.store(true, Ordering::Release);
    }
}

impl ArcWake for Flag {
    fn wake_by_ref(arc: &Arc<Self>) {
        arc.set();
        arc.task.wake();
    }
}

/// The call's long-lived wake-up sources that are not its sockets or effects.
pub struct Sources {
    twilio_woken: Arc<Flag>,
    upstream_woken: Arc<Flag>,
    others_woken: Arc<Flag>,
    timer: Pin<Box<Sleep>>,
    /// When the timer fires; `None` once it fired (it must be re-armed).
    armed: Option<Instant>,
    drain: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    twilio_open: bool,
    /// Which socket is read first; alternates, so neither can starve the other.
    twilio_first: bool,
}

impl Sources {
    pub fn new(mut stop_calls: tokio::sync::watch::Receiver<bool>) -> Sources {
        let far = Instant::now() + std::time::Duration::from_secs(3600);
        Sources {
            twilio_woken: Flag::new(),
            upstream_woken: Flag::new(),
            others_woken: Flag::new(),
            timer: Box::pin(tokio::time::sleep_until(far)),
            armed: Some(far),
            drain: Some(Box::pin(async move {
                // An error means the server is gone: nothing to drain for.
                if stop_calls.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
            })),
            twilio_open: true,
            twilio_first: true,
        }
    }

    /// Makes the timer fire no later than `at`. Moving it later is skipped: an early firing
    /// is harmless and far cheaper than touching the timer wheel on every frame.
    pub fn wake_by(&mut self, at: Instant) {
        if self.armed.is_some_and(|armed| armed <= at) {
            return;
        }
        self.timer.as_mut().reset(at);
        self.armed = Some(at);
        self.others_woken.set();
    }

    /// A connection attempt was started: its future has not been polled yet.
    pub fn upstream_changed(&self) {
        self.upstream_woken.set();
    }

    /// An effect task or a setup lookup was started: poll them, so that their completion
    /// wakes this task.
    pub fn others_changed(&self) {
        self.others_woken.set();
    }

    /// Waits until at least one source is ready and appends what is ready to `batch`. A warm
    /// call has no Twilio socket yet (`None`).
    #[allow(clippy::too_many_arguments)]
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mut twilio: Option<&mut WebSocket>,
        realtime: &mut Links,
        effects: &mut EffectTasks,
        setup: &mut CallSetup,
        commands: &Mailbox,
        batch: &mut Vec<Wake>,
    ) -> Poll<()> {
        // The task's waker first, then the flags: a wake-up between the two is not lost.
        for flag in [&self.twilio_woken, &self.upstream_woken, &self.others_woken] {
            flag.task.register(cx.waker());
        }
        if self.others_woken.take() {
            let waker = waker_ref(&self.others_woken);
            let cx = &mut Context::from_waker(&waker);
            if self.armed.is_some() && self.timer.as_mut().poll(cx).is_ready() {
                self.armed = None;
                batch.push(Wake::Timer);
            }
            if let Some(drain) = self.drain.as_mut() {
                if drain.as_mut().poll(cx).is_ready() {
                    self.drain = None;
                    batch.push(Wake::Drain);
                }
            }
            if let Poll::Ready(cmd) = commands.poll_take(cx) {
                batch.push(Wake::Command(cmd));
            }
            if !effects.is_empty() {
                if let Poll::Ready(Some(done)) = effects.poll_join_next(cx) {
                    batch.push(Wake::Effect(done));
                }
            }
            if let Poll::Ready(answer) = setup.poll_lookup(cx) {
                batch.push(Wake::Lookup(Box::new(answer)));
            }
            if !batch.is_empty() {
                // One of them may have more (another finished effect): look again next time.
                self.others_woken.set();
            }
        }
        self.twilio_first = !self.twilio_first;
        for twilio_turn in [self.twilio_first, !self.twilio_first] {
            if twilio_turn {
                // No socket yet (a warm call): its flag stays set until one comes.
                let Some(twilio) = twilio.as_deref_mut() else {
                    continue;
                };
                if self.twilio_open && self.twilio_woken.take() {
                    let waker = waker_ref(&self.twilio_woken);
                    let cx = &mut Context::from_waker(&waker);
                    let mut taken = 0;
                    while let Poll::Ready(item) = twilio.poll_next_unpin(cx) {
                        // After its end (or a close frame) the socket is not read again.
                        self.twilio_open =
                            matches!(item, Some(Ok(ref m)) if !matches!(m, Message::Close(_)));
                        // Only media frames are taken in a row: after anything else (a
                        // `stop`, say) nothing more is read before the call has seen it, so a
                        // call that ends reads exactly what it would one message at a time.
                        let more = self.twilio_open && is_media(&item);
                        batch.push(Wake::Twilio(item));
                        taken += 1;
                        if taken == BATCH_PER_SOCKET || !more {
                            if self.twilio_open {
                                // Not drained yet: read on at the next turn.
                                self.twilio_woken.set();
                            }
                            break;
                        }
                    }
                }
            } else if self.upstream_woken.take() {
                let waker = waker_ref(&self.upstream_woken);
                let cx = &mut Context::from_waker(&waker);
                let mut taken = 0;
                while let Poll::Ready((generation, received)) = realtime.poll_next(cx) {
                    batch.push(Wake::Upstream(generation, received));
                    taken += 1;
                    if taken == BATCH_PER_SOCKET {
                        self.upstream_woken.set();
                        break;
                    }
                }
            }
        }
        if batch.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// A Twilio `media` message in the form Twilio sends (`event` first). Anything else, including
/// a media message written another way, just ends a batch.
fn is_media(item: &Option<Result<Message, axum::Error>>) -> bool {
    matches!(item, Some(Ok(Message::Text(t))) if t.as_str().starts_with(r#"{"event":"media""#))
}
