use super::*;
use crate::realtime::{AudioFormat, Dialect, TurnDetection};
use std::collections::HashMap;

fn load(env: &[(&str, &str)], file: Option<&str>) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dir = std::env::temp_dir().join(format!("cb-cfg-{}", std::process::id()));
    // One file per call: tests run in parallel, and two files named alike (this used to
    // be the text's length) overwrote each other.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let path = file.map(|text| {
        let _ = std::fs::create_dir_all(&dir);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = dir.join(format!("{n}.toml"));
        std::fs::write(&p, text).unwrap();
        p
    });
    Config::load(
        path.as_deref(),
        &|k| env.get(k).cloned(),
        &Overrides::default(),
    )
}

#[test]
fn defaults_are_ga_pcmu_openai() {
    let c = load(&[], None).unwrap();
    assert_eq!(c.realtime_url, DEFAULT_REALTIME_URL);
    assert_eq!(c.call.dialect, Dialect::Ga);
    assert_eq!(c.call.session.audio_format, AudioFormat::Pcmu);
    assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.auth, AuthStyle::Bearer);
}

#[test]
fn env_overrides_file_and_aliases_work() {
    let c = load(
        &[
            ("CALLBRIDGE_AUDIO_MODE", "pcm"),
            ("OPENAI_API_KEY", "sk-secret"),
            (
                "REALTIME_URL",
                "wss://x.openai.azure.com/openai/v1/realtime?model=d",
            ),
            ("CALLBRIDGE_VAD_THRESHOLD", "0.7"),
        ],
        Some("audio_mode = \"pcmu\"\nvoice = \"cedar\"\ndialect = \"beta\"\n"),
    )
    .unwrap();
    assert_eq!(c.call.session.audio_format, AudioFormat::Pcm24k);
    assert_eq!(c.call.session.voice, "cedar");
    assert_eq!(c.call.dialect, Dialect::Beta);
    assert_eq!(c.auth, AuthStyle::ApiKey, "Azure host means api-key auth");
    assert!(
        !format!("{c:?}").contains("sk-secret"),
        "the key is never printed"
    );
    match c.call.session.turn_detection {
        TurnDetection::ServerVad { threshold, .. } => assert!((threshold - 0.7).abs() < 1e-6),
        _ => panic!(),
    }
}

#[test]
fn wrong_values_name_the_key_and_the_allowed_values() {
    for (env, key, allowed) in [
        (("CALLBRIDGE_AUDIO_MODE", "opus"), "audio_mode", "pcmu, pcm"),
        (("CALLBRIDGE_DIALECT", "v2"), "dialect", "ga, beta"),
        (("CALLBRIDGE_VOICE", "robot"), "voice", "marin"),
        (("CALLBRIDGE_SPEED", "3"), "speed", "0.25 to 1.5"),
        (
            ("CALLBRIDGE_VAD", "push"),
            "vad",
            "server_vad, semantic_vad",
        ),
        (("CALLBRIDGE_TEMPERATURE", "0.8"), "temperature", "beta"),
        (
            ("CALLBRIDGE_MAX_OUTPUT_TOKENS", "9999"),
            "max_output_tokens",
            "4096",
        ),
        (
            ("CALLBRIDGE_VAD_THRESHOLD", "abc"),
            "CALLBRIDGE_VAD_THRESHOLD",
            "number",
        ),
        (
            ("REALTIME_URL", "https://api.openai.com"),
            "realtime_url",
            "ws://",
        ),
    ] {
        let err = load(&[env], None).unwrap_err().to_string();
        assert!(err.starts_with(key), "{err}");
        assert!(err.contains(allowed), "{err}");
    }
}

#[test]
fn tools_transfer_and_end_call_are_read_and_declared() {
    let c = load(
        &[
            (
                "CALLBRIDGE_TRANSFER_TARGETS",
                "sales=+15551230000, billing=sip:billing@pbx.example.com",
            ),
            ("TWILIO_AUTH_TOKEN", "token"),
        ],
        Some(
            r#"
tool_secret = "s3cret-s3cret-s3cret"
end_call = true
transfer_caller_id = "+15550001111"

[[tools]]
name = "lookup_order"
description = "Look up an order by its number"
parameters = { type = "object", properties = { order_id = { type = "string" } }, required = ["order_id"] }
url = "https://crm.example.com/tools/lookup_order"
timeout_ms = 5000
filler_after_ms = 1200
"#,
        ),
    )
    .unwrap();
    let t = &c.call.tools;
    assert_eq!(t.tools.len(), 1);
    assert_eq!(t.tools[0].timeout, Duration::from_millis(5000));
    assert_eq!(t.tools[0].parameters["required"][0], "order_id");
    assert!(t.end_call);
    assert_eq!(
        t.transfer_targets,
        [
            ("sales".to_string(), "+15551230000".to_string()),
            ("billing".into(), "sip:billing@pbx.example.com".into())
        ]
    );
    assert!(t.filler.is_some(), "the shipped filler by default");
    assert!(!format!("{c:?}").contains("s3cret"));
    let names: Vec<&str> = c
        .call
        .session
        .tools
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["lookup_order", "end_call", "transfer_call"]);
    let transfer = &c.call.session.tools[2];
    assert_eq!(
        transfer["parameters"]["properties"]["destination"]["enum"],
        serde_json::json!(["sales", "billing"])
    );
}

#[test]
fn bad_tool_settings_name_the_key() {
    let tool = |extra: &str| {
        format!("tool_secret = \"k-k-k-k-k-k-k-k-k\"\n[[tools]]\nname = \"t\"\nurl = \"https://x.example.com/t\"\n{extra}")
    };
    for (file, key) in [
        (
            "[[tools]]\nname = \"bad name\"\nurl = \"https://x.example.com\"\n".to_string(),
            "tools[0].name",
        ),
        (
            "tool_secret = \"k-k-k-k-k-k-k-k-k\"\n[[tools]]\nname = \"end_call\"\nurl = \"https://x.example.com\"\n".into(),
            "tools[0].name",
        ),
        (
            "[[tools]]\nname = \"t\"\nurl = \"https://x.example.com/t\"\n".into(),
            "tool_secret",
        ),
        (tool("timeout_ms = 5"), "tools[0].timeout_ms"),
        (tool("parameters = { type = \"string\" }"), "tools[0].parameters"),
        (
            "tool_secret = \"k-k-k-k-k-k-k-k-k\"\n[[tools]]\nname = \"t\"\nurl = \"ftp://x.example.com/t\"\n".into(),
            "tools[0].url",
        ),
        (
            "transfer_targets = { sales = \"5551234\" }\n".into(),
            "transfer_targets",
        ),
        ("transfer_caller_id = \"sales\"\n".into(), "transfer_caller_id"),
        ("end_call = true\n".into(), "end_call"),
        (
            "transfer_targets = { sales = \"+15551230000\" }\n".into(),
            "transfer_targets",
        ),
    ] {
        let err = load(&[], Some(&file)).unwrap_err().to_string();
        assert!(err.starts_with(key), "{file}: {err}");
    }
    let twice = format!(
        "{}\n[[tools]]\nname = \"t\"\nurl = \"https://y.example.com\"\n",
        tool("")
    );
    let err = load(&[], Some(&twice)).unwrap_err().to_string();
    assert!(
        err.starts_with("tools[1].name") && err.contains("twice"),
        "{err}"
    );
}

#[test]
fn web_pages_are_off_by_default_and_need_a_long_token() {
    let c = load(&[], None).unwrap();
    assert!(c.softphone_token.is_none() && c.console_token.is_none());
    // A token alone does not switch the softphone on.
    let c = load(&[("CALLBRIDGE_SOFTPHONE_TOKEN", "0123456789abcdef")], None).unwrap();
    assert!(c.softphone_token.is_none());
    let c = load(
        &[
            ("CALLBRIDGE_SOFTPHONE", "true"),
            ("CALLBRIDGE_SOFTPHONE_TOKEN", "0123456789abcdef"),
            ("CALLBRIDGE_CONSOLE_TOKEN", "fedcba9876543210"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(c.softphone_token, Some(Secret("0123456789abcdef".into())));
    assert_eq!(c.console_token, Some(Secret("fedcba9876543210".into())));
    for (env, key) in [
        (vec![("CALLBRIDGE_SOFTPHONE", "true")], "softphone_token"),
        (
            vec![
                ("CALLBRIDGE_SOFTPHONE", "true"),
                ("CALLBRIDGE_SOFTPHONE_TOKEN", "short"),
            ],
            "softphone_token",
        ),
        (vec![("CALLBRIDGE_CONSOLE_TOKEN", "short")], "console_token"),
    ] {
        let err = load(&env, None).unwrap_err().to_string();
        assert!(err.starts_with(key), "{err}");
    }
}

#[test]
fn unknown_file_keys_are_refused() {
    let err = load(&[], Some("voise = \"marin\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("voise"), "{err}");
}

#[test]
fn report_settings_need_a_spool_and_a_secret() {
    let err = load(
        &[("CALLBRIDGE_REPORT_URL", "https://crm.example.com/r")],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("report_spool_dir"), "{err}");
    let err = load(
        &[
            ("CALLBRIDGE_REPORT_URL", "https://crm.example.com/r"),
            ("CALLBRIDGE_REPORT_SPOOL_DIR", "/tmp/x"),
        ],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("tool_secret"), "{err}");
    let err = load(&[("CALLBRIDGE_REPORT_URL", "crm")], None)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("report_url"), "{err}");
    let err = load(&[("CALLBRIDGE_TWILIO_RECORDING", "mono")], None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("twilio_recording") && err.contains("dual"),
        "{err}"
    );
    let c = load(
        &[
            ("CALLBRIDGE_REPORT_URL", "https://crm.example.com/r"),
            ("CALLBRIDGE_REPORT_SPOOL_DIR", "/tmp/x"),
            ("CALLBRIDGE_TOOL_SECRET", "s-long-enough-for-it"),
            ("CALLBRIDGE_REPORT_RETRY_MAX_S", "60"),
            ("CALLBRIDGE_API_TOKEN", "tok-long-enough-0123"),
        ],
        Some("twilio_recording = \"dual\"\n"),
    )
    .unwrap();
    assert_eq!(c.callcenter.report_retry_max, Duration::from_secs(60));
    assert!(c.callcenter.twilio_recording);
    assert!(
        !format!("{c:?}").contains("tok-long-enough-0123"),
        "the API token is never printed"
    );
}

#[test]
fn short_operator_secrets_refuse_to_start_naming_the_key() {
    for (env, key, file) in [
        ("CALLBRIDGE_API_TOKEN", "api_token", "api_token = \"a\"\n"),
        (
            "CALLBRIDGE_TOOL_SECRET",
            "tool_secret",
            "tool_secret = \"b\"\n",
        ),
    ] {
        for short in ["a", "fifteen-chars-x"] {
            let err = load(&[(env, short)], None).unwrap_err().to_string();
            assert!(
                err.starts_with(key) && err.contains("at least 16"),
                "{env}={short}: {err}"
            );
            if short.len() > 1 {
                assert!(!err.contains(short), "the value is never printed: {err}");
            }
        }
        let err = load(&[], Some(file)).unwrap_err().to_string();
        assert!(err.starts_with(key), "{file}: {err}");
        // Sixteen characters start.
        load(&[(env, "sixteen-chars-xx")], None).unwrap();
    }
}

#[test]
fn dead_letter_bounds_have_defaults_and_are_validated() {
    let c = load(&[], None).unwrap();
    assert_eq!(c.callcenter.report_dead_max, 1000);
    assert_eq!(c.callcenter.report_dead_max_bytes, 64 << 20);
    assert_eq!(
        c.callcenter.report_dead_max_age,
        Duration::from_secs(30 * 86_400)
    );
    let c = load(
        &[
            ("CALLBRIDGE_REPORT_DEAD_MAX", "5"),
            ("CALLBRIDGE_REPORT_DEAD_MAX_BYTES", "4096"),
        ],
        Some("report_dead_max_age_s = 1\n"),
    )
    .unwrap();
    assert_eq!(c.callcenter.report_dead_max, 5);
    assert_eq!(c.callcenter.report_dead_max_bytes, 4096);
    assert_eq!(c.callcenter.report_dead_max_age, Duration::from_secs(1));
    for (var, v) in [
        ("CALLBRIDGE_REPORT_DEAD_MAX", "0"),
        ("CALLBRIDGE_REPORT_DEAD_MAX_BYTES", "-1"),
        ("CALLBRIDGE_REPORT_DEAD_MAX_AGE_S", "0"),
    ] {
        let err = load(&[(var, v)], None).unwrap_err().to_string();
        let key = var.trim_start_matches("CALLBRIDGE_").to_ascii_lowercase();
        assert!(err.starts_with(&key), "{err}");
    }
}

#[test]
fn prewarm_is_on_alone_off_in_a_cluster_unless_set_and_its_ttl_is_bounded() {
    let alone = load(&[], None).unwrap().prewarm;
    assert!(alone.on);
    assert_eq!(alone.ttl, Duration::from_secs(8));
    let cluster = ("CALLBRIDGE_CLUSTER_URL", "nats://127.0.0.1:4222");
    assert!(!load(&[cluster], None).unwrap().prewarm.on);
    let asked = load(&[cluster, ("CALLBRIDGE_PREWARM", "true")], None).unwrap();
    assert!(asked.prewarm.on);
    assert!(
        !load(&[("CALLBRIDGE_PREWARM", "false")], None)
            .unwrap()
            .prewarm
            .on
    );
    let ttl = load(&[("CALLBRIDGE_PREWARM_TTL_S", "20")], None).unwrap();
    assert_eq!(ttl.prewarm.ttl, Duration::from_secs(20));
    for bad in ["0", "61"] {
        let e = load(&[("CALLBRIDGE_PREWARM_TTL_S", bad)], None).unwrap_err();
        assert!(e.to_string().contains("prewarm_ttl_s"), "{e}");
    }
}

#[test]
fn barge_in_confirm_is_the_default_and_hands_turns_to_the_bridge() {
    use crate::call::bargein::BargeInMode;
    let c = load(
        &[],
        Some(include_str!("../../../../callbridge.toml.example")),
    )
    .unwrap();
    assert_eq!(c.call.barge_in.mode, BargeInMode::Confirm);
    assert!(!c.call.session.create_response());
    assert!(!c.call.session.interrupt_response());
    // The server's own turn-taking only with `server`.
    let c = load(&[("CALLBRIDGE_BARGE_IN", "server")], None).unwrap();
    assert_eq!(c.call.barge_in.mode, BargeInMode::Server);
    assert!(c.call.session.create_response() && c.call.session.interrupt_response());
    // Asking the server to interrupt by itself contradicts `confirm`: refused, by name.
    let err = load(&[("CALLBRIDGE_VAD_INTERRUPT_RESPONSE", "true")], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("vad_interrupt_response"), "{err}");
    let c = load(&[("CALLBRIDGE_BARGEIN_MIN_SPEECH_MS", "300")], None).unwrap();
    assert_eq!(c.call.barge_in.min_speech_ms, 300);
}
