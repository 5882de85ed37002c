//! The JSON schemas shipped in `schemas/`, which integrators validate against.

use std::path::Path;

/// Validates `doc` against `schemas/<file>`, failing with every error found.
pub fn assert_valid(file: &str, doc: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(file);
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("schema file")).expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{file}: {errors:?}\n{doc:#}");
}
