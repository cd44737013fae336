//! `chassis tokens create|list|revoke`: API tokens for `chassis serve`.

use std::path::Path;

use crate::commands::{open_existing_journal, open_journal};
use crate::exit::UsageError;

/// `chassis tokens …`.
#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Make a token; it is printed once, alone on stdout (only its hash is kept)
    Create {
        /// Who holds it: journaled as the author of their decisions
        #[arg(long)]
        name: String,
        /// viewer (read), operator (+ start, resume, cancel), approver (+ decide), admin (+ tokens)
        #[arg(long)]
        role: String,
    },
    /// List tokens (never the tokens themselves)
    List {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name
    Revoke {
        /// The token's name
        name: String,
    },
}

/// Runs a `tokens` subcommand.
pub(crate) async fn run(db: &Path, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Create { name, role } => {
            let journal = open_journal(db).await?;
            let token = chassis_server::auth::create(journal.as_ref(), &name, &role)
                .await
                .map_err(|e| match e {
                    chassis_server::auth::Error::Store(e) => anyhow::Error::from(e),
                    other => UsageError(other.to_string()).into(),
                })?;
            outln!("{token}");
            noteln!("token `{name}` ({role}) made; it is shown only now");
        }
        Command::List { json } => {
            let journal = open_existing_journal(db).await?;
            let tokens = journal.tokens().await?;
            if json {
                let rows: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name, "role": t.role,
                            "created_ms": t.created_ms, "revoked_ms": t.revoked_ms,
                        })
                    })
                    .collect();
                outln!("{}", serde_json::Value::Array(rows));
            } else if tokens.is_empty() {
                outln!("no tokens (`chassis tokens create --name NAME --role ROLE`)");
            } else {
                outln!("{:<24} {:<9} {:<8}", "NAME", "ROLE", "STATE");
                for t in &tokens {
                    let state = if t.revoked_ms.is_some() {
                        "revoked"
                    } else {
                        "live"
                    };
                    outln!("{:<24} {:<9} {:<8}", t.name, t.role, state);
                }
            }
        }
        Command::Revoke { name } => {
            let journal = open_existing_journal(db).await?;
            if journal.revoke_token(&name).await? {
                noteln!("token `{name}` revoked");
            } else {
                return Err(UsageError(format!("no live token named `{name}`")).into());
            }
        }
    }
    Ok(crate::exit::COMPLETED)
}
