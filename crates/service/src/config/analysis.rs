//! `analysis = { instructions, schema, timeout_ms }` and `analysis_model` in a profile: after
//! the call, a text model fills `schema` from the (redacted) transcript and the report carries
//! the answer (`report::analysis`). The schema is checked at start-up: it must compile and be
//! an object schema (structured output's root is an object).

use std::time::Duration;

use serde_json::Value;

use super::{invalid, ConfigError};

/// The text model asked when a profile names none (OpenAI's Responses API; structured outputs).
pub const DEFAULT_ANALYSIS_MODEL: &str = "gpt-5-mini";
/// How long the report waits for the analysis by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// A profile's post-call analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub instructions: String,
    /// A JSON Schema of an object.
    pub schema: Value,
    pub model: String,
    /// The report waits at most this long for the answer.
    pub timeout: Duration,
}

/// Parses `analysis` (a table, `key` names it in errors) with `model` (`analysis_model`).
pub fn parse(key: &str, v: toml::Value, model: Option<String>) -> Result<Analysis, ConfigError> {
    let toml::Value::Table(mut t) = v else {
        return Err(invalid(key, "expected a table { instructions, schema }"));
    };
    let instructions = match t.remove("instructions") {
        Some(toml::Value::String(s)) if !s.trim().is_empty() => s,
        _ => return Err(invalid(&format!("{key}.instructions"), "required, a text")),
    };
    let schema: Value = match t.remove("schema") {
        // A JSON text, for schemas TOML writes awkwardly.
        Some(toml::Value::String(s)) => serde_json::from_str(&s)
            .map_err(|e| invalid(&format!("{key}.schema"), format!("not JSON: {e}")))?,
        Some(v @ toml::Value::Table(_)) => {
            serde_json::to_value(v).map_err(|e| invalid(&format!("{key}.schema"), e.to_string()))?
        }
        _ => {
            return Err(invalid(
                &format!("{key}.schema"),
                "required, a table or JSON text",
            ))
        }
    };
    if schema["type"] != "object" {
        return Err(invalid(
            &format!("{key}.schema"),
            "the root must be {type = \"object\", ...}",
        ));
    }
    if let Err(e) = jsonschema::validator_for(&schema) {
        return Err(invalid(
            &format!("{key}.schema"),
            format!("not a valid schema: {e}"),
        ));
    }
    let timeout = match t.remove("timeout_ms") {
        None => DEFAULT_TIMEOUT,
        Some(toml::Value::Integer(ms)) if (100..=120_000).contains(&ms) => {
            Duration::from_millis(ms as u64)
        }
        Some(other) => {
            return Err(invalid(
                &format!("{key}.timeout_ms"),
                format!("{other}; allowed: 100 to 120000"),
            ))
        }
    };
    if let Some(other) = t.keys().next() {
        return Err(invalid(
            &format!("{key}.{other}"),
            "unknown; allowed: instructions, schema, timeout_ms",
        ));
    }
    Ok(Analysis {
        instructions,
        schema,
        model: model.unwrap_or_else(|| DEFAULT_ANALYSIS_MODEL.into()),
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Analysis, String> {
        let t: toml::Table = text.parse().expect("toml");
        parse("profiles.s.analysis", t["analysis"].clone(), None).map_err(|e| e.to_string())
    }

    #[test]
    fn a_table_schema_or_a_json_one() {
        let a = parsed(
            "analysis = { instructions = \"Sum up.\", schema = { type = \"object\", \
             properties = { ok = { type = \"boolean\" } } } }",
        )
        .unwrap();
        assert_eq!(a.schema["properties"]["ok"]["type"], "boolean");
        assert_eq!(a.model, DEFAULT_ANALYSIS_MODEL);
        assert_eq!(a.timeout, DEFAULT_TIMEOUT);
        let b = parsed(
            "analysis = { instructions = \"x\", schema = '{\"type\":\"object\"}', timeout_ms = 500 }",
        )
        .unwrap();
        assert_eq!(b.timeout, Duration::from_millis(500));
    }

    #[test]
    fn bad_ones_name_the_key() {
        let o = "instructions = \"x\", schema = { type = \"object\" ";
        for (text, error) in [
            (
                "schema = { type = \"object\" }".to_owned(),
                ".instructions: required",
            ),
            (
                "instructions = \"x\", schema = { type = \"array\" }".into(),
                ".schema: the root must be",
            ),
            (
                format!("{o}, properties = 3 }}"),
                ".schema: not a valid schema",
            ),
            (format!("{o}}}, timeout_ms = 5"), ".timeout_ms: 5; allowed"),
            (format!("{o}}}, x = 1"), ".x: unknown"),
        ] {
            let e = parsed(&format!("analysis = {{ {text} }}")).unwrap_err();
            let want = format!("profiles.s.analysis{error}");
            assert!(e.starts_with(&want), "{text}: {e}");
        }
    }
}
