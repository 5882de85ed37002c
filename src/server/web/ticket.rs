//! Short-lived tickets that let the softphone open `/media` without a Twilio signature.
//!
//! A ticket is `EXPIRY.MAC`: the Unix second it expires and base64url(HMAC-SHA256) over it,
//! keyed with a key derived from `softphone_token` (so the token itself never travels in a
//! WebSocket URL, where proxies log query strings). It only opens the upgrade; the call then
//! runs like any other and is not bound by the expiry.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use ring::hmac;

use crate::config::Secret;

/// The `/media` query parameter that carries a ticket.
pub const QUERY_PARAM: &str = "softphone_ticket";
/// How long a ticket opens `/media` for (the page fetches one per call, just before dialling).
pub const TTL_SECS: u64 = 60;

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

/// `EXP.MAC`: the Unix second `exp` and base64url(HMAC-SHA256) over it.
pub(super) fn sign_expiry(key: &hmac::Key, exp: u64) -> String {
    let exp = exp.to_string();
    let mac = hmac::sign(key, exp.as_bytes());
    format!("{exp}.{}", B64URL.encode(mac.as_ref()))
}

/// Whether `value` is `EXP.MAC` under `key`, not expired at `now`, and not further ahead than
/// `ttl` (a forged far-future expiry fails the MAC anyway; this also bounds clock skew between
/// pods sharing the token). The MAC is checked in constant time by `ring`.
pub(super) fn verify_expiry(key: &hmac::Key, value: &str, now: u64, ttl: u64) -> bool {
    let Some((exp, mac)) = value.split_once('.') else {
        return false;
    };
    let Ok(exp_secs) = exp.parse::<u64>() else {
        return false;
    };
    if exp_secs < now || exp_secs > now + ttl + 30 {
        return false;
    }
    let Ok(mac) = B64URL.decode(mac) else {
        return false;
    };
    hmac::verify(key, exp.as_bytes(), &mac).is_ok()
}

fn key(token: &Secret) -> hmac::Key {
    derive_key(token, b"callbridge softphone media ticket v1")
}

/// A ticket valid until `now + TTL_SECS`.
pub fn issue(token: &Secret, now: u64) -> String {
    sign_expiry(&key(token), now + TTL_SECS)
}

/// Whether `ticket` was issued with `token` and is still valid at `now`.
pub fn verify(token: &Secret, ticket: &str, now: u64) -> bool {
    verify_expiry(&key(token), ticket, now, TTL_SECS)
}

/// Whether a `/media` upgrade request carries a valid ticket for this server.
pub fn media_request_ok(token: Option<&Secret>, uri: &http::Uri) -> bool {
    let (Some(token), Some(q)) = (token, uri.query()) else {
        return false;
    };
    uri.path() == "/media"
        && super::query_param(q, QUERY_PARAM).is_some_and(|t| verify(token, &t, now_unix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str) -> Secret {
        Secret(s.into())
    }

    #[test]
    fn a_ticket_opens_media_until_it_expires() {
        let t = tok("softphone-token-0123");
        let ticket = issue(&t, 1_000_000);
        assert!(verify(&t, &ticket, 1_000_000));
        assert!(verify(&t, &ticket, 1_000_000 + TTL_SECS));
        assert!(!verify(&t, &ticket, 1_000_000 + TTL_SECS + 1), "expired");
    }

    #[test]
    fn forged_or_foreign_tickets_are_refused() {
        let t = tok("softphone-token-0123");
        let ticket = issue(&t, 1_000_000);
        assert!(!verify(&tok("another-token-45678"), &ticket, 1_000_000));
        let (_, mac) = ticket.split_once('.').unwrap();
        let later = format!("{}.{mac}", 1_000_000 + TTL_SECS + 10);
        assert!(!verify(&t, &later, 1_000_000), "expiry is under the MAC");
        for bad in ["", ".", "x.y", "123", "1000060.", "1000060.!!!"] {
            assert!(!verify(&t, bad, 1_000_000), "{bad:?}");
        }
        // Far-future expiries are refused before any MAC check.
        assert!(!verify(&t, &issue(&t, 2_000_000), 1_000_000));
    }

    #[test]
    fn only_media_requests_with_the_parameter_pass() {
        let t = tok("softphone-token-0123");
        let ticket = issue(&t, now_unix());
        let uri = |s: String| s.parse::<http::Uri>().unwrap();
        assert!(media_request_ok(
            Some(&t),
            &uri(format!("/media?{QUERY_PARAM}={ticket}"))
        ));
        assert!(!media_request_ok(
            Some(&t),
            &uri(format!("/twiml?{QUERY_PARAM}={ticket}"))
        ));
        assert!(!media_request_ok(Some(&t), &uri("/media".into())));
        assert!(!media_request_ok(
            None,
            &uri(format!("/media?{QUERY_PARAM}={ticket}"))
        ));
    }
}
