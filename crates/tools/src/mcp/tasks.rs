//! Which tools a server lists as task-augmented, read from its raw messages.
//!
//! MCP 2025-11-25 lets `tools/list` give a tool `execution: { taskSupport: … }`: `"required"`
//! means it can only be called as an MCP task, which chassis does not support, so such a tool
//! is never offered to the model (`mcp::tools`; `"optional"` and `"forbidden"` tools are
//! called as usual). rmcp's
//! `Tool` has no `execution` field and drops it, so the field is read from the messages as
//! they arrive, before rmcp parses them: a stdio server's stdout through [`Sniff`], an HTTP
//! server's answers in its HTTP client (`auth.rs`).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde_json::Value;
use tokio::io::{AsyncRead, ReadBuf};

/// The longest line read, as rmcp's own limit: rmcp drops a longer line, so it lists nothing.
const MAX_LINE: usize = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;

/// Each listed tool's `execution.taskSupport`, by tool name, for the tools that have one.
#[derive(Clone, Default)]
pub(crate) struct TaskSupport(Arc<Mutex<BTreeMap<String, String>>>);

impl TaskSupport {
    /// Notes what one raw JSON-RPC message from the server (or a batch of them) lists.
    pub(crate) fn read(&self, message: &[u8]) {
        // Most messages are not tool lists; only those naming the field are parsed again.
        if !message.windows(11).any(|w| w == b"taskSupport") {
            return;
        }
        let Ok(value) = serde_json::from_slice::<Value>(message) else {
            return;
        };
        let messages = match &value {
            Value::Array(batch) => batch.iter().collect(),
            single => vec![single],
        };
        let Ok(mut known) = self.0.lock() else {
            return;
        };
        for message in messages {
            let Some(tools) = message.pointer("/result/tools").and_then(Value::as_array) else {
                continue;
            };
            for tool in tools {
                let name = tool.get("name").and_then(Value::as_str);
                let support = tool
                    .pointer("/execution/taskSupport")
                    .and_then(Value::as_str);
                if let (Some(name), Some(support)) = (name, support) {
                    known.insert(name.to_string(), support.to_string());
                }
            }
        }
    }

    /// The `execution.taskSupport` the server listed `tool` with, if any.
    pub(crate) fn of(&self, tool: &str) -> Option<String> {
        self.0.lock().ok()?.get(tool).cloned()
    }
}

/// A stdio server's stdout, passed on unchanged, each line also given to [`TaskSupport::read`].
pub(crate) struct Sniff<R> {
    inner: R,
    tasks: TaskSupport,
    /// The line read so far.
    line: Vec<u8>,
    /// The line being read is longer than [`MAX_LINE`]; it is skipped to its end.
    skipping: bool,
}

impl<R> Sniff<R> {
    pub(crate) fn new(inner: R, tasks: TaskSupport) -> Sniff<R> {
        Sniff {
            inner,
            tasks,
            line: Vec::new(),
            skipping: false,
        }
    }

    fn take(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|&b| b == b'\n');
            let (part, rest) = match end {
                Some(i) => (&bytes[..i], &bytes[i + 1..]),
                None => (bytes, &[][..]),
            };
            if !self.skipping {
                if self.line.len() + part.len() > MAX_LINE {
                    self.skipping = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            if end.is_some() {
                if !self.skipping {
                    self.tasks.read(&self.line);
                }
                self.line.clear();
                self.skipping = false;
            }
            bytes = rest;
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Sniff<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            this.take(&buf.filled()[before..]);
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[
        {"name":"a","inputSchema":{"type":"object"},"execution":{"taskSupport":"required"}},
        {"name":"b","inputSchema":{"type":"object"},"execution":{"taskSupport":"optional"}},
        {"name":"c","inputSchema":{"type":"object"}}]}}"#;

    #[test]
    fn tool_lists_give_each_tools_task_support() {
        let tasks = TaskSupport::default();
        tasks.read(LIST.as_bytes());
        assert_eq!(tasks.of("a").as_deref(), Some("required"));
        assert_eq!(tasks.of("b").as_deref(), Some("optional"));
        assert_eq!(tasks.of("c"), None);
        // Neither a batch's other messages nor text that is not JSON get in the way.
        let tasks = TaskSupport::default();
        let batch = format!(r#"[{{"jsonrpc":"2.0","method":"x"}}, {LIST}]"#);
        tasks.read(batch.as_bytes());
        tasks.read(b"taskSupport, not JSON");
        assert_eq!(tasks.of("a").as_deref(), Some("required"));
    }

    #[tokio::test]
    async fn stdout_passes_unchanged_and_its_lines_are_read() {
        let one_line = LIST.replace('\n', "");
        let text = format!("running 1 test\n{one_line}\n{{\"jsonrpc\":\"2.0\"}}\n");
        let tasks = TaskSupport::default();
        // Read in small pieces, so lines arrive split across reads.
        let reader = tokio::io::BufReader::with_capacity(7, text.as_bytes());
        let mut sniff = Sniff::new(reader, tasks.clone());
        let mut out = String::new();
        let mut piece = [0u8; 5];
        loop {
            let n = sniff.read(&mut piece).await.unwrap();
            if n == 0 {
                break;
            }
            out.push_str(std::str::from_utf8(&piece[..n]).unwrap());
        }
        assert_eq!(out, text);
        assert_eq!(tasks.of("a").as_deref(), Some("required"));
        assert_eq!(tasks.of("b").as_deref(), Some("optional"));
    }
}
