//! A PostgreSQL schema per test, on the server at `CHASSIS_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped with everything in it when the test
//! ends, so tests run in parallel.
//!
//! When the server cannot be reached a test says so loudly and passes, unless `CI` or
//! `CHASSIS_TEST_PG_REQUIRED` is set (and not `0` or `false`): then it FAILS, so a CI run
//! without PostgreSQL can never look green.

use std::hash::{BuildHasher, Hasher, RandomState};

use tokio_postgres::NoTls;

/// The server tests use when `CHASSIS_TEST_PG_URL` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The server's URL.
pub fn base_url() -> String {
    std::env::var("CHASSIS_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// Whether an unreachable server fails the test (`CI` or `CHASSIS_TEST_PG_REQUIRED` set).
pub fn required() -> bool {
    let set = |name| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    set("CI") || set("CHASSIS_TEST_PG_REQUIRED")
}

/// A client of `url`, its connection driven by the current runtime.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` without its password, for messages.
pub fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or_default();
            let hidden = if user_info.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// A schema of the test's own; dropped (with everything in it) when the test ends.
#[derive(Debug)]
pub struct Schema {
    name: String,
    url: String,
}

impl Schema {
    /// Creates a schema named `PREFIX_<random>`; `None` (after a loud message) when there is
    /// no server, unless [`required`], where it panics: `what` names the tests skipped.
    pub async fn new(prefix: &str, what: &str) -> Option<Schema> {
        let base = base_url();
        let client = match connect(&base).await {
            Ok(client) => client,
            Err(e) => {
                let banner = "!".repeat(78);
                let message = format!(
                    "{banner}\n!! PostgreSQL at {} is unreachable ({e}: {}): SKIPPING {what}.\n\
                     !! Start it, or set CHASSIS_TEST_PG_URL.\n{banner}",
                    shown(&base),
                    std::error::Error::source(&e).map_or(String::new(), |s| s.to_string()),
                );
                assert!(!required(), "{message}");
                eprintln!("{message}");
                return None;
            }
        };
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        let name = format!("{prefix}_{:016x}", hasher.finish());
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("create the test's schema");
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-csearch_path%3D{name}");
        Some(Schema { name, url })
    }

    /// The URL that works in this schema (its `search_path`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` in the schema, behind the journal's back.
    pub async fn execute(&self, sql: &str) {
        let client = connect(&self.url)
            .await
            .expect("connect to the test's schema");
        client.batch_execute(sql).await.expect("test SQL runs");
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Drop runs outside any async context of its own: use a small runtime on a thread.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(client) = connect(&base_url()).await {
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            shown("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(shown("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(shown("not a url"), "not a url");
    }
}
