//! Redaction (`callbridge_core::redact`) under arbitrary text: a valid card number embedded
//! anywhere, however its digits are grouped, never comes out; text with nothing to redact comes
//! back byte for byte, without a copy.

use std::borrow::Cow;

use callbridge_core::redact::{Kind, Redact};
use proptest::prelude::*;

/// A Luhn-valid number of 13–19 digits: random digits, then the check digit that makes it
/// valid (ISO/IEC 7812-1 annex B).
fn card_digits() -> impl Strategy<Value = Vec<u8>> {
    (12usize..=18)
        .prop_flat_map(|n| prop::collection::vec(0u8..10, n))
        .prop_map(|mut body| {
            let check = (0u8..10)
                .find(|c| {
                    let mut all = body.clone();
                    all.push(*c);
                    callbridge_core::redact::luhn(&all)
                })
                .unwrap_or(0);
            body.push(check);
            body
        })
}

/// The digits as a transcript may write them: split anywhere into groups joined by a space,
/// dash or both, or not split at all.
fn written(digits: Vec<u8>) -> impl Strategy<Value = (Vec<u8>, String)> {
    let n = digits.len();
    prop::collection::vec(
        prop::sample::select(vec!["", "", " ", "-", " - ", "  "]),
        n - 1,
    )
    .prop_map(move |seps| {
        let mut text = String::new();
        for (i, d) in digits.iter().enumerate() {
            if i > 0 {
                text.push_str(seps[i - 1]);
            }
            text.push(char::from(b'0' + d));
        }
        (digits.clone(), text)
    })
}

/// Arbitrary text around it (any characters, digits too).
fn filler() -> impl Strategy<Value = String> {
    "\\PC{0,30}"
}

/// What separates a card from the text around it: it is said as a number of its own.
fn boundary() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![" ", ", ", ": ", "\n", " (", ") ", " is ", "#"])
}

/// Only the digits of `text`, in order.
fn digits_of(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

fn as_text(digits: &[u8]) -> String {
    digits.iter().map(|d| char::from(b'0' + d)).collect()
}

/// Words with at least one letter and none of the characters numbers and addresses are made
/// of; between them numbers of at most 8 digits: nothing a card, phone, SSN or e-mail.
fn harmless_text() -> impl Strategy<Value = String> {
    let word = ("[a-zA-Zé]", "\\PC{0,8}").prop_map(|(a, b)| {
        let b: String = b
            .chars()
            .filter(|c| !c.is_ascii_digit() && !matches!(c, '@' | '+'))
            .collect();
        format!("{a}{b}")
    });
    let number = "[0-9]{1,8}";
    prop::collection::vec((word, prop::option::of(number)), 0..12).prop_map(|parts| {
        let mut text = String::new();
        for (w, n) in parts {
            text.push_str(&w);
            if let Some(n) = n {
                text.push(' ');
                text.push_str(&n);
                text.push(' ');
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(crate::config(256))]

    #[test]
    fn an_embedded_card_number_never_comes_out(
        before in filler(),
        left in boundary(),
        (digits, card) in card_digits().prop_flat_map(written),
        right in boundary(),
        after in filler(),
        only_cards in any::<bool>(),
    ) {
        let text = format!("{before}{left}{card}{right}{after}");
        let set = if only_cards { Redact::NONE.with(Kind::Card) } else { Redact::all() };
        let out = set.apply(&text);
        prop_assert!(
            !digits_of(&out).contains(&as_text(&digits)),
            "{text:?} → {out:?}"
        );
        prop_assert!(out.contains("[card]"), "{text:?} → {out:?}");
    }

    #[test]
    fn two_cards_in_a_line_both_go(
        (a, card_a) in card_digits().prop_flat_map(written),
        (b, card_b) in card_digits().prop_flat_map(written),
        middle in "[a-z ,.]{1,20}",
    ) {
        let text = format!("first {card_a} then{middle}x {card_b}.");
        let out = Redact::all().apply(&text);
        prop_assert!(!digits_of(&out).contains(&as_text(&a)), "{text:?} → {out:?}");
        prop_assert!(!digits_of(&out).contains(&as_text(&b)), "{text:?} → {out:?}");
    }

    #[test]
    fn text_with_nothing_to_redact_comes_back_unchanged_and_uncopied(text in harmless_text()) {
        let out = Redact::all().apply(&text);
        prop_assert!(matches!(out, Cow::Borrowed(t) if t == text), "{text:?} → {out:?}");
    }

    #[test]
    fn a_number_failing_luhn_survives(
        digits in card_digits(),
        bump in 1u8..10,
        before in "[a-zA-Z ]{0,20}",
    ) {
        // Any other check digit fails the check.
        let mut wrong = digits;
        let last = wrong.len() - 1;
        wrong[last] = (wrong[last] + bump) % 10;
        let text = format!("{before} order {} please", as_text(&wrong));
        let out = Redact::NONE.with(Kind::Card).apply(&text);
        prop_assert!(matches!(out, Cow::Borrowed(t) if t == text), "{text:?} → {out:?}");
    }
}
