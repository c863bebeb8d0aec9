//! A given/when/then DSL for deciders, for this crate's tests and for anyone testing against
//! the domain (projections, the shell's actor tests).
//!
//! ```text
//! given([registered(), charge(12_500)])
//!     .when(RecordPayment { amount: Cents(20_000), ..payment() })
//!     .then_rejects(Rejection::Overpayment { balance: Cents(12_500) });
//! ```
//!
//! `given` folds the history with `evolve`, `when` runs `decide` with a fixed [`Ctx`], and the
//! `then_*` methods assert on the outcome, panicking with a readable message (these are test
//! helpers; they do no I/O). `then_expect` also checks that each emitted event survives the codec
//! (encode, then decode) unchanged, so every given/when/then test doubles as a codec test.

use std::fmt::Debug;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::codec::DomainEvent;
use crate::context::Ctx;
use crate::rejection::Rejection;

/// The fixed "now" of every scenario unless [`Scenario::at`] says otherwise.
pub fn fixed_now() -> DateTime<Utc> {
    match Utc.with_ymd_and_hms(2025, 3, 1, 9, 30, 0) {
        chrono::LocalResult::Single(t) => t,
        _ => unreachable!("2025-03-01T09:30:00Z is a valid UTC time"),
    }
}

/// The fixed context of a scenario.
pub fn fixed_ctx() -> Ctx {
    Ctx::new(fixed_now(), Uuid::from_u128(0x0c0f_fee0), "test-system")
}

/// A history to decide against.
#[derive(Debug, Clone)]
pub struct Scenario<A: Aggregate> {
    history: Vec<A::Event>,
    ctx: Ctx,
}

/// Starts a scenario from a history; the aggregate is inferred from the event type.
pub fn given<E: DomainEvent>(history: impl IntoIterator<Item = E>) -> Scenario<E::Aggregate> {
    Scenario {
        history: history.into_iter().collect(),
        ctx: fixed_ctx(),
    }
}

/// Starts a scenario from an empty stream.
pub fn given_no_history<A: Aggregate>() -> Scenario<A> {
    Scenario {
        history: Vec::new(),
        ctx: fixed_ctx(),
    }
}

impl<A: Aggregate> Scenario<A> {
    /// Decides at another `now` (and business time).
    #[must_use]
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.ctx.now = now;
        self.ctx.occurred_at = now;
        self
    }

    /// Decides with the given context.
    #[must_use]
    pub fn with_ctx(mut self, ctx: Ctx) -> Self {
        self.ctx = ctx;
        self
    }

    /// The state the history folds into.
    pub fn state(&self) -> A::State {
        A::replay(&self.history)
    }

    /// Runs `decide`.
    pub fn when(self, command: impl Into<A::Command>) -> Outcome<A> {
        let command = command.into();
        let state = self.state();
        let result = A::decide(&state, &command, &self.ctx);
        Outcome {
            state,
            command,
            result,
        }
    }
}

/// The result of `decide`, to assert on.
#[derive(Debug)]
pub struct Outcome<A: Aggregate> {
    state: A::State,
    command: A::Command,
    result: Result<Vec<A::Event>, Rejection>,
}

impl<A: Aggregate> Outcome<A> {
    /// Asserts the command is accepted with exactly these events, and that each of them
    /// round-trips through the codec.
    #[track_caller]
    pub fn then_expect(self, expected: impl IntoIterator<Item = A::Event>) -> Self {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match &self.result {
            Ok(events) => {
                assert_eq!(events, &expected, "events of {:?}", self.command);
                for event in events {
                    assert_codec_round_trip::<A>(event);
                }
            }
            Err(rejection) => panic!(
                "expected {:?} to be accepted with {expected:?}, got rejection {rejection:?}",
                self.command
            ),
        }
        self
    }

    /// Asserts the command is accepted as a no-op (no events).
    #[track_caller]
    pub fn then_no_events(self) -> Self {
        self.then_expect([])
    }

    /// Asserts the command is refused with exactly this rejection.
    #[track_caller]
    pub fn then_rejects(self, expected: Rejection) {
        match &self.result {
            Ok(events) => panic!(
                "expected {:?} to be rejected with {expected:?}, got events {events:?}",
                self.command
            ),
            Err(rejection) => assert_eq!(rejection, &expected, "rejection of {:?}", self.command),
        }
    }

    /// Asserts the command is refused with this HTTP status (for table tests over many bodies).
    #[track_caller]
    pub fn then_rejects_with_status(self, status: u16) {
        match &self.result {
            Ok(events) => panic!(
                "expected {:?} to be rejected with {status}, got events {events:?}",
                self.command
            ),
            Err(rejection) => assert_eq!(rejection.status(), status, "{rejection:?}"),
        }
    }

    /// Asserts the state after applying the emitted events equals `expected`.
    #[track_caller]
    pub fn then_state(self, expected: A::State) -> Self {
        let after = self.state_after();
        assert_eq!(after, expected, "state after {:?}", self.command);
        self
    }

    /// Runs checks on the state after applying the emitted events.
    #[track_caller]
    pub fn then_state_matches(self, check: impl FnOnce(&A::State)) -> Self {
        check(&self.state_after());
        self
    }

    /// The emitted events (empty when rejected).
    pub fn events(&self) -> &[A::Event] {
        match &self.result {
            Ok(events) => events,
            Err(_) => &[],
        }
    }

    #[track_caller]
    fn state_after(&self) -> A::State {
        match &self.result {
            Ok(events) => events
                .iter()
                .fold(self.state.clone(), |state, event| A::evolve(state, event)),
            Err(rejection) => panic!(
                "expected {:?} to be accepted, got rejection {rejection:?}",
                self.command
            ),
        }
    }
}

/// Asserts `decode(encode(event)) == event`.
#[track_caller]
pub fn assert_codec_round_trip<A: Aggregate>(event: &A::Event)
where
    A::Event: Debug,
{
    let encoded = A::encode(event);
    match A::decode(
        encoded.event_type,
        encoded.schema_version,
        encoded.data.clone(),
    ) {
        Ok(decoded) => assert_eq!(&decoded, event, "codec round trip of {encoded:?}"),
        Err(error) => panic!("{encoded:?} does not decode: {error}"),
    }
}

/// Asserts the contract of one command body: it parses to `expected`, it still does with an
/// `occurred_at`, and the same body with one unknown field is refused with a 422 naming it.
#[track_caller]
pub fn assert_contract_body<A: Aggregate>(body: serde_json::Value, expected: A::Command) {
    match A::parse_command(body.clone()) {
        Ok(parsed) => {
            assert_eq!(parsed.command, expected, "{body}");
            assert_eq!(parsed.occurred_at, None);
        }
        Err(rejection) => panic!("{body} refused: {rejection}"),
    }

    let mut with_time = body.clone();
    with_time["occurred_at"] = serde_json::json!("2025-02-28T23:15:00Z");
    match A::parse_command(with_time) {
        Ok(parsed) => {
            assert_eq!(parsed.command, expected, "{body} with occurred_at");
            assert!(parsed.occurred_at.is_some());
        }
        Err(rejection) => panic!("{body} with occurred_at refused: {rejection}"),
    }

    let mut with_unknown = body.clone();
    with_unknown["surprise_field"] = serde_json::json!(1);
    match A::parse_command(with_unknown) {
        Ok(parsed) => panic!(
            "{body} with an unknown field parsed as {:?}",
            parsed.command
        ),
        Err(rejection) => {
            assert_eq!(rejection.status(), 422, "{rejection}");
            assert!(
                rejection.to_string().contains("surprise_field"),
                "{rejection}"
            );
        }
    }
}
