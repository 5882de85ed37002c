//! The HTTP face of the server: TwiML, health, metrics, and a call whose upstream is down.

use std::time::Duration;

use callbridge::caller;

mod support;
use support::caller::{place_call, say};
use support::{assert_contains_all, bridge};

#[tokio::test]
async fn twiml_answers_on_both_paths_with_escaped_parameters() {
    let (server, _) = bridge::start(&[("PUBLIC_URL", "https://bridge.example.com")], None).await;
    for path in ["/twiml", "/incoming-call"] {
        let xml = caller::post_form(
            &server.url(""),
            path,
            &[
                ("From", "+1555<evil>\"&"),
                ("To", "+15550199"),
                ("CallSid", "CA1"),
            ],
        )
        .await
        .expect("TwiML");
        assert!(
            xml.contains(r#"<Stream url="wss://bridge.example.com/media">"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<Parameter name="From" value="+1555&lt;evil&gt;&quot;&amp;"/>"#),
            "{xml}"
        );
        assert!(xml.contains(r#"<Parameter name="CallSid" value="CA1"/>"#));
        assert!(xml.contains("<Say>Sorry"), "apology after </Connect>");
    }
    server.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn twiml_uses_the_forwarded_host_without_public_url_and_refuses_a_forged_one() {
    let (server, _) = bridge::start(&[], None).await;
    let resp = bridge::raw(
        server.addr,
        "GET /twiml?CallSid=CA9 HTTP/1.1\r\nHost: internal:8080\r\nX-Forwarded-Host: calls.example.org\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("text/xml"));
    assert_contains_all(&resp, &[r#"<Stream url="wss://calls.example.org/media">"#]);
    let resp = bridge::raw(
        server.addr,
        "GET /twiml HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: evil.com/\"><Dial>\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    server.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (server, _) = bridge::start(&[], None).await;
    let get = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(bridge::raw(server.addr, &get("/healthz"))
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(bridge::raw(server.addr, &get("/readyz"))
        .await
        .starts_with("HTTP/1.1 200"));
    let m = bridge::raw(server.addr, &get("/metrics")).await;
    assert_contains_all(&m, &["callbridge_calls_active"]);
    server.stop(Duration::from_secs(1)).await;
}

/// The model's server is unreachable: the bridge ends the stream at once (Twilio then plays the
/// apology after </Connect>) instead of leaving the caller in dead air.
#[tokio::test]
async fn unreachable_upstream_ends_the_stream_quickly() {
    // A port nothing listens on.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let (server, _) = bridge::start(
        &[(
            "REALTIME_URL",
            &format!("ws://127.0.0.1:{port}/v1/realtime"),
        )],
        None,
    )
    .await;
    let started = std::time::Instant::now();
    let report = place_call(server.url(""), vec![say(3000)], 500).await;
    assert!(report.closed_by_bridge, "the bridge hung up the stream");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let m = bridge::scrape(&server).await;
    assert_contains_all(
        &m,
        &[r#"callbridge_calls_total{outcome="upstream_failed"} 1"#],
    );
    server.stop(Duration::from_secs(1)).await;
}

/// With an auth token configured, only requests Twilio signed get TwiML or a media socket.
#[tokio::test]
async fn twilio_signatures_are_required_when_a_token_is_set() {
    use callbridge::twilio::signature::{sign, Algorithm};
    let token = "tok-123";
    let (server, _) = bridge::start(
        &[
            ("PUBLIC_URL", "https://bridge.example.com"),
            ("TWILIO_AUTH_TOKEN", token),
        ],
        None,
    )
    .await;
    let body = "CallSid=CA1&From=%2B15550001&To=%2B15550199";
    let params: Vec<(String, String)> = vec![
        ("CallSid".into(), "CA1".into()),
        ("From".into(), "+15550001".into()),
        ("To".into(), "+15550199".into()),
    ];
    let post = |sig: Option<String>| {
        let sig = sig
            .map(|s| format!("X-Twilio-Signature: {s}\r\n"))
            .unwrap_or_default();
        format!(
            "POST /twiml HTTP/1.1\r\nHost: internal\r\nContent-Type: application/x-www-form-urlencoded\r\n{sig}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    assert!(bridge::raw(server.addr, &post(None))
        .await
        .starts_with("HTTP/1.1 403"));
    let forged = sign(
        "not-the-token",
        Algorithm::Sha1,
        "https://bridge.example.com/twiml",
        &params,
    );
    assert!(bridge::raw(server.addr, &post(Some(forged)))
        .await
        .starts_with("HTTP/1.1 403"));
    let good = sign(
        token,
        Algorithm::Sha1,
        "https://bridge.example.com/twiml",
        &params,
    );
    let resp = bridge::raw(server.addr, &post(Some(good))).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("wss://bridge.example.com/media"));

    // The media socket: signed over the <Stream url>, no parameters.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let ws_url = format!("ws://{}/media", server.addr);
    let unsigned = tokio_tungstenite::connect_async(ws_url.as_str()).await;
    assert!(unsigned.is_err(), "unsigned upgrade refused");
    let mut req = ws_url.as_str().into_client_request().expect("request");
    let sig = sign(
        token,
        Algorithm::Sha1,
        "wss://bridge.example.com/media",
        &[],
    );
    req.headers_mut()
        .insert("x-twilio-signature", sig.parse().expect("header"));
    let signed = tokio_tungstenite::connect_async(req).await;
    assert!(
        signed.is_ok(),
        "signed upgrade accepted: {:?}",
        signed.err()
    );
    server.stop(Duration::from_secs(1)).await;
}
