//! Settings decided after the call began. With agent profiles, Twilio's `start` chooses the
//! call's settings (and a setup lookup may amend them); the upstream, dialled at socket open,
//! can be open before that. Its session is then parked — open, unconfigured — and configured
//! once, with the settings decided, when [`Call::settings_decided`] says so.
//!
//! A profile may change the model's audio format (`audio_mode`) and the API dialect. Neither
//! has been used when the settings are decided: no audio went to or came from the model (the
//! caller's waits as Twilio's μ-law), so the resamplers are simply built or dropped. The
//! dialect is chosen when the socket is opened (the beta one's `OpenAI-Beta: realtime=v1`
//! upgrade header, `protocol.md`, "Dialects"), so a socket dialled (or parked) with the old
//! dialect is closed and a new one dialled with the call's.

use std::sync::Arc;
use std::time::Instant;

use super::effects::UpstreamEffect;
use super::playback::Playback;
use super::{Call, CallConfig, EndReason, Output};
use crate::audio::{Downsampler, Upsampler};
use crate::realtime::AudioFormat;

#[derive(Debug, Default)]
pub(crate) struct Settings {
    /// The shell said the settings come later ([`Call::defer_settings`]) and has not said
    /// they are decided yet.
    pending: bool,
    /// A session that opened meanwhile (its generation).
    parked: Option<u64>,
}

/// The resamplers a call in `format` needs (pcm: 8 kHz ⇄ 24 kHz), boxed: only a pcm call has
/// them, and inline they would be reserved in every call's task. `None` for pcm means they
/// could not be built.
pub(super) fn resamplers(
    format: AudioFormat,
) -> (Option<Box<Upsampler>>, Option<Box<Downsampler>>) {
    match format {
        AudioFormat::Pcmu => (None, None),
        AudioFormat::Pcm24k => (
            Upsampler::new().ok().map(Box::new),
            Downsampler::new().ok().map(Box::new),
        ),
    }
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
    /// now, with them — unless the dialect changed: then it is closed, and a session in the
    /// call's dialect is dialled and configured when it opens.
    pub fn settings_decided(&mut self, cfg: Option<Arc<CallConfig>>, now: Instant) {
        if let Some(cfg) = cfg {
            let dialect_changed = cfg.dialect != self.cfg.dialect;
            if self.set_config(cfg) && dialect_changed {
                self.redial_in_new_dialect();
            }
        }
        self.settings.pending = false;
        if let Some(generation) = self.settings.parked.take() {
            self.on_upstream_open(generation, now);
        }
    }

    /// Replaces the call's settings — the agent profile chosen at Twilio's `start` — while no
    /// upstream session has been configured yet; refused (`false`) after that.
    pub fn set_config(&mut self, cfg: Arc<CallConfig>) -> bool {
        if self.upstream_ready || self.upstream.ever_ready() {
            return false;
        }
        let format = cfg.session.audio_format;
        self.cfg = cfg;
        self.bargein_configure();
        if format != self.format {
            self.switch_format(format);
        }
        true
    }

    /// The model's audio format changes before any audio went either way.
    fn switch_format(&mut self, format: AudioFormat) {
        self.format = format;
        (self.upsampler, self.downsampler) = resamplers(format);
        self.playback = Playback::new(format.bytes_per_ms());
        if format == AudioFormat::Pcm24k && (self.upsampler.is_none() || self.downsampler.is_none())
        {
            self.anomaly("resampler_init", "could not build the resamplers".into());
            self.end(EndReason::UpstreamFailed);
        }
    }

    /// The socket dialled at socket open speaks the old dialect: a parked one is closed, one
    /// still connecting is forgotten (the shell replaces an attempt in flight; if it opens
    /// anyway it is answered with a close), and a new generation is dialled.
    fn redial_in_new_dialect(&mut self) {
        if let Some(old) = self.settings.parked.take() {
            self.out
                .push_back(Output::Upstream(UpstreamEffect::CloseUpstream {
                    generation: old,
                }));
        }
        let generation = self.upstream.dial_first_again();
        self.out
            .push_back(Output::Upstream(UpstreamEffect::ConnectUpstream {
                generation,
            }));
    }

    /// A session opened: parked (true) while the settings are pending.
    pub(super) fn park_while_pending(&mut self, generation: u64) -> bool {
        if self.settings.pending {
            self.settings.parked = Some(generation);
        }
        self.settings.pending
    }
}
