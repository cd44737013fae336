//! [`Toolbox`]: the tools one agent is granted, each with its compiled argument validator.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chassis_core::ToolDef;
use chassis_core::spec::ToolSpec;
use serde_json::Value;

use crate::command::CommandTool;
use crate::validate::{self, Refusal};
use crate::{Error, Tool, fs};

/// The set of tools one agent is granted, with compiled argument validators.
pub struct Toolbox {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
}

struct Entry {
    tool: Arc<dyn Tool>,
    validator: jsonschema::Validator,
}

impl Toolbox {
    /// Builds tools from validated spec entries.
    ///
    /// Relative paths (an fs `root`, and a command program that contains a `/`) are resolved
    /// against `base_dir`, the spec file's directory; command tools also run there.
    /// Errors carry the spec key, e.g. `tools[0].root`, `tools[1].args_schema` or
    /// `tools[1].command`.
    pub fn from_specs(specs: &[ToolSpec], base_dir: &Path) -> Result<Toolbox, Error> {
        let mut built = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            let key = format!("tools[{index}]");
            match spec {
                ToolSpec::Fs { root, only } => {
                    let tools = fs::tools(root, base_dir, only.as_deref())
                        .map_err(|m| Error::new(format!("{key}.root"), m))?;
                    for tool in tools {
                        let validator = validate::compile(&tool.def().parameters)
                            .map_err(|m| Error::new(&key, format!("builtin schema {m}")))?;
                        built.push((key.clone(), tool, validator));
                    }
                }
                ToolSpec::Http(_) | ToolSpec::Mcp { .. } => {
                    return Err(Error::new(
                        format!("{key}.use"),
                        "this tool source is not built into this version of chassis yet",
                    ));
                }
                ToolSpec::Command(command) => {
                    let validator = validate::compile(&command.args_schema)
                        .map_err(|m| Error::new(format!("{key}.args_schema"), m))?;
                    let tool = CommandTool::new(command, base_dir)
                        .map_err(|m| Error::new(format!("{key}.command"), m))?;
                    built.push((key, Arc::new(tool) as Arc<dyn Tool>, validator));
                }
            }
        }
        Toolbox::assemble(built)
    }

    /// Builds a toolbox from ready tools, compiling each one's parameter schema.
    ///
    /// Errors name the tool by its position, e.g. `tools[2].parameters`; two tools with the
    /// same name are refused.
    pub fn new(tools: Vec<Arc<dyn Tool>>) -> Result<Toolbox, Error> {
        let mut built = Vec::with_capacity(tools.len());
        for (index, tool) in tools.into_iter().enumerate() {
            let key = format!("tools[{index}]");
            let validator = validate::compile(&tool.def().parameters)
                .map_err(|m| Error::new(format!("{key}.parameters"), m))?;
            built.push((key, tool, validator));
        }
        Toolbox::assemble(built)
    }

    fn assemble(
        built: Vec<(String, Arc<dyn Tool>, jsonschema::Validator)>,
    ) -> Result<Toolbox, Error> {
        let mut entries = Vec::with_capacity(built.len());
        let mut by_name = HashMap::new();
        let mut keys: Vec<String> = Vec::with_capacity(built.len());
        for (key, tool, validator) in built {
            let name = tool.def().name.clone();
            if let Some(&first) = by_name.get(&name) {
                let first_key: &String = &keys[first];
                return Err(Error::new(
                    key,
                    format!("tool name `{name}` is already defined by {first_key}"),
                ));
            }
            by_name.insert(name, entries.len());
            keys.push(key);
            entries.push(Entry { tool, validator });
        }
        Ok(Toolbox { entries, by_name })
    }

    /// The definitions sent to the model, in declaration order.
    pub fn defs(&self) -> Vec<ToolDef> {
        self.entries.iter().map(|e| e.tool.def().clone()).collect()
    }

    /// The tool called `name`, if granted.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.by_name.get(name).map(|&i| &self.entries[i].tool)
    }

    /// Validates a model's raw call before anything runs.
    ///
    /// Refuses an unknown tool, arguments that are not JSON or not an object, and arguments
    /// that fail the tool's schema (listing every violation with its JSON pointer).
    /// Whitespace-only arguments count as `{}`.
    /// On success, gives the parsed arguments and the tool to call.
    pub fn prepare(
        &self,
        name: &str,
        raw_arguments: &str,
    ) -> Result<(Value, Arc<dyn Tool>), Refusal> {
        let Some(&index) = self.by_name.get(name) else {
            return Err(Refusal::UnknownTool {
                name: name.to_string(),
                available: self.names().map(str::to_string).collect(),
            });
        };
        let entry = &self.entries[index];
        let args = validate::check(name, &entry.validator, raw_arguments)?;
        Ok((args, entry.tool.clone()))
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.tool.def().name.as_str())
    }
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
