//! `GET /openapi.json`: the OpenAPI document, generated from the handlers with `utoipa`.
//!
//! The four aggregate kinds share generic handlers (`commands::handle`, `reads::state`,
//! `reads::stream_history`); utoipa documents functions, so the `resource!` macro below writes
//! one thin, annotated wrapper per kind and route, and registers the same wrappers with actix.
//! A route therefore cannot be served without being documented. [`ROUTES`] lists every route
//! for the test that checks the document covers them.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use careflow_aggregates::stream_id::MAX_ID_LEN;

use super::auth::{Access, Right, Route};
use super::error::ApiError;
use super::idempotency::{IDEMPOTENCY_HEADER, IDEMPOTENCY_KEY_PATTERN, MAX_IDEMPOTENCY_KEY_LEN};
use super::problem::{PROBLEM_JSON, Problem};
use super::views::{
    AdjustmentView, ChargeView, ClaimLineView, CommandAnswer, CoverageView, EligibilityView,
    EncounterView, EventsPage, HistoryPage, InsuranceClaimView, InventoryItemView, NameView,
    OrderLineView, PatientAccountView, PaymentView, PersonalView, ProcedureView, PurchaseView,
    RemittanceAdjustmentView, RosterView, ShiftView, SupplyView, VendorBillView,
};
use crate::inbound::fhir::render::FHIR_JSON;

/// Every route the server answers, with what it requires: the one route table. The
/// [`super::Caller`] extractor enforces `access` on the matched route (a route missing here
/// is refused with a 500), [`document`] derives each operation's security and 401/403
/// answers from it, and docs/http-api.md's authorization matrix is printed from it
/// ([`super::auth::authorization_matrix`]).
pub const ROUTES: &[Route] = &[
    Route::public("get", "/healthz"),
    Route::public("get", "/readyz"),
    Route::public("get", "/metrics"),
    Route::public("get", "/openapi.json"),
    Route::token("get", "/v1/events", Right::ReadEvents),
    Route::token("get", "/v1/audit/verify", Right::ReadAudit),
    Route::token(
        "post",
        "/v1/patient-accounts/{id}/commands",
        Right::SendCommands,
    ),
    Route::token("get", "/v1/patient-accounts/{id}", Right::ReadState),
    Route::token(
        "get",
        "/v1/patient-accounts/{id}/history",
        Right::ReadHistory,
    ),
    Route::token(
        "post",
        "/v1/patient-accounts/{id}/erase",
        Right::ErasePersonalData,
    ),
    Route::token("post", "/v1/encounters/{id}/commands", Right::SendCommands),
    Route::token("get", "/v1/encounters/{id}", Right::ReadState),
    Route::token("get", "/v1/encounters/{id}/history", Right::ReadHistory),
    Route::token(
        "post",
        "/v1/inventory-items/{id}/commands",
        Right::SendCommands,
    ),
    Route::token("get", "/v1/inventory-items/{id}", Right::ReadState),
    Route::token(
        "get",
        "/v1/inventory-items/{id}/history",
        Right::ReadHistory,
    ),
    Route::token("post", "/v1/purchases/{id}/commands", Right::SendCommands),
    Route::token("get", "/v1/purchases/{id}", Right::ReadState),
    Route::token("get", "/v1/purchases/{id}/history", Right::ReadHistory),
    Route::token("post", "/v1/claims/{id}/commands", Right::SendCommands),
    Route::token("get", "/v1/claims/{id}", Right::ReadState),
    Route::token("get", "/v1/claims/{id}/history", Right::ReadHistory),
    Route::token("post", "/v1/rosters/{id}/commands", Right::SendCommands),
    Route::token("get", "/v1/rosters/{id}", Right::ReadState),
    Route::token("get", "/v1/rosters/{id}/history", Right::ReadHistory),
    Route::token("get", "/v1/billing/accounts/{mrn}", Right::ReadBilling),
    Route::token("get", "/v1/billing/aging", Right::ReadBilling),
    Route::token(
        "get",
        "/v1/billing/encounters/{visit}/claim",
        Right::ReadBilling,
    ),
    Route::token("get", "/v1/analytics/daily", Right::ReadAnalytics),
    Route::token("get", "/v1/analytics/purchase-cycle", Right::ReadAnalytics),
    Route::token("get", "/v1/analytics/labor", Right::ReadAnalytics),
    Route::token("get", "/v1/analytics/staffing", Right::ReadAnalytics),
    Route::token("get", "/v1/analytics/demand", Right::ReadAnalytics),
    Route::token("get", "/v1/audit/streams", Right::ReadAudit),
    Route::token("get", "/v1/audit/access-log", Right::ReadAudit),
    Route::token("get", "/v1/projections", Right::Rebuild),
    Route::token("post", "/v1/projections/{name}/rebuild", Right::Rebuild),
    Route::token("get", "/v1/process-managers", Right::Rebuild),
    Route::token("post", "/v1/webhooks", Right::ManageWebhooks),
    Route::token("get", "/v1/webhooks", Right::ManageWebhooks),
    Route::token("delete", "/v1/webhooks/{id}", Right::ManageWebhooks),
    Route::token("get", "/v1/dead-letters", Right::DeadLetters),
    Route::token("post", "/v1/dead-letters/{id}/retry", Right::DeadLetters),
    Route::token("post", "/v1/dead-letters/{id}/discard", Right::DeadLetters),
    Route::public("get", "/fhir/r4/metadata"),
    Route::token("post", "/fhir/r4", Right::SendCommands),
    Route::token("post", "/fhir/r4/Patient", Right::SendCommands),
    Route::token("put", "/fhir/r4/Patient/{id}", Right::SendCommands),
    Route::token("get", "/fhir/r4/Patient/{id}", Right::ReadState),
    Route::token("post", "/fhir/r4/Encounter", Right::SendCommands),
    Route::token("get", "/fhir/r4/Encounter/{id}", Right::ReadState),
    Route::token("post", "/fhir/r4/Coverage", Right::SendCommands),
    Route::token("post", "/fhir/r4/ChargeItem", Right::SendCommands),
    Route::token("post", "/fhir/r4/SupplyDelivery", Right::SendCommands),
    Route::token(
        "post",
        "/fhir/r4/CoverageEligibilityResponse",
        Right::SendCommands,
    ),
    Route::token("get", "/v1/billing/reconciliation", Right::ReadBilling),
    Route::token("get", "/v1/billing/claims", Right::ReadBilling),
    Route::token("get", "/v1/billing/denials", Right::ReadBilling),
    Route::token("post", "/fhir/r4/Claim", Right::SendCommands),
    Route::token("post", "/fhir/r4/ClaimResponse", Right::SendCommands),
    Route::token("post", "/fhir/r4/Patient/$merge", Right::SendCommands),
];

macro_rules! resource {
    (
        $module:ident, $aggregate:ty, $view:ty, $tag:tt, $id_doc:tt,
        $commands:tt, $state:tt, $history:tt
    ) => {
        pub mod $module {
            use actix_web::{HttpRequest, HttpResponse, web};

            use crate::inbound::http::error::ApiError;
            use crate::inbound::http::problem::Problem;
            use crate::inbound::http::reads::{HistoryQuery, StateQuery};
            use crate::inbound::http::views::{CommandAnswer, HistoryPage};
            use crate::inbound::http::{AppState, Caller, commands, reads};

            #[allow(unused_imports)]
            use super::*;

            pub fn register(cfg: &mut web::ServiceConfig) {
                use crate::inbound::http::{get_only, post_only};
                cfg.service(post_only($commands).route(web::post().to(command)))
                    .service(get_only($state).route(web::get().to(state)))
                    .service(get_only($history).route(web::get().to(history)));
            }

            /// Runs one command: `{"type": "<CommandName>", ...fields}` (DESIGN.md "The
            /// command contract"). Role `system`. Headers: `Idempotency-Key` (a retry returns
            /// the first answer and appends nothing), `X-Correlation-Id` (echoed; generated
            /// when absent).
            #[utoipa::path(post, path = $commands, tag = $tag,
                params(
                    ("id" = String, Path, description = $id_doc),
                    ("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII characters; same key and body: the first answer again"),
                    ("X-Correlation-Id" = Option<String>, Header, description = "1-128 of [A-Za-z0-9._:-]; echoed, generated when absent"),
                ),
                request_body(content = Object, description = "The command: `type` plus its fields; `occurred_at` optional (RFC 3339)", content_type = "application/json"),
                responses(
                    (status = 200, description = "Carried out: the appended events (none for a no-op)", body = CommandAnswer),
                    (status = 400, description = "Malformed JSON, id, or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
                    (status = 401, description = "No or invalid bearer token", body = Problem, content_type = "application/problem+json"),
                    (status = 403, description = "The token's role may not send commands", body = Problem, content_type = "application/problem+json"),
                    (status = 409, description = "A business rule or lifecycle order refused it, or the stream kept changing", body = Problem, content_type = "application/problem+json"),
                    (status = 413, description = "Body over 256 KiB", body = Problem, content_type = "application/problem+json"),
                    (status = 422, description = "Valid JSON that is not a valid command (unknown field, bad value), or an Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
                    (status = 429, description = "Rate limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
                    (status = 503, description = "Event store unavailable (Retry-After)", body = Problem, content_type = "application/problem+json"),
                ),
                security(("bearer" = [])))]
            pub async fn command(
                req: HttpRequest,
                caller: Caller,
                id: web::Path<String>,
                payload: web::Payload,
                app: web::Data<AppState>,
            ) -> Result<HttpResponse, ApiError> {
                commands::handle::<$aggregate>(req, caller, id.into_inner(), payload, app).await
            }

            /// The current state, or with `as_of` the state rebuilt from the events recorded
            /// at or before that instant. Roles `system`, `auditor`. Reads of patient data
            /// are written to the access log.
            #[utoipa::path(get, path = $state, tag = $tag,
                params(("id" = String, Path, description = $id_doc), StateQuery),
                responses(
                    (status = 200, description = "The state", body = $view),
                    (status = 400, description = "Malformed id or as_of", body = Problem, content_type = "application/problem+json"),
                    (status = 401, description = "No or invalid bearer token", body = Problem, content_type = "application/problem+json"),
                    (status = 403, description = "The token's role may not read state", body = Problem, content_type = "application/problem+json"),
                    (status = 404, description = "No events (by as_of)", body = Problem, content_type = "application/problem+json"),
                    (status = 429, description = "Rate limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
                    (status = 503, description = "Event store unavailable (Retry-After)", body = Problem, content_type = "application/problem+json"),
                ),
                security(("bearer" = [])))]
            pub async fn state(
                req: HttpRequest,
                caller: Caller,
                id: web::Path<String>,
                query: web::Query<StateQuery>,
                app: web::Data<AppState>,
            ) -> Result<HttpResponse, ApiError> {
                reads::state::<$aggregate>(req, caller, id.into_inner(), query.into_inner(), app)
                    .await
            }

            /// The stream's events in version order (full envelopes, hash chain included).
            /// Role `auditor`. Reads of patient data are written to the access log.
            #[utoipa::path(get, path = $history, tag = $tag,
                params(("id" = String, Path, description = $id_doc), HistoryQuery),
                responses(
                    (status = 200, description = "A page of the history", body = HistoryPage),
                    (status = 400, description = "Malformed id or query", body = Problem, content_type = "application/problem+json"),
                    (status = 401, description = "No or invalid bearer token", body = Problem, content_type = "application/problem+json"),
                    (status = 403, description = "The token's role may not read histories", body = Problem, content_type = "application/problem+json"),
                    (status = 404, description = "No events", body = Problem, content_type = "application/problem+json"),
                    (status = 429, description = "Rate limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
                    (status = 503, description = "Event store unavailable (Retry-After)", body = Problem, content_type = "application/problem+json"),
                ),
                security(("bearer" = [])))]
            pub async fn history(
                req: HttpRequest,
                caller: Caller,
                id: web::Path<String>,
                query: web::Query<HistoryQuery>,
                app: web::Data<AppState>,
            ) -> Result<HttpResponse, ApiError> {
                reads::stream_history::<$aggregate>(
                    req,
                    caller,
                    id.into_inner(),
                    query.into_inner(),
                    app,
                )
                .await
            }
        }
    };
}

resource!(
    patient_accounts,
    careflow_aggregates::PatientAccount,
    PatientAccountView,
    "patient accounts",
    "The MRN",
    "/v1/patient-accounts/{id}/commands",
    "/v1/patient-accounts/{id}",
    "/v1/patient-accounts/{id}/history"
);
resource!(
    encounters,
    careflow_aggregates::Encounter,
    EncounterView,
    "encounters",
    "The visit number",
    "/v1/encounters/{id}/commands",
    "/v1/encounters/{id}",
    "/v1/encounters/{id}/history"
);
resource!(
    inventory_items,
    careflow_aggregates::InventoryItem,
    InventoryItemView,
    "inventory items",
    "The item id",
    "/v1/inventory-items/{id}/commands",
    "/v1/inventory-items/{id}",
    "/v1/inventory-items/{id}/history"
);
resource!(
    purchases,
    careflow_aggregates::PurchaseWorkflow,
    PurchaseView,
    "purchases",
    "The requisition number",
    "/v1/purchases/{id}/commands",
    "/v1/purchases/{id}",
    "/v1/purchases/{id}/history"
);
resource!(
    claims,
    careflow_aggregates::Claim,
    InsuranceClaimView,
    "claims",
    "The claim id ({visit}-{payer_id} when the claims process manager made it)",
    "/v1/claims/{id}/commands",
    "/v1/claims/{id}",
    "/v1/claims/{id}/history"
);
resource!(
    rosters,
    careflow_aggregates::Roster,
    RosterView,
    "rosters",
    "The roster id: {facility}.{department}.{date} (date YYYY-MM-DD)",
    "/v1/rosters/{id}/commands",
    "/v1/rosters/{id}",
    "/v1/rosters/{id}/history"
);

/// The bearer-token security scheme every `/v1` route uses.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of careflow's HTTP API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "careflow",
        description = "Event-sourced control layer between a hospital's systems. Errors are RFC 9457 application/problem+json; see docs/http-api.md."
    ),
    paths(
        crate::inbound::http::healthz,
        crate::inbound::http::readyz,
        crate::inbound::http::prometheus_metrics,
        serve,
        crate::inbound::http::reads::events,
        crate::inbound::http::projections::billing_account,
        crate::inbound::http::projections::billing_aging,
        crate::inbound::http::projections::billing_claim,
        crate::inbound::http::projections::analytics_daily,
        crate::inbound::http::projections::analytics_purchase_cycle,
        crate::inbound::http::projections::analytics_labor,
        crate::inbound::http::projections::analytics_staffing,
        crate::inbound::http::projections::analytics_demand,
        crate::inbound::http::projections::audit_streams,
        crate::inbound::http::projections::audit_access_log,
        crate::inbound::http::projections::list,
        crate::inbound::http::projections::rebuild,
        crate::inbound::http::audit::verify,
        crate::inbound::http::process_managers::list,
        crate::inbound::http::dead_letters::list,
        crate::inbound::http::dead_letters::retry,
        crate::inbound::http::dead_letters::discard,
        patient_accounts::command,
        patient_accounts::state,
        patient_accounts::history,
        crate::inbound::http::erasure::erase,
        encounters::command,
        encounters::state,
        encounters::history,
        inventory_items::command,
        inventory_items::state,
        inventory_items::history,
        purchases::command,
        purchases::state,
        purchases::history,
        claims::command,
        claims::state,
        claims::history,
        rosters::command,
        rosters::state,
        rosters::history,
        crate::inbound::http::webhooks::register,
        crate::inbound::http::webhooks::list,
        crate::inbound::http::webhooks::remove,
        crate::inbound::http::fhir::metadata,
        crate::inbound::http::fhir::transaction,
        crate::inbound::http::fhir::create_patient,
        crate::inbound::http::fhir::update_patient,
        crate::inbound::http::fhir::read_patient,
        crate::inbound::http::fhir::create_encounter,
        crate::inbound::http::fhir::read_encounter,
        crate::inbound::http::fhir::create_coverage,
        crate::inbound::http::fhir::create_charge_item,
        crate::inbound::http::fhir::create_supply_delivery,
        crate::inbound::http::fhir::create_eligibility_response,
        crate::inbound::http::projections::billing_reconciliation,
        crate::inbound::http::projections::billing_claims,
        crate::inbound::http::projections::billing_denials,
        crate::inbound::http::fhir::create_claim,
        crate::inbound::http::fhir::create_claim_response,
        crate::inbound::http::fhir::merge_patients,
    ),
    components(schemas(
        Problem,
        crate::inbound::http::projections::BillingAccountView,
        crate::inbound::http::projections::ClaimView,
        crate::inbound::http::projections::DailyView,
        crate::inbound::http::projections::StageSummary,
        crate::inbound::http::projections::PurchaseCycleView,
        crate::inbound::http::projections::LaborView,
        crate::inbound::http::projections::LaborDayView,
        crate::inbound::http::projections::StaffingView,
        crate::inbound::http::projections::ShortfallView,
        crate::inbound::http::projections::DemandView,
        crate::inbound::http::projections::DemandHourView,
        crate::inbound::http::projections::StreamsView,
        crate::inbound::http::projections::AccessLogView,
        crate::inbound::http::projections::ProjectionsView,
        crate::inbound::http::projections::RebuildAccepted,
        crate::inbound::http::projections::ReconciliationView,
        crate::inbound::http::projections::ReconciliationItem,
        crate::inbound::http::projections::ProjectionView,
        crate::inbound::http::projections::ClaimsView,
        crate::inbound::http::process_managers::ProcessManagersView,
        crate::inbound::http::process_managers::ProcessManagerView,
        crate::inbound::http::dead_letters::DeadLettersView,
        crate::inbound::http::dead_letters::DiscardBody,
        crate::operations::dead_letters::DeadLetter,
        crate::operations::dead_letters::DeadLetterStatus,
        CommandAnswer,
        HistoryPage,
        EventsPage,
        PatientAccountView,
        NameView,
        PersonalView,
        CoverageView,
        EligibilityView,
        ChargeView,
        PaymentView,
        AdjustmentView,
        EncounterView,
        ProcedureView,
        SupplyView,
        InventoryItemView,
        PurchaseView,
        OrderLineView,
        VendorBillView,
        InsuranceClaimView,
        ClaimLineView,
        RemittanceAdjustmentView,
        RosterView,
        ShiftView,
        crate::inbound::http::audit::StreamVerifyView,
        crate::inbound::http::audit::BreakView,
        crate::inbound::http::erasure::EraseBody,
        crate::inbound::http::webhooks::RegisterWebhookBody,
        crate::inbound::http::webhooks::RegisteredView,
        crate::inbound::http::webhooks::WebhooksView,
        crate::inbound::http::webhooks::WebhookView,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn serve() -> Result<HttpResponse, ApiError> {
    let doc = document().map_err(|error| ApiError::Internal {
        cause: format!("the OpenAPI document does not serialise: {error}"),
    })?;
    Ok(HttpResponse::Ok().json(doc))
}

/// The id rule of DESIGN.md (1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9._:-]`, but not
/// `.` or `..`; `careflow_aggregates::stream_id::validate_id` enforces it) as a JSON Schema
/// pattern without look-arounds: the first character is not a dot, or the second is not, or
/// two dots are followed by at least one more character.
pub fn id_pattern() -> String {
    let any = "[A-Za-z0-9._:-]";
    let not_dot = "[A-Za-z0-9_:-]";
    format!(
        "^(?:{not_dot}{any}{{0,{}}}|\\.{not_dot}{any}{{0,{}}}|\\.\\.{any}{{1,{}}})$",
        MAX_ID_LEN - 1,
        MAX_ID_LEN - 2,
        MAX_ID_LEN - 2
    )
}

/// Path parameters that are not ids under the id rule: a projection's name (one of a fixed
/// set, else 404), a webhook's id (careflow's UUID, else 404), a dead letter's number.
const NOT_IDS: &[&str] = &[
    "/v1/projections/{name}/rebuild",
    "/v1/webhooks/{id}",
    "/v1/dead-letters/{id}/retry",
    "/v1/dead-letters/{id}/discard",
];

/// The OpenAPI document as served: utoipa's, completed from the sources of truth the
/// annotations would only repeat. For every route of [`ROUTES`] that takes a token: the
/// bearer security, and the 401, 403 and 429 answers the guard gives (as problem+json, or as
/// an OperationOutcome under `/fhir/r4`); for every `/v1` operation with a path or query
/// parameter, the 400 its extractors give; for every id path parameter, the id rule as
/// `minLength`/`maxLength`/`pattern`; for every `Idempotency-Key` header, its limits.
///
/// # Errors
/// When the document does not serialise (never, with utoipa's types).
pub fn document() -> Result<serde_json::Value, serde_json::Error> {
    let mut doc = serde_json::to_value(ApiDoc::openapi())?;
    complete(&mut doc);
    Ok(doc)
}

fn complete(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let id_schema = json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ID_LEN,
        "pattern": id_pattern(),
    });
    let key_schema = json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_IDEMPOTENCY_KEY_LEN,
        "pattern": IDEMPOTENCY_KEY_PATTERN,
    });
    for route in ROUTES {
        let Some(operation) = doc
            .pointer_mut(&format!(
                "/paths/{}/{}",
                route.path.replace('~', "~0").replace('/', "~1"),
                route.method
            ))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let fhir = route.path.starts_with(super::fhir::BASE);
        let refusal = |description: String| {
            if fhir {
                json!({"description": description, "content": {
                    FHIR_JSON: {"schema": {"type": "object", "description": "An OperationOutcome"}}}})
            } else {
                json!({"description": description, "content": {
                    PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}})
            }
        };
        match route.access {
            Access::Token(right) => {
                operation.insert("security".into(), json!([{"bearer": []}]));
                let responses = operation
                    .entry("responses")
                    .or_insert_with(|| json!({}))
                    .as_object_mut();
                if let Some(responses) = responses {
                    responses.entry("401").or_insert_with(|| {
                        refusal("No bearer token, or one that is expired, not signed with this server's key, or not HS256".into())
                    });
                    responses.entry("403").or_insert_with(|| {
                        refusal(format!(
                            "The token's role may not {} (roles: {})",
                            right.describe(),
                            right.roles().join(", ")
                        ))
                    });
                    responses
                        .entry("429")
                        .or_insert_with(|| refusal("Rate limited (Retry-After)".into()));
                }
            }
            Access::Public => {
                operation.remove("security");
            }
        }
        // The edge's own 400s (`invalid_path`, `invalid_query`, `invalid_id`) can answer any
        // /v1 operation that takes a path or query parameter.
        let parameterised = operation
            .get("parameters")
            .and_then(Value::as_array)
            .is_some_and(|parameters| {
                parameters
                    .iter()
                    .any(|p| p["in"] == "path" || p["in"] == "query")
            });
        if parameterised
            && !fhir
            && let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
        {
            responses.entry("400").or_insert_with(|| {
                refusal("A path or query parameter is not valid (invalid_path, invalid_query, invalid_id)".into())
            });
        }
        let not_an_id = NOT_IDS.contains(&route.path);
        if let Some(parameters) = operation
            .get_mut("parameters")
            .and_then(Value::as_array_mut)
        {
            for parameter in parameters {
                let place = parameter["in"].as_str().unwrap_or_default().to_owned();
                let name = parameter["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if place == "path" && !not_an_id {
                    parameter["schema"] = id_schema.clone();
                } else if place == "header" && name == IDEMPOTENCY_HEADER {
                    parameter["schema"] = key_schema.clone();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_covers_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for Route { method, path, .. } in ROUTES {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(documented, ROUTES.len());
    }
}
