//! Arbitrary From/To/CallSid/parameter values, `<Say>` texts and stream URLs: the TwiML is
//! always well-formed XML (parsed with a real parser) and every value comes back unchanged.

use callbridge::twilio::twiml::{is_xml_char, render, TwimlParams, DEFAULT_TEMPLATE};
use proptest::prelude::*;

/// Twilio's cap on a `<Parameter>` name or value.
const MAX_PARAMETER_CHARS: usize = 499;

/// Strings that hit the dangerous corners often: comment closers, markup, entities,
/// placeholders, CDATA ends, whitespace the parser would normalise, characters XML forbids.
fn nasty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("--".to_owned()),
        Just("-->".to_owned()),
        Just("<!--".to_owned()),
        Just("{{apology}}".to_owned()),
        Just("{{parameters}}".to_owned()),
        Just("]]>".to_owned()),
        Just("&amp;".to_owned()),
        Just("\"'<>&".to_owned()),
        Just("\t\n\r".to_owned()),
        Just("\u{0}\u{1b}\u{FFFE}\u{FFFF}".to_owned()),
        Just("sip:alice--x@example.com".to_owned()),
        any::<String>(),
        "[a-zA-Z0-9+:@. -]{0,12}",
    ];
    prop_oneof![
        any::<String>(),
        prop::collection::vec(piece, 0..8).prop_map(|v| v.concat()),
        // Long ones, past Twilio's cap.
        ("[a-z-]{1,3}", 100usize..300).prop_map(|(s, n)| s.repeat(n)),
    ]
}

/// What XML can carry of `s`: the characters it allows.
fn representable(s: &str) -> String {
    s.chars().filter(|c| is_xml_char(*c)).collect()
}

fn capped(s: &str) -> String {
    representable(&s.chars().take(MAX_PARAMETER_CHARS).collect::<String>())
}

fn element_text(node: roxmltree::Node<'_, '_>) -> String {
    node.children()
        .filter_map(|c| c.text())
        .collect::<Vec<_>>()
        .concat()
}

proptest! {
    #![proptest_config(crate::config(1000))]

    #[test]
    fn twiml_is_well_formed_and_values_survive(
        from in nasty(),
        to in nasty(),
        call_sid in nasty(),
        extra_name in nasty(),
        extra_value in nasty(),
        say in proptest::option::of(nasty()),
        apology in nasty(),
        stream_url in nasty(),
    ) {
        let parameters = vec![
            ("From", from.as_str()),
            ("To", to.as_str()),
            ("CallSid", call_sid.as_str()),
            (extra_name.as_str(), extra_value.as_str()),
        ];
        let xml = render(
            DEFAULT_TEMPLATE,
            &TwimlParams {
                stream_url: &stream_url,
                parameters: parameters.clone(),
                say_before_connect: say.as_deref(),
                apology: &apology,
                recording_callback: None,
            },
        );
        let doc = match roxmltree::Document::parse(&xml) {
            Ok(d) => d,
            Err(e) => return Err(TestCaseError::fail(format!("malformed TwiML ({e}):\n{xml}"))),
        };
        let root = doc.root_element();
        prop_assert_eq!(root.tag_name().name(), "Response");

        let stream = root
            .descendants()
            .find(|n| n.has_tag_name("Stream"))
            .ok_or_else(|| TestCaseError::fail("no <Stream>"))?;
        let want_url = representable(&stream_url);
        prop_assert_eq!(stream.attribute("url"), Some(want_url.as_str()));
        let got: Vec<(String, String)> = stream
            .children()
            .filter(|n| n.has_tag_name("Parameter"))
            .map(|n| {
                (
                    n.attribute("name").unwrap_or("<none>").to_owned(),
                    n.attribute("value").unwrap_or("<none>").to_owned(),
                )
            })
            .collect();
        let want: Vec<(String, String)> =
            parameters.iter().map(|(n, v)| (capped(n), capped(v))).collect();
        prop_assert_eq!(got, want);

        let says: Vec<String> = root
            .children()
            .filter(|n| n.has_tag_name("Say"))
            .map(element_text)
            .collect();
        let mut want_says = Vec::new();
        if let Some(s) = say.as_deref().filter(|s| !s.is_empty()) {
            want_says.push(representable(s));
        }
        want_says.push(representable(&apology));
        prop_assert_eq!(says, want_says);
        // Nothing but the template's own elements: no value opened one.
        let names: Vec<&str> = root.descendants().filter(|n| n.is_element()).map(|n| n.tag_name().name()).collect();
        prop_assert!(
            names.iter().all(|n| ["Response", "Say", "Connect", "Stream", "Parameter", "Hangup"].contains(n)),
            "{:?}", names
        );
    }
}

/// Values Twilio really sends (no characters XML forbids, under the cap) come back exactly.
#[test]
fn a_sip_caller_with_double_dashes_gets_well_formed_twiml() {
    let xml = render(
        DEFAULT_TEMPLATE,
        &TwimlParams {
            stream_url: "wss://bridge.example.com/media",
            parameters: vec![
                ("From", "sip:alice--x@example.com"),
                ("To", "+15550199"),
                ("CallSid", "CA--1"),
            ],
            say_before_connect: Some("one -- two"),
            apology: "Sorry -- goodbye.",
            recording_callback: None,
        },
    );
    let doc = roxmltree::Document::parse(&xml).expect("well-formed");
    let from = doc
        .descendants()
        .find(|n| n.attribute("name") == Some("From"))
        .and_then(|n| n.attribute("value"));
    assert_eq!(from, Some("sip:alice--x@example.com"));
}
