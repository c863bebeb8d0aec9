//! The one clock and id source of the shell: every time of day careflow stamps, compares or
//! waits for, and every random id it makes, comes from a [`Clock`].
//!
//! Why one injected source rather than `Utc::now()` where it is needed: one place decides
//! what time it is, so a test can drive deadlines, timers, `as_of` reads and recorded times
//! by moving a [`ManualClock`] instead of sleeping, and get the same ids on every run. The
//! composition root (`app::runtime`) makes one [`Clock::system`] (or takes the test's) and
//! hands clones of it to every component that reads the time or makes ids; a component
//! built on its own (a tool, a test of one store) defaults to the system clock.
//!
//! What it does not own: durations measured for metrics, timeouts and backoff
//! (`std::time::Instant`, `tokio::time`), which are about elapsed time, not the time of day,
//! and the ids derived from others (UUID v5: event ids, policies' command ids), which are
//! functions of their inputs. The pure crates hold no clock at all: time comes into them as
//! arguments (`Ctx::now`).
//!
//! `clock_is_the_only_source` (a test below) fails when a direct call to the wall clock or
//! the random id generator appears in `src/`, `aggregates/src` or `projections/src` outside
//! this file, tests and the load generators of `app/bench`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

/// Where time and ids come from. Cheap to clone (one `Arc`); every clone reads the same
/// source, so a [`ManualClock`] moved by a test moves every component's time at once.
#[derive(Clone)]
pub struct Clock(Arc<dyn Source>);

/// A future that ends when a clock reaches an instant.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a clock is made of: the system's, or a test's.
trait Source: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    fn new_id(&self) -> Uuid;
    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep;
    fn name(&self) -> &'static str;
}

impl Clock {
    /// The real clock: the system's time of day and random (v4) ids. The default.
    #[must_use]
    pub fn system() -> Self {
        Clock(Arc::new(System))
    }

    /// A clock that stands still at `start` until the returned handle moves it, with
    /// deterministic ids (seed 0). [`ManualClock::clock`] gives the `Clock` to inject.
    #[must_use]
    pub fn manual(start: DateTime<Utc>) -> ManualClock {
        ManualClock::new(start, 0)
    }

    /// The time now, by this clock.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.0.now()
    }

    /// A new id nothing else derives: random (UUID v4) on the system clock, the next of a
    /// seeded sequence (still shaped as v4) on a manual one.
    #[must_use]
    pub fn new_id(&self) -> Uuid {
        self.0.new_id()
    }

    /// Ends once this clock reads `at` or later: a real sleep on the system clock; on a
    /// manual clock, when a test moves it that far (however long that takes in real time).
    /// Callers that must also wake for other reasons select on it with those.
    #[must_use]
    pub fn sleep_until(&self, at: DateTime<Utc>) -> Sleep {
        self.0.sleep_until(at)
    }

    /// How long until `at` by this clock; zero when it has passed.
    #[must_use]
    pub fn until(&self, at: DateTime<Utc>) -> Duration {
        (at - self.now()).to_std().unwrap_or(Duration::ZERO)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.0.name())
    }
}

/// The system's clock: `Utc::now()` and `Uuid::new_v4()`, the only calls of them outside
/// tests and the load generators.
struct System;

impl Source for System {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn new_id(&self) -> Uuid {
        Uuid::new_v4()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep {
        let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }

    fn name(&self) -> &'static str {
        "system"
    }
}

/// A test's clock: it moves only when told to, and its ids follow a seeded sequence.
///
/// Cloning the handle shares the clock. Two runtimes opened one after the other on the same
/// data must not reuse ids (a command id seen before is a duplicate): give the second a clock
/// of another seed ([`ManualClock::with_seed`]), or keep using the first one.
#[derive(Clone)]
pub struct ManualClock(Arc<Manual>);

struct Manual {
    now: watch::Sender<DateTime<Utc>>,
    seed: u64,
    next_id: AtomicU64,
}

impl ManualClock {
    fn new(start: DateTime<Utc>, seed: u64) -> Self {
        ManualClock(Arc::new(Manual {
            now: watch::Sender::new(start),
            seed,
            next_id: AtomicU64::new(0),
        }))
    }

    /// The same clock's ids from another seed: a fresh handle at `start`.
    #[must_use]
    pub fn with_seed(start: DateTime<Utc>, seed: u64) -> Self {
        Self::new(start, seed)
    }

    /// The [`Clock`] to hand to what is under test.
    #[must_use]
    pub fn clock(&self) -> Clock {
        Clock(Arc::clone(&self.0) as Arc<dyn Source>)
    }

    /// The time it reads.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        *self.0.now.borrow()
    }

    /// Moves the clock forward by `by`, waking whatever sleeps until a time now passed.
    ///
    /// # Panics
    /// When `by` is beyond chrono's range (centuries): a mistake in the test.
    pub fn advance(&self, by: Duration) {
        #[allow(clippy::expect_used)]
        let by = chrono::TimeDelta::from_std(by).expect("an advance within chrono's range");
        self.0.now.send_modify(|now| *now += by);
    }

    /// Sets the clock to `at` (backwards too: a clock that jumps is a case worth testing).
    pub fn set(&self, at: DateTime<Utc>) {
        self.0.now.send_replace(at);
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .field("seed", &self.0.seed)
            .finish_non_exhaustive()
    }
}

impl Source for Manual {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn new_id(&self) -> Uuid {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let high = splitmix64(self.seed ^ splitmix64(n));
        let low = splitmix64(high ^ n);
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&high.to_be_bytes());
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            loop {
                if *now.borrow_and_update() >= at {
                    return;
                }
                if now.changed().await.is_err() {
                    // The clock is gone (a test ended): it will never get there.
                    std::future::pending::<()>().await;
                }
            }
        })
    }

    fn name(&self) -> &'static str {
        "manual"
    }
}

/// A bijective mix of 64 bits (Steele, Lea and Flood's SplitMix64 finaliser): well-spread ids
/// from a counter, with no dependency on a random generator.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::Path;

    use chrono::TimeZone;

    use super::*;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap()
    }

    #[test]
    fn a_manual_clock_stands_still_until_moved_and_every_clone_sees_the_move() {
        let manual = Clock::manual(start());
        let clock = manual.clock();
        let other = clock.clone();
        assert_eq!(clock.now(), start());
        assert_eq!(clock.now(), start());
        manual.advance(Duration::from_secs(90));
        assert_eq!(other.now(), start() + chrono::TimeDelta::seconds(90));
        manual.set(start());
        assert_eq!(clock.now(), start());
        assert_eq!(
            clock.until(start() + chrono::TimeDelta::seconds(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            clock.until(start() - chrono::TimeDelta::seconds(5)),
            Duration::ZERO
        );
    }

    #[test]
    fn manual_ids_are_distinct_v4_shaped_and_the_same_on_every_run_of_a_seed() {
        let ids = |seed| {
            let clock = ManualClock::with_seed(start(), seed).clock();
            (0..1_000).map(|_| clock.new_id()).collect::<Vec<_>>()
        };
        let first = ids(0);
        assert_eq!(first, ids(0));
        assert_eq!(first.iter().collect::<HashSet<_>>().len(), first.len());
        assert!(first.iter().all(|id| id.get_version_num() == 4));
        let other = ids(1);
        assert!(first.iter().all(|id| !other.contains(id)));
    }

    #[test]
    fn the_system_clock_reads_the_wall_clock_and_makes_random_ids() {
        let clock = Clock::system();
        let before = Utc::now();
        let now = clock.now();
        assert!(now >= before && now <= Utc::now());
        assert_ne!(clock.new_id(), clock.new_id());
        assert_eq!(format!("{clock:?}"), "Clock(system)");
    }

    #[tokio::test]
    async fn a_sleep_on_a_manual_clock_ends_when_the_clock_is_moved_past_it() {
        let manual = Clock::manual(start());
        let clock = manual.clock();
        let due = start() + chrono::TimeDelta::minutes(30);
        let mut sleeping = tokio::spawn(clock.sleep_until(due));
        // Not due: still asleep after the scheduler has run it.
        tokio::task::yield_now().await;
        manual.advance(Duration::from_secs(29 * 60));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut sleeping)
                .await
                .is_err()
        );
        manual.advance(Duration::from_secs(60));
        tokio::time::timeout(Duration::from_secs(10), sleeping)
            .await
            .expect("the sleep ends once the clock passes its time")
            .unwrap();
        // A time already passed does not wait at all.
        tokio::time::timeout(Duration::from_secs(10), clock.sleep_until(start()))
            .await
            .unwrap();
    }

    /// The guard: no direct wall-clock reads or random ids outside this file, tests and the
    /// load generators. Inline test modules (`#[cfg(test)] mod … {` to the end of the file) are
    /// skipped.
    #[test]
    fn clock_is_the_only_source() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let patterns = [
            concat!("Utc::", "now"),
            concat!("Local::", "now"),
            concat!("Uuid::", "new_v4"),
            concat!("Uuid::", "now_v7"),
            concat!("SystemTime::", "now"),
        ];
        let mut found = Vec::new();
        for dir in ["src", "aggregates/src", "projections/src"] {
            scan(&root.join(dir), root, &patterns, &mut found);
        }
        assert!(
            found.is_empty(),
            "time and ids come from crate::clock::Clock; direct calls found:\n{}",
            found.join("\n")
        );
    }

    fn scan(dir: &Path, root: &Path, patterns: &[&str], found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                if !relative.ends_with("app/bench") && !path.ends_with("tests") {
                    scan(&path, root, patterns, found);
                }
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy();
            let allowed = relative == "src/clock.rs"
                || name == "tests.rs"
                || name == "proptests.rs"
                || name == "testing.rs"
                || !name.ends_with(".rs");
            if allowed {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (number, line) in lines.iter().enumerate() {
                // An inline test module runs to the end of the file by this crate's layout.
                let test_module_follows = lines
                    .get(number + 1)
                    .is_some_and(|next| next.starts_with("mod ") && next.ends_with('{'));
                if line.trim_start().starts_with("#[cfg(test)]") && test_module_follows {
                    break;
                }
                if patterns.iter().any(|pattern| line.contains(pattern)) {
                    found.push(format!("{relative}:{}: {}", number + 1, line.trim()));
                }
            }
        }
    }
}
