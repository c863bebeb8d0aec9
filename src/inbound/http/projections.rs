//! Reads of the projections' views, and their operation (status, rebuild).
//!
//! Every view read runs in one snapshot of the view database (see `views::ViewBackend::read`)
//! and answers `X-Careflow-Position`: the global position the view reflects. A caller that
//! just wrote at position P and must see its write asks `?min_position=P`: the read waits
//! until the view has caught up (polling the catalog), at most [`MAX_WAIT`], then answers 503
//! with `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use careflow_aggregates::StreamId;
use careflow_projections::analytics::{self, CycleTimes, DailyCounters, STAGES, percentile};
use careflow_projections::audit::{self, AccessEntry, StreamIndexRow};
use careflow_projections::billing::{
    self, AccountRow, AdjustmentRow, AgingReport, ChargeRow, ClaimLine, InvoiceReconciliation,
    PaymentRow,
};
use careflow_projections::claims::{self as claim_view, ClaimAgingReport, ClaimRow};
use careflow_projections::workforce;
use careflow_projections::{ViewStore, decode_row, load, load_prefix, load_range};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::{AppState, Caller, correlation_id};
use crate::operations::audit::access_log::{self, Access};
use crate::runtime::views::runner::ProjectionStatus;
use crate::runtime::views::{ProjectionSet, ViewError};

/// The response header naming the position a view reflects.
pub const POSITION_HEADER: &str = "x-careflow-position";
/// The longest a read waits for `min_position`.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// Most rows a list answers.
pub const MAX_ROWS: usize = 1_000;

impl From<ViewError> for ApiError {
    fn from(error: ViewError) -> Self {
        match error {
            ViewError::UnknownProjection(name) => ApiError::NotFound {
                title: "no such projection".into(),
                detail: format!("there is no projection named {name}; see GET /v1/projections"),
            },
            ViewError::Projection(error) => ApiError::Internal {
                cause: error.to_string(),
            },
            other => ApiError::unavailable(other),
        }
    }
}

fn projections(app: &AppState) -> Result<Arc<ProjectionSet>, ApiError> {
    Ok(Arc::clone(&app.ready()?.projections))
}

/// Waits until `name`'s live view reflects `min_position`, then runs `query` on it.
async fn read_view<T: Send + 'static>(
    set: Arc<ProjectionSet>,
    name: &'static str,
    min_position: Option<u64>,
    query: impl FnOnce(&dyn ViewStore) -> Result<T, ViewError> + Send + 'static,
) -> Result<(T, u64), ApiError> {
    if let Some(min) = min_position {
        let deadline = Instant::now() + MAX_WAIT;
        loop {
            let backend = Arc::clone(set.backend());
            let catalog = tokio::task::spawn_blocking(move || backend.catalog(name))
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))??;
            if catalog.live.is_some_and(|g| g.position >= min) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(ApiError::NotCaughtUp {
                    detail: format!(
                        "the {name} view has not reached position {min} within {} s",
                        MAX_WAIT.as_secs()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tokio::task::spawn_blocking(move || set.read(name, |view| query(view.rows)))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .map_err(ApiError::from)
}

fn answer<T: Serialize>(body: &T, position: u64) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((POSITION_HEADER, position.to_string()))
        .json(body)
}

fn not_found(title: &str, detail: String) -> ApiError {
    ApiError::NotFound {
        title: title.to_owned(),
        detail,
    }
}

fn valid_id(what: &'static str, id: &str) -> Result<(), ApiError> {
    careflow_aggregates::stream_id::validate_id(id).map_err(|error| {
        ApiError::bad_request(
            "invalid_id",
            format!("{what} is not valid"),
            error.to_string(),
            "ids are 1-128 characters of A-Z a-z 0-9 . _ : -",
        )
    })
}

/// `?min_position=` alone.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PositionQuery {
    /// Wait (up to 5 s) until the view reflects this global position; 503 otherwise.
    pub min_position: Option<u64>,
}

/// One account's billing.
#[derive(Debug, Serialize, ToSchema)]
pub struct BillingAccountView {
    /// Balance, totals and counts (money as string decimals).
    #[schema(value_type = Object)]
    pub account: AccountRow,
    #[schema(value_type = Vec<Object>)]
    pub charges: Vec<ChargeRow>,
    #[schema(value_type = Vec<Object>)]
    pub payments: Vec<PaymentRow>,
    #[schema(value_type = Vec<Object>)]
    pub adjustments: Vec<AdjustmentRow>,
}

fn rows<T>(pairs: Vec<(String, T)>) -> Vec<T> {
    pairs.into_iter().map(|(_, row)| row).collect()
}

/// A patient account's balance, charges, payments and adjustments.
#[utoipa::path(get, path = "/v1/billing/accounts/{mrn}", tag = "billing",
    params(("mrn" = String, Path, description = "The account's MRN"), PositionQuery),
    responses(
        (status = 200, description = "The account's billing; header X-Careflow-Position", body = BillingAccountView),
        (status = 403, description = "Role lacks the right (finance)", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account in the view", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "View not caught up to min_position, or unavailable", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn billing_account(
    req: HttpRequest,
    caller: Caller,
    mrn: web::Path<String>,
    query: web::Query<PositionQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mrn = mrn.into_inner();
    valid_id("mrn", &mrn)?;
    let set = projections(&app)?;
    let key = mrn.clone();
    let (view, position) = read_view(set, "billing", query.min_position, move |store| {
        let Some(account) = load::<AccountRow>(store, billing::ACCOUNTS, &key)? else {
            return Ok(None);
        };
        let prefix = format!("{key}/");
        Ok(Some(BillingAccountView {
            account,
            charges: rows(load_prefix(store, billing::CHARGES, &prefix)?),
            payments: rows(load_prefix(store, billing::PAYMENTS, &prefix)?),
            adjustments: rows(load_prefix(store, billing::ADJUSTMENTS, &prefix)?),
        }))
    })
    .await?;
    let view = view.ok_or_else(|| {
        not_found(
            "no such account",
            format!("the billing view has no account {mrn} (as of position {position})"),
        )
    })?;
    let runtime = app.ready()?;
    let stream = StreamId::new("patient_account", &mrn).map_err(|e| ApiError::Internal {
        cause: e.to_string(),
    })?;
    caller
        .record_read(
            runtime.store.as_ref(),
            &runtime.clock,
            Access::Billing,
            &stream,
            None,
            &correlation_id(&req),
        )
        .await?;
    Ok(answer(&view, position))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AgingQuery {
    /// The date items are aged at (YYYY-MM-DD, default today UTC).
    pub as_of: Option<NaiveDate>,
    pub min_position: Option<u64>,
}

/// What `GET /v1/billing/aging` answers: the accounts' A/R, and the claims outstanding with
/// each payer.
#[derive(Debug, Serialize)]
struct AgingView {
    #[serde(flatten)]
    accounts: AgingReport,
    /// Outstanding claims (`submitted` or `denied`) per payer, aged from their first
    /// submission (the claims view).
    claims: ClaimAgingReport,
}

/// Accounts receivable by age: 0–30, 31–60, 61–90, 91–120 and over 120 days; and the claims
/// outstanding with each payer by days since their first submission (`claims`).
#[utoipa::path(get, path = "/v1/billing/aging", tag = "billing",
    params(AgingQuery),
    responses(
        (status = 200, description = "A/R aging per account and totals per currency; claims per payer under `claims`", body = Object),
        (status = 403, description = "Role lacks the right (finance)", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "View not caught up, or unavailable", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn billing_aging(
    _caller: Caller,
    query: web::Query<AgingQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let as_of = query
        .as_of
        .unwrap_or_else(|| app.clock().now().date_naive());
    let (accounts, position): (AgingReport, u64) = read_view(
        projections(&app)?,
        "billing",
        query.min_position,
        move |store| Ok(billing::aging(store, as_of)?),
    )
    .await?;
    let (claims, _) = read_view(
        projections(&app)?,
        "claims",
        query.min_position,
        move |store| Ok(claim_view::claim_aging(store, as_of)?),
    )
    .await?;
    Ok(answer(&AgingView { accounts, claims }, position))
}

/// `?status=&payer=&after=&limit=&min_position=` of `GET /v1/billing/claims`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ClaimsQuery {
    /// Only claims of this status: draft, submitted, paid, partially_paid, denied or void.
    pub status: Option<String>,
    /// Only claims to this payer.
    pub payer: Option<String>,
    /// Only claim ids after this one (paging: the `next_after` of the previous page).
    pub after: Option<String>,
    /// Most rows (1 to 1000, default 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    pub min_position: Option<u64>,
}

/// A list of claims from the claims view.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimsView {
    /// Each claim: `claim_id`, `account_id`, `encounter_id`, `payer_id`, `status`, `currency`,
    /// `total`, `paid`, `adjusted`, `patient_balance` (string decimals), `submissions`,
    /// `first_submitted_at`, `submitted_at`, `adjudicated_at`, `denial_reason`, `reference`,
    /// `void_reason`.
    #[schema(value_type = Vec<Object>)]
    pub claims: Vec<ClaimRow>,
    /// Whether more matched than this page shows (the first by claim id are shown).
    pub truncated: bool,
    /// The `after` of the next page, or null at the end.
    pub next_after: Option<String>,
}

impl ClaimsView {
    /// One page of `claims` (in claim id order, so the last id shown pages on): at most
    /// `limit` rows.
    fn page(claims: Vec<ClaimRow>, limit: usize) -> Self {
        let mut view = Self::first(claims, limit);
        view.next_after = view
            .truncated
            .then(|| view.claims.last().map(|c| c.claim_id.clone()))
            .flatten();
        view
    }

    /// The first `limit` of `claims` in an order that does not page (the denial queue, by
    /// age): `truncated` says whether more matched.
    fn first(mut claims: Vec<ClaimRow>, limit: usize) -> Self {
        let truncated = claims.len() > limit;
        claims.truncate(limit);
        Self {
            claims,
            truncated,
            next_after: None,
        }
    }
}

const CLAIM_STATUSES: &[&str] = &[
    "draft",
    "submitted",
    "paid",
    "partially_paid",
    "denied",
    "void",
];

/// Claims with their status, payer and money, by claim id; `?status=` and `?payer=` filter.
#[utoipa::path(get, path = "/v1/billing/claims", tag = "billing",
    params(ClaimsQuery),
    responses(
        (status = 200, description = "Claims; header X-Careflow-Position", body = ClaimsView),
        (status = 400, description = "A status that is not a claim status, or a payer id that breaks the id rule", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks the right (finance)", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "View not caught up to min_position, or unavailable", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn billing_claims(
    _caller: Caller,
    query: web::Query<ClaimsQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ClaimsQuery {
        status,
        payer,
        after,
        limit,
        min_position,
    } = query.into_inner();
    let limit = super::reads::page_limit(limit, MAX_ROWS)?;
    if let Some(status) = &status
        && !CLAIM_STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "status is not a claim status",
            format!("{status:?} is not a claim status"),
            "use draft, submitted, paid, partially_paid, denied or void",
        ));
    }
    if let Some(payer) = &payer {
        valid_id("payer", payer)?;
    }
    let (rows, position) = read_view(projections(&app)?, "claims", min_position, move |store| {
        Ok(claim_view::claims(
            store,
            status.as_deref(),
            payer.as_deref(),
        )?)
    })
    .await?;
    let rows = match &after {
        Some(after) => rows
            .into_iter()
            .filter(|row| row.claim_id.as_str() > after.as_str())
            .collect(),
        None => rows,
    };
    Ok(answer(&ClaimsView::page(rows, limit), position))
}

/// The denial work queue: denied claims not yet resubmitted or voided, with the payer's
/// reason, oldest denial first.
#[utoipa::path(get, path = "/v1/billing/denials", tag = "billing",
    params(PositionQuery),
    responses(
        (status = 200, description = "Open denials; header X-Careflow-Position", body = ClaimsView),
        (status = 403, description = "Role lacks the right (finance)", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "View not caught up to min_position, or unavailable", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn billing_denials(
    _caller: Caller,
    query: web::Query<PositionQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (rows, position) = read_view(
        projections(&app)?,
        "claims",
        query.min_position,
        move |store| Ok(claim_view::denials(store)?),
    )
    .await?;
    Ok(answer(&ClaimsView::first(rows, MAX_ROWS), position))
}

/// An encounter's claim: its lines and what Odoo acknowledged.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimView {
    pub encounter_id: String,
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<ClaimLine>,
    /// The invoice careflow expects Odoo to hold (`open` until the encounter completes).
    #[schema(value_type = Option<Object>)]
    pub reconciliation: Option<InvoiceReconciliation>,
}

/// The claim lines of one encounter.
#[utoipa::path(get, path = "/v1/billing/encounters/{visit}/claim", tag = "billing",
    params(("visit" = String, Path, description = "The encounter's visit number"), PositionQuery),
    responses(
        (status = 200, description = "Claim lines and reconciliation", body = ClaimView),
        (status = 403, description = "Role lacks the right (finance)", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No charge and no invoice for this encounter", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn billing_claim(
    _caller: Caller,
    visit: web::Path<String>,
    query: web::Query<PositionQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let visit = visit.into_inner();
    valid_id("visit", &visit)?;
    let key = visit.clone();
    let (claim, position) = read_view(
        projections(&app)?,
        "billing",
        query.min_position,
        move |store| {
            Ok(ClaimView {
                lines: rows(load_prefix(
                    store,
                    billing::CLAIM_LINES,
                    &format!("{key}/"),
                )?),
                reconciliation: load(store, billing::RECONCILIATION, &key)?,
                encounter_id: key,
            })
        },
    )
    .await?;
    if claim.lines.is_empty() && claim.reconciliation.is_none() {
        return Err(not_found(
            "no such claim",
            format!("encounter {visit} has no charges in the billing view"),
        ));
    }
    Ok(answer(&claim, position))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DailyQuery {
    /// Only this facility.
    pub facility: Option<String>,
    /// First day (YYYY-MM-DD, inclusive; default 30 days before `to`).
    pub from: Option<NaiveDate>,
    /// Last day (inclusive; default today UTC).
    pub to: Option<NaiveDate>,
    pub min_position: Option<u64>,
}

impl DailyQuery {
    /// The days asked for; `today` is the default last day.
    fn span(&self, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), ApiError> {
        let to = self.to.unwrap_or(today);
        let from = self
            .from
            .unwrap_or_else(|| to.checked_sub_days(Days::new(30)).unwrap_or(to));
        if from > to {
            return Err(ApiError::bad_request(
                "invalid_query",
                "from is after to",
                format!("from {from} is after to {to}"),
                "give from <= to, as YYYY-MM-DD",
            ));
        }
        Ok((from, to))
    }
}

/// The daily rows of `[from, to]`, optionally of one facility, in date order.
fn days(
    store: &dyn ViewStore,
    from: NaiveDate,
    to: NaiveDate,
    facility: Option<&str>,
) -> Result<Vec<DailyCounters>, ViewError> {
    // Keys are `{YYYY-MM-DD} {facility}`: the day after `to` bounds the range.
    let end = to
        .checked_add_days(Days::new(1))
        .map(|d| d.format("%Y-%m-%d").to_string());
    let rows: Vec<(String, DailyCounters)> = load_range(
        store,
        analytics::DAILY,
        &from.format("%Y-%m-%d").to_string(),
        end.as_deref(),
    )?;
    Ok(rows
        .into_iter()
        .map(|(_, day)| day)
        .filter(|day| facility.is_none_or(|f| f == day.facility))
        .collect())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DailyView {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// One row per facility and day with activity, in date order.
    #[schema(value_type = Vec<Object>)]
    pub days: Vec<DailyCounters>,
}

/// Daily counters per facility.
#[utoipa::path(get, path = "/v1/analytics/daily", tag = "analytics",
    params(DailyQuery),
    responses(
        (status = 200, description = "Daily counters", body = DailyView),
        (status = 400, description = "Malformed query", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks the right (finance)", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn analytics_daily(
    _caller: Caller,
    query: web::Query<DailyQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = query.span(app.clock().now().date_naive())?;
    let facility = query.facility.clone();
    let (days, position) = read_view(
        projections(&app)?,
        "analytics",
        query.min_position,
        move |store| days(store, from, to, facility.as_deref()),
    )
    .await?;
    Ok(answer(&DailyView { from, to, days }, position))
}

/// One stage's durations over a span.
#[derive(Debug, Serialize, ToSchema)]
pub struct StageSummary {
    pub stage: String,
    pub count: usize,
    pub p50_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PurchaseCycleView {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub facility: Option<String>,
    /// Over the whole span, per stage (requested→approved, approved→ordered, ...).
    pub stages: Vec<StageSummary>,
    /// Per day: stage -> durations with that day's p50/p90.
    #[schema(schema_with = cycle_days_schema)]
    pub days: Vec<(
        NaiveDate,
        String,
        std::collections::BTreeMap<String, CycleTimes>,
    )>,
}

/// The schema of [`PurchaseCycleView::days`] as it is sent: an array of days, each day the
/// three-element array `[date, facility, {stage: cycle times}]` that serde makes of a tuple.
fn cycle_days_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{
        ArrayBuilder, ArrayItems, KnownFormat, ObjectBuilder, SchemaFormat, Type,
    };
    let date = ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
        .build();
    let facility = ObjectBuilder::new().schema_type(Type::String).build();
    let stages = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "stage -> {durations_seconds: [seconds], p50_seconds, p90_seconds}",
        ))
        .build();
    let day = ArrayBuilder::new()
        .prefix_items([date, facility, stages])
        .items(ArrayItems::False)
        .min_items(Some(3))
        .max_items(Some(3))
        .description(Some("[date, facility, {stage: cycle times}]"));
    ArrayBuilder::new().items(day).build()
}

/// Purchase cycle times (p50/p90 per stage), per day and over the span.
#[utoipa::path(get, path = "/v1/analytics/purchase-cycle", tag = "analytics",
    params(DailyQuery),
    responses(
        (status = 200, description = "Cycle times", body = PurchaseCycleView),
        (status = 403, description = "Role lacks the right (finance)", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn analytics_purchase_cycle(
    _caller: Caller,
    query: web::Query<DailyQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = query.span(app.clock().now().date_naive())?;
    let facility = query.facility.clone();
    let wanted = facility.clone();
    let (days, position) = read_view(
        projections(&app)?,
        "analytics",
        query.min_position,
        move |store| days(store, from, to, wanted.as_deref()),
    )
    .await?;
    let stages = STAGES
        .iter()
        .map(|stage| {
            let mut all: Vec<i64> = days
                .iter()
                .filter_map(|d| d.purchase_cycle_times.get(*stage))
                .flat_map(|c| c.durations_seconds.iter().copied())
                .collect();
            all.sort_unstable();
            StageSummary {
                stage: (*stage).to_owned(),
                count: all.len(),
                p50_seconds: percentile(&all, 50),
                p90_seconds: percentile(&all, 90),
            }
        })
        .collect();
    let days = days
        .into_iter()
        .filter(|d| !d.purchase_cycle_times.is_empty())
        .map(|d| (d.date, d.facility, d.purchase_cycle_times))
        .collect();
    Ok(answer(
        &PurchaseCycleView {
            from,
            to,
            facility,
            stages,
            days,
        },
        position,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamsQuery {
    /// Only streams of this kind (`patient_account`, `encounter`, `access_log`...).
    pub kind: Option<String>,
    /// Only stream ids after this one (paging: the last id of the previous page).
    pub after: Option<String>,
    /// Most rows (default and maximum 1000).
    pub limit: Option<usize>,
    pub min_position: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamsView {
    #[schema(value_type = Vec<Object>)]
    pub streams: Vec<StreamIndexRow>,
    /// The `after` of the next page, or null at the end.
    pub next_after: Option<String>,
}

/// The stream index: every stream's kind, first and last event, count.
#[utoipa::path(get, path = "/v1/audit/streams", tag = "audit",
    params(StreamsQuery),
    responses(
        (status = 200, description = "A page of the stream index", body = StreamsView),
        (status = 403, description = "Role lacks the right (auditor)", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn audit_streams(
    _caller: Caller,
    query: web::Query<StreamsQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(MAX_ROWS).clamp(1, MAX_ROWS);
    let prefix = query
        .kind
        .as_ref()
        .map(|k| format!("{k}-"))
        .unwrap_or_default();
    let after = query.after.clone();
    let (streams, position) = read_view(
        projections(&app)?,
        "audit",
        query.min_position,
        move |store| {
            // Stream ids are `{kind}-{id}`: the kind's rows are one key range.
            let from = match &after {
                Some(after) if after.as_str() >= prefix.as_str() => format!("{after}\u{0}"),
                _ => prefix.clone(),
            };
            let mut rows: Vec<StreamIndexRow> = Vec::new();
            for (key, row) in store.scan_range(audit::STREAMS, &from, None)? {
                if !key.starts_with(&prefix) || rows.len() > limit {
                    break;
                }
                rows.push(decode_row(audit::STREAMS, &key, row)?);
            }
            Ok(rows)
        },
    )
    .await?;
    let mut streams = streams;
    let next_after = (streams.len() > limit).then(|| {
        streams.truncate(limit);
        streams.last().map(|s| s.stream_id.clone())
    });
    Ok(answer(
        &StreamsView {
            streams,
            next_after: next_after.flatten(),
        },
        position,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AccessLogQuery {
    /// Only reads of this patient (MRN).
    pub patient: Option<String>,
    /// Only reads by this token subject.
    pub subject: Option<String>,
    /// Only reads at or after this instant (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Only reads before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Most entries (default and maximum 1000), oldest first.
    pub limit: Option<usize>,
    pub min_position: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccessLogView {
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<AccessEntry>,
}

/// Who read which patient's data, when, with which correlation id.
#[utoipa::path(get, path = "/v1/audit/access-log", tag = "audit",
    params(AccessLogQuery),
    responses(
        (status = 200, description = "Access-log entries, oldest first", body = AccessLogView),
        (status = 403, description = "Role lacks the right (auditor)", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn audit_access_log(
    req: HttpRequest,
    caller: Caller,
    query: web::Query<AccessLogQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(patient) = &query.patient {
        valid_id("patient", patient)?;
    }
    let limit = query.limit.unwrap_or(MAX_ROWS).clamp(1, MAX_ROWS);
    let query = query.into_inner();
    let patient = query.patient.clone();
    let (entries, position) = read_view(
        projections(&app)?,
        "audit",
        query.min_position,
        move |store| {
            let pairs: Vec<(String, AccessEntry)> = match &query.patient {
                Some(mrn) => load_prefix(store, audit::ACCESS_BY_PATIENT, &format!("{mrn}/"))?,
                None => load_prefix(store, audit::ACCESS_LOG, "")?,
            };
            Ok(pairs
                .into_iter()
                .map(|(_, e)| e)
                .filter(|e| query.subject.as_ref().is_none_or(|s| *s == e.principal))
                .filter(|e| query.from.is_none_or(|from| e.accessed_at >= from))
                .filter(|e| query.to.is_none_or(|to| e.accessed_at < to))
                .take(limit)
                .collect::<Vec<_>>())
        },
    )
    .await?;
    // Reading the access log is itself recorded: against the patient asked about, or the
    // access log of the day.
    let runtime = app.ready()?;
    let target = match &patient {
        Some(mrn) => StreamId::new("patient_account", mrn).map_err(|e| ApiError::Internal {
            cause: e.to_string(),
        })?,
        None => access_log::todays_stream(&runtime.clock).map_err(ApiError::unavailable)?,
    };
    caller
        .record_read(
            runtime.store.as_ref(),
            &runtime.clock,
            Access::AccessLog,
            &target,
            None,
            &correlation_id(&req),
        )
        .await?;
    Ok(answer(&AccessLogView { entries }, position))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionsView {
    pub projections: Vec<ProjectionView>,
}

/// One projection in `GET /v1/projections`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionView {
    pub name: &'static str,
    /// `live`, or `rebuilding` while a shadow copy is being built.
    pub state: &'static str,
    /// The live generation (1 at first; each completed rebuild adds one).
    pub generation: u32,
    /// The position the live view reflects.
    pub position: u64,
    /// Events committed to the store that the live view does not reflect yet.
    pub lag: u64,
    /// Seconds since the live view last committed, when it lags (0 when caught up).
    pub lag_seconds: f64,
    /// The position a running rebuild has reached.
    pub rebuild_position: Option<u64>,
    /// The error that stopped the live view (or the rebuild) at its next event.
    pub last_error: Option<String>,
}

impl From<ProjectionStatus> for ProjectionView {
    fn from(s: ProjectionStatus) -> Self {
        Self {
            name: s.name,
            state: s.state,
            generation: s.generation,
            position: s.position,
            lag: s.lag,
            lag_seconds: s.lag_seconds,
            rebuild_position: s.rebuild_position,
            last_error: s.last_error,
        }
    }
}

/// Every projection: its position, lag and state (`live` or `rebuilding`).
#[utoipa::path(get, path = "/v1/projections", tag = "projections",
    responses(
        (status = 200, description = "Projection status", body = ProjectionsView),
        (status = 403, description = "Role lacks the right (admin)", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list(_caller: Caller, app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let statuses = projections(&app)?.statuses().await?;
    let projections = statuses.into_iter().map(ProjectionView::from).collect();
    Ok(HttpResponse::Ok().json(ProjectionsView { projections }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildAccepted {
    pub name: String,
    pub state: &'static str,
    /// Follow the rebuild here.
    pub status: &'static str,
}

/// Rebuilds a projection from position 0 into a shadow copy, then swaps it in atomically.
#[utoipa::path(post, path = "/v1/projections/{name}/rebuild", tag = "projections",
    params(("name" = String, Path, description = "billing, analytics, audit or claims")),
    responses(
        (status = 202, description = "Rebuild asked for; its owner starts it within a second", body = RebuildAccepted),
        (status = 403, description = "Role lacks the right (admin)", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such projection", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A rebuild is already under way", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn rebuild(
    _caller: Caller,
    name: web::Path<String>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    if !projections(&app)?.request_rebuild(&name).await? {
        return Err(ApiError::AlreadyRunning {
            detail: format!("projection {name} is already being rebuilt"),
        });
    }
    Ok(HttpResponse::Accepted().json(RebuildAccepted {
        name,
        state: "rebuilding",
        status: "/v1/projections",
    }))
}

/// A facility or department named in a query: one part of a roster id, so no `.`.
fn valid_place(what: &'static str, value: &str) -> Result<(), ApiError> {
    valid_id(what, value)?;
    if value.contains('.') {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("{what} is not valid"),
            format!("{what} {value:?} contains '.'"),
            "a facility or department is one part of a roster id {facility}.{department}.{date}: no '.'",
        ));
    }
    Ok(())
}

/// One department's day of labor.
#[derive(Debug, Serialize, ToSchema)]
pub struct LaborDayView {
    pub date: NaiveDate,
    pub facility: String,
    pub department: String,
    /// Exact to the minute.
    pub rostered_minutes: i64,
    /// `rostered_minutes / 60` as a decimal with two places (rounded half up past them).
    pub rostered_hours: String,
    /// Σ hourly cost × hours, rounded half up to the cent once.
    pub labor_cost: String,
    /// Encounters booked for the day and not cancelled.
    pub encounters: u64,
    /// The exact cost divided by the encounters, rounded half up to the cent once; null
    /// without encounters.
    pub cost_per_encounter: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LaborView {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub facility: Option<String>,
    /// One row per department and day with a roster or an encounter, by date then department.
    pub days: Vec<LaborDayView>,
}

/// Labor against demand: per department and day, rostered hours, labor cost, encounters and
/// cost per encounter.
#[utoipa::path(get, path = "/v1/analytics/labor", tag = "analytics",
    params(DailyQuery),
    responses(
        (status = 200, description = "Labor per department and day; header X-Careflow-Position", body = LaborView),
        (status = 400, description = "Malformed query (from after to, a facility with '.')", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks the right (finance)", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "View not caught up to min_position, or unavailable", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn analytics_labor(
    _caller: Caller,
    query: web::Query<DailyQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (from, to) = query.span(app.clock().now().date_naive())?;
    if let Some(facility) = &query.facility {
        valid_place("facility", facility)?;
    }
    let facility = query.facility.clone();
    let wanted = facility.clone();
    let (rows, position) = read_view(
        projections(&app)?,
        "workforce",
        query.min_position,
        move |store| {
            let end = to
                .checked_add_days(Days::new(1))
                .map(|d| d.format("%Y-%m-%d").to_string());
            let rows: Vec<(String, workforce::LaborDay)> = load_range(
                store,
                workforce::LABOR,
                &from.format("%Y-%m-%d").to_string(),
                end.as_deref(),
            )?;
            Ok(rows
                .into_iter()
                .map(|(_, day)| day)
                .filter(|day| wanted.as_deref().is_none_or(|f| f == day.facility))
                .collect::<Vec<_>>())
        },
    )
    .await?;
    let days = rows
        .into_iter()
        .map(|day| LaborDayView {
            date: day.date,
            rostered_hours: workforce::hours_text(day.rostered_minutes),
            labor_cost: workforce::labor_cost(day.cost_cent_minutes).to_string(),
            cost_per_encounter: workforce::cost_per_encounter(
                day.cost_cent_minutes,
                day.encounters,
            )
            .map(|c| c.to_string()),
            rostered_minutes: day.rostered_minutes,
            encounters: day.encounters,
            facility: day.facility,
            department: day.department,
        })
        .collect();
    Ok(answer(
        &LaborView {
            from,
            to,
            facility,
            days,
        },
        position,
    ))
}

/// An open staffing shortfall.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShortfallView {
    pub facility: String,
    pub department: String,
    pub hour: DateTime<Utc>,
    /// `nurse | physician | technician`.
    pub role: String,
    pub required: u32,
    pub rostered: u32,
    /// `staffing-{facility}.{department}.{date}`: its history.
    pub stream_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffingView {
    /// Open shortfalls by facility, department, hour and role.
    pub shortfalls: Vec<ShortfallView>,
}

/// The staffing shortfalls open now (detected and not resolved).
#[utoipa::path(get, path = "/v1/analytics/staffing", tag = "analytics",
    params(PositionQuery),
    responses(
        (status = 200, description = "Open shortfalls; header X-Careflow-Position", body = StaffingView),
        (status = 403, description = "Role lacks the right (finance)", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "View not caught up to min_position, or unavailable", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn analytics_staffing(
    _caller: Caller,
    query: web::Query<PositionQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (rows, position) = read_view(
        projections(&app)?,
        "workforce",
        query.min_position,
        move |store| {
            let rows: Vec<(String, workforce::ShortfallRow)> =
                load_prefix(store, workforce::SHORTFALLS, "")?;
            Ok(rows)
        },
    )
    .await?;
    let shortfalls = rows
        .into_iter()
        .take(MAX_ROWS)
        .map(|(_, row)| ShortfallView {
            stream_id: format!(
                "staffing-{}.{}.{}",
                row.facility,
                row.department,
                row.hour.date_naive().format("%Y-%m-%d")
            ),
            facility: row.facility,
            department: row.department,
            hour: row.hour,
            role: row.role.as_str().to_owned(),
            required: row.required,
            rostered: row.rostered,
        })
        .collect();
    Ok(answer(&StaffingView { shortfalls }, position))
}

/// `?facility=&department=&date=`: one department's day of demand.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DemandQuery {
    pub facility: String,
    pub department: String,
    /// The UTC day (YYYY-MM-DD).
    pub date: NaiveDate,
    pub min_position: Option<u64>,
}

/// One clock hour of demand.
#[derive(Debug, Serialize, ToSchema)]
pub struct DemandHourView {
    pub hour: DateTime<Utc>,
    /// Class -> encounters booked for the hour and not cancelled.
    #[schema(value_type = Object)]
    pub scheduled: std::collections::BTreeMap<String, u64>,
    /// Class -> of those, arrived.
    #[schema(value_type = Object)]
    pub arrived: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DemandView {
    pub facility: String,
    pub department: String,
    pub date: NaiveDate,
    /// Hours with encounters, in order.
    pub hours: Vec<DemandHourView>,
}

/// Demand: scheduled and arrived encounters per clock hour of one department's day.
#[utoipa::path(get, path = "/v1/analytics/demand", tag = "analytics",
    params(DemandQuery),
    responses(
        (status = 200, description = "Demand per hour; header X-Careflow-Position", body = DemandView),
        (status = 400, description = "Malformed query", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks the right (finance)", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "View not caught up to min_position, or unavailable", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn analytics_demand(
    _caller: Caller,
    query: web::Query<DemandQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let DemandQuery {
        facility,
        department,
        date,
        min_position,
    } = query.into_inner();
    valid_place("facility", &facility)?;
    valid_place("department", &department)?;
    let prefix = format!("{facility}.{department} {}", date.format("%Y-%m-%d"));
    let (rows, position) = read_view(
        projections(&app)?,
        "workforce",
        min_position,
        move |store| {
            let rows: Vec<(String, workforce::DemandHour)> =
                load_prefix(store, workforce::DEMAND, &prefix)?;
            Ok(rows)
        },
    )
    .await?;
    let names = |counts: std::collections::BTreeMap<
        careflow_aggregates::encounter::EncounterClass,
        u64,
    >| {
        counts
            .into_iter()
            .filter_map(|(class, n)| {
                let name = serde_json::to_value(class).ok()?.as_str()?.to_owned();
                Some((name, n))
            })
            .collect()
    };
    let hours = rows
        .into_iter()
        .map(|(_, row)| DemandHourView {
            hour: row.hour,
            scheduled: names(row.scheduled),
            arrived: names(row.arrived),
        })
        .collect();
    Ok(answer(
        &DemandView {
            facility,
            department,
            date,
            hours,
        },
        position,
    ))
}

pub fn register(cfg: &mut web::ServiceConfig) {
    use super::{get_only, post_only};
    cfg.service(get_only("/v1/billing/accounts/{mrn}").route(web::get().to(billing_account)))
        .service(get_only("/v1/billing/aging").route(web::get().to(billing_aging)))
        .service(
            get_only("/v1/billing/encounters/{visit}/claim").route(web::get().to(billing_claim)),
        )
        .service(get_only("/v1/analytics/daily").route(web::get().to(analytics_daily)))
        .service(get_only("/v1/analytics/labor").route(web::get().to(analytics_labor)))
        .service(get_only("/v1/analytics/staffing").route(web::get().to(analytics_staffing)))
        .service(get_only("/v1/analytics/demand").route(web::get().to(analytics_demand)))
        .service(
            get_only("/v1/analytics/purchase-cycle").route(web::get().to(analytics_purchase_cycle)),
        )
        .service(get_only("/v1/audit/streams").route(web::get().to(audit_streams)))
        .service(get_only("/v1/audit/access-log").route(web::get().to(audit_access_log)))
        .service(get_only("/v1/projections").route(web::get().to(list)))
        .service(post_only("/v1/projections/{name}/rebuild").route(web::post().to(rebuild)))
        .service(
            get_only("/v1/billing/reconciliation").route(web::get().to(billing_reconciliation)),
        )
        .service(get_only("/v1/billing/claims").route(web::get().to(billing_claims)))
        .service(get_only("/v1/billing/denials").route(web::get().to(billing_denials)));
}

/// One invoice careflow billed that Odoo has not acknowledged as billed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationItem {
    /// Seconds since the encounter completed (the invoice became due in Odoo).
    pub age_seconds: Option<i64>,
    /// The row: `status` (`awaiting_odoo` or `mismatch`), what careflow `billed` per currency
    /// and the `odoo` side (id, name, amount_total, state) as acknowledged.
    #[schema(value_type = Object)]
    #[serde(flatten)]
    pub row: InvoiceReconciliation,
}

/// What `GET /v1/billing/reconciliation` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationView {
    /// Oldest first.
    pub items: Vec<ReconciliationItem>,
    /// Whether more than [`MAX_ROWS`] rows matched (the oldest are shown).
    pub truncated: bool,
}

/// Every completed encounter whose invoice Odoo has not acknowledged (`awaiting_odoo`) or
/// acknowledged with another amount (`mismatch`), with its age. Encounters not completed
/// (`open`) owe no invoice yet and acknowledged ones are settled: neither is listed.
#[utoipa::path(get, path = "/v1/billing/reconciliation", tag = "billing",
    params(PositionQuery),
    responses(
        (status = 200, description = "Unacknowledged and mismatched invoices; header X-Careflow-Position", body = ReconciliationView),
        (status = 403, description = "Role lacks the right (finance)", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "View not caught up to min_position, or unavailable", body = super::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn billing_reconciliation(
    _caller: Caller,
    query: web::Query<PositionQuery>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (rows, position) = read_view(
        projections(&app)?,
        "billing",
        query.min_position,
        move |store| {
            Ok(load_prefix::<InvoiceReconciliation>(
                store,
                billing::RECONCILIATION,
                "",
            )?)
        },
    )
    .await?;
    let now = app.clock().now();
    let mut items: Vec<ReconciliationItem> = rows
        .into_iter()
        .map(|(_, row)| row)
        .filter(|row| row.status != "acknowledged" && row.status != "open")
        .map(|row| ReconciliationItem {
            age_seconds: row.completed_at.map(|at| (now - at).num_seconds()),
            row,
        })
        .collect();
    items.sort_by(|a, b| {
        (a.row.completed_at, &a.row.encounter_id).cmp(&(b.row.completed_at, &b.row.encounter_id))
    });
    let truncated = items.len() > MAX_ROWS;
    items.truncate(MAX_ROWS);
    Ok(answer(&ReconciliationView { items, truncated }, position))
}
