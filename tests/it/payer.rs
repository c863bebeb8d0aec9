//! The payer client against the fake payer: answers, denials, timeouts retried, and the
//! circuit breaker opening, refusing without sending, and closing on a successful probe.
//!
//! Each test gives its client its own breaker with its own service label, so tests running in
//! parallel never share breaker state or gauge lines.

use std::sync::Arc;
use std::time::Duration;

use careflow::outbound::breaker::{BreakerSettings, BreakerState, CircuitBreaker};
use careflow::outbound::payer::{Eligibility, PayerClient, PayerError, PayerSettings};
use careflow_aggregates::policies::EligibilityCheck;
use chrono::Utc;
use uuid::Uuid;

use crate::fake_payer::FakePayer;
use crate::support::eventually;

fn check(member_id: &str) -> EligibilityCheck {
    EligibilityCheck {
        account_id: "MRN-PAYER-1".into(),
        payer_id: "ACME".into(),
        member_id: member_id.into(),
        record_command_id: Uuid::from_u128(42),
        give_up_at: Utc::now(),
    }
}

/// Fast settings: 300 ms timeout, millisecond backoff, the given breaker.
fn client(
    fake: &FakePayer,
    service: &'static str,
    attempts: u32,
    breaker: BreakerSettings,
) -> PayerClient {
    let settings = PayerSettings {
        timeout: Duration::from_millis(300),
        attempts,
        backoff_first: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        breaker,
        ..PayerSettings::new(fake.url.clone())
    };
    PayerClient::with_breaker(settings, Arc::new(CircuitBreaker::new(service, breaker))).unwrap()
}

fn lenient() -> BreakerSettings {
    BreakerSettings {
        failure_threshold: 100,
        cool_down: Duration::from_millis(50),
    }
}

#[tokio::test]
async fn eligible_member_is_answered_per_the_contract() {
    let fake = FakePayer::start();
    let client = client(&fake, "payer_it_eligible", 3, lenient());
    let answer = client.check(&check("eligible-1")).await.unwrap();
    assert_eq!(
        answer,
        Eligibility::Eligible {
            response_id: Some("resp-eligible".into())
        }
    );
    assert_eq!(fake.requests(), 1);
    let (content_type, body) = fake.last_request().unwrap();
    assert_eq!(content_type.as_deref(), Some("application/fhir+json"));
    assert_eq!(body["resourceType"], "CoverageEligibilityRequest");
    assert_eq!(
        body.pointer("/patient/identifier/value").unwrap(),
        "MRN-PAYER-1"
    );
    assert_eq!(body.pointer("/insurer/identifier/value").unwrap(), "ACME");
}

#[tokio::test]
async fn not_in_force_and_4xx_are_denials_and_not_retried() {
    let fake = FakePayer::start();
    let client = client(&fake, "payer_it_denied", 3, lenient());
    let not_covered = client.check(&check("not-covered-1")).await.unwrap();
    assert_eq!(
        not_covered,
        Eligibility::NotInForce {
            response_id: Some("resp-not-covered".into())
        }
    );
    assert!(!not_covered.to_answer().eligible);

    let denied = client.check(&check("denied-1")).await.unwrap();
    let Eligibility::Denied {
        status,
        outcome,
        summary,
    } = &denied
    else {
        panic!("{denied:?}")
    };
    assert_eq!(*status, 404);
    assert_eq!(outcome.as_ref().unwrap()["issue"][0]["code"], "not-found");
    assert_eq!(
        summary,
        "HTTP 404 OperationOutcome not-found: no such member at this payer"
    );
    assert_eq!(
        fake.requests_for("denied-1"),
        1,
        "a denial is an answer, not retried"
    );
    assert_eq!(client.breaker().state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_timeout_is_retried_and_the_retry_answers() {
    let fake = FakePayer::start();
    let client = client(&fake, "payer_it_timeout", 3, lenient());
    let answer = client.check(&check("slow-once-1")).await.unwrap();
    assert!(matches!(answer, Eligibility::Eligible { .. }), "{answer:?}");
    assert_eq!(fake.requests_for("slow-once-1"), 2);
}

#[tokio::test]
async fn a_payer_that_stays_slow_times_out_after_every_attempt() {
    let fake = FakePayer::start();
    let client = client(&fake, "payer_it_slow", 2, lenient());
    let error = client.check(&check("slow-1")).await.unwrap_err();
    assert!(matches!(error, PayerError::Timeout(_)), "{error:?}");
    assert_eq!(fake.requests_for("slow-1"), 2);
}

#[tokio::test]
async fn a_garbled_answer_is_a_failure_that_is_not_retried() {
    let fake = FakePayer::start();
    let client = client(&fake, "payer_it_garbled", 3, lenient());
    let error = client.check(&check("garbled-1")).await.unwrap_err();
    assert!(
        matches!(error, PayerError::MalformedAnswer { .. }),
        "{error:?}"
    );
    assert_eq!(fake.requests_for("garbled-1"), 1);
}

#[tokio::test]
async fn the_breaker_opens_after_n_failures_and_refuses_without_sending() {
    let fake = FakePayer::start();
    let breaker = BreakerSettings {
        failure_threshold: 3,
        cool_down: Duration::from_secs(60),
    };
    let client = client(&fake, "payer_it_open", 1, breaker);
    for _ in 0..3 {
        let error = client.check(&check("failing-1")).await.unwrap_err();
        assert!(
            matches!(error, PayerError::Unavailable { status: 503 }),
            "{error:?}"
        );
    }
    assert_eq!(client.breaker().state(), BreakerState::Open);
    // Refused at once: no request reaches the payer, whatever the member.
    let error = client.check(&check("eligible-1")).await.unwrap_err();
    let PayerError::CircuitOpen(open) = error else {
        panic!("{error:?}")
    };
    assert!(open.retry_in > Duration::from_secs(50), "{open:?}");
    assert_eq!(fake.requests(), 3);
    let gauge = careflow::operations::metrics::global().render();
    assert!(
        gauge.contains("careflow_circuit_breaker_state{service=\"payer_it_open\"} 2"),
        "{gauge}"
    );
}

#[tokio::test]
async fn retries_stop_as_soon_as_the_breaker_opens() {
    let fake = FakePayer::start();
    let breaker = BreakerSettings {
        failure_threshold: 2,
        cool_down: Duration::from_secs(60),
    };
    let client = client(&fake, "payer_it_retry_open", 5, breaker);
    let error = client.check(&check("failing-2")).await.unwrap_err();
    assert!(matches!(error, PayerError::CircuitOpen(_)), "{error:?}");
    assert_eq!(fake.requests(), 2, "five attempts allowed, two sent");
}

#[tokio::test]
async fn a_half_open_probe_closes_the_breaker_when_the_payer_is_back() {
    let fake = FakePayer::start();
    let breaker = BreakerSettings {
        failure_threshold: 2,
        cool_down: Duration::from_millis(50),
    };
    let client = client(&fake, "payer_it_probe", 1, breaker);
    fake.set_down(true);
    for _ in 0..2 {
        assert!(client.check(&check("eligible-1")).await.is_err());
    }
    assert_eq!(client.breaker().state(), BreakerState::Open);

    // Still down when the cool-down ends: the probe fails and the breaker opens again.
    eventually(
        Duration::from_secs(5),
        "the breaker to half-open",
        || async { (client.breaker().state() == BreakerState::HalfOpen).then_some(()) },
    )
    .await;
    let error = client.check(&check("eligible-1")).await.unwrap_err();
    assert!(matches!(error, PayerError::Unavailable { .. }), "{error:?}");
    assert_eq!(client.breaker().state(), BreakerState::Open);
    assert_eq!(fake.requests(), 3);

    // Back up: the next probe gets through and closes it.
    fake.set_down(false);
    let answer = eventually(Duration::from_secs(5), "a probe to get through", || async {
        match client.check(&check("eligible-1")).await {
            Ok(answer) => Some(answer),
            Err(PayerError::CircuitOpen(_)) => None,
            Err(other) => panic!("{other:?}"),
        }
    })
    .await;
    assert!(matches!(answer, Eligibility::Eligible { .. }));
    assert_eq!(client.breaker().state(), BreakerState::Closed);
    assert_eq!(fake.requests(), 4, "open-state checks sent nothing");
    let gauge = careflow::operations::metrics::global().render();
    assert!(
        gauge.contains("careflow_circuit_breaker_state{service=\"payer_it_probe\"} 0"),
        "{gauge}"
    );
}

#[tokio::test]
async fn an_unreachable_payer_is_a_retryable_failure() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = PayerSettings {
        attempts: 2,
        backoff_first: Duration::from_millis(1),
        ..PayerSettings::new(format!("http://127.0.0.1:{port}"))
    };
    let client = PayerClient::with_breaker(
        settings,
        Arc::new(CircuitBreaker::new("payer_it_unreachable", lenient())),
    )
    .unwrap();
    let error = client.check(&check("eligible-1")).await.unwrap_err();
    assert!(
        matches!(error, PayerError::Unreachable(_) | PayerError::Timeout(_)),
        "{error:?}"
    );
    assert!(error.is_retryable());
}
