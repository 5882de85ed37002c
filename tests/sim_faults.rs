//! The Realtime simulator's fault controls and its answers to bad input (junk events,
//! strict session validation, a missing API key), driven by a plain tokio-tungstenite client.
//! The protocol's happy paths: `sim.rs`.

use std::time::Duration;

use callbridge::sim::{ClosedBy, Fault, SimConfig};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::realtime_ws::*;
use support::simulator;

/// `fault` armed, answers of `response_audio_ms` sent as fast as the socket takes them.
fn faulty(fault: Fault, response_audio_ms: u32) -> SimConfig {
    SimConfig {
        faults: vec![fault],
        response_audio_ms,
        ..fast()
    }
}

/// Sends `event` and reads the answer, which must be an error; the error.
async fn error_for(ws: &mut Ws, event: Value) -> Value {
    send(ws, event).await;
    let e = recv(ws).await;
    assert_eq!(e["type"], "error");
    e
}

#[tokio::test]
async fn junk_gets_errors_and_the_session_continues() {
    let (sim, mut ws) = opened(fast(), false).await;
    let e = error_for(
        &mut ws,
        json!({"type": "response.frobnicate", "event_id": "e1"}),
    )
    .await;
    assert_eq!(e["error"]["code"], "unknown_event");
    assert_eq!(e["error"]["event_id"], "e1");
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(
        recv(&mut ws).await["error"]["type"],
        "invalid_request_error"
    );
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(recv(&mut ws).await["type"], "error");
    let e = error_for(
        &mut ws,
        json!({"type": "input_audio_buffer.append", "audio": "!!not base64!!"}),
    )
    .await;
    assert_eq!(e["error"]["type"], "invalid_request_error");
    send(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    assert_eq!(
        recv(&mut ws).await["error"]["code"],
        "input_audio_buffer_commit_empty"
    );
    update_session(&mut ws, json!({"type": "realtime", "instructions": "hi"})).await;
    assert_eq!(recv(&mut ws).await["type"], "session.updated");
    let log = &sim.sessions()[0];
    assert_eq!(log.errors_sent, 5);
    assert_eq!(log.appended_audio_bytes, 0);
}

#[tokio::test]
async fn strict_session_validation() {
    let (sim, mut ws) = opened(fast(), false).await;
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
        update_session(&mut ws, session.clone()).await;
        let e = recv(&mut ws).await;
        assert_eq!(e["type"], "error", "{session}");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["param"], param, "{e}");
    }
    // Nothing was applied.
    update_session(&mut ws, json!({"type": "realtime"})).await;
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
    update_session(&mut beta, json!({"type": "realtime"})).await;
    assert_eq!(recv(&mut beta).await["error"]["param"], "session.type");
    update_session(&mut beta, json!({"audio": {}})).await;
    assert_eq!(recv(&mut beta).await["error"]["param"], "session.audio");
    update_session(&mut beta, json!({"modalities": ["audio"]})).await;
    assert_eq!(
        recv(&mut beta).await["error"]["param"],
        "session.modalities"
    );
}

#[tokio::test]
async fn close_fault_closes_mid_response() {
    let (sim, mut ws) = opened(faulty(Fault::CloseAfterResponses(1), 1000), false).await;
    send_type(&mut ws, "response.create").await;
    until(&mut ws, "response.done").await;
    send_type(&mut ws, "response.create").await;
    let mut saw_delta = false;
    let close = loop {
        match next_message(&mut ws).await {
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
    let (_sim, mut ws) = opened(faulty(Fault::ErrorAfterResponses(1), 200), false).await;
    send_type(&mut ws, "response.create").await;
    let e = until(&mut ws, "error").await.pop().unwrap();
    assert_eq!(e["error"]["type"], "server_error");
    send_type(&mut ws, "response.create").await;
    let evs = until(&mut ws, "rate_limits.updated").await;
    assert!(!types(&evs).contains(&"error"));
}

#[tokio::test]
async fn reject_beta_fault() {
    let cfg = SimConfig {
        faults: vec![Fault::RejectBeta],
        ..fast()
    };
    let sim = simulator(cfg).await;
    let mut beta = connect(&sim, true).await;
    let e = recv(&mut beta).await;
    assert_eq!(e["error"]["code"], "beta_api_shape_disabled");
    let next = next_message(&mut beta).await;
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
    let sim = simulator(cfg).await;
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
    let (sim, mut ws) = opened(cfg, false).await;
    let t0 = std::time::Instant::now();
    send_type(&mut ws, "response.create").await;
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
    let (_sim, mut ws) = opened(cfg, false).await;
    let close = loop {
        match next_message(&mut ws).await {
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
    let (_sim, mut ws) = opened(cfg, false).await;
    send_type(&mut ws, "response.create").await;
    loop {
        match next_message(&mut ws).await {
            Some(Ok(Message::Text(t))) => assert!(!t.as_str().contains("response.done")),
            Some(Ok(Message::Close(_))) => panic!("expected no close frame"),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
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
    let (_sim, mut ws) = opened(cfg, false).await;
    send_type(&mut ws, "response.create").await;
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
