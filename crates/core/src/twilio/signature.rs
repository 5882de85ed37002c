//! Twilio request signatures (`X-Twilio-Signature`).
//!
//! Twilio signs every webhook with base64(HMAC-SHA1(auth token, URL + for each POST parameter
//! sorted by name: name + value)). The Media Streams upgrade request is signed the same way over
//! the `wss://` URL exactly as written in `<Stream url>`, with no parameters. When a Webhooks
//! Rule applies, Twilio signs with the rule's shared key and says so in
//! `X-Twilio-Webhooks-Signature-Settings: key=…,algorithm=HMAC_SHA256`; only the hash changes.
//! Sources: protocol.md "Twilio: request signatures"; Twilio's "Validating webhook signatures".

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::hmac;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
}

impl Algorithm {
    /// From the `X-Twilio-Webhooks-Signature-Settings` header (absent: SHA-1). `None` for an
    /// algorithm we do not know.
    pub fn from_settings(header: Option<&str>) -> Option<Algorithm> {
        let Some(h) = header else {
            return Some(Algorithm::Sha1);
        };
        let alg = h
            .split(',')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case("algorithm"))
            .map(|(_, v)| v.trim());
        match alg {
            None | Some("HMAC_SHA1") => Some(Algorithm::Sha1),
            Some("HMAC_SHA256") => Some(Algorithm::Sha256),
            Some(_) => None,
        }
    }
}

/// The string Twilio signs: the URL, then each parameter's name and value, sorted by name.
pub fn signed_string(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut s = String::with_capacity(url.len() + params.len() * 24);
    s.push_str(url);
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// The signature Twilio would send for this request.
pub fn sign(secret: &str, alg: Algorithm, url: &str, params: &[(String, String)]) -> String {
    let key = hmac::Key::new(ring_alg(alg), secret.as_bytes());
    B64.encode(hmac::sign(&key, signed_string(url, params).as_bytes()).as_ref())
}

/// Constant-time check of `signature` against each candidate URL (Twilio may or may not include
/// a default port, and a `<Stream url>` may be configured with or without a trailing slash).
pub fn verify(
    secret: &str,
    alg: Algorithm,
    signature: &str,
    urls: &[String],
    params: &[(String, String)],
) -> bool {
    let Ok(tag) = B64.decode(signature.trim()) else {
        return false;
    };
    let key = hmac::Key::new(ring_alg(alg), secret.as_bytes());
    urls.iter()
        .any(|url| hmac::verify(&key, signed_string(url, params).as_bytes(), &tag).is_ok())
}

/// The URL as configured, plus the variants Twilio's own validators also accept: with and
/// without the scheme's default port, with and without a trailing slash on the path.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let (scheme, rest) = match url.split_once("://") {
        Some(p) => p,
        None => return out,
    };
    let default_port = match scheme {
        "https" | "wss" => ":443",
        "http" | "ws" => ":80",
        _ => "",
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let hosts = if let Some(h) = host
        .strip_suffix(default_port)
        .filter(|_| !default_port.is_empty())
    {
        vec![host.to_owned(), h.to_owned()]
    } else {
        vec![host.to_owned(), format!("{host}{default_port}")]
    };
    let (path_only, query) = match path.find('?') {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    };
    let paths = if let Some(p) = path_only.strip_suffix('/').filter(|p| !p.is_empty()) {
        vec![path_only.to_owned(), p.to_owned()]
    } else {
        vec![path_only.to_owned(), format!("{path_only}/")]
    };
    for h in &hosts {
        for p in &paths {
            let v = format!("{scheme}://{h}{p}{query}");
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    out
}

fn ring_alg(alg: Algorithm) -> hmac::Algorithm {
    match alg {
        Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        Algorithm::Sha256 => hmac::HMAC_SHA256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The worked example from Twilio's security documentation (auth token 12345).
    #[test]
    fn matches_twilios_documented_example() {
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            sign("12345", Algorithm::Sha1, url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(verify(
            "12345",
            Algorithm::Sha1,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
            &[url.to_owned()],
            &params
        ));
    }

    #[test]
    fn rejects_tampering_and_wrong_keys() {
        let params = p(&[("From", "+1555"), ("CallSid", "CA1")]);
        let urls = url_variants("https://h.example.com/twiml");
        let sign_twiml =
            |key, algorithm| sign(key, algorithm, "https://h.example.com/twiml", &params);
        let good = sign_twiml("tok", Algorithm::Sha1);
        assert!(verify("tok", Algorithm::Sha1, &good, &urls, &params));
        let tampered = p(&[("From", "+1666"), ("CallSid", "CA1")]);
        // Each differs from the good one in one thing: key, parameters, algorithm, signature.
        for (key, algorithm, signature, params) in [
            ("other", Algorithm::Sha1, good.as_str(), &params),
            ("tok", Algorithm::Sha1, good.as_str(), &tampered),
            ("tok", Algorithm::Sha256, good.as_str(), &params),
            ("tok", Algorithm::Sha1, "not base64!", &params),
        ] {
            assert!(!verify(key, algorithm, signature, &urls, params));
        }
        let sha256 = sign_twiml("key", Algorithm::Sha256);
        assert!(verify("key", Algorithm::Sha256, &sha256, &urls, &params));
    }

    #[test]
    fn accepts_port_and_slash_variants() {
        let v = url_variants("wss://h.example.com/media");
        assert!(v.contains(&"wss://h.example.com:443/media".to_string()));
        assert!(v.contains(&"wss://h.example.com/media/".to_string()));
        let sig = sign("tok", Algorithm::Sha1, "wss://h.example.com:443/media", &[]);
        assert!(verify("tok", Algorithm::Sha1, &sig, &v, &[]));
    }

    #[test]
    fn settings_header_picks_the_algorithm() {
        assert_eq!(Algorithm::from_settings(None), Some(Algorithm::Sha1));
        assert_eq!(
            Algorithm::from_settings(Some("key=abc,algorithm=HMAC_SHA256")),
            Some(Algorithm::Sha256)
        );
        assert_eq!(Algorithm::from_settings(Some("algorithm=MD5")), None);
    }
}
