//! The TwiML that hands a live call to a person: `<Dial>` to a phone number or a SIP address.

use super::twiml::escape;

/// Whether `target` is a transfer destination we can dial: E.164 (`+` and 8–15 digits) or a
/// `sip:` URI.
pub fn is_valid_target(target: &str) -> bool {
    if let Some(digits) = target.strip_prefix('+') {
        return (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    }
    target.len() > 4
        && target.starts_with("sip:")
        && !target.contains(|c: char| c.is_whitespace() || c == '<' || c == '>')
}

/// `<Response><Dial callerId=..><Number>..</Number></Dial></Response>` (`<Sip>` for SIP
/// targets). Redirecting the call to this ends the media stream; Twilio then dials.
pub fn dial_twiml(target: &str, caller_id: Option<&str>) -> String {
    let caller = caller_id
        .map(|c| format!(" callerId=\"{}\"", escape(c)))
        .unwrap_or_default();
    let noun = if target.starts_with("sip:") {
        "Sip"
    } else {
        "Number"
    };
    format!(
        "<Response><Dial{caller}><{noun}>{}</{noun}></Dial></Response>",
        escape(target)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_sip_targets() {
        assert_eq!(
            dial_twiml("+15551230000", Some("+15550001111")),
            "<Response><Dial callerId=\"+15550001111\"><Number>+15551230000</Number></Dial></Response>"
        );
        assert_eq!(
            dial_twiml("sip:billing@pbx.example.com", None),
            "<Response><Dial><Sip>sip:billing@pbx.example.com</Sip></Dial></Response>"
        );
        assert!(is_valid_target("+15551230000"));
        assert!(is_valid_target("sip:a@b.example.com"));
        for bad in [
            "15551230000",
            "+1555",
            "+1555abc0000",
            "sip:",
            "tel:+1555",
            "sip:a b",
        ] {
            assert!(!is_valid_target(bad), "{bad}");
        }
    }
}
