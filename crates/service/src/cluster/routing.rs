//! Callbacks reach their call on any replica. While a call with a CallSid runs, its replica
//! listens on `callbridge.call.<CallSid>`; a callback arriving at a replica that does not run
//! the call is sent there as a NATS request, and NATS's "no responders" says at once that no
//! replica runs it. Twilio's signature was checked where the callback arrived; a forwarded
//! command is accepted only from this subscription, i.e. from the cluster's authenticated NATS
//! connection, never from HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tracing::{debug, info, warn};

use super::{ClusterMetrics, OP_TIMEOUT};
use crate::server::running::{CallCommand, Mailbox, Observer};

pub const CALL_SUBJECT_PREFIX: &str = "callbridge.call.";
/// The answer of the replica that took a command.
const TAKEN: &[u8] = b"taken";

/// A command's name on the wire. Every command has one (the match is exhaustive: a new
/// command cannot be forgotten here).
fn wire(cmd: CallCommand) -> &'static str {
    match cmd {
        CallCommand::MachineAnswered => "machine_answered",
    }
}

fn parse(name: &[u8]) -> Option<CallCommand> {
    [CallCommand::MachineAnswered]
        .into_iter()
        .find(|c| wire(*c).as_bytes() == name)
}

/// A CallSid is letters and digits (`CA` + 32 hex); anything else (a `.`, `*` or `>`) would be
/// a different NATS subject, so it is never forwarded or subscribed.
fn subject(call_sid: &str) -> Option<String> {
    (!call_sid.is_empty()
        && call_sid.len() <= 64
        && call_sid.bytes().all(|b| b.is_ascii_alphanumeric()))
    .then(|| format!("{CALL_SUBJECT_PREFIX}{call_sid}"))
}

/// What became of a forwarded callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// The replica running the call took it.
    Delivered,
    /// No replica runs a call with that CallSid.
    NoResponder,
    /// NATS is down or did not answer in time (logged).
    Failed,
}

impl Forwarded {
    fn label(self) -> &'static str {
        match self {
            Forwarded::Delivered => "delivered",
            Forwarded::NoResponder => "no_responder",
            Forwarded::Failed => "failed",
        }
    }
}

#[derive(Clone)]
pub struct Routes {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    metrics: ClusterMetrics,
    /// Each running call's subscription task, with its mailbox (a newer call with the same
    /// SID replaces it; the older one's end leaves it alone).
    subs: Mutex<HashMap<String, (Arc<Mailbox>, tokio::task::AbortHandle)>>,
}

impl Routes {
    pub fn new(client: async_nats::Client, metrics: ClusterMetrics) -> Routes {
        Routes {
            inner: Arc::new(Inner {
                client,
                metrics,
                subs: Mutex::default(),
            }),
        }
    }

    /// What the registry of running calls tells of each call's start and end.
    pub fn observer(&self) -> Arc<dyn Observer> {
        self.inner.clone()
    }

    /// Stops listening for every call (the replica leaves the cluster).
    pub fn close(&self) {
        if let Ok(mut subs) = self.inner.subs.lock() {
            for (_, (_, task)) in subs.drain() {
                task.abort();
            }
        }
    }

    /// Sends `cmd` to whichever replica runs `call_sid`.
    pub async fn forward(&self, call_sid: &str, cmd: CallCommand) -> Forwarded {
        let result = self.try_forward(call_sid, cmd).await;
        self.inner
            .metrics
            .forwarded
            .with_label_values(&[result.label()])
            .inc();
        result
    }

    async fn try_forward(&self, call_sid: &str, cmd: CallCommand) -> Forwarded {
        let Some(subject) = subject(call_sid) else {
            return Forwarded::NoResponder;
        };
        if self.inner.client.connection_state() != async_nats::connection::State::Connected {
            warn!(
                call_sid,
                "cluster: NATS unreachable; a callback for a call on another replica is dropped"
            );
            return Forwarded::Failed;
        }
        let request = self
            .inner
            .client
            .request(subject, wire(cmd).as_bytes().to_vec().into());
        match tokio::time::timeout(OP_TIMEOUT, request).await {
            Ok(Ok(answer)) if answer.payload.as_ref() == TAKEN => Forwarded::Delivered,
            Ok(Ok(answer)) => {
                warn!(
                    call_sid,
                    answer = %String::from_utf8_lossy(&answer.payload),
                    "cluster: unexpected answer to a forwarded callback"
                );
                Forwarded::Failed
            }
            Ok(Err(e)) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => {
                Forwarded::NoResponder
            }
            Ok(Err(e)) => {
                warn!(call_sid, error = %e, "cluster: forwarding a callback failed");
                Forwarded::Failed
            }
            Err(_) => {
                warn!(call_sid, "cluster: forwarding a callback timed out");
                Forwarded::Failed
            }
        }
    }
}

impl Observer for Inner {
    fn started(&self, call_sid: &str, mailbox: &Arc<Mailbox>) {
        let Some(subject) = subject(call_sid) else {
            return;
        };
        let (client, target, sid) = (self.client.clone(), mailbox.clone(), call_sid.to_owned());
        let task = tokio::spawn(async move {
            let mut sub = match client.subscribe(subject).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(call_sid = sid, error = %e, "cluster: cannot listen for this call's callbacks");
                    return;
                }
            };
            while let Some(msg) = sub.next().await {
                let Some(cmd) = parse(&msg.payload) else {
                    warn!(call_sid = sid, "cluster: unknown forwarded command ignored");
                    continue;
                };
                info!(
                    call_sid = sid,
                    command = wire(cmd),
                    "cluster: callback from another replica"
                );
                target.post(cmd);
                if let Some(reply) = msg.reply {
                    if let Err(e) = client.publish(reply, TAKEN.into()).await {
                        debug!(call_sid = sid, error = %e, "cluster: answer to a forwarded callback not sent");
                    }
                }
            }
        });
        if let Ok(mut subs) = self.subs.lock() {
            if let Some((_, old)) =
                subs.insert(call_sid.to_owned(), (mailbox.clone(), task.abort_handle()))
            {
                old.abort();
            }
        }
    }

    fn ended(&self, call_sid: &str, mailbox: &Arc<Mailbox>) {
        let Ok(mut subs) = self.subs.lock() else {
            return;
        };
        if subs
            .get(call_sid)
            .is_some_and(|(b, _)| Arc::ptr_eq(b, mailbox))
        {
            if let Some((_, task)) = subs.remove(call_sid) {
                // Dropping the subscription unsubscribes.
                task.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_call_sids_become_subjects() {
        assert_eq!(
            subject("CA0123abc").as_deref(),
            Some("callbridge.call.CA0123abc")
        );
        for bad in ["", "CA.1", "CA*", ">", "CA 1"] {
            assert_eq!(subject(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_command_has_a_wire_name_that_parses_back() {
        let cmd = CallCommand::MachineAnswered;
        assert_eq!(parse(wire(cmd).as_bytes()), Some(cmd));
        assert_eq!(parse(b"reboot"), None);
    }
}
