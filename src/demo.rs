//! `callbridge demo`: one call, entirely on this machine, that a newcomer can hear.
//!
//! The real bridge (recording the call), the in-repo Realtime simulator answering with
//! recorded agent speech, and the simulated Twilio caller speaking recorded caller speech in
//! real time: three turns, the second one interrupted by the caller. It prints a live
//! transcript and the latency of each turn, writes what both sides heard as WAV files and the
//! call itself as a fixture, and ends with a one-screen summary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::caller::{CallerEventKind, Step};
use crate::fixture::generate::{clip, record_call, Clip, GenError};
use crate::fixture::wav;
use crate::sim::{SimConfig, Simulator};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Call(#[from] GenError),
    #[error("missing speech clip {0}")]
    Clip(&'static str),
}

fn get(name: &'static str) -> Result<Clip, DemoError> {
    clip(name).ok_or(DemoError::Clip(name))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Transcript lines the simulator has sent since `seen` (caller and agent), for the live view.
fn new_transcripts(sim: &Simulator, seen: &mut usize) -> Vec<(&'static str, String)> {
    let Some(log) = sim.session(0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ev in log.sent.iter().skip(*seen) {
        let ty = ev.get("type").and_then(Value::as_str).unwrap_or("");
        let text = ev.get("transcript").and_then(Value::as_str).unwrap_or("");
        match ty {
            "conversation.item.input_audio_transcription.completed" => {
                out.push(("caller", text.to_owned()))
            }
            "response.output_audio_transcript.done" | "response.audio_transcript.done" => {
                out.push(("agent ", text.to_owned()))
            }
            _ => {}
        }
    }
    *seen = log.sent.len();
    out
}

pub async fn run(out: &Path) -> Result<(), DemoError> {
    let hello = get("caller_hello")?;
    let hours = get("caller_hours")?;
    let saturday = get("caller_saturday")?;
    let thanks = get("caller_thanks")?;
    let replies = [
        get("agent_order")?,
        get("agent_hours")?,
        get("agent_saturday")?,
        get("agent_bye")?,
    ];
    let said = [&hello, &hours, &saturday, &thanks];
    std::fs::create_dir_all(out).map_err(io(out))?;
    let rec_dir = out.join(".recording");
    let _ = std::fs::remove_dir_all(&rec_dir);

    println!("callbridge demo: a phone call on this machine, no key, no phone, no network.");
    println!(
        "  bridge (recording) ⇄ Realtime simulator; a simulated Twilio caller speaks in real time."
    );
    println!(
        "  Speech is espeak-ng (fixtures/speech); the simulator has no recogniser or LLM, so it"
    );
    println!("  \"transcribes\" and answers from the demo's script.\n");
    let sim = Simulator::start(
        "127.0.0.1:0",
        SimConfig {
            reply_texts: replies.iter().map(|c| c.text.clone()).collect(),
            reply_audio: replies.iter().map(|c| c.audio.clone()).collect(),
            caller_transcripts: said.iter().map(|c| c.text.clone()).collect(),
            delta_ms: vec![60, 100, 240],
            ..SimConfig::default()
        },
    )
    .await
    .map_err(|e| DemoError::Call(GenError::Io(e)))?;
    let wait_done = || Step::WaitAgentDone {
        quiet: Duration::from_millis(600),
        timeout: Duration::from_secs(20),
    };
    let script = vec![
        Step::Silence(Duration::from_millis(300)),
        Step::Say(hello.audio.to_vec()),
        wait_done(),
        Step::Say(hours.audio.to_vec()),
        // Talk over the long answer after two seconds of it.
        Step::WaitAgentAudio {
            heard: Duration::from_millis(2000),
            timeout: Duration::from_secs(15),
        },
        Step::Say(saturday.audio.to_vec()),
        wait_done(),
        Step::Say(thanks.audio.to_vec()),
        wait_done(),
    ];
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let env = [("transcription_model", "gpt-4o-transcribe".to_owned())];
    let mut call = Box::pin(record_call(
        &sim,
        &env,
        script,
        Duration::from_millis(200),
        &rec_dir,
        Some(tx),
    ));
    let mut seen = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let stamp = |d: Duration| format!("{:>5.1} s", d.as_secs_f64());
    let result = loop {
        tokio::select! {
            r = &mut call => break r,
            Some(ev) = rx.recv() => match ev.kind {
                CallerEventKind::SayStarted(_) => println!("{}  caller starts speaking", stamp(ev.at)),
                CallerEventKind::AgentAudio { latency } => println!(
                    "{}  agent audio reaches the caller {} ms after the caller stopped",
                    stamp(ev.at),
                    latency.as_millis()
                ),
                CallerEventKind::Clear { heard_ms } => println!(
                    "{}  BARGE-IN: the caller talks over the agent after {:.1} s of its answer; the bridge clears Twilio's buffer and truncates the answer",
                    stamp(ev.at),
                    heard_ms / 1000.0
                ),
                _ => {}
            },
            _ = tick.tick() => {
                for (who, text) in new_transcripts(&sim, &mut seen) {
                    println!("{}  {who}: \"{text}\"", stamp(started.elapsed()));
                }
            }
        }
    };
    drop(call);
    let (report, path) = result?;
    for (who, text) in new_transcripts(&sim, &mut seen) {
        println!("{}  {who}: \"{text}\"", stamp(started.elapsed()));
    }
    let log = sim.session(0);
    sim.shutdown().await;

    let call_jsonl = out.join("call.jsonl");
    std::fs::rename(&path, &call_jsonl).map_err(io(&call_jsonl))?;
    let _ = std::fs::remove_dir_all(&rec_dir);
    let caller_wav = out.join("caller.wav");
    wav::write_ulaw(&caller_wav, &report.caller_audio).map_err(io(&caller_wav))?;
    let agent_wav = out.join("agent.wav");
    wav::write_ulaw(&agent_wav, &report.agent_audio).map_err(io(&agent_wav))?;
    let both_wav = out.join("call-stereo.wav");
    wav::write_ulaw_stereo(&both_wav, &report.caller_audio, &report.agent_audio)
        .map_err(io(&both_wav))?;

    println!("\n──────── summary ────────");
    println!(
        "call            {:.1} s, outcome: {}",
        report.duration.as_secs_f64(),
        if report.closed_by_bridge {
            "ended by the bridge"
        } else {
            "caller hung up"
        }
    );
    for (i, l) in report.response_latencies.iter().enumerate() {
        println!(
            "turn {}          caller stopped → agent audio at the caller: {} ms",
            i + 1,
            l.as_millis()
        );
    }
    println!("                (≈500 ms of that is the simulated server VAD waiting for silence, as the real API does)");
    for c in &report.clears {
        println!(
            "barge-in        at {:.1} s, after {:.0} ms of the answer; {} bytes of queued audio dropped",
            c.at.as_secs_f64(),
            c.heard_in_stretch_ms,
            c.discarded_bytes
        );
    }
    if let Some(t) = log.as_ref().and_then(|l| l.truncates.first()) {
        println!(
            "truncate        the model was told the caller heard {} ms of its answer",
            t.audio_end_ms
        );
    }
    println!(
        "audio           {} caller frames sent; {:.1} s of agent audio played, {} frames, all 160 bytes: {}",
        report.frames_sent,
        report.bytes_played as f64 / 8000.0,
        report.media_received,
        report.odd_frames == 0
    );
    if !report.protocol_violations.is_empty() {
        println!("PROTOCOL VIOLATIONS: {:?}", report.protocol_violations);
    }
    println!(
        "wrote           {}  (what the caller said)",
        caller_wav.display()
    );
    println!(
        "                {}  (what the caller heard)",
        agent_wav.display()
    );
    println!(
        "                {}  (left caller, right agent)",
        both_wav.display()
    );
    println!(
        "                {}  (this call as a fixture)",
        call_jsonl.display()
    );
    println!(
        "next            cargo run --release -- replay {}",
        call_jsonl.display()
    );
    Ok(())
}
