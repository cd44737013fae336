//! Cassettes: model exchanges recorded to a file and served back offline.
//!
//! [`Recording`] wraps a client and adds every answered call to a [`Recorder`], which keeps the
//! cassette file up to date after each one. [`Replay`] answers from a cassette without touching
//! the network: a request is matched by its content (model, messages, tools, `max_tokens`), so
//! runs sharing a cassette each get their own answers whatever order they ask in, and a request
//! that matches nothing is refused with a diff against the closest recorded one.
//! A journaled run becomes a cassette too ([`Cassette::from_events`]): the request of each step
//! is rebuilt from the fold, exactly as the engine built it.
//!
//! A cassette is a file people share and commit, so what goes into one is scrubbed of secrets
//! first: a [`Recorder`] and a [`Replay`] given a [`Scrub`] (the agent's redactor) apply it to
//! every string of the request and of the answer, and a replay applies it to the live request
//! too, so a scrubbed recording still matches.
//!
//! The sampling temperature is not part of a recorded request: the journal does not keep it, and
//! it is part of the agent version anyway.
//!
//! A recording keeps the assembled exchange, however the answer travelled (streamed or whole);
//! a replay gives a streamed run its recorded reply, shown to the request's deltas in one piece.
//!
//! A cassette keeps each tool call's result too ([`ToolResult`]), so a replay performs no
//! effect: the tools of a replayed run answer from the cassette (matched by tool and arguments),
//! and a call the cassette lacks is refused with the closest recorded calls, never executed.
//! Format 1 files predate that; their results are read from the recorded requests, where each
//! one follows the call that asked for it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chassis_core::state::FoldError;
use chassis_core::{AssistantMessage, Event, Message, RunState, ToolDef, Usage};
use serde::{Deserialize, Serialize};

use crate::{ChatRequest, ChatResponse, Fallback, ModelClient};

/// Version of the cassette file format, stored in every file as `"cassette"`: 2 since tool
/// results are recorded; 1 is still read.
pub const FORMAT: u32 = 2;

/// How a divergence of a tool call begins, so callers can recognise one in a run's journal.
pub const TOOL_DIVERGED: &str = "the tool call diverges from the recording";

/// How every divergence error begins, so callers can recognise one in a run's failure reason.
pub const DIVERGED: &str = "the request diverges from the recording";

/// Lines of a divergence diff shown before the rest is cut.
const MAX_DIFF_LINES: usize = 80;

/// Removes secrets from a text (the agent's redactor); a cassette applies it to every string it
/// records.
pub type Scrub = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A cassette that cannot be read, written or built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("cassette {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a cassette.
    #[error("cassette {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, with line and column when the JSON is malformed.
        message: String,
    },
    /// The file cannot be written.
    #[error("cassette {path}: cannot write: {source}")]
    Write {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The run's journal cannot be folded, so its requests cannot be rebuilt.
    #[error("cannot export the run: its journal cannot be replayed: {0}")]
    Fold(#[from] FoldError),
}

/// A tool as the model sees it: what a request carries (the risk class never reaches the model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

impl From<&ToolDef> for Tool {
    fn from(def: &ToolDef) -> Tool {
        Tool {
            name: def.name.clone(),
            description: def.description.clone(),
            parameters: def.parameters.clone(),
        }
    }
}

/// A request as recorded: the part of a [`ChatRequest`] that decides the answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Model id as the provider knows it.
    pub model: String,
    /// The context.
    pub messages: Vec<Message>,
    /// Tools offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// Cap on output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl Request {
    /// The recorded form of `request`.
    pub fn of(request: &ChatRequest<'_>) -> Request {
        Request {
            model: request.model.to_string(),
            messages: request.messages.to_vec(),
            tools: request.tools.iter().map(Tool::from).collect(),
            max_tokens: request.max_tokens,
        }
    }

    /// This request with `scrub` applied to every string: the model, each message's text,
    /// call ids, names and arguments, and each tool's name, description and schema.
    pub fn scrubbed(&self, scrub: &dyn Fn(&str) -> String) -> Request {
        Request {
            model: scrub(&self.model),
            messages: self
                .messages
                .iter()
                .map(|m| scrub_message(m, scrub))
                .collect(),
            tools: self
                .tools
                .iter()
                .map(|t| Tool {
                    name: scrub(&t.name),
                    description: scrub(&t.description),
                    parameters: scrub_json(&t.parameters, scrub),
                })
                .collect(),
            max_tokens: self.max_tokens,
        }
    }

    /// What replay matches on: the request as canonical (key-sorted) JSON.
    fn key(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        chassis_core::state::call_key("", &value)
    }

    /// A line-oriented rendering for diffs: one block per message, one line per text line.
    fn render(&self) -> Vec<String> {
        let mut lines = vec![format!("model: {}", self.model)];
        if let Some(max) = self.max_tokens {
            lines.push(format!("max_tokens: {max}"));
        }
        for tool in &self.tools {
            lines.push(format!(
                "tool {}: {} {}",
                tool.name,
                tool.description,
                chassis_core::state::call_key("", &tool.parameters).trim_start()
            ));
        }
        for (i, message) in self.messages.iter().enumerate() {
            let (head, text, calls) = match message {
                Message::System { content } => (format!("[{i}] system:"), Some(content), &[][..]),
                Message::User { content } => (format!("[{i}] user:"), Some(content), &[][..]),
                Message::Assistant(reply) => (
                    format!("[{i}] assistant:"),
                    reply.content.as_ref(),
                    &reply.tool_calls[..],
                ),
                Message::Tool { call_id, content } => {
                    (format!("[{i}] tool {call_id}:"), Some(content), &[][..])
                }
            };
            lines.push(head);
            if let Some(text) = text {
                lines.extend(text.lines().map(|line| format!("    {line}")));
            }
            for call in calls {
                lines.push(format!(
                    "    call {} {} {}",
                    call.id, call.name, call.arguments
                ));
            }
        }
        lines
    }
}

/// A response as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The reply.
    pub message: AssistantMessage,
    /// Tokens used.
    pub usage: Usage,
    /// The model that answered, as the provider named it.
    pub model: String,
    /// Why the model stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// `provider:model` of the client that answered.
    pub served_by: String,
}

impl Response {
    /// This response with `scrub` applied to every string.
    pub fn scrubbed(&self, scrub: &dyn Fn(&str) -> String) -> Response {
        Response {
            message: scrub_reply(&self.message, scrub),
            usage: self.usage,
            model: scrub(&self.model),
            finish_reason: self.finish_reason.as_deref().map(scrub),
            served_by: scrub(&self.served_by),
        }
    }
}

fn scrub_message(message: &Message, scrub: &dyn Fn(&str) -> String) -> Message {
    match message {
        Message::System { content } => Message::System {
            content: scrub(content),
        },
        Message::User { content } => Message::User {
            content: scrub(content),
        },
        Message::Assistant(reply) => Message::Assistant(scrub_reply(reply, scrub)),
        Message::Tool { call_id, content } => Message::Tool {
            call_id: scrub(call_id),
            content: scrub(content),
        },
    }
}

fn scrub_reply(reply: &AssistantMessage, scrub: &dyn Fn(&str) -> String) -> AssistantMessage {
    AssistantMessage {
        content: reply.content.as_deref().map(scrub),
        tool_calls: reply
            .tool_calls
            .iter()
            .map(|call| chassis_core::ToolCall {
                id: scrub(&call.id),
                name: scrub(&call.name),
                arguments: scrub(&call.arguments),
            })
            .collect(),
    }
}

/// `value` with `scrub` applied to every string and every key.
fn scrub_json(value: &serde_json::Value, scrub: &dyn Fn(&str) -> String) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(scrub(text)),
        Value::Array(items) => Value::Array(items.iter().map(|v| scrub_json(v, scrub)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (scrub(k), scrub_json(v, scrub)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl From<&ChatResponse> for Response {
    fn from(response: &ChatResponse) -> Response {
        Response {
            message: response.message.clone(),
            usage: response.usage,
            model: response.model.clone(),
            finish_reason: response.finish_reason.clone(),
            served_by: response.served_by.clone(),
        }
    }
}

impl From<Response> for ChatResponse {
    fn from(response: Response) -> ChatResponse {
        ChatResponse {
            message: response.message,
            usage: response.usage,
            model: response.model,
            finish_reason: response.finish_reason,
            served_by: response.served_by,
        }
    }
}

/// One model call: what was asked and what came back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// The request.
    pub request: Request,
    /// The answer.
    pub response: Response,
}

impl Exchange {
    /// This exchange with `scrub` applied to every string of the request and the answer.
    pub fn scrubbed(&self, scrub: &dyn Fn(&str) -> String) -> Exchange {
        Exchange {
            request: self.request.scrubbed(scrub),
            response: self.response.scrubbed(scrub),
        }
    }
}

/// One tool call as recorded: the tool, its arguments, and what came back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The tool's name.
    pub tool: String,
    /// The arguments it was called with.
    pub args: serde_json::Value,
    /// Whether it succeeded.
    pub ok: bool,
    /// The call was cut off while it may have been acting (a timeout): replayed as such.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub indeterminate: bool,
    /// Its output, or the error the model saw.
    pub content: String,
}

impl ToolResult {
    /// This result with `scrub` applied to every string, object keys of the arguments too.
    pub fn scrubbed(&self, scrub: &dyn Fn(&str) -> String) -> ToolResult {
        ToolResult {
            tool: scrub(&self.tool),
            args: scrub_json(&self.args, scrub),
            ok: self.ok,
            indeterminate: self.indeterminate,
            content: scrub(&self.content),
        }
    }

    /// The call as a divergence shows it: `tool {canonical arguments}`.
    fn call(tool: &str, args: &serde_json::Value) -> String {
        format!(
            "{tool} {}",
            chassis_core::state::call_key("", args).trim_start()
        )
    }
}

/// Recorded exchanges and tool results, in the order they happened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cassette {
    /// The exchanges.
    pub exchanges: Vec<Exchange>,
    /// The results of the tool calls.
    pub tool_results: Vec<ToolResult>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CassetteFile {
    cassette: u32,
    exchanges: Vec<Exchange>,
    #[serde(default)]
    tool_results: Vec<ToolResult>,
}

impl Cassette {
    /// Reads a cassette file.
    pub fn load(path: &Path) -> Result<Cassette, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Cassette::from_json(&text).map_err(|message| Error::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses a cassette's JSON text.
    pub fn from_json(text: &str) -> Result<Cassette, String> {
        let file: CassetteFile =
            serde_json::from_str(text).map_err(|e| format!("not a cassette: {e}"))?;
        match file.cassette {
            FORMAT => Ok(Cassette {
                exchanges: file.exchanges,
                tool_results: file.tool_results,
            }),
            1 if file.tool_results.is_empty() => {
                let tool_results = results_in_requests(&file.exchanges);
                Ok(Cassette {
                    exchanges: file.exchanges,
                    tool_results,
                })
            }
            other => Err(format!(
                "format {other} is not supported (this chassis reads formats 1 and {FORMAT})"
            )),
        }
    }

    /// This cassette with `scrub` applied to every string of every exchange and tool result.
    pub fn scrubbed(&self, scrub: &dyn Fn(&str) -> String) -> Cassette {
        Cassette {
            exchanges: self.exchanges.iter().map(|e| e.scrubbed(scrub)).collect(),
            tool_results: self
                .tool_results
                .iter()
                .map(|r| r.scrubbed(scrub))
                .collect(),
        }
    }

    /// The cassette as pretty JSON, one field per line, so a changed exchange diffs well.
    pub fn to_json(&self) -> String {
        let file = CassetteFile {
            cassette: FORMAT,
            exchanges: self.exchanges.clone(),
            tool_results: self.tool_results.clone(),
        };
        let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes the cassette to `path` (whole, through a temporary file and a rename), creating
    /// the directory if needed.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let error = |source| Error::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        std::fs::write(&partial, self.to_json()).map_err(error)?;
        std::fs::rename(&partial, path).map_err(error)
    }

    /// The exchanges of a journaled run: for each answered step, the context the model saw
    /// (the fold just before its `model_responded`) and the answer it gave; and each tool
    /// call's result, as its `tool_finished` (or a person's settlement) journaled it.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Result<Cassette, Error> {
        let mut state = RunState::default();
        let mut exchanges = Vec::new();
        let mut tool_results = Vec::new();
        for event in events {
            let settled = match event {
                Event::ToolFinished {
                    call_id,
                    ok,
                    content,
                    ..
                } => Some((call_id, *ok, content)),
                Event::OutcomeResolved {
                    call_id,
                    resolution,
                    content: Some(content),
                    ..
                } if resolution != "retry" => Some((call_id, resolution == "succeeded", content)),
                _ => None,
            };
            if let Some((call_id, ok, content)) = settled
                && let Some(call) = state.call(call_id)
            {
                tool_results.push(ToolResult {
                    tool: call.call.name.clone(),
                    args: serde_json::from_str(&call.call.arguments)
                        .unwrap_or_else(|_| serde_json::Value::String(call.call.arguments.clone())),
                    ok,
                    indeterminate: false,
                    content: content.clone(),
                });
            }
            if let Event::ModelResponded {
                model,
                message,
                usage,
                finish_reason,
                ..
            } = event
                && state.seq() > 0
            {
                // The event names the link that served the step (`provider:model`); the
                // request that link sent carried only the model id.
                let model_id = model.split_once(':').map_or(model.as_str(), |(_, m)| m);
                exchanges.push(Exchange {
                    request: Request {
                        model: model_id.to_string(),
                        messages: state.messages().to_vec(),
                        tools: state.tools.iter().map(Tool::from).collect(),
                        max_tokens: Some(state.max_tokens),
                    },
                    response: Response {
                        message: message.clone(),
                        usage: *usage,
                        model: model_id.to_string(),
                        finish_reason: finish_reason.clone(),
                        served_by: model.clone(),
                    },
                });
            }
            state.apply(event)?;
        }
        Ok(Cassette {
            exchanges,
            tool_results,
        })
    }
}

/// The tool results a format 1 cassette holds only inside its requests: each tool message
/// after the assistant message whose call it answers, once however many later requests repeat
/// it.
fn results_in_requests(exchanges: &[Exchange]) -> Vec<ToolResult> {
    let mut results: Vec<ToolResult> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for exchange in exchanges {
        let mut calls = std::collections::HashMap::new();
        for message in &exchange.request.messages {
            match message {
                Message::Assistant(reply) => {
                    for call in &reply.tool_calls {
                        calls.insert(call.id.as_str(), call);
                    }
                }
                Message::Tool { call_id, content } => {
                    let Some(call) = calls.get(call_id.as_str()) else {
                        continue;
                    };
                    let Ok(args) = serde_json::from_str(&call.arguments) else {
                        continue;
                    };
                    if seen.insert((call_id.clone(), call.arguments.clone(), content.clone())) {
                        results.push(ToolResult {
                            tool: call.name.clone(),
                            args,
                            ok: true,
                            indeterminate: false,
                            content: content.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
    }
    results
}

/// Collects the exchanges of a recording and keeps its file current.
pub struct Recorder {
    path: PathBuf,
    cassette: Mutex<Cassette>,
    scrub: Option<Scrub>,
}

impl Recorder {
    /// Starts an empty cassette at `path`, writing it at once so an unwritable path fails
    /// before any model is called.
    pub fn create(path: &Path) -> Result<Recorder, Error> {
        let cassette = Cassette::default();
        cassette.save(path)?;
        Ok(Recorder {
            path: path.to_path_buf(),
            cassette: Mutex::new(cassette),
            scrub: None,
        })
    }

    /// This recorder, applying `scrub` to every exchange before it is written.
    pub fn scrubbing(mut self, scrub: Scrub) -> Recorder {
        self.scrub = Some(scrub);
        self
    }

    /// Adds one exchange (scrubbed) and rewrites the file.
    pub fn record(&self, request: &ChatRequest<'_>, response: &ChatResponse) -> Result<(), Error> {
        let mut exchange = Exchange {
            request: Request::of(request),
            response: Response::from(response),
        };
        if let Some(scrub) = &self.scrub {
            exchange = exchange.scrubbed(scrub.as_ref());
        }
        let mut cassette = self.cassette.lock().unwrap_or_else(|e| e.into_inner());
        cassette.exchanges.push(exchange);
        cassette.save(&self.path)
    }

    /// Adds one tool call's result (scrubbed) and rewrites the file.
    pub fn record_tool(&self, result: ToolResult) -> Result<(), Error> {
        let result = match &self.scrub {
            Some(scrub) => result.scrubbed(scrub.as_ref()),
            None => result,
        };
        let mut cassette = self.cassette.lock().unwrap_or_else(|e| e.into_inner());
        cassette.tool_results.push(result);
        cassette.save(&self.path)
    }

    /// How many exchanges were recorded.
    pub fn len(&self) -> usize {
        self.cassette
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .exchanges
            .len()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A client whose every answer is also recorded.
pub struct Recording {
    inner: Arc<dyn ModelClient>,
    recorder: Arc<Recorder>,
}

impl Recording {
    /// Records what `inner` answers into `recorder`.
    pub fn new(inner: Arc<dyn ModelClient>, recorder: Arc<Recorder>) -> Recording {
        Recording { inner, recorder }
    }
}

#[async_trait]
impl ModelClient for Recording {
    async fn complete(&self, request: &ChatRequest<'_>) -> Result<ChatResponse, crate::Error> {
        let response = self.inner.complete(request).await?;
        self.recorder
            .record(request, &response)
            .map_err(|e| crate::Error::Config {
                provider: "cassette".to_string(),
                message: e.to_string(),
            })?;
        Ok(response)
    }
}

/// A client that answers from a cassette and never touches the network.
pub struct Replay {
    name: String,
    keys: Vec<String>,
    exchanges: Vec<Exchange>,
    served: Mutex<Vec<u32>>,
    tool_keys: Vec<String>,
    tool_results: Vec<ToolResult>,
    tools_served: Mutex<Vec<u32>>,
    /// Tool calls the cassette had no result for, explained, in the order they came.
    tool_divergences: Mutex<Vec<String>>,
    scrub: Option<Scrub>,
}

impl Replay {
    /// Serves `cassette`; `name` (usually its path) is what errors call it.
    pub fn new(name: impl Into<String>, cassette: Cassette) -> Replay {
        let keys = cassette.exchanges.iter().map(|e| e.request.key()).collect();
        let served = Mutex::new(vec![0; cassette.exchanges.len()]);
        let tool_keys = cassette
            .tool_results
            .iter()
            .map(|r| ToolResult::call(&r.tool, &r.args))
            .collect();
        Replay {
            name: name.into(),
            keys,
            exchanges: cassette.exchanges,
            served,
            tool_keys,
            tools_served: Mutex::new(vec![0; cassette.tool_results.len()]),
            tool_results: cassette.tool_results,
            tool_divergences: Mutex::new(Vec::new()),
            scrub: None,
        }
    }

    /// This replay, applying `scrub` to every live request before it is matched (and to the
    /// recorded ones, which a scrubbing recorder has already scrubbed), so a request matches
    /// the recording of the same call although the recording lost its secrets.
    pub fn scrubbing(mut self, scrub: Scrub) -> Replay {
        self.keys = self
            .exchanges
            .iter()
            .map(|e| e.request.scrubbed(scrub.as_ref()).key())
            .collect();
        self.tool_keys = self
            .tool_results
            .iter()
            .map(|r| ToolResult::call(&r.tool, &scrub_json(&r.args, scrub.as_ref())))
            .collect();
        self.scrub = Some(scrub);
        self
    }

    /// The recorded result of calling `tool` with `args` (scrubbed first, like a request): the
    /// first unused recording of the same call, or, when each was used, the last of them
    /// again. A call nothing matches is refused with the closest recorded calls of the tool, and
    /// remembered ([`Replay::tool_divergence`]); nothing runs either way.
    pub fn tool_result(&self, tool: &str, args: &serde_json::Value) -> Result<ToolResult, String> {
        let args = match &self.scrub {
            Some(scrub) => scrub_json(args, scrub.as_ref()),
            None => args.clone(),
        };
        let key = ToolResult::call(tool, &args);
        let mut served = self.tools_served.lock().unwrap_or_else(|e| e.into_inner());
        let matching: Vec<usize> = (0..self.tool_keys.len())
            .filter(|&i| self.tool_keys[i] == key)
            .collect();
        if let Some(&i) = matching
            .iter()
            .find(|&&i| served[i] == 0)
            .or(matching.last())
        {
            served[i] += 1;
            return Ok(self.tool_results[i].clone());
        }
        drop(served);
        let explained = self.tool_divergence_of(tool, &args);
        self.tool_divergences
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(explained.clone());
        Err(explained)
    }

    /// The first tool call this replay had no result for, explained with a diff.
    pub fn tool_divergence(&self) -> Option<String> {
        self.tool_divergences
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .cloned()
    }

    fn tool_divergence_of(&self, tool: &str, args: &serde_json::Value) -> String {
        let render = |tool: &str, args: &serde_json::Value| -> Vec<String> {
            let pretty = serde_json::to_string_pretty(args).unwrap_or_default();
            std::iter::once(format!("tool: {tool}"))
                .chain(pretty.lines().map(str::to_string))
                .collect()
        };
        let actual = render(tool, args);
        let closest = self
            .tool_results
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let recorded = render(&r.tool, &r.args);
                let ops = diff(&recorded, &actual);
                let distance = ops.iter().filter(|op| !matches!(op, Op::Same(_))).count();
                (distance, i, render_diff(&ops))
            })
            .min_by_key(|(distance, i, _)| (*distance, *i));
        match closest {
            None => format!(
                "{TOOL_DIVERGED}: cassette {} holds no tool results, so `{tool}` cannot be \
                 answered offline; it was not run (record the case again with --record)",
                self.name
            ),
            Some((_, i, diff)) => format!(
                "{TOOL_DIVERGED}: cassette {} has no result for this call of `{tool}`, which was \
                 not run; none of its {} recorded call(s) matches; closest is call {} \
                 (- recorded, + actual):\n{diff}",
                self.name,
                self.tool_results.len(),
                i + 1
            ),
        }
    }

    /// Reads the cassette at `path` and serves it.
    pub fn load(path: &Path) -> Result<Replay, Error> {
        Ok(Replay::new(
            path.display().to_string(),
            Cassette::load(path)?,
        ))
    }

    /// Recorded exchanges that were never asked for.
    pub fn unused(&self) -> usize {
        self.served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|&&n| n == 0)
            .count()
    }

    /// The recorded answer to `request`: the first unused exchange with the same request, or,
    /// when every such exchange was used, the last of them again (a request repeated after a
    /// crash gets the same answer). A request nothing matches is a [`Divergence`].
    pub fn answer(&self, request: &Request) -> Result<Response, Divergence> {
        let key = request.key();
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        let matching: Vec<usize> = (0..self.keys.len())
            .filter(|&i| self.keys[i] == key)
            .collect();
        if let Some(&i) = matching
            .iter()
            .find(|&&i| served[i] == 0)
            .or(matching.last())
        {
            served[i] += 1;
            return Ok(self.exchanges[i].response.clone());
        }
        let unused: Vec<usize> = (0..served.len()).filter(|&i| served[i] == 0).collect();
        drop(served);
        Err(self.divergence(request, &unused))
    }

    fn divergence(&self, request: &Request, unused: &[usize]) -> Divergence {
        let actual = request.render();
        // The closest recording is looked for among the unused ones first: the request that
        // should have matched is one not yet served.
        let candidates: Vec<usize> = if unused.is_empty() {
            (0..self.exchanges.len()).collect()
        } else {
            unused.to_vec()
        };
        let closest = candidates
            .into_iter()
            .map(|i| {
                let recorded = self.exchanges[i].request.render();
                let ops = diff(&recorded, &actual);
                let distance = ops.iter().filter(|op| !matches!(op, Op::Same(_))).count();
                (distance, i, render_diff(&ops))
            })
            .min_by_key(|(distance, i, _)| (*distance, *i));
        Divergence {
            cassette: self.name.clone(),
            recorded: self.exchanges.len(),
            unused: unused.len(),
            closest: closest.map(|(_, i, diff)| (i + 1, diff)),
        }
    }
}

#[async_trait]
impl ModelClient for Replay {
    async fn complete(&self, request: &ChatRequest<'_>) -> Result<ChatResponse, crate::Error> {
        let mut recorded = Request::of(request);
        if let Some(scrub) = &self.scrub {
            recorded = recorded.scrubbed(scrub.as_ref());
        }
        let response = self
            .answer(&recorded)
            .map(ChatResponse::from)
            .map_err(|divergence| crate::Error::Config {
                provider: format!("cassette {}", divergence.cassette),
                message: divergence.explain(),
            })?;
        // A replay has no stream to show: the recorded reply goes to observers in one piece.
        request.deltas.whole(&response.message);
        Ok(response)
    }
}

/// A request a replay has no recording for.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    /// The cassette's name (its path).
    pub cassette: String,
    /// Exchanges it holds.
    pub recorded: usize,
    /// Of those, not yet served.
    pub unused: usize,
    /// The closest recorded exchange (numbered from 1) and the diff from it to the request.
    pub closest: Option<(usize, String)>,
}

impl Divergence {
    /// What happened, then the diff (`-` recorded, `+` actual).
    pub fn explain(&self) -> String {
        match &self.closest {
            None => {
                format!("{DIVERGED}: the cassette holds no exchanges (record one with --record)")
            }
            Some((n, diff)) => format!(
                "{DIVERGED}: none of its {} exchange(s) ({} unused) matches; \
                 closest is exchange {n} (- recorded, + actual):\n{diff}",
                self.recorded, self.unused
            ),
        }
    }
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cassette {}: {}", self.cassette, self.explain())
    }
}

impl std::error::Error for Divergence {}

/// Records every answer of `chain`'s models into `recorder`.
pub fn record(chain: &mut Fallback, recorder: &Arc<Recorder>) {
    chain.wrap_clients(|link| {
        Arc::new(Recording::new(link.client.clone(), recorder.clone())) as Arc<dyn ModelClient>
    });
}

/// Makes every model of `chain` answer from `replay` instead of its provider.
pub fn replay(chain: &mut Fallback, replay: &Arc<Replay>) {
    chain.wrap_clients(|_| replay.clone() as Arc<dyn ModelClient>);
}

/// One line of a line diff.
#[derive(Clone, Debug, PartialEq)]
enum Op<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// A line diff of `old` to `new`: common prefix and suffix, and a longest common subsequence
/// of what is left between them (bounded, so a huge request cannot make it quadratic).
fn diff<'a>(old: &'a [String], new: &'a [String]) -> Vec<Op<'a>> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (a, b) = (
        &old[prefix..old.len() - suffix],
        &new[prefix..new.len() - suffix],
    );
    let mut ops: Vec<Op<'a>> = old[..prefix].iter().map(|l| Op::Same(l)).collect();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        ops.extend(a.iter().map(|l| Op::Removed(l)));
        ops.extend(b.iter().map(|l| Op::Added(l)));
    } else {
        // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
        let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                lcs[i][j] = if a[i] == b[j] {
                    lcs[i + 1][j + 1] + 1
                } else {
                    lcs[i + 1][j].max(lcs[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                ops.push(Op::Same(&a[i]));
                i += 1;
                j += 1;
            } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
                ops.push(Op::Removed(&a[i]));
                i += 1;
            } else {
                ops.push(Op::Added(&b[j]));
                j += 1;
            }
        }
    }
    ops.extend(old[old.len() - suffix..].iter().map(|l| Op::Same(l)));
    ops
}

/// The changed lines of a diff with two lines of context around each change.
fn render_diff(ops: &[Op<'_>]) -> String {
    const CONTEXT: usize = 2;
    let changed: Vec<usize> = (0..ops.len())
        .filter(|&i| !matches!(ops[i], Op::Same(_)))
        .collect();
    let near = |i: usize| changed.iter().any(|&c| c.abs_diff(i) <= CONTEXT);
    let mut out: Vec<String> = Vec::new();
    let mut skipped = false;
    for (i, op) in ops.iter().enumerate() {
        if !near(i) {
            skipped = true;
            continue;
        }
        if skipped && !out.is_empty() {
            out.push("  …".to_string());
        }
        skipped = false;
        out.push(match op {
            Op::Same(line) => format!("  {line}"),
            Op::Removed(line) => format!("- {line}"),
            Op::Added(line) => format!("+ {line}"),
        });
    }
    if out.len() > MAX_DIFF_LINES {
        let rest = out.len() - MAX_DIFF_LINES;
        out.truncate(MAX_DIFF_LINES);
        out.push(format!("  … {rest} more line(s)"));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chassis_core::ToolCall;

    fn request(input: &str) -> ChatRequest<'static> {
        ChatRequest {
            model: "m".into(),
            messages: vec![
                Message::System {
                    content: "You answer.\nBe brief.".into(),
                },
                Message::User {
                    content: input.into(),
                },
            ]
            .into(),
            tools: Vec::new().into(),
            max_tokens: Some(64),
            temperature: None,
            report: crate::Reporter::default(),
            deltas: crate::Deltas::default(),
        }
    }

    fn response(text: &str) -> ChatResponse {
        ChatResponse {
            message: AssistantMessage {
                content: Some(text.into()),
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    name: "t".into(),
                    arguments: "{}".into(),
                }],
            },
            usage: Usage {
                input_tokens: 3,
                output_tokens: 2,
                cached_input_tokens: 0,
            },
            model: "m".into(),
            finish_reason: Some("stop".into()),
            served_by: "p:m".into(),
        }
    }

    fn cassette(pairs: &[(&str, &str)]) -> Cassette {
        Cassette {
            exchanges: pairs
                .iter()
                .map(|(input, text)| Exchange {
                    request: Request::of(&request(input)),
                    response: Response::from(&response(text)),
                })
                .collect(),
            tool_results: Vec::new(),
        }
    }

    #[test]
    fn the_file_round_trips() {
        let cassette = cassette(&[("a", "A"), ("b", "B")]);
        let text = cassette.to_json();
        assert!(text.starts_with("{\n  \"cassette\": 2,"), "{text}");
        assert_eq!(Cassette::from_json(&text), Ok(cassette));
        let err = Cassette::from_json("{\"cassette\": 9, \"exchanges\": []}").unwrap_err();
        assert!(err.contains("format 9 is not supported"), "{err}");
    }

    #[test]
    fn a_scrubbing_recorder_writes_no_secret_and_its_replay_still_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let scrub: Scrub = Arc::new(|text: &str| text.replace("sk-secret", "[REDACTED]"));
        let recorder = Recorder::create(&path).unwrap().scrubbing(scrub.clone());
        recorder
            .record(
                &request("my key is sk-secret"),
                &response("sk-secret, noted"),
            )
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("sk-secret"), "{text}");
        assert!(text.contains("my key is [REDACTED]"), "{text}");
        let replay = Replay::load(&path).unwrap().scrubbing(scrub);
        let answer = replay
            .answer(
                &Request::of(&request("my key is sk-secret"))
                    .scrubbed(&|t| t.replace("sk-secret", "[REDACTED]")),
            )
            .unwrap();
        assert_eq!(answer.message.content.as_deref(), Some("[REDACTED], noted"));
    }

    #[test]
    fn replay_matches_by_content_in_any_order() {
        let replay = Replay::new("c.json", cassette(&[("a", "A"), ("b", "B")]));
        let b = replay.answer(&Request::of(&request("b"))).unwrap();
        assert_eq!(b.message.content.as_deref(), Some("B"));
        assert_eq!(replay.unused(), 1);
        let a = replay.answer(&Request::of(&request("a"))).unwrap();
        assert_eq!(a.message.content.as_deref(), Some("A"));
        // A repeated request gets the same answer again.
        let again = replay.answer(&Request::of(&request("a"))).unwrap();
        assert_eq!(again.message.content.as_deref(), Some("A"));
        assert_eq!(replay.unused(), 0);
    }

    #[test]
    fn identical_requests_are_served_in_recorded_order() {
        let replay = Replay::new("c.json", cassette(&[("a", "first"), ("a", "second")]));
        let answer = |replay: &Replay| {
            replay
                .answer(&Request::of(&request("a")))
                .unwrap()
                .message
                .content
        };
        assert_eq!(answer(&replay).as_deref(), Some("first"));
        assert_eq!(answer(&replay).as_deref(), Some("second"));
        assert_eq!(answer(&replay).as_deref(), Some("second"));
    }

    #[test]
    fn a_diverging_request_is_refused_with_a_diff_of_the_closest() {
        let replay = Replay::new(
            "c.json",
            cassette(&[("summarize incident 2041", "A"), ("something else", "B")]),
        );
        let divergence = replay
            .answer(&Request::of(&request("summarize incident 2042")))
            .unwrap_err();
        assert_eq!(divergence.closest.as_ref().map(|c| c.0), Some(1));
        let text = divergence.to_string();
        assert!(
            text.starts_with("cassette c.json: the request diverges"),
            "{text}"
        );
        assert!(text.contains("-     summarize incident 2041"), "{text}");
        assert!(text.contains("+     summarize incident 2042"), "{text}");
        assert!(text.contains("  [1] user:"), "{text}");
        assert!(
            !text.contains("model: m"),
            "only context near changes: {text}"
        );
    }

    #[test]
    fn an_empty_cassette_says_so() {
        let replay = Replay::new("c.json", Cassette::default());
        let text = replay
            .answer(&Request::of(&request("a")))
            .unwrap_err()
            .to_string();
        assert!(text.contains("holds no exchanges"), "{text}");
    }

    #[test]
    fn diff_keeps_order_and_marks_changes() {
        let old: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let new: Vec<String> = ["a", "x", "c", "d", "e"].map(String::from).to_vec();
        let ops = diff(&old, &new);
        assert_eq!(
            ops,
            vec![
                Op::Same("a"),
                Op::Removed("b"),
                Op::Added("x"),
                Op::Same("c"),
                Op::Same("d"),
                Op::Added("e"),
            ]
        );
    }

    #[test]
    fn a_journal_becomes_the_exchanges_the_engine_made() {
        // Built from JSON so fields added to the events later take their defaults.
        let events: Vec<Event> = serde_json::from_value(serde_json::json!([
            {
                "kind": "run_started", "agent": "a", "spec_path": "/a.toml", "input": "hi",
                "system": "sys", "model": "p:m", "fallbacks": ["q:n"], "tools": [],
                "limits": serde_json::to_value(chassis_core::Limits::default()).unwrap(),
                "max_tokens": 64, "at_ms": 0, "version": "v"
            },
            { "kind": "model_requested", "step": 1, "model": "p:m", "messages": 2 },
            {
                "kind": "model_responded", "step": 1, "model": "q:n",
                "message": { "content": "hello" },
                "usage": { "input_tokens": 1, "output_tokens": 1 }, "latency_ms": 5
            },
            { "kind": "run_completed", "output": "hello" }
        ]))
        .unwrap();
        let cassette = Cassette::from_events(&events).unwrap();
        assert_eq!(cassette.exchanges.len(), 1);
        let exchange = &cassette.exchanges[0];
        assert_eq!(exchange.request.model, "n");
        assert_eq!(exchange.request.max_tokens, Some(64));
        assert_eq!(
            exchange.request.messages,
            vec![
                Message::System {
                    content: "sys".into()
                },
                Message::User {
                    content: "hi".into()
                },
            ]
        );
        assert_eq!(exchange.response.served_by, "q:n");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// A cassette file is text someone committed: a cassette or an error, never a panic.
            #[test]
            fn any_text_is_a_cassette_or_an_error(text in any::<String>(), format in 0u32..4) {
                let _ = Cassette::from_json(&text);
                let _ = Cassette::from_json(&format!(
                    r#"{{"cassette": {format}, "exchanges": [], "tool_results": [{{"tool": {text:?}, "args": null, "ok": true, "content": ""}}]}}"#
                ));
            }
        }
    }
}
