//! The end of a call's task: both sockets closed (Twilio's with the outcome, so Twilio goes on
//! with the TwiML after `</Connect>`), the recording finished, the call counted and logged, its
//! report submitted. Futures awaited once, here, are boxed: inline, the largest of them would be
//! reserved in every call's task for the whole call.

use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::StreamExt;
use tracing::{info, warn};

use super::{Task, START_FOR_REPORT};
use crate::call::EndReason;
use crate::recording::Dir;
use crate::twilio::Inbound;

impl Task<'_> {
    pub(super) async fn finish(mut self) {
        self.wait_for_start().await;
        self.close_sockets().await;
        self.finish_recording().await;
        self.count();
        self.live.ended(self.outcome.as_str());
        // One report per call, whatever ended it; on disk before this task ends.
        self.report
            .set_tool_calls(self.call.tool_calls(), self.call.transfer_targets());
        self.report
            .use_conversation(self.call.conversation().entries());
        // Boxed: awaited once, at the end; inline it would be reserved in the task all call
        // long.
        let report = Box::new(self.report.finish(self.outcome.as_str(), Instant::now()));
        Box::pin(self.s.reports.submit(
            self.setup.report_url.as_deref(),
            &report.report_id,
            &report,
        ))
        .await;
    }

    /// A call can end before Twilio's `start` was read (an upstream refused at once): wait a
    /// moment for it, so that the report names the call.
    async fn wait_for_start(&mut self) {
        if self.report.has_start()
            || matches!(self.outcome, EndReason::NoStart | EndReason::Shutdown)
        {
            return;
        }
        let (socket, report) = (&mut self.socket, &mut self.report);
        let _ = Box::pin(tokio::time::timeout(START_FOR_REPORT, async {
            while let Some(Ok(Message::Text(t))) = socket.next().await {
                if let Ok(Inbound::Start { stream_sid, start }) = Inbound::parse(t.as_str()) {
                    report.on_start(&stream_sid, &start);
                    return;
                }
            }
        }))
        .await;
    }

    /// Closing Twilio's socket makes Twilio continue with the TwiML after `</Connect>` (the
    /// apology), so a caller whose upstream failed never sits in dead air.
    async fn close_sockets(&mut self) {
        let outcome = self.outcome.as_str();
        let closed_tw = self
            .socket
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: outcome.into(),
            })))
            .await;
        if let (Some(r), Ok(())) = (self.rec.as_mut(), &closed_tw) {
            r.close(Dir::TwilioOut, Some(1000), outcome);
        }
        for generation in Box::pin(self.ups.close_all()).await {
            if let Some(r) = self.rec.as_mut() {
                r.upstream_close(Dir::RealtimeOut, generation, Some(1005), "");
            }
        }
    }

    async fn finish_recording(&mut self) {
        if let Some(r) = self.rec.take() {
            match Box::pin(r.finish(self.call.stream_sid())).await {
                Ok(path) => {
                    info!(path = %path.display(), "call recorded");
                    self.report
                        .add_recording("file", path.display().to_string());
                }
                Err(e) => warn!(error = %e, "recording failed"),
            }
        }
    }

    /// The outcome to the metrics and the log.
    fn count(&self) {
        let outcome = self.outcome.as_str();
        let m = &self.s.metrics;
        let secs = self.opened.elapsed().as_secs_f64();
        m.calls_total.with_label_values(&[outcome]).inc();
        m.calls_by_profile_total
            .with_label_values(&[self.setup.profile.as_deref().unwrap_or("none"), outcome])
            .inc();
        m.call_duration_seconds.observe(secs);
        info!(
            outcome,
            duration_s = format!("{secs:.1}"),
            stream_sid = self.call.stream_sid().unwrap_or("-"),
            "call ended"
        );
    }
}
