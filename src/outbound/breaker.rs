//! A circuit breaker for calls to an outside service (the payer now, Odoo next).
//!
//! When a service is down, hammering it with retries slows every caller down (each waits for
//! its timeout) and makes the service's recovery harder. The breaker counts consecutive
//! failures; after `failure_threshold` of them it *opens* and refuses calls at once for
//! `cool_down`. Then it lets exactly one call through (*half-open*): a success closes it, a
//! failure opens it for another cool-down. Its state is exported as
//! `careflow_circuit_breaker_state{service}` (0 closed, 1 half-open, 2 open); the gauge moves
//! when a call is tried, so an idle open breaker still reads 2 after its cool-down.
//!
//! What counts as a failure is the caller's business: a payer's 4xx is an answer (a denial),
//! not a failure; a 5xx or a timeout is. The breaker knows nothing of HTTP.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::operations::metrics;

/// How a breaker trips and recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before it lets one probe through.
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; failures are being counted.
    Closed,
    /// One probe call is allowed to find out whether the service is back.
    HalfOpen,
    /// Calls are refused until the cool-down ends.
    Open,
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 half-open, 2 open (higher is worse, for alert rules).
    pub fn gauge_value(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// Why a call was refused without being made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{service} circuit is open; next probe in {retry_in:?}")]
pub struct CircuitOpen {
    pub service: &'static str,
    /// How long until the breaker lets a probe through (zero while a probe is in flight).
    pub retry_in: Duration,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

/// A circuit breaker for one outside service; share it (`Arc`) between every caller of that
/// service.
#[derive(Debug)]
pub struct CircuitBreaker {
    service: &'static str,
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

/// Leave to make one call. Report how it went with [`Permit::succeeded`] or
/// [`Permit::failed`]; a permit dropped without a report (the call was cancelled) frees the
/// probe slot and changes nothing else.
#[derive(Debug)]
#[must_use = "report the call's outcome on the permit"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    reported: bool,
}

impl CircuitBreaker {
    /// A closed breaker for `service` (a bounded metric label such as `payer` or `odoo`).
    pub fn new(service: &'static str, settings: BreakerSettings) -> Self {
        let breaker = Self {
            service,
            settings: BreakerSettings {
                failure_threshold: settings.failure_threshold.max(1),
                ..settings
            },
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                probe_in_flight: false,
            }),
        };
        metrics::breaker_state(service, BreakerState::Closed.gauge_value());
        breaker
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The state now (an open breaker whose cool-down ended reads as half-open).
    pub fn state(&self) -> BreakerState {
        self.state_at(Instant::now())
    }

    fn state_at(&self, now: Instant) -> BreakerState {
        let inner = self.lock();
        match (inner.state, inner.opened_at) {
            (BreakerState::Open, Some(opened)) if now >= opened + self.settings.cool_down => {
                BreakerState::HalfOpen
            }
            (state, _) => state,
        }
    }

    /// Asks to make one call.
    ///
    /// # Errors
    /// [`CircuitOpen`] while the breaker is open, or half-open with its one probe in flight.
    pub fn try_acquire(&self) -> Result<Permit<'_>, CircuitOpen> {
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(&self, now: Instant) -> Result<Permit<'_>, CircuitOpen> {
        let mut inner = self.lock();
        if inner.state == BreakerState::Open {
            let opened = inner.opened_at.unwrap_or(now);
            let reopens = opened + self.settings.cool_down;
            if now < reopens {
                return Err(CircuitOpen {
                    service: self.service,
                    retry_in: reopens - now,
                });
            }
            self.set_state(&mut inner, BreakerState::HalfOpen);
        }
        if inner.state == BreakerState::HalfOpen {
            if inner.probe_in_flight {
                return Err(CircuitOpen {
                    service: self.service,
                    retry_in: Duration::ZERO,
                });
            }
            inner.probe_in_flight = true;
            return Ok(Permit {
                breaker: self,
                probe: true,
                reported: false,
            });
        }
        Ok(Permit {
            breaker: self,
            probe: false,
            reported: false,
        })
    }

    fn on_success(&self, probe: bool) {
        let mut inner = self.lock();
        if probe {
            inner.probe_in_flight = false;
        }
        inner.consecutive_failures = 0;
        inner.opened_at = None;
        if inner.state != BreakerState::Closed {
            tracing::info!(service = self.service, "circuit closed");
            self.set_state(&mut inner, BreakerState::Closed);
        }
    }

    fn on_failure(&self, probe: bool, now: Instant) {
        let mut inner = self.lock();
        if probe {
            inner.probe_in_flight = false;
        }
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let trips = match inner.state {
            BreakerState::Closed => inner.consecutive_failures >= self.settings.failure_threshold,
            BreakerState::HalfOpen => true,
            // A call admitted before the breaker opened failed late: the cool-down stands.
            BreakerState::Open => false,
        };
        if trips {
            tracing::warn!(
                service = self.service,
                failures = inner.consecutive_failures,
                "circuit opened"
            );
            inner.opened_at = Some(now);
            self.set_state(&mut inner, BreakerState::Open);
        }
    }

    fn set_state(&self, inner: &mut Inner, state: BreakerState) {
        inner.state = state;
        metrics::breaker_state(self.service, state.gauge_value());
    }

    /// The lock guards plain counters that every method leaves consistent before it could
    /// panic, so a poisoned lock is safe to keep using; refusing every later call instead would
    /// turn one bug into an outage.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Permit<'_> {
    /// The call worked (or the service answered, even with a refusal).
    pub fn succeeded(mut self) {
        self.reported = true;
        self.breaker.on_success(self.probe);
    }

    /// The call failed in a way that says the service is unwell (timeout, 5xx, no connection).
    pub fn failed(mut self) {
        self.reported = true;
        self.breaker.on_failure(self.probe, Instant::now());
    }

    /// Whether this call is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.lock().probe_in_flight = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            BreakerSettings {
                failure_threshold: threshold,
                cool_down: Duration::from_secs(10),
            },
        )
    }

    fn fail(b: &CircuitBreaker, now: Instant) {
        let permit = b.try_acquire_at(now).unwrap();
        permit.reported_failure_at(now);
    }

    impl Permit<'_> {
        fn reported_failure_at(mut self, now: Instant) {
            self.reported = true;
            self.breaker.on_failure(self.probe, now);
        }
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let b = breaker(3);
        let t0 = Instant::now();
        fail(&b, t0);
        fail(&b, t0);
        assert_eq!(b.state_at(t0), BreakerState::Closed);
        fail(&b, t0);
        assert_eq!(b.state_at(t0), BreakerState::Open);
        let refused = b.try_acquire_at(t0 + Duration::from_secs(4)).unwrap_err();
        assert_eq!(refused.retry_in, Duration::from_secs(6));
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = breaker(2);
        let t0 = Instant::now();
        fail(&b, t0);
        b.try_acquire_at(t0).unwrap().succeeded();
        fail(&b, t0);
        assert_eq!(b.state_at(t0), BreakerState::Closed);
    }

    #[test]
    fn after_the_cool_down_one_probe_goes_through_and_its_success_closes() {
        let b = breaker(1);
        let t0 = Instant::now();
        fail(&b, t0);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.state_at(later), BreakerState::HalfOpen);
        let probe = b.try_acquire_at(later).unwrap();
        assert!(probe.is_probe());
        let second = b.try_acquire_at(later).unwrap_err();
        assert_eq!(second.retry_in, Duration::ZERO);
        probe.succeeded();
        assert_eq!(b.state_at(later), BreakerState::Closed);
        assert!(!b.try_acquire_at(later).unwrap().is_probe());
    }

    #[test]
    fn a_failed_probe_opens_for_another_cool_down() {
        let b = breaker(1);
        let t0 = Instant::now();
        fail(&b, t0);
        let later = t0 + Duration::from_secs(10);
        b.try_acquire_at(later).unwrap().reported_failure_at(later);
        assert_eq!(b.state_at(later), BreakerState::Open);
        assert!(b.try_acquire_at(later + Duration::from_secs(9)).is_err());
        assert!(b.try_acquire_at(later + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn a_dropped_probe_frees_the_slot() {
        let b = breaker(1);
        let t0 = Instant::now();
        fail(&b, t0);
        let later = t0 + Duration::from_secs(10);
        drop(b.try_acquire_at(later).unwrap());
        assert!(b.try_acquire_at(later).unwrap().is_probe());
    }

    #[test]
    fn the_state_is_exported_as_a_gauge() {
        let b = CircuitBreaker::new(
            "gauge_test",
            BreakerSettings {
                failure_threshold: 1,
                cool_down: Duration::from_secs(60),
            },
        );
        let line = |value: i64| {
            format!("careflow_circuit_breaker_state{{service=\"gauge_test\"}} {value}")
        };
        assert!(metrics::global().render().contains(&line(0)));
        b.try_acquire().unwrap().failed();
        assert!(metrics::global().render().contains(&line(2)));
    }
}
