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
        let mut child = Command::new(CHASSIS)
            .args(["mock-model", "--port", "0", "--script"])
            .arg(script)
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
    let readme = std::fs::read_to_string(project.join("README.md")).expect("read the README");
    assert!(
        readme.contains("OPENAI_BASE_URL=http://127.0.0.1:8089/v1 chassis run agent.toml"),
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
