//! A run's input as people have it: typed (`--input TEXT`), piped (`--input -`), in a file
//! (`--input-file PATH`), and prompt variables (`--var KEY=VALUE`). Shared by `run` and `submit`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use crate::exit::UsageError;

// The input options of a command that starts a run (flattened into its arguments).
#[derive(clap::Args, Debug)]
pub(crate) struct InputArgs {
    /// The run's input (the first user message); `-` reads it from stdin
    #[arg(
        long,
        short,
        value_name = "TEXT",
        required_unless_present = "input_file",
        conflicts_with = "input_file"
    )]
    input: Option<String>,
    /// Read the run's input from this file
    #[arg(long, value_name = "PATH")]
    input_file: Option<PathBuf>,
    /// A prompt variable for this run, over the spec's `[vars]` (repeatable), e.g.
    /// `--var team=payments`
    #[arg(long = "var", value_name = "KEY=VALUE")]
    vars: Vec<String>,
}

/// What a run starts from.
#[derive(Debug)]
pub(crate) struct Input {
    /// The first user message.
    pub text: String,
    /// Prompt variables, over `[vars]`.
    pub vars: BTreeMap<String, String>,
}

impl InputArgs {
    /// Reads the input and checks the variables; errors name the flag.
    pub(crate) fn read(&self) -> Result<Input, UsageError> {
        let text = match (&self.input, &self.input_file) {
            (Some(dash), None) if dash == "-" => read_stdin()?,
            (Some(text), None) => text.clone(),
            (None, Some(path)) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    UsageError(format!("--input-file {}: cannot read: {e}", path.display()))
                })?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    UsageError(format!("--input-file {}: not UTF-8 text", path.display()))
                })?;
                trim_final_newline(text)
            }
            // clap enforces exactly one of the two.
            _ => return Err(UsageError("give --input TEXT or --input-file PATH".into())),
        };
        Ok(Input {
            text,
            vars: parse_vars(&self.vars)?,
        })
    }
}

impl Input {
    /// The variables as the engine takes them.
    pub(crate) fn json_vars(&self) -> impl Iterator<Item = (String, serde_json::Value)> + '_ {
        self.vars
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
    }
}

/// All of stdin, as text; an empty stdin is refused (it is almost always a mistake).
pub(crate) fn read_stdin() -> Result<String, UsageError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        noteln!("reading the input from the terminal; end it with Ctrl-D");
    }
    let mut bytes = Vec::new();
    stdin
        .lock()
        .read_to_end(&mut bytes)
        .map_err(|e| UsageError(format!("--input -: cannot read stdin: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| UsageError("--input -: stdin is not UTF-8 text".into()))?;
    let text = trim_final_newline(text);
    if text.trim().is_empty() {
        return Err(UsageError("--input -: stdin was empty".into()));
    }
    Ok(text)
}

/// Text without the line ending(s) that close a file or `echo`'s output.
fn trim_final_newline(text: String) -> String {
    let kept = text.trim_end_matches(['\n', '\r']).len();
    let mut text = text;
    text.truncate(kept);
    text
}

/// `--var KEY=VALUE` options; a key is a template identifier, and `input` is the run's input.
fn parse_vars(raw: &[String]) -> Result<BTreeMap<String, String>, UsageError> {
    let mut vars = BTreeMap::new();
    for option in raw {
        let Some((key, value)) = option.split_once('=') else {
            return Err(UsageError(format!(
                "--var {option}: expected KEY=VALUE, e.g. --var team=payments"
            )));
        };
        let identifier = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            return Err(UsageError(format!(
                "--var {option}: `{key}` is not a variable name (letters, digits and _, not starting with a digit)"
            )));
        }
        if key == "input" {
            return Err(UsageError(format!(
                "--var {option}: `input` is the run's input; give it with --input"
            )));
        }
        vars.insert(key.to_string(), value.to_string());
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_parse_and_bad_ones_name_the_flag() {
        let vars = parse_vars(&["team=pay=ments".into(), "x_1=".into()]).unwrap();
        assert_eq!(vars["team"], "pay=ments");
        assert_eq!(vars["x_1"], "");
        for (bad, says) in [
            ("team", "expected KEY=VALUE"),
            ("1x=a", "is not a variable name"),
            ("=a", "is not a variable name"),
            ("input=a", "give it with --input"),
        ] {
            let e = parse_vars(&[bad.into()]).unwrap_err().0;
            assert!(
                e.starts_with(&format!("--var {bad}: ")) && e.contains(says),
                "{e}"
            );
        }
    }

    #[test]
    fn only_the_final_line_endings_go() {
        assert_eq!(trim_final_newline("a\n\nb\r\n\n".into()), "a\n\nb");
        assert_eq!(trim_final_newline("  a ".into()), "  a ");
    }
}
