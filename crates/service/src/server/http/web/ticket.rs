//! Short-lived tickets that let the softphone open `/media` without a Twilio signature, each
//! for one call whose CallSid the server chose.
//!
//! A ticket is `EXPIRY.CALLSID.MAC`: the Unix second it expires, a fresh `CA` + 32 hex digits
//! from the system's CSPRNG, and base64url(HMAC-SHA256) over both, keyed with a key derived
//! from `softphone_token` (so the token itself never travels in a WebSocket URL, where proxies
//! log query strings). The random CallSid is also what makes two tickets of the same second
//! differ, so no separate nonce is needed.
//!
//! Where a Twilio signature is required, a ticket opens the `/media` upgrade once
//! ([`UsedTickets`]) for its call only: the call's `start` must name the ticket's CallSid
//! ([`crate::call::Call::require_call_sid`] decides), and it then runs like any other, not
//! bound by the expiry. The page says that CallSid in its `start` and follows
//! `/softphone/events?ticket=…`, which shows only that call's events: the softphone's token
//! opens no other call's transcript (those are the console's).

use std::collections::BTreeSet;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use ring::hmac;

use crate::config::Secret;

/// The `/media` query parameter that carries a ticket.
pub const QUERY_PARAM: &str = "softphone_ticket";
/// How long a ticket opens `/media` for (the page fetches one per call, just before dialling).
pub const TTL_SECS: u64 = 60;
/// How far ahead of this pod's clock an expiry may be: another pod sharing the token may run
/// a little ahead (a forged far-future expiry fails the MAC anyway).
const SKEW_SECS: u64 = 30;
/// Used tickets remembered at most. Each is kept until it expires (at most `TTL_SECS +
/// SKEW_SECS`), so this is 10 000 softphone calls opened within about a minute and a half —
/// far beyond any real use, and about a megabyte at worst.
pub const MAX_USED: usize = 10_000;

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A key derived from a page token for one `purpose` (so a value made for one use opens no
/// other, and the token itself is never the key of anything that travels).
pub(super) fn derive_key(token: &Secret, purpose: &[u8]) -> hmac::Key {
    let derive = hmac::Key::new(hmac::HMAC_SHA256, token.0.as_bytes());
    let k = hmac::sign(&derive, purpose);
    hmac::Key::new(hmac::HMAC_SHA256, k.as_ref())
}

/// `PAYLOAD.MAC`: base64url(HMAC-SHA256) over `payload` appended.
fn sign(key: &hmac::Key, payload: &str) -> String {
    let mac = hmac::sign(key, payload.as_bytes());
    format!("{payload}.{}", B64URL.encode(mac.as_ref()))
}

/// The payload of `value` if it is `PAYLOAD.MAC` under `key` (the MAC is checked in constant
/// time by `ring`).
fn signed<'a>(key: &hmac::Key, value: &'a str) -> Option<&'a str> {
    let (payload, mac) = value.rsplit_once('.')?;
    let mac = B64URL.decode(mac).ok()?;
    hmac::verify(key, payload.as_bytes(), &mac).ok()?;
    Some(payload)
}

/// Not expired at `now`, and not further ahead than `ttl` (plus the pods' clock skew).
fn fresh(exp: u64, now: u64, ttl: u64) -> bool {
    exp >= now && exp <= now + ttl + SKEW_SECS
}

/// `EXP.MAC`: the Unix second `exp` and base64url(HMAC-SHA256) over it.
pub(super) fn sign_expiry(key: &hmac::Key, exp: u64) -> String {
    sign(key, &exp.to_string())
}

/// Whether `value` is `EXP.MAC` under `key`, not expired at `now`, and not further ahead than
/// `ttl`.
pub(super) fn verify_expiry(key: &hmac::Key, value: &str, now: u64, ttl: u64) -> bool {
    signed(key, value)
        .and_then(|exp| exp.parse::<u64>().ok())
        .is_some_and(|exp| fresh(exp, now, ttl))
}

fn key(token: &Secret) -> hmac::Key {
    // v2: v1 tickets (`EXP.MAC`, no call) must not read as tickets of a call.
    derive_key(token, b"callbridge softphone media ticket v2")
}

/// A ticket this server issued, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The Unix second after which it opens `/media` no more.
    pub expires: u64,
    /// The one call it is for: the page's `start` names it, and its events are the page's.
    pub call_sid: String,
}

/// A new ticket and the call it is for.
#[derive(Debug, Clone)]
pub struct Issued {
    pub ticket: String,
    pub call_sid: String,
}

/// A fresh CallSid (`CA` + 32 hex digits, as Twilio's) and its ticket, valid until `now +
/// TTL_SECS`. `None` if the system's random generator fails: no ticket rather than a
/// guessable one.
pub fn issue(token: &Secret, now: u64) -> Option<Issued> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    let call_sid = bytes
        .iter()
        .fold(String::from("CA"), |s, b| s + &format!("{b:02x}"));
    Some(issue_for(token, now, call_sid))
}

fn issue_for(token: &Secret, now: u64, call_sid: String) -> Issued {
    let ticket = sign(&key(token), &format!("{}.{call_sid}", now + TTL_SECS));
    Issued { ticket, call_sid }
}

/// The ticket in `value` if `token` issued it (its MAC), whatever its expiry.
///
/// The events feed reads tickets this way: the page's `EventSource` reconnects by itself,
/// maybe minutes into the call, with the same URL; and the feed needs the softphone's token
/// (or login) besides, so the ticket only says *which* call, never *whether*.
pub fn read(token: &Secret, value: &str) -> Option<Ticket> {
    let payload = signed(&key(token), value)?;
    let (exp, call_sid) = payload.split_once('.')?;
    Some(Ticket {
        expires: exp.parse().ok()?,
        call_sid: call_sid.to_owned(),
    })
}

/// The ticket in `value` if `token` issued it and it is still valid at `now`.
pub fn verify(token: &Secret, value: &str, now: u64) -> Option<Ticket> {
    read(token, value).filter(|t| fresh(t.expires, now, TTL_SECS))
}

/// What a ticket did at the `/media` door.
#[derive(Debug, PartialEq, Eq)]
pub enum MediaTicket {
    /// None presented (or no softphone configured, or not `/media`).
    Absent,
    /// Forged, foreign or expired: the request needs Twilio's signature like any other.
    Invalid,
    /// A valid ticket, now used: the upgrade goes through.
    Opens(Ticket),
    /// A valid ticket that already opened `/media` once.
    AlreadyUsed(Ticket),
    /// A valid ticket, but [`MAX_USED`] unexpired tickets are already remembered.
    TooMany,
}

/// What the ticket on a `/media` upgrade request (if any) does, using it up if it opens.
pub fn admit_media(
    token: Option<&Secret>,
    used: &UsedTickets,
    uri: &http::Uri,
    now: u64,
) -> MediaTicket {
    let (Some(token), Some(q)) = (token, uri.query()) else {
        return MediaTicket::Absent;
    };
    if uri.path() != "/media" {
        return MediaTicket::Absent;
    }
    let Some(value) = super::query_param(q, QUERY_PARAM) else {
        return MediaTicket::Absent;
    };
    let Some(t) = verify(token, &value, now) else {
        return MediaTicket::Invalid;
    };
    match used.use_once(&t, now) {
        Use::First => MediaTicket::Opens(t),
        Use::Again => MediaTicket::AlreadyUsed(t),
        Use::Full => MediaTicket::TooMany,
    }
}

/// Whether a ticket was used before.
#[derive(Debug, PartialEq, Eq)]
pub enum Use {
    First,
    Again,
    /// Not remembered, so not allowed: [`MAX_USED`] unexpired tickets are remembered already.
    Full,
}

/// The tickets that opened `/media`, each until it expires (after that it opens nothing
/// anyway), so that each opens it once.
///
/// Bounded: when full of unexpired tickets it refuses new ones rather than forget one that
/// could still be replayed (a ticket read from a proxy's log, say). Only a holder of the
/// softphone's token can fill it, and they lose at most a minute and a half of softphone calls.
/// In memory, per pod: another pod sharing the token has its own, so a ticket could open one
/// call on each pod behind a load balancer (still within its minute).
pub struct UsedTickets {
    cap: usize,
    /// Ordered by expiry first, so the expired ones are at the front.
    used: Mutex<BTreeSet<(u64, String)>>,
}

impl Default for UsedTickets {
    fn default() -> Self {
        UsedTickets::with_capacity(MAX_USED)
    }
}

impl UsedTickets {
    pub fn with_capacity(cap: usize) -> Self {
        UsedTickets {
            cap,
            used: Mutex::new(BTreeSet::new()),
        }
    }

    /// Records `t` as used at `now`, saying whether it was used before.
    pub fn use_once(&self, t: &Ticket, now: u64) -> Use {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while used.first().is_some_and(|(exp, _)| *exp < now) {
            used.pop_first();
        }
        let entry = (t.expires, t.call_sid.clone());
        if used.contains(&entry) {
            Use::Again
        } else if used.len() >= self.cap {
            Use::Full
        } else {
            used.insert(entry);
            Use::First
        }
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str) -> Secret {
        Secret(s.into())
    }

    fn issued(t: &Secret, now: u64) -> Issued {
        issue(t, now).expect("the system RNG works here")
    }

    #[test]
    fn a_ticket_opens_its_call_until_it_expires() {
        let t = tok("softphone-token-0123");
        let i = issued(&t, 1_000_000);
        assert!(
            i.call_sid.starts_with("CA") && i.call_sid.len() == 34,
            "{i:?}"
        );
        assert!(i.call_sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        let want = Ticket {
            expires: 1_000_000 + TTL_SECS,
            call_sid: i.call_sid.clone(),
        };
        assert_eq!(verify(&t, &i.ticket, 1_000_000), Some(want.clone()));
        assert_eq!(
            verify(&t, &i.ticket, 1_000_000 + TTL_SECS),
            Some(want.clone())
        );
        assert_eq!(
            verify(&t, &i.ticket, 1_000_000 + TTL_SECS + 1),
            None,
            "expired"
        );
        assert_eq!(
            read(&t, &i.ticket),
            Some(want),
            "the feed reads it after expiry"
        );
    }

    #[test]
    fn tickets_of_the_same_second_differ() {
        let t = tok("softphone-token-0123");
        let (a, b) = (issued(&t, 1_000_000), issued(&t, 1_000_000));
        assert_ne!(a.ticket, b.ticket);
        assert_ne!(a.call_sid, b.call_sid);
    }

    #[test]
    fn forged_altered_or_foreign_tickets_are_refused() {
        let t = tok("softphone-token-0123");
        let i = issued(&t, 1_000_000);
        assert_eq!(read(&tok("another-token-45678"), &i.ticket), None);
        let mut parts = i.ticket.splitn(3, '.');
        let (exp, sid, mac) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert_eq!(exp.parse::<u64>().ok(), Some(1_000_000 + TTL_SECS));
        let later = format!("{}.{sid}.{mac}", 1_000_000 + TTL_SECS + 10);
        assert_eq!(read(&t, &later), None, "the expiry is under the MAC");
        let other = format!("{exp}.CAphonecall00000000000000000000001.{mac}");
        assert_eq!(read(&t, &other), None, "the call is under the MAC");
        for bad in ["", ".", "x.y", "123", "1000060.", "1000060.!!!", "1.CA.x"] {
            assert_eq!(read(&t, bad), None, "{bad:?}");
        }
        // A far-future expiry (only a holder of the token could sign one) is refused at /media.
        assert_eq!(verify(&t, &issued(&t, 2_000_000).ticket, 1_000_000), None);
        // A ticket of this call is no page session, and the other way round.
        let session = super::super::session::issue(&t, "softphone", 1_000_000);
        assert_eq!(read(&t, &session), None);
        assert!(!super::super::session::verify(
            &t,
            "softphone",
            &i.ticket,
            1_000_000
        ));
    }

    #[test]
    fn a_ticket_is_used_once_and_forgotten_after_it_expires() {
        let used = UsedTickets::default();
        let a = Ticket {
            expires: 1_060,
            call_sid: "CAa".into(),
        };
        let b = Ticket {
            expires: 1_070,
            call_sid: "CAb".into(),
        };
        assert_eq!(used.use_once(&a, 1_000), Use::First);
        assert_eq!(used.use_once(&a, 1_001), Use::Again);
        assert_eq!(used.use_once(&b, 1_010), Use::First);
        assert_eq!(
            used.use_once(&a, 1_060),
            Use::Again,
            "valid up to its expiry"
        );
        assert_eq!(used.use_once(&b, 1_061), Use::Again);
        assert_eq!(used.len(), 1, "a expired and is forgotten");
        assert_eq!(used.use_once(&b, 1_071), Use::First);
        assert_eq!(used.len(), 1);
    }

    #[test]
    fn a_full_set_refuses_new_tickets_rather_than_forget_live_ones() {
        let used = UsedTickets::with_capacity(2);
        let t = |n: u64| Ticket {
            expires: 1_060 + n,
            call_sid: format!("CA{n}"),
        };
        assert_eq!(used.use_once(&t(0), 1_000), Use::First);
        assert_eq!(used.use_once(&t(1), 1_000), Use::First);
        assert_eq!(used.use_once(&t(2), 1_000), Use::Full);
        assert_eq!(used.use_once(&t(0), 1_000), Use::Again, "still remembered");
        // Once the oldest expired there is room again.
        assert_eq!(used.use_once(&t(2), 1_061), Use::First);
        assert_eq!(used.len(), 2);
    }

    #[test]
    fn only_media_requests_with_a_fresh_ticket_open_and_only_once() {
        let t = tok("softphone-token-0123");
        let now = now_unix();
        let i = issued(&t, now);
        let used = UsedTickets::default();
        let uri = |s: String| s.parse::<http::Uri>().unwrap();
        let media = uri(format!("/media?{QUERY_PARAM}={}", i.ticket));
        let admit = |tok: Option<&Secret>, u: &http::Uri| admit_media(tok, &used, u, now);
        let twiml = uri(format!("/twiml?{QUERY_PARAM}={}", i.ticket));
        assert_eq!(admit(Some(&t), &twiml), MediaTicket::Absent);
        assert_eq!(admit(Some(&t), &uri("/media".into())), MediaTicket::Absent);
        assert_eq!(admit(None, &media), MediaTicket::Absent);
        let forged = uri(format!("/media?{QUERY_PARAM}=9999999999.CA1.AAAA"));
        assert_eq!(admit(Some(&t), &forged), MediaTicket::Invalid);
        let ticket = Ticket {
            expires: now + TTL_SECS,
            call_sid: i.call_sid.clone(),
        };
        assert_eq!(admit(Some(&t), &media), MediaTicket::Opens(ticket.clone()));
        assert_eq!(admit(Some(&t), &media), MediaTicket::AlreadyUsed(ticket));
        assert_eq!(
            admit_media(Some(&t), &used, &media, now + TTL_SECS + 1),
            MediaTicket::Invalid,
            "expired"
        );
    }
}
