//! Prometheus metrics: the only process-wide state besides configuration.

pub mod http;
pub mod latency;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub calls_active: IntGauge,
    pub calls_total: IntCounterVec,
    pub call_duration_seconds: Histogram,
    pub twilio_messages_in: IntCounter,
    pub twilio_messages_out: IntCounter,
    pub realtime_messages_in: IntCounter,
    pub realtime_messages_out: IntCounter,
    pub barge_ins: IntCounter,
    /// Caller onsets over the agent by what became of them (`decision`: confirmed, resumed,
    /// ignored_noise, ignored_echo; a closed set). Only with `barge_in = "confirm"`.
    pub bargein_total: IntCounterVec,
    /// Caller onset (first speech the bridge heard) → `clear`, for confirmed barge-ins.
    pub bargein_onset_to_clear_seconds: Histogram,
    pub anomalies: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub upstream_connect_seconds: Histogram,
    pub tool_calls: IntCounterVec,
    pub tool_seconds: prometheus::HistogramVec,
    /// Calls turned away, by `stage` (`webhook`: TwiML answered `<Reject>` or 503; `media`: a
    /// media socket closed at once) and `reason` (`busy`: at max_calls; `draining`: shutting
    /// down). Both labels are closed sets.
    pub calls_refused: IntCounterVec,
    /// Call reports by what became of them (`delivered`, `retried`, `dead`, `expired`, `dropped`,
    /// `unspooled`, `duplicate`: a replayed callback's report, not sent again).
    pub reports_total: IntCounterVec,
    /// Reports removed from `dead/`, by the bound that removed them (`count`, `bytes`, `age`).
    pub reports_dead_pruned: IntCounterVec,
    /// Reports written to the spool and not yet delivered (or given up).
    pub report_backlog: IntGauge,
    /// `POST /v1/calls` by result (`created`, `refused`, `twilio_error`).
    pub outbound_calls_total: IntCounterVec,
    /// Setup lookups at call start by result (`ok`, `timeout`, `failed`, `junk`).
    pub setup_lookups_total: IntCounterVec,
    /// Calls warmed up at the webhook, by what became of them (`server::prewarm::RESULTS`).
    pub prewarm_total: IntCounterVec,
    /// Calls ended, by agent profile (a configured name, or `none`) and outcome.
    pub calls_by_profile_total: IntCounterVec,
    /// Turn-level latencies (issue 10).
    pub latency: latency::LatencyMetrics,
    /// The HTTP edge (connections, accept failures, header timeouts).
    pub http: http::HttpMetrics,
    pub upstream_reconnects: IntCounterVec,
    pub session_rotations: IntCounter,
    /// Tokens the Realtime API reported on `response.done`, by `kind` (the six disjoint
    /// billing kinds of `realtime::usage::KINDS`: cached input is not in `input_*`).
    pub model_tokens: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("callbridge".into()), None)?;
        let m = Metrics {
            calls_active: IntGauge::new("calls_active", "Calls in progress")?,
            calls_total: IntCounterVec::new(
                Opts::new("calls_total", "Calls ended, by outcome"),
                &["outcome"],
            )?,
            call_duration_seconds: Histogram::with_opts(
                HistogramOpts::new("call_duration_seconds", "Call duration").buckets(vec![
                    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                ]),
            )?,
            twilio_messages_in: IntCounter::new(
                "twilio_messages_in_total",
                "Messages from Twilio",
            )?,
            twilio_messages_out: IntCounter::new(
                "twilio_messages_out_total",
                "Messages to Twilio",
            )?,
            realtime_messages_in: IntCounter::new(
                "realtime_messages_in_total",
                "Events from the Realtime API",
            )?,
            realtime_messages_out: IntCounter::new(
                "realtime_messages_out_total",
                "Events to the Realtime API",
            )?,
            barge_ins: IntCounter::new("barge_ins_total", "Caller interruptions of the agent")?,
            bargein_total: IntCounterVec::new(
                Opts::new(
                    "bargein_total",
                    "Caller onsets over the agent, by decision (confirm mode)",
                ),
                &["decision"],
            )?,
            bargein_onset_to_clear_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "bargein_onset_to_clear_seconds",
                    "Caller speech onset to the agent's audio cleared (confirm mode)",
                )
                .buckets(vec![0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0]),
            )?,
            anomalies: IntCounterVec::new(
                Opts::new(
                    "anomalies_total",
                    "Bad or unexpected input, handled, by kind",
                ),
                &["kind"],
            )?,
            upstream_errors: IntCounterVec::new(
                Opts::new("upstream_errors_total", "Realtime `error` events, by code"),
                &["code"],
            )?,
            upstream_connect_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "upstream_connect_seconds",
                    "Time to open the Realtime socket",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            )?,
            calls_refused: IntCounterVec::new(
                Opts::new(
                    "calls_refused_total",
                    "Calls turned away, by stage (webhook|media) and reason (busy|draining)",
                ),
                &["stage", "reason"],
            )?,
            reports_total: IntCounterVec::new(
                Opts::new(
                    "reports_total",
                    "Call reports and events, by what became of them",
                ),
                &["result"],
            )?,
            reports_dead_pruned: IntCounterVec::new(
                Opts::new(
                    "reports_dead_pruned_total",
                    "Refused reports removed from dead/, by bound (count|bytes|age)",
                ),
                &["reason"],
            )?,
            report_backlog: IntGauge::new(
                "report_backlog",
                "Call reports in the spool, not yet delivered",
            )?,
            outbound_calls_total: IntCounterVec::new(
                Opts::new("outbound_calls_total", "POST /v1/calls, by result"),
                &["result"],
            )?,
            calls_by_profile_total: IntCounterVec::new(
                Opts::new(
                    "calls_by_profile_total",
                    "Calls ended, by agent profile (a configured name or none) and outcome",
                ),
                &["profile", "outcome"],
            )?,
            setup_lookups_total: IntCounterVec::new(
                Opts::new(
                    "setup_lookups_total",
                    "Setup lookups at call start, by result",
                ),
                &["result"],
            )?,
            prewarm_total: IntCounterVec::new(
                Opts::new(
                    "prewarm_total",
                    "Warm sessions (webhook) and media sockets, by result (used|expired|closed|not_here)",
                ),
                &["result"],
            )?,
            tool_calls: IntCounterVec::new(
                Opts::new(
                    "tool_calls_total",
                    "Function tool calls by the model, by tool and result",
                ),
                &["tool", "result"],
            )?,
            tool_seconds: prometheus::HistogramVec::new(
                HistogramOpts::new("tool_seconds", "Time a tool call took, by tool")
                    .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0]),
                &["tool"],
            )?,
            latency: latency::LatencyMetrics::new()?,
            http: http::HttpMetrics::new()?,
            upstream_reconnects: IntCounterVec::new(
                Opts::new(
                    "upstream_reconnects_total",
                    "Realtime sessions lost mid-call and replaced (attempted), by reason",
                ),
                &["reason"],
            )?,
            session_rotations: IntCounter::new(
                "session_rotations_total",
                "Realtime sessions replaced by a successor before their time limit",
            )?,
            model_tokens: IntCounterVec::new(
                Opts::new(
                    "model_tokens_total",
                    "Tokens reported by the Realtime API on response.done, by kind",
                ),
                &["kind"],
            )?,
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 23] = [
            Box::new(m.bargein_total.clone()),
            Box::new(m.bargein_onset_to_clear_seconds.clone()),
            Box::new(m.tool_calls.clone()),
            Box::new(m.tool_seconds.clone()),
            Box::new(m.calls_active.clone()),
            Box::new(m.calls_total.clone()),
            Box::new(m.call_duration_seconds.clone()),
            Box::new(m.twilio_messages_in.clone()),
            Box::new(m.twilio_messages_out.clone()),
            Box::new(m.realtime_messages_in.clone()),
            Box::new(m.realtime_messages_out.clone()),
            Box::new(m.barge_ins.clone()),
            Box::new(m.anomalies.clone()),
            Box::new(m.upstream_errors.clone()),
            Box::new(m.upstream_connect_seconds.clone()),
            Box::new(m.calls_refused.clone()),
            Box::new(m.reports_total.clone()),
            Box::new(m.report_backlog.clone()),
            Box::new(m.reports_dead_pruned.clone()),
            Box::new(m.outbound_calls_total.clone()),
            Box::new(m.setup_lookups_total.clone()),
            Box::new(m.prewarm_total.clone()),
            Box::new(m.calls_by_profile_total.clone()),
        ];
        for collector in collectors {
            m.registry.register(collector)?;
        }
        // Every (stage, reason) exported from the start at 0: a rate over a series that only
        // appears at the first refusal would miss that refusal (and dashboards show no data).
        for stage in ["webhook", "media"] {
            for reason in ["busy", "draining"] {
                m.calls_refused.with_label_values(&[stage, reason]);
            }
        }
        for result in crate::server::prewarm::RESULTS {
            m.prewarm_total.with_label_values(&[result]);
        }
        for reason in ["count", "bytes", "age"] {
            m.reports_dead_pruned.with_label_values(&[reason]);
        }
        m.latency.register(&m.registry)?;
        m.http.register(&m.registry)?;
        // CPU seconds and resident memory of this process (`callbridge_process_*`): the
        // dashboard divides them by active calls.
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        m.registry
            .register(Box::new(m.upstream_reconnects.clone()))?;
        m.registry.register(Box::new(m.session_rotations.clone()))?;
        m.registry.register(Box::new(m.model_tokens.clone()))?;
        for kind in crate::realtime::usage::KINDS {
            m.model_tokens.with_label_values(&[kind]);
        }
        for reason in [
            "dropped",
            "closed",
            "write_failed",
            "server_error",
            "session_expired",
        ] {
            m.upstream_reconnects.with_label_values(&[reason]);
        }
        Ok(m)
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
