//! `resolve_run`: prefixes, `last`, and what an ambiguous or unknown id says.

use chassis_store::conformance::started;
use chassis_store::resolve::Error as ResolveError;
use chassis_store::{Error, Journal, NewRun, SqliteJournal, Sync, resolve_run};

const FIRST: &str = "run_01jq8aaaaaaaaaaaaaaaaaaaaa";
const SECOND: &str = "run_01jq8bbbbbbbbbbbbbbbbbbbbb";
const THIRD: &str = "run_01jr0ccccccccccccccccccccc";

async fn journal_with_three_runs() -> (SqliteJournal, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open(&dir.path().join("chassis.db"), Sync::Normal).unwrap();
    for id in [FIRST, SECOND, THIRD] {
        journal
            .create(
                &NewRun {
                    run_id: id.into(),
                    agent: "agent".into(),
                    idempotency_key: None,
                },
                &[started("agent")],
                chassis_store::Wake::Now,
                None,
            )
            .await
            .unwrap();
    }
    (journal, dir)
}

#[tokio::test]
async fn a_unique_prefix_names_its_run_with_or_without_run_and_in_any_case() {
    let (journal, _dir) = journal_with_three_runs().await;
    for typed in ["run_01jq8a", "01jq8a", "01JQ8A", FIRST] {
        assert_eq!(
            resolve_run(&journal, typed).await.unwrap(),
            FIRST,
            "{typed}"
        );
    }
    assert_eq!(resolve_run(&journal, "01jr").await.unwrap(), THIRD);
}

#[tokio::test]
async fn last_names_the_newest_run() {
    // Runs created in the same millisecond are ordered by id, and ULIDs grow with time.
    let (journal, _dir) = journal_with_three_runs().await;
    assert_eq!(resolve_run(&journal, "last").await.unwrap(), THIRD);
    assert_eq!(resolve_run(&journal, " LAST ").await.unwrap(), THIRD);
}

#[tokio::test]
async fn an_ambiguous_prefix_lists_the_candidates() {
    let (journal, _dir) = journal_with_three_runs().await;
    let error = resolve_run(&journal, "01jq8").await.unwrap_err();
    let ResolveError::Ambiguous {
        count, candidates, ..
    } = &error
    else {
        panic!("expected an ambiguity, got {error}");
    };
    assert_eq!(*count, 2);
    assert_eq!(candidates.len(), 2);
    assert!(candidates.contains(&FIRST.to_string()) && candidates.contains(&SECOND.to_string()));
    let message = error.to_string();
    assert!(
        message.contains("`01jq8` is ambiguous")
            && message.contains(FIRST)
            && message.contains(SECOND),
        "{message}"
    );
}

#[tokio::test]
async fn no_match_is_run_not_found_and_last_of_nothing_says_so() {
    let (journal, _dir) = journal_with_three_runs().await;
    let error = resolve_run(&journal, "run_zz").await.unwrap_err();
    assert!(
        matches!(&error, ResolveError::Store(Error::RunNotFound(id)) if id == "run_zz"),
        "{error}"
    );
    assert!(matches!(
        resolve_run(&journal, "").await.unwrap_err(),
        ResolveError::Empty
    ));
    let dir = tempfile::tempdir().unwrap();
    let empty = SqliteJournal::open(&dir.path().join("chassis.db"), Sync::Normal).unwrap();
    assert!(matches!(
        resolve_run(&empty, "last").await.unwrap_err(),
        ResolveError::NoRuns
    ));
}
