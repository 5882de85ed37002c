//! Agent profiles: `[profiles.NAME]` tables that override per-call settings of the top level
//! (instructions, voice, greeting, VAD, ...) for one line of a call center, chosen per call by
//! `<Parameter name="profile">` → the dialled number (`To`) → `default_profile` → the top level.
//!
//! Instructions, greetings and stored-prompt variables may hold `{{name}}` placeholders, filled per call from the call's
//! variables (missing ones become empty). Parsing and validating `[profiles.*]` is config's
//! job (`config/profiles.rs`); this is what a call uses of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::call::CallConfig;

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub call: Arc<CallConfig>,
    /// Dialled numbers (`To`) whose calls use this profile.
    pub numbers: Vec<String>,
    /// Reports of this profile's calls go here instead of the top-level `report_url`.
    pub report_url: Option<String>,
    /// Overrides the top-level `twilio_recording` for outbound calls of this profile.
    pub twilio_recording: Option<bool>,
    /// Asked for the call's variables and overrides when a call starts.
    pub setup_url: Option<String>,
    /// Replaces the top-level `redact` for this profile's calls (`redact = []`: nothing).
    pub redact: Option<callbridge_core::redact::Redact>,
    /// Asked of a text model after each call; its answer goes in the report.
    pub analysis: Option<Arc<crate::config::analysis::Analysis>>,
}

#[derive(Debug, Clone, Default)]
pub struct Profiles {
    pub by_name: BTreeMap<String, Profile>,
    pub default: Option<String>,
}

impl Profiles {
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The profile for a call: by name (the `profile` parameter), else by dialled number, else
    /// the default. An unknown name falls through to the number (logged by the caller).
    pub fn choose(&self, name: Option<&str>, to: Option<&str>) -> Option<&Profile> {
        name.and_then(|n| self.by_name.get(n))
            .or_else(|| {
                to.and_then(|to| {
                    self.by_name
                        .values()
                        .find(|p| p.numbers.iter().any(|n| n == to))
                })
            })
            .or_else(|| self.default.as_deref().and_then(|d| self.by_name.get(d)))
    }
}

/// E.164: `+`, a non-zero digit, at most 15 digits in all.
pub fn is_e164(n: &str) -> bool {
    let Some(digits) = n.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Fills `{{name}}` placeholders from `vars`; a placeholder without a value becomes empty.
pub fn fill(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find("}}") {
            Some(end) => {
                if let Some(v) = vars.get(after[..end].trim()) {
                    out.push_str(v);
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The call config with the call's variables filled in (`None`: nothing to fill).
pub fn with_variables(cfg: &CallConfig, vars: &BTreeMap<String, String>) -> Option<CallConfig> {
    let has = |s: &str| s.contains("{{");
    if !has(&cfg.session.instructions)
        && !cfg.greeting.as_deref().is_some_and(has)
        && !cfg.session.settings.has_placeholders()
    {
        return None;
    }
    let mut c = cfg.clone();
    c.session.instructions = fill(&cfg.session.instructions, vars);
    c.greeting = cfg.greeting.as_deref().map(|g| fill(g, vars));
    // A stored prompt's variables take the call's values too (`prompt_variables`).
    if let Some(p) = &mut c.session.settings.prompt {
        for v in p.variables.values_mut() {
            *v = fill(v, vars);
        }
    }
    Some(c)
}
