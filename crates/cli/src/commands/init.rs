//! `chassis init [DIR]`: a small agent project to start from.
//!
//! A commented spec, a prompt template, a command tool (Python, run without a shell), an
//! evaluation suite and a script for the mock model, so that the agent can be checked, run and
//! evaluated at once without an API key. Nothing that exists is overwritten.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exit::UsageError;

// Arguments of `chassis init`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Where to write the project (created if needed)
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The agent's name [default: the directory's name]
    #[arg(long)]
    name: Option<String>,
}

/// The project's files: path within the project, and text (`{{NAME}}` is the agent's name).
const FILES: [(&str, &str); 6] = [
    ("agent.toml", include_str!("../init/agent.toml")),
    ("prompt.md.j2", include_str!("../init/prompt.md.j2")),
    ("tools/word_count.py", include_str!("../init/word_count.py")),
    ("suite.toml", include_str!("../init/suite.toml")),
    ("mock-script.toml", include_str!("../init/mock-script.toml")),
    ("README.md", include_str!("../init/README.md")),
];

/// Writes the project, refusing (and writing nothing) if any of its files exists.
pub(crate) fn run(args: Args) -> anyhow::Result<u8> {
    let name = match args.name {
        Some(name) => check_name(&name)?,
        None => name_from(&args.dir),
    };
    let existing: Vec<String> = FILES
        .iter()
        .map(|(file, _)| args.dir.join(file))
        .filter(|path| path.symlink_metadata().is_ok())
        .map(|path| path.display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(UsageError(format!(
            "{} exist(s) already; chassis init overwrites nothing (choose another directory, or move them)",
            existing.join(", ")
        ))
        .into());
    }
    for (file, text) in FILES {
        let path = args.dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text.replace("{{NAME}}", &name))
            .with_context(|| format!("cannot write {}", path.display()))?;
        outln!("{}", path.display());
    }
    // The project's own journal, found from the project and any directory below it.
    let journal = args.dir.join(crate::discover::DIR);
    std::fs::create_dir_all(&journal)
        .with_context(|| format!("cannot create {}", journal.display()))?;
    let cd = if args.dir == Path::new(".") {
        String::new()
    } else {
        format!("cd {} && ", args.dir.display())
    };
    noteln!("\nagent {name} written; try it against the mock model, no API key needed:");
    noteln!("  {cd}chassis mock-model --script mock-script.toml --port 8089 &");
    noteln!("  export OPENAI_BASE_URL=http://127.0.0.1:8089/v1");
    noteln!("  chassis check agent.toml");
    noteln!("  chassis run agent.toml --input \"Count the words in: the quick brown fox\"");
    noteln!("  chassis eval suite.toml");
    Ok(crate::exit::COMPLETED)
}

/// The agent's name from its directory: lowercase letters, digits and dashes.
fn name_from(dir: &Path) -> String {
    let base = std::path::absolute(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut name = String::new();
    for c in base.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-').to_string();
    if name.is_empty() {
        "my-agent".to_string()
    } else {
        name
    }
}

/// `--name`: it goes into TOML strings and file headers, so it is kept simple.
fn check_name(name: &str) -> Result<String, UsageError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(name.to_string())
    } else {
        Err(UsageError(format!(
            "--name {name}: use letters, digits, `-`, `_` and `.`"
        )))
    }
}
