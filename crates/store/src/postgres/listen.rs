//! Wake-ups for idle workers: one connection that `LISTEN`s on [`CHANNEL`].
//!
//! Statements that make a run runnable `NOTIFY` the channel in their own transaction, so a
//! notification arrives only once the run can be claimed. Each one bumps a generation number;
//! a claim remembers the generation it started at, and a wait ends once the generation moved
//! past it. So a notification that lands between a fruitless claim and the wait is not missed,
//! and one that a claim already saw does not wake anyone again. The listener starts on the
//! first wait, reconnects after a failure, and counts every (re)connection as a possible
//! wake-up, since notifications sent while it was not listening are lost.

use std::future::poll_fn;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::target::{Target, connect};

/// The channel runnable runs are announced on.
pub(crate) const CHANNEL: &str = "chassis_runs";

/// Pause before reconnecting a listener whose connection failed.
const RETRY: Duration = Duration::from_secs(1);

/// The listening task and the generation it bumps.
pub(super) struct Listener {
    generation: watch::Sender<u64>,
    /// The generation at the start of the latest claim.
    seen: AtomicU64,
    task: OnceLock<JoinHandle<()>>,
}

impl Listener {
    pub(super) fn new() -> Listener {
        Listener {
            generation: watch::Sender::new(0),
            seen: AtomicU64::new(0),
            task: OnceLock::new(),
        }
    }

    /// Called as a claim starts: what was announced until now, the claim will see.
    pub(super) fn claiming(&self) {
        self.seen
            .store(*self.generation.borrow(), Ordering::Relaxed);
    }

    /// Waits up to `timeout` for an announcement the latest claim did not see (starting the
    /// listener if needed).
    pub(super) async fn wait(&self, config: &Target, timeout: Duration) {
        self.task.get_or_init(|| {
            let config = config.clone();
            let generation = self.generation.clone();
            tokio::spawn(listen(config, generation))
        });
        let seen = self.seen.load(Ordering::Relaxed);
        let mut changes = self.generation.subscribe();
        let _ = tokio::time::timeout(timeout, changes.wait_for(|g| *g > seen)).await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

fn bump(generation: &watch::Sender<u64>) {
    generation.send_modify(|g| *g += 1);
}

async fn listen(config: Target, generation: watch::Sender<u64>) {
    loop {
        if let Ok((client, mut connection)) = connect(&config).await {
            let sql = format!("LISTEN {CHANNEL}");
            let subscribe = client.batch_execute(&sql);
            tokio::pin!(subscribe);
            let mut listening = false;
            loop {
                tokio::select! {
                    subscribed = &mut subscribe, if !listening => {
                        if subscribed.is_err() {
                            break;
                        }
                        listening = true;
                        bump(&generation);
                    }
                    message = poll_fn(|cx| connection.poll_message(cx)) => match message {
                        Some(Ok(AsyncMessage::Notification(_))) => bump(&generation),
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                }
            }
        }
        // Whatever was announced while not listening is lost: let waiters look.
        bump(&generation);
        tokio::time::sleep(RETRY).await;
    }
}
