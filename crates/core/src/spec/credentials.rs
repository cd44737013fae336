//! Credentials of streamable-HTTP MCP servers: headers whose secrets come from the
//! environment, and OAuth 2.1 client credentials.
//!
//! ```toml
//! [mcp.billing]
//! url = "https://billing.example.com/mcp"
//! headers = { Authorization = "Bearer ${env:BILLING_TOKEN}", X-Tenant = "acme" }
//!
//! [mcp.crm]
//! url = "https://crm.example.com/mcp"
//! oauth = { client_id_env = "CRM_CLIENT_ID", client_secret_env = "CRM_CLIENT_SECRET" }
//! ```
//! A secret enters a spec only as `${env:NAME}`: a header that carries credentials
//! (`Authorization`, `Cookie`, or a name with `auth`, `token`, `key`, `secret`, `pass`,
//! `session` or `signature` in it) must take at least part of its value from the environment,
//! and a literal one is refused here. Core reads no environment: the loader reads the values,
//! and the spec (hence the journal and the agent version) holds only the names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

use super::{Error, invalid};

/// Headers the MCP client sets itself, or HTTP itself owns.
const RESERVED: [&str; 9] = [
    "accept",
    "content-type",
    "content-length",
    "host",
    "connection",
    "transfer-encoding",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

/// Parts of a header name that mark it as carrying credentials.
const CREDENTIAL_WORDS: [&str; 8] = [
    "auth",
    "token",
    "key",
    "secret",
    "pass",
    "cookie",
    "session",
    "signature",
];

/// A header value as written: literal text and `${env:NAME}` references.
#[derive(Clone, Debug, PartialEq)]
pub struct HeaderValue {
    written: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Env(String),
}

impl Serialize for HeaderValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.written)
    }
}

impl HeaderValue {
    /// `text` as written at `key`; `${env:NAME}` is the only `${…}` form.
    pub fn parse(text: &str, key: &str) -> Result<HeaderValue, Error> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| {
                invalid(key, "`${` is not closed; write ${env:NAME} for a variable")
            })?;
            let name = after[..end].strip_prefix("env:").ok_or_else(|| {
                invalid(
                    key,
                    format!(
                        "`${{{}}}` is not a variable; only ${{env:NAME}} is",
                        &after[..end]
                    ),
                )
            })?;
            if name.is_empty() || name.contains(['=', '\0', '$', '{']) || name.trim() != name {
                return Err(invalid(
                    key,
                    format!("`{name}` is not the name of an environment variable"),
                ));
            }
            parts.push(Part::Env(name.to_string()));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        for part in &parts {
            if let Part::Text(text) = part
                && text.chars().any(|c| c.is_control() && c != '\t')
            {
                return Err(invalid(key, "must not contain control characters"));
            }
        }
        Ok(HeaderValue {
            written: text.to_string(),
            parts,
        })
    }

    /// The value as written in the spec (with `${env:NAME}`, never a secret).
    pub fn as_written(&self) -> &str {
        &self.written
    }

    /// The variables the value reads, in order.
    pub fn env_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Env(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The value with each variable's value put in; the error names the variable that is not
    /// set (never a value).
    pub fn resolve(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Env(name) => match lookup(name) {
                    Some(value) if !value.is_empty() => out.push_str(&value),
                    _ => return Err(format!("{name} is not set")),
                },
            }
        }
        Ok(out)
    }
}

/// Whether a header named `name` carries credentials, so that its value must come from the
/// environment.
pub fn carries_credentials(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    CREDENTIAL_WORDS.iter().any(|word| lower.contains(word))
}

/// `oauth = { … }`: OAuth 2.1 client credentials for a streamable-HTTP server.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OAuthSpec {
    /// The variable holding the client id.
    pub client_id_env: String,
    /// The variable holding the client secret.
    pub client_secret_env: String,
    /// The token endpoint; when `None`, found from the server's
    /// `/.well-known/oauth-protected-resource` and its authorization server's metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// The scope asked for (space-separated), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOAuth {
    client_id_env: Option<String>,
    client_secret_env: Option<String>,
    token_url: Option<String>,
    scope: Option<String>,
}

impl RawOAuth {
    pub(super) fn validate(self, key: &str) -> Result<OAuthSpec, Error> {
        let var = |value: Option<String>, field: &str| -> Result<String, Error> {
            let at = format!("{key}.{field}");
            let name = value.ok_or_else(|| {
                invalid(&at, "is required: the name of the variable that holds it")
            })?;
            if name.is_empty() || name.contains(['=', '\0']) || name.trim() != name {
                return Err(invalid(
                    at,
                    format!("`{name}` is not the name of an environment variable"),
                ));
            }
            Ok(name)
        };
        let client_id_env = var(self.client_id_env, "client_id_env")?;
        let client_secret_env = var(self.client_secret_env, "client_secret_env")?;
        if let Some(url) = &self.token_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid(
                format!("{key}.token_url"),
                format!("`{url}` is not an http:// or https:// URL"),
            ));
        }
        Ok(OAuthSpec {
            client_id_env,
            client_secret_env,
            token_url: self.token_url,
            scope: self.scope.filter(|s| !s.trim().is_empty()),
        })
    }
}

/// `headers = { Name = "value" }` as written at `key`.
pub(super) fn parse_headers(
    raw: BTreeMap<String, String>,
    key: &str,
) -> Result<BTreeMap<String, HeaderValue>, Error> {
    let mut headers: BTreeMap<String, HeaderValue> = BTreeMap::new();
    for (name, text) in raw {
        let at = format!("{key}.{name}");
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(invalid(at, format!("`{name}` is not an HTTP header name")));
        }
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(invalid(at, "is set by the MCP client itself"));
        }
        if headers.keys().any(|n| n.eq_ignore_ascii_case(&name)) {
            return Err(invalid(at, "is given twice (header names ignore case)"));
        }
        let value = HeaderValue::parse(&text, &at)?;
        if carries_credentials(&name) && value.env_names().next().is_none() {
            return Err(invalid(
                at,
                "carries credentials, which must come from the environment, not the file: \
                 write e.g. \"Bearer ${env:NAME}\" and set NAME",
            ));
        }
        headers.insert(name, value);
    }
    Ok(headers)
}

/// A variable an MCP server's credentials read, with the spec key that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialVar {
    /// Where the spec names it, e.g. `mcp.billing.headers.Authorization`.
    pub key: String,
    /// The variable.
    pub name: String,
    /// Whether its value is a secret (a client id is not).
    pub secret: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr3t-value".to_string())
    }

    #[test]
    fn values_take_variables_and_text() {
        let value = HeaderValue::parse("Bearer ${env:TOKEN}", "k").unwrap();
        assert_eq!(value.env_names().collect::<Vec<_>>(), ["TOKEN"]);
        assert_eq!(value.resolve(&env).unwrap(), "Bearer s3cr3t-value");
        assert_eq!(value.as_written(), "Bearer ${env:TOKEN}");
        let value = HeaderValue::parse("${env:TOKEN}:${env:OTHER}", "k").unwrap();
        assert_eq!(value.resolve(&env).unwrap_err(), "OTHER is not set");
        let plain = HeaderValue::parse("acme $5", "k").unwrap();
        assert_eq!(plain.resolve(&env).unwrap(), "acme $5");
    }

    #[test]
    fn only_env_references_are_allowed() {
        let err = HeaderValue::parse("Bearer ${TOKEN}", "h").unwrap_err();
        assert_eq!(
            err.to_string(),
            "h: `${TOKEN}` is not a variable; only ${env:NAME} is"
        );
        let err = HeaderValue::parse("Bearer ${env:TOKEN", "h").unwrap_err();
        assert!(err.to_string().contains("not closed"), "{err}");
        let err = HeaderValue::parse("${env:}", "h").unwrap_err();
        assert!(err.to_string().contains("not the name"), "{err}");
        let err = HeaderValue::parse("a\nb", "h").unwrap_err();
        assert!(err.to_string().contains("control"), "{err}");
    }

    #[test]
    fn literal_credentials_are_refused() {
        let headers = |pairs: &[(&str, &str)]| {
            parse_headers(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                "mcp.b.headers",
            )
        };
        let err = headers(&[("Authorization", "Bearer abc123")]).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "mcp.b.headers.Authorization: carries credentials, which must come from the \
                 environment"
            ),
            "{err}"
        );
        for name in ["X-Api-Key", "Cookie", "X-Auth-Token", "Proxy-Authorization"] {
            assert!(headers(&[(name, "abc")]).is_err(), "{name}");
        }
        assert!(headers(&[("X-Tenant", "acme")]).is_ok());
        assert!(headers(&[("X-Api-Key", "${env:K}")]).is_ok());
        let err = headers(&[("Accept", "x")]).unwrap_err();
        assert!(err.to_string().contains("set by the MCP client"), "{err}");
        let err = headers(&[("Bad Name", "x")]).unwrap_err();
        assert!(err.to_string().contains("not an HTTP header name"), "{err}");
        let err = headers(&[("X-A", "1"), ("x-a", "2")]).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    const BASE: &str = "[agent]\nname = \"a\"\nprompt = \"p\"\n[model]\nprimary = \"openai:m\"\n";

    fn spec(extra: &str) -> Result<crate::spec::AgentSpec, Error> {
        crate::spec::AgentSpec::parse(&format!("{BASE}{extra}"))
    }

    #[test]
    fn servers_name_the_variables_their_credentials_read() {
        let spec = spec(
            "[mcp.billing]\nurl = \"https://b/mcp\"\n\
             headers = { Authorization = \"Bearer ${env:BILLING_TOKEN}\", X-Tenant = \"acme\" }\n\
             [mcp.crm]\nurl = \"https://c/mcp\"\n\
             oauth = { client_id_env = \"CRM_ID\", client_secret_env = \"CRM_SECRET\", scope = \"tools\" }\n\
             [mcp.local]\ncommand = [\"srv\"]\n",
        )
        .unwrap();
        let vars = |name: &str| {
            spec.mcp[name]
                .credential_vars(name)
                .into_iter()
                .map(|v| (v.key, v.name, v.secret))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            vars("billing"),
            [(
                "mcp.billing.headers.Authorization".to_string(),
                "BILLING_TOKEN".to_string(),
                true
            )]
        );
        assert_eq!(
            vars("crm"),
            [
                (
                    "mcp.crm.oauth.client_id_env".to_string(),
                    "CRM_ID".to_string(),
                    false
                ),
                (
                    "mcp.crm.oauth.client_secret_env".to_string(),
                    "CRM_SECRET".to_string(),
                    true
                ),
            ]
        );
        assert!(vars("local").is_empty());
        // The canonical form holds names, never values; a server without credentials
        // serializes as before they existed, so its agent version is unchanged.
        let json = serde_json::to_string(&spec.mcp).unwrap();
        assert!(json.contains("Bearer ${env:BILLING_TOKEN}"), "{json}");
        let plain =
            crate::spec::AgentSpec::parse(&format!("{BASE}[mcp.s]\nurl = \"https://s/mcp\"\n"))
                .unwrap();
        assert_eq!(
            serde_json::to_string(&plain.mcp["s"].transport).unwrap(),
            r#"{"http":{"url":"https://s/mcp"}}"#
        );
    }

    #[test]
    fn credentials_are_refused_where_they_do_not_belong() {
        for (extra, expected) in [
            (
                "[mcp.s]\ncommand = [\"srv\"]\nheaders = { X-A = \"1\" }\n",
                "mcp.s.headers: only allowed with `url`",
            ),
            (
                "[mcp.s]\ncommand = [\"srv\"]\noauth = { client_id_env = \"A\", client_secret_env = \"B\" }\n",
                "mcp.s.oauth: only allowed with `url`",
            ),
            (
                "[mcp.s]\nurl = \"https://s\"\noauth = { client_secret_env = \"B\" }\n",
                "mcp.s.oauth.client_id_env: is required",
            ),
            (
                "[mcp.s]\nurl = \"https://s\"\noauth = { client_id_env = \"A\", client_secret_env = \"B\", token_url = \"ftp://x\" }\n",
                "mcp.s.oauth.token_url: `ftp://x` is not",
            ),
            (
                "[mcp.s]\nurl = \"https://s\"\nheaders = { authorization = \"Bearer ${env:T}\" }\n\
                 oauth = { client_id_env = \"A\", client_secret_env = \"B\" }\n",
                "mcp.s.oauth: sets the Authorization header, as `headers.authorization` does",
            ),
            (
                "[mcp.s]\nurl = \"https://s\"\nheaders = { Authorization = \"Bearer sk-live-123\" }\n",
                "mcp.s.headers.Authorization: carries credentials",
            ),
        ] {
            let err = spec(extra).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{extra}: {err}");
        }
    }
}
