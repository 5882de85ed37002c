//! The Realtime simulator, driven by a plain tokio-tungstenite client.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use callbridge::sim::{voice, AudioFormat, ClosedBy, Fault, SimConfig, SimDialect, Simulator};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn fast() -> SimConfig {
    SimConfig {
        pace: 0.0,
        ..SimConfig::default()
    }
}

async fn connect(sim: &Simulator, beta: bool) -> Ws {
    let mut req = sim.url().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer sk-test".parse().unwrap());
    if beta {
        req.headers_mut()
            .insert("openai-beta", "realtime=v1".parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Next JSON event; panics after 5 s.
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("timed out waiting for an event")
            .expect("socket ended")
            .expect("socket error");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// Events up to and including the first of type `ty`.
async fn until(ws: &mut Ws, ty: &str) -> Vec<Value> {
    let mut out = vec![];
    loop {
        let e = recv(ws).await;
        let done = e["type"] == ty;
        out.push(e);
        if done {
            return out;
        }
    }
}

fn types(evs: &[Value]) -> Vec<&str> {
    evs.iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect()
}

fn of<'a>(evs: &'a [Value], ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    evs.iter().filter(move |e| e["type"] == ty)
}

fn audio_of(evs: &[Value], ty: &str) -> Vec<u8> {
    of(evs, ty)
        .flat_map(|e| B64.decode(e["delta"].as_str().unwrap()).unwrap())
        .collect()
}

/// `ms` of a 300 Hz tone (amplitude 8000) then `silence_ms` of silence, as μ-law 20 ms frames.
fn ulaw_speech(ms: u32, silence_ms: u32) -> Vec<Vec<u8>> {
    let mut frames = vec![];
    for f in 0..(ms + silence_ms) / 20 {
        let frame = (0..160)
            .map(|i| {
                let n = f * 160 + i;
                let s = if f * 20 < ms {
                    (8000.0 * (std::f64::consts::TAU * 300.0 * n as f64 / 8000.0).sin()) as i16
                } else {
                    0
                };
                audio_codec_algorithms::encode_ulaw(s)
            })
            .collect();
        frames.push(frame);
    }
    frames
}

/// Same, as PCM16 LE 24 kHz.
fn pcm_speech(ms: u32, silence_ms: u32) -> Vec<Vec<u8>> {
    let mut frames = vec![];
    for f in 0..(ms + silence_ms) / 20 {
        let mut frame = Vec::with_capacity(960);
        for i in 0..480 {
            let n = f * 480 + i;
            let s = if f * 20 < ms {
                (8000.0 * (std::f64::consts::TAU * 300.0 * n as f64 / 24000.0).sin()) as i16
            } else {
                0
            };
            frame.extend_from_slice(&s.to_le_bytes());
        }
        frames.push(frame);
    }
    frames
}

async fn append_all(ws: &mut Ws, frames: &[Vec<u8>]) {
    for f in frames {
        send(
            ws,
            json!({"type": "input_audio_buffer.append", "audio": B64.encode(f)}),
        )
        .await;
    }
}

async fn ga_pcmu(ws: &mut Ws) {
    let created = recv(ws).await;
    assert_eq!(created["type"], "session.created");
    send(
        ws,
        json!({"type": "session.update", "session": {"type": "realtime",
            "audio": {"input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcmu"}}}}}),
    )
    .await;
    let upd = recv(ws).await;
    assert_eq!(upd["type"], "session.updated", "{upd}");
}

#[tokio::test]
async fn ga_pcmu_speech_turn_gets_a_paced_response() {
    let cfg = SimConfig {
        delta_ms: vec![37, 100, 250],
        ..fast()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
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
    send(
        &mut ws,
        json!({"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief.",
            "audio": {"input": {"format": {"type": "audio/pcmu"},
                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}},
                      "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}}}}),
    )
    .await;
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
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut ws = connect(&sim, true).await;
    let created = recv(&mut ws).await;
    assert_eq!(created["session"]["input_audio_format"], "pcm16");
    send(
        &mut ws,
        json!({"type": "session.update", "session": {"modalities": ["audio", "text"], "voice": "alloy",
            "input_audio_format": "pcm16", "output_audio_format": "pcm16", "temperature": 0.7,
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}}),
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
    let cfg = SimConfig {
        pace: 1.0,
        response_audio_ms: 3000,
        ..SimConfig::default()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut ws = connect(&sim, false).await;
    ga_pcmu(&mut ws).await;
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
    let cfg = SimConfig {
        pace: 1.0,
        response_audio_ms: 5000,
        ..SimConfig::default()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut ws = connect(&sim, false).await;
    ga_pcmu(&mut ws).await;
    send(&mut ws, json!({"type": "response.create"})).await;
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
    let cfg = SimConfig {
        pace: 1.0,
        ..SimConfig::default()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut ws = connect(&sim, false).await;
    recv(&mut ws).await;
    send(&mut ws, json!({"type": "response.create"})).await;
    until(&mut ws, "response.created").await;
    send(&mut ws, json!({"type": "response.create"})).await;
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
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut ws = connect(&sim, false).await;
    ga_pcmu(&mut ws).await;
    send(&mut ws, json!({"type": "response.create"})).await;
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
async fn junk_gets_errors_and_the_session_continues() {
    let sim = Simulator::start("127.0.0.1:0", fast()).await.unwrap();
    let mut ws = connect(&sim, false).await;
    recv(&mut ws).await;
    send(
        &mut ws,
        json!({"type": "response.frobnicate", "event_id": "e1"}),
    )
    .await;
    let e = recv(&mut ws).await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["code"], "unknown_event");
    assert_eq!(e["error"]["event_id"], "e1");
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(
        recv(&mut ws).await["error"]["type"],
        "invalid_request_error"
    );
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(recv(&mut ws).await["type"], "error");
    send(
        &mut ws,
        json!({"type": "input_audio_buffer.append", "audio": "!!not base64!!"}),
    )
    .await;
    let e = recv(&mut ws).await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    assert_eq!(
        recv(&mut ws).await["error"]["code"],
        "input_audio_buffer_commit_empty"
    );
    send(
        &mut ws,
        json!({"type": "session.update", "session": {"type": "realtime", "instructions": "hi"}}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "session.updated");
    let log = &sim.sessions()[0];
    assert_eq!(log.errors_sent, 5);
    assert_eq!(log.appended_audio_bytes, 0);
}

#[tokio::test]
async fn strict_session_validation() {
    let sim = Simulator::start("127.0.0.1:0", fast()).await.unwrap();
    let mut ws = connect(&sim, false).await;
    recv(&mut ws).await;
    let bad = [
        (
            json!({"type": "realtime", "temperature": 0.8}),
            "session.temperature",
        ),
        (json!({"instructions": "no type"}), "session.type"),
        (
            json!({"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}),
            "session.audio.input.format.rate",
        ),
        (
            json!({"type": "realtime", "input_audio_format": "g711_ulaw"}),
            "session.input_audio_format",
        ),
        (
            json!({"type": "realtime", "audio": {"output": {"format": "g711_ulaw"}}}),
            "session.audio.output.format",
        ),
        (
            json!({"type": "realtime", "audio": {"output": {"voice": "nobody"}}}),
            "session.audio.output.voice",
        ),
        (
            json!({"type": "realtime", "output_modalities": ["audio", "text"]}),
            "session.output_modalities",
        ),
        (
            json!({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "eagerness": "low"}}}}),
            "session.audio.input.turn_detection.eagerness",
        ),
    ];
    for (session, param) in bad {
        send(
            &mut ws,
            json!({"type": "session.update", "session": session}),
        )
        .await;
        let e = recv(&mut ws).await;
        assert_eq!(e["type"], "error", "{session}");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["param"], param, "{e}");
    }
    // Nothing was applied.
    send(
        &mut ws,
        json!({"type": "session.update", "session": {"type": "realtime"}}),
    )
    .await;
    let ok = recv(&mut ws).await;
    assert_eq!(ok["type"], "session.updated");
    assert_eq!(
        ok["session"]["audio"]["input"]["format"]["type"],
        "audio/pcm"
    );
    assert!(ok["session"].get("temperature").is_none());

    // And the other way round.
    let mut beta = connect(&sim, true).await;
    recv(&mut beta).await;
    send(
        &mut beta,
        json!({"type": "session.update", "session": {"type": "realtime"}}),
    )
    .await;
    assert_eq!(recv(&mut beta).await["error"]["param"], "session.type");
    send(
        &mut beta,
        json!({"type": "session.update", "session": {"audio": {}}}),
    )
    .await;
    assert_eq!(recv(&mut beta).await["error"]["param"], "session.audio");
    send(
        &mut beta,
        json!({"type": "session.update", "session": {"modalities": ["audio"]}}),
    )
    .await;
    assert_eq!(
        recv(&mut beta).await["error"]["param"],
        "session.modalities"
    );
}

#[tokio::test]
async fn item_create_and_delete() {
    let sim = Simulator::start("127.0.0.1:0", fast()).await.unwrap();
    let mut ws = connect(&sim, false).await;
    recv(&mut ws).await;
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
async fn close_fault_closes_mid_response() {
    let cfg = SimConfig {
        faults: vec![Fault::CloseAfterResponses(1)],
        response_audio_ms: 1000,
        ..fast()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut ws = connect(&sim, false).await;
    recv(&mut ws).await;
    send(&mut ws, json!({"type": "response.create"})).await;
    until(&mut ws, "response.done").await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let mut saw_delta = false;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => {
                let e: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_ne!(e["type"], "response.done", "closed only after the response");
                saw_delta |= e["type"] == "response.output_audio.delta";
            }
            Some(Ok(Message::Close(f))) => break f,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(saw_delta);
    assert_eq!(u16::from(close.unwrap().code), 1011);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        sim.sessions()[0].closed_by,
        Some(ClosedBy::Fault(_))
    ));
}

#[tokio::test]
async fn error_fault_sends_one_error() {
    let cfg = SimConfig {
        faults: vec![Fault::ErrorAfterResponses(1)],
        response_audio_ms: 200,
        ..fast()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut ws = connect(&sim, false).await;
    recv(&mut ws).await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let e = until(&mut ws, "error").await.pop().unwrap();
    assert_eq!(e["error"]["type"], "server_error");
    send(&mut ws, json!({"type": "response.create"})).await;
    let evs = until(&mut ws, "rate_limits.updated").await;
    assert!(!types(&evs).contains(&"error"));
}

#[tokio::test]
async fn reject_beta_fault() {
    let cfg = SimConfig {
        faults: vec![Fault::RejectBeta],
        ..fast()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut beta = connect(&sim, true).await;
    let e = recv(&mut beta).await;
    assert_eq!(e["error"]["code"], "beta_api_shape_disabled");
    let next = tokio::time::timeout(Duration::from_secs(5), beta.next())
        .await
        .unwrap();
    assert!(
        matches!(next, Some(Ok(Message::Close(_))) | None),
        "{next:?}"
    );
    let mut ga = connect(&sim, false).await;
    assert_eq!(recv(&mut ga).await["type"], "session.created");
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let cfg = SimConfig {
        require_api_key: Some("sk-right".into()),
        ..fast()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut req = sim.url().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer sk-wrong".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let mut req = sim.url().into_client_request().unwrap();
    req.headers_mut()
        .insert("api-key", "sk-right".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(recv(&mut ws).await["type"], "session.created");
    let log = &sim.sessions()[0];
    assert!(log
        .headers
        .iter()
        .any(|(k, v)| k == "api-key" && v == "[redacted]"));
}

#[tokio::test]
async fn client_close_is_recorded_and_pacing_holds() {
    let cfg = SimConfig {
        pace: 4.0,
        response_audio_ms: 1000,
        ..SimConfig::default()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut ws = connect(&sim, false).await;
    recv(&mut ws).await;
    let t0 = std::time::Instant::now();
    send(&mut ws, json!({"type": "response.create"})).await;
    until(&mut ws, "response.done").await;
    let took = t0.elapsed();
    // 1000 ms of audio at 4x: the last delta leaves after 225 ms.
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    ws.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.sessions()[0].closed_by, Some(ClosedBy::Client));
    sim.shutdown().await;
}

#[tokio::test]
async fn max_duration_closes_with_1001() {
    let cfg = SimConfig {
        faults: vec![Fault::MaxDuration(Duration::from_millis(200))],
        ..fast()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut ws = connect(&sim, false).await;
    recv(&mut ws).await;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(f))) => break f.unwrap(),
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1001);
    assert!(close.reason.as_str().contains("maximum duration"));
}

#[tokio::test]
async fn drop_fault_ends_without_close_frame() {
    let cfg = SimConfig {
        faults: vec![Fault::DropAfterResponses(0)],
        ..fast()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut ws = connect(&sim, false).await;
    recv(&mut ws).await;
    send(&mut ws, json!({"type": "response.create"})).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => assert!(!t.as_str().contains("response.done")),
            Some(Ok(Message::Close(_))) => panic!("expected no close frame"),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
}

#[tokio::test]
async fn many_sessions_are_independent() {
    let cfg = SimConfig {
        response_audio_ms: 500,
        record_events: false,
        ..fast()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut tasks = vec![];
    for _ in 0..50 {
        let mut ws = connect(&sim, false).await;
        tasks.push(tokio::spawn(async move {
            ga_pcmu(&mut ws).await;
            send(&mut ws, json!({"type": "response.create"})).await;
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
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
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

#[tokio::test]
async fn non_ascii_replies_and_odd_pacing_do_not_panic() {
    let cfg = SimConfig {
        reply_texts: vec!["Grüß Gott — ça va? 你好，世界".into()],
        response_audio_ms: 0,
        delta_ms: vec![0, 7],
        pace: f32::NAN,
        ..SimConfig::default()
    };
    let sim = Simulator::start("127.0.0.1:0", cfg).await.unwrap();
    let mut ws = connect(&sim, false).await;
    recv(&mut ws).await;
    send(&mut ws, json!({"type": "response.create"})).await;
    let evs = until(&mut ws, "response.done").await;
    let transcript: String = of(&evs, "response.output_audio_transcript.delta")
        .map(|d| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(transcript, "Grüß Gott — ça va? 你好，世界");
    // Derived length: 65 ms per char, PCM16 24 kHz.
    let chars = transcript.chars().count();
    assert_eq!(
        audio_of(&evs, "response.output_audio.delta").len(),
        chars * 65 * 48
    );
}
