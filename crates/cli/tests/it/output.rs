//! Output people read: symbols and colour only on a terminal (ASCII without a UTF-8 locale,
//! no colour with NO_COLOR), `-q`, costs that never round to zero, queued runs, stats without
//! eval runs, and an audit name that is never "unknown".

use std::fs::File;
use std::io::Read;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::{Echo, Output, events, run, runs_json, show_json, write};

/// A pseudo-terminal: the side a program writes to, and the side this test reads.
struct Pty {
    reader: File,
    terminal: File,
}

impl Pty {
    #[allow(
        unsafe_code,
        reason = "std cannot open a pseudo-terminal; the calls get only buffers owned here"
    )]
    fn open() -> Pty {
        use std::os::fd::FromRawFd;
        use std::os::unix::fs::OpenOptionsExt;

        // SAFETY: posix_openpt takes flags only; the descriptor is owned by the File below.
        let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is an open descriptor nothing else owns.
        let reader = unsafe { File::from_raw_fd(fd) };
        let mut name = [0 as libc::c_char; 256];
        // SAFETY: `fd` is a pty master; `name` is a writable buffer of the length passed.
        unsafe {
            assert_eq!(libc::grantpt(fd), 0);
            assert_eq!(libc::unlockpt(fd), 0);
            assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        }
        // SAFETY: ptsname_r wrote a NUL-terminated path into `name`.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_str()
            .expect("a UTF-8 pty path")
            .to_string();
        let terminal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        Pty { reader, terminal }
    }
}

/// Everything a reader gets until the terminal side is closed by all its writers.
fn drain(mut reader: File) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut chunk = [0; 4096];
        // Linux answers EIO once no process has the terminal side open.
        while let Ok(n) = reader.read(&mut chunk) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(bytes).expect("terminal output is UTF-8")
    })
}

/// Runs `command` with stdout and stderr each on a terminal of its own.
fn on_terminals(command: &mut Command) -> Output {
    let (out, err) = (Pty::open(), Pty::open());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out.terminal.try_clone().expect("clone the terminal"))
        .stderr(err.terminal.try_clone().expect("clone the terminal"))
        .spawn()
        .expect("start chassis");
    // Only the child keeps the terminals open, so reading ends when it exits.
    command.stdout(Stdio::null()).stderr(Stdio::null());
    drop((out.terminal, err.terminal));
    let (stdout, stderr) = (drain(out.reader), drain(err.reader));
    let status = child.wait().expect("wait for chassis");
    Output {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// `command` under exactly these locale and colour settings.
fn env(command: &mut Command, vars: &[(&str, &str)]) {
    for var in ["LC_ALL", "LC_CTYPE", "LANG", "NO_COLOR", "TERM"] {
        command.env_remove(var);
    }
    command.envs(vars.iter().copied());
}

#[track_caller]
fn assert_plain(what: &str, text: &str) {
    assert!(!text.contains('\x1b'), "{what}: an escape code in {text:?}");
    assert!(text.is_ascii(), "{what}: a non-ASCII character in {text:?}");
}

#[test]
fn symbols_and_colour_only_on_a_terminal_that_can_show_them() {
    let echo = Echo::new("");
    let utf8 = [("LANG", "C.UTF-8"), ("TERM", "xterm")];

    // A UTF-8 terminal gets symbols and colour: progress on stderr, the trace on stdout.
    let mut command = echo.chassis();
    command
        .arg("run")
        .arg(&echo.spec)
        .args(["--input", "hello"]);
    env(&mut command, &utf8);
    let out = on_terminals(&mut command);
    out.expect_code(0);
    assert!(
        out.stderr.contains('▶') && out.stderr.contains('■'),
        "{out:#?}"
    );
    assert!(out.stderr.contains("\x1b["), "{out:#?}");
    let mut command = echo.chassis();
    command.args(["trace", "last"]);
    env(&mut command, &utf8);
    let out = on_terminals(&mut command);
    out.expect_code(0);
    assert!(
        out.stdout.contains('●') && out.stdout.contains("\x1b["),
        "{out:#?}"
    );

    let plain_settings: [&[(&str, &str)]; 3] = [
        // NO_COLOR and a C locale.
        &[("LANG", "C"), ("NO_COLOR", "1"), ("TERM", "xterm")],
        // LC_ALL wins over a UTF-8 LANG; NO_COLOR leaves symbols to the locale.
        &[
            ("LC_ALL", "POSIX"),
            ("LANG", "en_US.UTF-8"),
            ("NO_COLOR", "1"),
        ],
        // No locale at all is the C locale.
        &[("NO_COLOR", "yes")],
    ];
    for settings in plain_settings {
        for args in [
            vec!["run", "--input", "hello again"],
            vec!["trace", "last"],
            vec!["show", "last"],
            vec!["runs"],
        ] {
            let mut command = echo.chassis();
            command.args(&args[..1]);
            if args[0] == "run" {
                command.arg(&echo.spec);
            }
            command.args(&args[1..]);
            env(&mut command, settings);
            let out = on_terminals(&mut command);
            out.expect_code(0);
            assert_plain(&format!("{args:?} {settings:?} stdout"), &out.stdout);
            assert_plain(&format!("{args:?} {settings:?} stderr"), &out.stderr);
        }
    }
    // A pipe gets plain ASCII whatever the locale.
    for args in [["trace", "last"], ["show", "last"]] {
        let mut command = echo.chassis();
        command.args(args);
        env(&mut command, &utf8);
        let out = run(&mut command);
        out.expect_code(0);
        assert_plain(&format!("{args:?} piped"), &out.stdout);
        assert!(out.stdout.contains("# completed"), "{out:#?}");
    }
}

#[test]
fn quiet_leaves_only_the_result() {
    let echo = Echo::new("");
    let out = run(echo
        .chassis()
        .arg("run")
        .arg(&echo.spec)
        .args(["--input", "hi"]));
    out.expect_code(0);
    assert!(
        out.stderr.contains("started"),
        "progress without -q: {out:#?}"
    );
    for flag in ["-q", "--quiet"] {
        let out = run(echo
            .chassis()
            .arg(flag)
            .arg("run")
            .arg(&echo.spec)
            .args(["--input", "hi"]));
        out.expect_code(0);
        assert_eq!(out.stdout, "echo: hi\n");
        assert_eq!(out.stderr, "", "{flag}: {out:#?}");
    }
}

#[test]
fn a_cost_below_a_cent_keeps_its_digits() {
    let echo = Echo::new("");
    let run_id = echo.run("what does this cost?");
    let cost = runs_json(&echo.db, &[])[0]["cost_usd"]
        .as_f64()
        .expect("a priced run");
    assert!(cost > 0.0 && cost < 0.000_01, "{cost}");
    let table = run(echo.chassis().arg("runs"));
    table.expect_code(0);
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&run_id))
        .expect("the run's row");
    let shown: f64 = row
        .split_whitespace()
        .find_map(|word| word.strip_prefix('$'))
        .and_then(|amount| amount.parse().ok())
        .unwrap_or_else(|| panic!("a cost in {row:?}"));
    assert!(
        (shown - cost).abs() / cost < 0.05,
        "{row:?} shows {shown}, the run cost {cost}"
    );
    let show = run(echo.chassis().args(["show", &run_id]));
    assert!(!show.stdout.contains("$0.0000,"), "{show:#?}");
    assert!(!show.stdout.contains("$0.0000\n"), "{show:#?}");
}

#[test]
fn a_submitted_run_nobody_picked_up_is_queued() {
    let echo = Echo::new("");
    let done = echo.run("done already");
    let out = run(echo
        .chassis()
        .arg("submit")
        .arg(&echo.spec)
        .args(["--input", "waits for a worker"]));
    out.expect_code(0);
    let queued = out.stdout.trim().to_string();
    let table = run(echo.chassis().arg("runs"));
    let row = |id: &str| {
        table
            .stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}: {table:#?}"))
            .to_string()
    };
    assert!(row(&queued).contains(" queued "), "{table:#?}");
    assert!(row(&done).contains(" completed "), "{table:#?}");
    let rows = runs_json(&echo.db, &["--status", "queued"]);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["run_id"], queued.as_str());
    assert_eq!(rows[0]["queued"], true);
    assert_eq!(
        rows[0]["status"], "running",
        "the JSON status stays the journal's"
    );
}

#[test]
fn stats_leave_eval_runs_out_unless_asked() {
    let echo = Echo::new("");
    echo.run("real traffic");
    let suite = write(
        echo.dir.path(),
        "suite.toml",
        "[suite]\nname = \"echo\"\nagent = \"agent.toml\"\n\n[[case]]\nname = \"hi\"\ninput = \"hi\"\noutput_contains = [\"echo: hi\"]\n",
    );
    run(echo.chassis().arg("eval").arg(&suite)).expect_code(0);
    let runs = |extra: &[&str]| -> u64 {
        let out = run(echo.chassis().args(["stats", "--json"]).args(extra));
        out.expect_code(0);
        let json = out.json();
        let all = json["stats"]
            .as_array()
            .and_then(|s| s.last())
            .expect("an overall entry");
        all["runs"].as_u64().expect("a run count")
    };
    assert_eq!(runs(&[]), 1);
    assert_eq!(runs(&["--include-eval"]), 2);
}

#[test]
fn who_raised_a_limit_is_the_os_account_even_without_user_or_logname() {
    let echo = Echo::new("[limits]\nmax_cost_usd = 0.0000001\non_limit = \"pause\"\n");
    let out = run(echo
        .chassis()
        .arg("run")
        .arg(&echo.spec)
        .args(["--input", "too dear"]));
    out.expect_code(3);
    let account = Command::new("id").arg("-un").output().expect("id -un");
    let account = String::from_utf8(account.stdout)
        .expect("UTF-8")
        .trim()
        .to_string();
    let out = run(echo
        .chassis()
        .env_remove("USER")
        .env_remove("LOGNAME")
        .args(["resume", "last", "--raise", "max_cost_usd=1"]));
    out.expect_code(0);
    let show = show_json(
        &echo.db,
        runs_json(&echo.db, &[])[0]["run_id"].as_str().expect("id"),
    );
    let raised: Vec<&Value> = events(&show)
        .iter()
        .filter(|e| e["kind"] == "limit_raised")
        .collect();
    assert_eq!(raised.len(), 1, "{show:#}");
    assert_eq!(raised[0]["by"], account.as_str());
    assert_ne!(raised[0]["by"], "unknown");
}

/// On a terminal, `run` shows the answer on stderr as the model writes it (the pieces of the
/// stream, on the step's line), and still prints exactly the answer on stdout; `--no-stream`
/// shows progress lines only, and `--json` is unchanged.
#[test]
fn a_terminal_sees_the_answer_as_it_streams() {
    let echo = Echo::new("");
    let utf8 = [("LANG", "C.UTF-8"), ("TERM", "xterm"), ("NO_COLOR", "1")];
    let streamed_line = "step 1: echo: a streamed answer";

    let mut command = echo.chassis();
    command
        .arg("run")
        .arg(&echo.spec)
        .args(["--input", "a streamed answer"]);
    env(&mut command, &utf8);
    let out = on_terminals(&mut command);
    out.expect_code(0);
    assert!(out.stderr.contains(streamed_line), "{out:#?}");
    assert_eq!(out.stdout.trim(), "echo: a streamed answer", "{out:#?}");

    let mut command = echo.chassis();
    command
        .arg("run")
        .arg(&echo.spec)
        .args(["--input", "a streamed answer", "--no-stream"]);
    env(&mut command, &utf8);
    let out = on_terminals(&mut command);
    out.expect_code(0);
    assert!(!out.stderr.contains(streamed_line), "{out:#?}");
    assert_eq!(out.stdout.trim(), "echo: a streamed answer", "{out:#?}");

    let mut command = echo.chassis();
    command
        .arg("run")
        .arg(&echo.spec)
        .args(["--input", "a streamed answer", "--json"]);
    env(&mut command, &utf8);
    let out = on_terminals(&mut command);
    out.expect_code(0);
    let reply: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:#?}"));
    assert_eq!(reply["output"], "echo: a streamed answer");
}

/// One event row that cannot be decoded (a bad disk, a hand edit) spoils its run only:
/// `chassis runs` lists that run as unreadable with the reason, and every other run as usual.
#[test]
fn an_undecodable_event_makes_its_run_unreadable_not_the_list() {
    let echo = Echo::new("");
    let spoiled = echo.run("first");
    let fine = echo.run("second");
    // Through Python's sqlite3: the journal's own schema, one row's JSON cut short.
    let edit = std::process::Command::new(crate::util::python())
        .args([
            "-c",
            "import sqlite3, sys\n\
             db = sqlite3.connect(sys.argv[1])\n\
             n = db.execute(\"UPDATE events SET data = '{\\\"kind\\\": \\\"model_resp' \
             WHERE id = (SELECT (run_key << 32) | 2 FROM runs WHERE run_id = ?)\", \
             (sys.argv[2],)).rowcount\n\
             db.commit()\n\
             assert n == 1, n",
        ])
        .arg(&echo.db)
        .arg(&spoiled)
        .status()
        .expect("python3 runs");
    assert!(edit.success(), "the row was edited");

    let out = run(echo.chassis().arg("runs"));
    out.expect_code(0);
    let line = |id: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} is listed: {out:#?}"))
            .to_string()
    };
    assert!(line(&spoiled).contains("unreadable"), "{out:#?}");
    assert!(line(&fine).contains("completed"), "{out:#?}");
    assert!(
        out.stderr.contains(&format!("run {spoiled}")) && out.stderr.contains("event 2"),
        "the reason names the run and the event: {out:#?}"
    );

    let rows = runs_json(&echo.db, &[]);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let row = |id: &str| rows.iter().find(|r| r["run_id"] == id).expect("listed");
    let reason = row(&spoiled)["unreadable"].as_str().unwrap_or_default();
    assert!(reason.contains("event 2 cannot be read"), "{rows:#?}");
    assert_eq!(row(&fine)["status"], "completed");
    assert!(
        row(&fine).get("unreadable").is_none_or(Value::is_null),
        "{rows:#?}"
    );

    // The figures over the journal leave the run out rather than fail.
    for args in [&["stats", "--json"][..], &["runs", "--by-version"]] {
        run(echo.chassis().args(args)).expect_code(0);
    }
}
