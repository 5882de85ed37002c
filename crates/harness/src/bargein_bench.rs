//! The barge-in bench (issue 21, "Measure it honestly"): plays every clip of the labelled corpus
//! over an agent answer, and runs speakerphone calls whose only uplink sound is the agent's own
//! echo, each call through the REAL bridge (configured as given: `barge_in`, a config file, any
//! setting) between the Realtime simulator and the simulated Twilio caller. It measures from
//! outside: what the caller heard (`clear`s, when), what the model was told (truncates,
//! cancels) and what reached the model as a caller turn (the simulator's committed inputs).
//!
//! Each trial gets a bridge and a simulator of its own, so nothing has to guess which upstream
//! session served which call; trials run concurrently, in real time (the bridge's timing is
//! what is measured).

pub mod corpus;
mod table;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::caller::{self, CallerOptions, CallerReport, SpeakerEcho, Step};
use crate::config::{Config, Overrides};
use crate::metrics::Metrics;
use crate::sim::{SimConfig, Simulator};
pub use corpus::{ClipClass, CorpusClip, Half};
pub use table::{render, ClassStats, EchoStats, Summary};

/// The agent's answer every clip is played over: the long opening-hours line (10.7 s).
const ANSWER_CLIP: &str = "agent_hours";
/// After a clip, how long a `clear` still counts as caused by it (the bridge may wait for the
/// end of a sound before it decides).
const CLEAR_WINDOW_AFTER_CLIP: Duration = Duration::from_millis(1500);

/// How to run the bench.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The corpus directory (`fixtures/bargein`).
    pub corpus_dir: PathBuf,
    /// The bridge's configuration: an optional file, then these settings (config-file keys,
    /// e.g. `("barge_in", "confirm")`), which win over the file.
    pub config_file: Option<PathBuf>,
    pub settings: Vec<(String, String)>,
    /// Where in the agent's answer each clip starts (ms heard): one trial per clip and offset.
    pub offsets: Vec<Duration>,
    /// Speakerphone calls: one call per entry, each `echo_call` long.
    pub echo_paths: Vec<SpeakerEcho>,
    pub echo_call: Duration,
    /// Calls at once.
    pub concurrency: usize,
    /// Only clips whose name contains this (all when `None`).
    pub only: Option<String>,
}

impl BenchOptions {
    /// The full bench: every clip at 1.0 s and 2.5 s into the answer; echo at 40/150/300 ms
    /// and −6/−12/−20/−30 dB, plus three more calls at −12 dB / 150 ms (four in all, like the
    /// issue's measurement), 30 s each.
    pub fn full(corpus_dir: PathBuf) -> BenchOptions {
        let mut echo_paths = Vec::new();
        for delay in [40, 150, 300] {
            for level_db in [-6.0, -12.0, -20.0, -30.0] {
                echo_paths.push(SpeakerEcho {
                    delay: Duration::from_millis(delay),
                    level_db,
                });
            }
        }
        echo_paths.extend([KEY_ECHO; 3]);
        BenchOptions {
            corpus_dir,
            config_file: None,
            settings: Vec::new(),
            offsets: vec![Duration::from_millis(1000), Duration::from_millis(2500)],
            echo_paths,
            echo_call: Duration::from_secs(30),
            concurrency: 16,
            only: None,
        }
    }
}

/// The echo condition the target names: −12 dB, 150 ms.
pub const KEY_ECHO: SpeakerEcho = SpeakerEcho {
    delay: Duration::from_millis(150),
    level_db: -12.0,
};

/// One call of the bench.
#[derive(Debug, Clone)]
pub enum Trial {
    /// `clip` starts once `offset` of the agent's answer has played.
    Clip {
        clip: Arc<CorpusClip>,
        offset: Duration,
    },
    /// The caller stays silent on a speakerphone for `length`.
    Echo { echo: SpeakerEcho, length: Duration },
}

/// What one trial showed.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub trial: Trial,
    /// `clear`s the caller received over the whole call.
    pub clears: usize,
    /// For a clip: from the clip's speech onset (or its start, for a sound) to the first
    /// `clear` received while it played or just after; `None`: playback was not stopped.
    pub onset_to_clear: Option<Duration>,
    /// The answer was given up: the bridge truncated it or it was cancelled.
    pub given_up: bool,
    /// Caller-input items the simulator committed (turns the model saw from the caller).
    pub caller_turns: usize,
    /// Agent audio the caller heard, ms.
    pub heard_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Corpus(#[from] corpus::CorpusError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("call {name}: {why}")]
    Call { name: String, why: String },
}

/// The trials `opts` asks for, corpus clips first.
pub fn plan(opts: &BenchOptions) -> Result<Vec<Trial>, BenchError> {
    let mut trials = Vec::new();
    for clip in corpus::load(&opts.corpus_dir)? {
        if opts.only.as_deref().is_some_and(|o| !clip.name.contains(o)) {
            continue;
        }
        let clip = Arc::new(clip);
        for &offset in &opts.offsets {
            trials.push(Trial::Clip {
                clip: clip.clone(),
                offset,
            });
        }
    }
    for &echo in &opts.echo_paths {
        trials.push(Trial::Echo {
            echo,
            length: opts.echo_call,
        });
    }
    Ok(trials)
}

/// Runs `trials`, `opts.concurrency` calls at a time; outcomes in trial order.
pub async fn run(opts: &BenchOptions, trials: Vec<Trial>) -> Result<Vec<Outcome>, BenchError> {
    let gate = Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
    let mut tasks = Vec::new();
    for trial in trials {
        let gate = gate.clone();
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            run_trial(&opts, trial).await
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        let outcome = t.await.map_err(|e| BenchError::Call {
            name: "?".into(),
            why: e.to_string(),
        })??;
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The whole bench: plan, run, summarise.
pub async fn bench(opts: &BenchOptions) -> Result<Summary, BenchError> {
    let outcomes = run(opts, plan(opts)?).await?;
    Ok(Summary::of(&outcomes))
}

/// One call through a bridge and a simulator of its own.
pub async fn run_trial(opts: &BenchOptions, trial: Trial) -> Result<Outcome, BenchError> {
    let answer = crate::fixture::generate::clip(ANSWER_CLIP)
        .ok_or_else(|| BenchError::Config(format!("no clip {ANSWER_CLIP}")))?;
    // The simulator transcribes the caller's turn as the clip's words (what a transcriber
    // would hear; nothing for non-speech), as the real API does with `transcription_model` set.
    let caller_transcripts = match &trial {
        Trial::Clip { clip, .. } => vec![clip.words.clone()],
        Trial::Echo { .. } => Vec::new(),
    };
    let sim = Simulator::start(
        "127.0.0.1:0",
        SimConfig {
            reply_texts: vec![answer.text.clone()],
            reply_audio: vec![answer.audio.clone()],
            caller_transcripts,
            record_events: false,
            ..SimConfig::default()
        },
    )
    .await?;
    let cfg = bridge_config(opts, &sim.url())?;
    let metrics = Arc::new(Metrics::new().map_err(|e| BenchError::Config(e.to_string()))?);
    let server = crate::server::spawn(cfg, metrics).await?;
    let (script, echo, tail) = match &trial {
        Trial::Clip { clip, offset } => (
            vec![
                Step::WaitAgentAudio {
                    heard: *offset,
                    timeout: Duration::from_secs(10),
                },
                Step::Say(clip.audio.to_vec()),
                Step::Silence(CLEAR_WINDOW_AFTER_CLIP),
            ],
            None,
            Duration::from_millis(200),
        ),
        Trial::Echo { echo, length } => (vec![Step::Silence(*length)], Some(*echo), Duration::ZERO),
    };
    let report = caller::run(CallerOptions {
        bridge: server.url(""),
        script,
        tail,
        echo,
        ..CallerOptions::default()
    })
    .await;
    server.stop(Duration::from_millis(200)).await;
    let log = sim.session(0);
    sim.shutdown().await;
    let name = trial_name(&trial);
    let report = report.map_err(|e| BenchError::Call {
        name: name.clone(),
        why: e.to_string(),
    })?;
    let log = log.ok_or_else(|| BenchError::Call {
        name: name.clone(),
        why: "the bridge never opened a Realtime session".into(),
    })?;
    if report.bytes_played == 0 {
        return Err(BenchError::Call {
            name,
            why: "the caller heard no agent audio".into(),
        });
    }
    Ok(Outcome {
        onset_to_clear: onset_to_clear(&trial, &report),
        clears: report.clears.len(),
        given_up: log.truncates.iter().any(|t| t.accepted) || log.responses_cancelled > 0,
        caller_turns: log.committed_inputs.len(),
        heard_ms: report.bytes_played / 8,
        trial,
    })
}

/// A short name for a trial, for errors and tables.
pub fn trial_name(trial: &Trial) -> String {
    match trial {
        Trial::Clip { clip, offset } => format!("{} at {} ms", clip.name, offset.as_millis()),
        Trial::Echo { echo, .. } => {
            format!("echo {} dB / {} ms", echo.level_db, echo.delay.as_millis())
        }
    }
}

/// From the clip's onset to the first `clear` while it played or just after.
fn onset_to_clear(trial: &Trial, report: &CallerReport) -> Option<Duration> {
    let Trial::Clip { clip, .. } = trial else {
        return None;
    };
    let said = report.says.first()?;
    let onset = said.started + Duration::from_millis(clip.onset_ms.unwrap_or(0));
    let until = said.ended.unwrap_or(report.duration) + CLEAR_WINDOW_AFTER_CLIP;
    report
        .clears
        .iter()
        .find(|c| c.at >= said.started && c.at <= until)
        .map(|c| c.at.saturating_sub(onset))
}

/// The bridge's configuration for one trial: the bench's file and settings, dialling `sim`,
/// on a free port, greeting first (so each call opens with the answer the clip is played over).
fn bridge_config(opts: &BenchOptions, sim_url: &str) -> Result<Config, BenchError> {
    let env = |k: &str| -> Option<String> {
        match k {
            "REALTIME_URL" => Some(sim_url.to_owned()),
            "CALLBRIDGE_LISTEN" => Some("127.0.0.1:0".into()),
            _ => {
                let key = k.strip_prefix("CALLBRIDGE_")?.to_ascii_lowercase();
                let set = opts.settings.iter().find(|(n, _)| *n == key);
                match (key.as_str(), set) {
                    (_, Some((_, v))) => Some(v.clone()),
                    ("greeting", None) => Some("Tell the caller the opening hours.".into()),
                    // Phone deployments transcribe the caller (reports, and the words decide
                    // whether a short sound over the agent was a backchannel).
                    ("transcription_model", None) => Some("gpt-4o-transcribe".into()),
                    _ => None,
                }
            }
        }
    };
    Config::load(opts.config_file.as_deref(), &env, &Overrides::default())
        .map_err(|e| BenchError::Config(e.to_string()))
}
