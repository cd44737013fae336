//! `docs/agent-spec.md` cannot drift from the spec parser.
//!
//! The keys the parser accepts are asked of the parser itself: every raw spec struct denies
//! unknown fields, and serde's error for an unknown one lists the fields it expected. Each such
//! key must have a row in the reference; each row must name a key the parser accepts; and the
//! reference's complete example, which must use every documented key, must parse.

use std::collections::BTreeSet;

use chassis_core::spec::AgentSpec;

const DOC: &str = include_str!("../../../docs/agent-spec.md");

/// A table of the spec, as the reference writes its keys, and TOML that opens it.
const TABLES: [(&str, &str); 14] = [
    ("", ""),
    ("agent", "[agent]"),
    ("model", "[model]"),
    ("providers.NAME", "[providers.p]"),
    ("tools[]", "[[tools]]"),
    ("mcp.NAME", "[mcp.m]"),
    ("mcp.NAME.oauth", "[mcp.m.oauth]"),
    ("limits", "[limits]"),
    ("pricing.MODEL", "[pricing.m]"),
    ("alerts", "[alerts]"),
    ("approvals", "[approvals]"),
    ("approvals.rules[]", "[[approvals.rules]]"),
    ("redact", "[redact]"),
    ("context", "[context]"),
];

/// Keys whose children are names chosen by the user: documented as `parent.PLACEHOLDER`.
const MAPS: [(&str, &str); 4] = [
    ("vars", "vars.NAME"),
    ("approvals.tools", "approvals.tools.TOOL"),
    ("limits.on_limit", "limits.on_limit.LIMIT"),
    ("mcp.NAME.headers", "mcp.NAME.headers.HEADER"),
];

/// The fields the table opened by `header` accepts, from the parser's unknown-field error.
fn accepted_fields(header: &str) -> Vec<String> {
    let probe = format!("{header}\nzz_not_a_key = 1\n");
    let error = AgentSpec::parse(&probe)
        .expect_err("an unknown key is refused")
        .to_string();
    let list = error
        .split_once("unknown field `zz_not_a_key`, expected ")
        .map(|(_, rest)| rest.lines().next().unwrap_or_default())
        .unwrap_or_else(|| panic!("no list of expected fields for {header:?}: {error}"));
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every key the parser accepts, written as the reference writes them.
fn parser_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (table, header) in TABLES {
        for field in accepted_fields(header) {
            keys.insert(if table.is_empty() {
                field
            } else {
                format!("{table}.{field}")
            });
        }
    }
    keys
}

/// The keys of the reference's tables: the first cell of each row, between backticks.
fn documented_keys() -> BTreeSet<String> {
    DOC.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(key, _)| key.to_string()))
        .collect()
}

/// The reference's complete example: its only TOML block.
fn complete_example() -> &'static str {
    let (_, rest) = DOC
        .split_once("```toml\n")
        .expect("the reference has a complete example");
    rest.split_once("```").expect("the example is closed").0
}

/// The keys the complete example uses, written as the reference writes them.
fn example_keys(value: &toml::Value, path: &str, keys: &mut BTreeSet<String>) {
    let containers = [
        "",
        "agent",
        "model",
        "providers",
        "providers.NAME",
        "tools",
        "tools[]",
        "mcp",
        "mcp.NAME",
        "mcp.NAME.oauth",
        "limits",
        "pricing",
        "pricing.MODEL",
        "alerts",
        "approvals",
        "approvals.rules",
        "approvals.rules[]",
        "redact",
        "context",
    ];
    if !path.is_empty() {
        keys.insert(path.trim_end_matches("[]").to_string());
    }
    if let Some((_, placeholder)) = MAPS.iter().find(|(map, _)| *map == path) {
        if value.is_table() {
            keys.insert(placeholder.to_string());
        }
        return;
    }
    if !containers.contains(&path) {
        return;
    }
    match value {
        toml::Value::Table(table) => {
            for (key, child) in table {
                let child_path = match path {
                    "providers" => "providers.NAME".to_string(),
                    "mcp" => "mcp.NAME".to_string(),
                    "pricing" => "pricing.MODEL".to_string(),
                    "" => key.clone(),
                    _ => format!("{path}.{key}"),
                };
                example_keys(child, &child_path, keys);
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                example_keys(item, &format!("{path}[]"), keys);
            }
        }
        _ => {}
    }
}

#[test]
fn every_key_the_parser_accepts_is_documented() {
    let documented = documented_keys();
    let missing: Vec<String> = parser_keys()
        .into_iter()
        .filter(|key| !documented.contains(key))
        .collect();
    assert!(
        missing.is_empty(),
        "keys the parser accepts that docs/agent-spec.md does not document: {missing:?}"
    );
}

#[test]
fn every_documented_key_is_accepted() {
    let accepted = parser_keys();
    let placeholders: BTreeSet<&str> = MAPS.iter().map(|(_, p)| *p).collect();
    let unknown: Vec<String> = documented_keys()
        .into_iter()
        .filter(|key| !accepted.contains(key) && !placeholders.contains(key.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/agent-spec.md documents keys the parser refuses: {unknown:?}"
    );
}

#[test]
fn the_complete_example_parses_and_uses_every_documented_key() {
    let example = complete_example();
    if let Err(e) = AgentSpec::parse(example) {
        panic!("the complete example of docs/agent-spec.md does not parse: {e}");
    }
    let value: toml::Value = toml::from_str(example).expect("the example is TOML");
    let mut used = BTreeSet::new();
    example_keys(&value, "", &mut used);
    let unused: Vec<String> = documented_keys()
        .into_iter()
        .filter(|key| !used.contains(key))
        .collect();
    assert!(
        unused.is_empty(),
        "documented keys the complete example does not use: {unused:?}"
    );
}

#[test]
fn the_probe_finds_the_fields_of_a_table() {
    // The derivation above relies on serde's wording; this pins it to a known table.
    let fields = accepted_fields("[redact]");
    assert_eq!(fields, ["env", "patterns"]);
}
