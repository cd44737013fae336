//! What a child process wrote to a journal's files and how often it synced them, counted by
//! `strace` between two marks the child leaves.
//!
//! The child is run under `strace -f -y -s 0 -e trace=openat,write,pwrite64,writev,pwritev,
//! fsync,fdatasync`: `-y` names the file behind every descriptor, so each write's bytes (its
//! return value) and each sync are put to the database file, its WAL or anything else. The child
//! marks the span to count by trying to open two files that do not exist ([`mark`]), so start-up,
//! warm-up and whatever follows are left out. Bytes here are what SQLite handed the kernel
//! (the `wchar` of `/proc/self/io`, per file); what reaches the block layer is counted in whole
//! pages and read from `write_bytes` by the child itself.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;

/// The name of the file whose failed opening marks the start of the span counted.
const BEGIN: &str = "chassis-bench-mark-begin";
/// … and its end.
const END: &str = "chassis-bench-mark-end";

/// Marks the start (`true`) or the end of the span the parent counts: an `openat` of a file
/// that does not exist in `dir`, which `strace` shows and which does nothing else.
pub(crate) fn mark(dir: &Path, begin: bool) {
    let name = if begin { BEGIN } else { END };
    let _ = std::fs::File::open(dir.join(name));
}

/// The arguments that make `strace` write what [`Tally::parse`] reads into `out`.
pub(crate) fn strace_args(out: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-f",
        "-y",
        "-s",
        "0",
        "-e",
        "trace=openat,write,pwrite64,writev,pwritev,fsync,fdatasync",
        "-o",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(out.as_os_str().to_owned());
    args
}

/// Bytes written and syncs, for one file or one group of files.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Io {
    pub(crate) bytes: f64,
    pub(crate) syncs: f64,
}

impl Io {
    pub(crate) fn plus(self, other: Io) -> Io {
        Io {
            bytes: self.bytes + other.bytes,
            syncs: self.syncs + other.syncs,
        }
    }
}

/// What the marked span wrote, by file.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Tally {
    /// The database file (`DB`): checkpoints copying pages back, and the header.
    pub(crate) db: Io,
    /// Its write-ahead log (`DB-wal`): every commit's frames.
    pub(crate) wal: Io,
    /// Every other file but sockets and pipes (logs, the shared-memory index, a directory).
    pub(crate) other: Io,
}

impl Tally {
    /// The journal's two files together.
    pub(crate) fn journal(&self) -> Io {
        self.db.plus(self.wal)
    }

    /// Reads `strace`'s output (made with [`strace_args`]) for the writes and syncs between the
    /// marks, putting each to `db`, its WAL or the rest. `None` when a mark is missing.
    pub(crate) fn parse(trace: &str, db: &Path) -> Option<Tally> {
        let db = db.to_string_lossy();
        let wal = format!("{db}-wal");
        let mut tally = Tally::default();
        let mut inside = false;
        let mut seen_begin = false;
        let mut seen_end = false;
        // A call split by another thread's ("<unfinished ...>" then "<... resumed>"): its
        // name and file, by the thread's id.
        let mut pending: HashMap<&str, (&str, String)> = HashMap::new();
        for line in trace.lines() {
            let (pid, rest) = line.split_once(' ').unwrap_or(("", line));
            let rest = rest.trim_start();
            if rest.contains(BEGIN) {
                inside = true;
                seen_begin = true;
                continue;
            }
            if rest.contains(END) {
                inside = false;
                seen_end = true;
                continue;
            }
            let (call, file, result) = if let Some(resumed) = rest.strip_prefix("<... ") {
                let Some((call, file)) = pending.remove(pid) else {
                    continue;
                };
                let _ = resumed;
                (call, file, result_of(rest))
            } else {
                let Some((call, args)) = rest.split_once('(') else {
                    continue;
                };
                let file = file_of(args);
                if rest.ends_with("<unfinished ...>") {
                    pending.insert(pid, (call, file));
                    continue;
                }
                (call, file, result_of(rest))
            };
            if !inside {
                continue;
            }
            let io = if file == db {
                &mut tally.db
            } else if file == wal {
                &mut tally.wal
            } else if file.starts_with("socket:") || file.starts_with("pipe:") || file.is_empty() {
                continue;
            } else {
                &mut tally.other
            };
            match call {
                "fsync" | "fdatasync" => io.syncs += 1.0,
                "write" | "pwrite64" | "writev" | "pwritev" => {
                    io.bytes += result.filter(|n| *n > 0).unwrap_or(0) as f64;
                }
                _ => {}
            }
        }
        (seen_begin && seen_end).then_some(tally)
    }
}

/// The file `-y` names in a call's first argument: `5</path/to/file>` gives `/path/to/file`
/// (empty when the first argument names none).
fn file_of(args: &str) -> String {
    let Some(start) = args.find('<') else {
        return String::new();
    };
    if args[..start].contains(',') {
        return String::new();
    }
    let path = &args[start + 1..];
    // The path ends at the `>` that ends the argument.
    let end = path
        .match_indices('>')
        .map(|(i, _)| i)
        .find(|&i| matches!(path[i + 1..].chars().next(), None | Some(',' | ')' | ' ')));
    path[..end.unwrap_or(path.len())].to_string()
}

/// A call's return value: what follows the last ` = `.
fn result_of(line: &str) -> Option<i64> {
    let (_, value) = line.rsplit_once(" = ")?;
    value.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_syncs_go_to_their_files_between_the_marks() {
        let trace = "\
101 pwrite64(5</d/j.db-wal>, \"\"..., 4120, 0) = 4120
101 openat(AT_FDCWD</d>, \"/d/chassis-bench-mark-begin\", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory)
101 pwrite64(5</d/j.db-wal>, \"\"..., 4120, 4152) = 4120
102 write(9<socket:[77]>, \"\"..., 300) = 300
101 fdatasync(5</d/j.db-wal> <unfinished ...>
102 write(2<pipe:[12]>, \"\"..., 10) = 10
101 <... fdatasync resumed>) = 0
103 pwrite64(4</d/j.db>, \"\"..., 4096, 8192 <unfinished ...>
101 write(7</d/log.txt>, \"\"..., 12) = 12
103 <... pwrite64 resumed>) = 4096
103 fsync(4</d/j.db>) = 0
101 openat(AT_FDCWD</d>, \"/d/chassis-bench-mark-end\", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory)
101 fdatasync(5</d/j.db-wal>) = 0
";
        let tally = Tally::parse(trace, Path::new("/d/j.db")).expect("both marks are there");
        assert_eq!(
            tally.wal,
            Io {
                bytes: 4120.0,
                syncs: 1.0
            }
        );
        assert_eq!(
            tally.db,
            Io {
                bytes: 4096.0,
                syncs: 1.0
            }
        );
        assert_eq!(
            tally.other,
            Io {
                bytes: 12.0,
                syncs: 0.0
            }
        );
        assert_eq!(tally.journal().bytes, 8216.0);
    }

    #[test]
    fn a_trace_without_its_marks_is_not_counted() {
        assert_eq!(
            Tally::parse("1 fsync(3</d/j.db>) = 0\n", Path::new("/d/j.db")),
            None
        );
    }
}
