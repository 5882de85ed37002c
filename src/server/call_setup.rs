//! What a call runs with, decided at Twilio's `start`: the agent profile (by the `profile`
//! parameter, the dialled number, or the default) and the call's variables filled into its
//! instructions and greeting.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::warn;

use crate::call::CallConfig;
use crate::config::Config;
use crate::profile::with_variables;
use crate::report::builder::{PARAM_PROFILE, VAR_PREFIX};
use crate::twilio::StartMeta;

/// Whether calls must wait for `start` before their session is configured: only when there
/// are profiles or placeholders to fill (otherwise nothing changes and nothing waits).
pub fn needs_start(cfg: &Config, call: &CallConfig) -> bool {
    !cfg.profiles.is_empty()
        || call.session.instructions.contains("{{")
        || call.greeting.as_deref().is_some_and(|g| g.contains("{{"))
}

#[derive(Debug, Default)]
pub struct Chosen {
    pub profile: Option<String>,
    /// `None`: the top-level settings as they are.
    pub call: Option<Arc<CallConfig>>,
    pub report_url: Option<String>,
}

pub fn choose(cfg: &Config, top: &CallConfig, start: &StartMeta) -> Chosen {
    let params = &start.custom_parameters;
    let asked = params
        .get(PARAM_PROFILE)
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    let profile = cfg
        .profiles
        .choose(asked, params.get("To").map(String::as_str));
    if let Some(name) = asked {
        if profile.is_none_or(|p| p.name != name) {
            warn!(
                profile = name,
                "unknown profile asked for; using the number or the default"
            );
        }
    }
    let vars: BTreeMap<String, String> = params
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(VAR_PREFIX)
                .map(|n| (n.to_owned(), v.clone()))
        })
        .collect();
    let base = profile.map_or(top, |p| &p.call);
    let call = match with_variables(base, &vars) {
        Some(filled) => Some(Arc::new(filled)),
        None => profile.map(|p| p.call.clone()),
    };
    Chosen {
        profile: profile.map(|p| p.name.clone()),
        call,
        report_url: profile.and_then(|p| p.report_url.clone()),
    }
}
