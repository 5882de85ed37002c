//! Interruptions that are real: whether the caller's sound over the agent is speech, and what
//! to do about it.
//!
//! With [`BargeInMode::Confirm`] (the service's default) a voice activity model
//! ([`crate::audio::SpeechDetector`]) scores the caller's audio while agent audio is audible.
//! `min_speech_ms` of speech confirms an onset: the agent's audio is stopped at once (`clear`)
//! but kept, and the model is not cancelled. If the caller's sound ends within
//! `max_backchannel_ms` of its onset (a "mm-hmm", a short noise the model let through) the
//! kept audio is played again from where it paused; if the caller is still speaking past it,
//! the model is cancelled and told what was heard (`truncate`), as with a plain barge-in. The
//! session is set up so that the server neither cancels nor answers on its own
//! (`interrupt_response`/`create_response` false): the bridge asks for an answer
//! (`response.create`) when a caller turn that was real speech ends. See `bargein/pause.rs`
//! for the playout side.
//!
//! [`BargeInMode::Server`] is the behaviour before this existed: every server
//! `speech_started` while the agent is audible clears, cancels and truncates.

mod echo;
mod pause;

use std::fmt;

use crate::audio::vad::BLOCK_MS;

pub(super) use pause::BargeIn;

/// Who decides that the caller interrupted the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BargeInMode {
    /// The bridge: speech confirmed by its own voice activity model, pause and resume.
    Confirm,
    /// The server's `speech_started` alone (clear + cancel + truncate at once).
    Server,
    /// The caller cannot interrupt the agent.
    Off,
}

impl BargeInMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BargeInMode::Confirm => "confirm",
            BargeInMode::Server => "server",
            BargeInMode::Off => "off",
        }
    }
}

impl fmt::Display for BargeInMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shown as its mode (what a recording's settings say).
impl fmt::Display for BargeInConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.mode.fmt(f)
    }
}

/// Settings of [`BargeInMode::Confirm`].
#[derive(Debug, Clone, PartialEq)]
pub struct BargeInConfig {
    pub mode: BargeInMode,
    /// Speech (in ms of caller audio) that confirms an onset and pauses the agent.
    pub min_speech_ms: u64,
    /// The longest caller sound, from its onset to its last speech, taken as a backchannel: the
    /// agent resumes after a shorter one and is cut off by a longer one.
    pub max_backchannel_ms: u64,
    /// A block scoring at least this is speech (0..1).
    pub vad_threshold: f32,
    /// Drop the agent's own voice coming back from the caller's line (the echo gate).
    pub echo_suppression: bool,
}

/// Defaults measured on the `tune` half of the labelled corpus (`fixtures/bargein/`;
/// `cargo run -p callbridge-core --example vad_tune -- DIR tune`): at 0.75 no non-speech clip
/// gathered more than 112 ms of speech in one onset (a TV at -10 dB), every spoken word at
/// least 256 ms; backchannels span at most 512 ms from onset to last speech, "hold on" 560 ms
/// and "no, no" 880 ms. The held-out half, not used for choosing: non-speech at most 32 ms,
/// backchannels at most 432 ms. Duration cannot tell a short command ("wait", "stop": 240 to
/// 290 ms) from a backchannel: those are resumed too.
impl Default for BargeInConfig {
    fn default() -> Self {
        BargeInConfig {
            mode: BargeInMode::Server,
            min_speech_ms: 192,
            max_backchannel_ms: 600,
            vad_threshold: 0.75,
            echo_suppression: true,
        }
    }
}

impl BargeInConfig {
    /// The service's default for phone calls: the bridge confirms.
    pub fn confirm() -> BargeInConfig {
        BargeInConfig {
            mode: BargeInMode::Confirm,
            ..BargeInConfig::default()
        }
    }
}

/// What became of a caller onset over the agent (the `decision` label of
/// `callbridge_bargein_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BargeInDecision {
    /// Speech past `max_backchannel_ms`: the answer was cut off (cancel + truncate).
    Confirmed,
    /// Paused, then the caller's sound ended quickly: the answer went on where it paused.
    Resumed,
    /// Sound that never made `min_speech_ms` of speech: the agent was not stopped.
    IgnoredNoise,
    /// Caller audio the echo gate recognised as the agent's own voice.
    IgnoredEcho,
}

impl BargeInDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            BargeInDecision::Confirmed => "confirmed",
            BargeInDecision::Resumed => "resumed",
            BargeInDecision::IgnoredNoise => "ignored_noise",
            BargeInDecision::IgnoredEcho => "ignored_echo",
        }
    }
}

/// The caller's sound must be this long without speech to have ended (a word's own gaps are
/// shorter; measured on the corpus, see [`BargeInConfig`]).
const HANGOVER_MS: u64 = 200;

/// What a block of caller audio changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Nothing,
    /// The first speech block of an onset.
    Onset,
    /// `min_speech_ms` of speech: pause the agent.
    Pause,
    /// The sound ended within `max_backchannel_ms`: play the rest.
    Resume,
    /// Still speaking past `max_backchannel_ms`: cut the answer off.
    Cut,
    /// The onset ended without enough speech.
    Noise,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Stage {
    #[default]
    Idle,
    Onset,
    Paused,
}

/// The decision on 16 ms blocks of caller audio (speech or not): pure, no clock (durations are
/// counted in audio, so tests replay them exactly).
#[derive(Debug, Default)]
pub(super) struct Decider {
    stage: Stage,
    /// Speech gathered since the onset.
    speech_ms: u64,
    /// Audio since the onset.
    since_ms: u64,
    /// Since the onset, up to the end of its last speech block.
    span_ms: u64,
    /// Non-speech since the last speech block.
    quiet_ms: u64,
}

impl Decider {
    pub(super) fn reset(&mut self) {
        *self = Decider::default();
    }

    #[cfg(test)]
    pub(super) fn is_idle(&self) -> bool {
        self.stage == Stage::Idle
    }

    pub(super) fn on_block(&mut self, speech: bool, cfg: &BargeInConfig) -> Step {
        if self.stage == Stage::Idle {
            if !speech {
                return Step::Nothing;
            }
            *self = Decider {
                stage: Stage::Onset,
                ..Decider::default()
            };
        }
        self.since_ms += BLOCK_MS;
        if speech {
            self.quiet_ms = 0;
            self.speech_ms += BLOCK_MS;
            self.span_ms = self.since_ms;
        } else {
            self.quiet_ms += BLOCK_MS;
        }
        match self.stage {
            Stage::Onset if self.speech_ms >= cfg.min_speech_ms => {
                self.stage = Stage::Paused;
                Step::Pause
            }
            Stage::Onset if self.quiet_ms >= HANGOVER_MS => {
                self.reset();
                Step::Noise
            }
            Stage::Onset if self.since_ms == BLOCK_MS => Step::Onset,
            Stage::Paused if speech && self.span_ms > cfg.max_backchannel_ms => {
                self.reset();
                Step::Cut
            }
            Stage::Paused if self.quiet_ms >= HANGOVER_MS => {
                self.reset();
                Step::Resume
            }
            _ => Step::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(d: &mut Decider, blocks: &str) -> Vec<Step> {
        let cfg = BargeInConfig::confirm();
        blocks
            .chars()
            .map(|c| d.on_block(c == 'S', &cfg))
            .filter(|s| *s != Step::Nothing)
            .collect()
    }

    #[test]
    fn short_speech_is_noise_and_long_speech_cuts() {
        let mut d = Decider::default();
        // 7 blocks (112 ms) of speech then silence: never confirmed.
        assert_eq!(
            run(&mut d, "SSSSSSS______________"),
            [Step::Onset, Step::Noise]
        );
        // 12 blocks (192 ms) confirm; speech past 600 ms cuts.
        let steps = run(&mut d, &"S".repeat(38));
        assert_eq!(steps, [Step::Onset, Step::Pause, Step::Cut]);
    }

    #[test]
    fn a_backchannel_pauses_then_resumes() {
        let mut d = Decider::default();
        // 400 ms of speech with a short gap, then 200 ms of quiet.
        let blocks = format!("{}__{}{}", "S".repeat(15), "S".repeat(10), "_".repeat(13));
        assert_eq!(
            run(&mut d, &blocks),
            [Step::Onset, Step::Pause, Step::Resume]
        );
        assert!(d.is_idle());
    }
}
