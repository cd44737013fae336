//! Engine integration tests: real runs through the real HTTP providers against the mock model.

mod anthropic;
mod approvals;
mod compat;
mod degrade;
mod drivers;
mod limits;
mod redaction;
mod resilience;
mod rust_tools;
mod workers;

use std::path::{Path, PathBuf};

/// Writes a file, creating parent directories.
pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// A Python tool script under `dir/tools`, returning its path.
pub fn python_tool(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join("tools").join(format!("{name}.py"));
    write(&path, body);
    path
}

/// The Python interpreter for tool scripts: the system one when present, because version
/// manager shims (pyenv) add hundreds of milliseconds to every start.
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}
