//! The price table: USD per million tokens per model, for a call report's `cost_usd`. Built-in
//! defaults only where a published price was at hand; `[prices."MODEL"]` in the file adds a
//! model or replaces a default (prices change: the operator keeps them current). A model with
//! no price gets no `cost_usd`: never an estimate.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::realtime::TokenUsage;

/// USD per 1M tokens of each billing kind (see `realtime::usage`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input_text: f64,
    pub input_audio: f64,
    pub input_cached_text: f64,
    pub input_cached_audio: f64,
    pub output_text: f64,
    pub output_audio: f64,
}

impl ModelPrice {
    /// The rates in `realtime::usage::KINDS` order, as `TokenUsage::counts` gives the tokens.
    fn rates(&self) -> [f64; 6] {
        [
            self.input_text,
            self.input_audio,
            self.input_cached_text,
            self.input_cached_audio,
            self.output_text,
            self.output_audio,
        ]
    }

    /// What `usage` costs, rounded to a millionth of a dollar.
    pub fn cost_usd(&self, usage: &TokenUsage) -> f64 {
        let micro: f64 = usage
            .counts()
            .iter()
            .zip(self.rates())
            .map(|(n, rate)| *n as f64 * rate)
            .sum();
        // tokens × USD per 1M tokens = micro-dollars.
        micro.round() / 1_000_000.0
    }
}

/// Prices by model name (as in `model` or `realtime_url`'s `?model=`; for Azure, the
/// deployment name).
#[derive(Debug, Clone, PartialEq)]
pub struct Prices(pub BTreeMap<String, ModelPrice>);

/// Published prices (USD per 1M tokens), from OpenAI's model pages
/// (developers.openai.com/api/docs/models/MODEL), read 2026-12. `gpt-realtime` and
/// `gpt-realtime-mini` (shut down 2027-01-20) have no default: no page with all their prices was
/// at hand. Image tokens are not priced (the bridge sends no images).
const DEFAULTS: &[(&str, ModelPrice)] = &[
    ("gpt-realtime-2.1", FLAGSHIP),
    ("gpt-realtime-2", FLAGSHIP),
    (
        "gpt-realtime-2.1-mini",
        ModelPrice {
            input_text: 0.60,
            input_audio: 10.00,
            input_cached_text: 0.06,
            input_cached_audio: 0.30,
            output_text: 2.40,
            output_audio: 20.00,
        },
    ),
];

const FLAGSHIP: ModelPrice = ModelPrice {
    input_text: 4.00,
    input_audio: 32.00,
    input_cached_text: 0.40,
    input_cached_audio: 0.40,
    output_text: 24.00,
    output_audio: 64.00,
};

impl Default for Prices {
    fn default() -> Prices {
        Prices(
            DEFAULTS
                .iter()
                .map(|(m, p)| ((*m).to_owned(), *p))
                .collect(),
        )
    }
}

impl Prices {
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        self.0.get(model)
    }

    /// The defaults with the file's `[prices."MODEL"]` tables over them. Every price of a
    /// table is required (a half-written table would price some tokens at 0) and ≥ 0.
    pub(super) fn parse(table: Option<toml::Value>) -> Result<Prices, ConfigError> {
        let mut prices = Prices::default();
        let Some(table) = table else {
            return Ok(prices);
        };
        let models: BTreeMap<String, ModelPrice> = table
            .try_into()
            .map_err(|e: toml::de::Error| invalid("prices", e.to_string()))?;
        for (model, p) in models {
            if p.rates().iter().any(|r| !r.is_finite() || *r < 0.0) {
                return Err(invalid(
                    "prices",
                    format!("{model:?}: prices are USD per 1M tokens, 0 or more"),
                ));
            }
            prices.0.insert(model, p);
        }
        Ok(prices)
    }
}

/// The model a `realtime_url` names in its `model` query parameter.
pub fn url_model(realtime_url: &str) -> Option<&str> {
    let (_, query) = realtime_url.split_once('?')?;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("model="))
        .filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_overrides_and_adds() {
        let t: toml::Table = r#"
            [prices."gpt-realtime-2.1"]
            input_text = 1.0
            input_audio = 2.0
            input_cached_text = 0.5
            input_cached_audio = 0.5
            output_text = 3.0
            output_audio = 4.0
            [prices.my-deployment]
            input_text = 0
            input_audio = 0
            input_cached_text = 0
            input_cached_audio = 0
            output_text = 0
            output_audio = 0
        "#
        .parse()
        .unwrap();
        let p = Prices::parse(t.get("prices").cloned()).unwrap();
        assert_eq!(p.get("gpt-realtime-2.1").unwrap().output_audio, 4.0);
        assert!(p.get("my-deployment").is_some());
        assert_eq!(p.get("gpt-realtime-2.1-mini").unwrap().output_audio, 20.0);
        assert!(p.get("gpt-realtime").is_none(), "no source, no default");
    }

    #[test]
    fn half_tables_and_negative_prices_are_refused() {
        for text in [
            "[prices.m]\ninput_text = 1.0",
            "[prices.m]\ninput_text = -1.0\ninput_audio = 0\ninput_cached_text = 0\ninput_cached_audio = 0\noutput_text = 0\noutput_audio = 0",
            "prices = 3",
        ] {
            let t: toml::Table = text.parse().unwrap();
            assert!(Prices::parse(t.get("prices").cloned()).is_err(), "{text}");
        }
    }

    #[test]
    fn cost_is_per_million_tokens_cached_at_the_cached_rate() {
        let u = TokenUsage {
            input_text: 1_000,
            input_audio: 10_000,
            input_cached_text: 5_000,
            input_cached_audio: 0,
            output_text: 500,
            output_audio: 20_000,
        };
        // 1000×4 + 10000×32 + 5000×0.4 + 500×24 + 20000×64 = 1_618_000 µ$
        assert_eq!(FLAGSHIP.cost_usd(&u), 1.618);
    }

    #[test]
    fn a_config_file_with_prices_and_profiles_loads() {
        let dir = std::env::temp_dir().join(format!("cb-prices-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "[prices.my-deployment]\ninput_text = 1\ninput_audio = 2\ninput_cached_text = 0.5\n\
             input_cached_audio = 0.5\noutput_text = 3\noutput_audio = 4\n\
             [profiles.support]\nnumbers = [\"+15550002222\"]\ninstructions = \"Support.\"\n",
        )
        .unwrap();
        let cfg =
            super::super::Config::load(Some(&path), &|_| None, &super::super::Overrides::default())
                .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(cfg.prices.get("my-deployment").unwrap().output_audio, 4.0);
        assert!(cfg.prices.get("gpt-realtime-2.1").is_some());
        assert!(cfg.profiles.by_name.contains_key("support"));
    }

    #[test]
    fn the_model_comes_from_the_url() {
        let url = "wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1";
        assert_eq!(url_model(url), Some("gpt-realtime-2.1"));
        assert_eq!(url_model("wss://x/v1/realtime?a=b&model=m"), Some("m"));
        assert_eq!(url_model("wss://x/v1/realtime"), None);
    }
}
