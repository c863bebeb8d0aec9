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

use super::problem::Problem;
use super::views::{
    AdjustmentView, ChargeView, ClaimLineView, CommandAnswer, CoverageView, EligibilityView,
    EncounterView, EventsPage, HistoryPage, InsuranceClaimView, InventoryItemView, NameView,
    OrderLineView, PatientAccountView, PaymentView, PersonalView, ProcedureView, PurchaseView,
    RemittanceAdjustmentView, RosterView, ShiftView, SupplyView, VendorBillView,
};

/// Every route the server answers, as (method, path template).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/v1/events"),
    ("get", "/v1/audit/verify"),
    ("post", "/v1/patient-accounts/{id}/commands"),
    ("get", "/v1/patient-accounts/{id}"),
    ("get", "/v1/patient-accounts/{id}/history"),
    ("post", "/v1/patient-accounts/{id}/erase"),
    ("post", "/v1/encounters/{id}/commands"),
    ("get", "/v1/encounters/{id}"),
    ("get", "/v1/encounters/{id}/history"),
    ("post", "/v1/inventory-items/{id}/commands"),
    ("get", "/v1/inventory-items/{id}"),
    ("get", "/v1/inventory-items/{id}/history"),
    ("post", "/v1/purchases/{id}/commands"),
    ("get", "/v1/purchases/{id}"),
    ("get", "/v1/purchases/{id}/history"),
    ("post", "/v1/claims/{id}/commands"),
    ("get", "/v1/claims/{id}"),
    ("get", "/v1/claims/{id}/history"),
    ("post", "/v1/rosters/{id}/commands"),
    ("get", "/v1/rosters/{id}"),
    ("get", "/v1/rosters/{id}/history"),
    ("get", "/v1/billing/accounts/{mrn}"),
    ("get", "/v1/billing/aging"),
    ("get", "/v1/billing/encounters/{visit}/claim"),
    ("get", "/v1/analytics/daily"),
    ("get", "/v1/analytics/purchase-cycle"),
    ("get", "/v1/audit/streams"),
    ("get", "/v1/audit/access-log"),
    ("get", "/v1/projections"),
    ("post", "/v1/projections/{name}/rebuild"),
    ("get", "/v1/process-managers"),
    ("post", "/v1/webhooks"),
    ("get", "/v1/webhooks"),
    ("delete", "/v1/webhooks/{id}"),
    ("get", "/v1/dead-letters"),
    ("post", "/v1/dead-letters/{id}/retry"),
    ("post", "/v1/dead-letters/{id}/discard"),
    ("get", "/fhir/r4/metadata"),
    ("post", "/fhir/r4"),
    ("post", "/fhir/r4/Patient"),
    ("put", "/fhir/r4/Patient/{id}"),
    ("get", "/fhir/r4/Patient/{id}"),
    ("post", "/fhir/r4/Encounter"),
    ("get", "/fhir/r4/Encounter/{id}"),
    ("post", "/fhir/r4/Coverage"),
    ("post", "/fhir/r4/ChargeItem"),
    ("post", "/fhir/r4/SupplyDelivery"),
    ("post", "/fhir/r4/CoverageEligibilityResponse"),
    ("get", "/v1/billing/reconciliation"),
    ("get", "/v1/billing/claims"),
    ("get", "/v1/billing/denials"),
    ("post", "/fhir/r4/Claim"),
    ("post", "/fhir/r4/ClaimResponse"),
    ("post", "/fhir/r4/Patient/$merge"),
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
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_covers_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (method, path) in ROUTES {
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
