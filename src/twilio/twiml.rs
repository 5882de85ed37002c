//! Rendering the `<Connect><Stream>` TwiML from the user-editable template `twiml/connect.xml`.

/// The template shipped in the repository, compiled in so the binary works from any directory.
/// A file given in config (`twiml_template`) replaces it.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../twiml/connect.xml");

/// Twilio limits a `<Parameter>` name and value to under 500 characters each (protocol.md).
const MAX_PARAMETER_CHARS: usize = 499;

/// What goes into one call's TwiML.
#[derive(Debug, Default)]
pub struct TwimlParams<'a> {
    /// `wss://host/media`; must not carry a query string (Twilio refuses it).
    pub stream_url: &'a str,
    /// `<Parameter>`s, in order (e.g. From, To, CallSid).
    pub parameters: Vec<(&'a str, &'a str)>,
    pub say_before_connect: Option<&'a str>,
    pub apology: &'a str,
    /// Twilio records the call (both channels) and posts the result here: a
    /// `<Start><Recording>` goes in before `<Connect>`.
    pub recording_callback: Option<&'a str>,
}

/// Fills the template. Every value is XML-escaped here, so nothing that came from a header or a
/// form field can open an element or an attribute.
pub fn render(template: &str, p: &TwimlParams<'_>) -> String {
    let say = match p.say_before_connect {
        Some(text) if !text.is_empty() => format!("<Say>{}</Say>", escape(text)),
        _ => String::new(),
    };
    let parameters: Vec<String> = p
        .parameters
        .iter()
        .map(|(name, value)| {
            format!(
                r#"<Parameter name="{}" value="{}"/>"#,
                escape(truncate_chars(name, MAX_PARAMETER_CHARS)),
                escape(truncate_chars(value, MAX_PARAMETER_CHARS))
            )
        })
        .collect();
    let xml = template
        .replace("{{say}}", &say)
        .replace("{{stream_url}}", &escape(p.stream_url))
        .replace("{{parameters}}", &parameters.join("\n      "))
        .replace("{{apology}}", &escape(p.apology));
    match p.recording_callback {
        Some(cb) => start_recording_before_connect(&xml, cb),
        None => xml,
    }
}

/// `<Start><Recording>` continues at once (protocol.md), so placed before `<Connect>` it records
/// the whole bridged conversation. Inserted here rather than through a placeholder so that
/// templates written before it keep working.
fn start_recording_before_connect(xml: &str, callback: &str) -> String {
    let start = format!(
        r#"<Start><Recording channels="dual" recordingStatusCallback="{}" recordingStatusCallbackEvent="completed"/></Start>"#,
        escape(callback)
    );
    match xml.find("<Connect") {
        Some(i) => format!("{}{start}\n  {}", &xml[..i], &xml[i..]),
        None => xml.to_owned(),
    }
}

/// XML escaping for both text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0; drop them.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The media WebSocket URL for a public base URL (`https://host[:port][/prefix]`) or a bare
/// host. `https`→`wss`, `http`→`ws`; a bare host gets `wss`. Returns `None` for anything that is
/// not a plain host (so a forged `Host` header cannot smuggle a path, query or markup).
pub fn stream_url(public: &str, path: &str) -> Option<String> {
    let (scheme, rest) = if let Some(r) = public.strip_prefix("https://") {
        ("wss", r)
    } else if let Some(r) = public.strip_prefix("http://") {
        ("ws", r)
    } else if let Some(r) = public.strip_prefix("wss://") {
        ("wss", r)
    } else if let Some(r) = public.strip_prefix("ws://") {
        ("ws", r)
    } else {
        ("wss", public)
    };
    let rest = rest.trim_end_matches('/');
    let (host, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    let prefix_ok = prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '~'));
    if !host_ok || !prefix_ok {
        return None;
    }
    Some(format!("{scheme}://{host}{prefix}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_connect_stream_with_parameters() {
        let xml = render(
            DEFAULT_TEMPLATE,
            &TwimlParams {
                stream_url: "wss://bridge.example.com/media",
                parameters: vec![("From", "+15550001"), ("CallSid", "CA1")],
                say_before_connect: Some("Connecting you"),
                apology: "Sorry, goodbye.",
                recording_callback: None,
            },
        );
        assert!(xml.contains(r#"<Stream url="wss://bridge.example.com/media">"#));
        assert!(xml.contains(r#"<Parameter name="From" value="+15550001"/>"#));
        assert!(xml.contains("<Say>Connecting you</Say>"));
        assert!(xml.contains("<Say>Sorry, goodbye.</Say>"));
        assert!(!xml.contains("{{"));
    }

    #[test]
    fn hostile_values_cannot_inject_markup() {
        let evil = r#""/><Redirect>http://evil</Redirect><x a=""#;
        let xml = render(
            DEFAULT_TEMPLATE,
            &TwimlParams {
                stream_url: "wss://h/media",
                parameters: vec![("From", evil)],
                say_before_connect: Some("</Say><Dial>+1</Dial>"),
                apology: "ok",
                recording_callback: None,
            },
        );
        assert!(!xml.contains("<Redirect>"));
        assert!(!xml.contains("<Dial>"));
        assert!(xml.contains("&quot;/&gt;&lt;Redirect&gt;"));
    }

    #[test]
    fn dual_recording_starts_before_connect() {
        let xml = render(
            DEFAULT_TEMPLATE,
            &TwimlParams {
                stream_url: "wss://h/media",
                apology: "bye",
                recording_callback: Some("https://h/twilio/recording?a=1&b=2"),
                ..Default::default()
            },
        );
        let rec = xml
            .find(r#"<Start><Recording channels="dual" recordingStatusCallback="https://h/twilio/recording?a=1&amp;b=2" recordingStatusCallbackEvent="completed"/></Start>"#)
            .expect(&xml);
        let connect = xml.find("<Connect>").expect("connect");
        assert!(rec < connect, "{xml}");
        let plain = render(DEFAULT_TEMPLATE, &TwimlParams::default());
        assert!(!plain.contains("<Recording"));
    }

    #[test]
    fn parameters_are_capped_below_500_chars() {
        let long = "x".repeat(2000);
        let xml = render(
            "{{parameters}}",
            &TwimlParams {
                parameters: vec![("From", &long)],
                ..Default::default()
            },
        );
        assert_eq!(xml.matches('x').count(), 499);
    }

    #[test]
    fn stream_url_from_public_url_or_host() {
        assert_eq!(
            stream_url("https://bridge.example.com/", "/media").as_deref(),
            Some("wss://bridge.example.com/media")
        );
        assert_eq!(
            stream_url("https://h.example.com/voice", "/media").as_deref(),
            Some("wss://h.example.com/voice/media")
        );
        assert_eq!(
            stream_url("localhost:8080", "/media").as_deref(),
            Some("wss://localhost:8080/media")
        );
        assert_eq!(
            stream_url("http://127.0.0.1:9", "/media").as_deref(),
            Some("ws://127.0.0.1:9/media")
        );
        assert_eq!(stream_url("evil\"><x", "/media"), None);
        assert_eq!(stream_url("h/?q=1", "/media"), None);
        assert_eq!(stream_url("", "/media"), None);
    }
}
