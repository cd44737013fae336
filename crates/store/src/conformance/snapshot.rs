//! Conformance check of state snapshots: the latest is kept, an older one replaced, and a run
//! that does not exist is refused.

use std::sync::Arc;

use crate::{Error, Journal};

/// The latest snapshot of a run comes back; a later one replaces it; runs do not mix; a
/// snapshot of an unknown run is refused.
pub async fn the_latest_snapshot_is_kept(journal: Arc<dyn Journal>) {
    super::create(journal.as_ref(), "snap-a").await;
    super::create(journal.as_ref(), "snap-b").await;
    assert_eq!(journal.latest_snapshot("snap-a").await.unwrap(), None);
    journal
        .put_snapshot("snap-a", 1000, "{\"seq\":1000}")
        .await
        .unwrap();
    journal
        .put_snapshot("snap-b", 7, "{\"seq\":7}")
        .await
        .unwrap();
    journal
        .put_snapshot("snap-a", 2000, "{\"seq\":2000}")
        .await
        .unwrap();
    assert_eq!(
        journal.latest_snapshot("snap-a").await.unwrap(),
        Some((2000, "{\"seq\":2000}".to_string()))
    );
    assert_eq!(
        journal.latest_snapshot("snap-b").await.unwrap(),
        Some((7, "{\"seq\":7}".to_string()))
    );
    // Written again at the same point (a second driver after a crash): the same answer.
    journal
        .put_snapshot("snap-b", 7, "{\"seq\":7}")
        .await
        .unwrap();
    assert_eq!(
        journal.latest_snapshot("snap-b").await.unwrap(),
        Some((7, "{\"seq\":7}".to_string()))
    );
    assert!(matches!(
        journal.put_snapshot("nobody", 1, "{}").await,
        Err(Error::RunNotFound(id)) if id == "nobody"
    ));
    assert_eq!(journal.latest_snapshot("nobody").await.unwrap(), None);
}
