//! What a profile owns beyond the per-call prompt settings: its model audio format
//! (`audio_mode`), its Realtime dialect (`dialect`), and tools it defines itself
//! (`[[profiles.NAME.tools]]`). Through the real server and the simulator: the chosen
//! profile's format and dialect are the session's (a pcm profile on a pcmu bridge sends 24 kHz
//! PCM16; a beta profile on a GA bridge dials with the beta header and configures the beta
//! session shape), and a profile's own tool is offered and called, signed, while another
//! profile's calls never see it. In the state machine: the socket dialled before `start` in
//! the old dialect is closed and another dialled, and the held caller audio goes up resampled.

use std::time::Duration;

use base64::Engine;
use callbridge::sim::{SessionLog, SimConfig, SimDialect, Simulator};
use futures_util::SinkExt;
use serde_json::{json, Value};

mod support;
use support::tool_server::{tool_server, SECRET};
use support::{bridge, eventually, media, simulator, TempDir, WAIT};

/// Loads `text` as the config file with the tool secret in the environment.
fn load(tag: &str, text: &str) -> Result<callbridge::config::Config, String> {
    let dir = TempDir::new(&format!("profiles-own-{tag}"));
    bridge::load(
        &[("CALLBRIDGE_TOOL_SECRET", SECRET)],
        Some(&dir.file("callbridge.toml", text)),
    )
}

#[test]
fn a_profiles_format_dialect_and_tools_are_validated_naming_the_key() {
    let base = "[[tools]]\nname = \"lookup_order\"\nurl = \"https://crm.example.com/t\"\n\
                [profiles.sales]\nnumbers = [\"+15550001111\"]\n";
    let own = "[[profiles.sales.tools]]\n";
    for (extra, key, says) in [
        ("audio_mode = \"opus\"\n", "profiles.sales.audio_mode", "pcm"),
        ("dialect = \"v2\"\n", "profiles.sales.dialect", "beta"),
        // The dialect's own rules apply to the profile: GA has no temperature.
        ("temperature = 0.7\n", "profiles.sales.temperature", "beta"),
        (
            &format!("{own}name = \"crm\"\nurl = \"ftp://crm.example.com\"\n"),
            "profiles.sales.tools[0].url",
            "http",
        ),
        (
            &format!("{own}name = \"end_call\"\nurl = \"https://crm.example.com/t\"\n"),
            "profiles.sales.tools[0].name",
            "built-in",
        ),
        (
            &format!("{own}name = \"crm\"\nurll = \"https://crm.example.com/t\"\n"),
            "profiles.sales.tools[0]",
            "urll",
        ),
        (
            &format!("{own}name = \"crm\"\nurl = \"https://a.example.com/t\"\n{own}name = \"crm\"\nurl = \"https://b.example.com/t\"\n"),
            "profiles.sales.tools[1].name",
            "twice",
        ),
        (
            &format!("{own}name = \"lookup_ordr\"\n"),
            "profiles.sales.tools",
            "not a tool",
        ),
        (
            &format!("{own}name = \"crm\"\nurl = \"https://crm.example.com/t\"\ntimeout_ms = 5\n"),
            "profiles.sales.tools[0].timeout_ms",
            "",
        ),
    ] {
        let err = load("bad", &format!("{base}{extra}")).unwrap_err();
        assert!(err.starts_with(key) && err.contains(says), "{extra:?}: {err}");
    }
    // A table with only a name picks a top-level tool, like a name in `tools = [..]`.
    let cfg = load("pick", &format!("{base}{own}name = \"lookup_order\"\n")).expect("valid");
    let sales = &cfg.profiles.by_name["sales"].call.tools;
    assert_eq!(sales.tools.len(), 1);
    assert_eq!(sales.tools[0].url, "https://crm.example.com/t");
    // A profile's own tool is signed like any other: no secret, no tool.
    let dir = TempDir::new("profiles-own-nosecret");
    let err = bridge::load(
        &[],
        Some(&dir.file(
            "callbridge.toml",
            &format!(
                "[profiles.sales]\n{own}name = \"crm\"\nurl = \"https://crm.example.com/t\"\n"
            ),
        )),
    )
    .unwrap_err();
    assert!(
        err.starts_with("tool_secret") && err.contains("profiles.sales.tools[0]"),
        "{err}"
    );
}

/// A call to `to` (stream `MZ{tag}`, call `CA{tag}`) on `server`, once its session is
/// configured: the media socket, the session, and the `session.update` it received. The
/// session is the `n`th of the simulator's to be configured (a call whose dialect changed at
/// `start` dialled a second socket; the first is closed unconfigured, and does not count).
async fn call_to(
    server: &callbridge::server::Running,
    sim: &Simulator,
    tag: &str,
    to: &str,
    n: usize,
) -> (media::Ws, SessionLog, Value) {
    let ws = media::started(
        server.addr,
        &format!("MZ{tag}"),
        &format!("CA{tag}"),
        json!({ "To": to }),
    )
    .await;
    let update_of = |s: &SessionLog| {
        s.received
            .iter()
            .find(|e| e["type"] == "session.update")
            .cloned()
    };
    let mut found = None;
    let configured = eventually(WAIT, async || {
        found = sim
            .sessions()
            .into_iter()
            .filter_map(|s| update_of(&s).map(|u| (s, u)))
            .nth(n);
        found.is_some()
    })
    .await;
    assert!(configured, "no session configured for {tag}");
    let (session, update) = found.expect("configured");
    (ws, session, update)
}

/// A bridge on `sim` with `toml` as its config file (and the tool secret).
async fn bridge_on(
    sim: &Simulator,
    tag: &str,
    toml: &str,
) -> (callbridge::server::Running, TempDir) {
    let dir = TempDir::new(&format!("profiles-own-{tag}"));
    let url = sim.url();
    let (server, _) = bridge::start(
        &[
            ("REALTIME_URL", &url),
            ("OPENAI_API_KEY", "sk-test"),
            ("CALLBRIDGE_TOOL_SECRET", SECRET),
        ],
        Some(&dir.file("callbridge.toml", toml)),
    )
    .await;
    (server, dir)
}

/// One second of caller audio (μ-law silence), in Twilio's 20 ms media messages.
async fn send_one_second(ws: &mut media::Ws, stream_sid: &str) {
    let payload = base64::engine::general_purpose::STANDARD.encode([0xFFu8; 160]);
    for i in 0..50u32 {
        ws.send(media::text(
            json!({"event": "media", "sequenceNumber": (i + 2).to_string(),
            "streamSid": stream_sid, "media": {"track": "inbound", "chunk": (i + 1).to_string(),
            "timestamp": (i * 20).to_string(), "payload": payload}}),
        ))
        .await
        .expect("send");
    }
}

#[tokio::test]
async fn a_pcm_profile_on_a_pcmu_bridge_sends_24_khz_pcm() {
    let sim = simulator(SimConfig::default()).await;
    let toml = "audio_mode = \"pcmu\"\n[profiles.hifi]\nnumbers = [\"+15550001111\"]\naudio_mode = \"pcm\"\n";
    let (server, _dir) = bridge_on(&sim, "pcm", toml).await;
    let (mut ws, session, update) = call_to(&server, &sim, "pcm", "+15550001111", 0).await;
    assert_eq!(
        update["session"]["audio"]["input"]["format"],
        json!({"type": "audio/pcm", "rate": 24000}),
        "{update:#}"
    );
    assert_eq!(
        update["session"]["audio"]["output"]["format"],
        json!({"type": "audio/pcm", "rate": 24000})
    );
    send_one_second(&mut ws, "MZpcm").await;
    // 1 s of 8 kHz μ-law is 8000 bytes; at 24 kHz PCM16 it is 48 000 (less the resampler's
    // delay still inside it).
    let mut appended = 0;
    let upsampled = eventually(WAIT, async || {
        appended = sim
            .session(session_index(&sim, &session.id))
            .map_or(0, |s| s.appended_audio_bytes);
        appended >= 44_000
    })
    .await;
    assert!(
        upsampled,
        "appended {appended} bytes for 1 s of caller audio"
    );
    assert!(appended <= 48_000, "appended {appended} bytes");
    media::hang_up(&mut ws, media::stop("AC1", "MZpcm", "CApcm")).await;
    server.stop(Duration::from_secs(1)).await;
}

/// The index of session `id` among the simulator's sessions.
fn session_index(sim: &Simulator, id: &str) -> usize {
    sim.sessions()
        .iter()
        .position(|s| s.id == id)
        .unwrap_or(usize::MAX)
}

#[tokio::test]
async fn a_beta_profile_on_a_ga_bridge_speaks_beta() {
    let sim = simulator(SimConfig::default()).await;
    let toml =
        "[profiles.legacy]\nnumbers = [\"+15550002222\"]\ndialect = \"beta\"\ntemperature = 0.7\n";
    let (server, _dir) = bridge_on(&sim, "beta", toml).await;
    let (mut ws, session, update) = call_to(&server, &sim, "beta", "+15550002222", 0).await;
    assert_eq!(session.dialect, SimDialect::Beta);
    assert!(
        session
            .headers
            .iter()
            .any(|(k, v)| k == "openai-beta" && v == "realtime=v1"),
        "{:?}",
        session.headers
    );
    let s = &update["session"];
    assert_eq!(s["input_audio_format"], "g711_ulaw", "{s:#}");
    assert_eq!(s["output_audio_format"], "g711_ulaw");
    assert!(s["temperature"]
        .as_f64()
        .is_some_and(|t| (t - 0.7).abs() < 1e-6));
    assert!(
        s.get("type").is_none() && s.get("audio").is_none(),
        "GA fields: {s:#}"
    );
    assert_eq!(
        session.errors_sent, 0,
        "the simulator refused: {:?}",
        session.sent
    );
    // A session the call dialled in the old dialect is not the one configured, and is closed.
    for other in sim.sessions().iter().filter(|o| o.id != session.id) {
        assert_eq!(other.dialect, SimDialect::Ga);
        assert!(!other.received.iter().any(|e| e["type"] == "session.update"));
    }
    media::hang_up(&mut ws, media::stop("AC1", "MZbeta", "CAbeta")).await;
    server.stop(Duration::from_secs(1)).await;
}

fn tools_offered(update: &Value) -> Vec<(String, String)> {
    update["session"]["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or_default().to_owned(),
                        t["description"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The billing profile defines `invoice_lookup` and its own `lookup_order` (replacing the top
/// level's for its calls); the support profile inherits the top level.
#[tokio::test]
async fn a_profiles_own_tool_is_offered_and_called_signed_and_other_profiles_never_see_it() {
    let (tools, base) = tool_server().await;
    // Each session's first response (the greeting's) calls invoice_lookup.
    let sim = simulator(SimConfig {
        response_audio_ms: 200,
        reply_tool_calls: vec![vec![(
            "invoice_lookup".to_owned(),
            r#"{"order_id":"INV-7"}"#.to_owned(),
        )]],
        ..SimConfig::default()
    })
    .await;
    let toml = format!(
        r#"
[[tools]]
name = "lookup_order"
description = "Looks up an order."
url = "{base}/tools/nowhere"

[profiles.billing]
numbers = ["+15550001111"]
greeting = "Greet the caller."

[[profiles.billing.tools]]
name = "invoice_lookup"
description = "Finds an invoice."
parameters = {{ type = "object", properties = {{ order_id = {{ type = "string" }} }}, required = ["order_id"] }}
url = "{base}/tools/lookup_order"
timeout_ms = 5000

[[profiles.billing.tools]]
name = "lookup_order"
description = "Billing's order lookup."
url = "{base}/tools/lookup_order"

[profiles.support]
numbers = ["+15550002222"]
"#
    );
    let (server, _dir) = bridge_on(&sim, "tools", &toml).await;

    let (mut ws, _, update) = call_to(&server, &sim, "bill", "+15550001111", 0).await;
    let mut offered = tools_offered(&update);
    offered.sort();
    assert_eq!(
        offered,
        [
            ("invoice_lookup".into(), "Finds an invoice.".into()),
            ("lookup_order".into(), "Billing's order lookup.".into()),
        ],
        "{update:#}"
    );
    // The model calls the profile's tool: its webhook gets the call, signed.
    let called = eventually(WAIT, async || !tools.hits.lock().unwrap().is_empty()).await;
    assert!(called, "the profile's tool was not called");
    let hit = tools.hits.lock().unwrap()[0].clone();
    assert_eq!(hit.path, "lookup_order", "the profile's URL");
    assert!(hit.signed, "signed with tool_secret");
    assert_eq!(hit.body["tool"], "invoice_lookup");
    assert_eq!(hit.body["arguments"]["order_id"], "INV-7");
    let answered = eventually(WAIT, async || {
        sim.session(0).is_some_and(|s| {
            s.received
                .iter()
                .any(|e| e["item"]["type"] == "function_call_output")
        })
    })
    .await;
    assert!(answered, "the tool's answer did not reach the model");
    media::hang_up(&mut ws, media::stop("AC1", "MZbill", "CAbill")).await;

    // Another profile: the top level's tools, not billing's.
    let (mut ws, _, update) = call_to(&server, &sim, "sup", "+15550002222", 1).await;
    assert_eq!(
        tools_offered(&update),
        [("lookup_order".into(), "Looks up an order.".into())]
    );
    media::hang_up(&mut ws, media::stop("AC1", "MZsup", "CAsup")).await;
    assert_eq!(
        tools.hits.lock().unwrap().len(),
        1,
        "support's call ran no tool"
    );
    server.stop(Duration::from_secs(1)).await;
}

/// In the state machine: a call dialled in the bridge's dialect and format (GA, pcmu) whose
/// profile, decided at `start`, says beta and pcm. The socket parked meanwhile is closed
/// unconfigured, a new one dialled; it is configured with the profile's settings, and the
/// caller audio held meanwhile goes up as 24 kHz PCM16 (6 bytes per μ-law byte).
#[test]
fn a_profile_decided_at_start_redials_in_its_dialect_and_switches_the_format() {
    use callbridge::call::effects::UpstreamEffect;
    use callbridge::call::{CallConfig, Output};
    use callbridge::realtime::{AudioFormat, ClientEvent, Dialect};
    use support::call_harness::{appends, config, to_model, upstream_effects, H};

    let mut h = H::new(config(AudioFormat::Pcmu));
    h.call.defer_settings();
    h.start("{}");
    h.connect(10); // generation 1, parked
    h.frame(0xFF, 20);
    let mut profile: CallConfig = config(AudioFormat::Pcm24k);
    profile.dialect = Dialect::Beta;
    h.call
        .settings_decided(Some(std::sync::Arc::new(profile)), h.at(30));
    let outs = h.drain();
    assert_eq!(
        upstream_effects(&outs),
        [
            UpstreamEffect::CloseUpstream { generation: 1 },
            UpstreamEffect::ConnectUpstream { generation: 2 },
        ]
    );
    assert!(to_model(&outs).is_empty(), "nothing to the old socket");
    assert_eq!(h.call.dialect(), Dialect::Beta);
    h.call.on_upstream_open(2, h.at(80));
    let outs = h.drain();
    let model = to_model(&outs);
    assert!(
        matches!(&model[0], (2, ClientEvent::SessionUpdate(s)) if s.audio_format == AudioFormat::Pcm24k),
        "{model:?}"
    );
    let sent: usize = appends(&outs).iter().map(Vec::len).sum();
    assert!(
        (160 * 5..=160 * 6).contains(&sent),
        "20 ms held as μ-law, sent as 24 kHz PCM16: {sent} bytes"
    );
    assert!(!outs.iter().any(|o| matches!(o, Output::Hangup(_))));
}
