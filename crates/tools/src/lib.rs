//! Tools for chassis: what an agent can call, and the checks made before a call runs.
//!
//! A [`Toolbox`] holds the tools one agent is granted, built from its spec entries: the
//! `builtin:fs` file tools, confined to a root directory; the `builtin:http` tools, limited to
//! an allowlist of hosts and to public addresses; command tools, programs run without a shell
//! that read JSON arguments on stdin and answer on stdout (a process per call, or one process
//! for every call with `persistent = true`); and the tools of MCP servers, over
//! stdio or streamable HTTP, through one restartable connection per server.
//! [`Toolbox::prepare`] validates a model's raw call against the tool's JSON Schema before
//! anything runs; a [`Refusal`] is phrased for the model so it can correct itself.

mod bounded;
mod command;
mod confine;
mod env;
mod error;
mod fs;
mod http;
mod mcp;
mod persistent;
mod simple_schema;
mod tool;
mod toolbox;
mod validate;

/// The attribute a [`Tool`] implementation needs (its `call` is an async trait method).
pub use async_trait::async_trait;
pub use chassis_redact::issued_tokens;
pub use error::Error;
pub use tool::{CallContext, ProgressSink, Tool, ToolError};
pub use toolbox::Toolbox;
pub use validate::{Refusal, check_arguments};
