//! The report's `usage` (tokens summed over every session of the call) and `cost_usd` (that
//! usage priced with the configured table, only when the call's model has a price).

use serde::{Deserialize, Serialize};

use super::CallReport;
use crate::config::{url_model, Config, ModelPrice};
use crate::realtime::TokenUsage;

/// Tokens by billing kind (disjoint: cached input is only in `input_cached_*`), and how many
/// `response.done` reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The six kinds, as fields of `usage` itself in the report.
    #[serde(flatten)]
    pub tokens: TokenUsage,
    pub responses: u64,
}

impl Usage {
    /// One `response.done`'s usage added to the call's.
    pub fn add(&mut self, u: &TokenUsage) {
        self.tokens.add(u);
        self.responses = self.responses.saturating_add(1);
    }
}

/// The price of the model a call used: the session's `model` (config or profile), else the
/// `?model=` of `realtime_url`. `None` when that model has no price.
pub fn price_for<'a>(cfg: &'a Config, session_model: Option<&str>) -> Option<&'a ModelPrice> {
    cfg.prices
        .get(session_model.or_else(|| url_model(&cfg.realtime_url))?)
}

impl CallReport {
    /// Sets `cost_usd` from the call's model's price; none without a price.
    pub fn set_cost(&mut self, price: Option<&ModelPrice>) {
        self.cost_usd = price.map(|p| p.cost_usd(&self.usage.tokens));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_counts_responses() {
        let mut u = Usage::default();
        let one = TokenUsage {
            input_audio: 10,
            output_audio: 20,
            ..TokenUsage::default()
        };
        u.add(&one);
        u.add(&one);
        assert_eq!(
            (u.tokens.input_audio, u.tokens.output_audio, u.responses),
            (20, 40, 2)
        );
    }

    #[test]
    fn the_price_is_the_call_models_or_none() {
        let cfg = Config::load(None, &|_| None, &crate::config::Overrides::default()).unwrap();
        // No model in the session: the one realtime_url names (gpt-realtime-2.1, priced).
        assert!(price_for(&cfg, None).is_some());
        let mut r = super::super::builder::ReportBuilder::new(
            std::time::Instant::now(),
            std::time::SystemTime::now(),
        )
        .finish("caller_hung_up", std::time::Instant::now());
        r.usage.add(&TokenUsage {
            output_audio: 1_000_000,
            ..TokenUsage::default()
        });
        r.set_cost(price_for(&cfg, Some("a-model-nobody-priced")));
        assert_eq!(r.cost_usd, None);
        r.set_cost(price_for(&cfg, Some("gpt-realtime-2.1-mini")));
        assert_eq!(r.cost_usd, Some(20.0));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["usage"]["output_audio"], 1_000_000);
        assert_eq!(json["usage"]["responses"], 1);
    }
}
