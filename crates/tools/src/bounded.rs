//! Size bounds on one tool call: arguments are refused past theirs before they are parsed (in
//! [`crate::Toolbox::prepare`]), and results past theirs are clipped here, saying how big they
//! were, so one call can neither balloon chassis's memory nor flood the model's context and
//! the journal.

use std::sync::Arc;

use chassis_core::ToolDef;
use serde_json::Value;

use crate::{CallContext, Tool, ToolError};

/// A tool whose results (and error messages) are clipped at `max_bytes`.
pub(crate) struct Bounded {
    pub(crate) inner: Arc<dyn Tool>,
    pub(crate) max_bytes: u64,
}

#[async_trait::async_trait]
impl Tool for Bounded {
    fn def(&self) -> &ToolDef {
        self.inner.def()
    }

    async fn call(&self, args: Value, ctx: &CallContext) -> Result<String, ToolError> {
        match self.inner.call(args, ctx).await {
            Ok(result) => Ok(clip(result, self.max_bytes, "result")),
            Err(error) => {
                let message = clip(error.message().to_string(), self.max_bytes, "error");
                Err(error.with_message(message))
            }
        }
    }
}

/// `text` cut to at most `max_bytes` (at a character boundary) followed by a note naming its
/// size and the bound; unchanged when it fits.
pub(crate) fn clip(mut text: String, max_bytes: u64, what: &str) -> String {
    let len = text.len();
    if len as u64 <= max_bytes {
        return text;
    }
    let mut cut = usize::try_from(max_bytes).unwrap_or(usize::MAX).min(len);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!(
        "\n… [{what} clipped: it was {len} bytes; limits.max_tool_result_bytes is {max_bytes}]"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_at_a_character_boundary_and_names_the_size() {
        assert_eq!(clip("short".into(), 10, "result"), "short");
        assert_eq!(
            clip("aéb".into(), 2, "result"),
            "a\n… [result clipped: it was 4 bytes; limits.max_tool_result_bytes is 2]"
        );
    }
}
