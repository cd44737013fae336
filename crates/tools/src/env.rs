//! The environment a tool process starts with: least privilege.
//!
//! A command tool or a stdio MCP server is someone else's program. It starts with a cleared
//! environment and gets only a small default set, what its spec names (passed through or set),
//! and, for command tools, the call's `CHASSIS_*` variables: a provider's API key or any other
//! secret in chassis's own environment never reaches it unless the spec says so.

use chassis_core::spec::ToolEnv;
use tokio::process::Command;

/// Variables passed through from chassis's environment to every tool process, when set: what a
/// program needs to find other programs, a home, a locale, a place for temporary files and the
/// time zone.
pub(crate) const DEFAULT_PASS: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"];

/// Clears `command`'s environment and gives it the default set and what `env` names, from
/// chassis's environment as it is now.
pub(crate) fn apply(command: &mut Command, env: &ToolEnv) {
    command.env_clear();
    for name in DEFAULT_PASS
        .iter()
        .copied()
        .chain(env.pass.iter().map(String::as_str))
    {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.envs(&env.set);
}
