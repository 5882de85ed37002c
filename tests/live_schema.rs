//! GPT-Live's wire schema is the OpenAI Python SDK's generated models (`openai.types.live`,
//! `openai` pinned in `.ci/run`): every client event `callbridge_core::live` can build is
//! validated by them (`tests/sdk/validate_live.py client`: the `ClientEvent` union member its
//! type names, strict, no undeclared field), and server events the SDK's models build parse
//! into the right variants. Under `CI=true` a missing SDK fails; elsewhere it is skipped.

use callbridge_core::live::client::SessionUpdateConfig;
use callbridge_core::live::client::{DelegationUpdate, ResponsesDelegationUpdate, Role};
use callbridge_core::live::server::{parse, CloseReason, ServerEvent};
use callbridge_core::live::settings::DelegationSettings;
use callbridge_core::live::{ClientEvent, LiveSettings};
use serde_json::{json, Value};

mod support;

/// Settings with everything the builder can emit: instructions, delegation with two tools,
/// tool choice, parallel calls, history from all three roles.
fn full_settings() -> LiveSettings {
    LiveSettings {
        model: "gpt-live-1.1".into(),
        voice: "cedar".into(),
        instructions: Some("You answer the phone for Example Inc.".into()),
        delegation: Some(DelegationSettings {
            model: "gpt-5-mini".into(),
            instructions: Some("Look orders up before answering.".into()),
            tools: vec![
                json!({"type": "function", "name": "lookup_order", "description": "Finds an order.",
                    "parameters": {"type": "object", "properties": {"order": {"type": "string"}},
                        "required": ["order"]}}),
                json!({"type": "function", "name": "end_call", "description": "Hangs up.",
                    "parameters": {"type": "object", "properties": {}}, "strict": true}),
            ],
            tool_choice: Some("auto".into()),
            parallel_tool_calls: Some(false),
        }),
        history: vec![
            (
                Role::Developer,
                "The caller is a returning customer.".into(),
            ),
            (Role::User, "Hi, I called earlier about my order.".into()),
            (Role::Assistant, "Welcome back! Which order was it?".into()),
        ],
    }
}

/// Every client event the module can produce, as JSON.
fn every_client_event() -> Vec<Value> {
    let start = |s: LiveSettings| s.session_start().expect("valid settings");
    let events = vec![
        start(full_settings()),
        start(LiveSettings::default()),
        ClientEvent::append(&[0xff; 160]),
        ClientEvent::SessionUpdate {
            session: SessionUpdateConfig {
                delegation: DelegationUpdate::Responses {
                    responses: ResponsesDelegationUpdate {
                        instructions: Some("Be brief.".into()),
                        tools: Some(vec![json!({"type": "function", "name": "transfer_call"})]),
                        tool_choice: Some("required".into()),
                        ..ResponsesDelegationUpdate::default()
                    },
                },
            },
        },
        ClientEvent::function_output("call_1", r#"{"status":"shipped"}"#),
        ClientEvent::ResponseCreate,
        ClientEvent::commentary("Greet the caller and ask how you can help."),
        ClientEvent::fixture_play(&[0, 1000, -1000, 0]),
        ClientEvent::SessionClose,
    ];
    events
        .iter()
        .map(|e| serde_json::from_str(&e.to_text()).expect("JSON text"))
        .collect()
}

#[test]
fn every_client_event_the_module_builds_is_valid_for_the_sdk() {
    let events = every_client_event();
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for ty in [
        "session.start",
        "session.input_audio.append",
        "session.update",
        "response.item.create",
        "response.create",
        "session.commentary.append",
        "session.output_audio.fixture.play",
        "session.close",
    ] {
        assert!(types.contains(&ty), "{ty} is not checked");
    }
    // `delegation_id` is "required, nullable" on commentary: sent as null, not left out.
    let commentary = events
        .iter()
        .find(|e| e["type"] == "session.commentary.append");
    assert_eq!(commentary.map(|c| &c["delegation_id"]), Some(&Value::Null));
    support::sdk::run("validate_live.py", &["client"], &Value::Array(events));
}

#[test]
fn a_wrong_event_is_refused_by_the_checker() {
    // The checker itself must fail on what the real server refuses (an undeclared field, a
    // PCM rate the schema forbids), or the test above proves nothing.
    let mut bad = every_client_event().remove(0);
    bad["session"]["audio"]["format"] = json!({"type": "audio/pcm", "rate": 8000});
    bad["session"]["voice"] = json!("marin");
    let result = std::panic::catch_unwind(|| {
        support::sdk::run("validate_live.py", &["client"], &Value::Array(vec![bad]))
    });
    match result {
        Err(_) => {}
        Ok(None) => eprintln!("SKIPPED: no SDK to refuse it"),
        Ok(Some(out)) => panic!("the checker accepted a wrong event: {out}"),
    }
}

#[test]
fn server_events_built_by_the_sdk_parse_into_their_variants() {
    let Some(out) = support::sdk::run("validate_live.py", &["samples"], &json!([])) else {
        return;
    };
    let samples: Vec<Value> = serde_json::from_str(&out).expect("samples JSON");
    assert!(samples.len() >= 15, "{samples:?}");
    for s in samples {
        let (variant, event) = (s["variant"].as_str().unwrap_or(""), &s["event"]);
        let text = event.to_string();
        let parsed = parse(&text).unwrap_or_else(|e| panic!("{variant}: {e}\n{text}"));
        let e = &parsed.event;
        let ok = match variant {
            "SessionStarted" => matches!(e, ServerEvent::SessionStarted { session }
                if session.id == "sess_live_1" && session.expires_at == 1_800_000_000),
            "SessionUpdated" => matches!(e, ServerEvent::SessionUpdated { .. }),
            "OutputAudioDelta" => {
                matches!(e, ServerEvent::OutputAudioDelta { delta } if delta == "//8A/w==")
            }
            "InputTranscriptDelta" => matches!(e, ServerEvent::InputTranscriptDelta(d)
                if d.start_ms == 1200 && d.end_ms == 2400 && d.delta == "where is my order"),
            "OutputTranscriptDelta" => matches!(e, ServerEvent::OutputTranscriptDelta(d)
                if d.start_ms == 2600 && d.end_ms == 3300),
            "DelegationCreated" => {
                matches!(e, ServerEvent::DelegationCreated { delegation, offset_ms: 2500 }
                if delegation.id == "del_1" && delegation.target == "responses")
            }
            "FunctionCall" => e.function_call().is_some_and(|c| {
                c.call_id == "call_1"
                    && c.name == "lookup_order"
                    && c.arguments == r#"{"order":"A-17"}"#
                    && c.delegation_id.as_deref() == Some("del_1")
            }),
            "ResponseEvent" => {
                matches!(
                    e,
                    ServerEvent::ResponseEvent {
                        delegation_id: None,
                        ..
                    }
                ) && e.function_call().is_none()
            }
            "FixturePlaying" => matches!(e, ServerEvent::FixturePlaying),
            "FixturePlayed" => matches!(e, ServerEvent::FixturePlayed),
            "CommentaryAppended" => {
                matches!(e, ServerEvent::CommentaryAppended { start_ms: 5000, .. })
            }
            "UsageUpdated" => matches!(e, ServerEvent::UsageUpdated { usage }
                if usage.seconds == 42.0 && usage.active_seconds == Some(40)),
            "SessionClosed" => {
                matches!(e, ServerEvent::SessionClosed { reason: CloseReason::Expired, usage }
                if usage.seconds == 42.0)
            }
            "FatalError" => matches!(e, ServerEvent::Error { error } if error.is_fatal()),
            "Error" => matches!(e, ServerEvent::Error { error }
                if !error.is_fatal() && error.param.as_deref() == Some("session.voice")),
            "Info" => matches!(e, ServerEvent::Info { .. }),
            "Unknown" => {
                *e == ServerEvent::Unknown
                    && parsed.unknown_type.as_deref() == event["type"].as_str()
            }
            other => panic!("no check for {other}"),
        };
        assert!(ok, "{variant} parsed as {e:?}\n{text}");
    }
}
