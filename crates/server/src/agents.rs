//! The agents a server offers: every `agent.toml` under a directory, named by `[agent] name`,
//! all loaded and checked at start (a bad spec stops the server, naming the file and key) and
//! again on SIGHUP (a bad spec then keeps the agents as they were, and says why).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chassis_engine::{Agent, Engine};

/// How deep under the agents directory specs are looked for.
const MAX_DEPTH: usize = 4;

/// Why the agents cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory cannot be read.
    #[error("agents directory {path}: {message}")]
    Directory {
        /// The directory.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A spec is invalid (the message names the file and the key or line).
    #[error(transparent)]
    Load(#[from] chassis_engine::LoadError),
    /// Two specs name the same agent.
    #[error("agent `{name}` is defined twice: {first} and {second}")]
    Duplicate {
        /// The name.
        name: String,
        /// One file.
        first: String,
        /// The other.
        second: String,
    },
    /// Keeping a version's definition failed.
    #[error("agent `{name}`: {message}")]
    Pin {
        /// The agent.
        name: String,
        /// What went wrong.
        message: String,
    },
}

/// The agents on offer, by name.
pub struct Registry {
    dir: Option<PathBuf>,
    agents: RwLock<BTreeMap<String, Arc<Agent>>>,
}

impl Registry {
    /// Loads every agent under `dir` (none without a directory), keeps each version's
    /// definition in the engine's store, and lends the agents to the engine.
    pub async fn load(dir: Option<&Path>, engine: &Engine) -> Result<Registry, Error> {
        let agents = match dir {
            Some(dir) => load_dir(dir, engine).await?,
            None => BTreeMap::new(),
        };
        Ok(Registry {
            dir: dir.map(Path::to_path_buf),
            agents: RwLock::new(agents),
        })
    }

    /// Loads the directory again; on any error the agents stay as they were.
    pub async fn reload(&self, engine: &Engine) -> Result<usize, Error> {
        let Some(dir) = &self.dir else {
            return Ok(0);
        };
        let fresh = load_dir(dir, engine).await?;
        let count = fresh.len();
        if let Ok(mut agents) = self.agents.write() {
            *agents = fresh;
        }
        Ok(count)
    }

    /// The agent called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Agent>> {
        self.agents.read().ok()?.get(name).cloned()
    }

    /// Every agent, by name.
    pub fn all(&self) -> Vec<Arc<Agent>> {
        self.agents
            .read()
            .map(|agents| agents.values().cloned().collect())
            .unwrap_or_default()
    }
}

async fn load_dir(dir: &Path, engine: &Engine) -> Result<BTreeMap<String, Arc<Agent>>, Error> {
    let mut specs = Vec::new();
    find_specs(dir, 0, &mut specs)?;
    specs.sort();
    let mut agents: BTreeMap<String, Arc<Agent>> = BTreeMap::new();
    for spec in specs {
        let agent = Agent::load(&spec).await?;
        let name = agent.spec.name.clone();
        if let Some(first) = agents.get(&name) {
            return Err(Error::Duplicate {
                name,
                first: first.spec_path.display().to_string(),
                second: spec.display().to_string(),
            });
        }
        engine.pin(&agent).await.map_err(|e| Error::Pin {
            name: name.clone(),
            message: e.to_string(),
        })?;
        let agent = Arc::new(agent);
        engine.adopt(Arc::clone(&agent)).await;
        tracing::info!(agent = %name, version = %agent.version, spec = %spec.display(), "agent loaded");
        agents.insert(name, agent);
    }
    Ok(agents)
}

/// Every `agent.toml` under `dir`, to a few levels.
fn find_specs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Directory {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && depth < MAX_DEPTH {
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') || n == "target" || n == "node_modules");
            if !hidden {
                find_specs(&path, depth + 1, out)?;
            }
        } else if kind.is_file() && path.file_name().is_some_and(|n| n == "agent.toml") {
            out.push(path);
        }
    }
    Ok(())
}
