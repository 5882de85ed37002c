//! Hardening through the real server and the real binary: secure by default, the drain that
//! drops nothing, `<Reject>` over `max_calls`, barge-in when the caller's playout lags.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use callbridge::metrics::Metrics;

mod support;
use support::binary::{self, Process};
use support::caller::{agent_done, pause};
use support::{bridge, eventually, simulator};

const REMOTE: &str = "wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1";

#[test]
fn serve_refuses_a_remote_upstream_without_a_twilio_token() {
    let out = binary::serve(
        0,
        "info",
        &[("REALTIME_URL", REMOTE), ("OPENAI_API_KEY", "sk-x")],
    )
    .output()
    .expect("run callbridge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("configuration error"), "{stderr}");
    assert!(stderr.contains("twilio_auth_token"), "{stderr}");
    assert!(stderr.contains("allow_unsigned"), "{stderr}");
    assert!(stderr.contains("CALLBRIDGE_ALLOW_UNSIGNED"), "{stderr}");
    assert!(!stderr.contains("sk-x"), "no secret in the message");
}

#[test]
fn allow_unsigned_starts_and_warns() {
    let mut child = Process::spawn(&mut binary::serve(
        0,
        "info",
        &[
            ("REALTIME_URL", REMOTE),
            ("CALLBRIDGE_ALLOW_UNSIGNED", "true"),
        ],
    ));
    let mut seen = Vec::new();
    let warned = child.wait_for_line(Duration::from_secs(60), &mut seen, |line| {
        line.contains("WARN") && line.contains("allow_unsigned = true")
    });
    assert!(warned, "no warning at start; output: {seen:?}");
}

#[tokio::test]
async fn loopback_upstream_needs_no_token_and_a_remote_one_does() {
    let metrics = || Arc::new(Metrics::new().expect("metrics"));
    let local = bridge::config(&[("REALTIME_URL", bridge::NO_UPSTREAM)], None);
    let server = callbridge::server::spawn(local, metrics())
        .await
        .expect("a loopback upstream starts without a token");
    server.stop(Duration::ZERO).await;

    let remote = bridge::config(&[("REALTIME_URL", REMOTE)], None);
    let err = match callbridge::server::spawn(remote, metrics()).await {
        Ok(_) => panic!("a remote upstream without a token must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("twilio_auth_token") && err.contains("allow_unsigned"),
        "{err}"
    );

    let signed = bridge::config(
        &[("REALTIME_URL", REMOTE), ("TWILIO_AUTH_TOKEN", "tok")],
        None,
    );
    callbridge::server::spawn(signed, metrics())
        .await
        .expect("a token makes a remote upstream fine")
        .stop(Duration::ZERO)
        .await;
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = match tokio::net::TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return format!("connect failed: {e}"),
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return "write failed".into();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn talk_then_listen() -> Vec<callbridge::caller::Step> {
    use callbridge::caller::{synthetic_speech, Step};
    vec![
        pause(300),
        Step::Say(synthetic_speech(1000)),
        agent_done(600, 20),
    ]
}

fn served_to_completion(label: &str, r: &callbridge::caller::CallerReport) {
    assert!(!r.closed_by_bridge, "{label}: the bridge ended the call");
    assert!(
        r.protocol_violations.is_empty(),
        "{label}: {:?}",
        r.protocol_violations
    );
    assert_eq!(r.response_latencies.len(), 1, "{label}: the agent answered");
    assert!(r.media_received > 20, "{label}: agent audio was heard");
}

/// SIGTERM (here `stop`) with a call in flight: `/readyz` and `/twiml` answer 503 at once, the
/// running call and a media socket whose TwiML was fetched before the signal are both served to
/// the end, and the drain ends once they have (long before its 60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_serves_running_calls_and_late_media_sockets() {
    use callbridge::caller::{self, CallerOptions};
    let (sim, server, metrics) = bridge::with_answers_of(1500, &[]).await;
    let addr = server.addr;
    let base = server.url("");

    // Call A is running; call B's TwiML is served, but its media socket is not open yet.
    let a = tokio::spawn(caller::run(CallerOptions {
        bridge: base.clone(),
        call_sid: "CA0000000000000000000000000000000A".into(),
        script: talk_then_listen(),
        ..CallerOptions::default()
    }));
    let b_opts = CallerOptions {
        bridge: base.clone(),
        call_sid: "CA0000000000000000000000000000000B".into(),
        script: talk_then_listen(),
        ..CallerOptions::default()
    };
    let twiml_b = caller::fetch_twiml(&b_opts).await.expect("TwiML for B");
    let url_b = caller::stream_url_from_twiml(&twiml_b).expect("stream url");
    eventually(Duration::from_secs(20), async || {
        metrics.calls_active.get() >= 2
    })
    .await;
    // B's webhook warmed B up (`prewarm`): a warm call counts as running.
    assert_eq!(
        metrics.calls_active.get(),
        2,
        "call A is running, B is warm"
    );

    let stopping = tokio::spawn(server.stop(Duration::from_secs(60)));
    let mut ready = String::new();
    eventually(Duration::from_secs(20), async || {
        ready = get(addr, "/readyz").await;
        ready.starts_with("HTTP/1.1 503")
    })
    .await;
    assert!(
        ready.starts_with("HTTP/1.1 503"),
        "readyz while draining: {ready}"
    );
    let twiml = get(addr, "/twiml?CallSid=CA9").await;
    assert!(
        twiml.starts_with("HTTP/1.1 503"),
        "the webhook while draining: {twiml}"
    );
    assert_eq!(
        metrics
            .calls_refused
            .with_label_values(&["webhook", "draining"])
            .get(),
        1
    );

    // B's media socket arrives during the drain: accepted and served.
    let b = caller::run(CallerOptions {
        stream_url: Some(url_b),
        ..b_opts
    })
    .await
    .expect("call B runs");
    let a = a.await.expect("join").expect("call A runs");
    served_to_completion("call A (running at the signal)", &a);
    served_to_completion("call B (media socket during the drain)", &b);
    assert_eq!(
        metrics
            .calls_refused
            .with_label_values(&["media", "draining"])
            .get(),
        0
    );
    assert_eq!(
        metrics
            .calls_total
            .with_label_values(&["caller_hung_up"])
            .get(),
        2,
        "both calls ended by their callers"
    );
    // Nothing runs any more: the drain ends without waiting out its 60 s.
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("the drain ends once its calls have")
        .expect("join");
    sim.shutdown().await;
}

/// At `max_calls` running calls the webhook answers `<Reject reason="busy"/>` (configurable) and
/// counts it; below it, calls are answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_calls_the_webhook_rejects() {
    use callbridge::caller::{self, CallerOptions};
    use callbridge::sim::SimConfig;
    let sim = simulator(SimConfig::default()).await;
    for (configured, reason) in [(None, "busy"), (Some("rejected"), "rejected")] {
        let mut env = vec![
            ("REALTIME_URL", sim.url()),
            ("CALLBRIDGE_MAX_CALLS", "1".to_owned()),
        ];
        if let Some(r) = configured {
            env.push(("CALLBRIDGE_REJECT_REASON", r.to_owned()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (server, metrics) = bridge::start(&env, None).await;
        let opts = CallerOptions {
            bridge: server.url(""),
            script: vec![pause(1500)],
            tail: Duration::ZERO,
            ..CallerOptions::default()
        };
        let running = tokio::spawn(caller::run(opts.clone()));
        eventually(Duration::from_secs(20), async || {
            metrics.calls_active.get() >= 1
        })
        .await;
        let twiml = caller::fetch_twiml(&opts).await.expect("webhook answers");
        let doc = roxmltree::Document::parse(&twiml).expect("well-formed TwiML");
        let reject = doc
            .descendants()
            .find(|n| n.has_tag_name("Reject"))
            .unwrap_or_else(|| panic!("no <Reject>: {twiml}"));
        assert_eq!(reject.attribute("reason"), Some(reason), "{twiml}");
        assert!(!twiml.contains("<Stream"), "{twiml}");
        assert_eq!(
            metrics
                .calls_refused
                .with_label_values(&["webhook", "busy"])
                .get(),
            1
        );
        let report = running.await.expect("join").expect("call runs");
        assert!(
            !report.closed_by_bridge,
            "the running call was not disturbed"
        );
        // The call has ended: the next one is answered.
        eventually(Duration::from_secs(20), async || {
            metrics.calls_active.get() == 0
        })
        .await;
        let twiml = caller::fetch_twiml(&opts).await.expect("webhook answers");
        assert!(twiml.contains("<Stream"), "{twiml}");
        server.stop(Duration::ZERO).await;
    }
    sim.shutdown().await;
}

/// A SIP caller whose address holds `--` gets well-formed TwiML from the real webhook, with
/// its address as it was.
#[tokio::test]
async fn a_sip_caller_gets_well_formed_twiml_from_the_webhook() {
    let (server, _) = bridge::start(
        &[
            ("REALTIME_URL", bridge::NO_UPSTREAM),
            ("PUBLIC_URL", "https://bridge.example.com"),
        ],
        None,
    )
    .await;
    let from = "sip:alice--x@example.com";
    let xml = callbridge::caller::post_form(
        &server.url(""),
        "/twiml",
        &[
            ("CallSid", "CA--1"),
            ("From", from),
            ("To", "+1 <555> & \"co\""),
        ],
    )
    .await
    .expect("TwiML");
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
    let param = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("Parameter") && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value"))
            .map(str::to_owned)
    };
    assert_eq!(param("From").as_deref(), Some(from));
    assert_eq!(param("To").as_deref(), Some("+1 <555> & \"co\""));
    assert_eq!(param("CallSid").as_deref(), Some("CA--1"));
    server.stop(Duration::ZERO).await;
}

/// The real binary on SIGTERM with nothing running: it drains (nothing to wait for) and exits 0
/// without sitting out its drain period.
#[cfg(unix)]
#[test]
fn sigterm_with_no_calls_exits_zero_at_once() {
    let mut child = Process::spawn(
        binary::serve(0, "info", &[("REALTIME_URL", bridge::NO_UPSTREAM)])
            .args(["--drain-seconds", "300"]),
    );
    let serving = child.wait_for_line(Duration::from_secs(60), &mut Vec::new(), |line| {
        line.contains("callbridge serving")
    });
    assert!(serving, "the server did not start");
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child
        .wait_exit(Duration::from_secs(60))
        .expect("exits well before its 300 s drain");
    assert!(status.success(), "{status:?}");
}
