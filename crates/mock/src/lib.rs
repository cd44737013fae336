//! A mock model server, OpenAI- and Anthropic-compatible, with scripted replies and fault
//! injection.
//!
//! Tests, `chassis demo` and the benchmarks point a real HTTP client at it. Replies come from a
//! [`Script`]; the turn to answer is the number of assistant messages in the request, so the
//! server keeps no per-conversation state and a resumed conversation gets the same replies.
//! Both endpoints answer from the same script, draw from the same faults and count in the same
//! [`Stats`].
//! Faults are drawn from a seeded generator, so a seed and a request order replay exactly.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let script = chassis_mock::Script::from_toml_str(
//!     "[[scenario]]\n[[scenario.turn]]\ntext = \"hello {input}\"\n",
//! )?;
//! let mock = chassis_mock::start(
//!     chassis_mock::MockConfig::default(),
//!     script,
//!     "127.0.0.1:0".parse()?,
//! )
//! .await?;
//! println!("OPENAI_BASE_URL={}", mock.base_url());
//! println!("ANTHROPIC_BASE_URL={}", mock.anthropic_base_url());
//! mock.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! A request with `stream: true` is answered in its dialect's stream format (OpenAI's
//! `chat.completion.chunk` events ending in `[DONE]`, with a usage chunk when
//! `stream_options.include_usage`; Anthropic's Messages events), text and tool arguments cut
//! into several events; faults can strike midway. A request without it gets the same whole
//! body as ever.
//!
//! [`MockConfig`] can also enforce rules some real servers have: `tool_choice` with tools (or
//! the tools are refused, or ignored as llama-cpp-python does), no `content: null` on a
//! tool-calling assistant message, a `User-Agent` on every request; [`MockConfig::llama_cpp`]
//! is llama-cpp-python's set. [`Stats`] counts the `User-Agent` of every model request.
//!
//! Endpoints: `POST /v1/chat/completions` (OpenAI), `POST /v1/messages` (Anthropic),
//! `GET /v1/models`, `GET /_mock/stats`, `POST /_mock/reset`.

mod anthropic;
mod config;
mod conn;
mod dialect;
mod error;
mod fault;
mod openai;
mod reply;
mod script;
mod server;
mod stats;
mod stream;

pub use config::{MockConfig, ToolsWithoutChoice};
pub use error::Error;
pub use fault::FaultKind;
pub use script::Script;
pub use server::{MockHandle, start};
pub use stats::Stats;
