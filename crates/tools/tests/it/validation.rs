use super::*;

async fn toolbox(dir: &Path) -> Toolbox {
    let mut pay = python("pay", "print('paid')");
    if let ToolSpec::Command(c) = &mut pay {
        c.args_schema = json!({
            "type": "object",
            "properties": {"amount": {"type": "number", "minimum": 0}},
            "required": ["amount"],
        });
    }
    build(&[fs_spec(".", Some(&["read_file", "list_dir"])), pay], dir)
        .await
        .unwrap()
}

#[tokio::test]
async fn unknown_tool_lists_the_granted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = toolbox(dir.path()).await;
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

#[tokio::test]
async fn arguments_that_are_not_json_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = toolbox(dir.path()).await;
    assert_eq!(
        refusal(&toolbox, "read_file", "{\"path\": "),
        "arguments for `read_file` are not valid JSON: EOF while parsing a value at line 1 column 9"
    );
    assert!(matches!(
        toolbox.prepare("read_file", "{]"),
        Err(Refusal::UnparsableArguments { .. })
    ));
}

#[tokio::test]
async fn arguments_that_are_not_an_object_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = toolbox(dir.path()).await;
    assert_eq!(
        refusal(&toolbox, "read_file", "\"notes.txt\""),
        "arguments for `read_file` do not match its schema: the arguments must be a JSON object, not a string"
    );
}

#[tokio::test]
async fn wrong_type_is_refused_with_its_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = toolbox(dir.path()).await;
    assert_eq!(
        refusal(&toolbox, "read_file", r#"{"path": 7}"#),
        r#"arguments for `read_file` do not match its schema: /path: 7 is not of type "string""#
    );
    assert_eq!(
        refusal(&toolbox, "pay", r#"{"amount": -5}"#),
        "arguments for `pay` do not match its schema: /amount: -5 is less than the minimum of 0"
    );
}

#[tokio::test]
async fn missing_required_and_extra_properties_are_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = toolbox(dir.path()).await;
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

#[tokio::test]
async fn valid_arguments_come_back_parsed_with_the_tool() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = toolbox(dir.path()).await;
    let (args, tool) = toolbox.prepare("pay", r#"{"amount": 5}"#).unwrap();
    assert_eq!(args, json!({"amount": 5}));
    assert_eq!(tool.def().name, "pay");
    assert!(toolbox.get("pay").is_some());
    assert!(toolbox.get("write_file").is_none());
}

#[tokio::test]
async fn arguments_past_the_bound_are_refused_before_they_are_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = toolbox(dir.path()).await;
    // 5 MiB that are not even JSON: refused for their size, so never parsed.
    let huge = format!("{{\"path\": \"{}", "a".repeat(5 * 1024 * 1024));
    assert_eq!(
        refusal(&toolbox, "read_file", &huge),
        "arguments for `read_file` are 5242890 bytes, more than the 1048576 this agent accepts \
         (limits.max_tool_args_bytes); send less, e.g. split the work into several calls"
    );
    let tight = toolbox.with_bounds(chassis_core::spec::ToolBounds {
        max_args_bytes: 20,
        max_result_bytes: 1024,
    });
    assert!(tight.prepare("read_file", r#"{"path": "a.txt"}"#).is_ok());
    assert!(matches!(
        tight.prepare("read_file", r#"{"path": "a-longer-name.txt"}"#),
        Err(Refusal::ArgumentsTooLarge {
            bytes: 29,
            limit: 20,
            ..
        })
    ));
}

#[tokio::test]
async fn results_past_the_bound_are_clipped_with_their_size_named() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = build(&[python("big", "print('x' * 300000)")], dir.path())
        .await
        .unwrap()
        .with_bounds(chassis_core::spec::ToolBounds {
            max_args_bytes: 1024,
            max_result_bytes: 1000,
        });
    let result = call(&toolbox, "big", json!({})).await.unwrap();
    assert_eq!(
        result,
        format!(
            "{}\n… [result clipped: it was 300000 bytes; limits.max_tool_result_bytes is 1000]",
            "x".repeat(1000)
        )
    );
}
