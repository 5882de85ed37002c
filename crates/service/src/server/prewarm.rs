//! Calls warmed up at the TwiML webhook, waiting for their media socket.
//!
//! Twilio takes a while between fetching our TwiML and opening the media stream (hundreds of
//! milliseconds). A warm call uses that time: the webhook creates the call's task with no
//! Twilio socket yet ([`super::media::spawn_warm`]); it dials the model, runs the setup lookup
//! with what the webhook saw (From, To, CallSid, profile), configures the session and asks for
//! the greeting. The greeting's audio is held by the call until `start` names the stream
//! (`call/held.rs`), then goes out at once.
//!
//! Which media socket is the warm call's: Twilio's `<Stream url>` may not carry a query string,
//! so per-call data travels as `<Parameter>`s and arrives in `start.customParameters`; the
//! socket learns the CallSid only at `start` (`../shared/protocol.md`, "Twilio: TwiML" and
//! "Media Streams WebSocket"). So a media socket reads up to `start` (Twilio sends `connected`
//! and `start` together, right after the upgrade), and claims the warm call whose CallSid it
//! names *and* whose one-time token (a `<Parameter name="prewarm">` with 128 random bits,
//! rendered only into the TwiML we answered Twilio with) it carries. The CallSid alone is no
//! secret (it is in callbacks, logs, reports); with `twilio_auth_token` set the upgrade itself
//! is signed too, and the token keeps a warm call its own caller's even where it is not. A
//! claim removes the warm call from the table: a second socket with the same CallSid finds
//! nothing and runs as a call of its own, it cannot take over the first.
//!
//! A media socket that finds no warm call (another replica warmed it, the token did not match,
//! it had expired) runs as before: it dials the model itself (`not_here`). A warm call nobody
//! claims within `prewarm_ttl_s` closes its session and writes no call report (it never
//! reached a caller); it is counted (`expired`), as is one that ended before it was claimed
//! (`closed`: the model refused, or the drain is over).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tokio::time::Sleep;

use super::media::{Handoff, TwilioItem};
use super::AppState;
use crate::twilio::{Inbound, MediaFormat, StartMeta};

/// The `<Parameter>` that carries a warm call's one-time token to `start.customParameters`.
pub const PARAM_TOKEN: &str = "prewarm";
/// `callbridge_prewarm_total{result}`: `used` (a media socket took a warm call over),
/// `expired` (none did within the TTL), `closed` (the warm call ended first), `not_here` (a
/// media socket found no warm call and dialled the model itself).
pub const RESULTS: [&str; 4] = ["used", "expired", "closed", "not_here"];
/// Messages a media socket reads looking for `start` before it gives up and runs as a call
/// of its own: Twilio sends `connected` then `start`.
const READ_FOR_START: usize = 4;
/// How long a media socket waits for `start` before it runs as a call of its own.
const WAIT_FOR_START: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest CallSid taken (Twilio's are 34 characters).
const MAX_CALL_SID: usize = 64;

/// The warm calls of this process by CallSid, until claimed or given up.
#[derive(Default)]
pub struct WarmCalls {
    by_sid: Mutex<HashMap<String, Waiting>>,
}

struct Waiting {
    token: String,
    claim: oneshot::Sender<Handoff>,
}

impl WarmCalls {
    /// Whether no call waits (a media socket then runs at once, without reading to `start`).
    pub fn is_empty(&self) -> bool {
        self.by_sid.lock().map_or(true, |m| m.is_empty())
    }

    /// A warm call for `call_sid`; `None` if one waits already (Twilio asked twice).
    fn add(&self, call_sid: &str, token: &str) -> Option<oneshot::Receiver<Handoff>> {
        let mut m = self.by_sid.lock().ok()?;
        if m.contains_key(call_sid) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        m.insert(
            call_sid.to_owned(),
            Waiting {
                token: token.to_owned(),
                claim: tx,
            },
        );
        Some(rx)
    }

    /// The warm call `start` names, with its token: taken out of the table (no second claim).
    fn claim(&self, call_sid: &str, token: &str) -> Option<oneshot::Sender<Handoff>> {
        let mut m = self.by_sid.lock().ok()?;
        if m.get(call_sid)?.token != token {
            return None;
        }
        m.remove(call_sid).map(|w| w.claim)
    }

    /// The warm call gives up. False if a media socket claimed it meanwhile: its handoff is
    /// on the way and must be taken.
    fn withdraw(&self, call_sid: &str, token: &str) -> bool {
        let Ok(mut m) = self.by_sid.lock() else {
            return true;
        };
        match m.get(call_sid) {
            Some(w) if w.token == token => {
                m.remove(call_sid);
                true
            }
            _ => false,
        }
    }
}

/// A warm call's side of the table: its claim, and its time to live.
pub struct Warm {
    pub call_sid: String,
    token: String,
    /// What the webhook saw, as `start` will carry it (the setup lookup runs with it).
    pub start: StartMeta,
    claim: oneshot::Receiver<Handoff>,
    ttl: Pin<Box<Sleep>>,
    calls: Arc<WarmCalls>,
}

impl Warm {
    /// Ready with the media socket that claimed the call, or `None` once the TTL passed and
    /// the call was taken out of the table.
    pub fn poll_claim(&mut self, cx: &mut Context<'_>) -> Poll<Option<Handoff>> {
        if let Poll::Ready(claimed) = Pin::new(&mut self.claim).poll(cx) {
            return Poll::Ready(claimed.ok());
        }
        // Past the TTL with a claim in flight, the handoff is awaited: the socket is Twilio's
        // live stream, never dropped.
        if self.ttl.as_mut().poll(cx).is_ready() && self.withdraw() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// Gives up (the call ended, the drain is over); false if a media socket claimed it
    /// meanwhile (then [`Warm::handoff`] brings its socket).
    pub fn withdraw(&self) -> bool {
        self.calls.withdraw(&self.call_sid, &self.token)
    }

    /// The socket of a claim that was in flight when the call gave up.
    pub async fn handoff(self) -> Option<Handoff> {
        tokio::time::timeout(WAIT_FOR_START, self.claim)
            .await
            .ok()?
            .ok()
    }
}

/// At the webhook: a warm call for this CallSid, if prewarm is on and none waits for it yet.
/// Its token goes into the TwiML as `<Parameter name="prewarm">`.
pub fn prepare(s: &AppState, fields: &HashMap<String, String>) -> Option<Warm> {
    if !s.cfg.prewarm.on {
        return None;
    }
    let call_sid = fields.get("CallSid").filter(|sid| {
        !sid.is_empty()
            && sid.len() <= MAX_CALL_SID
            && sid.bytes().all(|b| b.is_ascii_alphanumeric())
    })?;
    let token = token()?;
    let claim = s.warm.add(call_sid, &token)?;
    // Exactly the parameters the TwiML carries (the token aside): `start` will name them.
    let custom_parameters = ["From", "To", "CallSid", "profile"]
        .iter()
        .filter_map(|k| fields.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    Some(Warm {
        call_sid: call_sid.clone(),
        start: StartMeta {
            account_sid: fields.get("AccountSid").cloned(),
            call_sid: Some(call_sid.clone()),
            tracks: vec!["inbound".into()],
            custom_parameters,
            media_format: MediaFormat {
                encoding: "audio/x-mulaw".into(),
                sample_rate: 8000,
                channels: 1,
            },
        },
        token,
        claim,
        ttl: Box::pin(tokio::time::sleep(s.cfg.prewarm.ttl)),
        calls: s.warm.clone(),
    })
}

impl Warm {
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// 128 random bits, hex.
fn token() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A media socket's first messages, up to and including `start` (at most a few, for at most
/// [`WAIT_FOR_START`]): only `start` says which call the socket is.
pub async fn read_to_start(socket: &mut axum::extract::ws::WebSocket) -> Vec<TwilioItem> {
    use futures_util::StreamExt;
    let mut first = Vec::new();
    let _ = tokio::time::timeout(WAIT_FOR_START, async {
        while first.len() < READ_FOR_START {
            let item = socket.next().await;
            let done = !matches!(&item, Some(Ok(axum::extract::ws::Message::Text(_))))
                || start_of(&item).is_some();
            first.push(item);
            if done {
                return;
            }
        }
    })
    .await;
    first
}

/// The warm call these first messages' `start` names and holds the token of, taken out of
/// the table; `None`: none here.
pub fn claim(s: &AppState, first: &[TwilioItem]) -> Option<oneshot::Sender<Handoff>> {
    let start = first.iter().find_map(start_of)?;
    let sid = start.call_sid.as_deref()?;
    let token = start.custom_parameters.get(PARAM_TOKEN)?;
    s.warm.claim(sid, token)
}

fn start_of(item: &TwilioItem) -> Option<StartMeta> {
    match item {
        Some(Ok(axum::extract::ws::Message::Text(t))) => match Inbound::parse(t.as_str()) {
            Ok(Inbound::Start { start, .. }) => Some(start),
            _ => None,
        },
        _ => None,
    }
}

/// Counts one of [`RESULTS`].
pub fn count(s: &AppState, result: &str) {
    s.metrics.prewarm_total.with_label_values(&[result]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warm_call_is_claimed_once_and_only_with_its_token() {
        let calls = WarmCalls::default();
        let _rx = calls.add("CA1", "t1").expect("added");
        assert!(
            calls.add("CA1", "t2").is_none(),
            "one warm call per CallSid"
        );
        assert!(calls.claim("CA1", "wrong").is_none(), "a wrong token");
        assert!(calls.claim("CA2", "t1").is_none(), "another CallSid");
        assert!(calls.claim("CA1", "t1").is_some());
        assert!(calls.claim("CA1", "t1").is_none(), "claimed already");
        assert!(!calls.withdraw("CA1", "t1"), "the claim is in flight");
        assert!(calls.is_empty());
    }

    #[test]
    fn a_withdrawn_warm_call_cannot_be_claimed() {
        let calls = WarmCalls::default();
        let _rx = calls.add("CA1", "t1").expect("added");
        assert!(calls.withdraw("CA1", "t1"));
        assert!(calls.claim("CA1", "t1").is_none());
    }
}
