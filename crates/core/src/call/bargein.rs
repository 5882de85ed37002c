//! Interruptions that are real: whether the caller's sound over the agent is speech, and what
//! to do about it.
//!
//! With [`BargeInMode::Confirm`] (the service's default) a voice activity model
//! ([`crate::audio::SpeechDetector`]) scores the caller's audio while agent audio is audible.
//! `min_speech_ms` of speech confirms an onset: the agent's audio is stopped at once (`clear`)
//! but kept, and the model is not cancelled. If the caller is still speaking past
//! `max_backchannel_ms` the model is cancelled and told what was heard (`truncate`), as with a
//! plain barge-in. A sound that ended sooner is judged by its words: duration alone cannot
//! tell "mm-hmm" from "stop" (both ~250 ms on the corpus). With input transcription on, the
//! answer stays paused until the turn's transcript arrives: only acknowledgements
//! ([`is_backchannel`]) or no words at all resume it where it paused; anything else, or no
//! transcript within [`WORDS_WAIT`], cuts it off. Without transcription a short sound cuts the
//! answer off too: a missed "stop" is worse than a needless stop. The
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
/// 290 ms) from a backchannel: the words do (see the module docs). `min_speech_ms` 128 (not
/// 192): through the real bridge (`callbridge bargein-bench`) it caught every interruption of
/// both halves, soft ones included, with the caller's onset → `clear` at 240 ms median
/// instead of 320, and still no noise clip paused the agent; its margin over the loudest
/// noise of the tune half (112 ms) is one 16 ms block.
impl Default for BargeInConfig {
    fn default() -> Self {
        BargeInConfig {
            mode: BargeInMode::Server,
            min_speech_ms: 128,
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

/// Words that only acknowledge ("mm-hmm", "okay", "right"): a short sound over the agent made
/// only of these (or of no words at all: a noise) lets the answer resume. Lower case, without
/// punctuation; transcribers spell backchannels many ways.
const BACKCHANNEL_WORDS: &[&str] = &[
    "mm", "mmm", "hmm", "mhm", "mm-hmm", "mmhmm", "mm-hm", "uh-huh", "uhhuh", "uh", "huh", "um",
    "ah", "oh", "yeah", "yea", "yes", "yep", "yup", "ok", "okay", "right", "sure", "alright",
    "all", "i", "see", "got", "it", "great", "cool", "fine", "good", "nice", "true", "exactly",
    "perfect", "wow", "aha", "ha",
];

/// Whether a transcript is only a backchannel: at most three words, each an acknowledgement
/// ("uh-huh", "I see", "got it", "okay okay"). Anything else ("stop", "wait", "no") is an
/// interruption, however short.
pub fn is_backchannel(transcript: &str) -> bool {
    let words = transcript
        .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '-' && c != '\''))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches('-').to_lowercase());
    let mut n = 0;
    for w in words {
        n += 1;
        if n > 3 || !BACKCHANNEL_WORDS.contains(&w.as_str()) {
            return false;
        }
    }
    true
}

/// How long a paused answer waits for the transcript of a short caller sound before taking it
/// as an interruption (a transcript normally follows the server's `speech_stopped` within a
/// few hundred ms).
pub(super) const WORDS_WAIT: std::time::Duration = std::time::Duration::from_millis(2000);

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

    #[test]
    fn acknowledgements_are_backchannels_and_commands_are_not() {
        for b in [
            "Mm-hmm.",
            "uh-huh",
            "Yeah.",
            "Okay, okay.",
            "Right!",
            "I see.",
            "Got it.",
            "",
        ] {
            assert!(is_backchannel(b), "{b:?}");
        }
        for c in [
            "Stop.",
            "Wait.",
            "No, no.",
            "Hold on.",
            "Yeah, but what about Sunday?",
        ] {
            assert!(!is_backchannel(c), "{c:?}");
        }
    }

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
