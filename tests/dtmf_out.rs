//! The agent presses keys, through the real server: the Realtime simulator calls `send_dtmf`,
//! the fake caller plays what the bridge sends in real time, and a Goertzel receiver (the
//! harness's own, independent of the bridge's generator) finds the keys in what it heard, in
//! order and with their timing. Then an outbound agent working through a phone menu: the
//! callee plays the menu, the agent answers with the key the menu asked for.

use std::time::Duration;

use callbridge::caller::dtmf_detect::{listen, Heard};
use callbridge::caller::{self, CallerOptions, CallerReport, Step};
use callbridge::sim::{reply_tool_calls, SimConfig, Simulator};
use serde_json::Value;

mod support;
use support::caller::{agent_done, pause, place_call, say};
use support::{bridge, rest, simulator, TempDir};

const API_TOKEN: &str = "api-token-for-dtmf-tests";

/// The keys in `heard`, in order.
fn keys_of(heard: &[Heard]) -> Vec<&Heard> {
    heard.iter().filter(|h| h.key.is_some()).collect()
}

/// The `function_call_output`s the model got (as JSON), in order.
fn outputs(sim: &Simulator) -> Vec<Value> {
    let log = sim.session(0).expect("a session");
    log.received
        .iter()
        .filter(|ev| ev["type"] == "conversation.item.create")
        .filter(|ev| ev["item"]["type"] == "function_call_output")
        .filter_map(|ev| serde_json::from_str(ev["item"]["output"].as_str()?).ok())
        .collect()
}

/// The names of the tools the first session was offered.
fn offered(sim: &Simulator) -> Vec<String> {
    let log = sim.session(0).expect("a session");
    log.received
        .iter()
        .filter(|ev| ev["type"] == "session.update")
        .flat_map(|ev| {
            ev["session"]["tools"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|t| Some(t["name"].as_str()?.to_owned()))
        .collect()
}

/// Within 3 ms of `want` (the caller's playback runs on its own clock, frame by frame).
fn near(got: usize, want: usize) -> bool {
    got.abs_diff(want) <= 3
}

#[tokio::test]
async fn the_caller_hears_the_keys_in_order_with_their_timing_between_the_agents_speech() {
    let sim = SimConfig {
        reply_texts: vec!["Entering it now.".into(), "Done.".into()],
        response_audio_ms: 800,
        reply_tool_calls: reply_tool_calls(&[vec![("send_dtmf", r#"{"digits":"1w2#"}"#)]]),
        ..SimConfig::default()
    };
    let (sim, server, _metrics) =
        bridge::with_simulator(sim, &[("CALLBRIDGE_SEND_DTMF", "true")]).await;
    let report = place_call(
        server.url(""),
        vec![pause(200), say(800), agent_done(2_000, 20)],
        300,
    )
    .await;
    assert!(offered(&sim).contains(&"send_dtmf".to_string()));
    let heard = listen(&report.agent_audio);
    let keys = keys_of(&heard);
    let typed: String = keys.iter().filter_map(|h| h.key).collect();
    assert_eq!(typed, "12#", "{heard:?}");
    for k in &keys {
        assert!(near(k.duration_ms(), 100), "a key sounds 100 ms: {k:?}");
        assert!((k.twist_db() - 2.0).abs() < 0.5, "{k:?}");
    }
    assert!(
        near(keys[1].start_ms - keys[0].end_ms, 600),
        "gap + w: {keys:?}"
    );
    assert!(
        near(keys[2].start_ms - keys[1].end_ms, 100),
        "gap: {keys:?}"
    );
    // Speech before the keys (said first, queued first) and after them (the model speaks once
    // told they were heard).
    let speech = |h: &&Heard| h.key.is_none();
    assert!(heard
        .iter()
        .filter(speech)
        .any(|h| h.end_ms <= keys[0].start_ms));
    assert!(heard
        .iter()
        .filter(speech)
        .any(|h| h.start_ms >= keys[2].end_ms));
    assert_eq!(outputs(&sim), [serde_json::json!({"played": "1w2#"})]);
    server.stop(Duration::from_secs(1)).await;
}

/// A bridge that places outbound calls through the fake Twilio REST API, whose profile `ivr`
/// is an agent that works through phone menus (the set-up `docs/tools.md` describes).
const IVR_PROFILE: &str = r#"
[profiles.ivr]
instructions = """You call a company's phone line on behalf of a customer to reach billing.
An automated menu may answer. Listen to the options; when one leads to billing, press its key
with send_dtmf (only the key, e.g. "2") and say nothing while you press it. If a person answers,
ask for billing."""
tools = ["send_dtmf", "end_call"]
vad_silence_duration_ms = 800
"#;

#[tokio::test]
async fn an_outbound_agent_answers_a_phone_menu_with_the_key_it_asks_for() {
    let sim = simulator(SimConfig {
        // The callee's menu, as the model's transcription of it.
        caller_transcripts: vec![
            "Thank you for calling Acme. For sales, press 1. For billing, press 2.".into(),
        ],
        reply_texts: vec![
            "Pressing two.".into(),
            "Hello, I am calling about a bill.".into(),
        ],
        response_audio_ms: 300,
        reply_tool_calls: reply_tool_calls(&[vec![("send_dtmf", r#"{"digits":"2"}"#)]]),
        ..SimConfig::default()
    })
    .await;
    let twilio = rest::fake_twilio().await;
    let dir = TempDir::new("dtmf-ivr");
    let file = dir.file("callbridge.toml", IVR_PROFILE);
    let sim_url = sim.url();
    let twilio_url = twilio.base_url();
    let mut env = vec![
        ("REALTIME_URL", sim_url.as_str()),
        ("PUBLIC_URL", "https://bridge.example.com"),
        ("CALLBRIDGE_API_TOKEN", API_TOKEN),
    ];
    env.extend(rest::env(&twilio_url));
    let (server, _metrics) = bridge::start(&env, Some(&file)).await;

    let answer: Value = reqwest::Client::new()
        .post(server.url("/v1/calls"))
        .bearer_auth(API_TOKEN)
        .json(&serde_json::json!({"to": "+15551230000", "from": "+15550001111", "profile": "ivr"}))
        .send()
        .await
        .expect("bridge answers")
        .json()
        .await
        .expect("JSON");
    let call_sid = answer["call_sid"].as_str().expect("a call sid").to_owned();
    let twiml = twilio.requests()[0]
        .field("Twiml")
        .expect("the call's TwiML")
        .to_owned();
    // Twilio connects the answered call to the <Stream>, with its <Parameter>s.
    let stream = caller::stream_url_from_twiml(&twiml).expect("a <Stream url>");
    let stream = stream.replace(
        "wss://bridge.example.com",
        &server.url("").replace("http", "ws"),
    );
    let report: CallerReport = caller::run(CallerOptions {
        bridge: server.url(""),
        call_sid,
        stream_url: Some(stream),
        parameters: stream_parameters(&twiml),
        script: vec![
            pause(300),
            say(2_500), // "… for billing, press 2."
            Step::WaitAgentDone {
                quiet: Duration::from_millis(1_500),
                timeout: Duration::from_secs(20),
            },
        ],
        tail: Duration::from_millis(300),
        ..CallerOptions::default()
    })
    .await
    .expect("call runs");

    let offered = offered(&sim);
    assert!(offered.contains(&"send_dtmf".to_string()), "{offered:?}");
    let menu_heard = sim
        .session(0)
        .expect("a session")
        .received
        .iter()
        .any(|ev| ev.to_string().contains("For billing, press 2"))
        || sim
            .session(0)
            .expect("a session")
            .sent
            .iter()
            .any(|ev| ev.to_string().contains("For billing, press 2"));
    assert!(menu_heard, "the model was told the menu");
    let heard = listen(&report.agent_audio);
    let keys = keys_of(&heard);
    assert_eq!(keys.len(), 1, "{heard:?}");
    assert_eq!(keys[0].key, Some('2'));
    assert!(near(keys[0].duration_ms(), 100), "{:?}", keys[0]);
    assert_eq!(outputs(&sim), [serde_json::json!({"played": "2"})]);
    server.stop(Duration::from_secs(1)).await;
}

/// The `<Parameter name=".." value=".."/>`s of a TwiML document (values as written: ours have
/// no entities).
fn stream_parameters(twiml: &str) -> Vec<(String, String)> {
    twiml
        .split("<Parameter ")
        .skip(1)
        .filter_map(|p| {
            let attr = |a: &str| {
                let start = p.find(&format!("{a}=\""))? + a.len() + 2;
                Some(p[start..start + p[start..].find('"')?].to_owned())
            };
            Some((attr("name")?, attr("value")?))
        })
        .collect()
}

#[test]
fn send_dtmf_is_a_checked_setting_at_the_top_level_and_per_profile() {
    let dir = TempDir::new("dtmf-config");
    // Twilio REST credentials: the IVR profile's end_call needs them.
    let rest_env = rest::env("http://127.0.0.1:9");
    let load = |toml: &str| bridge::load(&rest_env, Some(&dir.file("c.toml", toml)));
    let names = |call: &callbridge::call::CallConfig| -> Vec<String> {
        call.session
            .tools
            .iter()
            .filter_map(|t| Some(t["name"].as_str()?.to_owned()))
            .collect()
    };
    let off = load("").expect("config");
    assert!(!off.call.tools.send_dtmf, "off unless asked for");
    assert!(!names(&off.call).contains(&"send_dtmf".to_string()));
    let on = load("send_dtmf = true\n").expect("config");
    assert!(names(&on.call).contains(&"send_dtmf".to_string()));

    let e = load("send_dtmf = \"yes\"\n").expect_err("not a bool");
    assert!(e.contains("send_dtmf"), "{e}");
    let e = load("[profiles.ivr]\nsend_dtmf = 3\n").expect_err("not a bool");
    assert!(e.contains("send_dtmf"), "{e}");
    let e = load("tool_secret = \"k-k-k-k-k-k-k-k-k\"\n[[tools]]\nname = \"send_dtmf\"\nurl = \"https://x.example.com\"\n")
        .expect_err("a built-in's name");
    assert!(e.contains("built-in"), "{e}");

    // Per profile: by the key, or by naming it in the profile's tool list.
    let c = load(&format!("{IVR_PROFILE}\n[profiles.plain]\ninstructions = \"hi\"\n[profiles.keyed]\nsend_dtmf = true\n"))
        .expect("config");
    let profile = |n: &str| c.profiles.by_name[n].call.clone();
    assert!(profile("ivr").tools.send_dtmf && profile("keyed").tools.send_dtmf);
    assert!(names(&profile("ivr")).contains(&"send_dtmf".to_string()));
    assert!(!profile("plain").tools.send_dtmf);
}
