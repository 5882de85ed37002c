//! Recorded calls: every fixture in `fixtures/` replays green against the current bridge
//! (fast), four replay in real time (timing, barge-in position, truncate, a call that
//! re-dialled its upstream), calls recorded by the server's `record_dir` (one of them across an
//! upstream drop and a failed re-dial) replay green, and a replay notices when the bridge's
//! behaviour differs from the recording.

use std::path::{Path, PathBuf};
use std::time::Duration;

use callbridge::caller::{CallerReport, Step};
use callbridge::fixture::generate::{clip, record_call, Clip};
use callbridge::fixture::replay::{replay, ReplayOptions};
use callbridge::recording::{Dir, RecordedCall};
use callbridge::sim::SimConfig;
use serde_json::Value;

mod support;
use support::caller::{agent_done, hear_agent, pause};
use support::{bridge, eventually, simulator, TempDir};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn all_fixtures() -> Vec<PathBuf> {
    callbridge::fixture::generate::jsonl_files(&fixtures_dir())
}

async fn replay_ok(path: &Path, fast: bool) {
    let fx = RecordedCall::load(path).expect("fixture parses");
    let r = replay(
        &fx,
        &ReplayOptions {
            fast,
            ..Default::default()
        },
    )
    .await
    .expect("replay runs");
    assert!(r.ok(), "{}", r.render());
}

/// A simulator that "transcribes" the caller's clips as their text and answers with the
/// agent's clips, in order.
fn speaking(callers: &[&Clip], agents: &[&Clip]) -> SimConfig {
    SimConfig {
        reply_texts: agents.iter().map(|c| c.text.clone()).collect(),
        reply_audio: agents.iter().map(|c| c.audio.clone()).collect(),
        caller_transcripts: callers.iter().map(|c| c.text.clone()).collect(),
        ..SimConfig::default()
    }
}

/// The named clips of the built-in library.
fn clips<const N: usize>(names: [&str; N]) -> [Clip; N] {
    names.map(|name| clip(name).expect("clip"))
}

/// Records one call through a bridge (with `env`) on a simulator configured with `sim`, then
/// stops the simulator; the caller's report and the recording's path.
async fn record(
    sim: SimConfig,
    env: &[(&str, String)],
    script: Vec<Step>,
    tail_ms: u64,
    dir: &Path,
) -> (CallerReport, PathBuf) {
    let sim = simulator(sim).await;
    let recorded = record_call(
        &sim,
        env,
        script,
        Duration::from_millis(tail_ms),
        dir,
        None,
        None,
    )
    .await
    .expect("call recorded");
    sim.shutdown().await;
    recorded
}

/// Replays a recording fast, then in real time; both must match.
async fn replay_both_ways(path: &Path) {
    replay_ok(path, true).await;
    replay_ok(path, false).await;
}

/// Replays a doctored fixture, which must not match; the report as printed.
async fn replay_mismatch(fx: &RecordedCall, fast: bool) -> String {
    let r = replay(
        fx,
        &ReplayOptions {
            fast,
            ..Default::default()
        },
    )
    .await
    .expect("replay runs");
    assert!(!r.ok(), "{}", r.render());
    r.render()
}

#[test]
fn fixtures_cover_the_issue_and_stay_small() {
    let files = all_fixtures();
    assert!(files.len() >= 8, "{files:?}");
    let mut total = 0;
    let (mut ga, mut beta, mut pcmu, mut pcm) = (false, false, false, false);
    let (mut clear, mut dtmf, mut error, mut up_close, mut greeting, mut hangup) =
        (false, false, false, false, false, false);
    // A call that re-dialled: a failed dial, and a later session that the call went on in.
    let (mut dial_failed, mut later_session) = (false, false);
    for f in &files {
        total += std::fs::metadata(f).expect("stat").len();
        let fx = RecordedCall::load(f).expect("fixture parses");
        ga |= fx.header.dialect == "ga";
        beta |= fx.header.dialect == "beta";
        pcmu |= fx.header.audio_mode == "pcmu";
        pcm |= fx.header.audio_mode == "pcm";
        greeting |= fx.header.config.contains_key("greeting");
        assert!(!fx.header.description.is_empty(), "{}", f.display());
        for l in &fx.lines {
            clear |= l.dir == Dir::TwilioOut && l.kind() == "clear";
            dtmf |= l.dir == Dir::TwilioIn && l.kind() == "dtmf";
            error |= l.dir == Dir::RealtimeIn && l.kind() == "error";
            up_close |= l.dir == Dir::RealtimeIn && l.close().is_some();
            dial_failed |= l.dir == Dir::RealtimeIn && l.kind() == "dial_failed";
            later_session |= l.session > 1 && l.kind() == "session.update";
            hangup |= l.dir == Dir::TwilioOut
                && l.close().is_some_and(|(_, r)| r == "caller_hung_up")
                && fx.lines.iter().any(|x| {
                    x.dir == Dir::RealtimeIn
                        && x.t_ms > l.t_ms.saturating_sub(300)
                        && x.kind().ends_with("audio.delta")
                });
        }
        // Real speech, not silence: the caller's audio has loud frames.
        let audio = fx.caller_audio();
        let loud = audio
            .chunks(160)
            .filter(|f| {
                let e: f64 = f
                    .iter()
                    .map(|&b| (audio_codec_algorithms::decode_ulaw(b) as f64).powi(2))
                    .sum();
                (e / f.len() as f64).sqrt() > 1000.0
            })
            .count();
        assert!(loud > 50, "{}: {loud} loud frames", f.display());
        // No secret: the key the generator's bridge would send never appears, nor a header.
        let text = std::fs::read_to_string(f).expect("read");
        assert!(!text.contains("sk-"), "{}", f.display());
        assert!(!text.to_ascii_lowercase().contains("authorization"));
    }
    assert!(ga && beta && pcmu && pcm, "dialects and modes");
    assert!(clear && dtmf && error && up_close && greeting && hangup);
    assert!(dial_failed && later_session, "a call that re-dialled");
    // 6 MiB since the tool, end_call and transfer fixtures (0.6 MB) joined.
    assert!(total < 6 * 1024 * 1024, "fixtures/ is {total} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_replays_fast() {
    let files = all_fixtures();
    assert!(!files.is_empty());
    for f in files {
        replay_ok(&f, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_replays_in_real_time() {
    replay_ok(&fixtures_dir().join("barge-in-pcmu-ga.jsonl"), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcm_barge_in_replays_in_real_time() {
    replay_ok(&fixtures_dir().join("barge-in-pcm-ga.jsonl"), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_close_replays_in_real_time() {
    replay_ok(&fixtures_dir().join("upstream-closes-pcmu-ga.jsonl"), false).await;
}

/// The sessions (by recorded number) the replayed bridge sent anything to.
fn sessions_used(actual: &[callbridge::recording::Line]) -> Vec<u64> {
    let mut v: Vec<u64> = actual
        .iter()
        .filter(|l| l.dir == Dir::RealtimeOut)
        .map(|l| l.session)
        .collect();
    v.dedup();
    v
}

/// A call whose upstream dropped mid-sentence, whose first re-dial failed and which went on in
/// a third session replays in real time: the replay refuses the second connection as recorded,
/// serves the first and third as those sessions, and the bridge sends the third the
/// `session.update` and the kept sentence it sent when the call was recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_redialled_replays_in_real_time() {
    let fx = RecordedCall::load(&fixtures_dir().join("upstream-drop-redial-pcmu-ga.jsonl"))
        .expect("fixture parses");
    let r = replay(&fx, &ReplayOptions::default())
        .await
        .expect("replay runs");
    assert!(r.ok(), "{}", r.render());
    assert_eq!(sessions_used(&r.actual), [1, 3], "{}", r.render());
    assert!(r
        .actual
        .iter()
        .any(|l| l.session == 3 && l.kind() == "session.update"));
}

/// A recording whose re-dialled session got less caller audio than the bridge now sends it
/// (as if the kept sentence had not been resent): the replay says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redial_without_the_kept_sentence_is_reported() {
    let mut fx = RecordedCall::load(&fixtures_dir().join("upstream-drop-redial-pcmu-ga.jsonl"))
        .expect("fixture parses");
    // The appends the third session got before its server heard the speech start: the kept
    // start of the sentence.
    let heard = fx
        .lines
        .iter()
        .position(|l| l.session == 3 && l.kind() == "input_audio_buffer.speech_started")
        .expect("the third session hears the sentence");
    let before = fx.lines.len();
    let mut i = 0;
    fx.lines.retain(|l| {
        i += 1;
        !(i <= heard && l.session == 3 && l.kind() == "input_audio_buffer.append")
    });
    assert!(fx.lines.len() < before, "the kept sentence was recorded");
    let text = replay_mismatch(&fx, true).await;
    assert!(text.contains("caller audio appended: recorded"), "{text}");
}

/// The server's `record_dir` numbers the sessions of a call that re-dialled, and such a
/// recording, made now through the real bridge, replays green: the drop-and-redial scenario
/// recorded live (the simulator drops the first session mid-sentence and the next connection
/// before its handshake), then replayed fast and in real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_recorded_across_a_redial_replays_green() {
    let sc = callbridge::fixture::generate::scenarios()
        .into_iter()
        .find(|s| s.drop_upstream_mid_sentence)
        .expect("the re-dial scenario");
    let dir = TempDir::new("replay-redial");
    let path = callbridge::fixture::generate::generate(&sc, &dir)
        .await
        .expect("call recorded");
    let fx = RecordedCall::load(&path).expect("the recording is a valid fixture");
    assert_eq!(fx.header.callbridge_fixture, 2);
    let failed: Vec<(u64, Option<u16>)> = fx
        .lines
        .iter()
        .filter_map(|l| l.dial_failed().map(|f| (l.session, f)))
        .collect();
    assert_eq!(
        failed,
        [(2, None)],
        "the second dial failed before its handshake"
    );
    assert!(fx
        .lines
        .iter()
        .any(|l| l.session == 1 && l.dir == Dir::RealtimeIn && l.close() == Some((None, ""))));
    assert!(fx
        .lines
        .iter()
        .any(|l| l.session == 3 && l.kind() == "response.done"));
    replay_both_ways(&path).await;
}

/// A fixture whose recorded bridge output differs from what the bridge does now: the replay
/// must fail and say where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_behaviour_is_reported() {
    let path = fixtures_dir().join("barge-in-pcmu-ga.jsonl");
    let mut fx = RecordedCall::load(&path).expect("fixture parses");
    // Pretend the recorded bridge never sent the clear (as if barge-in had been broken then).
    let i = fx
        .lines
        .iter()
        .position(|l| l.dir == Dir::TwilioOut && l.kind() == "clear")
        .expect("the fixture has a clear");
    fx.lines.remove(i);
    // And that it truncated somewhere else entirely.
    for l in &mut fx.lines {
        if l.dir == Dir::RealtimeOut && l.kind() == "conversation.item.truncate" {
            l.msg["audio_end_ms"] = Value::from(9999);
        }
    }
    let text = replay_mismatch(&fx, false).await;
    assert!(text.contains("MISMATCH"), "{text}");
    assert!(text.contains("+ ") && text.contains("clear"), "{text}");
    assert!(text.contains("audio_end_ms: recorded 9999"), "{text}");
}

/// `record_dir` on a real server: the call it writes is a valid fixture, holds no key, and
/// replays green in both modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_recorded_by_the_server_replays_green() {
    let dir = TempDir::new("replay-rec");
    let [ask, answer] = clips(["caller_hours", "agent_saturday"]);
    let sim = SimConfig {
        delta_ms: vec![60, 100, 240],
        require_api_key: Some("sk-test-recorded-key".into()),
        ..speaking(&[&ask], &[&answer])
    };
    let env = [("openai_api_key", "sk-test-recorded-key".to_owned())];
    let (report, path) = record(
        sim,
        &env,
        vec![
            pause(200),
            Step::Say(ask.audio.to_vec()),
            hear_agent(800, 10),
            Step::Say(ask.audio.to_vec()),
            agent_done(500, 10),
        ],
        100,
        &dir,
    )
    .await;
    assert_eq!(report.clears.len(), 1, "the caller barged in");
    let text = std::fs::read_to_string(&path).expect("recording");
    assert!(
        !text.contains("sk-test-recorded-key"),
        "the key is not recorded"
    );
    let fx = RecordedCall::load(&path).expect("the recording is a valid fixture");
    // Beside it: a stereo WAV to listen to and the transcript, with the interrupted answer
    // marked.
    let wav = std::fs::read(path.with_extension("wav")).expect("stereo WAV written");
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 2, "stereo");
    let seconds = (wav.len() - 44) as f64 / (8000.0 * 2.0 * 2.0);
    let call_s = fx.lines.last().map_or(0, |l| l.t_ms) as f64 / 1000.0;
    assert!(
        (seconds - call_s).abs() < 1.0,
        "{seconds} s of audio for a {call_s} s call"
    );
    let transcript: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path.with_extension("transcript.json")).expect("transcript"),
    )
    .expect("transcript is JSON");
    let entries = transcript.as_array().expect("array");
    assert!(entries.iter().any(|e| e["who"] == "caller"));
    assert!(entries
        .iter()
        .any(|e| e["who"] == "agent" && e["interrupted_after_ms"].is_u64()));
    assert_eq!(fx.header.audio_mode, "pcmu");
    // Every message on both sockets, each direction present, times increasing.
    for d in [
        Dir::TwilioIn,
        Dir::TwilioOut,
        Dir::RealtimeIn,
        Dir::RealtimeOut,
    ] {
        assert!(fx.lines.iter().any(|l| l.dir == d), "{d:?}");
    }
    assert!(fx.lines.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));
    let media_in = fx
        .lines
        .iter()
        .filter(|l| l.dir == Dir::TwilioIn && l.kind() == "media")
        .count() as u64;
    assert_eq!(media_in, report.frames_sent, "every caller frame recorded");
    replay_both_ways(&path).await;
}

/// A call recorded while its Realtime session was rotated (a successor opened, configured and
/// switched to while the old one was still open: two sessions at once) replays green both
/// ways, each session's events compared as that session's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_recorded_across_a_session_rotation_replays_green() {
    let dir = TempDir::new("replay-rotation");
    let [ask, thanks, answer, bye] =
        clips(["caller_hello", "caller_thanks", "agent_order", "agent_bye"]);
    let sim = SimConfig {
        delta_ms: vec![60, 100, 240],
        ..speaking(&[&ask, &thanks], &[&answer, &bye])
    };
    let done = || agent_done(500, 10);
    let (_, path) = record(
        sim,
        &[("session_rotate_after_secs", "1".to_owned())],
        vec![
            pause(300),
            Step::Say(ask.audio.to_vec()),
            done(),
            pause(1500),
            Step::Say(thanks.audio.to_vec()),
            done(),
        ],
        200,
        &dir,
    )
    .await;
    let fx = RecordedCall::load(&path).expect("the recording is a valid fixture");
    let updates: Vec<u64> = fx
        .lines
        .iter()
        .filter(|l| l.kind() == "session.update")
        .map(|l| l.session)
        .collect();
    assert!(updates.len() >= 2, "the session was rotated: {updates:?}");
    replay_both_ways(&path).await;
}

/// A call that ran with an agent profile (chosen at Twilio's `start`) is recorded with the
/// profile's settings in its header, and replays green on a bridge that has no profiles: the
/// replayed `session.update` is the profile's, as the recorded one was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_recorded_with_a_profile_replays_green() {
    let dir = TempDir::new("replay-profile");
    let [ask, answer] = clips(["caller_hours", "agent_saturday"]);
    let sim = simulator(speaking(&[&ask], &[&answer])).await;
    let file = dir.file(
        "profiles.toml",
        "instructions = \"You are the front desk.\"\n\
         default_profile = \"sales\"\n\
         [profiles.sales]\n\
         instructions = \"You are Sam, in sales.\"\n\
         voice = \"cedar\"\n",
    );
    let calls = dir.join("calls");
    let (server, _) = bridge::start(
        &[
            ("REALTIME_URL", &sim.url()),
            (
                "CALLBRIDGE_RECORD_DIR",
                calls.to_str().expect("a UTF-8 path"),
            ),
        ],
        Some(&file),
    )
    .await;
    callbridge::caller::run(callbridge::caller::CallerOptions {
        bridge: server.url(""),
        script: vec![
            pause(200),
            Step::Say(ask.audio.to_vec()),
            agent_done(500, 10),
        ],
        tail: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .expect("call runs");
    let mut path = None;
    eventually(Duration::from_secs(5), async || {
        path = callbridge::fixture::generate::jsonl_files(&calls)
            .into_iter()
            .next();
        path.is_some()
    })
    .await;
    server.stop(Duration::from_millis(500)).await;
    sim.shutdown().await;
    let path = path.expect("the call was recorded");
    let fx = RecordedCall::load(&path).expect("the recording is a valid fixture");
    assert_eq!(
        fx.header.config.get("instructions").map(String::as_str),
        Some("You are Sam, in sales."),
        "the header holds the profile's settings"
    );
    assert_eq!(
        fx.header.config.get("voice").map(String::as_str),
        Some("cedar")
    );
    replay_ok(&path, true).await;
}
