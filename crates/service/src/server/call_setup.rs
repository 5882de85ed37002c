//! What a call runs with, decided at Twilio's `start`: the agent profile (by the `profile`
//! parameter, the dialled number, or the default), the profile's setup lookup (the
//! integrator's answer within `setup_timeout_ms`, else the profile as configured), and the
//! call's variables filled into instructions and greeting.
//!
//! Until that is decided the call keeps an upstream session that is already open unconfigured
//! (`Call::defer_settings`, `Call::settings_decided`), so it is configured once, with the right
//! settings. Without profiles or placeholders nothing waits.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;
use tracing::{info, warn};

use super::AppState;
use crate::call::CallConfig;
use crate::config::valid_name;
use crate::config::{Config, VOICES};
use crate::integrator::{signature, unix_now, SIGNATURE_HEADER};
use crate::profile::{fill, with_variables};
use crate::report::builder::{ReportBuilder, PARAM_DIRECTION, PARAM_PROFILE, VAR_PREFIX};
use crate::twilio::transfer::is_valid_target;
use crate::twilio::StartMeta;

/// Answers larger than this are junk.
const MAX_SETUP_ANSWER: usize = 64 * 1024;

/// What the integrator's setup endpoint may answer (unknown fields ignored).
#[derive(Debug, Default, Deserialize)]
pub struct SetupAnswer {
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub instructions_append: Option<String>,
    #[serde(default)]
    pub greeting: Option<String>,
    #[serde(default)]
    pub voice: Option<String>,
    /// Replaces the profile's transfer destinations for this call (`{name: "+1555…"}`).
    #[serde(default)]
    pub transfer_targets: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub reject: bool,
}

type Lookup = Pin<Box<dyn Future<Output = Option<SetupAnswer>> + Send>>;

/// Per-call state of the decision.
pub struct CallSetup {
    wait_for_start: bool,
    started: bool,
    lookup: Option<Lookup>,
    /// The profile's settings, unfilled, and the call's variables (for the lookup's answer).
    base: Option<Arc<CallConfig>>,
    vars: BTreeMap<String, String>,
    /// Where this call's report goes (the profile's `report_url`).
    pub report_url: Option<String>,
    /// The configured profile the call runs with (a bounded metric label).
    pub profile: Option<String>,
    /// The setup lookup answered `reject: true`.
    pub rejected: bool,
}

impl CallSetup {
    pub fn new(s: &AppState) -> CallSetup {
        CallSetup {
            wait_for_start: needs_start(&s.cfg, &s.call_cfg),
            started: false,
            lookup: None,
            base: None,
            vars: BTreeMap::new(),
            report_url: None,
            profile: None,
            rejected: false,
        }
    }

    /// Whether the call's settings are decided only at `start` (profiles, placeholders to
    /// fill): the call is told so ([`crate::call::Call::defer_settings`]).
    pub fn waits_for_start(&self) -> bool {
        self.wait_for_start
    }

    /// Whether the call's settings are final: no profile to choose at `start`, or it was
    /// chosen and its setup lookup (if any) has answered or given up.
    pub fn decided(&self) -> bool {
        !self.wait_for_start || (self.started && self.lookup.is_none())
    }

    /// Ready when the setup lookup answered, failed or timed out (then hand the answer to
    /// [`CallSetup::on_lookup`]); pending while none is running.
    pub fn poll_lookup(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<SetupAnswer>> {
        match self.lookup.as_mut() {
            Some(l) => l.as_mut().poll(cx),
            None => std::task::Poll::Pending,
        }
    }

    /// Twilio's `start`: chooses the profile; returns the settings the call should switch to
    /// now (if any). Starts the profile's setup lookup.
    pub fn on_start(
        &mut self,
        s: &AppState,
        start: &StartMeta,
        report: &mut ReportBuilder,
    ) -> Option<Arc<CallConfig>> {
        if self.started {
            // A warm call's setup ran at the webhook, with what `start` carries now; the
            // report has just read the real `start`, which names no profile when the number
            // or the default chose it: the profile chosen then stands.
            if let Some(name) = &self.profile {
                report.set_profile(name);
            }
            return None;
        }
        self.started = true;
        if !self.wait_for_start {
            self.link_report(s, start, report);
            return None;
        }
        let params = &start.custom_parameters;
        let asked = params
            .get(PARAM_PROFILE)
            .map(String::as_str)
            .filter(|s| !s.is_empty());
        let profile = s
            .cfg
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
        if let Some(p) = profile {
            tracing::Span::current().record("profile", p.name.as_str());
            report.set_profile(&p.name);
            report.redact = p.redact.unwrap_or(report.redact);
            self.report_url = p.report_url.clone();
            self.profile = Some(p.name.clone());
        }
        self.link_report(s, start, report);
        self.vars = params
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(VAR_PREFIX)
                    .map(|n| (n.to_owned(), v.clone()))
            })
            .collect();
        let base = profile.map_or_else(|| s.call_cfg.clone(), |p| p.call.clone());
        if let (Some(p), Some(url)) = (profile, profile.and_then(|p| p.setup_url.clone())) {
            let body = serde_json::json!({
                "call_sid": start.call_sid,
                "account_sid": start.account_sid,
                "from": params.get("From"),
                "to": params.get("To"),
                "profile": p.name,
                "parameters": params,
                "direction": params.get(PARAM_DIRECTION).map_or("inbound", String::as_str),
            });
            self.lookup = Some(Box::pin(lookup(s.clone(), url, body)));
            self.base = Some(base);
            // The profile's settings go on meanwhile only if the lookup never answers; the
            // session waits (at most setup_timeout_ms) for it.
            return None;
        }
        Some(match with_variables(&base, &self.vars) {
            Some(filled) => Arc::new(filled),
            None => base,
        })
    }

    /// Remembers the call's report under its CallSid, so that Twilio's recording callback
    /// (after the call) names it and goes where it went.
    fn link_report(&self, s: &AppState, start: &StartMeta, report: &ReportBuilder) {
        if let Some(call_sid) = start.call_sid.as_deref() {
            s.reports
                .link_call(call_sid, report.report_id(), self.report_url.as_deref());
        }
    }

    /// The lookup ended: the settings to use (the profile's, with the answer applied).
    pub fn on_lookup(
        &mut self,
        answer: Option<SetupAnswer>,
        report: &mut ReportBuilder,
    ) -> Option<Arc<CallConfig>> {
        self.lookup = None;
        let base = self.base.take()?;
        let Some(a) = answer else {
            // Failed, timed out or junk (logged and counted): the profile as configured.
            return Some(match with_variables(&base, &self.vars) {
                Some(filled) => Arc::new(filled),
                None => base,
            });
        };
        self.rejected = a.reject;
        if a.reject {
            info!("setup lookup rejected the call; the agent says a short refusal and hangs up");
        }
        for (k, v) in &a.variables {
            self.vars.insert(k.clone(), v.clone());
        }
        report.add_variables(&a.variables);
        let mut cfg = (*base).clone();
        cfg.session.instructions = fill(&cfg.session.instructions, &self.vars);
        if let Some(extra) = a.instructions_append.filter(|s| !s.is_empty()) {
            cfg.session.instructions.push_str("\n\n");
            cfg.session.instructions.push_str(&fill(&extra, &self.vars));
        }
        cfg.greeting = match a.greeting {
            // A refused caller hears the refusal, not the greeting.
            _ if a.reject => None,
            Some(g) if !g.is_empty() => Some(fill(&g, &self.vars)),
            _ => cfg.greeting.as_deref().map(|g| fill(g, &self.vars)),
        };
        if let Some(v) = a.voice {
            if VOICES.contains(&v.as_str()) {
                cfg.session.voice = v;
            } else {
                warn!(voice = v, "setup lookup named an unknown voice; ignored");
            }
        }
        if let Some(targets) = a.transfer_targets {
            apply_transfer_targets(&mut cfg, targets);
        }
        Some(Arc::new(cfg))
    }
}

/// The setup answer's transfer destinations replace the profile's; a bad one is dropped with
/// a warning (the call goes on), and `transfer_call` is declared only if any remain.
fn apply_transfer_targets(cfg: &mut CallConfig, targets: BTreeMap<String, String>) {
    let mut ok = Vec::new();
    for (name, target) in targets {
        if valid_name(&name) && is_valid_target(&target) {
            ok.push((name, target));
        } else {
            warn!(
                name,
                target, "setup lookup named a transfer target that is not valid; ignored"
            );
        }
    }
    cfg.tools.transfer_targets = ok;
    cfg.session.tools = cfg.tools.declarations();
}

/// Whether calls must wait for `start` before their session is configured: only when there
/// are profiles or placeholders to fill.
pub fn needs_start(cfg: &Config, call: &CallConfig) -> bool {
    !cfg.profiles.is_empty()
        || call.session.instructions.contains("{{")
        || call.greeting.as_deref().is_some_and(|g| g.contains("{{"))
        || call.session.settings.has_placeholders()
}

/// POSTs the signed setup request; `None` (with a warning and a metric) when it fails, times
/// out or answers junk.
async fn lookup(s: AppState, url: String, body: serde_json::Value) -> Option<SetupAnswer> {
    let timeout = s.cfg.callcenter.setup_timeout;
    let count = |result: &str| {
        s.metrics
            .setup_lookups_total
            .with_label_values(&[result])
            .inc()
    };
    let Some(secret) = s.cfg.tool_secret.as_ref() else {
        count("failed");
        return None;
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let sig = signature(secret.0.as_bytes(), unix_now(), &bytes);
    let req = s
        .http
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sig)
        .body(bytes)
        .send();
    let answered = tokio::time::timeout(timeout, async {
        let resp = req
            .await
            .map_err(|e| ("failed", super::twilio_rest::describe(&e)))?;
        let status = resp.status();
        if status.is_redirection() {
            // Never followed (the shared client has no redirect policy): the signed request
            // went to the configured setup_url only.
            return Err((
                "redirect",
                format!(
                    "HTTP {} to host {}: redirects are not followed, configure the final URL",
                    status.as_u16(),
                    super::twilio_rest::redirect_host(&resp)
                        .as_deref()
                        .unwrap_or("-")
                ),
            ));
        }
        let body = super::twilio_rest::read_limited(resp, MAX_SETUP_ANSWER)
            .await
            .map_err(|e| ("failed", e))?;
        if !status.is_success() {
            return Err(("failed", format!("HTTP {}", status.as_u16())));
        }
        Ok(body)
    })
    .await;
    match answered {
        Err(_) => {
            count("timeout");
            warn!(
                timeout_ms = timeout.as_millis() as u64,
                "setup lookup timed out; the profile goes on as configured"
            );
            None
        }
        Ok(Err(("redirect", why))) => {
            count("redirect");
            warn!(
                why,
                "setup lookup answered a redirect; the profile goes on as configured"
            );
            None
        }
        Ok(Err((_, why))) => {
            count("failed");
            warn!(
                why,
                "setup lookup failed; the profile goes on as configured"
            );
            None
        }
        Ok(Ok(body)) => match serde_json::from_slice::<SetupAnswer>(&body) {
            Ok(a) => {
                count("ok");
                info!(variables = a.variables.len(), "setup lookup answered");
                Some(a)
            }
            Err(e) => {
                count("junk");
                warn!(error = %e, "setup lookup answered junk; the profile goes on as configured");
                None
            }
        },
    }
}
