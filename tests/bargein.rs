//! Barge-in through the real server and the Realtime simulator, one test per class of the
//! labelled corpus (fixtures/bargein, scripts/make-bargein-corpus.sh) and per `barge_in` mode:
//! `confirm` (the default of issue 21) is held to the targets; `server` (the bridge
//! acting on every server `speech_started`, the behaviour before issue 21) is held to what it
//! does, so each measurement is shown able to fail. The simulator's VAD fires on energy, like
//! the real server's on noise. Speed (onset → `clear`) is not asserted here (shared, noisy
//! machines): `callbridge bargein-bench` measures it (docs/interruptions.md).

use std::path::Path;
use std::time::Duration;

use callbridge::bargein_bench::{
    plan, run, BenchOptions, ClassStats, ClipClass, EchoStats, Summary, Trial, KEY_ECHO,
};

/// The bridge's settings for `mode` (`barge_in`; the bench transcribes the caller, as phone
/// deployments do).
fn settings(mode: &str) -> Vec<(String, String)> {
    vec![("barge_in".into(), mode.into())]
}

fn options(mode: &str) -> BenchOptions {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bargein");
    BenchOptions {
        settings: settings(mode),
        offsets: vec![Duration::from_millis(1000)],
        echo_paths: Vec::new(),
        echo_call: Duration::from_secs(12),
        concurrency: 8,
        ..BenchOptions::full(corpus)
    }
}

/// Every clip of `class` (both halves) over an answer, through the bridge in `mode`.
async fn clips(mode: &str, class: ClipClass, min_level_db: f32) -> ClassStats {
    let opts = options(mode);
    let trials: Vec<Trial> = plan(&opts)
        .expect("the corpus loads")
        .into_iter()
        .filter(|t| matches!(t, Trial::Clip { clip, .. } if clip.class == class && clip.level_db >= min_level_db))
        .collect();
    assert!(!trials.is_empty());
    let outcomes = run(&opts, trials).await.expect("every call runs");
    Summary::of(&outcomes).class(class)
}

/// Two speakerphone calls at −12 dB / 150 ms, the caller silent.
async fn echo(mode: &str) -> EchoStats {
    let mut opts = options(mode);
    opts.echo_paths = vec![KEY_ECHO; 2];
    let trials: Vec<Trial> = plan(&opts)
        .expect("the corpus loads")
        .into_iter()
        .filter(|t| matches!(t, Trial::Echo { .. }))
        .collect();
    let outcomes = run(&opts, trials).await.expect("every call runs");
    Summary::of(&outcomes)
        .key_echo()
        .cloned()
        .expect("echo calls ran")
}

// --- server: today's behaviour, each measurement shown able to fail --------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mode_noise_cuts_the_answer() {
    // The sounds loud enough for an energy VAD (-10 and -20 dBFS peak).
    let s = clips("server", ClipClass::Noise, -20.0).await;
    assert!(
        s.cut_pct() >= 50.0,
        "{} of {} noises cut the answer",
        s.cut,
        s.trials
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mode_backchannels_throw_the_answer_away() {
    let s = clips("server", ClipClass::Backchannel, -100.0).await;
    assert!(s.given_up_pct() >= 50.0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mode_echo_cuts_the_agent_and_reaches_the_model() {
    let e = echo("server").await;
    assert!(e.cuts > 0 && e.turns > 0, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mode_catches_real_interruptions() {
    let s = clips("server", ClipClass::Interruption, -100.0).await;
    assert!(s.caught_pct() >= 98.0, "{s:?}");
}

// --- confirm: the targets -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_mode_noise_cuts_at_most_5_percent_of_answers() {
    let s = clips("confirm", ClipClass::Noise, -100.0).await;
    assert!(
        s.cut_pct() <= 5.0 && s.given_up_pct() <= 5.0,
        "{} of {} noises stopped the answer, {} gave it up",
        s.cut,
        s.trials,
        s.given_up
    );
    // The server's VAD still commits loud noise as a caller turn (the simulator's fires on
    // energy, as the real one does on noise); the bridge neither stops nor re-answers for it.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_mode_backchannels_give_up_at_most_15_percent_of_answers() {
    let s = clips("confirm", ClipClass::Backchannel, -100.0).await;
    assert!(s.given_up_pct() <= 15.0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "not true yet (issue 21): the echo gate locks on too late and loses the echo after \
            a pause; echo still pauses the agent (docs/interruptions.md)"]
async fn confirm_mode_echo_neither_cuts_nor_reaches_the_model() {
    let e = echo("confirm").await;
    assert_eq!((e.cuts, e.turns), (0, 0), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_mode_catches_real_interruptions() {
    let s = clips("confirm", ClipClass::Interruption, -100.0).await;
    assert!(s.caught_pct() >= 98.0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mode_a_quiet_line_never_cuts_the_answer() {
    quiet_line_never_cuts("server").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_mode_a_quiet_line_never_cuts_the_answer() {
    quiet_line_never_cuts("confirm").await;
}

async fn quiet_line_never_cuts(mode: &str) {
    let s = clips(mode, ClipClass::Silence, -100.0).await;
    assert_eq!(
        (s.cut, s.given_up, s.caller_turns),
        (0, 0, 0),
        "{mode}: {s:?}"
    );
}
