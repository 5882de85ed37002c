//! The caller's HTTP side, as Twilio does it: asking the bridge for TwiML, reading the
//! `<Stream>` URL out of it, posting forms; and the shape of an outbound call's TwiML.

use serde_json::Value;

use super::{CallerError, CallerOptions};

/// Extracts `<Stream url="...">` from TwiML (unescaping the XML entities we may meet).
pub fn stream_url_from_twiml(twiml: &str) -> Option<String> {
    let start = twiml.find("<Stream url=\"")? + "<Stream url=\"".len();
    let end = twiml[start..].find('"')? + start;
    Some(
        twiml[start..end]
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">"),
    )
}

/// The `<Parameter name value>`s of the TwiML's `<Stream>`: Twilio hands them to the media
/// socket in `start.customParameters` (XML entities unescaped).
pub fn stream_parameters_from_twiml(twiml: &str) -> serde_json::Map<String, Value> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let start = tag.find(&key)? + key.len();
        let end = tag[start..].find('"')? + start;
        Some(unescape(&tag[start..end]))
    };
    twiml
        .split("<Parameter ")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find("/>")?];
            Some((attr(tag, "name")?, Value::String(attr(tag, "value")?)))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Minimal HTTP/1.1 POST of a form, as Twilio's webhook does (no HTTP client crate needed for
/// one request on loopback).
pub async fn post_form(
    base: &str,
    path: &str,
    form: &[(&str, &str)],
) -> Result<String, CallerError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let body = serde_urlencoded::to_string(form).map_err(|e| CallerError::Twiml(e.to_string()))?;
    let mut s = tokio::net::TcpStream::connect(&hostport)
        .await
        .map_err(|e| CallerError::Twiml(format!("{hostport}: {e}")))?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| CallerError::Twiml(e.to_string()))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .await
        .map_err(|e| CallerError::Twiml(e.to_string()))?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    if !text.starts_with("HTTP/1.1 200") {
        return Err(CallerError::Twiml(
            text.lines().next().unwrap_or("").to_owned(),
        ));
    }
    Ok(text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned())
}

/// Checks a bridge→Twilio message is exactly one of the three shapes Twilio accepts.
pub fn check_outbound_shape(v: &Value, sid: &str) -> Result<(), String> {
    let obj = v.as_object().ok_or("not an object")?;
    if obj.get("streamSid").and_then(Value::as_str) != Some(sid) {
        return Err(format!("wrong or missing streamSid: {v}"));
    }
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    let ok = match obj.get("event").and_then(Value::as_str) {
        Some("media") => {
            keys.len() == 3
                && obj["media"]
                    .as_object()
                    .is_some_and(|m| m.len() == 1 && m.get("payload").is_some_and(Value::is_string))
        }
        Some("mark") => {
            keys.len() == 3
                && obj["mark"]
                    .as_object()
                    .is_some_and(|m| m.len() == 1 && m.get("name").is_some_and(Value::is_string))
        }
        Some("clear") => keys.len() == 2,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("not an exact media/mark/clear message: {v}"))
    }
}

/// Asks the bridge's webhook for the call's TwiML, as Twilio does when the number rings.
pub async fn fetch_twiml(opts: &CallerOptions) -> Result<String, CallerError> {
    post_form(
        &opts.bridge,
        "/twiml",
        &[
            ("CallSid", &opts.call_sid),
            ("AccountSid", "AC00000000000000000000000000000001"),
            ("From", &opts.from),
            ("To", "+15550199"),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
        ],
    )
    .await
}
