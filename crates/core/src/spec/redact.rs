//! `[redact]`: secrets to remove from everything a run records, besides the API keys.
//!
//! ```toml
//! [redact]
//! env = ["MY_SECRET"]                 # the values of these variables
//! patterns = ["sk-[A-Za-z0-9]{20,}"]  # anything matching these regular expressions
//! ```
//! Core has no regex engine: the patterns' syntax is checked when the engine loads the agent,
//! and so are the variables' values, which core cannot read: one set to fewer than 8 bytes is
//! refused then, since so short a value would be found in ordinary text.

use serde::{Deserialize, Serialize};

use super::{Error, invalid};

/// What to redact besides the providers' API keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RedactSpec {
    /// Environment variables whose values are secrets.
    pub env: Vec<String>,
    /// Regular expressions whose matches are secrets.
    pub patterns: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedact {
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
}

impl RawRedact {
    /// Checks variable names and that no pattern is empty.
    pub(super) fn validate(self) -> Result<RedactSpec, Error> {
        for (i, name) in self.env.iter().enumerate() {
            if name.is_empty() || name.contains(['=', '\0']) || name.trim() != name {
                return Err(invalid(
                    format!("redact.env[{i}]"),
                    "must be the name of an environment variable",
                ));
            }
        }
        for (i, pattern) in self.patterns.iter().enumerate() {
            if pattern.is_empty() {
                return Err(invalid(
                    format!("redact.patterns[{i}]"),
                    "must not be empty",
                ));
            }
        }
        Ok(RedactSpec {
            env: self.env,
            patterns: self.patterns,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::AgentSpec;

    const BASE: &str = "[agent]\nname = \"a\"\nprompt = \"p\"\n[model]\nprimary = \"openai:m\"\n";

    #[test]
    fn redact_table_parses_and_defaults_to_nothing() {
        let spec = AgentSpec::parse(BASE).unwrap();
        assert!(spec.redact.env.is_empty() && spec.redact.patterns.is_empty());
        let spec = AgentSpec::parse(&format!(
            "{BASE}[redact]\nenv = [\"MY_SECRET\"]\npatterns = [\"sk-[A-Za-z0-9]{{20,}}\"]\n"
        ))
        .unwrap();
        assert_eq!(spec.redact.env, ["MY_SECRET"]);
        assert_eq!(spec.redact.patterns, ["sk-[A-Za-z0-9]{20,}"]);
    }

    #[test]
    fn bad_entries_name_the_key() {
        let e = AgentSpec::parse(&format!("{BASE}[redact]\nenv = [\"A=B\"]\n")).unwrap_err();
        assert!(e.to_string().starts_with("redact.env[0]:"), "{e}");
        let e =
            AgentSpec::parse(&format!("{BASE}[redact]\npatterns = [\"x\", \"\"]\n")).unwrap_err();
        assert!(e.to_string().starts_with("redact.patterns[1]:"), "{e}");
        let e = AgentSpec::parse(&format!("{BASE}[redact]\nvalues = [\"x\"]\n")).unwrap_err();
        assert!(e.to_string().contains("unknown field `values`"), "{e}");
    }
}
