//! Requests from the bridge to an integrator's own endpoints (tools, setup lookups, call
//! reports): how they are signed, so the receiver can tell they came from this bridge and were
//! not replayed long after.
//!
//! `X-Callbridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` — the
//! timestamp is inside the MAC, so a receiver that also checks it is recent rejects replays. The
//! docs/call-centers.md ("Verifying the signature") shows the check in Python and Node.

use ring::hmac;

/// The header every signed request carries.
pub const SIGNATURE_HEADER: &str = "X-Callbridge-Signature";

/// The header value for `body` sent at `unix_secs`.
pub fn signature(secret: &[u8], unix_secs: u64, body: &[u8]) -> String {
    let tag = mac(secret, unix_secs, body);
    let mut out = format!("t={unix_secs},v1=");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Whether `header` is a valid signature of `body`, made within `tolerance_s` of `now_unix`.
/// Compares in constant time. (The bridge signs; this is for its own tests and simulators and
/// for integrators who embed the crate.)
pub fn verify(secret: &[u8], header: &str, body: &[u8], now_unix: u64, tolerance_s: u64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = decode_hex(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if t.abs_diff(now_unix) > tolerance_s {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, &signed_bytes(t, body), &v1).is_ok()
}

fn mac(secret: &[u8], unix_secs: u64, body: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::sign(&key, &signed_bytes(unix_secs, body))
}

fn signed_bytes(unix_secs: u64, body: &[u8]) -> Vec<u8> {
    let mut msg = format!("{unix_secs}.").into_bytes();
    msg.extend_from_slice(body);
    msg
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Seconds since the Unix epoch, for signing (the shell's clock; never inside a call).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"s3cret",b"1700000000.{\"a\":1}",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(b"s3cret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }

    #[test]
    fn verify_accepts_fresh_and_refuses_tampered_stale_or_malformed() {
        let body = br#"{"tool":"lookup_order"}"#;
        let h = signature(b"k", 1000, body);
        assert!(verify(b"k", &h, body, 1010, 300));
        assert!(!verify(b"k", &h, b"{}", 1010, 300), "other body");
        assert!(!verify(b"other", &h, body, 1010, 300), "other key");
        assert!(!verify(b"k", &h, body, 2000, 300), "too old");
        assert!(!verify(b"k", "t=1000", body, 1000, 300));
        assert!(!verify(b"k", "t=x,v1=zz", body, 1000, 300));
        assert!(!verify(b"k", "", body, 1000, 300));
    }
}
