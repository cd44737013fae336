//! A fixed number of PostgreSQL connections shared by the journal's callers.
//!
//! Each connection carries its prepared statements. A caller takes a connection for one
//! statement and puts it back; a semaphore bounds how many exist, and they are opened lazily,
//! so a short-lived CLI command opens one. Every journal operation is a single statement (its
//! own transaction), so a caller cancelled mid-operation never leaves a connection inside a
//! transaction; a connection that closed is dropped and replaced on the next use.

use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::Client;

use super::Statements;
use super::target::{Target, connect, describe};
use crate::Error;

/// One connection and its statements.
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) stmts: Statements,
}

impl Conn {
    /// Opens a connection (driven by a task of its own until the client is dropped) and
    /// prepares the journal's statements on it.
    pub(super) async fn open(config: &Target, target: &str) -> Result<Conn, Error> {
        let (client, connection) = connect(config).await?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the next use notices.
            let _ = connection.await;
        });
        Conn::prepare(client, target).await
    }

    /// Prepares the statements on an open connection.
    pub(super) async fn prepare(client: Client, target: &str) -> Result<Conn, Error> {
        let stmts = Statements::prepare(&client)
            .await
            .map_err(|e| Error::Database {
                path: target.to_string(),
                message: describe(&e),
            })?;
        Ok(Conn { client, stmts })
    }
}

/// The pool.
pub(super) struct Pool {
    config: Target,
    target: String,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

/// A connection on loan; it goes back to the pool when dropped, unless it closed.
pub(super) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    _permit: SemaphorePermit<'a>,
}

impl Pool {
    /// A pool of at most `size` connections (at least one), starting with `first`.
    pub(super) fn new(config: Target, target: String, size: usize, first: Conn) -> Pool {
        Pool {
            config,
            target,
            idle: Mutex::new(vec![first]),
            permits: Semaphore::new(size.max(1)),
        }
    }

    /// Waits for a free connection, opening one if none is idle.
    pub(super) async fn get(&self) -> Result<Pooled<'_>, Error> {
        let permit = self.permits.acquire().await.map_err(|_| Error::Closed)?;
        let idle = self.idle.lock().map_err(|_| Error::Closed)?.pop();
        let conn = match idle {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => Conn::open(&self.config, &self.target).await?,
        };
        Ok(Pooled {
            pool: self,
            conn: Some(conn),
            _permit: permit,
        })
    }
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !conn.client.is_closed()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(conn);
        }
    }
}
