//! The agent version: which changes make a new one, and which do not.

use chassis_engine::Agent;

use crate::util::{agent_toml, nowhere};

/// The fingerprint of an agent written with `spec` and `prompt`.
async fn version(spec: &str, prompt: &str) -> String {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(dir.path().join("notes")).expect("notes directory");
    std::fs::write(dir.path().join("prompt.md.j2"), prompt).expect("prompt");
    std::fs::write(dir.path().join("agent.toml"), spec).expect("spec");
    Agent::load(&dir.path().join("agent.toml"))
        .await
        .expect("agent loads")
        .version
}

const PROMPT: &str = "Answer from the notes: {{ input }}\n";

/// The test agent plus a command tool with a schema and a risk class.
fn spec_with_tool(schema_type: &str, risk: &str) -> String {
    format!(
        r#"{}
[[tools]]
name = "page"
description = "Page someone"
command = ["true"]
args_schema = {{ type = "object", properties = {{ who = {{ type = "{schema_type}" }} }} }}
risk = "{risk}"
"#,
        agent_toml(nowhere())
    )
}

#[tokio::test]
async fn formatting_and_comments_keep_the_version() {
    let base = version(&spec_with_tool("string", "irreversible"), PROMPT).await;
    assert_eq!(base.len(), 12, "a short hash: {base}");
    let reformatted = spec_with_tool("string", "irreversible")
        .replace(
            "[model]\n",
            "# the model section\n[model]   # trailing comment\n\n",
        )
        .replace("max_tokens = 256", "max_tokens    =    256")
        .replace(
            "prompt = \"prompt.md.j2\"",
            "prompt = 'prompt.md.j2'  # single quotes",
        );
    assert_ne!(reformatted, spec_with_tool("string", "irreversible"));
    assert_eq!(version(&reformatted, PROMPT).await, base);
}

#[tokio::test]
async fn prompt_tools_and_models_change_the_version() {
    let base = version(&spec_with_tool("string", "irreversible"), PROMPT).await;
    let changes = [
        (
            "the prompt",
            version(
                &spec_with_tool("string", "irreversible"),
                "Answer briefly: {{ input }}\n",
            )
            .await,
        ),
        (
            "a tool schema",
            version(&spec_with_tool("integer", "irreversible"), PROMPT).await,
        ),
        (
            "a risk class",
            version(&spec_with_tool("string", "reversible"), PROMPT).await,
        ),
        (
            "the model",
            version(
                &spec_with_tool("string", "irreversible")
                    .replace("mock:desk-model", "mock:desk-model-2")
                    .replace(
                        "[pricing.\"mock:desk-model\"]",
                        "[pricing.\"mock:desk-model-2\"]",
                    ),
                PROMPT,
            )
            .await,
        ),
        (
            "the tools granted",
            version(
                &spec_with_tool("string", "irreversible").replace(
                    "only = [\"read_file\", \"list_dir\"]",
                    "only = [\"read_file\"]",
                ),
                PROMPT,
            )
            .await,
        ),
    ];
    for (what, changed) in changes {
        assert_ne!(changed, base, "changing {what} must change the version");
    }
}

#[tokio::test]
async fn approvals_pricing_and_command_arguments_change_the_version() {
    let base = version(&spec_with_tool("string", "irreversible"), PROMPT).await;
    let changed = |from: &str, to: &str| {
        let spec = spec_with_tool("string", "irreversible");
        assert!(spec.contains(from), "{from}");
        spec.replace(from, to)
    };
    let changes = [
        (
            "only the approvals",
            format!(
                "{}[approvals]\nirreversible = \"auto\"\n",
                spec_with_tool("string", "irreversible")
            ),
        ),
        ("only the pricing", changed("input = 1.0", "input = 1.5")),
        (
            "only a tool's command arguments",
            changed("command = [\"true\"]", "command = [\"true\", \"--really\"]"),
        ),
        (
            "only a tool's environment",
            changed(
                "command = [\"true\"]",
                "command = [\"true\"]\nenv = [\"PAGER_TOKEN\"]",
            ),
        ),
        (
            "only the provider's retries",
            changed("max_attempts = 1", "max_attempts = 2"),
        ),
        (
            "only the redaction",
            format!(
                "{}[redact]\npatterns = [\"pg-[0-9]{{6}}\"]\n",
                spec_with_tool("string", "irreversible")
            ),
        ),
    ];
    for (what, spec) in changes {
        assert_ne!(
            version(&spec, PROMPT).await,
            base,
            "changing {what} must change the version"
        );
    }
}
