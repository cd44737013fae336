//! kill -9 around compaction: runs that summarize their context are killed at random points
//! (during summarization calls, model calls, tools and appends), then resumed (some resumes
//! killed again) until they complete. After each: no journaled event was lost (every earlier
//! snapshot is a prefix of the final journal), no range was summarized twice in the journal,
//! and the mock was asked for a summary no more often than the journal holds summaries plus
//! the kills that could have cut one short.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::util::{Mock, Spawned, chassis, events, runs_json, show_json, toml_str, write};

/// Runs killed, each with its own input.
const ITERATIONS: u64 = 8;

/// Steps of each run: each reads a file too large for the window to hold many of.
const STEPS: usize = 12;

/// How the summarization request begins (chassis's own prompt; `engine/src/compact.rs`).
const ASK: &str = "Summarize the agent's work below";

/// A deterministic pseudo-random schedule (xorshift64).
struct Schedule(u64);

impl Schedule {
    fn next(&mut self, below: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % below
    }
}

struct Reader {
    _dir: TempDir,
    db: PathBuf,
    spec: PathBuf,
    mock: Mock,
}

impl Reader {
    fn new() -> Reader {
        let mut script = format!(
            "[[scenario]]\nwhen_input_contains = \"{ASK}\"\n[[scenario.turn]]\n\
             text = \"The agent read the earlier files.\"\n[[scenario]]\n"
        );
        for i in 0..STEPS {
            script.push_str(&format!(
                "[[scenario.turn]]\ntool_calls = [{{ name = \"read_file\", arguments = {{ path = \"f{i}.txt\" }} }}]\n"
            ));
        }
        script.push_str("[[scenario.turn]]\ntext = \"done\"\n");
        let mock = Mock::start(&script, Duration::from_millis(25));
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = dir.path();
        std::fs::create_dir(root.join("data")).expect("data directory");
        for i in 0..STEPS {
            write(
                &root.join("data"),
                &format!("f{i}.txt"),
                &format!("file {i}: {}\n", "lorem ipsum ".repeat(120)),
            );
        }
        write(root, "prompt.j2", "Read every file.");
        let spec = write(
            root,
            "agent.toml",
            &format!(
                r#"[agent]
name = "reader"
prompt = "prompt.j2"

[model]
primary = "mock:reader-model"
max_tokens = 100
context_window = 4096

[providers.mock]
kind = "openai"
base_url = {base_url}

[[tools]]
use = "builtin:fs"
root = "data"
only = ["read_file"]

[limits]
max_steps = 40
max_model_calls = 60

[context]
strategy = "summarize"
keep_last_turns = 2
"#,
                base_url = toml_str(&mock.base_url()),
            ),
        );
        Reader {
            db: root.join("j.db"),
            _dir: dir,
            spec,
            mock,
        }
    }

    fn journal(&self, run_id: &str) -> (String, Vec<Value>) {
        let show = show_json(&self.db, run_id);
        let status = show["status"].as_str().unwrap_or_default().to_string();
        (status, events(&show).to_vec())
    }

    /// Summarization requests the mock got for the run on `input`.
    fn summary_requests(&self, input: &str) -> u64 {
        let task = format!("Task: {input}\n");
        self.mock
            .stats()
            .by_conversation
            .iter()
            .filter(|(first, _)| first.starts_with(ASK) && first.contains(&task))
            .flat_map(|(_, turns)| turns.values())
            .sum()
    }
}

#[test]
fn killed_runs_lose_no_event_and_never_summarize_a_range_twice() {
    let reader = Reader::new();
    let mut schedule = Schedule(0x2545_F491_4F6C_DD1D);
    let mut all_kills = 0;
    for iteration in 0..ITERATIONS {
        let input = format!("k{iteration}");
        let mut kills = 0;
        let mut run = Spawned::start(chassis(&reader.db).args([
            "run",
            reader.spec.to_str().expect("UTF-8 path"),
            "--input",
            &input,
            "--json",
            "-q",
        ]));
        std::thread::sleep(Duration::from_millis(100 + schedule.next(900)));
        let mut finished = run.exited();
        if !finished {
            run.crash(None);
            kills += 1;
        } else {
            run.finish();
        }
        // A kill before the run existed leaves nothing to resume: start it again.
        let newest = runs_json(&reader.db, &["--limit", "1"]);
        let run_id = newest
            .first()
            .and_then(|r| r["run_id"].as_str())
            .map(str::to_string)
            .filter(|id| events(&show_json(&reader.db, id))[0]["input"] == input.as_str());
        let run_id = match run_id {
            Some(id) => id,
            None => {
                let out = crate::util::run(chassis(&reader.db).args([
                    "run",
                    reader.spec.to_str().expect("UTF-8 path"),
                    "--input",
                    &input,
                    "--json",
                    "-q",
                ]));
                finished = true;
                out.json()["run_id"].as_str().expect("run id").to_string()
            }
        };
        let mut snapshots = Vec::new();
        for attempt in 0.. {
            let (status, journal) = reader.journal(&run_id);
            if status == "completed" {
                break;
            }
            assert!(attempt < 30, "{run_id} never completed: {status}");
            snapshots.push(journal);
            let mut resume =
                Spawned::start(chassis(&reader.db).args(["resume", &run_id, "--json", "-q"]));
            if !finished && schedule.next(2) == 0 {
                std::thread::sleep(Duration::from_millis(50 + schedule.next(500)));
                if resume.exited() {
                    resume.finish();
                } else {
                    resume.crash(None);
                    kills += 1;
                }
            } else {
                resume.finish();
            }
        }

        let (_, journal) = reader.journal(&run_id);
        assert_eq!(
            journal.last().map(|e| e["kind"].clone()),
            Some(Value::from("run_completed")),
            "{run_id}"
        );
        assert_eq!(journal.last().unwrap()["output"], "done", "{run_id}");
        // No event lost: what any crash left is where the final journal starts.
        for snapshot in &snapshots {
            assert_eq!(
                &journal[..snapshot.len()],
                snapshot.as_slice(),
                "{run_id}: a journaled event was lost or changed"
            );
        }
        // No range summarized twice, each summary standing for more than the last.
        let ranges: Vec<(u64, u64)> = journal
            .iter()
            .filter(|e| e["kind"] == "context_compacted")
            .map(|e| {
                (
                    e["from_seq"].as_u64().expect("from_seq"),
                    e["to_seq"].as_u64().expect("to_seq"),
                )
            })
            .collect();
        assert!(!ranges.is_empty(), "{run_id} never summarized");
        let distinct: BTreeSet<_> = ranges.iter().collect();
        assert_eq!(distinct.len(), ranges.len(), "{run_id}: {ranges:?}");
        assert!(ranges.windows(2).all(|w| w[0].1 < w[1].1), "{ranges:?}");
        // A summary is asked for again only when a kill cut its first request short.
        let asked = reader.summary_requests(&input);
        assert!(
            asked >= ranges.len() as u64 && asked <= ranges.len() as u64 + kills,
            "{run_id}: {asked} summarization requests for {} summaries and {kills} kills",
            ranges.len()
        );
        all_kills += kills;
    }
    assert!(all_kills >= ITERATIONS / 2, "only {all_kills} kills landed");
}
