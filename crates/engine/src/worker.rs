//! Workers: claim runnable runs from a shared journal, drive each under a lease, give it back.
//!
//! A worker keeps up to `concurrency` runs in flight. Each is driven by
//! [`Engine::drive_claimed`], so every append is fenced by the run's lease, which the engine
//! renews while it drives; when the lease is lost (it expired and another worker took the run),
//! the worker stops driving that run at once and leaves it to the new owner. A run that ends,
//! waits or parks is released with the wake time its fold computes (an approval's expiry, a
//! parked run's retry), so timers fire with nobody watching; one whose drive failed is kept
//! leased for a back-off, so a run that cannot be driven (its spec is gone, say) is retried
//! slowly instead of being passed from worker to worker in a hot loop. A worker that dies simply
//! stops renewing: its runs become claimable when their leases expire (before younger queued
//! work), and the next owner resumes them from the journal.
//!
//! Shutting down stops claiming, lets the runs in flight go on until a deadline, then stops
//! driving the rest and releases their leases; they stay runnable, and nothing journaled is
//! lost or repeated either way.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chassis_core::RunStatus;
use chassis_store::{Journal, Lease};
use tokio::task::{Id, JoinSet};

use crate::{Engine, Error, RunOutcome};

/// How a worker claims, renews and gives back runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The worker's name, recorded as the owner of its leases.
    pub name: String,
    /// Most runs driven at once.
    pub concurrency: usize,
    /// How long a lease lasts without renewal: how soon a dead worker's runs are taken over.
    pub lease_ttl: Duration,
    /// How often a held lease is renewed; well below `lease_ttl`.
    pub renew_every: Duration,
    /// Longest wait between two looks for work (PostgreSQL wakes idle workers sooner).
    pub poll_interval: Duration,
    /// After a shutdown request, how long runs in flight may go on before they are given back.
    pub shutdown_grace: Duration,
    /// How long a run whose drive failed stays leased (hence untouched) before it is retried.
    pub error_backoff: Duration,
}

impl WorkerConfig {
    /// The defaults: 16 runs at once, 30 s leases renewed every 10 s, a look for work at least
    /// every second, 30 s of grace at shutdown.
    pub fn new(name: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            name: name.into(),
            concurrency: 16,
            lease_ttl: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
            error_backoff: Duration::from_secs(60),
        }
    }
}

/// A worker name unique enough to tell workers apart in the journal: host, process, a nonce.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    let nonce = ulid::Ulid::new().to_string().to_lowercase();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &nonce[nonce.len() - 4..]
    )
}

/// What a worker did until it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Leases taken.
    pub claimed: u64,
    /// Runs driven to completion.
    pub completed: u64,
    /// Runs driven to failure.
    pub failed: u64,
    /// Runs that ended because a human cancelled them.
    pub cancelled: u64,
    /// Runs left waiting for a human.
    pub waiting: u64,
    /// Runs left parked.
    pub paused: u64,
    /// Runs whose lease was lost while they were driven (another worker owns them now).
    pub lease_lost: u64,
    /// Drives that failed with an error (logged; retried after the back-off).
    pub errors: u64,
    /// Runs still in flight at the shutdown deadline, given back unfinished.
    pub released_at_shutdown: u64,
}

impl WorkerReport {
    /// Runs whose drive ended (completed, failed, waiting or paused).
    pub fn driven(&self) -> u64 {
        self.completed + self.failed + self.cancelled + self.waiting + self.paused
    }
}

/// How one leased drive ended.
enum Ended {
    /// Driven until it stopped; the engine released the lease.
    Outcome(RunOutcome),
    LeaseLost,
    Failed(Error),
}

/// Claims runs from the engine's journal and drives them.
pub struct Worker {
    engine: Arc<Engine>,
    config: WorkerConfig,
}

impl Worker {
    /// A worker driving runs with `engine`, holding leases under the worker's name.
    pub fn new(engine: Engine, mut config: WorkerConfig) -> Worker {
        config.concurrency = config.concurrency.max(1);
        let drive = crate::DriveConfig {
            owner: config.name.clone(),
            lease_ttl: config.lease_ttl,
            renew_every: config.renew_every,
            ..engine.drive_config().clone()
        };
        Worker {
            engine: Arc::new(engine.with_drive_config(drive)),
            config,
        }
    }

    /// A worker driving runs with an engine shared with others (a server's API), as it is:
    /// its drive configuration (the lease's owner and times) is the caller's to set.
    pub fn shared(engine: Arc<Engine>, mut config: WorkerConfig) -> Worker {
        config.concurrency = config.concurrency.max(1);
        Worker { engine, config }
    }

    /// The engine the worker drives runs with.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The worker's settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Works until `shutdown` resolves, then stops claiming, lets the runs in flight go on for
    /// the grace period, and gives back the leases of those still unfinished. Meanwhile it
    /// delivers the outbox's webhook notifications (a [`crate::Dispatcher`]) and fires due
    /// schedules (a [`crate::Scheduler`]).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> WorkerReport {
        let dispatcher = crate::Dispatcher::for_engine(&self.engine, self.config.name.clone())
            .inspect_err(
                |e| tracing::error!(error = %e, "webhooks are not delivered by this worker"),
            )
            .ok();
        let scheduler = crate::Scheduler::new(Arc::clone(&self.engine), self.config.name.clone());
        let done = tokio::sync::Notify::new();
        let stopped = tokio::sync::Notify::new();
        let deliver = async {
            if let Some(dispatcher) = &dispatcher {
                dispatcher.run(done.notified()).await;
            }
        };
        let schedule = scheduler.run(stopped.notified());
        let work = async {
            let report = self.work(shutdown).await;
            done.notify_one();
            stopped.notify_one();
            report
        };
        let (report, (), ()) = tokio::join!(work, deliver, schedule);
        report
    }

    async fn work(&self, shutdown: impl Future<Output = ()>) -> WorkerReport {
        let config = &self.config;
        let journal = Arc::clone(self.engine.journal());
        let mut report = WorkerReport::default();
        let mut tasks: JoinSet<(Lease, Ended)> = JoinSet::new();
        let mut held: HashMap<Id, Lease> = HashMap::new();
        tracing::info!(worker = %config.name, concurrency = config.concurrency, "worker started");
        tokio::pin!(shutdown);
        loop {
            while let Some(joined) = tasks.try_join_next_with_id() {
                self.joined(joined, &mut held, &mut report).await;
            }
            let free = config.concurrency - tasks.len();
            let mut claim_failed = false;
            if free > 0 {
                match journal.claim(&config.name, config.lease_ttl, free).await {
                    Ok(leases) => {
                        for lease in leases {
                            report.claimed += 1;
                            tracing::info!(worker = %config.name, run_id = %lease.run_id, "claimed run");
                            let id = tasks
                                .spawn(drive(Arc::clone(&self.engine), lease.clone()))
                                .id();
                            held.insert(id, lease);
                        }
                    }
                    Err(e) => {
                        claim_failed = true;
                        tracing::warn!(worker = %config.name, error = %e, "cannot claim runs; retrying");
                    }
                }
            }
            // With every slot taken, only a finished run (or the shutdown) matters; otherwise
            // also new work, announced or found on the next poll.
            let idle = tasks.len() < config.concurrency;
            tokio::select! {
                () = &mut shutdown => break,
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    self.joined(joined, &mut held, &mut report).await;
                }
                () = journal.wait_for_work(config.poll_interval), if idle && !claim_failed => {}
                () = tokio::time::sleep(config.poll_interval), if idle && claim_failed => {}
            }
        }
        self.shut_down(tasks, held, &mut report).await;
        report
    }

    /// Stops claiming: waits for the runs in flight until the grace period ends, then stops
    /// driving the rest and releases their leases.
    async fn shut_down(
        &self,
        mut tasks: JoinSet<(Lease, Ended)>,
        mut held: HashMap<Id, Lease>,
        report: &mut WorkerReport,
    ) {
        let config = &self.config;
        tracing::info!(
            worker = %config.name,
            in_flight = tasks.len(),
            grace_s = config.shutdown_grace.as_secs_f64(),
            "shutting down: no more claims; runs in flight may finish"
        );
        let deadline = tokio::time::Instant::now() + config.shutdown_grace;
        while !tasks.is_empty() {
            match tokio::time::timeout_at(deadline, tasks.join_next_with_id()).await {
                Ok(Some(joined)) => self.joined(joined, &mut held, report).await,
                Ok(None) | Err(_) => break,
            }
        }
        if tasks.is_empty() {
            tracing::info!(worker = %config.name, "worker stopped: every run in flight settled");
            return;
        }
        // Past the deadline: stop driving. Whatever was journaled stays; an interrupted
        // irreversible call is found by the next owner and reported as an unknown outcome.
        tasks.abort_all();
        while let Some(joined) = tasks.join_next_with_id().await {
            match joined {
                Ok((id, result)) => {
                    // Finished just before the abort took effect.
                    self.joined(Ok((id, result)), &mut held, report).await;
                }
                Err(e) => {
                    if let Some(lease) = held.remove(&e.id()) {
                        report.released_at_shutdown += 1;
                        release(self.engine.journal(), &lease).await;
                    }
                }
            }
        }
        tracing::info!(
            worker = %config.name,
            released = report.released_at_shutdown,
            "worker stopped: runs unfinished at the deadline were given back; they stay runnable"
        );
    }

    /// Books a finished drive and gives its run back (or keeps it for the back-off).
    async fn joined(
        &self,
        joined: Result<(Id, (Lease, Ended)), tokio::task::JoinError>,
        held: &mut HashMap<Id, Lease>,
        report: &mut WorkerReport,
    ) {
        let journal = self.engine.journal();
        let (lease, ended) = match joined {
            Ok((id, result)) => {
                held.remove(&id);
                result
            }
            Err(e) => {
                // A drive that panicked: log it, and keep its run away for the back-off.
                report.errors += 1;
                if let Some(lease) = held.remove(&e.id()) {
                    tracing::error!(worker = %self.config.name, run_id = %lease.run_id, error = %e, "driving the run panicked");
                    back_off(journal, &lease, self.config.error_backoff).await;
                }
                return;
            }
        };
        match ended {
            Ended::Outcome(outcome) => {
                match outcome.status {
                    RunStatus::Completed => report.completed += 1,
                    RunStatus::Failed => report.failed += 1,
                    RunStatus::Cancelled => report.cancelled += 1,
                    RunStatus::Waiting => report.waiting += 1,
                    RunStatus::Paused => report.paused += 1,
                    RunStatus::Running => {}
                }
                tracing::info!(worker = %self.config.name, run_id = %lease.run_id, status = %outcome.status, "run settled");
            }
            Ended::LeaseLost => {
                report.lease_lost += 1;
                tracing::warn!(worker = %self.config.name, run_id = %lease.run_id, "lease lost: stopped driving the run; another worker owns it now");
            }
            Ended::Failed(e) => {
                report.errors += 1;
                tracing::error!(worker = %self.config.name, run_id = %lease.run_id, error = %e, retry_in_s = self.config.error_backoff.as_secs_f64(), "cannot drive the run");
                back_off(journal, &lease, self.config.error_backoff).await;
            }
        }
    }
}

/// Drives one leased run (the engine renews the lease meanwhile and releases it at the end).
async fn drive(engine: Arc<Engine>, lease: Lease) -> (Lease, Ended) {
    let ended = match engine.drive_claimed(&lease).await {
        Ok(outcome) => Ended::Outcome(outcome),
        Err(Error::Store(chassis_store::Error::LeaseLost { .. })) => Ended::LeaseLost,
        Err(e) => Ended::Failed(e),
    };
    (lease, ended)
}

/// Gives a run back at shutdown, its wake time as the journal's last write set it; a failure
/// is only logged (the lease then simply expires).
async fn release(journal: &Arc<dyn Journal>, lease: &Lease) {
    if let Err(e) = journal
        .release(lease, u64::MAX, chassis_core::Wake::Never)
        .await
    {
        tracing::warn!(run_id = %lease.run_id, error = %e, "cannot release the lease; it will expire");
    }
}

/// Keeps a run whose drive failed leased for `backoff`, so no worker retries it sooner.
async fn back_off(journal: &Arc<dyn Journal>, lease: &Lease, backoff: Duration) {
    if let Err(e) = journal.renew(lease, backoff).await {
        tracing::debug!(run_id = %lease.run_id, error = %e, "cannot hold the failed run back");
    }
}
