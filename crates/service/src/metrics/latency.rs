//! What callers feel, turn by turn: the latency histograms (names are a contract with the
//! dashboard and the alerts in `deploy/`). Labels stay bounded: never a call or stream SID.

use prometheus::{Histogram, HistogramOpts, HistogramVec, Registry};

pub struct LatencyMetrics {
    /// `speech_stopped` read → the answer's first audio frame written to Twilio.
    pub turn: Histogram,
    /// `response.created` read → the response's first audio delta read.
    pub model: Histogram,
    /// The bridge's own share: Twilio frame read → append written (`up`); audio delta read →
    /// its first frame written (`down`). Observed on every frame (the load tool measured no
    /// cost: docs/performance.md); the two children are looked up once, here.
    pub bridge_up: Histogram,
    pub bridge_down: Histogram,
    bridge_added: HistogramVec,
    /// `speech_started` read → `clear` written to Twilio.
    pub bargein_reaction: Histogram,
    /// How much of the answer the caller had heard when they interrupted it.
    pub truncate_heard: Histogram,
    /// Agent audio sent to Twilio but not yet played, sampled at each echoed mark.
    pub playback_lag: Histogram,
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Result<Histogram, prometheus::Error> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
}

/// Sub-millisecond to 100 ms: the bridge's own work on one message.
const BRIDGE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];
/// A turn as the caller feels it: good is under ~800 ms, bad is seconds.
const TURN_BUCKETS: &[f64] = &[
    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0,
];

impl LatencyMetrics {
    pub fn new() -> Result<LatencyMetrics, prometheus::Error> {
        let bridge_added = HistogramVec::new(
            HistogramOpts::new(
                "bridge_added_seconds",
                "Time the bridge adds: Twilio frame read to append written (up), audio delta read to its first frame written (down)",
            )
            .buckets(BRIDGE_BUCKETS.to_vec()),
            &["direction"],
        )?;
        Ok(LatencyMetrics {
            bridge_up: bridge_added.with_label_values(&["up"]),
            bridge_down: bridge_added.with_label_values(&["down"]),
            bridge_added,
            turn: histogram(
                "turn_latency_seconds",
                "Caller stopped speaking (speech_stopped) to the first agent audio frame written to Twilio",
                TURN_BUCKETS,
            )?,
            model: histogram(
                "model_latency_seconds",
                "response.created to the response's first audio delta received",
                TURN_BUCKETS,
            )?,
            bargein_reaction: histogram(
                "bargein_reaction_seconds",
                "speech_started read to clear written to Twilio",
                BRIDGE_BUCKETS,
            )?,
            truncate_heard: histogram(
                "truncate_heard_seconds",
                "Audio of the agent's answer the caller had heard when interrupting it",
                &[0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0],
            )?,
            playback_lag: histogram(
                "twilio_playback_lag_seconds",
                "Agent audio sent to Twilio but not yet played at the caller, sampled at echoed marks",
                &[0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0],
            )?,
        })
    }

    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.turn.clone()))?;
        registry.register(Box::new(self.model.clone()))?;
        registry.register(Box::new(self.bridge_added.clone()))?;
        registry.register(Box::new(self.bargein_reaction.clone()))?;
        registry.register(Box::new(self.truncate_heard.clone()))?;
        registry.register(Box::new(self.playback_lag.clone()))?;
        Ok(())
    }
}
