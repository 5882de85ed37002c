//! Confirmed barge-in on the state machine (issue 21): the bridge's own voice activity model
//! decides whether the caller's sound over the agent is an interruption. Noise does not stop
//! the agent; a short backchannel pauses it and the answer resumes exactly where it paused; a
//! real interruption is cut off at what the caller heard; `barge_in = "server"` is today's
//! behaviour. Caller audio is real speech (`fixtures/speech/`) and synthetic noise; Twilio's
//! player is simulated (20 ms a frame, marks echoed when reached, `clear` drops the queue and
//! echoes its marks).

use std::collections::VecDeque;

use callbridge::call::bargein::{BargeInConfig, BargeInDecision, BargeInMode};
use callbridge::call::{CallConfig, CallEvent, Output};
use callbridge::realtime::{AudioFormat, ClientEvent};
use callbridge::twilio::Outbound;
use serde_json::json;

mod support;
use support::call_harness::{config, events, pattern, to_model, FROM, H};

const HOURS: &[u8] = include_bytes!("../fixtures/speech/caller_hours.ulaw");
/// "Great, thank you. Goodbye.": its first word ("Great,", ~270 ms of speech, then a pause)
/// is the backchannel.
const THANKS: &[u8] = include_bytes!("../fixtures/speech/caller_thanks.ulaw");
/// The agent's answer: 3 s of recognisable bytes.
const ANSWER_MS: usize = 3000;

fn confirm_config() -> CallConfig {
    confirm_config_in(AudioFormat::Pcmu)
}

fn confirm_config_in(format: AudioFormat) -> CallConfig {
    let mut c = config(format);
    c.barge_in = BargeInConfig::confirm();
    // The caller's words tell a backchannel from a short command (see `bargein`).
    c.session.transcription_model = Some("gpt-4o-transcribe".into());
    c.session.bridge_decides_turns();
    c
}

/// Loud broadband noise (a door, a rustle): deterministic.
fn noise(ms: usize) -> Vec<u8> {
    let mut x: u32 = 99;
    (0..ms * 8)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            audio_codec_algorithms::encode_ulaw(((x >> 16) as i16) / 3)
        })
        .collect()
}

/// A call with a simulated Twilio player: what the caller heard, byte for byte.
struct Line {
    h: H,
    /// The model's audio format, in bytes per ms.
    bytes_per_ms: usize,
    now: u64,
    /// Queued at Twilio: frames and marks, in order.
    queue: VecDeque<Outbound>,
    /// When the frame at the head of the queue finishes playing.
    head_done: Option<u64>,
    heard: Vec<u8>,
    /// When the last byte the caller heard finished playing.
    last_heard_at: u64,
    outs: Vec<Output>,
}

impl Line {
    fn new(cfg: CallConfig) -> Line {
        let bytes_per_ms = cfg.session.audio_format.bytes_per_ms() as usize;
        let h = H::started(cfg, FROM);
        Line {
            h,
            bytes_per_ms,
            now: 1000,
            queue: VecDeque::new(),
            head_done: None,
            heard: Vec::new(),
            last_heard_at: 0,
            outs: Vec::new(),
        }
    }

    fn take(&mut self, outs: Vec<Output>) {
        for o in &outs {
            match o {
                Output::ToTwilio(Outbound::Clear) => {
                    let dropped: Vec<_> = self.queue.drain(..).collect();
                    self.head_done = None;
                    for m in dropped {
                        if let Outbound::Mark(name) = m {
                            let more = self.h.mark(&name, self.now);
                            self.outs.extend(more);
                        }
                    }
                }
                Output::ToTwilio(m @ (Outbound::Media(_) | Outbound::Mark(_))) => {
                    // An idle player starts on the frame as it arrives.
                    if self.queue.is_empty() && matches!(m, Outbound::Media(_)) {
                        self.head_done = Some(self.now + 20);
                    }
                    self.queue.push_back(m.clone())
                }
                _ => {}
            }
        }
        self.outs.extend(outs);
    }

    /// Twilio plays up to `self.now`.
    fn play(&mut self) {
        loop {
            match self.queue.front() {
                Some(Outbound::Mark(name)) => {
                    let name = name.clone();
                    self.queue.pop_front();
                    let outs = self.h.mark(&name, self.now);
                    self.take(outs);
                }
                Some(Outbound::Media(f)) => {
                    let done = *self.head_done.get_or_insert(self.now + 20);
                    if done > self.now {
                        return;
                    }
                    self.heard.extend_from_slice(f);
                    self.last_heard_at = done;
                    self.queue.pop_front();
                    self.head_done = Some(done + 20);
                    if !matches!(self.queue.front(), Some(Outbound::Media(_))) {
                        self.head_done = None;
                    }
                }
                _ => return,
            }
        }
    }

    /// The model answers with `ANSWER_MS` of pattern audio, in 100 ms deltas all at once.
    fn answer(&mut self) -> Vec<u8> {
        let audio = pattern(ANSWER_MS * self.bytes_per_ms, 7);
        let outs = self.h.created("r1", self.now);
        self.take(outs);
        self.deltas(&audio);
        audio
    }

    /// More of the answer's audio, in 100 ms deltas at once.
    fn deltas(&mut self, audio: &[u8]) {
        for chunk in audio.chunks(100 * self.bytes_per_ms) {
            let outs = self.h.delta("r1", "item1", chunk, self.now);
            self.take(outs);
        }
    }

    fn finish_answer(&mut self) {
        let now = self.now;
        let done = self.h.rt(
            json!({"type":"response.output_audio.done","response_id":"r1","item_id":"item1"}),
            now,
        );
        self.take(done);
        let done = self.h.rt(
            json!({"type":"response.done","response":{"id":"r1","status":"completed","output":[]}}),
            now,
        );
        self.take(done);
    }

    /// The caller sends `audio` (then line silence to fill `total_ms`) in 20 ms frames while
    /// Twilio plays.
    fn caller(&mut self, audio: &[u8], total_ms: u64) {
        let frames = (total_ms / 20) as usize;
        for i in 0..frames {
            let mut frame = [0xFFu8; 160];
            if let Some(chunk) = audio.chunks(160).nth(i) {
                frame[..chunk.len()].copy_from_slice(chunk);
            }
            self.now += 20;
            self.play();
            let outs = self.h.frame_bytes(&frame, self.now);
            self.take(outs);
        }
    }

    fn server(&mut self, kind: &str) {
        let outs = self.h.rt(
            json!({"type": kind, "audio_start_ms": 0, "audio_end_ms": 0, "item_id": "u1"}),
            self.now,
        );
        self.take(outs);
    }

    /// The server's transcript of the caller's turn.
    fn words(&mut self, transcript: &str) {
        let outs = self.h.rt(
            json!({"type": "conversation.item.input_audio_transcription.completed",
                "item_id": "u1", "content_index": 0, "transcript": transcript}),
            self.now,
        );
        self.take(outs);
    }

    fn wire(&self) -> Vec<String> {
        let mut w = Vec::new();
        for o in &self.outs {
            let s = match o {
                Output::ToTwilio(Outbound::Clear) => "clear".to_string(),
                Output::ToRealtime { event, .. } => match event {
                    ClientEvent::ResponseCancel => "cancel".into(),
                    ClientEvent::ResponseCreate { .. } => "create".into(),
                    ClientEvent::Truncate {
                        item_id,
                        audio_end_ms,
                    } => format!("truncate {item_id} {audio_end_ms}"),
                    _ => continue,
                },
                _ => continue,
            };
            w.push(s);
        }
        w
    }

    fn decisions(&self) -> Vec<BargeInDecision> {
        events(&self.outs)
            .into_iter()
            .filter_map(|e| match e {
                CallEvent::BargeInDecided(d) => Some(d),
                _ => None,
            })
            .collect()
    }
}

impl H {
    fn frame_bytes(&mut self, frame: &[u8; 160], ms: u64) -> Vec<Output> {
        let ts = ms - 1000;
        self.media(frame, ts, ms)
    }
}

#[test]
fn a_noise_burst_over_the_agent_neither_clears_nor_cancels() {
    let mut line = Line::new(confirm_config());
    let audio = line.answer();
    line.caller(&[], 500);
    // The server's VAD fires on the noise, as the real one does; the bridge does not act on it.
    line.server("input_audio_buffer.speech_started");
    line.caller(&noise(400), 600);
    line.server("input_audio_buffer.speech_stopped");
    line.finish_answer();
    line.caller(&[], 3000);
    assert_eq!(
        line.wire(),
        Vec::<String>::new(),
        "no clear, cancel or answer"
    );
    assert_eq!(line.heard, audio, "the caller heard the whole answer");
}

#[test]
fn a_backchannel_pauses_then_the_answer_resumes_where_it_paused() {
    let mut line = Line::new(confirm_config());
    let audio = line.answer();
    line.caller(&[], 1000);
    line.server("input_audio_buffer.speech_started");
    line.caller(&THANKS[..5120], 1000);
    line.server("input_audio_buffer.speech_stopped");
    line.words("Great.");
    line.finish_answer();
    line.caller(&[], 3500);

    assert_eq!(
        line.wire(),
        ["clear"],
        "paused, never cancelled, truncated or re-answered"
    );
    assert_eq!(line.decisions(), [BargeInDecision::Resumed]);
    // The caller heard the answer up to the pause, then (after it) everything from a frame
    // boundary at most one frame before where it stopped, to the very end: nothing lost, at
    // most 20 ms heard twice.
    assert!(
        continuous(&line.heard, &audio),
        "{} bytes heard of {}",
        line.heard.len(),
        audio.len()
    );
    // ... later than it would have without the pause (the caller's word took that long).
    assert!(
        line.last_heard_at > 1000 + ANSWER_MS as u64 + 200,
        "{}",
        line.last_heard_at
    );
}

#[test]
fn a_real_interruption_is_cut_off_at_what_was_heard() {
    let mut line = Line::new(confirm_config());
    line.answer();
    line.caller(&[], 1000);
    line.server("input_audio_buffer.speech_started");
    line.caller(HOURS, 1400);
    line.server("input_audio_buffer.speech_stopped");
    line.caller(&[], 1000);
    let heard_ms = line.heard.len() as u64 / 8;
    let wire = line.wire();
    assert_eq!(wire[0..2], ["clear", "cancel"], "{wire:?}");
    assert_eq!(
        wire[2],
        format!("truncate item1 {heard_ms}"),
        "truncated at what the caller heard"
    );
    assert_eq!(wire[3], "create", "the caller's turn is answered: {wire:?}");
    assert_eq!(line.decisions(), [BargeInDecision::Confirmed]);
    let onset_to_clear = events(&line.outs)
        .into_iter()
        .find_map(|e| match e {
            CallEvent::BargeInPaused { onset_to_clear } => Some(onset_to_clear),
            _ => None,
        })
        .expect("the clear is timed from the caller's onset");
    // Not before `min_speech_ms` of speech (less one 16 ms block of the detector's framing).
    let min_speech = u128::from(BargeInConfig::confirm().min_speech_ms);
    assert!(
        onset_to_clear.as_millis() + 16 >= min_speech,
        "{onset_to_clear:?}"
    );
    // After the cut nothing more of the answer reaches the caller.
    let heard = line.heard.len();
    line.caller(&[], 1000);
    assert_eq!(line.heard.len(), heard);
}

#[test]
fn a_turn_between_answers_is_answered_by_the_bridge() {
    let mut line = Line::new(confirm_config());
    line.server("input_audio_buffer.speech_started");
    line.caller(HOURS, 1400);
    line.server("input_audio_buffer.speech_stopped");
    assert_eq!(line.wire(), ["create"]);
    assert!(to_model(&line.outs)
        .iter()
        .all(|(_, e)| !matches!(e, ClientEvent::ResponseCancel)));
}

#[test]
fn server_mode_acts_on_the_servers_onset_alone_as_before() {
    let mut cfg = config(AudioFormat::Pcmu);
    cfg.barge_in.mode = BargeInMode::Server;
    let mut line = Line::new(cfg);
    line.answer();
    line.caller(&[], 500);
    line.server("input_audio_buffer.speech_started");
    let heard_ms = line.heard.len() as u64 / 8;
    assert_eq!(
        line.wire(),
        ["clear", "cancel", &format!("truncate item1 {heard_ms}")]
    );
    line.server("input_audio_buffer.speech_stopped");
    assert_eq!(line.wire().len(), 3, "the server answers by itself");
}

#[test]
fn the_session_leaves_interruptions_and_answers_to_the_bridge() {
    let cfg = confirm_config();
    let json = cfg.session.to_json(callbridge::realtime::Dialect::Ga);
    let td = &json["audio"]["input"]["turn_detection"];
    assert_eq!(td["interrupt_response"], false);
    assert_eq!(td["create_response"], false);
    let beta = cfg.session.to_json(callbridge::realtime::Dialect::Beta);
    assert_eq!(beta["turn_detection"]["interrupt_response"], false);
    assert_eq!(beta["turn_detection"]["create_response"], false);
}

#[test]
fn audio_streamed_during_the_pause_plays_after_it_and_a_later_cut_is_exact() {
    let mut line = Line::new(confirm_config());
    let outs = line.h.created("r1", line.now);
    line.take(outs);
    let audio = pattern(4000 * 8, 3);
    let (first, rest) = audio.split_at(1500 * 8);
    line.deltas(first);
    line.caller(&[], 800);
    line.caller(&THANKS[..2400], 300);
    line.words("Great.");
    // Paused now: the rest of the answer arrives meanwhile.
    assert_eq!(line.wire(), ["clear"]);
    line.deltas(rest);
    line.finish_answer();
    line.caller(&[], 1500);
    assert_eq!(line.decisions(), [BargeInDecision::Resumed]);
    // Well into the resumed answer, a real interruption.
    line.caller(HOURS, 1400);
    let wire = line.wire();
    // The caller heard the answer's bytes in order, at most one frame twice (at the first
    // pause): the truncation is at the position in the answer the caller had reached.
    let heard = &line.heard;
    let repeated = if audio.starts_with(heard) {
        0
    } else {
        assert!(
            (0..heard.len() / 160)
                .any(|k| audio.starts_with(&[&heard[..k * 160], &heard[(k + 1) * 160..]].concat())),
            "the caller heard the answer in order"
        );
        160
    };
    let reached_ms = (heard.len() - repeated) as u64 / 8;
    assert!(
        reached_ms > 2000,
        "well into the resumed part: {reached_ms}"
    );
    assert_eq!(
        wire,
        ["clear", "clear", &format!("truncate item1 {reached_ms}")]
    );
    assert!(
        !wire.contains(&"cancel".to_string()),
        "the response had finished: nothing to cancel"
    );
    assert_eq!(
        line.decisions(),
        [BargeInDecision::Resumed, BargeInDecision::Confirmed]
    );
}

/// Whether `heard` is `played` with at most one 20 ms frame heard twice.
fn continuous(heard: &[u8], played: &[u8]) -> bool {
    heard == played
        || (heard.len() == played.len() + 160
            && (0..heard.len() / 160)
                .any(|k| [&heard[..k * 160], &heard[(k + 1) * 160..]].concat() == played))
}

#[test]
fn in_pcm_mode_too_a_backchannel_loses_nothing_of_the_answer() {
    // What the caller hears of the answer undisturbed (the bridge's resampled μ-law)...
    let mut quiet = Line::new(confirm_config_in(AudioFormat::Pcm24k));
    quiet.answer();
    quiet.finish_answer();
    quiet.caller(&[], 4000);
    // ... and with a backchannel over it.
    let mut line = Line::new(confirm_config_in(AudioFormat::Pcm24k));
    line.answer();
    line.finish_answer();
    line.caller(&[], 1000);
    line.caller(&THANKS[..5120], 1000);
    line.words("Great.");
    line.caller(&[], 3000);
    assert_eq!(line.wire(), ["clear"]);
    assert_eq!(line.decisions(), [BargeInDecision::Resumed]);
    assert!(quiet.heard.len() >= ANSWER_MS * 8);
    assert!(
        continuous(&line.heard, &quiet.heard),
        "{} vs {}",
        line.heard.len(),
        quiet.heard.len()
    );
}

/// The agent's own voice coming back from a speakerphone: what the caller heard, `delay_ms`
/// later, `gain` quieter, re-encoded as μ-law (and a first-order low-pass, as a phone's
/// acoustic path dulls it).
fn echo_of(heard: &[u8], heard_until: u64, now: u64, delay_ms: u64, gain: f32) -> [u8; 160] {
    let mut frame = [0xFFu8; 160];
    // The 20 ms of echo arriving now are what was heard at [now - 20 - delay, now - delay).
    let end_ms = now.saturating_sub(delay_ms);
    let start_ms = end_ms.saturating_sub(20);
    let heard_from = heard_until.saturating_sub(heard.len() as u64 / 8);
    let mut prev = 0.0f32;
    for (i, slot) in frame.iter_mut().enumerate() {
        let t = start_ms * 8 + i as u64;
        let Some(idx) = t.checked_sub(heard_from * 8) else {
            continue;
        };
        let Some(&b) = heard.get(idx as usize) else {
            continue;
        };
        let x = audio_codec_algorithms::decode_ulaw(b) as f32 * gain;
        prev = 0.6 * x + 0.4 * prev;
        *slot = audio_codec_algorithms::encode_ulaw(prev as i16);
    }
    frame
}

#[test]
#[ignore = "not true yet (issue 21): the echo gate needs ~500 ms of agent speech to lock on, and \
            the voice activity model confirms the unlocked echo first (docs/interruptions.md)"]
fn the_agents_own_echo_neither_pauses_it_nor_reaches_the_model() {
    const AGENT: &[u8] = include_bytes!("../fixtures/speech/agent_hours.ulaw");
    for (delay_ms, db) in [(40u64, -6.0f32), (150, -12.0), (300, -20.0)] {
        let gain = 10f32.powf(db / 20.0);
        let mut line = Line::new(confirm_config());
        let outs = line.h.created("r1", line.now);
        line.take(outs);
        line.deltas(AGENT);
        line.finish_answer();
        let mut appended_loud = 0;
        let frames = AGENT.len() / 160 + 40;
        for _ in 0..frames {
            line.now += 20;
            line.play();
            let frame = echo_of(&line.heard, line.last_heard_at, line.now, delay_ms, gain);
            let outs = line.h.frame_bytes(&frame, line.now);
            // What the model hears of the caller: echo must arrive as silence.
            for o in &outs {
                if let Output::ToRealtime {
                    event: ClientEvent::AppendAudio(a),
                    ..
                } = o
                {
                    let loud = a.iter().filter(|&&b| (b & 0x7F) < 0x60).count();
                    if loud > 40 {
                        appended_loud += 1;
                    }
                }
            }
            line.take(outs);
        }
        assert!(
            !line.wire().contains(&"clear".to_string()),
            "echo {delay_ms} ms / {db} dB paused the agent: {:?}",
            line.wire()
        );
        assert_eq!(line.heard, AGENT, "the caller heard the whole answer");
        assert!(
            appended_loud < 10,
            "echo {delay_ms} ms / {db} dB reached the model in {appended_loud} frames"
        );
        assert!(line.decisions().contains(&BargeInDecision::IgnoredEcho));
    }
}

/// A short sound over the agent is judged by its words: "stop" is as short as "mm-hmm", but
/// it cuts the answer off and is answered.
#[test]
fn a_short_command_cuts_the_answer_off_where_a_backchannel_resumes_it() {
    for (words, cut) in [
        ("Stop.", true),
        ("Wait!", true),
        ("Mm-hmm.", false),
        ("", false),
    ] {
        let mut line = Line::new(confirm_config());
        line.answer();
        line.caller(&[], 1000);
        line.server("input_audio_buffer.speech_started");
        line.caller(&THANKS[..2400], 600);
        line.server("input_audio_buffer.speech_stopped");
        line.words(words);
        line.caller(&[], 200);
        let wire = line.wire();
        if cut {
            assert_eq!(wire[..2], ["clear", "cancel"], "{words:?}: {wire:?}");
            assert!(
                wire[2].starts_with("truncate item1 "),
                "{words:?}: {wire:?}"
            );
            assert_eq!(
                wire.last().map(String::as_str),
                Some("create"),
                "{words:?}: answered"
            );
            assert_eq!(line.decisions(), [BargeInDecision::Confirmed]);
        } else {
            assert_eq!(wire, ["clear"], "{words:?}: paused, not cut");
            assert_eq!(line.decisions(), [BargeInDecision::Resumed]);
        }
    }
}

/// Without input transcription there are no words to tell a backchannel from "stop": a short
/// sound that paused the agent cuts it off (a missed "stop" is worse than a needless stop).
#[test]
fn without_transcription_a_short_sound_that_paused_the_agent_cuts_it_off() {
    let mut c = confirm_config();
    c.session.transcription_model = None;
    let mut line = Line::new(c);
    line.answer();
    line.caller(&[], 1000);
    line.caller(&THANKS[..2400], 800);
    assert_eq!(line.wire()[..2], ["clear", "cancel"]);
    assert_eq!(line.decisions(), [BargeInDecision::Confirmed]);
}
