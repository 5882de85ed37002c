//! `redact = ["card", "phone", "email", "ssn"]` (top level and per profile): what the bridge
//! removes from transcripts before it stores or logs them ([`callbridge_core::redact`]). From
//! the environment, `CALLBRIDGE_REDACT=card,email` or a JSON list.

use callbridge_core::redact::{Kind, Redact};

use super::{invalid, ConfigError};

/// The set `v` names under `key`; `None` when the key is absent. An unknown name is an error
/// naming the key, the value and the names allowed.
pub fn parse(key: &str, v: Option<toml::Value>) -> Result<Option<Redact>, ConfigError> {
    let names: Vec<String> = match v {
        None => return Ok(None),
        Some(toml::Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s),
                other => Err(invalid(
                    key,
                    format!("{other} is not a name; {}", allowed()),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(invalid(
                key,
                format!("{other}: expected a list of names; {}", allowed()),
            ))
        }
    };
    Redact::from_names(names.iter().map(String::as_str))
        .map(Some)
        .map_err(|bad| invalid(key, format!("{bad:?} is not redactable; {}", allowed())))
}

fn allowed() -> String {
    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    format!("allowed: {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(v: toml::Value) -> Result<Option<Redact>, String> {
        parse("profiles.sales.redact", Some(v)).map_err(|e| e.to_string())
    }

    #[test]
    fn a_list_or_a_comma_separated_text() {
        let list = toml::Value::Array(vec!["card".into(), "ssn".into()]);
        let set = parsed(list).unwrap().unwrap();
        assert_eq!(set.names().collect::<Vec<_>>(), ["card", "ssn"]);
        let set = parsed("email, phone".into()).unwrap().unwrap();
        assert_eq!(set.names().collect::<Vec<_>>(), ["phone", "email"]);
        assert_eq!(parsed(toml::Value::Array(vec![])), Ok(Some(Redact::NONE)));
        assert_eq!(parse("redact", None).unwrap(), None);
    }

    #[test]
    fn an_unknown_name_is_refused_naming_key_and_value() {
        let e = parsed(toml::Value::Array(vec!["card".into(), "iban".into()])).unwrap_err();
        assert!(e.contains("profiles.sales.redact"), "{e}");
        assert!(e.contains("\"iban\""), "{e}");
        assert!(e.contains("allowed: card, phone, email, ssn"), "{e}");
        let e = parsed(toml::Value::Integer(3)).unwrap_err();
        assert!(e.contains("expected a list"), "{e}");
    }
}
