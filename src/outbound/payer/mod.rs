//! The payer's eligibility service over HTTP, per the pinned contract (DESIGN.md "Process
//! managers"): `POST {payer_url}/CoverageEligibilityRequest` with a FHIR R4
//! CoverageEligibilityRequest, answered by a CoverageEligibilityResponse whose
//! `insurance[0].inforce` decides.
//!
//! How answers are classed, and why:
//! - **2xx** with `inforce` true or false: an answer ([`Eligibility::Eligible`] /
//!   [`Eligibility::NotInForce`]).
//! - **4xx**: a denial ([`Eligibility::Denied`]) keeping the OperationOutcome as the reason.
//!   The payer understood the request and refused it; asking again changes nothing. Two
//!   exceptions, careflow's decision: **408** and **429** say "not now", not "not covered", so
//!   they are failures to retry like a 5xx. Denying a patient's coverage because the payer
//!   was busy would be wrong.
//! - **5xx**, a timeout (default 2 s, the whole exchange), no connection, or an `https` payer
//!   whose certificate is not trusted (the system's roots plus `payer_tls_ca_file`): a failure,
//!   retried with jittered exponential backoff, and counted by the [`CircuitBreaker`] (service
//!   `payer`). While the breaker is open, a check fails at once with
//!   [`PayerError::CircuitOpen`] and sends nothing.
//! - A 2xx that is not a CoverageEligibilityResponse with a boolean `inforce`: a failure
//!   ([`PayerError::MalformedAnswer`]), not retried (the same request would get the same
//!   answer) but counted by the breaker.
//!
//! This module makes calls and reports; turning the answer into `RecordEligibility`, and
//! giving up at the deadline, belong to the eligibility policy and its runner.
//!
//! Claims go through the same client ([`PayerClient::submit_claim`]: one HTTP client, one
//! breaker, the same timeout and retries) to `POST {payer_url}/Claim/$submit` ([`claim`]).
//! A 2xx answer is a ClaimResponse ([`ClaimAnswer`]); a 4xx is the payer refusing the claim,
//! recorded as a denial with the OperationOutcome's summary as the reason; 408, 429 and 5xx
//! are failures to retry, as for eligibility.

pub mod claim;
pub mod fhir;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use careflow_aggregates::claim::{ClaimOutcome, RecordClaimResponse};
use careflow_aggregates::policies::{ClaimSubmission, EligibilityAnswer, EligibilityCheck};

pub use claim::ClaimAnswer;

use crate::clock::Clock;
use crate::config::Config;
use crate::operations::metrics;
use crate::outbound::breaker::{BreakerSettings, CircuitBreaker, CircuitOpen};
use crate::tls::CaFileError;

/// The breaker's service label.
pub const SERVICE: &str = "payer";

/// Connection and retry knobs of the payer client.
#[derive(Debug, Clone, PartialEq)]
pub struct PayerSettings {
    /// `payer_url`: the base the contract's path is appended to, `http` or `https`.
    pub base_url: String,
    /// `payer_tls_ca_file`: a PEM file of CA certificates trusted for an `https` payer besides
    /// the system's (a hospital's own CA).
    pub ca_file: Option<PathBuf>,
    /// Longest one exchange may take, connection to last byte (`payer_timeout_ms`, 2 s).
    pub timeout: Duration,
    /// Attempts per check, the first included (`payer_attempts`, 3).
    pub attempts: u32,
    /// The backoff before the second attempt; it doubles each time, up to `backoff_max`, and
    /// each wait is jittered between half and all of it so that many checks retrying together
    /// spread out.
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    /// `payer_breaker_failures` (5) and `payer_breaker_cool_down_ms` (30 s).
    pub breaker: BreakerSettings,
}

impl PayerSettings {
    /// The defaults for a payer at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            ca_file: None,
            timeout: Duration::from_secs(2),
            attempts: 3,
            backoff_first: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            breaker: BreakerSettings::default(),
        }
    }

    /// The settings `config` names, or `None` when no `payer_url` is configured (the
    /// eligibility flow then cannot ask a payer).
    pub fn from_config(config: &Config) -> Option<Self> {
        let base_url = config.payer_url.clone()?;
        Some(Self {
            ca_file: config.payer_tls_ca_file.clone(),
            timeout: Duration::from_millis(config.payer_timeout_ms),
            attempts: config.payer_attempts.max(1),
            breaker: BreakerSettings {
                failure_threshold: config.payer_breaker_failures.max(1),
                cool_down: Duration::from_millis(config.payer_breaker_cool_down_ms),
            },
            ..Self::new(base_url)
        })
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1), jittered.
    fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self
            .backoff_first
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let cap = doubled.min(self.backoff_max);
        let half = cap / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }
}

/// What the payer said.
#[derive(Debug, Clone, PartialEq)]
pub enum Eligibility {
    /// `insurance[0].inforce` is true.
    Eligible { response_id: Option<String> },
    /// `insurance[0].inforce` is false.
    NotInForce { response_id: Option<String> },
    /// A 4xx: the payer refused the request. `outcome` is its OperationOutcome, when the body
    /// was one; `summary` is its first issue in one line.
    Denied {
        status: u16,
        outcome: Option<serde_json::Value>,
        summary: String,
    },
}

impl Eligibility {
    /// The answer in the domain's terms, for `policies::eligibility::record_answer`.
    pub fn to_answer(&self) -> EligibilityAnswer {
        match self {
            Eligibility::Eligible { response_id } => EligibilityAnswer {
                eligible: true,
                reference: response_reference(response_id.as_deref()),
            },
            Eligibility::NotInForce { response_id } => EligibilityAnswer {
                eligible: false,
                reference: response_reference(response_id.as_deref()),
            },
            Eligibility::Denied { summary, .. } => EligibilityAnswer {
                eligible: false,
                reference: Some(summary.clone()),
            },
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            Eligibility::Eligible { .. } => "eligible",
            Eligibility::NotInForce { .. } => "not_in_force",
            Eligibility::Denied { .. } => "denied",
        }
    }
}

fn response_reference(response_id: Option<&str>) -> Option<String> {
    response_id.map(|id| format!("CoverageEligibilityResponse/{id}"))
}

/// Why a check got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PayerError {
    /// Occurs when `payer_url` is not an http(s) URL. A configuration error: fix the URL.
    #[error("payer_url is not an http or https URL")]
    InvalidUrl,
    /// Occurs when `payer_tls_ca_file` cannot be read or holds no usable certificate. A
    /// configuration error, not retried (`serve` refuses to start with it).
    #[error("payer_tls_ca_file cannot be used")]
    CaFile(#[source] CaFileError),
    /// Occurs when the HTTP client cannot be built. Not retried.
    #[error("the payer HTTP client cannot be built: {0}")]
    Client(#[source] reqwest::Error),
    /// Occurs when the exchange took longer than the timeout. Retried.
    #[error("the payer did not answer within {0:?}")]
    Timeout(Duration),
    /// Occurs on a 5xx, or a 408/429. Retried.
    #[error("the payer answered HTTP {status}")]
    Unavailable { status: u16 },
    /// Occurs when no connection could be made or it broke. Retried.
    #[error("the payer cannot be reached: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// Occurs when a 2xx answer is not the contract's shape. Not retried; counted by the
    /// breaker.
    #[error("the payer's answer does not follow the contract: {detail}")]
    MalformedAnswer { detail: &'static str },
    /// Occurs while the breaker is open: nothing was sent. Retry after `retry_in`.
    #[error(transparent)]
    CircuitOpen(#[from] CircuitOpen),
}

impl PayerError {
    /// Whether another attempt right away (after backoff) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PayerError::Timeout(_) | PayerError::Unavailable { .. } | PayerError::Unreachable(_)
        )
    }

    /// The metric label of the outcome.
    fn outcome(&self) -> &'static str {
        match self {
            PayerError::InvalidUrl | PayerError::CaFile(_) | PayerError::Client(_) => "client",
            PayerError::Timeout(_) => "timeout",
            PayerError::Unavailable { .. } => "server_error",
            PayerError::Unreachable(_) => "transport",
            PayerError::MalformedAnswer { .. } => "malformed",
            PayerError::CircuitOpen(_) => "circuit_open",
        }
    }
}

/// The eligibility client. Cheap to clone; clones share the connection pool and the breaker.
#[derive(Debug, Clone)]
pub struct PayerClient {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    /// `{payer_url}/Claim/$submit`.
    claim_endpoint: reqwest::Url,
    settings: PayerSettings,
    breaker: Arc<CircuitBreaker>,
    /// Dates each request (`created`).
    clock: Clock,
}

impl PayerClient {
    /// A client with its own breaker (service `payer`).
    ///
    /// # Errors
    /// [`PayerError::InvalidUrl`], [`PayerError::CaFile`] or [`PayerError::Client`].
    pub fn new(settings: PayerSettings) -> Result<Self, PayerError> {
        let breaker = Arc::new(CircuitBreaker::new(SERVICE, settings.breaker));
        Self::with_breaker(settings, breaker)
    }

    /// A client sharing `breaker` (several runners calling one payer trip one breaker).
    ///
    /// # Errors
    /// [`PayerError::InvalidUrl`], [`PayerError::CaFile`] or [`PayerError::Client`].
    pub fn with_breaker(
        settings: PayerSettings,
        breaker: Arc<CircuitBreaker>,
    ) -> Result<Self, PayerError> {
        let base = reqwest::Url::parse(&settings.base_url).map_err(|_| PayerError::InvalidUrl)?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(PayerError::InvalidUrl);
        }
        let endpoint = reqwest::Url::parse(&format!(
            "{}/CoverageEligibilityRequest",
            base.as_str().trim_end_matches('/')
        ))
        .map_err(|_| PayerError::InvalidUrl)?;
        let claim_endpoint = reqwest::Url::parse(&format!(
            "{}/Claim/$submit",
            base.as_str().trim_end_matches('/')
        ))
        .map_err(|_| PayerError::InvalidUrl)?;
        let http = crate::tls::http_client(settings.ca_file.as_deref())
            .map_err(PayerError::CaFile)?
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(PayerError::Client)?;
        Ok(Self {
            http,
            endpoint,
            claim_endpoint,
            settings,
            breaker,
            clock: Clock::system(),
        })
    }

    /// The same client dating its requests by `clock` (the system's by default).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }

    pub fn settings(&self) -> &PayerSettings {
        &self.settings
    }

    /// Checks eligibility, retrying failures with jittered exponential backoff up to
    /// `attempts` times. An open breaker ends the retries at once.
    ///
    /// # Errors
    /// The last attempt's [`PayerError`].
    #[tracing::instrument(skip_all, fields(account_id = %check.account_id))]
    pub async fn check(&self, check: &EligibilityCheck) -> Result<Eligibility, PayerError> {
        self.retried(|| self.check_once(check)).await
    }

    /// Sends a claim to the payer (`POST {payer_url}/Claim/$submit`), retrying failures as
    /// [`PayerClient::check`] does. `member_id` is read from the account by the caller.
    ///
    /// # Errors
    /// The last attempt's [`PayerError`].
    #[tracing::instrument(skip_all, fields(claim_id = %submission.claim_id))]
    pub async fn submit_claim(
        &self,
        submission: &ClaimSubmission,
        member_id: Option<&str>,
    ) -> Result<ClaimAnswer, PayerError> {
        self.retried(|| self.submit_claim_once(submission, member_id))
            .await
    }

    /// Runs `once` until it succeeds, fails for good, or `attempts` are spent.
    async fn retried<T, F, Fut>(&self, mut once: F) -> Result<T, PayerError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, PayerError>>,
    {
        let mut attempt = 1;
        loop {
            match once().await {
                Err(error) if error.is_retryable() && attempt < self.settings.attempts => {
                    let wait = self.settings.backoff(attempt);
                    tracing::debug!(%error, attempt, ?wait, "payer call failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// One call through the breaker, counted in `careflow_payer_requests_total`.
    async fn guarded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, PayerError>>,
        outcome: impl Fn(&T) -> &'static str,
    ) -> Result<T, PayerError> {
        let result = match self.breaker.try_acquire() {
            Err(open) => Err(PayerError::from(open)),
            Ok(permit) => {
                let result = call.await;
                match &result {
                    Ok(_) => permit.succeeded(),
                    Err(_) => permit.failed(),
                }
                result
            }
        };
        metrics::payer_request(match &result {
            Ok(answer) => outcome(answer),
            Err(error) => error.outcome(),
        });
        result
    }

    /// One attempt, through the breaker.
    ///
    /// # Errors
    /// [`PayerError`]; see the module documentation for how each answer is classed.
    pub async fn check_once(&self, check: &EligibilityCheck) -> Result<Eligibility, PayerError> {
        self.guarded(self.send(check), Eligibility::outcome).await
    }

    /// One claim submission, through the breaker.
    ///
    /// # Errors
    /// [`PayerError`]: a 2xx that is not a readable ClaimResponse is
    /// [`PayerError::MalformedAnswer`].
    pub async fn submit_claim_once(
        &self,
        submission: &ClaimSubmission,
        member_id: Option<&str>,
    ) -> Result<ClaimAnswer, PayerError> {
        let body = claim::claim_request(submission, member_id, self.clock.now()).to_string();
        let call = self.send_claim(submission, body);
        self.guarded(call, |answer| match answer {
            ClaimAnswer::Queued { .. } => "claim_queued",
            ClaimAnswer::Adjudicated(_) => "claim_adjudicated",
        })
        .await
    }

    async fn send_claim(
        &self,
        submission: &ClaimSubmission,
        body: String,
    ) -> Result<ClaimAnswer, PayerError> {
        let (status, bytes) = self.post(&self.claim_endpoint, body).await?;
        match status {
            200..=299 => {
                let value: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|_| PayerError::MalformedAnswer {
                        detail: "the answer is not JSON",
                    })?;
                let fallback = format!("urn:uuid:{}", submission.record_command_id);
                claim::read_claim_response(&value, &submission.lines, Some(&fallback)).map_err(
                    |error| PayerError::MalformedAnswer {
                        detail: match error {
                            claim::ClaimResponseError::NotClaimResponse => {
                                "the answer is not a ClaimResponse"
                            }
                            claim::ClaimResponseError::Missing { detail, .. }
                            | claim::ClaimResponseError::Invalid { detail, .. } => detail,
                        },
                    },
                )
            }
            400..=499 => {
                let Eligibility::Denied { summary, .. } = fhir::denial(status, &bytes) else {
                    unreachable!("fhir::denial always answers Denied")
                };
                Ok(ClaimAnswer::Adjudicated(RecordClaimResponse {
                    outcome: ClaimOutcome::Denied,
                    paid_amount: careflow_aggregates::Cents::ZERO,
                    adjustments: Vec::new(),
                    denial_reason: Some(format!("the payer refused the claim: {summary}")),
                    reference: format!("urn:uuid:{}", submission.record_command_id),
                }))
            }
            _ => Err(PayerError::MalformedAnswer {
                detail: "the answer is neither 2xx, 4xx nor 5xx",
            }),
        }
    }

    /// POSTs FHIR JSON to `endpoint`: the status and body of a non-retryable answer.
    async fn post(
        &self,
        endpoint: &reqwest::Url,
        body: String,
    ) -> Result<(u16, bytes::Bytes), PayerError> {
        let transport = |error: reqwest::Error| {
            if error.is_timeout() {
                PayerError::Timeout(self.settings.timeout)
            } else {
                PayerError::Unreachable(error)
            }
        };
        let response = self
            .http
            .post(endpoint.clone())
            .header(CONTENT_TYPE, fhir::FHIR_JSON)
            .header(ACCEPT, fhir::FHIR_JSON)
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        if response.status().is_server_error() || status == 408 || status == 429 {
            return Err(PayerError::Unavailable { status });
        }
        let bytes = response.bytes().await.map_err(transport)?;
        Ok((status, bytes))
    }

    async fn send(&self, check: &EligibilityCheck) -> Result<Eligibility, PayerError> {
        let body = fhir::eligibility_request(check, self.clock.now()).to_string();
        let (status, bytes) = self.post(&self.endpoint, body).await?;
        match status {
            200..=299 => fhir::parse_response(&bytes),
            400..=499 => Ok(fhir::denial(status, &bytes)),
            _ => Err(PayerError::MalformedAnswer {
                detail: "the answer is neither 2xx, 4xx nor 5xx",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stays_within_its_jitter() {
        let settings = PayerSettings {
            backoff_first: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
            ..PayerSettings::new("http://payer")
        };
        for _ in 0..50 {
            let first = settings.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let second = settings.backoff(2);
            assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
            let capped = settings.backoff(10);
            assert!(capped >= Duration::from_millis(150) && capped <= Duration::from_millis(300));
        }
    }

    #[test]
    fn http_and_https_urls_are_accepted_and_the_path_is_appended() {
        assert!(matches!(
            PayerClient::new(PayerSettings::new("ftp://payer")),
            Err(PayerError::InvalidUrl)
        ));
        assert!(matches!(
            PayerClient::new(PayerSettings::new("not a url")),
            Err(PayerError::InvalidUrl)
        ));
        let client = PayerClient::new(PayerSettings::new("http://payer.example/fhir/")).unwrap();
        assert_eq!(
            client.endpoint.as_str(),
            "http://payer.example/fhir/CoverageEligibilityRequest"
        );
        assert_eq!(
            client.claim_endpoint.as_str(),
            "http://payer.example/fhir/Claim/$submit"
        );
        let client = PayerClient::new(PayerSettings::new("https://payer.example/fhir")).unwrap();
        assert_eq!(
            client.claim_endpoint.as_str(),
            "https://payer.example/fhir/Claim/$submit"
        );
    }

    #[test]
    fn a_ca_file_that_cannot_be_read_refuses_the_client() {
        let settings = PayerSettings {
            ca_file: Some(PathBuf::from("/nonexistent/payer-ca.pem")),
            ..PayerSettings::new("https://payer.example")
        };
        let error = PayerClient::new(settings).unwrap_err();
        assert!(matches!(error, PayerError::CaFile(_)), "{error:?}");
        assert!(!error.is_retryable());
        assert!(
            crate::error_chain::error_chain(&error).starts_with(
                "payer_tls_ca_file cannot be used: the CA file /nonexistent/payer-ca.pem cannot be read: "
            ),
            "{error}"
        );
    }

    #[test]
    fn answers_map_to_the_domain() {
        assert_eq!(
            Eligibility::Eligible {
                response_id: Some("r1".into())
            }
            .to_answer(),
            EligibilityAnswer {
                eligible: true,
                reference: Some("CoverageEligibilityResponse/r1".into())
            }
        );
        assert_eq!(
            Eligibility::Denied {
                status: 404,
                outcome: None,
                summary: "HTTP 404".into()
            }
            .to_answer(),
            EligibilityAnswer {
                eligible: false,
                reference: Some("HTTP 404".into())
            }
        );
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(PayerError::Timeout(Duration::from_secs(2)).is_retryable());
        assert!(PayerError::Unavailable { status: 503 }.is_retryable());
        assert!(!PayerError::MalformedAnswer { detail: "x" }.is_retryable());
        assert!(
            !PayerError::CircuitOpen(CircuitOpen {
                service: SERVICE,
                retry_in: Duration::ZERO
            })
            .is_retryable()
        );
    }
}
