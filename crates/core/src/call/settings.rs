//! Settings decided after the call began. With agent profiles, Twilio's `start` chooses the
//! call's settings (and a setup lookup may amend them); the upstream, dialled at socket open,
//! can be open before that. Its session is then parked — open, unconfigured — and configured
//! once, with the settings decided, when [`Call::settings_decided`] says so.

use std::sync::Arc;
use std::time::Instant;

use super::{Call, CallConfig};

#[derive(Debug, Default)]
pub(crate) struct Settings {
    /// The shell said the settings come later ([`Call::defer_settings`]) and has not said
    /// they are decided yet.
    pending: bool,
    /// A session that opened meanwhile (its generation).
    parked: Option<u64>,
}

impl Call {
    /// The call's settings are decided later (a profile chosen at `start`, a setup lookup):
    /// a session that opens before [`Call::settings_decided`] is not configured until then.
    /// Told right after [`Call::new`], before any upstream opens.
    pub fn defer_settings(&mut self) {
        self.settings.pending = true;
    }

    /// Whether the call still waits for its settings.
    pub fn settings_pending(&self) -> bool {
        self.settings.pending
    }

    /// The settings are decided: `cfg` if they differ from the call's (see
    /// [`Call::set_config`]), else the ones it has. A session parked meanwhile is configured
    /// now, with them.
    pub fn settings_decided(&mut self, cfg: Option<Arc<CallConfig>>, now: Instant) {
        if let Some(cfg) = cfg {
            self.set_config(cfg);
        }
        self.settings.pending = false;
        if let Some(generation) = self.settings.parked.take() {
            self.on_upstream_open(generation, now);
        }
    }

    /// A session opened: parked (true) while the settings are pending.
    pub(super) fn park_while_pending(&mut self, generation: u64) -> bool {
        if self.settings.pending {
            self.settings.parked = Some(generation);
        }
        self.settings.pending
    }
}
