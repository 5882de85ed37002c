//! `callbridge demo`: one call, entirely on this machine, that a newcomer can hear.
//!
//! The real bridge (recording the call), the in-repo Realtime simulator answering with
//! recorded agent speech, and the simulated Twilio caller speaking recorded caller speech in
//! real time: the agent looks an order up with a tool (a tiny HTTP endpoint the demo starts,
//! checking the bridge's signature), answers a question the caller interrupts, and ends the
//! call with `end_call` once the caller has heard its goodbye (hanging up through a local fake
//! of Twilio's REST API). It prints a live transcript and the latency of each turn, writes
//! what both sides heard as WAV files and the call itself as a fixture, and ends with a
//! one-screen summary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::caller::{CallerEventKind, Step};
use crate::fixture::generate::{clip, record_call, silent_clip, Clip, GenError};
use crate::fixture::tool_rig::ToolRig;
use crate::recording::wav;
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

/// Transcript lines the simulator has sent since `seen` (caller and agent), and tool results
/// the bridge sent it since `seen_in`, for the live view.
fn new_transcripts(
    sim: &Simulator,
    seen: &mut usize,
    seen_in: &mut usize,
) -> Vec<(&'static str, String)> {
    let Some(log) = sim.session(0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ev in log.sent.iter().skip(*seen) {
        let ty = ev.get("type").and_then(Value::as_str).unwrap_or("");
        let text = ev.get("transcript").and_then(Value::as_str).unwrap_or("");
        if ty.contains("transcript") && text.is_empty() {
            continue; // a turn in which the model only called a tool
        }
        match ty {
            "response.function_call_arguments.done" => {
                let name = ev.get("name").and_then(Value::as_str).unwrap_or("?");
                let args = ev.get("arguments").and_then(Value::as_str).unwrap_or("");
                out.push(("agent ", format!("calls the tool {name}({args})")));
            }
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
    for ev in log.received.iter().skip(*seen_in) {
        if ev.pointer("/item/type").and_then(Value::as_str) == Some("function_call_output") {
            let output = ev
                .pointer("/item/output")
                .and_then(Value::as_str)
                .unwrap_or("");
            out.push(("tool  ", format!("answer to the model: {output}")));
        }
    }
    *seen_in = log.received.len();
    out
}

pub async fn run(out: &Path) -> Result<(), DemoError> {
    let hello = get("caller_hello")?;
    let number = get("caller_number")?;
    let hours = get("caller_hours")?;
    let saturday = get("caller_saturday")?;
    let thanks = get("caller_thanks")?;
    // The model's turns; the silent ones only call a tool.
    let replies = [
        get("agent_order")?,
        silent_clip(),
        get("agent_found")?,
        get("agent_hours")?,
        get("agent_saturday")?,
        silent_clip(),
        get("agent_bye")?,
    ];
    let tool_calls = vec![
        vec![],
        vec![(
            "lookup_order".to_string(),
            r#"{"order_id":"427991"}"#.to_string(),
        )],
        vec![],
        vec![],
        vec![],
        vec![(
            "end_call".to_string(),
            r#"{"reason":"the caller said goodbye"}"#.to_string(),
        )],
    ];
    let said = [&hello, &number, &hours, &saturday, &thanks];
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
            reply_tool_calls: tool_calls,
            delta_ms: vec![60, 100, 240],
            ..SimConfig::default()
        },
    )
    .await
    .map_err(|e| DemoError::Call(GenError::Io(e)))?;
    // The caller says a line, then listens until the agent is done answering it.
    let turn = |line: &Clip| {
        vec![
            Step::Say(line.audio.to_vec()),
            Step::WaitAgentDone {
                quiet: Duration::from_millis(600),
                timeout: Duration::from_secs(20),
            },
        ]
    };
    let talk_over_after_two_seconds = Step::WaitAgentAudio {
        heard: Duration::from_millis(2000),
        timeout: Duration::from_secs(15),
    };
    // The agent says goodbye and hangs up: the caller listens until Twilio ends the call.
    let until_hung_up = Step::WaitAgentDone {
        quiet: Duration::from_secs(10),
        timeout: Duration::from_secs(30),
    };
    let script = [
        vec![Step::Silence(Duration::from_millis(300))],
        turn(&hello),
        turn(&number),
        // Talk over the long answer.
        vec![Step::Say(hours.audio.to_vec()), talk_over_after_two_seconds],
        turn(&saturday),
        vec![Step::Say(thanks.audio.to_vec()), until_hung_up],
    ]
    .concat();
    let rig = ToolRig::start(crate::caller::ACCOUNT_SID)
        .await
        .map_err(|e| DemoError::Call(GenError::Io(e)))?;
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
        Some(&rig),
    ));
    let mut seen = 0usize;
    let mut seen_in = 0usize;
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
                for (who, text) in new_transcripts(&sim, &mut seen, &mut seen_in) {
                    println!("{}  {who}: \"{text}\"", stamp(started.elapsed()));
                }
            }
        }
    };
    drop(call);
    let (report, path) = result?;
    for (who, text) in new_transcripts(&sim, &mut seen, &mut seen_in) {
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
    let rest = rig.twilio.requests();
    println!(
        "call            {:.1} s, outcome: {}",
        report.duration.as_secs_f64(),
        match (&report.ended_by_twilio, report.closed_by_bridge) {
            (Some(_), _) => "agent hung up (end_call), after the caller heard the goodbye",
            (None, true) => "ended by the bridge",
            (None, false) => "caller hung up",
        }
    );
    println!(
        "tools           lookup_order answered {} signed request(s); end_call → Twilio REST {}",
        rig.lookups.load(std::sync::atomic::Ordering::Relaxed),
        rest.iter()
            .map(|r| format!(
                "POST {} {}",
                r.path,
                r.form
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&")
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if let Some(e) = &report.ended_by_twilio {
        println!(
            "goodbye         all {:.1} s of agent audio received had played before the hang-up: {}",
            e.received as f64 / 8000.0,
            e.queued == 0
        );
    }
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
