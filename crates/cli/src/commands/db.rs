//! `chassis db migrate`: bring the journal's schema up to date, explicitly.

use std::path::Path;

use crate::commands::{describe_db, open_journal};

/// `chassis db ...` subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Create or migrate the journal's schema (every command does this on open) and print
    /// its version; a database from a newer chassis is refused untouched
    Migrate(MigrateArgs),
}

// Arguments of `chassis db migrate`.
#[derive(clap::Args)]
pub(crate) struct MigrateArgs {
    /// Print one JSON object {"db", "schema_version"}
    #[arg(long)]
    json: bool,
}

/// Runs a `chassis db` subcommand.
pub(crate) async fn run(db: &Path, command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Migrate(args) => migrate(db, args).await,
    }
}

async fn migrate(db: &Path, args: MigrateArgs) -> anyhow::Result<u8> {
    // Opening migrates (under a lock, in one transaction) or refuses a newer schema.
    let journal = open_journal(db).await?;
    drop(journal);
    let version = chassis_store::schema_version(&db.to_string_lossy());
    let shown = describe_db(db);
    if args.json {
        outln!(
            "{}",
            serde_json::json!({ "db": shown, "schema_version": version })
        );
    } else {
        outln!("journal {shown}: schema version {version}");
    }
    Ok(crate::exit::COMPLETED)
}
