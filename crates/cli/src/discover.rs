//! Which journal a command uses when neither `--db` nor `CHASSIS_DB` names one.
//!
//! As git finds `.git`, chassis walks up from the current directory to the nearest directory
//! holding a `.chassis/` directory and uses its `chassis.db`; so `chassis runs` works from any
//! subdirectory of a project. Without one, the journal is `./.chassis/chassis.db`.

use std::path::{Path, PathBuf};

/// The directory that marks a project's journal.
pub(crate) const DIR: &str = ".chassis";

/// The journal file inside [`DIR`].
pub(crate) const FILE: &str = "chassis.db";

/// The journal for a command: `explicit` (from `--db` or `CHASSIS_DB`) when given, else the
/// nearest `.chassis/chassis.db` above `cwd`, else `.chassis/chassis.db` relative to `cwd`.
pub(crate) fn journal(explicit: Option<PathBuf>, cwd: Option<&Path>) -> PathBuf {
    if let Some(db) = explicit {
        return db;
    }
    let fallback = Path::new(DIR).join(FILE);
    let Some(cwd) = cwd else {
        return fallback;
    };
    cwd.ancestors()
        .find(|dir| dir.join(DIR).is_dir())
        .map(|dir| relative_to(&dir.join(DIR).join(FILE), cwd))
        .unwrap_or(fallback)
}

/// `path` as the user would type it from `cwd`: `.chassis/chassis.db` in the directory itself,
/// `../../.chassis/chassis.db` from below it.
fn relative_to(path: &Path, cwd: &Path) -> PathBuf {
    let mut up = PathBuf::new();
    for dir in cwd.ancestors() {
        if let Ok(rest) = path.strip_prefix(dir) {
            return up.join(rest);
        }
        up.push("..");
    }
    path.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_wins_then_nearest_then_fallback() {
        let root = tempfile::tempdir().expect("temporary directory");
        let deep = root.path().join("a/b/c");
        std::fs::create_dir_all(&deep).expect("create dirs");
        let fallback = Path::new(DIR).join(FILE);
        assert_eq!(journal(None, Some(&deep)), fallback);
        std::fs::create_dir(root.path().join("a").join(DIR)).expect("create .chassis");
        assert_eq!(
            journal(None, Some(&deep)),
            Path::new("../..").join(DIR).join(FILE)
        );
        assert_eq!(journal(None, Some(&root.path().join("a"))), fallback);
        assert_eq!(
            journal(Some("x.db".into()), Some(&deep)),
            PathBuf::from("x.db")
        );
    }
}
