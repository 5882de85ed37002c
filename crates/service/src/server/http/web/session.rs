//! Page sessions, so the token need not sit in a URL (browser history, proxy logs): the
//! page's login form posts its token once to `/softphone/login` or `/console/login`, which
//! answers with an `HttpOnly`, `SameSite=Strict` cookie scoped to that page's path. The cookie
//! holds `EXPIRY.MAC` — base64url(HMAC-SHA256) over the expiry, keyed with a key derived from
//! the page's token and the page's name — never the token: it opens only its own page, expires
//! after [`TTL_SECS`], and every session ends when the token is changed.

use http::HeaderMap;
use ring::hmac;

use super::ticket::{derive_key, sign_expiry, verify_expiry};
use crate::config::Secret;

/// How long a login lasts.
pub const TTL_SECS: u64 = 12 * 3600;

/// The cookie of `page` (`softphone` or `console`).
pub fn cookie_name(page: &str) -> String {
    format!("callbridge_{page}")
}

fn key(token: &Secret, page: &str) -> hmac::Key {
    derive_key(
        token,
        format!("callbridge page session v1 {page}").as_bytes(),
    )
}

/// A session for `page` valid until `now + TTL_SECS`.
pub fn issue(token: &Secret, page: &str, now: u64) -> String {
    sign_expiry(&key(token, page), now + TTL_SECS)
}

/// Whether `value` is a session for `page` issued with `token`, valid at `now`.
pub fn verify(token: &Secret, page: &str, value: &str, now: u64) -> bool {
    verify_expiry(&key(token, page), value, now, TTL_SECS)
}

/// The value of `page`'s cookie in a request, if it sent one.
pub fn presented(headers: &HeaderMap, page: &str) -> Option<String> {
    let name = cookie_name(page);
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value for a new session of `page`. `secure` when the bridge is served
/// over https (its `public_url`), so the cookie never travels in clear text there.
pub fn set_cookie(page: &str, value: &str, secure: bool) -> String {
    format!(
        "{}={value}; Path=/{page}; Max-Age={TTL_SECS}; HttpOnly; SameSite=Strict{}",
        cookie_name(page),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_opens_its_own_page_until_it_expires() {
        let t = Secret("console-token-0123456".into());
        let s = issue(&t, "console", 1_000_000);
        assert!(verify(&t, "console", &s, 1_000_000 + TTL_SECS));
        assert!(
            !verify(&t, "console", &s, 1_000_000 + TTL_SECS + 1),
            "expired"
        );
        assert!(!verify(&t, "softphone", &s, 1_000_000), "another page");
        let other = Secret("a-changed-token-0123".into());
        assert!(!verify(&other, "console", &s, 1_000_000), "token changed");
        let (exp, _) = s.split_once('.').expect("EXP.MAC");
        assert!(!verify(&t, "console", &format!("{exp}.AAAA"), 1_000_000));
        assert!(!verify(&t, "console", "garbage", 1_000_000));
        assert!(
            !s.contains("console-token"),
            "the token is not in the cookie"
        );
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; callbridge_console=123.abc".parse().expect("header"),
        );
        assert_eq!(presented(&h, "console").as_deref(), Some("123.abc"));
        assert_eq!(presented(&h, "softphone"), None);
    }
}
