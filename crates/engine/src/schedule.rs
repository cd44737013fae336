//! Schedules: an agent started by cron, in a time zone, once per slot, by any worker or server.
//!
//! A [`Scheduler`] (in every worker and `chassis serve`) claims the schedules that are due
//! (`Schedules::claim_schedules`: one process at a time), works out the due slots since the
//! schedule's next one, picks the ones to fire by its catch-up rule, checks each against its
//! overlap rule, submits a run per slot, and books what it did with the next slot. Each run is
//! submitted with the idempotency key `schedule:ID:SLOT` and tagged `schedule` and `slot`: the
//! key makes a second run of one slot impossible whatever happens to the claim, and the tags
//! record, on the run itself, which schedule and slot it is.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chassis_core::cron::Cron;
use chassis_store::{Fired, Schedule};
use jiff::tz::TimeZone;

use crate::{Agent, Engine, Error, StartOptions};

/// A slot this much past, when first seen, counts as on time rather than missed.
pub const GRACE: Duration = Duration::from_secs(60);

/// How long a claim on a schedule lasts (loading the agent and submitting a few runs).
const CLAIM_TTL: Duration = Duration::from_secs(60);

/// The most slots one pass looks at for a schedule (a long downtime is caught up over passes).
const MAX_SLOTS: usize = 1000;

/// What a slot does while the schedule's previous run is still going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// The slot is skipped (booked as such).
    Skip,
    /// The slot waits until the previous run ends, then fires.
    Queue,
    /// The slot fires anyway.
    Allow,
}

/// Which of the slots missed while nothing ran are fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// None: only a slot on time fires.
    None,
    /// The latest missed slot.
    Last,
    /// Every missed slot, oldest first.
    All,
}

impl Overlap {
    /// `skip`, `queue` or `allow`.
    pub fn parse(text: &str) -> Option<Overlap> {
        match text {
            "skip" => Some(Overlap::Skip),
            "queue" => Some(Overlap::Queue),
            "allow" => Some(Overlap::Allow),
            _ => None,
        }
    }

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Allow => "allow",
        }
    }
}

impl CatchUp {
    /// `none`, `last` or `all`.
    pub fn parse(text: &str) -> Option<CatchUp> {
        match text {
            "none" => Some(CatchUp::None),
            "last" => Some(CatchUp::Last),
            "all" => Some(CatchUp::All),
            _ => None,
        }
    }

    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Last => "last",
            CatchUp::All => "all",
        }
    }
}

/// A schedule to add.
#[derive(Clone, Debug)]
pub struct NewSchedule {
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone it is read in (`UTC` by default).
    pub timezone: String,
    /// Each run's input.
    pub input: String,
    /// What a slot does while the previous run goes on.
    pub overlap: Overlap,
    /// Which missed slots fire after downtime.
    pub catch_up: CatchUp,
    /// Count slots from this time (ms since the epoch) instead of from now: a backfill, by
    /// the catch-up rule.
    pub since_ms: Option<i64>,
}

/// The time zone `name` names; the error says what to write.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|e| {
        format!("unknown time zone `{name}` (an IANA name such as Europe/Berlin, or UTC): {e}")
    })
}

/// The first slot of `cron` in `tz` strictly after `after_ms`, within about five years.
/// A time a daylight-saving change skips fires at the first instant after the gap; a time
/// that occurs twice fires once, the first time.
pub fn next_slot(cron: &Cron, tz: &TimeZone, after_ms: i64) -> Option<i64> {
    let start = jiff::Timestamp::from_millisecond(after_ms.checked_add(1)?).ok()?;
    let local = start.to_zoned(tz.clone()).datetime();
    // The first whole minute at or after `start`.
    let mut first = local.with().second(0).subsec_nanosecond(0).build().ok()?;
    if first < local {
        first = first.checked_add(jiff::Span::new().minutes(1)).ok()?;
    }
    let mut date = first.date();
    for day in 0..(366 * 5) {
        let weekday = date.weekday().to_sunday_zero_offset() as u8;
        if cron.day(date.month() as u8, date.day() as u8, weekday) {
            let from_hour = if day == 0 { first.hour() as u8 } else { 0 };
            for hour in from_hour..24 {
                if !cron.hour(hour) {
                    continue;
                }
                let from_minute = if day == 0 && hour == first.hour() as u8 {
                    first.minute() as u8
                } else {
                    0
                };
                for minute in from_minute..60 {
                    if !cron.minute(minute) {
                        continue;
                    }
                    let civil = date.at(hour as i8, minute as i8, 0, 0);
                    let Ok(zoned) = tz.to_ambiguous_zoned(civil).compatible() else {
                        continue;
                    };
                    let ms = zoned.timestamp().as_millisecond();
                    if ms > after_ms {
                        return Some(ms);
                    }
                }
            }
        }
        date = date.tomorrow().ok()?;
    }
    None
}

/// A schedule as people look at it (`chassis schedule list`, `GET /v1/schedules`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScheduleView {
    /// `sch_…`.
    pub schedule_id: String,
    /// The agent's name.
    pub agent: String,
    /// Where its spec is.
    pub spec_path: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone.
    pub timezone: String,
    /// Each run's input.
    pub input: String,
    /// `skip`, `queue` or `allow`.
    pub overlap: String,
    /// `none`, `last` or `all`.
    pub catch_up: String,
    /// When it was added (ms since the epoch).
    pub created_ms: i64,
    /// The next slot to fire (ms since the epoch).
    pub next_slot_ms: i64,
    /// The last run it started.
    pub last_run_id: Option<String>,
}

impl From<Schedule> for ScheduleView {
    fn from(s: Schedule) -> ScheduleView {
        ScheduleView {
            schedule_id: s.schedule_id,
            agent: s.agent,
            spec_path: s.spec_path,
            cron: s.cron,
            timezone: s.timezone,
            input: s.input,
            overlap: s.overlap,
            catch_up: s.catch_up,
            created_ms: s.created_ms,
            next_slot_ms: s.next_slot_ms,
            last_run_id: s.last_run_id,
        }
    }
}

impl Engine {
    /// Adds a schedule of `agent` (its spec path journaled like a run's, its version kept).
    pub async fn add_schedule(
        &self,
        agent: &Agent,
        new: NewSchedule,
    ) -> Result<ScheduleView, Error> {
        let cron = Cron::parse(&new.cron).map_err(|e| Error::Refused(format!("--cron: {e}")))?;
        let tz =
            time_zone(&new.timezone).map_err(|e| Error::Refused(format!("--timezone: {e}")))?;
        let now = i64::try_from(self.now_ms()).unwrap_or(i64::MAX);
        let from = new.since_ms.unwrap_or(now);
        let next_slot_ms = next_slot(&cron, &tz, from.saturating_sub(1)).ok_or_else(|| {
            Error::Refused(format!(
                "--cron: `{}` never fires in the next five years",
                new.cron
            ))
        })?;
        self.pin(agent).await?;
        let schedule = Schedule {
            schedule_id: format!("sch_{}", ulid::Ulid::new().to_string().to_lowercase()),
            agent: agent.spec.name.clone(),
            spec_path: self
                .agent_paths()
                .journaled(&agent.spec_path)
                .display()
                .to_string(),
            cron: new.cron,
            timezone: if new.timezone.eq_ignore_ascii_case("utc") {
                "UTC".to_string()
            } else {
                new.timezone
            },
            input: new.input,
            overlap: new.overlap.as_str().to_string(),
            catch_up: new.catch_up.as_str().to_string(),
            created_ms: now,
            next_slot_ms,
            last_run_id: None,
            token: 0,
        };
        self.journal().put_schedule(&schedule).await?;
        Ok(schedule.into())
    }

    /// Every schedule, oldest first.
    pub async fn schedules(&self) -> Result<Vec<ScheduleView>, Error> {
        Ok(self
            .journal()
            .schedules()
            .await?
            .into_iter()
            .map(ScheduleView::from)
            .collect())
    }

    /// Removes a schedule; false when there was none.
    pub async fn remove_schedule(&self, schedule_id: &str) -> Result<bool, Error> {
        Ok(self.journal().remove_schedule(schedule_id).await?)
    }

    /// One pass: claims the due schedules as `owner` and fires their due slots; returns how
    /// many runs were started.
    pub async fn fire_due_schedules(&self, owner: &str) -> Result<usize, Error> {
        let claimed = self.journal().claim_schedules(owner, CLAIM_TTL, 16).await?;
        let mut started = 0;
        for schedule in claimed {
            started += self.fire(&schedule).await;
        }
        Ok(started)
    }

    /// Fires one claimed schedule's due slots and books them; returns the runs started.
    async fn fire(&self, schedule: &Schedule) -> usize {
        let id = &schedule.schedule_id;
        let now = i64::try_from(self.now_ms()).unwrap_or(i64::MAX);
        let parsed =
            Cron::parse(&schedule.cron).and_then(|c| Ok((c, time_zone(&schedule.timezone)?)));
        let (cron, tz) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::error!(schedule = %id, error = %e, "schedule cannot be read; looking again in an hour");
                let _ = self
                    .journal()
                    .record_fired(schedule, &[], now.saturating_add(3_600_000))
                    .await;
                return 0;
            }
        };
        let mut due = Vec::new();
        let mut slot = Some(schedule.next_slot_ms);
        while let Some(s) = slot.filter(|s| *s <= now && due.len() < MAX_SLOTS) {
            due.push(s);
            slot = next_slot(&cron, &tz, s);
        }
        let after = slot.unwrap_or(i64::MAX);
        let grace = i64::try_from(GRACE.as_millis()).unwrap_or(i64::MAX);
        let catch_up = CatchUp::parse(&schedule.catch_up).unwrap_or(CatchUp::Last);
        let overlap = Overlap::parse(&schedule.overlap).unwrap_or(Overlap::Skip);
        let last = due.last().copied();
        let mut fired = Vec::new();
        let mut next = after;
        let mut previous = schedule.last_run_id.clone();
        let mut agent: Option<Arc<Agent>> = None;
        let mut started = 0;
        for slot in due {
            let fire = match catch_up {
                CatchUp::All => true,
                CatchUp::Last => Some(slot) == last,
                CatchUp::None => now - slot <= grace,
            };
            if !fire {
                fired.push(Fired {
                    slot_ms: slot,
                    run_id: None,
                    outcome: "missed".to_string(),
                });
                continue;
            }
            let busy = match &previous {
                Some(run_id) if overlap != Overlap::Allow => self
                    .load(run_id)
                    .await
                    .is_ok_and(|state| !state.status().is_terminal()),
                _ => false,
            };
            if busy && overlap == Overlap::Skip {
                fired.push(Fired {
                    slot_ms: slot,
                    run_id: None,
                    outcome: "skipped".to_string(),
                });
                continue;
            }
            if busy {
                // Queued: the slot stays due until the previous run ends.
                next = slot;
                break;
            }
            if agent.is_none() {
                match Box::pin(Agent::load(&self.agent_paths().locate(&schedule.spec_path))).await {
                    Ok(loaded) => agent = Some(Arc::new(loaded)),
                    Err(e) => {
                        tracing::error!(schedule = %id, error = %e, "cannot load the schedule's agent; its slot is retried at the next pass");
                        next = slot;
                        break;
                    }
                }
            }
            let Some(agent) = &agent else { break };
            let slot_text = jiff::Timestamp::from_millisecond(slot)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| slot.to_string());
            let options = StartOptions {
                idempotency_key: Some(format!("schedule:{id}:{slot}")),
                tags: BTreeMap::from([
                    ("schedule".to_string(), id.clone()),
                    ("slot".to_string(), slot_text.clone()),
                ]),
                ..StartOptions::default()
            };
            match self.submit_with(agent, &schedule.input, options).await {
                Ok(submitted) => {
                    if !submitted.existing {
                        started += 1;
                        tracing::info!(schedule = %id, slot = %slot_text, run_id = %submitted.run_id, "schedule fired");
                    }
                    previous = Some(submitted.run_id.clone());
                    fired.push(Fired {
                        slot_ms: slot,
                        run_id: Some(submitted.run_id),
                        outcome: "started".to_string(),
                    });
                }
                Err(e) => {
                    tracing::error!(schedule = %id, slot = %slot_text, error = %e, "cannot start the scheduled run; retried at the next pass");
                    next = slot;
                    break;
                }
            }
        }
        match self.journal().record_fired(schedule, &fired, next).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(schedule = %id, "the schedule's claim lapsed while it fired; its runs stand (one per slot)")
            }
            Err(e) => {
                tracing::warn!(schedule = %id, error = %e, "cannot book the schedule's slots; its claim will lapse")
            }
        }
        started
    }
}

/// Fires schedules from this process until stopped.
pub struct Scheduler {
    engine: Arc<Engine>,
    owner: String,
}

impl Scheduler {
    /// A scheduler claiming schedules as `owner`.
    pub fn new(engine: Arc<Engine>, owner: impl Into<String>) -> Scheduler {
        Scheduler {
            engine,
            owner: owner.into(),
        }
    }

    /// Fires due schedules until `stop` resolves, looking at least every second.
    pub async fn run(&self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let due = match self.engine.journal().next_schedule_ms().await {
                Ok(Some(at)) => at <= i64::try_from(self.engine.now_ms()).unwrap_or(i64::MAX),
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the schedules; retrying");
                    false
                }
            };
            if due && let Err(e) = self.engine.fire_due_schedules(&self.owner).await {
                tracing::warn!(error = %e, "cannot fire schedules; retrying");
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn weekday_mornings_in_berlin() {
        let cron = Cron::parse("0 6 * * MON-FRI").unwrap();
        let berlin = time_zone("Europe/Berlin").unwrap();
        // Saturday 2026-12-05 noon UTC: next is Monday 06:00 CET, 05:00 UTC.
        let next = next_slot(&cron, &berlin, ms("2026-12-05T12:00:00Z")).unwrap();
        assert_eq!(next, ms("2026-12-07T05:00:00Z"));
        let after = next_slot(&cron, &berlin, next).unwrap();
        assert_eq!(after, ms("2026-12-08T05:00:00Z"));
        // Summer time: 06:00 CEST is 04:00 UTC.
        let july = next_slot(&cron, &berlin, ms("2026-07-01T00:00:00Z")).unwrap();
        assert_eq!(july, ms("2026-07-01T04:00:00Z"));
    }

    #[test]
    fn a_time_skipped_by_daylight_saving_fires_once_after_the_gap() {
        // 02:30 does not exist in Berlin on 2026-03-29.
        let cron = Cron::parse("30 2 * * *").unwrap();
        let berlin = time_zone("Europe/Berlin").unwrap();
        let slot = next_slot(&cron, &berlin, ms("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(slot, ms("2026-03-29T01:30:00Z"));
        let every = Cron::parse("*/30 * * * *").unwrap();
        // 02:30 local happens twice on 2026-10-25 (01:30 UTC as CEST... then CET): slots
        // strictly increase across the fold.
        let mut at = ms("2026-10-24T23:00:00Z");
        let mut seen = Vec::new();
        for _ in 0..8 {
            at = next_slot(&every, &berlin, at).unwrap();
            seen.push(at);
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert!(time_zone("Mars/Olympus").is_err());
    }
}
