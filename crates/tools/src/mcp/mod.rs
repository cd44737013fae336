//! MCP tools: the tools an MCP server lists (`use = "mcp:NAME"`), called over its connection.
//!
//! A server's annotations are hints from the server itself, so they decide the risk class only
//! for a server marked `trusted`; otherwise its tools are irreversible unless the spec's `risk`
//! table says otherwise.

mod auth;
mod oauth;
mod server;
mod tasks;

use std::collections::BTreeMap;
use std::sync::Arc;

use chassis_core::{RiskClass, ToolDef};
use rmcp::model::CallToolResult;
use serde_json::Value;

use crate::{CallContext, Tool, ToolError};
pub(crate) use server::Server;

/// Most text a call may return; more is an error rather than a flooded context.
const MAX_RESULT_BYTES: usize = 1024 * 1024;

/// Why the tools of an `mcp:NAME` entry cannot be built: the field of the entry at fault
/// (`only`, `risk` or `use`) and the message.
pub(crate) type EntryError = (&'static str, String);

/// Builds the tools of one `mcp:NAME` entry from what the server listed: those in `only` (in
/// that order), or all of them (in the server's order).
pub(crate) fn tools(
    server: &Arc<Server>,
    listed: &[rmcp::model::Tool],
    trusted: bool,
    only: Option<&[String]>,
    risk: &BTreeMap<String, RiskClass>,
) -> Result<Vec<Arc<dyn Tool>>, EntryError> {
    let name = server.name();
    let listed_names = || {
        let names: Vec<&str> = listed.iter().map(|t| t.name.as_ref()).collect();
        if names.is_empty() {
            "it lists none".to_string()
        } else {
            format!("it lists: {}", names.join(", "))
        }
    };
    let find = |wanted: &str| listed.iter().find(|t| t.name == wanted);
    if let Some(only) = only {
        let missing: Vec<&str> = only
            .iter()
            .filter(|n| find(n).is_none())
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err((
                "only",
                format!(
                    "MCP server `{name}` has no tool {}; {}",
                    quoted(&missing),
                    listed_names()
                ),
            ));
        }
    }
    let unknown: Vec<&str> = risk
        .keys()
        .filter(|n| find(n).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err((
            "risk",
            format!(
                "MCP server `{name}` has no tool {}; {}",
                quoted(&unknown),
                listed_names()
            ),
        ));
    }
    let chosen: Vec<&rmcp::model::Tool> = match only {
        Some(only) => only.iter().filter_map(|n| find(n)).collect(),
        None => listed.iter().collect(),
    };
    let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
    for tool in chosen {
        if tools.iter().any(|t| t.def().name == tool.name) {
            continue;
        }
        if !callable_name(&tool.name) {
            return Err((
                "use",
                format!(
                    "MCP server `{name}` lists tool `{}`, a name models cannot call \
                    (1 to 64 letters, digits, `_` or `-`); leave it out with `only`",
                    tool.name
                ),
            ));
        }
        // A tool that must be called as a task (MCP 2025-11-25) fails whenever it is called
        // plainly, so the model is never offered it: named in `only`, it is refused at load;
        // among all of a server's tools, it is left out with a warning, so a server such as
        // the reference one (one such tool among many) is usable without listing the rest.
        // "optional" tools are called plainly, as the spec allows.
        if server.task_support(&tool.name).as_deref() == Some("required") {
            let why = "as callable only as an MCP task (`execution.taskSupport` is \"required\"), \
                which chassis does not support";
            if only.is_some() {
                return Err((
                    "only",
                    format!(
                        "MCP server `{name}` lists tool `{}` {why}; leave it out of `only`",
                        tool.name
                    ),
                ));
            }
            tracing::warn!(
                "MCP server `{name}` lists tool `{}` {why}; it is left out",
                tool.name
            );
            continue;
        }
        let def = def(tool, trusted, risk.get(tool.name.as_ref()).copied());
        tools.push(Arc::new(McpTool {
            def,
            server: server.clone(),
        }));
    }
    Ok(tools)
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names OpenAI-style and Anthropic-style APIs both accept.
fn callable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The tool as the model sees it.
///
/// The risk class is, in order: the spec's `risk` for this tool; for a trusted server, the
/// annotations (`readOnlyHint` → read-only, else `destructiveHint`, which MCP defaults to
/// true, → irreversible, else reversible); otherwise irreversible. A trusted server's
/// `idempotentHint` also marks the tool idempotent.
fn def(tool: &rmcp::model::Tool, trusted: bool, risk: Option<RiskClass>) -> ToolDef {
    let hints = tool.annotations.as_ref().filter(|_| trusted);
    let from_hints = hints.map(|a| {
        if a.read_only_hint == Some(true) {
            RiskClass::ReadOnly
        } else if a.destructive_hint.unwrap_or(true) {
            RiskClass::Irreversible
        } else {
            RiskClass::Reversible
        }
    });
    ToolDef {
        name: tool.name.to_string(),
        description: tool
            .description
            .as_deref()
            .or(tool.title.as_deref())
            .unwrap_or_default()
            .to_string(),
        parameters: Value::Object((*tool.input_schema).clone()),
        risk: risk.or(from_hints).unwrap_or(RiskClass::Irreversible),
        idempotent: hints.is_some_and(|a| a.idempotent_hint == Some(true)),
        max_attempts: chassis_core::tool::DEFAULT_TOOL_ATTEMPTS,
    }
}

/// One tool of an MCP server.
struct McpTool {
    def: ToolDef,
    server: Arc<Server>,
}

#[async_trait::async_trait]
impl Tool for McpTool {
    fn def(&self) -> &ToolDef {
        &self.def
    }

    async fn call(&self, args: Value, ctx: &CallContext) -> Result<String, ToolError> {
        let Value::Object(arguments) = args else {
            return Err(ToolError::failed("the arguments must be a JSON object"));
        };
        // What a server sends back may quote the token it was sent; it is not the model's.
        let scrub = |e: ToolError| {
            let message = self.server.scrub(e.message());
            e.with_message(message)
        };
        let result = self
            .server
            .call(&self.def.name, arguments, ctx)
            .await
            .map_err(scrub)?;
        render(&self.def.name, self.server.name(), result)
            .map(|text| self.server.scrub(&text))
            .map_err(scrub)
    }
}

/// The text of a result: its text blocks (and embedded text resources) joined by newlines,
/// with other blocks noted; a result with `isError` becomes the tool's answer that the call
/// failed, given to the model as it is and never retried.
fn render(tool: &str, server: &str, result: CallToolResult) -> Result<String, ToolError> {
    let mut parts: Vec<String> = Vec::new();
    for block in &result.content {
        if let Some(text) = block.as_text() {
            parts.push(text.text.clone());
            continue;
        }
        let value = serde_json::to_value(block).unwrap_or(Value::Null);
        let field = |key: &str| value.get(key).and_then(Value::as_str);
        let kind = field("type").unwrap_or("unknown");
        let resource = value.get("resource");
        if let Some(text) = resource.and_then(|r| r.get("text")).and_then(Value::as_str) {
            parts.push(text.to_string());
        } else if let Some(uri) = resource
            .and_then(|r| r.get("uri"))
            .and_then(Value::as_str)
            .or(field("uri"))
        {
            parts.push(format!("[{kind} {uri}]"));
        } else {
            let mime = field("mimeType").unwrap_or("unknown type");
            parts.push(format!("[{kind} content ({mime}) omitted]"));
        }
    }
    let mut text = parts.join("\n");
    if text.is_empty()
        && let Some(structured) = &result.structured_content
    {
        text = structured.to_string();
    }
    if text.len() > MAX_RESULT_BYTES {
        return Err(ToolError::failed(format!(
            "`{tool}` (MCP server `{server}`) returned more than 1 MiB ({MAX_RESULT_BYTES} bytes)"
        )));
    }
    if result.is_error == Some(true) {
        if text.is_empty() {
            text = format!("`{tool}` (MCP server `{server}`) failed without a message");
        }
        return Err(ToolError::answered(text));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use rmcp::model::ToolAnnotations;
    use serde_json::json;

    use super::*;

    fn tool(annotations: Option<ToolAnnotations>) -> rmcp::model::Tool {
        let schema = json!({"type": "object"});
        let mut tool =
            rmcp::model::Tool::new("t", "a tool", Arc::new(schema.as_object().unwrap().clone()));
        tool.annotations = annotations;
        tool
    }

    fn hints(read_only: Option<bool>, destructive: Option<bool>) -> Option<ToolAnnotations> {
        let mut a = ToolAnnotations::new();
        a.read_only_hint = read_only;
        a.destructive_hint = destructive;
        Some(a)
    }

    #[test]
    fn annotations_count_only_for_trusted_servers() {
        let cases = [
            (hints(Some(true), None), RiskClass::ReadOnly),
            (hints(None, Some(false)), RiskClass::Reversible),
            (hints(Some(false), Some(true)), RiskClass::Irreversible),
            (hints(None, None), RiskClass::Irreversible),
            (None, RiskClass::Irreversible),
        ];
        for (annotations, trusted_risk) in cases {
            let t = tool(annotations);
            assert_eq!(def(&t, true, None).risk, trusted_risk, "{t:?}");
            assert_eq!(def(&t, false, None).risk, RiskClass::Irreversible, "{t:?}");
            assert_eq!(
                def(&t, false, Some(RiskClass::ReadOnly)).risk,
                RiskClass::ReadOnly
            );
        }
    }

    #[test]
    fn results_render_text_and_note_other_content() {
        let result: CallToolResult = serde_json::from_value(json!({
            "content": [
                {"type": "text", "text": "one"},
                {"type": "image", "data": "aGk=", "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "file:///a", "text": "inside"}},
                {"type": "resource", "resource": {"uri": "file:///b", "blob": "aGk="}},
            ]
        }))
        .unwrap();
        assert_eq!(
            render("t", "s", result).unwrap(),
            "one\n[image content (image/png) omitted]\ninside\n[resource file:///b]"
        );
        let structured: CallToolResult =
            serde_json::from_value(json!({"content": [], "structuredContent": {"n": 1}})).unwrap();
        assert_eq!(render("t", "s", structured).unwrap(), r#"{"n":1}"#);
        let failed: CallToolResult =
            serde_json::from_value(json!({"content": [], "isError": true})).unwrap();
        let answer = render("t", "s", failed).unwrap_err();
        assert_eq!(
            answer.message(),
            "`t` (MCP server `s`) failed without a message"
        );
        assert!(!answer.may_retry() && !answer.is_indeterminate());
    }
}
