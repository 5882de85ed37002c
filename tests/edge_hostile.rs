//! The hostile cases that already held when issue 18's probe ran, kept so none regresses:
//! junk on the media socket, TwiML injection through caller-controlled fields, forged and
//! misdirected Twilio signatures, and 500 console watchers — each beside a legitimate call
//! that must still complete. (Slow and huge integrator answers: `tests/tools.rs`; the report
//! spool's bound: `tests/reports.rs`; tokens: `tests/web.rs`; secrets in logs at every level:
//! `tests/edge_logs.rs`.)

use std::time::Duration;

use callbridge::server::Running;
use callbridge::sim::SimConfig;
use callbridge::twilio::signature::{sign, Algorithm};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::bridge;
use support::caller::{agent_done, pause, place_call_as, say};

const CONSOLE: &str = "console-token-for-hostile-tests";
const AUTH: &str = "twilio-auth-token-hostile-tests";
const PUBLIC: &str = "https://bridge.example.com";

fn sim_config() -> SimConfig {
    SimConfig {
        reply_texts: vec!["Hello, how can I help?".into()],
        response_audio_ms: 600,
        ..SimConfig::default()
    }
}

/// A legitimate call: the caller speaks, the agent answers, the caller hears it.
async fn legitimate_call(server: &Running, sid: &str) {
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        place_call_as(
            server.url(""),
            sid,
            vec![pause(200), say(600), agent_done(600, 15)],
            100,
        ),
    )
    .await
    .expect("the call ends in time");
    assert!(
        report.media_received > 0,
        "{sid}: the caller heard the agent"
    );
    assert!(
        report.protocol_violations.is_empty(),
        "{sid}: {:?}",
        report.protocol_violations
    );
}

/// Junk on `/media` — not JSON, not base64, a 1 MiB frame, binary frames, media before
/// `start`, a `start` without its fields — closes or is ignored per socket; a call placed
/// meanwhile runs normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_media_sockets_leaves_real_calls_alone() {
    let (_sim, server, _) = bridge::with_simulator(sim_config(), &[]).await;
    let media = format!("ws://{}/media", server.addr);
    let junk: Vec<Vec<Message>> = vec![
        vec![Message::Text("{not json".into())],
        vec![Message::Text(
            r#"{"event":"media","streamSid":"MZx","media":{"payload":"%%%not base64%%%"}}"#.into(),
        )],
        vec![Message::Text("x".repeat(1024 * 1024).into())],
        vec![Message::Binary(vec![0u8; 4096].into())],
        vec![Message::Text(
            r#"{"event":"start","sequenceNumber":"1","streamSid":"MZy","start":{}}"#.into(),
        )],
        vec![
            Message::Text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.into()),
            Message::Text(
                r#"{"event":"media","sequenceNumber":"2","streamSid":"MZz","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"////"}}"#
                    .into(),
            ),
            Message::Text(r#"{"event":"stop","sequenceNumber":"3","streamSid":"MZz"}"#.into()),
        ],
    ];
    let attacks = junk.into_iter().map(|msgs| {
        let media = media.clone();
        tokio::spawn(async move {
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&media).await else {
                return;
            };
            for m in msgs {
                if ws.send(m).await.is_err() {
                    return;
                }
            }
            // Whatever the bridge does with it, it does within the idle timeout.
            let _ = tokio::time::timeout(Duration::from_secs(3), async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        })
    });
    let attacks: Vec<_> = attacks.collect();
    legitimate_call(&server, "CAlegit1").await;
    for a in attacks {
        a.await.expect("attack task");
    }
    let health = reqwest::get(server.url("/healthz")).await.expect("health");
    assert!(health.status().is_success());
    legitimate_call(&server, "CAlegit2").await;
    server.stop(Duration::from_secs(1)).await;
}

/// Caller-controlled fields (`From`, `To`, `CallSid`) with XML in them give well-formed TwiML
/// with exactly one `<Connect><Stream>` and no injected verb.
#[tokio::test]
async fn twiml_injection_through_caller_fields_is_inert() {
    let (_sim, server, _) = bridge::with_simulator(sim_config(), &[]).await;
    let evil =
        r#""/><Hangup/><Redirect>https://evil.example.com</Redirect><Parameter name="x" value=""#;
    let twiml_for = |field: &'static str, value: &'static str| {
        let url = server.url("/twiml");
        async move {
            let body =
                serde_urlencoded::to_string([(field, value), ("AccountSid", "AC1")]).expect("form");
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("webhook")
                .text()
                .await
                .expect("body")
        }
    };
    let elements = |twiml: &str| -> Vec<String> {
        let doc = roxmltree::Document::parse(twiml)
            .unwrap_or_else(|e| panic!("not well-formed ({e}):\n{twiml}"));
        doc.descendants()
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name().to_owned())
            .collect()
    };
    for field in ["From", "To", "CallSid"] {
        let plain = elements(&twiml_for(field, "+15557770000").await);
        let twiml = twiml_for(field, evil).await;
        assert_eq!(
            elements(&twiml),
            plain,
            "{field}: the same verbs, none injected"
        );
        let doc = roxmltree::Document::parse(&twiml).expect("well-formed");
        assert!(
            doc.descendants()
                .any(|n| n.attribute("value") == Some(evil)),
            "{field}: the value arrives intact as an attribute:\n{twiml}"
        );
    }
    server.stop(Duration::from_secs(1)).await;
}

/// With `twilio_auth_token`: no signature, a forged one, and a valid signature made for
/// another URL or other fields are all refused 403; a correctly signed webhook is answered.
#[tokio::test]
async fn forged_or_misdirected_signatures_are_refused() {
    let (_sim, server, _) = bridge::with_simulator(
        sim_config(),
        &[("TWILIO_AUTH_TOKEN", AUTH), ("PUBLIC_URL", PUBLIC)],
    )
    .await;
    let params = vec![
        ("CallSid".to_owned(), "CAsig".to_owned()),
        ("From".to_owned(), "+15557770000".to_owned()),
    ];
    let post = |sig: Option<String>, fields: Vec<(String, String)>| {
        let url = server.url("/twiml");
        async move {
            let mut req = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(serde_urlencoded::to_string(&fields).expect("form"));
            if let Some(s) = sig {
                req = req.header("X-Twilio-Signature", s);
            }
            req.send().await.expect("answer").status().as_u16()
        }
    };
    let good = sign(AUTH, Algorithm::Sha1, &format!("{PUBLIC}/twiml"), &params);
    let other_url = sign(
        AUTH,
        Algorithm::Sha1,
        &format!("{PUBLIC}/elsewhere"),
        &params,
    );
    let other_key = sign(
        "another-accounts-token",
        Algorithm::Sha1,
        &format!("{PUBLIC}/twiml"),
        &params,
    );
    let mut tampered = params.clone();
    tampered[1].1 = "+15550000000".into();
    assert_eq!(post(None, params.clone()).await, 403, "unsigned");
    assert_eq!(
        post(Some("AAAA".into()), params.clone()).await,
        403,
        "forged"
    );
    assert_eq!(
        post(Some(other_url), params.clone()).await,
        403,
        "another URL"
    );
    assert_eq!(
        post(Some(other_key), params.clone()).await,
        403,
        "another key"
    );
    assert_eq!(
        post(Some(good.clone()), tampered).await,
        403,
        "fields changed"
    );
    assert_eq!(post(Some(good), params).await, 200, "signed right");
    // An unsigned media socket is refused before any upgrade.
    let r = tokio_tungstenite::connect_async(format!("ws://{}/media", server.addr)).await;
    assert!(r.is_err(), "unsigned /media upgraded");
    server.stop(Duration::from_secs(1)).await;
}

/// 500 console watchers (the event feed is a long-lived HTTP response each) do not keep a
/// call from being answered or the health check from answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_console_watchers_beside_a_call() {
    let (_sim, server, _) =
        bridge::with_simulator(sim_config(), &[("CALLBRIDGE_CONSOLE_TOKEN", CONSOLE)]).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut watchers = Vec::new();
    for _ in 0..500 {
        let resp = http
            .get(server.url("/console/events"))
            .bearer_auth(CONSOLE)
            .send()
            .await
            .expect("watcher connects");
        assert_eq!(resp.status().as_u16(), 200);
        watchers.push(resp);
    }
    legitimate_call(&server, "CAwatched").await;
    // One of the watchers saw the call.
    let mut seen = String::new();
    let mut first = watchers.swap_remove(0);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = first.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("CAwatched") {
                break;
            }
        }
    })
    .await;
    assert!(seen.contains("CAwatched"), "{seen}");
    let health = reqwest::get(server.url("/healthz")).await.expect("health");
    assert!(health.status().is_success());
    drop(watchers);
    server.stop(Duration::from_secs(1)).await;
}
