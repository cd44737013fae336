use super::*;

async fn toolbox(root: &Path) -> Toolbox {
    build(&[fs_spec(".", None)], root).await.unwrap()
}

#[tokio::test]
async fn defs_describe_the_three_tools() {
    let dir = tempfile::tempdir().unwrap();
    let defs = toolbox(dir.path()).await.defs();
    let summary: Vec<(&str, RiskClass)> = defs.iter().map(|d| (d.name.as_str(), d.risk)).collect();
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
    let toolbox = toolbox(dir.path()).await;
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
    let toolbox = build(&[fs_spec("./data", None)], dir.path()).await.unwrap();
    assert_eq!(
        call(&toolbox, "list_dir", json!({})).await.unwrap(),
        "x.txt"
    );
    let e = call(&toolbox, "read_file", json!({"path": "../spec-level.txt"})).await;
    assert_eq!(
        e.unwrap_err().message().to_string(),
        "path `../spec-level.txt` escapes the tool root (with `..`)"
    );
}

#[tokio::test]
async fn parent_components_are_refused_by_every_tool() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let toolbox = toolbox(&dir.path().join("sub")).await;
    let escapes = "path `../x` escapes the tool root (with `..`)";
    let e = call(&toolbox, "read_file", json!({"path": "../x"}))
        .await
        .unwrap_err();
    assert_eq!(e.message(), escapes);
    // A refusal of the arguments is the tool's answer: not retried.
    assert!(!e.may_retry(), "{e:?}");
    let e = call(&toolbox, "list_dir", json!({"path": "../x"})).await;
    assert_eq!(e.unwrap_err().message().to_string(), escapes);
    let e = call(
        &toolbox,
        "write_file",
        json!({"path": "../x", "content": "x"}),
    )
    .await;
    assert_eq!(e.unwrap_err().message().to_string(), escapes);
    assert!(!dir.path().join("x").exists());
    // Even a `..` that would stay inside is refused: the rule is simple to state.
    let e = call(&toolbox, "list_dir", json!({"path": "a/.."})).await;
    assert_eq!(
        e.unwrap_err().message().to_string(),
        "path `a/..` escapes the tool root (with `..`)"
    );
}

#[tokio::test]
async fn absolute_paths_are_refused_by_every_tool() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = toolbox(dir.path()).await;
    let target = dir.path().join("abs.txt");
    let abs = target.to_str().unwrap();
    let expected = format!("path `{abs}` is absolute; paths are relative to the tool root");
    let e = call(&toolbox, "write_file", json!({"path": abs, "content": "x"})).await;
    assert_eq!(e.unwrap_err().message().to_string(), expected);
    assert!(!target.exists());
    std::fs::write(&target, "x").unwrap();
    let e = call(&toolbox, "read_file", json!({"path": abs})).await;
    assert_eq!(e.unwrap_err().message().to_string(), expected);
    let e = call(&toolbox, "list_dir", json!({"path": "/"})).await;
    assert_eq!(
        e.unwrap_err().message().to_string(),
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
    let toolbox = toolbox(root.path()).await;
    let via_link = "escapes the tool root (through a symbolic link)";

    let e = call(&toolbox, "read_file", json!({"path": "out/secret.txt"})).await;
    assert_eq!(
        e.unwrap_err().message().to_string(),
        format!("path `out/secret.txt` {via_link}")
    );
    let e = call(&toolbox, "read_file", json!({"path": "secret.txt"})).await;
    assert_eq!(
        e.unwrap_err().message().to_string(),
        format!("path `secret.txt` {via_link}")
    );

    let e = call(&toolbox, "list_dir", json!({"path": "out"})).await;
    assert_eq!(
        e.unwrap_err().message().to_string(),
        format!("path `out` {via_link}")
    );

    let e = call(
        &toolbox,
        "write_file",
        json!({"path": "out/new/file.txt", "content": "x"}),
    )
    .await;
    assert_eq!(
        e.unwrap_err().message().to_string(),
        format!("path `out/new/file.txt` {via_link}")
    );
    assert!(!outside.path().join("new").exists());
    let e = call(
        &toolbox,
        "write_file",
        json!({"path": "secret.txt", "content": "x"}),
    )
    .await;
    assert_eq!(
        e.unwrap_err().message().to_string(),
        format!("path `secret.txt` {via_link}")
    );
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
    let toolbox = toolbox(root.path()).await;
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

#[tokio::test]
async fn only_grants_a_subset() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = build(&[fs_spec(".", Some(&["read_file"]))], dir.path())
        .await
        .unwrap();
    assert_eq!(names(&toolbox), ["read_file"]);
    assert_eq!(
        refusal(&toolbox, "write_file", r#"{"path": "x", "content": ""}"#),
        "unknown tool `write_file`; available tools: read_file"
    );
}

#[tokio::test]
async fn missing_root_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let specs = [python("t", "pass"), fs_spec("./data", None)];
    let e = build(&specs, dir.path()).await.unwrap_err();
    assert_eq!(e.key, "tools[1].root");
    assert_eq!(e.message, "directory ./data does not exist");
    assert_eq!(
        e.to_string(),
        "tools[1].root: directory ./data does not exist"
    );

    std::fs::write(dir.path().join("data"), "").unwrap();
    let e = build(&specs, dir.path()).await.unwrap_err();
    assert_eq!(e.to_string(), "tools[1].root: ./data is not a directory");
}

/// Makes a FIFO at `path` (with the system's `mkfifo`: the call itself is unsafe in Rust).
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_fifo_in_the_root_is_refused_at_once_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("pipe"));
    let toolbox = toolbox(dir.path()).await;
    // Before, opening the FIFO blocked until someone opened its other end: forever.
    let deadline = Duration::from_secs(10);
    let write = tokio::time::timeout(
        deadline,
        call(
            &toolbox,
            "write_file",
            json!({"path": "pipe", "content": "x"}),
        ),
    )
    .await
    .expect("write_file returns at once");
    assert_eq!(
        write.unwrap_err().message(),
        "`pipe` is not a regular file (a FIFO, socket or device is never opened)"
    );
    let read = tokio::time::timeout(
        deadline,
        call(&toolbox, "read_file", json!({"path": "pipe"})),
    )
    .await
    .expect("read_file returns at once");
    assert_eq!(
        read.unwrap_err().message(),
        "`pipe` is not a regular file (a FIFO, socket or device is never opened)"
    );
    let list = call(&toolbox, "list_dir", json!({})).await.unwrap();
    assert_eq!(list, "pipe");
}

#[tokio::test]
async fn a_file_with_another_name_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious"), "keep me").unwrap();
    std::fs::hard_link(outside.path().join("precious"), dir.path().join("linked")).unwrap();
    let toolbox = toolbox(dir.path()).await;
    let e = call(
        &toolbox,
        "write_file",
        json!({"path": "linked", "content": "overwritten"}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.message(),
        "`linked` has 2 hard links; write_file does not write a file that has other names, \
         which may be outside the tool root"
    );
    assert_eq!(
        std::fs::read_to_string(outside.path().join("precious")).unwrap(),
        "keep me"
    );
    // An ordinary file is still replaced whole.
    std::fs::write(dir.path().join("plain"), "a long old content").unwrap();
    call(
        &toolbox,
        "write_file",
        json!({"path": "plain", "content": "new"}),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("plain")).unwrap(),
        "new"
    );
}

#[tokio::test]
async fn an_fs_entry_takes_a_timeout() {
    let spec = chassis_core::spec::AgentSpec::parse(
        "[agent]\nname = \"a\"\nprompt = \"p\"\n[model]\nprimary = \"openai:m\"\n\
         [[tools]]\nuse = \"builtin:fs\"\nroot = \".\"\ntimeout = \"250ms\"\n",
    )
    .unwrap();
    let ToolSpec::Fs { timeout, .. } = &spec.tools[0] else {
        panic!("not an fs entry")
    };
    assert_eq!(*timeout, Duration::from_millis(250));
}
