//! Redaction of what a caller says before the bridge stores or logs it: card numbers, phone
//! numbers, e-mail addresses and US social security numbers in a transcript become `[card]`,
//! `[phone]`, `[email]`, `[ssn]`. Pure text → text; a text with nothing to redact comes back
//! borrowed (no allocation), so calling it on every line costs little.
//!
//! Candidates are found with one regex (an e-mail address, or a run of digit groups joined by
//! spaces, dashes, dots or parentheses, as speech-to-text writes numbers); what a run is, is
//! decided in code:
//! - a card: 13–19 digits of consecutive groups that pass the Luhn check (ISO/IEC 7812-1,
//!   annex B), so an order number that fails it survives. Groups are tried as windows inside a
//!   longer run: "4111 1111 1111 1111 12 25" (the expiry read on) still loses its card.
//! - an SSN: exactly 9 digits in 2 or more groups joined by dashes or spaces (`123-45-6789`,
//!   `123 45 6789`).
//! - a phone number: `+` and 8–15 digits (E.164 allows 15), or 10 digits (11 starting with 1)
//!   written with separators, as national formats are (`(555) 123-4567`, `555.123.4567`,
//!   `1-555-123-4567`). A bare 10-digit number is not taken for one (order numbers look alike).

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// One kind of data that can be redacted, by its configuration name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Card,
    Phone,
    Email,
    Ssn,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Card, Kind::Phone, Kind::Email, Kind::Ssn];

    /// The name in `redact = [...]`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Card => "card",
            Kind::Phone => "phone",
            Kind::Email => "email",
            Kind::Ssn => "ssn",
        }
    }

    /// What a match is replaced with.
    pub fn placeholder(self) -> &'static str {
        match self {
            Kind::Card => "[card]",
            Kind::Phone => "[phone]",
            Kind::Email => "[email]",
            Kind::Ssn => "[ssn]",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The kinds a call redacts (a small set; `Redact::default()` redacts nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redact(u8);

/// Digit groups joined by one separator each: spaces, a dash or dot (spaces around it allowed),
/// or a closing parenthesis; optionally led by `+` and an opening parenthesis.
const RUN: &str = r"(?:\+ ?)?\(?[0-9]+(?:(?:\) ?|\)?[ \t]*[-.][ \t]*|[ \t]+)\(?[0-9]+)*";
/// An e-mail address as people write it (RFC 5322's common subset).
const EMAIL: &str = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}";

// The patterns are constants (tested below): compiling them cannot fail at run time.
static RUNS: LazyLock<Regex> = LazyLock::new(|| Regex::new(RUN).expect("RUN compiles"));
// E-mail first: at the same position an address wins over the digits it starts with.
static EMAILS_OR_RUNS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("{EMAIL}|{RUN}")).expect("EMAIL|RUN compiles"));

/// Card numbers are 13 to 19 digits (ISO/IEC 7812-1).
const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;

impl Redact {
    pub const NONE: Redact = Redact(0);

    /// Every kind.
    pub fn all() -> Redact {
        Kind::ALL.into_iter().fold(Redact::NONE, Redact::with)
    }

    /// The set named by `names`; `Err` carries the first unknown name.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Redact, &'a str> {
        names.into_iter().try_fold(Redact::NONE, |set, name| {
            Kind::from_name(name).map(|k| set.with(k)).ok_or(name)
        })
    }

    pub fn with(self, kind: Kind) -> Redact {
        Redact(self.0 | kind.bit())
    }

    pub fn has(self, kind: Kind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the kinds in the set, in [`Kind::ALL`] order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Kind::ALL
            .into_iter()
            .filter(move |k| self.has(*k))
            .map(Kind::name)
    }

    /// `text` with every match of the set's kinds replaced by its placeholder; borrowed when
    /// nothing matched.
    pub fn apply(self, text: &str) -> Cow<'_, str> {
        self.apply_until(text, text.len())
    }

    /// What a caller heard of `full`: `heard` is its beginning and an ellipsis (as the
    /// conversation log cuts a line the caller interrupted). Redacted as `full` is, so a number
    /// the cut splits is replaced whole instead of leaving its first digits.
    pub fn apply_heard<'a>(self, full: &str, heard: &'a str) -> Cow<'a, str> {
        match heard.strip_suffix('…') {
            Some(head) if heard != full && full.starts_with(head) => {
                match self.apply_until(full, head.len()) {
                    Cow::Borrowed(_) => Cow::Borrowed(heard),
                    Cow::Owned(mut s) => {
                        s.push('…');
                        Cow::Owned(s)
                    }
                }
            }
            _ => self.apply(heard),
        }
    }

    /// `text[..limit]` redacted, matches found in all of `text`: one that starts before `limit`
    /// is replaced whole.
    fn apply_until(self, text: &str, limit: usize) -> Cow<'_, str> {
        let email = self.has(Kind::Email);
        let digits = self.has(Kind::Card) || self.has(Kind::Phone) || self.has(Kind::Ssn);
        // Most lines have neither a digit nor an `@`: no regex run at all.
        let worth = text
            .bytes()
            .any(|b| (digits && b.is_ascii_digit()) || (email && b == b'@'));
        if !worth {
            return Cow::Borrowed(&text[..limit]);
        }
        let mut out = Out::new(text, limit);
        // Without `email`, a run must still be found inside an address ("4111…@x.com").
        let candidates: &Regex = if email { &EMAILS_OR_RUNS } else { &RUNS };
        for m in candidates.find_iter(text) {
            if m.start() >= limit {
                break;
            }
            if m.as_str().contains('@') {
                out.replace(m.start(), m.end(), Kind::Email);
            } else if digits {
                self.run(&mut out, m.start(), m.as_str());
            }
        }
        out.finish()
    }

    /// Redacts what the digit run `run` (at byte `at` of the text) holds.
    fn run(self, out: &mut Out<'_>, at: usize, run: &str) {
        let groups = || groups(run);
        let total: usize = groups().map(|(s, e)| e - s).sum();
        if self.has(Kind::Card) && total >= *CARD_DIGITS.start() && cards(run, at, out) {
            return;
        }
        if self.has(Kind::Ssn) && total == 9 && groups().count() >= 2 && is_ssn_shaped(run) {
            out.replace(at, at + run.len(), Kind::Ssn);
            return;
        }
        if self.has(Kind::Phone) && is_phone(run, total, groups().count()) {
            out.replace(at, at + run.len(), Kind::Phone);
        }
    }
}

/// The output, copied only once the first match is replaced.
struct Out<'a> {
    text: &'a str,
    built: Option<String>,
    /// `text[..copied]` is in `built` (or needs no copy yet).
    copied: usize,
    /// The output ends here (a match starting before it is still replaced whole).
    limit: usize,
}

impl<'a> Out<'a> {
    fn new(text: &'a str, limit: usize) -> Out<'a> {
        Out {
            text,
            built: None,
            copied: 0,
            limit,
        }
    }

    fn replace(&mut self, start: usize, end: usize, kind: Kind) {
        if start >= self.limit {
            return;
        }
        let built = self
            .built
            .get_or_insert_with(|| String::with_capacity(self.text.len()));
        built.push_str(&self.text[self.copied..start]);
        built.push_str(kind.placeholder());
        self.copied = end;
    }

    fn finish(self) -> Cow<'a, str> {
        match self.built {
            None => Cow::Borrowed(&self.text[..self.limit]),
            Some(mut s) => {
                if self.copied < self.limit {
                    s.push_str(&self.text[self.copied..self.limit]);
                }
                Cow::Owned(s)
            }
        }
    }
}

/// The byte ranges of the digit groups of `run`.
fn groups(run: &str) -> impl Iterator<Item = (usize, usize)> + Clone + '_ {
    let b = run.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() && !b[i].is_ascii_digit() {
            i += 1;
        }
        if i == b.len() {
            return None;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        Some((start, i))
    })
}

/// Replaces every card number in `run` (windows of whole consecutive groups, longest first
/// from each group); whether one was found.
fn cards(run: &str, at: usize, out: &mut Out<'_>) -> bool {
    let bytes = run.as_bytes();
    let mut found = false;
    let mut from = groups(run);
    while let Some((first, _)) = from.clone().next() {
        let mut digits = [0u8; 19];
        let mut n = 0;
        // (digits so far, end of the window's last group) at each group boundary
        let mut best: Option<(usize, usize)> = None;
        for (s, e) in from.clone() {
            if n + (e - s) > digits.len() {
                break;
            }
            for (d, b) in digits[n..].iter_mut().zip(&bytes[s..e]) {
                *d = b - b'0';
            }
            n += e - s;
            if CARD_DIGITS.contains(&n) && luhn(&digits[..n]) {
                best = Some((n, e));
            }
        }
        from.next();
        if let Some((_, end)) = best {
            out.replace(at + first, at + end, Kind::Card);
            found = true;
            // Continue after the card's last group.
            while from.clone().next().is_some_and(|(s, _)| s < end) {
                from.next();
            }
        }
    }
    found
}

/// The Luhn check (ISO/IEC 7812-1 annex B): from the right, every second digit doubled (minus
/// 9 when over 9); the sum is a multiple of 10.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Digits joined by dashes or spaces only (an SSN is never written with dots or parentheses).
fn is_ssn_shaped(run: &str) -> bool {
    run.bytes()
        .all(|b| b.is_ascii_digit() || b == b'-' || b == b' ')
}

fn is_phone(run: &str, digits: usize, groups: usize) -> bool {
    if run.starts_with('+') {
        return (8..=15).contains(&digits);
    }
    let national = digits == 10 || (digits == 11 && run.trim_start_matches('(').starts_with('1'));
    national && (groups >= 2 || run.starts_with('('))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> String {
        Redact::all().apply(text).into_owned()
    }

    #[test]
    fn the_patterns_compile() {
        assert!(Regex::new(RUN).is_ok());
        assert!(Regex::new(&format!("{EMAIL}|{RUN}")).is_ok());
    }

    #[test]
    fn card_numbers_go_however_they_are_grouped() {
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
            "3782 822463 10005",
            "6011 0009 9013 9424",
        ] {
            assert_eq!(
                all(&format!("my card is {card}, thanks")),
                "my card is [card], thanks"
            );
        }
        // The expiry read on after the number does not hide it.
        assert_eq!(all("it's 4111 1111 1111 1111 12 25"), "it's [card] 12 25");
        // Digits before it, too.
        assert_eq!(all("ref 7 4111 1111 1111 1111"), "ref 7 [card]");
    }

    #[test]
    fn numbers_that_fail_luhn_survive() {
        let text = "order 4111 1111 1111 1112 and order 1234567890123456";
        assert!(matches!(Redact::all().apply(text), Cow::Borrowed(_)));
    }

    #[test]
    fn phones_emails_and_ssns() {
        assert_eq!(all("call +44 20 7946 0958 now"), "call [phone] now");
        assert_eq!(all("call +15551234567"), "call [phone]");
        assert_eq!(all("(555) 123-4567 or 555.123.4567"), "[phone] or [phone]");
        assert_eq!(all("1-555-123-4567"), "[phone]");
        assert_eq!(all("mail ada.l+x@mail.example.co.uk."), "mail [email].");
        assert_eq!(all("ssn 123-45-6789 or 123 45 6789"), "ssn [ssn] or [ssn]");
        // A bare 10-digit number and short numbers stay.
        assert_eq!(
            all("order 5551234567, 3 items at 12.50"),
            "order 5551234567, 3 items at 12.50"
        );
    }

    #[test]
    fn only_the_configured_kinds() {
        let cards = Redact::from_names(["card"]).unwrap();
        let text = "4111111111111111 and ada@example.com and 555-123-4567";
        assert_eq!(
            cards.apply(text),
            "[card] and ada@example.com and 555-123-4567"
        );
        assert_eq!(Redact::NONE.apply(text), text);
        // An address hides no card from a set without `email`.
        assert_eq!(cards.apply("4111111111111111@x.com"), "[card]@x.com");
    }

    #[test]
    fn names_parse_and_unknown_ones_are_named() {
        let set = Redact::from_names(["ssn", "email"]).unwrap();
        assert_eq!(set.names().collect::<Vec<_>>(), ["email", "ssn"]);
        assert_eq!(Redact::from_names(["card", "iban"]), Err("iban"));
    }

    #[test]
    fn text_without_matches_is_borrowed() {
        for text in ["hello", "I have 2 cats and 3 dogs", "", "über 12 €"] {
            assert!(matches!(Redact::all().apply(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn a_line_cut_inside_a_number_loses_all_of_it() {
        let full = "so that is 4111 1111 1111 1111, right?";
        let heard = "so that is 4111 1111…";
        assert_eq!(Redact::all().apply_heard(full, heard), "so that is [card]…");
        assert_eq!(Redact::all().apply_heard("hello there", "hello…"), "hello…");
        assert_eq!(
            Redact::all().apply_heard(full, full),
            "so that is [card], right?"
        );
    }

    #[test]
    fn luhn_known_values() {
        let d = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
        assert!(luhn(&d("79927398713")));
        assert!(!luhn(&d("79927398710")));
        assert!(luhn(&d("4111111111111111")));
    }
}
