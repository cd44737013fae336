//! The yardstick: the smallest durable agent loop one could write by hand.
//!
//! One run at a time, each step posts the conversation so far to the mock model over one
//! HTTP/1.1 keep-alive connection (a blocking socket, no client library), reads the note the
//! model asked for straight from the file, and commits one row per step to SQLite in WAL mode
//! with `synchronous = FULL` (one fsync per step) before the next step. Nothing else: no
//! policy, no limits, no validation, no leases, no redaction, no retries. What chassis costs
//! per step beyond this loop is the price of everything it adds; the `steps` group prints the
//! two side by side.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;

use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::Error;
use crate::fixture::Fixture;

/// The loop: one SQLite connection and one HTTP connection, kept for all its runs, as a
/// process driving runs one after another would keep them. (Opening the file per run would
/// close its last connection after each run, and SQLite then checkpoints the WAL into the
/// database file and removes it: a whole checkpoint and four more fsyncs per run.)
pub(crate) struct Loop {
    conn: Connection,
    http: Http,
    db: std::path::PathBuf,
    notes: std::path::PathBuf,
    tools: Value,
}

impl Loop {
    /// Opens (creating) the SQLite file at `db` and connects to the mock at `base_url`; the
    /// notes are read from `notes`.
    pub(crate) fn open(base_url: &str, db: &Path, notes: &Path) -> Result<Loop, Error> {
        let sql = |source| Error::Sqlite {
            path: db.display().to_string(),
            source,
        };
        let conn = Connection::open(db).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS steps (
                 run  INTEGER NOT NULL,
                 step INTEGER NOT NULL,
                 data TEXT NOT NULL,
                 PRIMARY KEY (run, step)
             )",
        )
        .map_err(sql)?;
        let tools = json!([{
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Reads one of the notes.",
                "parameters": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}},
                    "required": ["path"],
                },
            },
        }]);
        Ok(Loop {
            conn,
            http: Http::connect(base_url)?,
            db: db.to_path_buf(),
            notes: notes.to_path_buf(),
            tools,
        })
    }

    /// Drives `runs` runs of `steps` steps back to back; returns the steps done.
    pub(crate) fn drive(&mut self, runs: usize, steps: u32) -> Result<u64, Error> {
        let db = &self.db;
        let sql = |source| Error::Sqlite {
            path: db.display().to_string(),
            source,
        };
        let mut insert = self
            .conn
            .prepare_cached("INSERT INTO steps (run, step, data) VALUES (?1, ?2, ?3)")
            .map_err(sql)?;
        // Runs go on from the last one in the file: the warm-up and the measured runs share it.
        let first: i64 = self
            .conn
            .query_row("SELECT COALESCE(MAX(run) + 1, 0) FROM steps", [], |row| {
                row.get(0)
            })
            .map_err(sql)?;
        let mut done = 0;
        for run in (0..runs).map(|n| first + n as i64) {
            let input = Fixture::input(steps);
            let mut messages = vec![
                json!({"role": "system", "content": crate::fixture::PROMPT}),
                json!({"role": "user", "content": input}),
            ];
            insert.execute(params![run, 0, input]).map_err(sql)?;
            for step in 1.. {
                let body = json!({
                    "model": "bench-model",
                    "messages": messages,
                    "tools": self.tools,
                    "max_tokens": 256,
                });
                let reply = self.http.post("/chat/completions", &body)?;
                let message = reply["choices"][0]["message"].clone();
                let calls = message["tool_calls"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                messages.push(message.clone());
                let mut results = Vec::with_capacity(calls.len());
                for call in &calls {
                    let args: Value = call["function"]["arguments"]
                        .as_str()
                        .and_then(|a| serde_json::from_str(a).ok())
                        .unwrap_or(Value::Null);
                    let name = args["path"].as_str().unwrap_or("");
                    let content = std::fs::read_to_string(self.notes.join(name))
                        .unwrap_or_else(|e| format!("cannot read {name}: {e}"));
                    messages.push(json!({
                        "role": "tool",
                        "tool_call_id": call["id"],
                        "content": content,
                    }));
                    results.push(content);
                }
                let row = json!({"reply": message, "results": results}).to_string();
                insert.execute(params![run, step, row]).map_err(sql)?;
                done += 1;
                if calls.is_empty() {
                    break;
                }
                if step > steps {
                    return Err(Error::Failed {
                        bench: "minimal loop",
                        message: format!("the mock went past {steps} steps"),
                    });
                }
            }
        }
        Ok(done)
    }
}

/// One HTTP/1.1 connection, kept alive between requests.
struct Http {
    host: String,
    /// The base URL's path, e.g. `/v1`.
    prefix: String,
    reader: BufReader<TcpStream>,
}

impl Http {
    fn connect(base_url: &str) -> Result<Http, Error> {
        let failed = |message: String| Error::Failed {
            bench: "minimal loop",
            message,
        };
        let rest = base_url
            .strip_prefix("http://")
            .ok_or_else(|| failed(format!("base URL {base_url} is not http://")))?;
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let stream =
            TcpStream::connect(host).map_err(Error::io(format!("connecting to {host}")))?;
        stream
            .set_nodelay(true)
            .map_err(Error::io("setting TCP_NODELAY"))?;
        Ok(Http {
            host: host.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("/{prefix}")
            },
            reader: BufReader::new(stream),
        })
    }

    /// Posts `body` as JSON to `path` and parses the JSON answer.
    fn post(&mut self, path: &str, body: &Value) -> Result<Value, Error> {
        let io = |what: &str| Error::io(format!("minimal loop: {what}"));
        let body = body.to_string();
        let head = format!(
            "POST {}{path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            self.prefix,
            self.host,
            body.len()
        );
        let stream = self.reader.get_mut();
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()))
            .map_err(io("sending a request"))?;
        let mut status = String::new();
        self.reader
            .read_line(&mut status)
            .map_err(io("reading a status line"))?;
        let mut length = None;
        loop {
            let mut line = String::new();
            self.reader
                .read_line(&mut line)
                .map_err(io("reading a header"))?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let length = length.ok_or_else(|| Error::Failed {
            bench: "minimal loop",
            message: format!(
                "the mock answered without a content-length ({})",
                status.trim()
            ),
        })?;
        let mut bytes = vec![0; length];
        self.reader
            .read_exact(&mut bytes)
            .map_err(io("reading a body"))?;
        if !status.contains(" 200 ") {
            return Err(Error::Failed {
                bench: "minimal loop",
                message: format!(
                    "the mock answered {}: {}",
                    status.trim(),
                    String::from_utf8_lossy(&bytes)
                ),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Failed {
            bench: "minimal loop",
            message: format!("the mock's answer is not JSON: {e}"),
        })
    }
}
