//! The browser pages' HTTP face, without a browser: off by default, 401 without the token,
//! the softphone's ticket opens `/media` once where a Twilio signature is required (and nothing
//! else does), the console's event feed follows a simulated phone call live, and the
//! softphone's token follows only the softphone's own call.

use std::time::Duration;

use callbridge::sim::SimConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::caller::{agent_done, barge_in_script, pause, place_call_as, say};
use support::{assert_contains_all, bridge};

const SOFTPHONE_TOKEN: &str = "softphone-token-for-tests";
const CONSOLE_TOKEN: &str = "console-token-for-tests";

const PAGES: &[(&str, &str)] = &[
    ("CALLBRIDGE_SOFTPHONE", "true"),
    ("CALLBRIDGE_SOFTPHONE_TOKEN", SOFTPHONE_TOKEN),
    ("CALLBRIDGE_CONSOLE_TOKEN", CONSOLE_TOKEN),
];

/// One request with `Connection: close`; the whole response.
async fn get(addr: std::net::SocketAddr, target: &str, headers: &str) -> String {
    let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
    bridge::raw(addr, &req).await
}

fn status(resp: &str) -> &str {
    resp.get(9..12).unwrap_or("")
}

#[tokio::test]
async fn pages_are_off_by_default() {
    let (server, _) = bridge::start(&[], None).await;
    for path in [
        "/softphone",
        "/softphone/ticket",
        "/softphone/profiles",
        "/console",
        "/console/events",
    ] {
        let r = get(server.addr, path, "").await;
        assert_eq!(status(&r), "404", "{path}: {r}");
    }
    server.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn both_pages_refuse_without_their_token_and_open_with_it() {
    let (server, _) = bridge::start(PAGES, None).await;
    let sp = format!("token={SOFTPHONE_TOKEN}");
    let co = format!("token={CONSOLE_TOKEN}");
    for (path, good) in [
        ("/softphone", &sp),
        ("/softphone/ticket", &sp),
        ("/softphone/profiles", &sp),
        ("/console", &co),
        ("/console/events", &co),
    ] {
        let r = get(server.addr, path, "").await;
        assert_eq!(status(&r), "401", "{path} without a token: {r}");
        assert_contains_all(&r, &["www-authenticate: Bearer"]);
        let r = get(server.addr, &format!("{path}?token=wrong-token-wrong"), "").await;
        assert_eq!(status(&r), "401", "{path} with a wrong token");
        // Each page's token opens only its own page.
        let other = if good == &sp { &co } else { &sp };
        let r = get(server.addr, &format!("{path}?{other}"), "").await;
        assert_eq!(status(&r), "401", "{path} with the other page's token");
        if path == "/console/events" {
            continue; // a stream: checked below
        }
        let r = get(server.addr, &format!("{path}?{good}"), "").await;
        assert_eq!(status(&r), "200", "{path} with ?token: {r}");
        let token = good.trim_start_matches("token=");
        let r = get(
            server.addr,
            path,
            &format!("Authorization: Bearer {token}\r\n"),
        )
        .await;
        assert_eq!(status(&r), "200", "{path} with a bearer token");
    }
    // Without profiles configured the picker's list is empty (the field stays free text).
    let r = get(server.addr, &format!("/softphone/profiles?{sp}"), "").await;
    let body = r.split("\r\n\r\n").nth(1).unwrap_or("");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).ok(),
        Some(serde_json::json!({"profiles": [], "default": null})),
        "{r}"
    );
    let page = get(server.addr, &format!("/softphone?{sp}"), "").await;
    assert!(page.contains(">Call</button>") && page.contains(">Hang up</button>"));
    // The softphone's scripts are embedded and served.
    for js in ["/softphone/app.js", "/softphone/mic-worklet.js"] {
        let r = get(server.addr, js, "").await;
        assert_eq!(status(&r), "200", "{js}");
        assert!(r.contains("text/javascript"), "{js}");
    }
    let console = get(server.addr, &format!("/console?{co}"), "").await;
    assert!(
        console.contains("Grafana"),
        "the page says what it does not show"
    );
    server.stop(Duration::from_secs(1)).await;
}

/// A fresh ticket from `/softphone/ticket`: `(ticket, call_sid)`.
async fn ticket(addr: std::net::SocketAddr) -> (String, String) {
    let r = get(
        addr,
        "/softphone/ticket",
        &format!("Authorization: Bearer {SOFTPHONE_TOKEN}\r\n"),
    )
    .await;
    assert_eq!(status(&r), "200", "{r}");
    let body = &r[r.find("\r\n\r\n").expect("body") + 4..];
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(v["param"], "softphone_ticket");
    assert_eq!(v["path"], "/media");
    let call_sid = v["call_sid"].as_str().expect("call_sid").to_owned();
    assert!(
        call_sid.len() == 34
            && call_sid.starts_with("CA")
            && call_sid[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "a CallSid like Twilio's: {call_sid}"
    );
    (v["ticket"].as_str().expect("ticket").to_owned(), call_sid)
}

#[tokio::test]
async fn tickets_fetched_back_to_back_differ() {
    let (server, _) = bridge::start(PAGES, None).await;
    let (a, a_call) = ticket(server.addr).await;
    let (b, b_call) = ticket(server.addr).await;
    assert_ne!(a, b, "two tickets of the same second");
    assert_ne!(a_call, b_call, "each ticket is for its own call");
    server.stop(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_softphone_ticket_opens_media_once_where_twilio_signatures_are_required() {
    let (server, _) = bridge::start(
        &[
            PAGES[0],
            PAGES[1],
            ("TWILIO_AUTH_TOKEN", "twilio-auth-token"),
            ("PUBLIC_URL", "https://bridge.example.com"),
        ],
        None,
    )
    .await;
    let ws = |q: String| {
        let url = format!("ws://{}/media{q}", server.addr);
        async move { tokio_tungstenite::connect_async(url).await }
    };
    let refused = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => 101,
    };
    assert_eq!(refused(ws(String::new()).await), 403, "neither: refused");
    assert_eq!(
        refused(ws("?softphone_ticket=9999999999.CA1.AAAA".into()).await),
        403,
        "a forged ticket: refused"
    );
    let (t, _) = ticket(server.addr).await;
    let (mut sock, _) = ws(format!("?softphone_ticket={t}"))
        .await
        .expect("the ticket opens /media");
    let _ = sock.close(None).await;
    // The same ticket again (a replay from a proxy's log, say): refused like an unsigned
    // request, and counted.
    for _ in 0..3 {
        assert_eq!(
            refused(ws(format!("?softphone_ticket={t}")).await),
            403,
            "a used ticket opens /media no more"
        );
    }
    let m = get(server.addr, "/metrics", "").await;
    assert_contains_all(
        &m,
        &[r#"callbridge_anomalies_total{kind="softphone_ticket_reused"} 3"#],
    );
    // A fresh ticket still opens it.
    let (t, _) = ticket(server.addr).await;
    let (mut sock, _) = ws(format!("?softphone_ticket={t}"))
        .await
        .expect("a new ticket opens /media");
    let _ = sock.close(None).await;
    server.stop(Duration::from_secs(1)).await;
}

/// A softphone `start` as the page sends it, naming `call_sid`.
fn softphone_start(call_sid: &str) -> String {
    serde_json::json!({
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZsoftphone",
        "start": {
            "streamSid": "MZsoftphone",
            "accountSid": "ACsoftphone",
            "callSid": call_sid,
            "tracks": ["inbound"],
            "customParameters": {"From": "browser: test", "direction": "softphone"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        }
    })
    .to_string()
}

/// The reason of the close frame the bridge ends the socket with.
async fn close_reason<S>(sock: &mut S) -> String
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sock.next())
            .await
            .expect("the bridge closes in time")
        {
            Some(Ok(Message::Close(f))) => {
                return f.map(|f| f.reason.to_string()).unwrap_or_default()
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket error {e}"),
            None => panic!("closed without a close frame"),
        }
    }
}

/// The ticket's call and no other: a `start` naming another CallSid (a phone call's, to pass
/// for it with tools, reports and callbacks) ends the socket as a stream without a usable
/// `start`; the ticket's own SID makes a call that runs until the page hangs up.
#[tokio::test]
async fn a_softphone_ticket_opens_only_the_call_it_names() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let (sim, server, _) = bridge::with_simulator(
        SimConfig::default(),
        &[
            PAGES[0],
            PAGES[1],
            ("TWILIO_AUTH_TOKEN", "twilio-auth-token"),
            ("PUBLIC_URL", "https://bridge.example.com"),
            ("OPENAI_API_KEY", "sk-test"),
        ],
    )
    .await;
    let open = |t: String| {
        let url = format!("ws://{}/media?softphone_ticket={t}", server.addr);
        async move {
            tokio_tungstenite::connect_async(url)
                .await
                .expect("the ticket opens /media")
                .0
        }
    };
    let (t, _) = ticket(server.addr).await;
    let mut sock = open(t).await;
    sock.send(Message::text(softphone_start(
        "CAphone000000000000000000000000001",
    )))
    .await
    .expect("send start");
    assert_eq!(close_reason(&mut sock).await, "no_start");
    let m = get(server.addr, "/metrics", "").await;
    assert_contains_all(
        &m,
        &[r#"callbridge_anomalies_total{kind="unexpected_call_sid"} 1"#],
    );

    let (t, call_sid) = ticket(server.addr).await;
    let mut sock = open(t).await;
    sock.send(Message::text(softphone_start(&call_sid)))
        .await
        .expect("send start");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stop = serde_json::json!({"event": "stop", "sequenceNumber": "2", "streamSid": "MZsoftphone",
        "stop": {"accountSid": "ACsoftphone", "callSid": call_sid}});
    sock.send(Message::text(stop.to_string()))
        .await
        .expect("send stop");
    assert_eq!(close_reason(&mut sock).await, "caller_hung_up");
    bridge::stop_both(server, sim).await;
}

/// A server-sent events request over raw HTTP/1.1: the response's status, and its events as
/// JSON in a channel (none if the answer is not a stream, whose body is then `refusal`).
struct Feed {
    status: String,
    head: String,
    refusal: String,
    events: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
}

async fn open_feed(addr: std::net::SocketAddr, target: &str, headers: &str) -> Feed {
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("the response's head in time")
            .expect("read");
        assert!(n > 0, "closed before the response's head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let mut refusal = String::new();
    if status(&head) != "200" {
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
            .and_then(|l| l.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < len {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        refusal = String::from_utf8_lossy(&buf).into_owned();
    }
    tokio::spawn(async move {
        loop {
            // Complete lines only; chunked-encoding size lines are not `data:` lines.
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line);
                if let Some(json) = line.trim_end().strip_prefix("data: ") {
                    if let Ok(v) = serde_json::from_str(json) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
            let n = match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
        }
    });
    Feed {
        status: status(&head).to_owned(),
        head,
        refusal,
        events,
    }
}

/// The console's feed, with its token.
async fn follow_console(
    addr: std::net::SocketAddr,
) -> tokio::sync::mpsc::UnboundedReceiver<serde_json::Value> {
    let auth = format!("Authorization: Bearer {CONSOLE_TOKEN}\r\n");
    let feed = open_feed(addr, "/console/events", &auth).await;
    assert_eq!(feed.status, "200", "{}", feed.head);
    feed.events
}

#[tokio::test]
async fn the_console_feed_follows_a_phone_call_live_to_its_outcome() {
    let (sim, server, _) = bridge::with_simulator(
        SimConfig {
            response_audio_ms: 3000,
            caller_transcripts: vec!["I would like to check my order".into()],
            ..SimConfig::default()
        },
        &[PAGES[2], ("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    let mut feed = follow_console(server.addr).await;
    let first = tokio::time::timeout(Duration::from_secs(10), feed.recv())
        .await
        .expect("snapshot in time")
        .expect("snapshot");
    assert_eq!(first["type"], "snapshot");
    assert_eq!(first["active"].as_array().map(Vec::len), Some(0));

    let report = place_call_as(
        server.url(""),
        "CAconsole0000000000000000000001",
        barge_in_script(1000, (1000, 15), 800, (600, 20)),
        200,
    )
    .await;
    assert_eq!(report.clears.len(), 1, "one barge-in");

    let mut seen = Vec::new();
    let ended = loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), feed.recv())
            .await
            .expect("the call ends on the feed in time")
            .expect("feed open");
        // Before Twilio's `start` names the call (the model may be ready first) it is known
        // by this pod's number only.
        if seen.iter().any(|s| s == "started") || ev["type"] == "started" {
            assert_eq!(ev["call_sid"], "CAconsole0000000000000000000001", "{ev}");
        } else {
            assert!(ev["call_sid"].is_null(), "{ev}");
        }
        seen.push(ev["type"].as_str().unwrap_or("?").to_owned());
        if ev["type"] == "ended" {
            break ev;
        }
    };
    for kind in ["started", "agent_speaking", "transcript", "barge_in"] {
        assert!(seen.iter().any(|s| s == kind), "{kind} in {seen:?}");
    }
    let call = &ended["call"];
    assert_eq!(call["outcome"], "caller_hung_up");
    assert_eq!(call["caller"], "+15550100");
    assert_eq!(call["barge_ins"], 1);
    assert!(call["last_turn_latency_ms"].as_u64().is_some(), "{call}");
    bridge::stop_both(server, sim).await;
}

/// Finding 8 of issue 18: the softphone's token streamed any call's transcript to whoever
/// named its CallSid. Now its feed shows only the call of a ticket it was given; a phone
/// call's events are the console's (whose token still shows them).
#[tokio::test]
async fn the_softphone_token_follows_only_its_own_call_not_a_phone_call() {
    let (sim, server, _) = bridge::with_simulator(
        SimConfig {
            caller_transcripts: vec!["my card number is private".into()],
            ..SimConfig::default()
        },
        &[PAGES[0], PAGES[1], PAGES[2], ("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    const PHONE: &str = "CAphone000000000000000000000000001";
    let mut console = follow_console(server.addr).await;
    let sp = format!("Authorization: Bearer {SOFTPHONE_TOKEN}\r\n");
    let (own, own_call) = ticket(server.addr).await;
    let (exp, rest) = own.split_once('.').expect("EXP.CALL.MAC");
    let mac = rest.rsplit_once('.').expect("CALL.MAC").1;
    let mut feeds = Vec::new();
    for (target, want, what) in [
        (
            format!("/softphone/events?ticket={own}"),
            "200",
            "its own call",
        ),
        (
            format!("/softphone/events?call={PHONE}"),
            "400",
            "a CallSid alone",
        ),
        ("/softphone/events".to_owned(), "400", "no ticket"),
        (
            format!("/softphone/events?ticket={exp}.{PHONE}.{mac}"),
            "403",
            "its ticket altered to name the phone call",
        ),
        (
            format!("/softphone/events?ticket=9999999999.{PHONE}.AAAA"),
            "403",
            "a forged ticket",
        ),
    ] {
        let feed = open_feed(server.addr, &target, &sp).await;
        assert_eq!(feed.status, want, "{what}: {}", feed.head);
        if want == "400" {
            assert!(feed.refusal.contains("ticket"), "{what}: {}", feed.refusal);
        }
        feeds.push((what, feed.events));
    }

    place_call_as(
        server.url(""),
        PHONE,
        vec![pause(300), say(800), agent_done(600, 20)],
        200,
    )
    .await;

    // The console's token shows the phone call, transcript and all.
    let mut transcript = false;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), console.recv())
            .await
            .expect("the call ends on the console's feed in time")
            .expect("feed open");
        transcript |= ev["call_sid"] == PHONE && ev.to_string().contains("private");
        if ev["type"] == "ended" && ev["call_sid"] == PHONE {
            break;
        }
    }
    assert!(transcript, "the console saw the caller's words");
    // The softphone's token, whatever it asked for, saw nothing of it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (what, mut events) in feeds {
        while let Ok(ev) = events.try_recv() {
            assert_ne!(ev["call_sid"], PHONE, "{what}: the phone call's event {ev}");
            assert_eq!(ev["call_sid"], own_call.as_str(), "{what}: {ev}");
        }
    }
    bridge::stop_both(server, sim).await;
}

/// One form POST with `Connection: close`; the whole response.
async fn post_form(addr: std::net::SocketAddr, target: &str, body: &str) -> String {
    let req = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    bridge::raw(addr, &req).await
}

/// The pages' login form: the right token answers with an HttpOnly, SameSite=Strict cookie for
/// that page's path (never the token itself) and a redirect to the page; the cookie opens that
/// page and its feeds, not the other page; a wrong token or a forged cookie opens nothing.
#[tokio::test]
async fn a_login_sets_a_cookie_that_opens_only_its_page() {
    let (server, _) = bridge::start(PAGES, None).await;
    let r = get(server.addr, "/console", "").await;
    assert_eq!(status(&r), "401");
    assert!(
        r.contains(r#"action="/console/login""#),
        "the login form: {r}"
    );
    let r = post_form(server.addr, "/console/login", "token=wrong-token-wrong").await;
    assert_eq!(status(&r), "401");
    assert!(!r.to_ascii_lowercase().contains("set-cookie"), "{r}");
    let r = post_form(
        server.addr,
        "/console/login",
        &format!("token={CONSOLE_TOKEN}"),
    )
    .await;
    assert_eq!(status(&r), "303", "{r}");
    assert_contains_all(&r, &["location: /console\r\n"]);
    let set = r
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie");
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(set.contains(attr), "{attr}: {set}");
    }
    assert!(!set.contains(CONSOLE_TOKEN), "the token is not the cookie");
    let cookie = set.split(';').next().expect("name=value");
    let with = |c: &str| format!("Cookie: {c}\r\n");
    for path in ["/console", "/console/calls/1"] {
        let r = get(server.addr, path, &with(cookie)).await;
        assert_ne!(status(&r), "401", "{path} with the session: {r}");
    }
    // The console's session is no softphone login, and a forged one is nothing.
    let r = get(server.addr, "/softphone/ticket", &with(cookie)).await;
    assert_eq!(status(&r), "401");
    let forged = format!("callbridge_console={}", "9999999999.AAAA");
    let r = get(server.addr, "/console", &with(&forged)).await;
    assert_eq!(status(&r), "401");
    server.stop(Duration::from_secs(1)).await;
}
