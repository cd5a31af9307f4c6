//! The state machine definition and its rendering.
//!
//! `statemachine/orchestrator.asl.json` is a template: `${name}` placeholders are filled by
//! Terraform's `templatefile` in a deployment and by [`render`] on the local stack, so the tests
//! execute exactly the definition that is deployed.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// The template, as committed.
pub const ORCHESTRATOR_TEMPLATE: &str = include_str!("../../../statemachine/orchestrator.asl.json");

/// Replaces every `${name}` with `values[name]`; a placeholder without a value is an error, as it
/// is for `templatefile`.
pub fn render(template: &str, values: &BTreeMap<&str, String>) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| Error::ConfigError("unterminated ${ in state machine template".to_owned()))?;
        let name = &after[..end];
        let value = values
            .get(name)
            .ok_or_else(|| Error::ConfigError(format!("state machine template needs a value for ${{{name}}}")))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The placeholder names a template uses, so callers can check they supply all of them.
pub fn placeholders(template: &str) -> Vec<String> {
    let mut names: Vec<String> =
        template.split("${").skip(1).filter_map(|part| part.split('}').next()).map(str::to_owned).collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_rejects_missing_values() {
        let values = BTreeMap::from([("fn", "arn:x".to_owned())]);
        assert_eq!(render(r#"{"a":"${fn}","b":"$.x"}"#, &values).unwrap(), r#"{"a":"arn:x","b":"$.x"}"#);
        let error = render(r#"{"a":"${other}"}"#, &values).unwrap_err();
        assert!(error.to_string().contains("${other}"), "{error}");
    }

    #[test]
    fn the_committed_template_renders_to_valid_json() {
        let values: BTreeMap<&str, String> = BTreeMap::new();
        let names = placeholders(ORCHESTRATOR_TEMPLATE);
        assert!(!names.is_empty());
        let owned: Vec<(String, String)> = names.iter().map(|n| (n.clone(), format!("value-of-{n}"))).collect();
        let values: BTreeMap<&str, String> =
            values.into_iter().chain(owned.iter().map(|(k, v)| (k.as_str(), v.clone()))).collect();
        let rendered = render(ORCHESTRATOR_TEMPLATE, &values).unwrap();
        let json: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        assert!(json["States"].is_object());
    }
}
