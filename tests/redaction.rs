//! Reports and logs hold no card numbers: a caller reads out a card, a phone number and an
//! e-mail address (and an order number), the agent reads the card back; the call's report,
//! the console's live events and the bridge's log lines (at debug, where transcripts are
//! logged) hold none of them, only `[card]`, `[phone]`, `[email]` — and the order number, which
//! fails the Luhn check, survives. Through the real binary, with the profile's `redact`.

use std::time::Duration;

use callbridge::sim::receiver::Receiver;
use callbridge::sim::SimConfig;

mod support;
use support::binary::{self, Process};
use support::caller::{agent_done, pause, place_call_as, say};
use support::schema::assert_valid;
use support::{simulator, TempDir, WAIT};

const SECRET: &str = "redaction-secret-for-tests-1";
const CONSOLE_TOKEN: &str = "console-token-for-redaction-1";

/// What the caller and the agent say, and every form of it that must not come out.
const CALLER_SAYS: &str =
    "my card is 4111 1111 1111 1111, call me at +1 415 555 0123 or mail ada.lovelace@example.com";
const CALLER_SAYS_2: &str = "and my order number is 1234567890123456";
const AGENT_SAYS: &str = "Thanks, I have the card 4111-1111-1111-1111.";
const LEAKS: &[&str] = &[
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111111111111111",
    "1111 1111",
    "415 555 0123",
    "555 0123",
    "ada.lovelace@example.com",
    "example.com",
];

/// Everything the console's feed sends while it is open, as one text.
fn follow_console(url: String) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(CONSOLE_TOKEN)
            .send()
            .await
            .expect("the console answers");
        assert_eq!(resp.status().as_u16(), 200);
        let mut text = String::new();
        while let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_secs(3), resp.chunk()).await
        {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    })
}

fn assert_no_leak(what: &str, text: &str) {
    for leak in LEAKS {
        assert!(!text.contains(leak), "{what} holds {leak:?}:\n{text}");
    }
}

#[tokio::test]
async fn a_call_with_a_card_phone_and_email_leaves_none_of_them_in_report_console_or_logs() {
    let sim = simulator(SimConfig {
        caller_transcripts: vec![CALLER_SAYS.into(), CALLER_SAYS_2.into()],
        reply_texts: vec![AGENT_SAYS.into()],
        always_transcribe: true,
        pace: 4.0,
        ..SimConfig::default()
    })
    .await;
    let rx = Receiver::spawn(SECRET, &[]).await.expect("receiver");
    let dir = TempDir::new("redaction");
    // The top level redacts only e-mail; the profile every call here runs with replaces it.
    let config = dir.file(
        "callbridge.toml",
        &format!(
            "redact = [\"email\"]\n\
             report_url = \"{}\"\n\
             report_spool_dir = \"{}\"\n\
             default_profile = \"support\"\n\
             [profiles.support]\n\
             instructions = \"You help.\"\n\
             redact = [\"card\", \"phone\", \"email\", \"ssn\"]\n",
            rx.url("/reports"),
            dir.join("spool").display()
        ),
    );
    let port = binary::free_port();
    let child = Process::spawn(
        binary::serve(
            port,
            "info,callbridge_service=debug",
            &[
                ("REALTIME_URL", &sim.url()),
                ("OPENAI_API_KEY", "sk-test"),
                ("CALLBRIDGE_TOOL_SECRET", SECRET),
                ("CALLBRIDGE_CONSOLE_TOKEN", CONSOLE_TOKEN),
                ("CALLBRIDGE_TRANSCRIPTION_MODEL", "gpt-4o-transcribe"),
            ],
        )
        .arg("--config")
        .arg(&config),
    );
    binary::wait_healthy(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let console = follow_console(format!("{base}/console/events"));
    // The feed is open before the call starts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let script = vec![
        pause(200),
        say(1000),
        agent_done(500, 15),
        say(800),
        agent_done(500, 15),
    ];
    place_call_as(base.clone(), "CAredact1", script, 200).await;
    rx.wait_until(WAIT, |r| !r.is_empty()).await;
    let console = console.await.expect("the console's feed");
    // The last lines are written before the report is sent; give the pipe a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = child.output();

    let report = rx.received().first().expect("a report").json();
    assert_valid("call-report.schema.json", &report);
    assert_eq!(report["profile"], "support");
    let said: Vec<&str> = report["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter_map(|l| l["text"].as_str())
        .collect();
    // Each line as said, redacted (their order depends on when transcription finished).
    for line in [
        "my card is [card], call me at [phone] or mail [email]",
        "Thanks, I have the card [card].",
        "and my order number is 1234567890123456",
    ] {
        assert!(said.contains(&line), "{line:?} not in {said:#?}");
    }
    assert_no_leak("the report", &report.to_string());

    assert!(
        console.contains("[card]"),
        "the transcript is on the feed:\n{console}"
    );
    assert!(console.contains("1234567890123456"), "{console}");
    assert_no_leak("the console feed", &console);

    assert!(
        logs.contains("[card]"),
        "transcripts are logged at debug:\n{logs}"
    );
    assert_no_leak("the log", &logs);
    sim.shutdown().await;
}
