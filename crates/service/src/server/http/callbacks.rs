//! Twilio's callbacks to the bridge (`X-Twilio-Signature` checked by the router like `/twiml`):
//! - `/twilio/status`: an outbound call's final status; one that never connected (no answer,
//!   busy, failed, canceled) gets its report here, since no media stream will.
//! - `/twilio/amd`: answering machine detection's verdict; when a machine answered, the
//!   running call leaves the profile's `voicemail_message` and hangs up.
//! - `/twilio/recording`: Twilio finished recording a call; forwarded as a
//!   `recording.completed` event through the same spool, naming the call's report
//!   (`call_report_ids`) and sent where that report went.
//!
//! A report from a callback has an id derived from what it is about (the CallSid, the
//! RecordingSid), so a replayed or retried callback is the same report, sent once.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use tracing::{info, warn};

use crate::report::builder::unconnected;
use crate::report::{outcome_for_status, recording_report_id, RecordingEvent, RECORDING_COMPLETED};
use crate::server::reports::Submitted;
use crate::server::AppState;

fn form(body: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

pub async fn status(State(s): State<AppState>, body: Bytes) -> StatusCode {
    let f = form(&body);
    let (Some(call_sid), Some(status)) = (f.get("CallSid"), f.get("CallStatus")) else {
        warn!("status callback without CallSid/CallStatus ignored");
        return StatusCode::BAD_REQUEST;
    };
    info!(call_sid, status, "Twilio call status");
    let Some(outcome) = outcome_for_status(status) else {
        if status == "completed" {
            // A connected call: its media stream reported it.
            s.outbound.take(call_sid);
            if let Some(c) = &s.cluster {
                c.forget_placed(call_sid).await;
            }
        }
        return StatusCode::NO_CONTENT;
    };
    let placed = s.outbound.take(call_sid);
    // Placed by another replica (or by this one, shared): the cluster's bucket knows it.
    let placed = match &s.cluster {
        Some(c) => c.take_placed(call_sid).await.or(placed),
        None => placed,
    };
    let duration = placed
        .as_ref()
        .map_or(Duration::ZERO, |p| p.created.elapsed());
    let (from, to, profile, variables) = match placed {
        Some(p) => (Some(p.from), Some(p.to), p.profile, p.variables),
        // Not placed by this process (restarted since): what Twilio says is all we know.
        None => (
            f.get("From").cloned(),
            f.get("To").cloned(),
            None,
            Default::default(),
        ),
    };
    let report = unconnected(
        outcome,
        call_sid,
        f.get("AccountSid").cloned(),
        from,
        to,
        profile,
        variables,
        duration,
        std::time::SystemTime::now(),
    );
    let url = report
        .profile
        .as_deref()
        .and_then(|p| s.cfg.profiles.by_name.get(p))
        .and_then(|p| p.report_url.as_deref());
    // A replay is the same call: counted once.
    if s.reports.submit(url, &report.report_id, &report).await != Submitted::Duplicate {
        s.metrics.calls_total.with_label_values(&[outcome]).inc();
    }
    StatusCode::NO_CONTENT
}

/// Verdicts that mean a machine answered. `machine_start` comes only without end detection
/// (`MachineDetection=Enable`); with `DetectMessageEnd` the `machine_end_*` ones come once the
/// greeting is over, when a message can be left.
const MACHINE: &[&str] = &[
    "machine_start",
    "machine_end_beep",
    "machine_end_silence",
    "machine_end_other",
];

pub async fn amd(State(s): State<AppState>, body: Bytes) -> StatusCode {
    let f = form(&body);
    let call_sid = f.get("CallSid").map_or("-", String::as_str);
    let answered_by = f.get("AnsweredBy").map_or("unknown", String::as_str);
    info!(call_sid, answered_by, "answering machine detection");
    let cmd = crate::server::running::CallCommand::MachineAnswered;
    if MACHINE.contains(&answered_by)
        && !s.running.send(call_sid, cmd)
        && !forwarded(&s, call_sid, cmd).await
    {
        warn!(
            call_sid,
            "a machine answered, but no running call has that CallSid"
        );
    }
    StatusCode::NO_CONTENT
}

/// Sends a command to the replica running the call, when there are others (`cluster/routing.rs`).
async fn forwarded(s: &AppState, call_sid: &str, cmd: crate::server::running::CallCommand) -> bool {
    match &s.cluster {
        Some(c) => {
            c.routes.forward(call_sid, cmd).await == crate::cluster::routing::Forwarded::Delivered
        }
        None => false,
    }
}

pub async fn recording(State(s): State<AppState>, body: Bytes) -> StatusCode {
    let f = form(&body);
    let (Some(call_sid), Some(recording_sid), Some(recording_url)) = (
        f.get("CallSid"),
        f.get("RecordingSid"),
        f.get("RecordingUrl"),
    ) else {
        warn!("recording callback without CallSid/RecordingSid/RecordingUrl ignored");
        return StatusCode::BAD_REQUEST;
    };
    if f.get("RecordingStatus").is_some_and(|st| st != "completed") {
        return StatusCode::NO_CONTENT;
    }
    // The call's report went out when the call ended (Twilio processes a recording after
    // that): this follow-up names it and goes to the same place.
    let links = s.reports.call_links(call_sid);
    let (call_report_ids, url) = links.map_or((Vec::new(), None), |l| (l.report_ids, l.url));
    let event = RecordingEvent {
        kind: RECORDING_COMPLETED.into(),
        report_id: recording_report_id(recording_sid),
        call_sid: call_sid.clone(),
        recording_sid: recording_sid.clone(),
        recording_url: recording_url.clone(),
        duration_s: f.get("RecordingDuration").and_then(|d| d.parse().ok()),
        call_report_ids,
    };
    info!(
        call_sid,
        recording_sid,
        linked = !event.call_report_ids.is_empty(),
        "Twilio recording completed"
    );
    s.reports
        .submit(url.as_deref(), &event.report_id, &event)
        .await;
    StatusCode::NO_CONTENT
}
