//! The in-repo GPT-Live simulator (`callbridge::sim::live`) driven by a plain WebSocket
//! client: it holds the bridge's future Live upstream to the protocol (session.start first,
//! unknown fields refused), hears the caller, answers with paced audio and timed transcripts,
//! stops when talked over, delegates tool calls, reports usage, closes, and takes faults.
//! What it sends is checked against the SDK's `ServerEvent` union, and parsed by
//! `callbridge_core::live`.

use std::time::{Duration, Instant};

use callbridge::sim::live::{LiveFault, LiveSimConfig, LiveSimulator};
use callbridge::sim::ClosedBy;
use callbridge_core::live::server::{parse, ServerEvent};
use callbridge_core::live::settings::DelegationSettings;
use callbridge_core::live::{ClientEvent, LiveSettings};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::realtime_ws::{audio_of, next_message, of, recv, send, ulaw_speech, until, Ws};

async fn send_event(ws: &mut Ws, e: &ClientEvent) {
    send(ws, serde_json::from_str(&e.to_text()).expect("JSON")).await;
}

async fn connect(sim: &LiveSimulator) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(sim.url())
        .await
        .expect("connects");
    ws
}

/// Sends caller audio (μ-law 20 ms frames) as `session.input_audio.append`s.
async fn speak(ws: &mut Ws, frames: &[Vec<u8>]) {
    for f in frames {
        send_event(ws, &ClientEvent::append(f)).await;
    }
}

/// A simulator with `cfg` and a session on it started with `settings` (`session.started` read).
async fn started(cfg: LiveSimConfig, settings: LiveSettings) -> (LiveSimulator, Ws, Value) {
    let sim = LiveSimulator::start("127.0.0.1:0", cfg)
        .await
        .expect("starts");
    let mut ws = connect(&sim).await;
    send_event(&mut ws, &settings.session_start().expect("valid")).await;
    let started = recv(&mut ws).await;
    assert_eq!(started["type"], "session.started", "{started}");
    (sim, ws, started)
}

fn fast(reply_audio_ms: u32) -> LiveSimConfig {
    LiveSimConfig {
        pace: 20.0,
        reply_audio_ms,
        ..LiveSimConfig::default()
    }
}

fn with_tools() -> LiveSettings {
    LiveSettings {
        delegation: Some(DelegationSettings {
            model: "gpt-5-mini".into(),
            instructions: None,
            tools: vec![json!({"type": "function", "name": "lookup_order",
                "parameters": {"type": "object", "properties": {}}})],
            tool_choice: None,
            parallel_tool_calls: None,
        }),
        ..LiveSettings::default()
    }
}

#[tokio::test]
async fn session_start_comes_first_and_unknown_fields_are_refused() {
    let sim = LiveSimulator::start("127.0.0.1:0", LiveSimConfig::default())
        .await
        .expect("starts");
    let mut ws = connect(&sim).await;
    send_event(&mut ws, &ClientEvent::append(&[0xff; 160])).await;
    let e = recv(&mut ws).await;
    assert_eq!(e["error"]["code"], "session_not_started", "{e}");

    // `voice` belongs in `audio.output`, not at the top of the session.
    let mut start: Value = serde_json::from_str(
        &LiveSettings::default()
            .session_start()
            .expect("valid")
            .to_text(),
    )
    .expect("JSON");
    start["session"]["voice"] = json!("marin");
    send(&mut ws, start).await;
    let e = recv(&mut ws).await;
    assert_eq!(e["error"]["code"], "unknown_parameter", "{e}");
    assert_eq!(e["error"]["param"], "session.voice");

    send_event(
        &mut ws,
        &LiveSettings::default().session_start().expect("valid"),
    )
    .await;
    let text = recv(&mut ws).await.to_string();
    let Ok(parsed) = parse(&text) else {
        panic!("not a server event: {text}")
    };
    let ServerEvent::SessionStarted { session } = parsed.event else {
        panic!("not session.started: {text}")
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    assert!(session.expires_at > now, "{text}");
    assert_eq!(sim.sessions()[0].id, session.id);
}

#[tokio::test]
async fn the_caller_speaks_and_the_model_answers_in_real_time_with_timed_transcripts() {
    let cfg = LiveSimConfig {
        reply_audio_ms: 1000,
        caller_transcripts: vec!["where is my order".into()],
        ..LiveSimConfig::default()
    };
    let (sim, mut ws, _) = started(cfg, LiveSettings::default()).await;
    speak(&mut ws, &ulaw_speech(600, 700)).await;
    let heard = until(&mut ws, "session.input_transcript.delta").await;
    let said = heard.last().expect("an event");
    assert_eq!(said["delta"], "where is my order");
    let (start, end) = (said["start_ms"].as_u64(), said["end_ms"].as_u64());
    assert!(
        start.zip(end).is_some_and(|(s, e)| s < e && e >= 600),
        "{said}"
    );

    let mut events = Vec::new();
    let mut times = Vec::new();
    while audio_of(&events, "session.output_audio.delta").len() < 8000 {
        events.push(recv(&mut ws).await);
        times.push(Instant::now());
    }
    // 1 s of μ-law 8 kHz, in order, at the speed of speech (a lower bound only: a loaded
    // machine may be slower, never faster).
    assert_eq!(audio_of(&events, "session.output_audio.delta").len(), 8000);
    let first = events
        .iter()
        .position(|e| e["type"] == "session.output_audio.delta");
    let spread = times
        .last()
        .zip(first.map(|i| times[i]))
        .map(|(l, f)| *l - f);
    assert!(
        spread.is_some_and(|d| d >= Duration::from_millis(800)),
        "{spread:?}"
    );
    let words: Vec<&Value> = of(&events, "session.output_transcript.delta").collect();
    assert!(words.len() > 1, "{events:?}");
    let starts: Vec<u64> = words
        .iter()
        .filter_map(|w| w["start_ms"].as_u64())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
    assert!(
        starts[0] >= end.unwrap_or(0),
        "the answer starts after the caller stopped"
    );
    let text: String = words.iter().filter_map(|w| w["delta"].as_str()).collect();
    assert_eq!(text, LiveSimConfig::default().reply_texts[0]);
    assert_eq!(sim.sessions()[0].replies, 1);
}

#[tokio::test]
async fn the_model_stops_talking_when_the_caller_speaks_over_it() {
    let cfg = LiveSimConfig {
        reply_audio_ms: 5000,
        ..LiveSimConfig::default()
    };
    let (sim, mut ws, _) = started(cfg, LiveSettings::default()).await;
    speak(&mut ws, &ulaw_speech(400, 600)).await;
    until(&mut ws, "session.output_audio.delta").await;
    speak(&mut ws, &ulaw_speech(300, 0)).await;
    let end = Instant::now() + support::WAIT;
    while sim.sessions()[0].replies_interrupted == 0 {
        assert!(Instant::now() < end, "the model kept talking");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = &sim.sessions()[0];
    assert!(
        log.sent_audio_bytes < 5000 * 8,
        "{} bytes",
        log.sent_audio_bytes
    );
    assert!(
        !log.sent_of("error").any(|_| true),
        "no cancel event exists: nothing to refuse"
    );
}

#[tokio::test]
async fn delegated_tool_calls_wait_for_every_output_then_response_create() {
    let cfg = LiveSimConfig {
        reply_tool_calls: vec![vec![("lookup_order".into(), r#"{"order":"A-17"}"#.into())]],
        ..fast(300)
    };
    let (sim, mut ws, started_event) = started(cfg, with_tools()).await;
    let mut all = vec![started_event];
    speak(&mut ws, &ulaw_speech(400, 600)).await;
    all.extend(until(&mut ws, "response.event").await);
    let wrapped = all.last().expect("response.event").to_string();
    let call = parse(&wrapped).ok().and_then(|p| p.event.function_call());
    let call = call.unwrap_or_else(|| panic!("no function call in {wrapped}"));
    assert_eq!(
        (call.name.as_str(), call.arguments.as_str()),
        ("lookup_order", r#"{"order":"A-17"}"#)
    );
    assert!(of(&all, "session.delegation.created")
        .any(|d| d["delegation"]["id"] == json!(call.delegation_id)));

    // A partial batch is refused: the output must come first.
    send_event(&mut ws, &ClientEvent::ResponseCreate).await;
    let refused = recv(&mut ws).await;
    assert_eq!(
        refused["error"]["code"], "incomplete_tool_outputs",
        "{refused}"
    );
    all.push(refused);
    send_event(
        &mut ws,
        &ClientEvent::function_output(&call.call_id, r#"{"status":"shipped"}"#),
    )
    .await;
    send_event(&mut ws, &ClientEvent::ResponseCreate).await;
    all.extend(until(&mut ws, "session.output_audio.delta").await);
    let log = &sim.sessions()[0];
    assert_eq!(
        log.tool_outputs,
        vec![(call.call_id.clone(), r#"{"status":"shipped"}"#.into())]
    );
    assert_eq!(log.replies, 2, "the model speaks about the result");
    support::sdk::run("validate_live.py", &["server"], &Value::Array(all));
}

#[tokio::test]
async fn usage_is_reported_and_session_close_ends_with_the_final_usage() {
    let cfg = LiveSimConfig {
        usage_every: Duration::from_millis(100),
        ..LiveSimConfig::default()
    };
    let (sim, mut ws, _) = started(cfg, LiveSettings::default()).await;
    let mut all = until(&mut ws, "session.usage.updated").await;
    send_event(&mut ws, &ClientEvent::SessionClose).await;
    all.extend(until(&mut ws, "session.closed").await);
    let closed = all.last().expect("closed").clone();
    assert_eq!(closed["reason"], "close_requested");
    assert!(closed["usage"]["seconds"].is_number(), "{closed}");
    assert!(matches!(
        next_message(&mut ws).await,
        Some(Ok(Message::Close(_)))
    ));
    assert_eq!(sim.sessions()[0].closed_by, Some(ClosedBy::Client));
    support::sdk::run("validate_live.py", &["server"], &Value::Array(all));
}

#[tokio::test]
async fn faults_end_the_session_the_way_the_real_one_does() {
    let sim = LiveSimulator::start("127.0.0.1:0", LiveSimConfig::default())
        .await
        .expect("starts");
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut ws = connect(&sim).await;
        send_event(
            &mut ws,
            &LiveSettings::default().session_start().expect("valid"),
        )
        .await;
        recv(&mut ws).await;
        sessions.push(ws);
    }
    assert!(sim.inject(0, LiveFault::FatalError("insufficient_quota".into())));
    let e = until(&mut sessions[0], "error")
        .await
        .pop()
        .expect("error")
        .to_string();
    let fatal =
        matches!(parse(&e).map(|p| p.event), Ok(ServerEvent::Error { error }) if error.is_fatal());
    assert!(fatal, "{e}");
    assert!(matches!(
        next_message(&mut sessions[0]).await,
        Some(Ok(Message::Close(_)))
    ));

    assert!(sim.inject(1, LiveFault::Expire));
    let closed = until(&mut sessions[1], "session.closed")
        .await
        .pop()
        .expect("closed");
    assert_eq!(closed["reason"], "expired");

    assert!(sim.inject(2, LiveFault::Drop));
    loop {
        match next_message(&mut sessions[2]).await {
            Some(Ok(Message::Close(_))) => panic!("a dropped socket sends no close frame"),
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => break,
        }
    }
}

#[tokio::test]
async fn commentary_is_spoken_fixtures_play_and_updates_change_only_delegation() {
    let (_sim, mut ws, _) = started(fast(400), with_tools()).await;
    send_event(
        &mut ws,
        &ClientEvent::commentary("Thanks for calling Example Inc."),
    )
    .await;
    let mut all = until(&mut ws, "session.commentary.appended").await;
    all.extend(until(&mut ws, "session.output_audio.delta").await);

    // 0.5 s of PCM16 24 kHz arrives as 0.5 s of μ-law 8 kHz, between playing and played.
    send_event(&mut ws, &ClientEvent::fixture_play(&[1000; 12_000])).await;
    let played = until(&mut ws, "session.output_audio.fixture.played").await;
    let after_playing = played
        .iter()
        .skip_while(|e| e["type"] != "session.output_audio.fixture.playing")
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(
        audio_of(&after_playing, "session.output_audio.delta").len(),
        4000
    );
    all.extend(played);

    let update = |ty: &str| {
        json!({"type": "session.update", "session": {"delegation": {"type": ty,
            "responses": {"instructions": "Be brief."}}}})
    };
    send(&mut ws, update("responses")).await;
    let updated = until(&mut ws, "session.updated")
        .await
        .pop()
        .expect("updated");
    assert_eq!(
        updated["session"]["delegation"]["responses"]["instructions"],
        "Be brief."
    );
    assert_eq!(
        updated["session"]["delegation"]["responses"]["model"],
        "gpt-5-mini"
    );
    all.push(updated);
    send(&mut ws, update("client")).await;
    let refused = until(&mut ws, "error").await.pop().expect("error");
    assert_eq!(
        refused["error"]["param"], "session.delegation.type",
        "{refused}"
    );
    support::sdk::run("validate_live.py", &["server"], &Value::Array(all));
}
