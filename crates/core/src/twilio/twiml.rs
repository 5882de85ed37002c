//! Rendering the `<Connect><Stream>` TwiML from the user-editable template `twiml/connect.xml`.

/// The template shipped in the repository, compiled in so the binary works from any directory.
/// A file given in config (`twiml_template`) replaces it.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../../../twiml/connect.xml");

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
///
/// Placeholders are filled in one pass over the markup only: the template's comments are
/// copied verbatim (a value holding `--`, e.g. a SIP caller `sip:alice--x@example.com`, would
/// make a comment malformed, and Twilio would fail the call), and a value that itself looks
/// like `{{apology}}` is never filled again.
pub fn render(template: &str, p: &TwimlParams<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find("<!--") {
            Some(i) => {
                fill_markup(&rest[..i], p, &mut out);
                let comment = &rest[i..];
                // An unterminated comment is copied as it is (the template is the integrator's).
                let end = comment.find("-->").map_or(comment.len(), |e| e + 3);
                out.push_str(&comment[..end]);
                rest = &comment[end..];
            }
            None => {
                fill_markup(rest, p, &mut out);
                rest = "";
            }
        }
    }
    match p.recording_callback {
        Some(cb) => start_recording_before_connect(&out, cb),
        None => out,
    }
}

/// Copies `markup` to `out`, replacing each known `{{placeholder}}` with its escaped value.
fn fill_markup(markup: &str, p: &TwimlParams<'_>, out: &mut String) {
    let mut rest = markup;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find("}}") else {
            out.push_str(tail);
            return;
        };
        match &tail[2..end] {
            "say" => {
                if let Some(text) = p.say_before_connect.filter(|t| !t.is_empty()) {
                    out.push_str("<Say>");
                    escape_into(text, out);
                    out.push_str("</Say>");
                }
            }
            "stream_url" => escape_into(p.stream_url, out),
            "parameters" => {
                for (n, (name, value)) in p.parameters.iter().enumerate() {
                    if n > 0 {
                        out.push_str("\n      ");
                    }
                    out.push_str(r#"<Parameter name=""#);
                    escape_into(truncate_chars(name, MAX_PARAMETER_CHARS), out);
                    out.push_str(r#"" value=""#);
                    escape_into(truncate_chars(value, MAX_PARAMETER_CHARS), out);
                    out.push_str(r#""/>"#);
                }
            }
            "apology" => escape_into(p.apology, out),
            // Not ours: left as written.
            _ => {
                out.push_str(&tail[..end + 2]);
            }
        }
        rest = &tail[end + 2..];
    }
    out.push_str(rest);
}

/// TwiML that turns a call away without answering it: `reason` is `busy` (the caller hears a
/// busy signal) or `rejected` (Twilio's "not in service" style rejection).
pub fn reject(reason: &str) -> String {
    let mut out =
        String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason=""#);
    escape_into(reason, &mut out);
    out.push_str(r#""/></Response>"#);
    out
}

/// `<Start><Recording>` continues at once (protocol.md), so placed before `<Connect>` it records
/// the whole bridged conversation. Inserted here rather than through a placeholder so that
/// templates written before it keep working.
fn start_recording_before_connect(xml: &str, callback: &str) -> String {
    let start = format!(
        r#"<Start><Recording channels="dual" recordingStatusCallback="{}" recordingStatusCallbackEvent="completed"/></Start>"#,
        escape(callback)
    );
    match find_outside_comments(xml, "<Connect") {
        Some(i) => format!("{}{start}\n  {}", &xml[..i], &xml[i..]),
        None => xml.to_owned(),
    }
}

/// The first `needle` in the markup of `xml`, skipping comments (a template's comment may
/// mention `<Connect>`).
fn find_outside_comments(xml: &str, needle: &str) -> Option<usize> {
    let mut from = 0;
    while from < xml.len() {
        let rest = &xml[from..];
        let next_comment = rest.find("<!--");
        let hit = rest.find(needle);
        match (hit, next_comment) {
            (Some(h), Some(c)) if c < h => {
                let end = rest[c..]
                    .find("-->")
                    .map_or(xml.len(), |e| from + c + e + 3);
                from = end;
            }
            (Some(h), _) => return Some(from + h),
            (None, _) => return None,
        }
    }
    None
}

/// XML escaping for both text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(s, &mut out);
    out
}

/// XML escaping for both text and attribute values, appended to `out`. Tab, newline and
/// carriage return become character references, so a parser's attribute-value and line-end
/// normalisation gives the value back unchanged; characters XML 1.0 does not allow at all
/// (other control characters, U+FFFE, U+FFFF) are dropped.
fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if !is_xml_char(c) => {}
            c => out.push(c),
        }
    }
}

/// Whether XML 1.0 allows `c` in a document (`Char` production; Rust strings hold no
/// surrogates).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
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

    /// The default template for a stream to `stream_url` with `parameters`, not recorded.
    fn connect_stream<'a>(
        stream_url: &'a str,
        parameters: Vec<(&'a str, &'a str)>,
        say_before_connect: Option<&'a str>,
        apology: &'a str,
    ) -> String {
        let params = TwimlParams {
            stream_url,
            parameters,
            say_before_connect,
            apology,
            recording_callback: None,
        };
        render(DEFAULT_TEMPLATE, &params)
    }

    #[test]
    fn renders_connect_stream_with_parameters() {
        let xml = connect_stream(
            "wss://bridge.example.com/media",
            vec![("From", "+15550001"), ("CallSid", "CA1")],
            Some("Connecting you"),
            "Sorry, goodbye.",
        );
        assert!(xml.contains(r#"<Stream url="wss://bridge.example.com/media">"#));
        assert!(xml.contains(r#"<Parameter name="From" value="+15550001"/>"#));
        assert!(xml.contains("<Say>Connecting you</Say>"));
        assert!(xml.contains("<Say>Sorry, goodbye.</Say>"));
        let markup = &xml[xml.find("-->").unwrap()..];
        assert!(
            !markup.contains("{{"),
            "every placeholder in the markup is filled"
        );
    }

    #[test]
    fn hostile_values_cannot_inject_markup() {
        let evil = r#""/><Redirect>http://evil</Redirect><x a=""#;
        let xml = connect_stream(
            "wss://h/media",
            vec![("From", evil)],
            Some("</Say><Dial>+1</Dial>"),
            "ok",
        );
        assert!(!xml.contains("<Redirect>"));
        assert!(!xml.contains("<Dial>"));
        assert!(xml.contains("&quot;/&gt;&lt;Redirect&gt;"));
    }

    #[test]
    fn double_dashes_in_values_leave_the_comment_alone() {
        let xml = connect_stream(
            "wss://h/media",
            vec![("From", "sip:alice--x@example.com"), ("To", "{{apology}}")],
            None,
            "bye -- now",
        );
        let comment_start = xml.find("<!--").unwrap();
        let comment_end = xml.find("-->").unwrap();
        let comment = &xml[comment_start + 4..comment_end];
        assert!(!comment.contains("--"), "{comment}");
        assert!(
            comment.contains("{{parameters}}"),
            "the comment is kept verbatim"
        );
        assert!(xml.contains(r#"<Parameter name="From" value="sip:alice--x@example.com"/>"#));
        assert!(
            xml.contains(r#"<Parameter name="To" value="{{apology}}"/>"#),
            "a value is never filled again: {xml}"
        );
        assert!(xml.contains("<Say>bye -- now</Say>"));
    }

    #[test]
    fn whitespace_is_kept_and_illegal_characters_dropped() {
        assert_eq!(escape("a\tb\nc\rd"), "a&#9;b&#10;c&#13;d");
        assert_eq!(escape("x\u{1}\u{FFFE}\u{FFFF}y\u{10000}"), "xy\u{10000}");
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
        for (public, want) in [
            (
                "https://bridge.example.com/",
                Some("wss://bridge.example.com/media"),
            ),
            (
                "https://h.example.com/voice",
                Some("wss://h.example.com/voice/media"),
            ),
            ("localhost:8080", Some("wss://localhost:8080/media")),
            ("http://127.0.0.1:9", Some("ws://127.0.0.1:9/media")),
            ("evil\"><x", None),
            ("h/?q=1", None),
            ("", None),
        ] {
            assert_eq!(stream_url(public, "/media").as_deref(), want, "{public:?}");
        }
    }
}
