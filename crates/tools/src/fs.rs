//! `builtin:fs`: `read_file`, `list_dir` and `write_file`, confined to one root directory.
//!
//! Only regular files are read or written: a FIFO, a socket or a device inside the root could
//! block a call forever or never end, so files are opened without blocking and checked (on the
//! open file, not its path) before a byte moves. A file with more than one hard link is not
//! written, since its other names may be outside the root. Every call has a deadline (the
//! entry's `timeout`): a file on a hung network mount fails the call instead of the run.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chassis_core::{RiskClass, ToolDef};
use serde_json::{Value, json};
use std::io::Read;

use crate::confine::{Root, describe};
use crate::{CallContext, Tool, ToolError};

/// Largest file `read_file` returns: a bigger one would flood the model's context.
const MAX_READ_BYTES: u64 = 1024 * 1024;

/// Most entries `list_dir` returns; the rest are counted.
const MAX_LIST_ENTRIES: usize = 1000;

/// What `list_dir` returns for a directory with nothing in it, so the model sees an answer.
const EMPTY_DIR: &str = "(empty directory)";

/// Builds the `builtin:fs` tools named in `only` (all of them when `None`), in that order.
///
/// `root` is as written in the spec, resolved against `base_dir`; the error is the message for
/// the spec's `root` key.
pub(crate) fn tools(
    root: &str,
    base_dir: &Path,
    only: Option<&[String]>,
    timeout: Duration,
) -> Result<Vec<Arc<dyn Tool>>, String> {
    let root = Arc::new(Root::open(root, base_dir)?);
    let names: Vec<&str> = match only {
        Some(only) => only.iter().map(String::as_str).collect(),
        None => chassis_core::spec::BUILTIN_FS_TOOLS.to_vec(),
    };
    let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
    for name in names {
        if tools.iter().any(|t| t.def().name == name) {
            continue;
        }
        let root = root.clone();
        let tool: Arc<dyn Tool> = match name {
            "read_file" => Arc::new(ReadFile::new(root, timeout)),
            "list_dir" => Arc::new(ListDir::new(root, timeout)),
            "write_file" => Arc::new(WriteFile::new(root, timeout)),
            other => return Err(format!("builtin:fs has no tool `{other}`")),
        };
        tools.push(tool);
    }
    Ok(tools)
}

fn path_property(description: &str) -> Value {
    json!({"type": "string", "minLength": 1, "description": description})
}

/// The string argument `key`; `Toolbox::prepare` has checked it, but a direct caller may not.
fn string_arg<'a>(args: &'a Value, key: &str) -> Result<Option<&'a str>, ToolError> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ToolError::answered(format!(
            "argument `{key}` must be a string"
        ))),
    }
}

fn required_string_arg<'a>(args: &'a Value, key: &str) -> Result<&'a str, ToolError> {
    string_arg(args, key)?
        .ok_or_else(|| ToolError::answered(format!("argument `{key}` is required")))
}

/// `read_file {path}`: the UTF-8 content of one file.
struct ReadFile {
    def: ToolDef,
    root: Arc<Root>,
    timeout: Duration,
}

impl ReadFile {
    fn new(root: Arc<Root>, timeout: Duration) -> ReadFile {
        ReadFile {
            def: ToolDef {
                name: "read_file".to_string(),
                description: "Read a UTF-8 text file and return its content. \
                    The path is relative to the tool root, e.g. \"notes/todo.md\"; \
                    files larger than 1 MiB are refused."
                    .to_string(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "path": path_property("Path of the file, relative to the tool root."),
                    },
                    "required": ["path"],
                    "additionalProperties": false,
                }),
                risk: RiskClass::ReadOnly,
                idempotent: false,
                max_attempts: chassis_core::tool::DEFAULT_TOOL_ATTEMPTS,
            },
            root,
            timeout,
        }
    }
}

#[async_trait::async_trait]
impl Tool for ReadFile {
    fn def(&self) -> &ToolDef {
        &self.def
    }

    async fn call(&self, args: Value, _ctx: &CallContext) -> Result<String, ToolError> {
        let rel = required_string_arg(&args, "path")?.to_string();
        let root = self.root.clone();
        blocking(&self.def.name, self.timeout, move || read_file(&root, &rel)).await
    }
}

/// Runs one tool call's file work on tokio's blocking pool: one hand-off per call rather
/// than one per system call (each `tokio::fs` function is a hand-off of its own), within
/// `timeout`. A system call cannot be interrupted, so work past its deadline is left to finish
/// on its thread; the call fails at once, as one that may have acted.
async fn blocking<F>(tool: &str, timeout: Duration, work: F) -> Result<String, ToolError>
where
    F: FnOnce() -> Result<String, ToolError> + Send + 'static,
{
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(ToolError::failed(format!(
            "the file operation did not finish: {e}"
        ))),
        Err(_elapsed) => Err(ToolError::indeterminate(format!(
            "`{tool}` timed out after {}",
            crate::command::format_duration(timeout)
        ))),
    }
}

/// Opens `path` without waiting for anything: a FIFO opens (or, for writing with no reader,
/// fails) at once instead of blocking until someone is at its other end. Regular files ignore
/// the flag. A symbolic link in the last component is refused: the root check resolved it, so
/// one found now was put there since.
fn open_nonblocking(path: &Path, options: &mut std::fs::OpenOptions) -> std::io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    options.open(path)
}

/// Refuses anything but a regular file, checked on the open file itself so that nothing can be
/// swapped in between the check and the use.
fn regular(file: &File, rel: &str) -> Result<std::fs::Metadata, ToolError> {
    let meta = file
        .metadata()
        .map_err(|e| ToolError::failed(format!("cannot inspect `{rel}`: {}", describe(&e))))?;
    if meta.is_dir() {
        return Err(ToolError::answered(format!(
            "`{rel}` is a directory, not a file"
        )));
    }
    if !meta.is_file() {
        return Err(not_regular(rel));
    }
    Ok(meta)
}

fn not_regular(rel: &str) -> ToolError {
    ToolError::answered(format!(
        "`{rel}` is not a regular file (a FIFO, socket or device is never opened)"
    ))
}

/// An error opening `rel`, in the words of the tool.
fn open_error(e: &std::io::Error, rel: &str, verb: &str) -> ToolError {
    match e.raw_os_error() {
        // A FIFO opened for writing without blocking, with nobody reading it.
        Some(libc::ENXIO) => not_regular(rel),
        Some(libc::ELOOP) => ToolError::failed(format!(
            "`{rel}` became a symbolic link; it is not followed"
        )),
        Some(libc::EISDIR) => ToolError::answered(format!("`{rel}` is a directory, not a file")),
        _ => ToolError::failed(format!("cannot {verb} `{rel}`: {}", describe(e))),
    }
}

fn read_file(root: &Root, rel: &str) -> Result<String, ToolError> {
    let path = root.existing(rel)?;
    let cannot =
        |e: std::io::Error| ToolError::failed(format!("cannot read `{rel}`: {}", describe(&e)));
    let file = open_nonblocking(&path, std::fs::OpenOptions::new().read(true))
        .map_err(|e| open_error(&e, rel, "read"))?;
    let meta = regular(&file, rel)?;
    let too_big = |size: u64| {
        ToolError::answered(format!(
            "`{rel}` is {size} bytes; read_file reads files up to 1 MiB ({MAX_READ_BYTES} bytes)"
        ))
    };
    if meta.len() > MAX_READ_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may have grown since `metadata`; never read more than the limit allows.
    file.take(MAX_READ_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_READ_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        ToolError::answered(format!(
            "`{rel}` is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// `list_dir {path?}`: the entries of one directory, sorted, directories with a trailing `/`.
struct ListDir {
    def: ToolDef,
    root: Arc<Root>,
    timeout: Duration,
}

impl ListDir {
    fn new(root: Arc<Root>, timeout: Duration) -> ListDir {
        ListDir {
            def: ToolDef {
                name: "list_dir".to_string(),
                description: format!(
                    "List a directory: one entry per line, sorted, directories end with '/'. \
                    The path is relative to the tool root and defaults to \".\", the root itself. \
                    At most {MAX_LIST_ENTRIES} entries are shown."
                ),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "path": path_property(
                            "Path of the directory, relative to the tool root; defaults to \".\"."
                        ),
                    },
                    "additionalProperties": false,
                }),
                risk: RiskClass::ReadOnly,
                idempotent: false,
                max_attempts: chassis_core::tool::DEFAULT_TOOL_ATTEMPTS,
            },
            root,
            timeout,
        }
    }
}

#[async_trait::async_trait]
impl Tool for ListDir {
    fn def(&self) -> &ToolDef {
        &self.def
    }

    async fn call(&self, args: Value, _ctx: &CallContext) -> Result<String, ToolError> {
        let rel = string_arg(&args, "path")?.unwrap_or(".").to_string();
        let root = self.root.clone();
        blocking(&self.def.name, self.timeout, move || list_dir(&root, &rel)).await
    }
}

fn list_dir(root: &Root, rel: &str) -> Result<String, ToolError> {
    let path = root.existing(rel)?;
    let cannot =
        |e: std::io::Error| ToolError::failed(format!("cannot list `{rel}`: {}", describe(&e)));
    let meta = std::fs::metadata(&path).map_err(cannot)?;
    if !meta.is_dir() {
        return Err(ToolError::answered(format!("`{rel}` is not a directory")));
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(&path).map_err(cannot)? {
        let entry = entry.map_err(cannot)?;
        let mut name = entry.file_name().to_string_lossy().into_owned();
        // Follow links so a link to a directory reads as one; a dangling link is a plain entry.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            name.push('/');
        }
        entries.push(name);
    }
    if entries.is_empty() {
        return Ok(EMPTY_DIR.to_string());
    }
    entries.sort();
    let total = entries.len();
    entries.truncate(MAX_LIST_ENTRIES);
    let mut listing = entries.join("\n");
    if total > MAX_LIST_ENTRIES {
        listing.push_str(&format!(
            "\n… and {} more entries",
            total - MAX_LIST_ENTRIES
        ));
    }
    Ok(listing)
}

/// `write_file {path, content}`: creates or replaces one file, creating parent directories.
struct WriteFile {
    def: ToolDef,
    root: Arc<Root>,
    timeout: Duration,
}

impl WriteFile {
    fn new(root: Arc<Root>, timeout: Duration) -> WriteFile {
        WriteFile {
            def: ToolDef {
                name: "write_file".to_string(),
                description: "Write text to a file, replacing it if it exists and creating \
                    missing parent directories. The path is relative to the tool root."
                    .to_string(),
                parameters: json!({
                    "type": "object",
                    "properties": {
                        "path": path_property("Path of the file, relative to the tool root."),
                        "content": {
                            "type": "string",
                            "description": "The complete new content of the file.",
                        },
                    },
                    "required": ["path", "content"],
                    "additionalProperties": false,
                }),
                risk: RiskClass::Reversible,
                idempotent: false,
                max_attempts: chassis_core::tool::DEFAULT_TOOL_ATTEMPTS,
            },
            root,
            timeout,
        }
    }
}

#[async_trait::async_trait]
impl Tool for WriteFile {
    fn def(&self) -> &ToolDef {
        &self.def
    }

    async fn call(&self, args: Value, _ctx: &CallContext) -> Result<String, ToolError> {
        let rel = required_string_arg(&args, "path")?.to_string();
        let content = required_string_arg(&args, "content")?.to_string();
        let root = self.root.clone();
        blocking(&self.def.name, self.timeout, move || {
            write_file(&root, &rel, &content)
        })
        .await
    }
}

fn write_file(root: &Root, rel: &str, content: &str) -> Result<String, ToolError> {
    use std::io::Write;

    let path = root.writable(rel)?;
    let cannot =
        |e: std::io::Error| ToolError::failed(format!("cannot write `{rel}`: {}", describe(&e)));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(cannot)?;
    }
    // Opened without truncating: nothing changes until the file is known to be a regular file
    // with no other name.
    let mut file = open_nonblocking(&path, std::fs::OpenOptions::new().write(true).create(true))
        .map_err(|e| open_error(&e, rel, "write"))?;
    let meta = regular(&file, rel)?;
    let links = hard_links(&meta);
    if links > 1 {
        return Err(ToolError::answered(format!(
            "`{rel}` has {links} hard links; write_file does not write a file that has other \
             names, which may be outside the tool root"
        )));
    }
    file.set_len(0).map_err(cannot)?;
    file.write_all(content.as_bytes()).map_err(cannot)?;
    Ok(format!("wrote {} bytes to {rel}", content.len()))
}

#[cfg(unix)]
fn hard_links(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(meta)
}

#[cfg(not(unix))]
fn hard_links(_meta: &std::fs::Metadata) -> u64 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CallContext {
        CallContext {
            run_id: "r".into(),
            call_id: "c".into(),
            idempotency_key: "k".into(),
            began: tokio::time::Instant::now(),
            progress: Default::default(),
        }
    }

    fn tool(dir: &Path, name: &str) -> Arc<dyn Tool> {
        tools(".", dir, Some(&[name.to_string()]), Duration::from_secs(20))
            .unwrap()
            .remove(0)
    }

    #[tokio::test]
    async fn read_refuses_big_and_binary_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("big"),
            vec![b'a'; MAX_READ_BYTES as usize + 1],
        )
        .unwrap();
        std::fs::write(dir.path().join("bin"), [b'o', b'k', 0xff]).unwrap();
        std::fs::write(
            dir.path().join("exact"),
            vec![b'a'; MAX_READ_BYTES as usize],
        )
        .unwrap();
        let read = tool(dir.path(), "read_file");
        let e = read.call(json!({"path": "big"}), &ctx()).await.unwrap_err();
        assert_eq!(
            e.message(),
            "`big` is 1048577 bytes; read_file reads files up to 1 MiB (1048576 bytes)"
        );
        let e = read.call(json!({"path": "bin"}), &ctx()).await.unwrap_err();
        assert_eq!(
            e.message(),
            "`bin` is not UTF-8 text (invalid byte at offset 2)"
        );
        let text = read.call(json!({"path": "exact"}), &ctx()).await.unwrap();
        assert_eq!(text.len(), MAX_READ_BYTES as usize);
    }

    #[tokio::test]
    async fn read_refuses_directories_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let read = tool(dir.path(), "read_file");
        let e = read.call(json!({"path": "sub"}), &ctx()).await.unwrap_err();
        assert_eq!(e.message(), "`sub` is a directory, not a file");
        let e = read
            .call(json!({"path": "nope.txt"}), &ctx())
            .await
            .unwrap_err();
        assert_eq!(e.message(), "path `nope.txt` does not exist");
        // The same arguments meet the same answer: given to the model at once, not retried.
        assert!(!e.may_retry() && !e.is_indeterminate(), "{e:?}");
    }

    #[tokio::test]
    async fn list_marks_directories_and_links_to_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("a.txt"), "").unwrap();
        std::os::unix::fs::symlink(dir.path().join("b"), dir.path().join("c")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("d")).unwrap();
        let list = tool(dir.path(), "list_dir");
        assert_eq!(
            list.call(json!({}), &ctx()).await.unwrap(),
            "a.txt\nb/\nc/\nd"
        );
        assert_eq!(
            list.call(json!({"path": "b"}), &ctx()).await.unwrap(),
            EMPTY_DIR
        );
        let e = list
            .call(json!({"path": "a.txt"}), &ctx())
            .await
            .unwrap_err();
        assert_eq!(e.message(), "`a.txt` is not a directory");
    }

    #[tokio::test]
    async fn write_refuses_a_directory_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let write = tool(dir.path(), "write_file");
        let e = write
            .call(json!({"path": "sub", "content": "x"}), &ctx())
            .await
            .unwrap_err();
        assert_eq!(e.message(), "`sub` is a directory, not a file");
    }

    #[tokio::test]
    async fn direct_calls_check_their_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let write = tool(dir.path(), "write_file");
        let e = write.call(json!({"path": "x"}), &ctx()).await.unwrap_err();
        assert_eq!(e.message(), "argument `content` is required");
        let e = write
            .call(json!({"path": 1, "content": ""}), &ctx())
            .await
            .unwrap_err();
        assert_eq!(e.message(), "argument `path` must be a string");
    }

    #[tokio::test]
    async fn file_work_past_its_deadline_fails_the_call_at_once() {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let finished = done.clone();
        let e = blocking("read_file", Duration::from_millis(50), move || {
            std::thread::sleep(Duration::from_secs(2));
            finished.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok("late".to_string())
        })
        .await
        .unwrap_err();
        assert_eq!(e.message(), "`read_file` timed out after 50ms");
        assert!(e.is_indeterminate());
        assert!(
            !done.load(std::sync::atomic::Ordering::SeqCst),
            "the call failed before the work finished"
        );
    }

    #[test]
    fn only_keeps_its_order_and_ignores_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let only = [
            "write_file".to_string(),
            "read_file".to_string(),
            "write_file".to_string(),
        ];
        let names: Vec<String> = tools(".", dir.path(), Some(&only), Duration::from_secs(1))
            .unwrap()
            .iter()
            .map(|t| t.def().name.clone())
            .collect();
        assert_eq!(names, ["write_file", "read_file"]);
    }
}
