use super::*;

const ECHO_CONTEXT: &str = "import sys, json, os
a = json.load(sys.stdin)
print(a['x'] * 2)
print(os.environ['CHASSIS_RUN_ID'], os.environ['CHASSIS_CALL_ID'], os.environ['CHASSIS_IDEMPOTENCY_KEY'])
print(os.getcwd())
";

#[tokio::test]
async fn stdin_gets_the_arguments_and_env_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = build(&[python("double", ECHO_CONTEXT)], dir.path())
        .await
        .unwrap();
    let out = call(&toolbox, "double", json!({"x": 21})).await.unwrap();
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(
        out,
        format!("42\nrun-1 call-1 run-1/call-1\n{}", cwd.display())
    );
}

#[tokio::test]
async fn cat_echoes_the_serialized_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let spec = command_spec("echo", &["cat"], Duration::from_secs(20));
    let toolbox = build(&[spec], dir.path()).await.unwrap();
    let out = call(&toolbox, "echo", json!({"a": [1, "two"]}))
        .await
        .unwrap();
    assert_eq!(out, r#"{"a":[1,"two"]}"#);
}

#[tokio::test]
async fn relative_program_is_resolved_against_base_dir() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tools/upper.py");
    std::fs::create_dir(dir.path().join("tools")).unwrap();
    std::fs::write(
        &script,
        "#!/usr/bin/env python3\nimport sys, json\nprint(json.load(sys.stdin)['s'].upper())\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = command_spec("upper", &["./tools/upper.py"], Duration::from_secs(20));
    let toolbox = build(&[spec], dir.path()).await.unwrap();
    assert_eq!(
        call(&toolbox, "upper", json!({"s": "abc"})).await.unwrap(),
        "ABC"
    );

    // A program removed after the toolbox was built fails the call, naming the program.
    std::fs::remove_file(&script).unwrap();
    let e = call(&toolbox, "upper", json!({"s": "abc"}))
        .await
        .unwrap_err();
    assert!(
        e.message()
            .starts_with("`upper` could not start program `/")
            && e.message()
                .contains("tools/upper.py`: No such file or directory"),
        "{e}"
    );
}

#[tokio::test]
async fn non_zero_exit_quotes_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let code = "import sys
print('partial output')
sys.stderr.write('noise\\n' * 1000 + 'bad input: x must be positive\\n')
sys.exit(3)";
    let toolbox = build(&[python("fails", code)], dir.path()).await.unwrap();
    let e = call(&toolbox, "fails", json!({})).await.unwrap_err();
    assert!(
        e.message().starts_with("`fails` exited with status 3: …"),
        "{e}"
    );
    assert!(
        e.message()
            .ends_with("noise\nbad input: x must be positive"),
        "{e}"
    );
    assert!(e.message().len() < 2200, "{}", e.message().len());
    assert!(!e.message().contains("partial output"), "{e}");
}

#[tokio::test]
async fn non_zero_exit_without_stderr_quotes_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let code = "import sys; print('no such user'); sys.exit(1)";
    let toolbox = build(&[python("lookup", code)], dir.path()).await.unwrap();
    let e = call(&toolbox, "lookup", json!({})).await.unwrap_err();
    assert_eq!(e.message(), "`lookup` exited with status 1: no such user");
    assert!(!e.is_indeterminate(), "an exit status is a definite answer");
    let toolbox = build(&[python("quiet", "raise SystemExit(2)")], dir.path())
        .await
        .unwrap();
    let e = call(&toolbox, "quiet", json!({})).await.unwrap_err();
    assert_eq!(
        e.message(),
        "`quiet` exited with status 2 and printed nothing"
    );
}

#[tokio::test]
async fn timeout_kills_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let code = "import os, time
with open('pid', 'w') as f:
    f.write(str(os.getpid()))
time.sleep(60)";
    let spec = command_spec("slow", &["python3", "-c", code], Duration::from_secs(2));
    let toolbox = build(&[spec], dir.path()).await.unwrap();
    // The program sleeps a minute: the timeout is what ends the call.
    let e = call(&toolbox, "slow", json!({})).await.unwrap_err();
    assert_eq!(e.message(), "`slow` timed out after 2s");
    assert!(e.is_indeterminate(), "a timed-out program may have acted");
    let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} is still there"
    );
}

#[tokio::test]
async fn too_much_stdout_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let code = "import sys; sys.stdout.write('x' * (2 * 1024 * 1024))";
    let toolbox = build(&[python("loud", code)], dir.path()).await.unwrap();
    let e = call(&toolbox, "loud", json!({})).await.unwrap_err();
    assert_eq!(
        e.message(),
        "`loud` wrote more than 1 MiB (1048576 bytes) to stdout"
    );
}

#[tokio::test]
async fn missing_program_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let specs = [
        fs_spec(".", None),
        command_spec("t", &["no-such-program-xyz"], Duration::from_secs(1)),
    ];
    let e = build(&specs, dir.path()).await.unwrap_err();
    assert_eq!(e.key, "tools[1].command");
    assert_eq!(e.message, "program `no-such-program-xyz` not found on PATH");

    let specs = [command_spec("t", &["./bin/tool"], Duration::from_secs(1))];
    let e = build(&specs, dir.path()).await.unwrap_err();
    assert_eq!(e.key, "tools[0].command");
    assert!(
        e.message.starts_with("program `./bin/tool` does not exist"),
        "{e}"
    );
}

#[tokio::test]
async fn invalid_schema_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = command_spec("t", &["cat"], Duration::from_secs(1));
    if let ToolSpec::Command(c) = &mut spec {
        c.args_schema = json!({"type": "object", "properties": {"n": {"type": "integr"}}});
    }
    let e = build(&[spec], dir.path()).await.unwrap_err();
    assert_eq!(e.key, "tools[0].args_schema");
    assert!(e.message.starts_with("is not a valid JSON Schema"), "{e}");
}

/// The command runs as its argv, never through a shell: shell syntax in the spec's arguments
/// or in the model's arrives verbatim and does nothing.
#[tokio::test]
async fn command_tools_run_without_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = [
        "$(touch pwned)",
        "; touch pwned",
        "`touch pwned`",
        "&& touch pwned",
        "| touch pwned",
        "> pwned",
    ];
    let mut command = vec![
        "python3",
        "-c",
        "import sys, json; print(json.dumps({'argv': sys.argv[1:], 'stdin': json.load(sys.stdin)}))",
    ];
    command.extend(hostile);
    let spec = command_spec("show", &command, Duration::from_secs(20));
    let toolbox = build(&[spec], dir.path()).await.unwrap();
    let args = json!({"text": "$(touch pwned); touch pwned `touch pwned` && touch pwned"});
    let out = call(&toolbox, "show", args.clone()).await.unwrap();
    let seen: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(seen["argv"], json!(hostile));
    assert_eq!(seen["stdin"], args);
    // The tool ran in `dir`: a shell would have made the file there.
    assert!(!dir.path().join("pwned").exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
