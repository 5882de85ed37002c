//! The HTTP edge against a hostile client (issue 18), through the real server: nothing is
//! buffered for an unauthenticated client, slow or idle connections are closed, the listener
//! survives running out of file descriptors, outbound variables are bounded, short secrets
//! refuse to start. Each test failed before its fix.

use std::process::Command;
use std::time::Duration;

use callbridge::sim::twilio_rest::FakeTwilio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::binary::{self, Process};
use support::bridge;

const API: &str = "api-token-for-edge-tests";
const CONSOLE: &str = "console-token-for-edge-tests";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH: &str = "twilio-auth-token";

/// Writes `head` (and `body`), then reads what the server answers within `within`: the
/// status line's code, or `None` if nothing came.
async fn answer_within(
    addr: std::net::SocketAddr,
    head: &str,
    body: &[u8],
    within: Duration,
) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write head");
    // The body may be refused mid-way: the server owes an answer, not a read of all of it.
    let _ = s.write_all(body).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(within, s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(&buf[..n])
        .ok()?
        .get(9..12)?
        .parse()
        .ok()
}

/// Finding 2: `POST /v1/calls` read a 2 MB body before it checked the token. An
/// unauthenticated client announcing 2 MB now gets its 401 after sending the head and a few
/// kilobytes, and a login form announcing 2 MB its 413.
#[tokio::test]
async fn unauthenticated_bodies_are_not_buffered() {
    let (server, _) = bridge::start(
        &[
            ("CALLBRIDGE_API_TOKEN", API),
            ("CALLBRIDGE_CONSOLE_TOKEN", CONSOLE),
        ],
        None,
    )
    .await;
    let some = vec![b'x'; 4096];
    let head = "POST /v1/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n";
    assert_eq!(
        answer_within(server.addr, head, &some, Duration::from_secs(3)).await,
        Some(401),
        "the 401 comes before the body"
    );
    let head = format!("POST /v1/calls HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API}\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n");
    assert_eq!(
        answer_within(
            server.addr,
            &head,
            &vec![b'x'; 40_000],
            Duration::from_secs(3)
        )
        .await,
        Some(413),
        "an authenticated body past the route's limit is refused as it arrives"
    );
    let head = "POST /console/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 2000000\r\n\r\n";
    assert_eq!(
        answer_within(server.addr, head, &some, Duration::from_secs(3)).await,
        Some(413),
        "a login form is a token, not megabytes"
    );
    // The right token still logs in.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(server.url("/console/login"))
        .form(&[("token", CONSOLE)])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status().as_u16(), 303);
    server.stop(Duration::ZERO).await;
}

/// Waits until the server closes `s` (EOF or reset); how long that took, or `None`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let began = tokio::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(began + within, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(began.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Finding 3: sockets that send a header byte every few seconds were held as long as they
/// liked, and the listener had no cap. Now a request head must arrive within
/// `http_header_timeout_ms`; 40 slow sockets against a cap of 16 connections are all closed,
/// a health check behind them is answered, an idle keep-alive connection is closed too, and
/// the metric counts the timeouts.
#[tokio::test]
async fn slow_and_idle_connections_are_closed_and_health_checks_get_through() {
    let (server, metrics) = bridge::start(
        &[
            ("CALLBRIDGE_HTTP_HEADER_TIMEOUT_MS", "500"),
            ("CALLBRIDGE_MAX_HTTP_CONNECTIONS", "16"),
        ],
        None,
    )
    .await;
    let addr = server.addr;
    let mut slow = Vec::new();
    for i in 0..40 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET /healthz?{i} HTTP/1.1\r\n").as_bytes())
            .await
            .expect("write");
        slow.push(s);
    }
    // They keep trickling a header line now and then, as a slow-loris client does.
    let trickle = tokio::spawn(async move {
        let mut open = slow;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for s in &mut open {
                let _ = s.write_all(b"X-Slow: y\r\n").await;
            }
        }
        open
    });
    let healthy =
        tokio::time::timeout(Duration::from_secs(5), reqwest::get(server.url("/healthz"))).await;
    assert!(
        healthy.is_ok_and(|r| r.is_ok_and(|r| r.status().is_success())),
        "/healthz answered behind 40 slow sockets"
    );
    let mut slow = trickle.await.expect("trickle");
    for s in &mut slow {
        assert!(
            closed_within(s, Duration::from_secs(5)).await.is_some(),
            "a slow socket was closed by the server"
        );
    }
    assert!(
        bridge::metric_value(
            &metrics.render(),
            "callbridge_http_connection_errors_total{kind=\"header_timeout\"}"
        ) >= 40.0,
        "{}",
        metrics.render()
    );

    // Keep-alive: a finished request, then silence; the server closes the connection.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let took = closed_within(&mut idle, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(
        took >= Duration::from_millis(300),
        "not before the timeout: {took:?}"
    );
    server.stop(Duration::ZERO).await;
}

/// Finding 3, the fd limit: with few descriptors, the listener ran out and `/healthz` stopped
/// answering. Now the accept loop logs the failure, counts it and keeps going; connections
/// that send nothing time out and free their descriptors, and `/healthz` answers while the
/// attacker still holds 120 sockets.
#[tokio::test]
async fn the_listener_survives_running_out_of_file_descriptors() {
    let port = binary::free_port();
    let mut sh = Command::new("sh");
    sh.args([
        "-c",
        &format!("ulimit -n 64 && exec '{}' serve", binary::BIN),
    ]);
    let child = Process::spawn(&mut binary::with_env(
        sh,
        port,
        "info",
        &[
            ("REALTIME_URL", bridge::NO_UPSTREAM),
            ("CALLBRIDGE_HTTP_HEADER_TIMEOUT_MS", "500"),
        ],
    ));
    binary::wait_healthy(port).await;
    let health = format!("http://127.0.0.1:{port}/healthz");
    let mut held = Vec::new();
    for _ in 0..120 {
        held.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("the kernel queues the connection"),
        );
    }
    let answered = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let r = tokio::time::timeout(Duration::from_secs(2), reqwest::get(&health)).await;
            if r.is_ok_and(|r| r.is_ok_and(|r| r.status().is_success())) {
                return;
            }
        }
    })
    .await;
    let metrics = tokio::time::timeout(Duration::from_secs(10), async {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_default();
    drop(held);
    let log = child.output();
    assert!(
        answered.is_ok(),
        "/healthz answered while 120 sockets were held\n{log}"
    );
    assert!(
        log.contains("cannot accept a connection"),
        "the fd limit was hit and logged\n{log}"
    );
    let fd_errors = bridge::metric_value(
        &metrics,
        "callbridge_http_accept_errors_total{kind=\"fd_limit\"}",
    );
    assert!(fd_errors > 0.0, "counted:\n{metrics}");
}

/// Finding 6: fifty 2 MB variables were accepted and held until the call's status came. Now
/// a variable's name and value stay within Twilio's `<Parameter>` limit (500 characters), the
/// whole TwiML within Twilio's 4000 characters, the body within 32 KiB; each refusal names
/// its limit, and Twilio is not asked.
#[tokio::test]
async fn outbound_variables_are_bounded_and_the_refusal_names_the_limit() {
    let twilio = FakeTwilio::spawn(ACCOUNT, AUTH).await.expect("fake twilio");
    let base = twilio.base_url();
    let (server, _) = bridge::start(
        &[
            ("CALLBRIDGE_API_TOKEN", API),
            ("PUBLIC_URL", "https://bridge.example.com"),
            ("TWILIO_AUTH_TOKEN", AUTH),
            ("TWILIO_ACCOUNT_SID", ACCOUNT),
            ("CALLBRIDGE_TWILIO_API_BASE", &base),
        ],
        None,
    )
    .await;
    let post = |variables: serde_json::Value| {
        let url = server.url("/v1/calls");
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(API)
                .json(&serde_json::json!({"to": "+15551230000", "from": "+15550001111", "variables": variables}))
                .send()
                .await
                .expect("answer");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
    };
    let (status, body) = post(serde_json::json!({"note": "x".repeat(600)})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("variables.note") && body.contains("499"),
        "{body}"
    );
    let many: serde_json::Map<String, serde_json::Value> = (0..12)
        .map(|i| (format!("v{i}"), "y".repeat(400).into()))
        .collect();
    let (status, body) = post(many.into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("4000"), "{body}");
    let (status, body) = post(serde_json::json!({"blob": "z".repeat(2 * 1024 * 1024)})).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("32768"), "{body}");
    assert!(twilio.requests().is_empty(), "Twilio was not asked");
    let (status, body) = post(serde_json::json!({"order": "A-1001", "name": "Ada Lovelace"})).await;
    assert_eq!(
        status, 201,
        "ordinary variables still place the call: {body}"
    );
    server.stop(Duration::ZERO).await;
}

/// Finding 10: `api_token = "a"` and `tool_secret = "b"` started the server. Now a secret the
/// operator makes up needs 16 characters, and the error names the key (never the value).
#[test]
fn serve_refuses_short_secrets_naming_the_key() {
    for (env, key) in [
        ("CALLBRIDGE_API_TOKEN", "api_token"),
        ("CALLBRIDGE_TOOL_SECRET", "tool_secret"),
    ] {
        let out = binary::serve(
            0,
            "info",
            &[("REALTIME_URL", bridge::NO_UPSTREAM), (env, "shortsecret")],
        )
        .output()
        .expect("run callbridge");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains("at least 16"),
            "{env}: {stderr}"
        );
        assert!(!stderr.contains("shortsecret"), "the value is not printed");
    }
}

/// A login form is read like any other unauthenticated body: one trickled a byte at a time is
/// cut off at `http_header_timeout_ms` with a 408 (it used to be read for as long as the
/// client liked), and a body that is broken at the HTTP level (a chunk size that is not
/// hexadecimal) is the client's bad request, 400, not a timeout.
#[tokio::test]
async fn a_trickled_login_form_times_out_and_a_broken_body_is_a_bad_request() {
    let (server, _) = bridge::start(
        &[
            ("CALLBRIDGE_API_TOKEN", API),
            ("CALLBRIDGE_CONSOLE_TOKEN", CONSOLE),
            ("CALLBRIDGE_HTTP_HEADER_TIMEOUT_MS", "500"),
        ],
        None,
    )
    .await;
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(b"POST /console/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 40\r\n\r\n")
        .await
        .expect("write head");
    let began = tokio::time::Instant::now();
    let trickle = async {
        for b in b"token=0123456789".iter() {
            tokio::time::sleep(Duration::from_millis(150)).await;
            if s.write_all(&[*b]).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(800), trickle).await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("an answer, not an open-ended wait")
        .expect("read");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a trickled login form is cut off with a 408: {answer}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "within the body deadline (500 ms), not when the client finished: {:?}",
        began.elapsed()
    );

    let head = format!("POST /v1/calls HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(
        answer_within(
            server.addr,
            &head,
            b"zz\r\n{}\r\n0\r\n\r\n",
            Duration::from_secs(3)
        )
        .await,
        Some(400),
        "a malformed chunked body is a bad request"
    );
    server.stop(Duration::ZERO).await;
}
