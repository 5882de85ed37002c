//! Call reports as the report tests (`reports`, `cluster_reports`, `cluster_cap`) receive them:
//! a signed receiver, a spool, and the settings of a bridge whose calls end at once and are
//! reported there.

use callbridge::sim::receiver::Receiver;

use super::{bridge, TempDir};

/// The secret reports are signed with.
pub const SECRET: &str = "report-secret-for-tests-1";

/// A bridge whose reports go to `report_url`, spooled in `spool`, retried after 20 ms; its
/// upstream is down, so a call ends at once (`upstream_failed`).
pub fn env<'a>(report_url: &'a str, spool: &'a TempDir) -> Vec<(&'a str, &'a str)> {
    vec![
        ("REALTIME_URL", bridge::NO_UPSTREAM),
        ("OPENAI_API_KEY", "sk-test-not-a-real-key"),
        ("CALLBRIDGE_REPORT_URL", report_url),
        ("CALLBRIDGE_REPORT_SPOOL_DIR", spool.to_str()),
        ("CALLBRIDGE_TOOL_SECRET", SECRET),
        ("CALLBRIDGE_REPORT_RETRY_MIN_MS", "20"),
    ]
}

/// A report receiver answering `answers` (then 200) and an empty spool directory named by
/// `tag`; with the URL reports go to.
pub async fn receiver_and_spool(answers: &[u16], tag: &str) -> (Receiver, TempDir, String) {
    let rx = Receiver::spawn(SECRET, answers).await.expect("receiver");
    let spool = TempDir::new(tag);
    let report_url = rx.url("/r");
    (rx, spool, report_url)
}
