//! Confining file paths to a tool root.
//!
//! A path from the model is refused when it is absolute, has a `..` component, or resolves
//! (following symbolic links) to somewhere outside the canonicalized root.
//! The check and the later file operation are separate system calls, so a process that swaps a
//! directory for a symbolic link between the two can still escape; the root is meant to keep a
//! model's mistakes contained, not to sandbox a hostile local user.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::ToolError;

/// A directory that file tools may not leave.
#[derive(Debug)]
pub(crate) struct Root {
    /// Canonical (absolute, symlink-free) path of the root.
    dir: PathBuf,
}

/// Where a relative path lands: an existing directory or file under the root, plus the
/// components below it that do not exist yet.
struct Located {
    existing: PathBuf,
    missing: Vec<OsString>,
}

impl Root {
    /// Opens `written` (as it appears in the spec) relative to `base_dir`; the error is the
    /// message for the spec's `root` key.
    pub(crate) fn open(written: &str, base_dir: &Path) -> Result<Root, String> {
        let dir = base_dir.join(written);
        match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("{written} is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!("directory {written} does not exist"));
            }
            Err(e) => return Err(format!("cannot open directory {written}: {}", describe(&e))),
        }
        let dir = std::fs::canonicalize(&dir)
            .map_err(|e| format!("cannot resolve directory {written}: {}", describe(&e)))?;
        Ok(Root { dir })
    }

    /// Resolves `rel` to an existing file or directory under the root. Blocking: call it
    /// from the blocking task that does the rest of the tool's file work, so one call is one
    /// hand-off to tokio's blocking pool, not one per system call.
    pub(crate) fn existing(&self, rel: &str) -> Result<PathBuf, ToolError> {
        let located = self.locate(rel)?;
        if !located.missing.is_empty() {
            return Err(ToolError::answered(format!("path `{rel}` does not exist")));
        }
        Ok(located.existing)
    }

    /// Resolves `rel` to a path under the root that may not exist yet; every directory on the
    /// way that does not exist will be created under the root. Blocking, like
    /// [`Root::existing`].
    pub(crate) fn writable(&self, rel: &str) -> Result<PathBuf, ToolError> {
        let located = self.locate(rel)?;
        let mut path = located.existing;
        path.extend(located.missing);
        Ok(path)
    }

    fn locate(&self, rel: &str) -> Result<Located, ToolError> {
        let components = checked_components(rel)?;
        // Walk up to the deepest ancestor that exists; canonicalizing it resolves every
        // symbolic link on the way, which is what the containment check must see.
        let mut depth = components.len();
        loop {
            let mut candidate = self.dir.clone();
            candidate.extend(&components[..depth]);
            match std::fs::canonicalize(&candidate) {
                Ok(existing) => {
                    if !existing.starts_with(&self.dir) {
                        return Err(escapes(rel, "through a symbolic link"));
                    }
                    if depth < components.len() {
                        // The first missing component may still be a link to a target that
                        // does not exist; writing through it would create the target.
                        let first_missing = candidate.join(&components[depth]);
                        if std::fs::symlink_metadata(&first_missing).is_ok() {
                            return Err(escapes(rel, "through a symbolic link with no target"));
                        }
                    }
                    return Ok(Located {
                        existing,
                        missing: components[depth..].to_vec(),
                    });
                }
                // A missing root (depth 0) is reported below rather than skipped.
                Err(e) if e.kind() == io::ErrorKind::NotFound && depth > 0 => depth -= 1,
                Err(e) => {
                    return Err(ToolError::failed(format!(
                        "cannot resolve path `{rel}`: {}",
                        describe(&e)
                    )));
                }
            }
        }
    }
}

/// The normal components of `rel`, or a refusal when it is absolute or climbs with `..`.
fn checked_components(rel: &str) -> Result<Vec<OsString>, ToolError> {
    let mut components = Vec::new();
    for component in Path::new(rel).components() {
        match component {
            Component::Normal(name) => components.push(name.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(escapes(rel, "with `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(ToolError::answered(format!(
                    "path `{rel}` is absolute; paths are relative to the tool root"
                )));
            }
        }
    }
    Ok(components)
}

fn escapes(rel: &str, how: &str) -> ToolError {
    ToolError::answered(format!("path `{rel}` escapes the tool root ({how})"))
}

/// An IO error in the words a model (or person) needs, without the OS error number.
pub(crate) fn describe(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "it does not exist".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::NotADirectory => "a component of the path is not a directory".to_string(),
        io::ErrorKind::IsADirectory => "it is a directory".to_string(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_parent_paths_are_refused_by_syntax() {
        assert_eq!(
            checked_components("/etc/passwd")
                .unwrap_err()
                .message()
                .to_string(),
            "path `/etc/passwd` is absolute; paths are relative to the tool root"
        );
        assert_eq!(
            checked_components("a/../../x")
                .unwrap_err()
                .message()
                .to_string(),
            "path `a/../../x` escapes the tool root (with `..`)"
        );
        assert_eq!(
            checked_components("./a/./b").unwrap(),
            vec![OsString::from("a"), OsString::from("b")]
        );
        assert!(checked_components("").unwrap().is_empty());
    }

    #[test]
    fn open_names_the_root_as_written() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Root::open("./data", dir.path()).unwrap_err(),
            "directory ./data does not exist"
        );
        std::fs::write(dir.path().join("f"), "x").unwrap();
        assert_eq!(
            Root::open("f", dir.path()).unwrap_err(),
            "f is not a directory"
        );
        assert!(Root::open(".", dir.path()).is_ok());
    }

    #[test]
    fn dangling_symlink_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("new"), dir.path().join("link")).unwrap();
        let root = Root::open(".", dir.path()).unwrap();
        let e = root.writable("link").unwrap_err();
        assert_eq!(
            e.message().to_string(),
            "path `link` escapes the tool root (through a symbolic link with no target)"
        );
    }

    #[test]
    fn missing_components_land_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(".", dir.path()).unwrap();
        let path = root.writable("a/b/c.txt").unwrap();
        assert_eq!(path, root.dir.join("a/b/c.txt"));
        assert_eq!(
            root.existing("a/b/c.txt")
                .unwrap_err()
                .message()
                .to_string(),
            "path `a/b/c.txt` does not exist"
        );
    }
}
