//! Secure by default: a bridge that calls a paid upstream must not accept unsigned Twilio
//! requests, or anyone who finds `/twiml` and `/media` talks to the model on the owner's bill.
//!
//! Unsigned requests stay fine when the upstream is on loopback (the in-repo simulator, the
//! demo, the tests, the load tool): nothing is paid for there. Elsewhere `serve` refuses to
//! start without `twilio_auth_token` unless `allow_unsigned = true` says the owner means it.

use crate::config::{Config, ConfigError};

/// Why unsigned requests are acceptable for this configuration, if they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsigned {
    /// `twilio_auth_token` is set: every Twilio request is verified.
    Signed,
    /// No token, but the upstream is on loopback (local flows and tests).
    LoopbackUpstream,
    /// No token and a remote upstream, accepted because `allow_unsigned = true`.
    Allowed,
}

/// Decides whether `serve` may start with `cfg`. The error names the keys that fix it.
pub fn check(cfg: &Config) -> Result<Unsigned, ConfigError> {
    if cfg.twilio_auth_token.is_some() {
        return Ok(Unsigned::Signed);
    }
    if cfg.allow_unsigned {
        return Ok(Unsigned::Allowed);
    }
    if is_loopback_url(&cfg.realtime_url) {
        return Ok(Unsigned::LoopbackUpstream);
    }
    Err(ConfigError::Invalid {
        key: "twilio_auth_token".into(),
        message: format!(
            "not set, and realtime_url ({}) is not on loopback: anyone who finds /twiml and \
             /media could talk to the model on your account. Set twilio_auth_token \
             (TWILIO_AUTH_TOKEN or CALLBRIDGE_TWILIO_AUTH_TOKEN), or set allow_unsigned = true \
             (CALLBRIDGE_ALLOW_UNSIGNED=true) to accept unsigned requests anyway",
            host_of(&cfg.realtime_url).unwrap_or("?")
        ),
    })
}

/// Logs what [`check`] decided, once per start.
pub fn log(decision: Unsigned) {
    match decision {
        Unsigned::Signed => {}
        Unsigned::LoopbackUpstream => tracing::warn!(
            "twilio_auth_token is not set: /twiml and /media accept unsigned requests (the upstream is on loopback; set TWILIO_AUTH_TOKEN in production)"
        ),
        Unsigned::Allowed => tracing::warn!(
            "allow_unsigned = true and twilio_auth_token is not set: /twiml and /media accept UNSIGNED requests from anyone; set TWILIO_AUTH_TOKEN"
        ),
    }
}

/// The host of a `ws://`/`wss://` URL (IPv6 without brackets).
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(hostport.split(':').next().unwrap_or(hostport))
}

/// Whether the URL's host is this machine: `localhost`, 127.0.0.0/8 or `::1` (no DNS lookup:
/// a name that merely resolves to loopback does not count).
pub fn is_loopback_url(url: &str) -> bool {
    let Some(host) = host_of(url) else {
        return false;
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised_without_dns() {
        for url in [
            "ws://127.0.0.1:9000/v1/realtime?model=x",
            "ws://127.1.2.3/v1/realtime",
            "ws://localhost:9000/v1/realtime",
            "ws://[::1]:9000/v1/realtime",
            "wss://user@127.0.0.1/x",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1",
            "wss://127.0.0.1.example.com/v1/realtime",
            "ws://10.0.0.5:9000/v1/realtime",
            "ws://[2001:db8::1]:9000/",
            "wss://localhost.evil.com/",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }
}
