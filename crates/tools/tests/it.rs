//! Integration tests: toolboxes built from spec entries, called the way the engine calls them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chassis_core::RiskClass;
use chassis_core::spec::{CommandToolSpec, ToolSpec};
use chassis_tools::{CallContext, Refusal, Tool, ToolError, Toolbox};
use serde_json::{Value, json};

fn ctx() -> CallContext {
    CallContext {
        run_id: "run-1".into(),
        call_id: "call-1".into(),
        idempotency_key: "run-1/call-1".into(),
    }
}

fn fs_spec(root: &str, only: Option<&[&str]>) -> ToolSpec {
    ToolSpec::Fs {
        root: root.into(),
        only: only.map(|o| o.iter().map(|s| s.to_string()).collect()),
    }
}

fn command_spec(name: &str, command: &[&str], timeout: Duration) -> ToolSpec {
    ToolSpec::Command(CommandToolSpec {
        name: name.into(),
        description: format!("{name} for tests"),
        command: command.iter().map(|s| s.to_string()).collect(),
        args_schema: json!({"type": "object"}),
        risk: RiskClass::ReadOnly,
        timeout,
        idempotent: false,
        max_attempts: 1,
    })
}

fn python(name: &str, code: &str) -> ToolSpec {
    command_spec(name, &["python3", "-c", code], Duration::from_secs(20))
}

/// Prepares and runs one call as the engine would.
async fn call(toolbox: &Toolbox, name: &str, args: Value) -> Result<String, ToolError> {
    let (args, tool) = toolbox
        .prepare(name, &args.to_string())
        .unwrap_or_else(|r| panic!("refused: {r}"));
    tool.call(args, &ctx()).await
}

fn refusal(toolbox: &Toolbox, name: &str, raw: &str) -> String {
    match toolbox.prepare(name, raw) {
        Ok(_) => panic!("`{name}` {raw} was not refused"),
        Err(r) => r.to_string(),
    }
}

fn names(toolbox: &Toolbox) -> Vec<String> {
    toolbox.defs().into_iter().map(|d| d.name).collect()
}

mod validation {
    use super::*;

    fn toolbox(dir: &Path) -> Toolbox {
        let mut pay = python("pay", "print('paid')");
        if let ToolSpec::Command(c) = &mut pay {
            c.args_schema = json!({
                "type": "object",
                "properties": {"amount": {"type": "number", "minimum": 0}},
                "required": ["amount"],
            });
        }
        Toolbox::from_specs(&[fs_spec(".", Some(&["read_file", "list_dir"])), pay], dir).unwrap()
    }

    #[test]
    fn unknown_tool_lists_the_granted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let toolbox = toolbox(dir.path());
        assert_eq!(
            refusal(&toolbox, "foo", "{}"),
            "unknown tool `foo`; available tools: read_file, list_dir, pay"
        );
        let empty = Toolbox::new(Vec::new()).unwrap();
        assert_eq!(
            refusal(&empty, "foo", "{}"),
            "unknown tool `foo`; this agent has no tools"
        );
    }

    #[test]
    fn arguments_that_are_not_json_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let toolbox = toolbox(dir.path());
        assert_eq!(
            refusal(&toolbox, "read_file", "{\"path\": "),
            "arguments for `read_file` are not valid JSON: EOF while parsing a value at line 1 column 9"
        );
        assert!(matches!(
            toolbox.prepare("read_file", "{]"),
            Err(Refusal::UnparsableArguments { .. })
        ));
    }

    #[test]
    fn arguments_that_are_not_an_object_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let toolbox = toolbox(dir.path());
        assert_eq!(
            refusal(&toolbox, "read_file", "\"notes.txt\""),
            "arguments for `read_file` do not match its schema: the arguments must be a JSON object, not a string"
        );
    }

    #[test]
    fn wrong_type_is_refused_with_its_pointer() {
        let dir = tempfile::tempdir().unwrap();
        let toolbox = toolbox(dir.path());
        assert_eq!(
            refusal(&toolbox, "read_file", r#"{"path": 7}"#),
            r#"arguments for `read_file` do not match its schema: /path: 7 is not of type "string""#
        );
        assert_eq!(
            refusal(&toolbox, "pay", r#"{"amount": -5}"#),
            "arguments for `pay` do not match its schema: /amount: -5 is less than the minimum of 0"
        );
    }

    #[test]
    fn missing_required_and_extra_properties_are_all_listed() {
        let dir = tempfile::tempdir().unwrap();
        let toolbox = toolbox(dir.path());
        let message = refusal(&toolbox, "read_file", r#"{"file": "x"}"#);
        assert_eq!(
            message,
            "arguments for `read_file` do not match its schema: \
             Additional properties are not allowed ('file' was unexpected); \
             \"path\" is a required property"
        );
        match toolbox.prepare("read_file", r#"{"file": "x"}"#) {
            Err(Refusal::InvalidArguments { tool, violations }) => {
                assert_eq!(tool, "read_file");
                assert_eq!(violations.len(), 2);
            }
            other => panic!("expected InvalidArguments, got {other:?}"),
        }
    }

    #[test]
    fn valid_arguments_come_back_parsed_with_the_tool() {
        let dir = tempfile::tempdir().unwrap();
        let toolbox = toolbox(dir.path());
        let (args, tool) = toolbox.prepare("pay", r#"{"amount": 5}"#).unwrap();
        assert_eq!(args, json!({"amount": 5}));
        assert_eq!(tool.def().name, "pay");
        assert!(toolbox.get("pay").is_some());
        assert!(toolbox.get("write_file").is_none());
    }
}

mod fs_tools {
    use super::*;

    fn toolbox(root: &Path) -> Toolbox {
        Toolbox::from_specs(&[fs_spec(".", None)], root).unwrap()
    }

    #[test]
    fn defs_describe_the_three_tools() {
        let dir = tempfile::tempdir().unwrap();
        let defs = toolbox(dir.path()).defs();
        let summary: Vec<(&str, RiskClass)> =
            defs.iter().map(|d| (d.name.as_str(), d.risk)).collect();
        assert_eq!(
            summary,
            [
                ("read_file", RiskClass::ReadOnly),
                ("list_dir", RiskClass::ReadOnly),
                ("write_file", RiskClass::Reversible),
            ]
        );
        for def in &defs {
            assert_eq!(def.parameters["type"], "object");
            assert_eq!(def.parameters["additionalProperties"], false);
            assert!(!def.description.is_empty());
        }
        assert_eq!(defs[2].parameters["required"], json!(["path", "content"]));
    }

    #[tokio::test]
    async fn write_read_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let toolbox = toolbox(dir.path());
        let wrote = call(
            &toolbox,
            "write_file",
            json!({"path": "notes/day/one.md", "content": "héllo\n"}),
        )
        .await
        .unwrap();
        assert_eq!(wrote, "wrote 7 bytes to notes/day/one.md");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("notes/day/one.md")).unwrap(),
            "héllo\n"
        );
        let read = call(&toolbox, "read_file", json!({"path": "./notes/day/one.md"})).await;
        assert_eq!(read.unwrap(), "héllo\n");

        std::fs::write(dir.path().join("b.txt"), "").unwrap();
        std::fs::write(dir.path().join("a.txt"), "").unwrap();
        assert_eq!(
            call(&toolbox, "list_dir", json!({})).await.unwrap(),
            "a.txt\nb.txt\nnotes/"
        );
        assert_eq!(
            call(&toolbox, "list_dir", json!({"path": "notes"}))
                .await
                .unwrap(),
            "day/"
        );

        // Writing again replaces the content.
        call(
            &toolbox,
            "write_file",
            json!({"path": "a.txt", "content": "new"}),
        )
        .await
        .unwrap();
        assert_eq!(
            call(&toolbox, "read_file", json!({"path": "a.txt"}))
                .await
                .unwrap(),
            "new"
        );
    }

    #[tokio::test]
    async fn relative_root_is_resolved_against_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/x.txt"), "inside").unwrap();
        std::fs::write(dir.path().join("spec-level.txt"), "outside").unwrap();
        let toolbox = Toolbox::from_specs(&[fs_spec("./data", None)], dir.path()).unwrap();
        assert_eq!(
            call(&toolbox, "list_dir", json!({})).await.unwrap(),
            "x.txt"
        );
        let e = call(&toolbox, "read_file", json!({"path": "../spec-level.txt"})).await;
        assert_eq!(
            e.unwrap_err().0,
            "path `../spec-level.txt` escapes the tool root (with `..`)"
        );
    }

    #[tokio::test]
    async fn parent_components_are_refused_by_every_tool() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let toolbox = toolbox(&dir.path().join("sub"));
        let escapes = "path `../x` escapes the tool root (with `..`)";
        let e = call(&toolbox, "read_file", json!({"path": "../x"})).await;
        assert_eq!(e.unwrap_err().0, escapes);
        let e = call(&toolbox, "list_dir", json!({"path": "../x"})).await;
        assert_eq!(e.unwrap_err().0, escapes);
        let e = call(
            &toolbox,
            "write_file",
            json!({"path": "../x", "content": "x"}),
        )
        .await;
        assert_eq!(e.unwrap_err().0, escapes);
        assert!(!dir.path().join("x").exists());
        // Even a `..` that would stay inside is refused: the rule is simple to state.
        let e = call(&toolbox, "list_dir", json!({"path": "a/.."})).await;
        assert_eq!(
            e.unwrap_err().0,
            "path `a/..` escapes the tool root (with `..`)"
        );
    }

    #[tokio::test]
    async fn absolute_paths_are_refused_by_every_tool() {
        let dir = tempfile::tempdir().unwrap();
        let toolbox = toolbox(dir.path());
        let target = dir.path().join("abs.txt");
        let abs = target.to_str().unwrap();
        let expected = format!("path `{abs}` is absolute; paths are relative to the tool root");
        let e = call(&toolbox, "write_file", json!({"path": abs, "content": "x"})).await;
        assert_eq!(e.unwrap_err().0, expected);
        assert!(!target.exists());
        std::fs::write(&target, "x").unwrap();
        let e = call(&toolbox, "read_file", json!({"path": abs})).await;
        assert_eq!(e.unwrap_err().0, expected);
        let e = call(&toolbox, "list_dir", json!({"path": "/"})).await;
        assert_eq!(
            e.unwrap_err().0,
            "path `/` is absolute; paths are relative to the tool root"
        );
    }

    #[tokio::test]
    async fn symlinks_out_of_the_root_are_refused_by_every_tool() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            root.path().join("secret.txt"),
        )
        .unwrap();
        let toolbox = toolbox(root.path());
        let via_link = "escapes the tool root (through a symbolic link)";

        let e = call(&toolbox, "read_file", json!({"path": "out/secret.txt"})).await;
        assert_eq!(
            e.unwrap_err().0,
            format!("path `out/secret.txt` {via_link}")
        );
        let e = call(&toolbox, "read_file", json!({"path": "secret.txt"})).await;
        assert_eq!(e.unwrap_err().0, format!("path `secret.txt` {via_link}"));

        let e = call(&toolbox, "list_dir", json!({"path": "out"})).await;
        assert_eq!(e.unwrap_err().0, format!("path `out` {via_link}"));

        let e = call(
            &toolbox,
            "write_file",
            json!({"path": "out/new/file.txt", "content": "x"}),
        )
        .await;
        assert_eq!(
            e.unwrap_err().0,
            format!("path `out/new/file.txt` {via_link}")
        );
        assert!(!outside.path().join("new").exists());
        let e = call(
            &toolbox,
            "write_file",
            json!({"path": "secret.txt", "content": "x"}),
        )
        .await;
        assert_eq!(e.unwrap_err().0, format!("path `secret.txt` {via_link}"));
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
            "secret"
        );

        // The links themselves may be listed; only following them is refused.
        assert_eq!(
            call(&toolbox, "list_dir", json!({})).await.unwrap(),
            "out/\nsecret.txt"
        );
    }

    #[tokio::test]
    async fn symlinks_inside_the_root_are_followed() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("real")).unwrap();
        std::os::unix::fs::symlink(root.path().join("real"), root.path().join("alias")).unwrap();
        let toolbox = toolbox(root.path());
        call(
            &toolbox,
            "write_file",
            json!({"path": "alias/f.txt", "content": "via alias"}),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("real/f.txt")).unwrap(),
            "via alias"
        );
        assert_eq!(
            call(&toolbox, "read_file", json!({"path": "alias/f.txt"}))
                .await
                .unwrap(),
            "via alias"
        );
    }

    #[test]
    fn only_grants_a_subset() {
        let dir = tempfile::tempdir().unwrap();
        let toolbox =
            Toolbox::from_specs(&[fs_spec(".", Some(&["read_file"]))], dir.path()).unwrap();
        assert_eq!(names(&toolbox), ["read_file"]);
        assert_eq!(
            refusal(&toolbox, "write_file", r#"{"path": "x", "content": ""}"#),
            "unknown tool `write_file`; available tools: read_file"
        );
    }

    #[test]
    fn missing_root_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let specs = [python("t", "pass"), fs_spec("./data", None)];
        let e = Toolbox::from_specs(&specs, dir.path()).unwrap_err();
        assert_eq!(e.key, "tools[1].root");
        assert_eq!(e.message, "directory ./data does not exist");
        assert_eq!(
            e.to_string(),
            "tools[1].root: directory ./data does not exist"
        );

        std::fs::write(dir.path().join("data"), "").unwrap();
        let e = Toolbox::from_specs(&specs, dir.path()).unwrap_err();
        assert_eq!(e.to_string(), "tools[1].root: ./data is not a directory");
    }
}

mod command_tools {
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
        let toolbox = Toolbox::from_specs(&[python("double", ECHO_CONTEXT)], dir.path()).unwrap();
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
        let toolbox = Toolbox::from_specs(&[spec], dir.path()).unwrap();
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
        let toolbox = Toolbox::from_specs(&[spec], dir.path()).unwrap();
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
            e.0.starts_with("`upper` could not start program `/")
                && e.0.contains("tools/upper.py`: No such file or directory"),
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
        let toolbox = Toolbox::from_specs(&[python("fails", code)], dir.path()).unwrap();
        let e = call(&toolbox, "fails", json!({})).await.unwrap_err();
        assert!(e.0.starts_with("`fails` exited with status 3: …"), "{e}");
        assert!(e.0.ends_with("noise\nbad input: x must be positive"), "{e}");
        assert!(e.0.len() < 2200, "{}", e.0.len());
        assert!(!e.0.contains("partial output"), "{e}");
    }

    #[tokio::test]
    async fn non_zero_exit_without_stderr_quotes_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let code = "import sys; print('no such user'); sys.exit(1)";
        let toolbox = Toolbox::from_specs(&[python("lookup", code)], dir.path()).unwrap();
        let e = call(&toolbox, "lookup", json!({})).await.unwrap_err();
        assert_eq!(e.0, "`lookup` exited with status 1: no such user");
        let toolbox =
            Toolbox::from_specs(&[python("quiet", "raise SystemExit(2)")], dir.path()).unwrap();
        let e = call(&toolbox, "quiet", json!({})).await.unwrap_err();
        assert_eq!(e.0, "`quiet` exited with status 2 and printed nothing");
    }

    #[tokio::test]
    async fn timeout_kills_the_program() {
        let dir = tempfile::tempdir().unwrap();
        let code = "import os, time
with open('pid', 'w') as f:
    f.write(str(os.getpid()))
time.sleep(60)";
        let spec = command_spec("slow", &["python3", "-c", code], Duration::from_secs(2));
        let toolbox = Toolbox::from_specs(&[spec], dir.path()).unwrap();
        let started = std::time::Instant::now();
        let e = call(&toolbox, "slow", json!({})).await.unwrap_err();
        assert_eq!(e.0, "`slow` timed out after 2s");
        assert!(started.elapsed() < Duration::from_secs(10));
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
        let toolbox = Toolbox::from_specs(&[python("loud", code)], dir.path()).unwrap();
        let e = call(&toolbox, "loud", json!({})).await.unwrap_err();
        assert_eq!(
            e.0,
            "`loud` wrote more than 1 MiB (1048576 bytes) to stdout"
        );
    }

    #[test]
    fn missing_program_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let specs = [
            fs_spec(".", None),
            command_spec("t", &["no-such-program-xyz"], Duration::from_secs(1)),
        ];
        let e = Toolbox::from_specs(&specs, dir.path()).unwrap_err();
        assert_eq!(e.key, "tools[1].command");
        assert_eq!(e.message, "program `no-such-program-xyz` not found on PATH");

        let specs = [command_spec("t", &["./bin/tool"], Duration::from_secs(1))];
        let e = Toolbox::from_specs(&specs, dir.path()).unwrap_err();
        assert_eq!(e.key, "tools[0].command");
        assert!(
            e.message.starts_with("program `./bin/tool` does not exist"),
            "{e}"
        );
    }

    #[test]
    fn invalid_schema_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = command_spec("t", &["cat"], Duration::from_secs(1));
        if let ToolSpec::Command(c) = &mut spec {
            c.args_schema = json!({"type": "object", "properties": {"n": {"type": "integr"}}});
        }
        let e = Toolbox::from_specs(&[spec], dir.path()).unwrap_err();
        assert_eq!(e.key, "tools[0].args_schema");
        assert!(e.message.starts_with("is not a valid JSON Schema"), "{e}");
    }
}

mod custom_tools {
    use super::*;

    struct Fixed(chassis_core::ToolDef);

    #[async_trait::async_trait]
    impl Tool for Fixed {
        fn def(&self) -> &chassis_core::ToolDef {
            &self.0
        }

        async fn call(&self, _args: Value, _ctx: &CallContext) -> Result<String, ToolError> {
            Ok("fixed".into())
        }
    }

    fn fixed(name: &str, parameters: Value) -> Arc<dyn Tool> {
        Arc::new(Fixed(chassis_core::ToolDef {
            name: name.into(),
            description: String::new(),
            parameters,
            risk: RiskClass::ReadOnly,
            idempotent: false,
            max_attempts: 1,
        }))
    }

    #[tokio::test]
    async fn new_keeps_declaration_order() {
        let toolbox = Toolbox::new(vec![
            fixed("b", json!({"type": "object"})),
            fixed("a", json!({"type": "object"})),
        ])
        .unwrap();
        assert_eq!(names(&toolbox), ["b", "a"]);
        assert_eq!(format!("{toolbox:?}"), r#"["b", "a"]"#);
        assert_eq!(call(&toolbox, "a", json!({})).await.unwrap(), "fixed");
    }

    #[test]
    fn new_refuses_duplicates_and_bad_schemas() {
        let e = Toolbox::new(vec![
            fixed("a", json!({"type": "object"})),
            fixed("a", json!({"type": "object"})),
        ])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "tools[1]: tool name `a` is already defined by tools[0]"
        );
        let e = Toolbox::new(vec![fixed("a", json!({"type": 5}))]).unwrap_err();
        assert_eq!(e.key, "tools[0].parameters");
    }
}
