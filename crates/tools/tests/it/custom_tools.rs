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

#[tokio::test]
async fn rust_tools_join_the_spec_tools_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let toolbox = build(&[fs_spec(".", Some(&["read_file"]))], dir.path())
        .await
        .unwrap()
        .with_tools(vec![fixed("lookup", json!({"type": "object"}))])
        .unwrap();
    assert_eq!(names(&toolbox), ["read_file", "lookup"]);
    assert_eq!(call(&toolbox, "lookup", json!({})).await.unwrap(), "fixed");

    let e = build(&[fs_spec(".", Some(&["read_file"]))], dir.path())
        .await
        .unwrap()
        .with_tools(vec![fixed("read_file", json!({"type": "object"}))])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "rust_tools[0]: tool name `read_file` is already defined by the spec's tool `read_file`"
    );
    let e = Toolbox::new(Vec::new())
        .unwrap()
        .with_tools(vec![fixed("bad", json!({"type": 5}))])
        .unwrap_err();
    assert_eq!(e.key, "rust_tools[0].parameters");
}

#[tokio::test]
async fn uri_date_time_and_email_formats_are_checked_before_a_call() {
    let schema = json!({
        "type": "object",
        "properties": {
            "link": {"type": "string", "format": "uri"},
            "when": {"type": "string", "format": "date-time"},
            "to": {"type": "string", "format": "email"},
            "host": {"type": "string", "format": "ipv4"},
        },
    });
    let toolbox = Toolbox::new(vec![fixed("send", schema)]).unwrap();
    let good = json!({
        "link": "https://example.com/a?b=c",
        "when": "2026-12-07T06:40:00Z",
        "to": "ops@example.com",
        "host": "not checked",
    });
    assert_eq!(call(&toolbox, "send", good).await.unwrap(), "fixed");
    for (field, bad, format) in [
        ("link", "example.com/no-scheme", "uri"),
        ("when", "7 December 2026", "date-time"),
        ("to", "ops at example.com", "email"),
    ] {
        let raw = json!({ field: bad }).to_string();
        assert_eq!(
            refusal(&toolbox, "send", &raw),
            format!(
                "arguments for `send` do not match its schema: /{field}: \"{bad}\" is not a \"{format}\""
            )
        );
    }
}
