//! The agent presses keys (`send_dtmf`), in the call state machine: the tones' spectrum, level
//! and timing as an independent Goertzel receiver hears them, their place in Twilio's queue
//! after the agent's speech, the tool's output once their mark echoes, refusals the model can
//! read, and a barge-in that does not cut a key.

use callbridge::audio::dtmf;
use callbridge::call::tools::ToolsConfig;
use callbridge::call::{CallConfig, CallEvent, Output};
use callbridge::caller::dtmf_detect::{listen, Heard};
use callbridge::twilio::Outbound;
use serde_json::json;

mod support;
use support::call_harness::{events, frames, marks, to_twilio, H};
use support::tool_calls::{to_model, CALLER};

fn config() -> CallConfig {
    CallConfig {
        tools: ToolsConfig {
            send_dtmf: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn concat(frames: &[[u8; 160]]) -> Vec<u8> {
    frames.iter().flatten().copied().collect()
}

/// Each key, start ms, end ms.
fn timeline(heard: &[Heard]) -> Vec<(char, usize, usize)> {
    heard
        .iter()
        .filter_map(|h| Some((h.key?, h.start_ms, h.end_ms)))
        .collect()
}

#[test]
fn every_key_is_its_q23_pair_at_q24_levels_for_100_ms() {
    for key in "0123456789*#ABCD".chars() {
        let presses = dtmf::parse(&key.to_string()).expect("a key");
        let audio: Vec<u8> = dtmf::frames(&presses).flatten().collect();
        let heard = listen(&audio);
        assert_eq!(heard.len(), 1, "{key}: one stretch: {heard:?}");
        let h = &heard[0];
        assert_eq!(h.key, Some(key), "{h:?}");
        let (lo, hi) = dtmf::frequencies(key).expect("nominal");
        // Q.23: the sender's frequencies within ±1.8 %; ours are exact to the 1 Hz scan.
        assert!(
            (h.low_hz - lo).abs() <= 1.0,
            "{key}: low {} vs {lo}",
            h.low_hz
        );
        assert!(
            (h.high_hz - hi).abs() <= 1.0,
            "{key}: high {} vs {hi}",
            h.high_hz
        );
        // Q.24 nominal: −11 dBm0 low, −9 dBm0 high, 2 dB twist (μ-law quantisation: ±0.5 dB).
        assert!((h.low_dbm0 + 11.0).abs() < 0.5, "{key}: {h:?}");
        assert!((h.high_dbm0 + 9.0).abs() < 0.5, "{key}: {h:?}");
        assert!((h.twist_db() - 2.0).abs() < 0.5, "{key}: {h:?}");
        assert_eq!((h.start_ms, h.duration_ms()), (0, 100), "{key}: {h:?}");
        assert_eq!(audio.len(), 200 * 8, "{key}: tone then a 100 ms gap");
    }
}

#[test]
fn a_key_string_plays_in_order_with_gaps_and_pauses() {
    let presses = dtmf::parse("1w2#").expect("keys");
    let audio: Vec<u8> = dtmf::frames(&presses).flatten().collect();
    assert_eq!(
        timeline(&listen(&audio)),
        [('1', 0, 100), ('2', 700, 800), ('#', 900, 1000)],
        "100 ms keys, 100 ms gaps, w = 500 ms more"
    );
    assert_eq!(audio.len(), 1100 * 8);
}

/// A started call whose agent said 300 ms (`r1`, marks unechoed) and then called `send_dtmf`
/// with `args` (call `k1` of `r2`, at 150 ms): the call and the outputs of both responses.
fn pressed(cfg: CallConfig, args: &str) -> (H, Vec<Output>, Vec<Output>) {
    let mut h = H::started(cfg, CALLER);
    let speech = h.speak("r1", "i1", 300, 100);
    let outs = h.model_calls("r2", &[("k1", "send_dtmf", args)], "completed", 150);
    (h, speech, outs)
}

#[test]
fn keys_follow_the_queued_speech_and_the_output_waits_for_their_echo() {
    let (mut h, speech, outs) = pressed(config(), r#"{"digits":"1w2#"}"#);
    let said = frames(&speech);
    assert_eq!(said.len(), 15);
    let tones = frames(&outs);
    assert_eq!(
        to_twilio(&outs).last(),
        Some(&Outbound::Mark(marks(&outs)[0].clone())),
        "the keys end with a mark: {outs:?}"
    );
    assert_eq!(marks(&outs).len(), 1);
    // What the caller hears, in Twilio's order: the speech, then the keys.
    let mut line = said.clone();
    line.extend(tones.iter().copied());
    let heard = listen(&concat(&line));
    assert_eq!(heard[0].key, None, "the speech is no key: {heard:?}");
    assert_eq!(
        timeline(&heard),
        [('1', 400, 500), ('2', 1100, 1200), ('#', 1300, 1400)],
        "after 300 ms of speech and a 100 ms guard gap"
    );
    assert_eq!(
        to_model(&outs),
        (vec![], 0),
        "nothing told before it is heard"
    );

    // Time alone is no proof; the speech's echo is not the keys'.
    assert_eq!(to_model(&h.tick(1_500)).0, vec![]);
    assert_eq!(to_model(&h.echo_all(&marks(&speech), 1_000)).0, vec![]);
    let outs = h.echo_all(&marks(&outs), 1_700);
    assert_eq!(
        to_model(&outs),
        (vec![("k1".into(), json!({"played": "1w2#"}))], 1),
        "the output says what was played, then one response.create"
    );
    assert!(events(&outs).iter().any(|e| matches!(e,
        CallEvent::ToolCall { tool, result: "ok", .. } if tool == "send_dtmf")));
    assert!(events(&outs).contains(&CallEvent::PlayoutDone));
}

#[test]
fn bad_keys_get_an_error_the_model_can_read_and_play_nothing() {
    for (args, says) in [
        (r#"{"digits":"12x"}"#, "'x' is not a key"),
        (r#"{"digits":""}"#, "no key"),
        (r#"{}"#, "digits is required"),
        (r#"{"digits":5}"#, "digits is required"),
    ] {
        let (_, _, outs) = pressed(config(), args);
        assert!(frames(&outs).is_empty(), "{args}: nothing played");
        let (out, creates) = to_model(&outs);
        assert_eq!(out.len(), 1, "{args}: {outs:?}");
        let error = out[0].1["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{args}: {error}");
        assert_eq!(creates, 1, "the model is asked to speak about it");
    }
    // Not enabled: no such tool.
    let (_, _, outs) = pressed(CallConfig::default(), r#"{"digits":"1"}"#);
    assert!(frames(&outs).is_empty());
    let error = to_model(&outs).0[0].1["error"].to_string();
    assert!(error.contains("no tool named"), "{error}");
}

#[test]
fn a_barge_in_does_not_cut_the_keys() {
    let (mut h, speech, outs) = pressed(config(), r#"{"digits":"9"}"#);
    let outs_b = h.rt(
        json!({"type":"input_audio_buffer.speech_started","audio_start_ms":200,"item_id":"u1"}),
        500,
    );
    assert!(
        !to_twilio(&outs_b).contains(&Outbound::Clear),
        "keys queued: nothing cleared: {outs_b:?}"
    );
    h.echo_all(&marks(&speech), 600);
    let done = h.echo_all(&marks(&outs), 900);
    assert_eq!(
        to_model(&done).0,
        vec![("k1".into(), json!({"played": "9"}))]
    );
    // Once the keys are heard, a barge-in clears the agent's audio again.
    h.speak("r3", "i3", 500, 1_000);
    let outs_c = h.rt(
        json!({"type":"input_audio_buffer.speech_started","audio_start_ms":900,"item_id":"u2"}),
        1_100,
    );
    assert!(to_twilio(&outs_c).contains(&Outbound::Clear));
}

#[test]
fn keys_the_line_never_confirms_are_reported_unconfirmed_in_the_end() {
    let (mut h, _, _) = pressed(config(), r#"{"digits":"5"}"#);
    let deadline = h.call.next_deadline().expect("a deadline for the echo");
    let ms = deadline.duration_since(h.t0).as_millis() as u64;
    // 150 ms + (guard + key + gap = 300 ms) + 10 s of grace.
    assert_eq!(ms, 150 + 300 + 10_000);
    assert_eq!(to_model(&h.tick(ms - 1)).0, vec![]);
    let (out, creates) = to_model(&h.tick(ms));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1["played"], "5");
    assert_eq!(out[0].1["confirmed"], false);
    assert_eq!(creates, 1);
}

#[test]
fn the_keys_count_as_agent_audio_until_heard() {
    // A hang-up or a silence check-in waits for them like for speech.
    let (h, _, _) = pressed(config(), r#"{"digits":"12"}"#);
    assert!(
        h.call.playback().audible(h.at(5_000)),
        "no echo: still playing"
    );
}

#[test]
fn a_filler_still_sounding_is_cleared_before_the_keys_not_after() {
    let mut cfg = support::tool_calls::config();
    cfg.tools.send_dtmf = true;
    let mut h = H::started(cfg, CALLER);
    h.first_answer_calls(&[("c1", "lookup_order", r#"{"order_id":"1"}"#)]);
    // The filler (3 frames: 60 ms) starts at 1300 ms; the keys are pressed while it sounds.
    assert_eq!(frames(&h.tick(1_300)).len(), 3, "the filler plays");
    let outs = h.model_calls(
        "r2",
        &[("k1", "send_dtmf", r#"{"digits":"3"}"#)],
        "completed",
        1_320,
    );
    let sent = to_twilio(&outs);
    let clear = sent.iter().position(|m| *m == Outbound::Clear);
    let first_media = sent.iter().position(|m| matches!(m, Outbound::Media(_)));
    assert!(
        clear.is_some() && clear < first_media,
        "clear at {clear:?}, keys from {first_media:?}"
    );
    assert_eq!(sent.iter().filter(|m| **m == Outbound::Clear).count(), 1);
    // The next model audio clears nothing: the keys are not the filler.
    let outs = h.speak("r3", "i3", 200, 1_500);
    assert!(!to_twilio(&outs).contains(&Outbound::Clear));
}
