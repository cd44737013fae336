//! `chassis init` writes a project that `check` passes, that runs against `chassis mock-model`
//! as its README says, and whose suite passes; `check` fails as `run` does; completions parse.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::util::{CHASSIS, chassis_in, run, runs_json, write};

/// `chassis mock-model` as a process of its own, killed when dropped.
struct MockModel {
    child: Child,
    base_url: String,
}

impl MockModel {
    /// Serves `script` on a free port; the first line it prints is its base URL.
    fn start(script: &Path) -> MockModel {
        MockModel::start_with(script, &[])
    }

    /// Like [`MockModel::start`], with more arguments.
    fn start_with(script: &Path, args: &[&str]) -> MockModel {
        let mut child = Command::new(CHASSIS)
            .args(["mock-model", "--port", "0", "--script"])
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chassis mock-model");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the mock's base URL");
        let base_url = line.trim().to_string();
        assert!(base_url.starts_with("http://127.0.0.1:"), "{base_url:?}");
        MockModel { child, base_url }
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `chassis` in `dir` against the model at `base_url`, as the generated README says.
fn against(dir: &Path, base_url: &str) -> Command {
    let mut command = chassis_in(dir);
    command.env("OPENAI_BASE_URL", base_url);
    command
}

const PROJECT_FILES: [&str; 6] = [
    "agent.toml",
    "prompt.md.j2",
    "tools/word_count.py",
    "suite.toml",
    "mock-script.toml",
    "README.md",
];

#[test]
fn init_then_check_then_run_then_eval_against_the_mock() {
    let root = tempfile::tempdir().expect("temporary directory");
    let out = run(chassis_in(root.path()).args(["init", "word-desk"]));
    out.expect_code(0);
    let project = root.path().join("word-desk");
    for file in PROJECT_FILES {
        assert!(project.join(file).is_file(), "{file} written: {out:#?}");
        assert!(out.stdout.contains(file), "{file} listed: {out:#?}");
    }
    assert!(project.join(".chassis").is_dir(), "the project's journal");
    let spec = std::fs::read_to_string(project.join("agent.toml")).expect("read the spec");
    assert!(spec.contains("name = \"word-desk\""), "{spec}");
    assert!(
        spec.contains("OPENAI_BASE_URL=http://127.0.0.1:8089/v1 chassis run agent.toml"),
        "the spec says how to run against the mock: {spec}"
    );
    let readme = std::fs::read_to_string(project.join("README.md")).expect("read the README");
    assert!(
        readme.contains("chassis mock-model --script mock-script.toml --port 8089")
            && readme.contains("export OPENAI_BASE_URL=http://127.0.0.1:8089/v1"),
        "the README says how to run against the mock: {readme}"
    );

    let mock = MockModel::start(&project.join("mock-script.toml"));
    let out = run(against(&project, &mock.base_url).args(["check", "agent.toml"]));
    out.expect_code(0);
    assert!(out.stdout.contains("agent    word-desk\n"), "{out:#?}");
    let version = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("version  "))
        .expect("a version line");
    assert!(
        version.len() == 12 && version.chars().all(|c| c.is_ascii_hexdigit()),
        "{version}"
    );
    assert!(out.stdout.contains("tools    word_count"), "{out:#?}");
    assert!(
        !project.join(".chassis/chassis.db").exists(),
        "check journals nothing"
    );

    let out = run(against(&project, &mock.base_url).args([
        "run",
        "agent.toml",
        "--input",
        "Count the words in: the quick brown fox",
    ]));
    out.expect_code(0);
    assert!(out.stdout.contains("\"words\": 8"), "{out:#?}");
    let runs = runs_json(&project.join(".chassis/chassis.db"), &[]);
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0]["version"], version,
        "check printed the version the run recorded"
    );

    let out = run(against(&project, &mock.base_url).args(["eval", "suite.toml"]));
    out.expect_code(0);
    assert!(out.stdout.contains("2/2 passed"), "{out:#?}");
}

/// The same project against a server with llama-cpp-python's rules: without tool_choice the
/// model would answer in text and never count, streamed with tools it sends nothing, and
/// `content: null` would fail the second step.
#[test]
fn the_project_runs_against_a_llama_cpp_like_server() {
    let root = tempfile::tempdir().expect("temporary directory");
    run(chassis_in(root.path()).args(["init", "word-desk"])).expect_code(0);
    let project = root.path().join("word-desk");
    let mock = MockModel::start_with(&project.join("mock-script.toml"), &["--llama-cpp"]);
    let out = run(against(&project, &mock.base_url).args([
        "run",
        "agent.toml",
        "--input",
        "Count the words in: the quick brown fox",
    ]));
    out.expect_code(0);
    assert!(out.stdout.contains("\"words\": 8"), "{out:#?}");
    let url = mock.base_url.replace("/v1", "/_mock/stats");
    let stats: serde_json::Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async { chassis_http::client()?.get(url).send().await?.json().await })
        .expect("the mock's stats");
    let agent = format!("chassis/{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(stats["by_user_agent"][&agent], stats["requests"], "{stats}");
    // The first call's stream comes empty (llama-cpp-python cannot stream an automatic tool
    // choice); its retry and the calls after it go unstreamed.
    assert_eq!(stats["requests"], 3, "{stats}");
}

#[test]
fn init_overwrites_nothing_and_names_what_is_in_the_way() {
    let root = tempfile::tempdir().expect("temporary directory");
    write(root.path(), "suite.toml", "# mine\n");
    write(root.path(), "README.md", "# mine\n");
    let out = run(chassis_in(root.path()).arg("init"));
    out.expect_code(2);
    assert!(
        out.stderr.contains("suite.toml") && out.stderr.contains("README.md"),
        "{out:#?}"
    );
    assert!(!out.stderr.contains("agent.toml"), "{out:#?}");
    assert!(!root.path().join("agent.toml").exists(), "nothing written");
    assert_eq!(
        std::fs::read_to_string(root.path().join("suite.toml")).expect("read"),
        "# mine\n"
    );
}

/// A spec, its prompt and the directory they are in.
fn agent(spec: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    write(dir.path(), "prompt.md.j2", "Request: {{ input }}\n");
    write(dir.path(), "agent.toml", spec);
    dir
}

const MINIMAL: &str = "[agent]\nname = \"checked\"\nprompt = \"prompt.md.j2\"\n\n[model]\nprimary = \"mock:m\"\n\n[providers.mock]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n";

#[test]
fn check_fails_exactly_as_run_does() {
    let cases = [
        format!("{MINIMAL}[limits]\nmax_bananas = 3\n"),
        MINIMAL.replace("prompt.md.j2", "missing.j2"),
        format!(
            "{MINIMAL}[[tools]]\nname = \"t\"\ncommand = [\"./no-such-program\"]\nrisk = \"read_only\"\n"
        ),
        MINIMAL.replace("mock:m", "openai:gpt-4o-mini"),
    ];
    for spec in &cases {
        let dir = agent(spec);
        let checked = run(chassis_in(dir.path()).args(["check", "agent.toml"]));
        checked.expect_code(2);
        let ran = run(chassis_in(dir.path()).args(["run", "agent.toml", "--input", "hi"]));
        ran.expect_code(2);
        assert_eq!(checked.stderr, ran.stderr, "{spec}");
        assert!(checked.stderr.contains("agent.toml"), "{checked:#?}");
        assert_eq!(checked.stdout, "");
    }
}

#[test]
fn check_starts_mcp_servers_only_when_asked() {
    // The program exists, the server script does not: only starting it can tell.
    let spec = format!(
        "{MINIMAL}[mcp.notes]\ncommand = [\"{}\", \"no-such-server.py\"]\n\n[[tools]]\nuse = \"mcp:notes\"\n",
        CHASSIS
    );
    let dir = agent(&spec);
    let out = run(chassis_in(dir.path()).args(["check", "agent.toml"]));
    out.expect_code(0);
    assert!(
        out.stdout
            .contains("version  unknown until MCP servers are started"),
        "{out:#?}"
    );
    assert!(out.stderr.contains("--connect"), "{out:#?}");
    let out = run(chassis_in(dir.path()).args(["check", "agent.toml", "--connect"]));
    out.expect_code(2);
    assert!(out.stderr.contains("mcp.notes"), "{out:#?}");

    // A program that does not exist is found out without starting anything.
    let dir = agent(&spec.replace(CHASSIS, "./no-such-program"));
    let out = run(chassis_in(dir.path()).args(["check", "agent.toml"]));
    out.expect_code(2);
    assert!(
        out.stderr.contains("mcp.notes.command") && out.stderr.contains("no-such-program"),
        "{out:#?}"
    );
}

#[test]
fn completion_scripts_parse_and_name_the_commands() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for shell in ["bash", "zsh", "fish"] {
        let out = run(chassis_in(dir.path()).args(["completions", shell]));
        out.expect_code(0);
        for command in ["init", "check", "show", "resume", "mock-model"] {
            assert!(out.stdout.contains(command), "{shell} lacks {command}");
        }
        if shell == "bash" {
            let script = write(dir.path(), "chassis.bash", &out.stdout);
            let parsed = Command::new("bash")
                .arg("-n")
                .arg(&script)
                .output()
                .expect("bash on PATH");
            assert!(parsed.status.success(), "bash -n: {parsed:?}");
        }
    }
    let out = run(chassis_in(dir.path()).args(["completions", "powershell"]));
    out.expect_code(2);
}

/// Splits a hint line the way a POSIX shell would (single quotes only, as the demo prints).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut started) = (false, false);
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// The arguments of the hint line that runs `command`, after whatever invokes chassis
/// (`chassis`, `/path/to/chassis` or `cargo run --bin chassis --`).
fn hint(stderr: &str, command: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| {
            let l = l.split(" #").next().unwrap_or_default();
            let words = shell_words(l.trim().trim_end_matches('&').trim());
            let skip = match words.first().map(String::as_str) {
                Some("cargo") => words.iter().position(|w| w == "--").map_or(0, |i| i + 1),
                _ => 1,
            };
            words[skip.min(words.len())..].to_vec()
        })
        .find(|args| {
            // `--db PATH` may come before the command.
            let at = if args.first().is_some_and(|a| a == "--db") {
                2
            } else {
                0
            };
            args.get(at).is_some_and(|a| a == command)
        })
        .unwrap_or_else(|| panic!("no `{command}` hint in:\n{stderr}"))
}

#[test]
fn the_demo_agent_runs_again_as_the_demo_says() {
    let root = tempfile::tempdir().expect("temporary directory");
    let out = run(chassis_in(root.path()).args(["demo", "--latency", "1ms"]));
    out.expect_code(0);
    assert!(out.stdout.contains("replica"), "{out:#?}");
    // Hints name a chassis that works: on PATH, through cargo, or by the path it was run as.
    assert!(
        out.stderr.contains("  chassis ")
            || out.stderr.contains("  cargo run --bin chassis -- ")
            || out.stderr.contains(&format!("  {CHASSIS} ")),
        "{out:#?}"
    );

    // The demo's mock is gone; the two commands it printed bring the agent back.
    let serve = hint(&out.stderr, "mock-model");
    let mut mock = Command::new(CHASSIS)
        .args(&serve)
        .current_dir(root.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the mock as the demo says");
    let mut line = String::new();
    BufReader::new(mock.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("the mock's base URL");
    let again = run(chassis_in(root.path()).args(hint(&out.stderr, "run")));
    let _ = mock.kill();
    let _ = mock.wait();
    again.expect_code(0);
    assert!(again.stdout.contains("replica"), "{again:#?}");
    assert_eq!(
        runs_json(&root.path().join(".chassis/chassis.db"), &[]).len(),
        2
    );

    // And the inspection hints name runs that exist.
    let show = hint(&out.stderr, "show");
    run(chassis_in(root.path()).args(show)).expect_code(0);
}
