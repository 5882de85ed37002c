//! The Realtime simulator against the published protocol, driven by a plain tokio-tungstenite
//! client: speech turns in both dialects, cancelling and interrupting a response,
//! truncation, conversation items, many sessions at once. Its faults and its answers to bad
//! input: `sim_faults.rs`.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use callbridge::sim::{voice, AudioFormat, SimConfig, SimDialect};
use serde_json::{json, Value};

mod support;
use support::realtime_ws::*;
use support::simulator;

#[tokio::test]
async fn ga_pcmu_speech_turn_gets_a_paced_response() {
    let cfg = SimConfig {
        delta_ms: vec![37, 100, 250],
        ..fast()
    };
    let sim = simulator(cfg).await;
    let mut ws = connect(&sim, false).await;
    let created = recv(&mut ws).await;
    assert_eq!(created["type"], "session.created");
    assert!(created["session"]["id"]
        .as_str()
        .unwrap()
        .starts_with("sess_"));
    assert_eq!(
        created["session"]["audio"]["input"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    update_session(&mut ws, json!({"type": "realtime", "instructions": "Be brief.",
            "audio": {"input": {"format": {"type": "audio/pcmu"},
                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}},
                      "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}}})).await;
    let upd = recv(&mut ws).await;
    assert_eq!(upd["type"], "session.updated");
    assert_eq!(
        upd["session"]["audio"]["output"]["format"]["type"],
        "audio/pcmu"
    );
    assert_eq!(upd["session"]["instructions"], "Be brief.");
    assert_eq!(
        upd["session"]["audio"]["input"]["turn_detection"]["prefix_padding_ms"],
        300
    );

    // 400 ms silence, 600 ms tone, 700 ms silence.
    let mut frames = ulaw_speech(0, 400);
    frames.extend(ulaw_speech(600, 700));
    append_all(&mut ws, &frames).await;
    let evs = until(&mut ws, "response.done").await;
    let t = types(&evs);
    let pos = |ty: &str| {
        t.iter()
            .position(|x| *x == ty)
            .unwrap_or_else(|| panic!("no {ty} in {t:?}"))
    };
    assert!(pos("input_audio_buffer.speech_started") < pos("input_audio_buffer.speech_stopped"));
    assert!(pos("input_audio_buffer.speech_stopped") < pos("input_audio_buffer.committed"));
    assert!(pos("input_audio_buffer.committed") < pos("response.created"));
    assert!(pos("conversation.item.input_audio_transcription.completed") < pos("response.created"));
    assert!(pos("response.output_audio.done") < pos("response.done"));
    let started = &evs[pos("input_audio_buffer.speech_started")];
    assert_eq!(started["audio_start_ms"], 100, "400 ms minus 300 ms prefix");
    let stopped = &evs[pos("input_audio_buffer.speech_stopped")];
    assert_eq!(stopped["audio_end_ms"], 1500, "1000 ms plus 500 ms silence");
    assert_eq!(stopped["item_id"], started["item_id"]);
    let committed = &evs[pos("input_audio_buffer.committed")];
    assert_eq!(committed["item_id"], started["item_id"]);
    assert_eq!(committed["previous_item_id"], Value::Null);
    let tr = &evs[pos("conversation.item.input_audio_transcription.completed")];
    assert_eq!(tr["transcript"], "caller spoke for 0.6 s");

    let deltas: Vec<&Value> = of(&evs, "response.output_audio.delta").collect();
    let sizes: Vec<usize> = deltas
        .iter()
        .map(|d| B64.decode(d["delta"].as_str().unwrap()).unwrap().len())
        .collect();
    assert_eq!(&sizes[..4], &[37 * 8, 100 * 8, 250 * 8, 37 * 8]);
    let audio = audio_of(&evs, "response.output_audio.delta");
    assert_eq!(audio.len(), 3000 * 8);
    assert_eq!(
        audio,
        voice::render(AudioFormat::Pcmu, 3000),
        "deterministic voice"
    );
    let resp_id = &evs[pos("response.created")]["response"]["id"];
    for d in &deltas {
        assert_eq!(&d["response_id"], resp_id);
        assert_eq!(d["output_index"], 0);
        assert_eq!(d["content_index"], 0);
    }
    let transcript: String = of(&evs, "response.output_audio_transcript.delta")
        .map(|d| d["delta"].as_str().unwrap())
        .collect();
    let done = evs.last().unwrap();
    assert_eq!(done["response"]["status"], "completed");
    assert_eq!(done["response"]["id"], *resp_id);
    assert_eq!(
        done["response"]["output"][0]["content"][0]["transcript"],
        transcript.as_str()
    );
    assert_eq!(transcript, SimConfig::default().reply_texts[0]);

    let log = &sim.sessions()[0];
    assert_eq!(log.dialect, SimDialect::Ga);
    assert_eq!(log.appended_audio_bytes, frames.len() * 160);
    assert_eq!(log.sent_audio_bytes, 24_000);
    assert_eq!(log.responses_completed, 1);
    assert!(log.received.iter().all(|e| e.get("audio").is_none()));
    assert_eq!(log.received[1]["audio_bytes"], 160);
    assert!(log
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && !v.contains("sk-test")));
    sim.shutdown().await;
}

#[tokio::test]
async fn beta_pcm16_turn_uses_beta_names() {
    let cfg = SimConfig {
        response_audio_ms: 1200,
        ..fast()
    };
    let sim = simulator(cfg).await;
    let mut ws = connect(&sim, true).await;
    let created = recv(&mut ws).await;
    assert_eq!(created["session"]["input_audio_format"], "pcm16");
    update_session(
        &mut ws,
        json!({"modalities": ["audio", "text"], "voice": "alloy",
            "input_audio_format": "pcm16", "output_audio_format": "pcm16", "temperature": 0.7,
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}),
    )
    .await;
    let upd = recv(&mut ws).await;
    assert_eq!(upd["type"], "session.updated", "{upd}");
    append_all(&mut ws, &pcm_speech(500, 400)).await;
    let evs = until(&mut ws, "response.done").await;
    let t = types(&evs);
    assert!(t.contains(&"input_audio_buffer.speech_started"));
    assert!(t.contains(&"conversation.item.created"));
    assert!(t.contains(&"response.audio.done"));
    assert!(t.contains(&"response.audio_transcript.done"));
    assert!(!t.iter().any(|x| x.starts_with("response.output_audio")));
    assert_eq!(audio_of(&evs, "response.audio.delta").len(), 1200 * 48);
    assert_eq!(evs.last().unwrap()["response"]["status"], "completed");
    assert_eq!(sim.sessions()[0].dialect, SimDialect::Beta);
}

#[tokio::test]
async fn response_cancel_stops_deltas() {
    let cfg = real_time(3000);
    let (sim, mut ws) = ga_pcmu_session(cfg).await;
    send(
        &mut ws,
        json!({"type": "response.create", "response": {"instructions": "Greet the caller."}}),
    )
    .await;
    until(&mut ws, "response.output_audio.delta").await;
    send(&mut ws, json!({"type": "response.cancel"})).await;
    let evs = until(&mut ws, "response.done").await;
    let done = evs.last().unwrap();
    assert_eq!(done["response"]["status"], "cancelled");
    assert_eq!(
        done["response"]["status_details"]["reason"],
        "client_cancelled"
    );
    assert!(types(&evs).contains(&"response.output_audio.done"));
    // Nothing more after the cancel but the rate-limit note; a second cancel is an error.
    send(
        &mut ws,
        json!({"type": "response.cancel", "event_id": "ev1"}),
    )
    .await;
    let mut rest = vec![];
    loop {
        let e = recv(&mut ws).await;
        let stop = e["type"] == "error";
        rest.push(e);
        if stop {
            break;
        }
    }
    assert!(
        !types(&rest).contains(&"response.output_audio.delta"),
        "{rest:?}"
    );
    let err = rest.last().unwrap();
    assert_eq!(err["error"]["code"], "response_cancel_not_active");
    assert_eq!(err["error"]["event_id"], "ev1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = &sim.sessions()[0];
    assert!(log.sent_audio_bytes < 3000 * 8);
    assert_eq!(log.responses_cancelled, 1);
}

#[tokio::test]
async fn speech_during_response_interrupts_it() {
    let cfg = real_time(5000);
    let (_sim, mut ws) = ga_pcmu_session(cfg).await;
    send_type(&mut ws, "response.create").await;
    until(&mut ws, "response.output_audio.delta").await;
    append_all(&mut ws, &ulaw_speech(200, 0)).await;
    let evs = until(&mut ws, "response.done").await;
    let t = types(&evs);
    let started = t
        .iter()
        .position(|x| *x == "input_audio_buffer.speech_started")
        .unwrap();
    let audio_done = t
        .iter()
        .position(|x| *x == "response.output_audio.done")
        .unwrap();
    assert!(started < audio_done);
    let done = evs.last().unwrap();
    assert_eq!(done["response"]["status"], "cancelled");
    assert_eq!(
        done["response"]["status_details"]["reason"],
        "turn_detected"
    );
}

#[tokio::test]
async fn response_create_while_active_is_refused() {
    let cfg = real_time(SimConfig::default().response_audio_ms);
    let (_sim, mut ws) = opened(cfg, false).await;
    send_type(&mut ws, "response.create").await;
    until(&mut ws, "response.created").await;
    send_type(&mut ws, "response.create").await;
    let err = until(&mut ws, "error").await.pop().unwrap();
    assert_eq!(
        err["error"]["code"],
        "conversation_already_has_active_response"
    );
}

#[tokio::test]
async fn truncate_checks_sent_audio() {
    let cfg = SimConfig {
        response_audio_ms: 1000,
        ..fast()
    };
    let (sim, mut ws) = ga_pcmu_session(cfg).await;
    send_type(&mut ws, "response.create").await;
    let evs = until(&mut ws, "response.done").await;
    let item_id = evs.last().unwrap()["response"]["output"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    send(&mut ws, json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 1500})).await;
    let err = until(&mut ws, "error").await.pop().unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("beyond"),
        "{err}"
    );
    send(&mut ws, json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 400})).await;
    let ok = recv(&mut ws).await;
    assert_eq!(ok["type"], "conversation.item.truncated");
    assert_eq!(ok["audio_end_ms"], 400);
    assert_eq!(ok["item_id"], item_id.as_str());
    // Now the item is 400 ms long.
    send(&mut ws, json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 401})).await;
    assert_eq!(recv(&mut ws).await["type"], "error");
    send(&mut ws, json!({"type": "conversation.item.truncate", "item_id": "item_nope", "content_index": 0, "audio_end_ms": 0})).await;
    assert_eq!(recv(&mut ws).await["type"], "error");
    let log = &sim.sessions()[0];
    let tr: Vec<(u64, bool)> = log
        .truncates
        .iter()
        .map(|t| (t.audio_end_ms, t.accepted))
        .collect();
    assert_eq!(
        tr,
        vec![(1500, false), (400, true), (401, false), (0, false)]
    );
    assert_eq!(log.truncates[1].item_id, item_id);
}

#[tokio::test]
async fn item_create_and_delete() {
    let (_sim, mut ws) = opened(fast(), false).await;
    send(
        &mut ws,
        json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hello"}]}}),
    )
    .await;
    let added = recv(&mut ws).await;
    assert_eq!(added["type"], "conversation.item.added");
    let id = added["item"]["id"].as_str().unwrap().to_string();
    assert_eq!(recv(&mut ws).await["type"], "conversation.item.done");
    send(
        &mut ws,
        json!({"type": "conversation.item.delete", "item_id": id}),
    )
    .await;
    let del = recv(&mut ws).await;
    assert_eq!(del["type"], "conversation.item.deleted");
    send(
        &mut ws,
        json!({"type": "conversation.item.delete", "item_id": id}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "error");
    send(&mut ws, json!({"type": "input_audio_buffer.clear"})).await;
    assert_eq!(recv(&mut ws).await["type"], "input_audio_buffer.cleared");
}

#[tokio::test]
async fn many_sessions_are_independent() {
    let cfg = SimConfig {
        response_audio_ms: 500,
        record_events: false,
        ..fast()
    };
    let sim = simulator(cfg).await;
    let mut tasks = vec![];
    for _ in 0..50 {
        let mut ws = connect(&sim, false).await;
        tasks.push(tokio::spawn(async move {
            ga_pcmu(&mut ws).await;
            send_type(&mut ws, "response.create").await;
            let evs = until(&mut ws, "response.done").await;
            audio_of(&evs, "response.output_audio.delta").len()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 500 * 8);
    }
    let logs = sim.sessions();
    assert_eq!(logs.len(), 50);
    assert!(logs
        .iter()
        .all(|l| l.responses_completed == 1 && l.sent.is_empty()));
    let mut ids: Vec<_> = logs.iter().map(|l| l.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    sim.shutdown().await;
}

/// Load sanity, outside the normal run: `cargo test --release --test sim -- --ignored`.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn load_1000_sessions() {
    let cfg = SimConfig {
        record_events: false,
        ..SimConfig::default()
    };
    let sim = simulator(cfg).await;
    let t0 = std::time::Instant::now();
    let mut tasks = vec![];
    for _ in 0..1000 {
        let mut ws = connect(&sim, false).await;
        tasks.push(tokio::spawn(async move {
            ga_pcmu(&mut ws).await;
            // Caller speech at real-time-ish rate (20 ms frames every 5 ms), then the answer.
            for f in ulaw_speech(400, 600) {
                send(
                    &mut ws,
                    json!({"type": "input_audio_buffer.append", "audio": B64.encode(f)}),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let evs = until(&mut ws, "response.done").await;
            audio_of(&evs, "response.output_audio.delta").len()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 3000 * 8);
    }
    eprintln!("1000 sessions in {:?}", t0.elapsed());
    assert_eq!(sim.session_count(), 1000);
    sim.shutdown().await;
}
