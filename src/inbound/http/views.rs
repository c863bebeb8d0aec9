//! HTTP DTOs: the wire shapes of answers (STYLE.md §1: domain state is not a response body).
//!
//! Each aggregate's state is rendered into a view struct here, so a change to a domain type
//! cannot silently change the API; money is a string decimal, enums are their snake_case
//! names, timestamps RFC 3339. The [`Resource`] trait ties an aggregate to its path word and
//! view.

use careflow_aggregates::{
    Aggregate, Claim, Encounter, InventoryItem, PatientAccount, PurchaseWorkflow, RecordedEvent,
    Roster,
};
use serde::Serialize;
use utoipa::ToSchema;

/// An enum's wire name (its serde form).
fn wire<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// The answer to a command.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CommandAnswer {
    /// The stream id, e.g. `patient_account-MRN001`.
    pub stream: String,
    /// The stream's version after the command.
    pub version: u64,
    /// Global position of the command's last event (the stream's newest for a no-op).
    pub position: u64,
    /// The appended events in full (empty for an idempotent no-op).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<RecordedEvent>,
}

/// A page of one stream's history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryPage {
    pub stream: String,
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<RecordedEvent>,
    /// The `from` of the next page, or null at the end.
    pub next_version: Option<u64>,
}

/// A page of the global log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventsPage {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<RecordedEvent>,
    /// The `from` to ask for next (one past the last position returned).
    pub next: u64,
}

/// A replayed state (`careflow replay`) as the API shows the same aggregate's state, so an
/// auditor sees what the upstream systems saw.
pub fn render_replayed(
    state: &crate::operations::audit::replay::FoldedState,
    id: &str,
    version: u64,
) -> serde_json::Value {
    use crate::operations::audit::replay::FoldedState;
    let rendered = match state {
        FoldedState::PatientAccount(s) => {
            serde_json::to_value(PatientAccount::view(id, s, version))
        }
        FoldedState::Encounter(s) => serde_json::to_value(Encounter::view(id, s, version)),
        FoldedState::InventoryItem(s) => serde_json::to_value(InventoryItem::view(id, s, version)),
        FoldedState::Purchase(s) => serde_json::to_value(PurchaseWorkflow::view(id, s, version)),
        FoldedState::Claim(s) => serde_json::to_value(Claim::view(id, s, version)),
        FoldedState::Roster(s) => serde_json::to_value(Roster::view(id, s, version)),
        // Served over no route (the staffing process manager alone sends to it): its state
        // as it is, open shortfalls by hour and role.
        FoldedState::Staffing(s) => serde_json::to_value(s),
    };
    // The views are plain structs of strings and numbers: they always serialise.
    rendered.unwrap_or(serde_json::Value::Null)
}

/// An aggregate served over HTTP.
pub trait Resource: Aggregate {
    /// The path word: `/v1/{PATH}/{id}`.
    const PATH: &'static str;
    /// For messages: "no such patient account".
    const NOUN: &'static str;
    /// Reads of it are personal data and are written to the access log.
    const PERSONAL: bool;
    type View: Serialize;
    /// The state as the API shows it.
    fn view(id: &str, state: &Self::State, version: u64) -> Self::View;
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NameView {
    pub family: String,
    pub given: Vec<String>,
}

/// Personal fields; null after erasure.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PersonalView {
    pub name: NameView,
    /// YYYY-MM-DD.
    pub birth_date: String,
    pub member_id: Option<String>,
    /// The billing address: `line` (at most two), `city`, `postal_code`, `country` (ISO
    /// 3166-1 alpha-2); null when none was given.
    #[schema(value_type = Option<Object>)]
    pub address: Option<careflow_aggregates::patient_account::PostalAddress>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CoverageView {
    pub payer_id: String,
    pub plan: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EligibilityView {
    pub payer_id: String,
    pub eligible: bool,
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChargeView {
    pub charge_id: String,
    pub encounter_id: String,
    pub code: String,
    pub description: String,
    pub quantity: u32,
    /// String decimal.
    pub unit_price: String,
    /// String decimal: quantity × unit_price.
    pub amount: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentView {
    pub payment_id: String,
    pub amount: String,
    /// cash | card | insurance | transfer
    pub method: String,
    pub payer: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdjustmentView {
    pub adjustment_id: String,
    /// Signed string decimal.
    pub amount: String,
    pub reason: String,
}

/// `GET /v1/patient-accounts/{mrn}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PatientAccountView {
    pub mrn: String,
    /// registered | active | self_pay | closed | merged
    pub status: String,
    /// The survivor's MRN once the account was merged (status `merged`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// The MRNs merged into this account.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    pub facility: String,
    pub gender: Option<String>,
    pub coverage: Option<CoverageView>,
    pub eligibility: Option<EligibilityView>,
    pub self_pay_reason: Option<String>,
    /// ISO 4217; USD until an amount says otherwise.
    pub currency: String,
    /// String decimal: charges − payments + adjustments.
    pub balance: String,
    pub charges: Vec<ChargeView>,
    pub payments: Vec<PaymentView>,
    pub adjustments: Vec<AdjustmentView>,
    pub personal: Option<PersonalView>,
    pub personal_data_erased: bool,
    pub version: u64,
}

impl Resource for PatientAccount {
    const PATH: &'static str = "patient-accounts";
    const NOUN: &'static str = "patient account";
    const PERSONAL: bool = true;
    type View = PatientAccountView;

    fn view(id: &str, state: &Self::State, version: u64) -> PatientAccountView {
        PatientAccountView {
            mrn: id.to_owned(),
            status: state.status.map(|s| s.as_str()).unwrap_or("").to_owned(),
            merged_into: state.merged_into.clone(),
            merged_from: state.merged_from.clone(),
            facility: state.facility.clone(),
            gender: state.gender.as_ref().map(wire),
            coverage: state.coverage.as_ref().map(|c| CoverageView {
                payer_id: c.payer_id.clone(),
                plan: c.plan.clone(),
            }),
            eligibility: state.eligibility.as_ref().map(|e| EligibilityView {
                payer_id: e.payer_id.clone(),
                eligible: e.eligible,
                reference: e.reference.clone(),
            }),
            self_pay_reason: state.self_pay_reason.clone(),
            currency: state.currency.unwrap_or_default().to_string(),
            balance: state.balance.to_string(),
            charges: state
                .charges
                .iter()
                .map(|c| ChargeView {
                    charge_id: c.charge_id.clone(),
                    encounter_id: c.encounter_id.clone(),
                    code: c.code.clone(),
                    description: c.description.clone(),
                    quantity: c.quantity,
                    unit_price: c.unit_price.to_string(),
                    amount: c.amount.to_string(),
                })
                .collect(),
            payments: state
                .payments
                .iter()
                .map(|p| PaymentView {
                    payment_id: p.payment_id.clone(),
                    amount: p.amount.to_string(),
                    method: wire(&p.method),
                    payer: p.payer.clone(),
                })
                .collect(),
            adjustments: state
                .adjustments
                .iter()
                .map(|a| AdjustmentView {
                    adjustment_id: a.adjustment_id.clone(),
                    amount: a.amount.to_string(),
                    reason: a.reason.clone(),
                })
                .collect(),
            personal: state.identity.as_ref().map(|i| PersonalView {
                name: NameView {
                    family: i.name.family.clone(),
                    given: i.name.given.clone(),
                },
                birth_date: i.birth_date.to_string(),
                member_id: i.member_id.clone(),
                address: i.address.clone(),
            }),
            personal_data_erased: state.personal_data_erased,
            version,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProcedureView {
    pub line: u32,
    pub code: String,
    pub description: String,
    pub quantity: u32,
    pub unit_price: String,
    pub amount: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SupplyView {
    pub item_id: String,
    pub quantity: u32,
}

/// `GET /v1/encounters/{visit}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EncounterView {
    pub visit: String,
    /// scheduled | arrived | completed | discharged | cancelled
    pub status: String,
    pub account_id: String,
    pub facility: String,
    pub department: String,
    /// inpatient | outpatient | emergency
    pub class: Option<String>,
    pub scheduled_for: Option<String>,
    pub currency: String,
    pub procedures: Vec<ProcedureView>,
    pub supplies: Vec<SupplyView>,
    pub disposition: Option<String>,
    pub cancel_reason: Option<String>,
    pub version: u64,
}

impl Resource for Encounter {
    const PATH: &'static str = "encounters";
    const NOUN: &'static str = "encounter";
    const PERSONAL: bool = true;
    type View = EncounterView;

    fn view(id: &str, state: &Self::State, version: u64) -> EncounterView {
        EncounterView {
            visit: id.to_owned(),
            status: state.status.map(|s| s.as_str()).unwrap_or("").to_owned(),
            account_id: state.account_id.clone(),
            facility: state.facility.clone(),
            department: state.department.clone(),
            class: state.encounter_class.as_ref().map(wire),
            scheduled_for: state.scheduled_for.map(|t| t.to_rfc3339()),
            currency: state.currency.unwrap_or_default().to_string(),
            procedures: state
                .procedures
                .iter()
                .map(|p| ProcedureView {
                    line: p.line,
                    code: p.code.clone(),
                    description: p.description.clone(),
                    quantity: p.quantity,
                    unit_price: p.unit_price.to_string(),
                    amount: p.amount.to_string(),
                })
                .collect(),
            supplies: state
                .supplies
                .iter()
                .map(|s| SupplyView {
                    item_id: s.item_id.clone(),
                    quantity: s.quantity,
                })
                .collect(),
            disposition: state.disposition.clone(),
            cancel_reason: state.cancel_reason.clone(),
            version,
        }
    }
}

/// `GET /v1/inventory-items/{item}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InventoryItemView {
    pub item_id: String,
    pub defined: bool,
    pub name: String,
    pub unit: String,
    pub facility: String,
    /// Signed: consumption beyond recorded stock shows as negative.
    pub on_hand: i64,
    pub reorder_point: u32,
    pub reorder_quantity: u32,
    pub vendor_id: String,
    pub unit_cost: String,
    pub currency: String,
    /// The requisition id of the replenishment in progress, or null.
    pub open_replenishment: Option<String>,
    pub version: u64,
}

impl Resource for InventoryItem {
    const PATH: &'static str = "inventory-items";
    const NOUN: &'static str = "inventory item";
    const PERSONAL: bool = false;
    type View = InventoryItemView;

    fn view(id: &str, state: &Self::State, version: u64) -> InventoryItemView {
        InventoryItemView {
            item_id: id.to_owned(),
            defined: state.defined,
            name: state.name.clone(),
            unit: state.unit.clone(),
            facility: state.facility.clone(),
            on_hand: state.on_hand,
            reorder_point: state.reorder_point,
            reorder_quantity: state.reorder_quantity,
            vendor_id: state.vendor_id.clone(),
            unit_cost: state.unit_cost.to_string(),
            currency: state.currency.to_string(),
            open_replenishment: state.open_replenishment.clone(),
            version,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderLineView {
    pub item_id: String,
    pub quantity: u32,
    pub unit_price: String,
    pub received: u32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VendorBillView {
    pub bill_id: String,
    pub matched: bool,
}

/// `GET /v1/purchases/{requisition}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PurchaseView {
    pub requisition: String,
    /// requested | approved | rejected | ordered | partially_received | received | matched |
    /// closed | cancelled
    pub status: String,
    pub escalated: bool,
    pub requester: String,
    pub facility: String,
    pub vendor_id: String,
    pub reason: String,
    pub approval_deadline: Option<String>,
    pub currency: String,
    pub lines: Vec<OrderLineView>,
    pub total: String,
    pub approver: Option<String>,
    pub rejection_reason: Option<String>,
    pub odoo_order_ref: Option<String>,
    pub receipts: Vec<String>,
    pub bills: Vec<VendorBillView>,
    pub cancel_reason: Option<String>,
    pub version: u64,
}

impl Resource for PurchaseWorkflow {
    const PATH: &'static str = "purchases";
    const NOUN: &'static str = "purchase";
    const PERSONAL: bool = false;
    type View = PurchaseView;

    fn view(id: &str, state: &Self::State, version: u64) -> PurchaseView {
        PurchaseView {
            requisition: id.to_owned(),
            status: state.status.map(|s| s.as_str()).unwrap_or("").to_owned(),
            escalated: state.escalated,
            requester: state.requester.clone(),
            facility: state.facility.clone(),
            vendor_id: state.vendor_id.clone(),
            reason: state.reason.clone(),
            approval_deadline: state.approval_deadline.map(|t| t.to_rfc3339()),
            currency: state.currency.to_string(),
            lines: state
                .lines
                .iter()
                .map(|l| OrderLineView {
                    item_id: l.item_id.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price.to_string(),
                    received: l.received,
                })
                .collect(),
            total: state.total.to_string(),
            approver: state.approver.clone(),
            rejection_reason: state.rejection_reason.clone(),
            odoo_order_ref: state.odoo_order_ref.clone(),
            receipts: state.receipts.clone(),
            bills: state
                .bills
                .iter()
                .map(|b| VendorBillView {
                    bill_id: b.bill_id.clone(),
                    matched: b.matched,
                })
                .collect(),
            cancel_reason: state.cancel_reason.clone(),
            version,
        }
    }
}

/// `GET /v1/claims/{claim_id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InsuranceClaimView {
    pub claim_id: String,
    /// draft | submitted | paid | partially_paid | denied | void
    pub status: String,
    pub account_id: String,
    pub encounter_id: String,
    pub payer_id: String,
    pub currency: String,
    pub lines: Vec<ClaimLineView>,
    pub total: String,
    pub submissions: u32,
    pub paid: String,
    pub adjusted: String,
    pub patient_balance: String,
    pub adjustments: Vec<RemittanceAdjustmentView>,
    pub denial_reason: Option<String>,
    pub reference: Option<String>,
    pub note: Option<String>,
    pub void_reason: Option<String>,
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClaimLineView {
    pub charge_id: String,
    pub code: String,
    pub quantity: u32,
    pub unit_price: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RemittanceAdjustmentView {
    pub reason_code: String,
    pub amount: String,
}

impl Resource for Claim {
    const PATH: &'static str = "claims";
    const NOUN: &'static str = "claim";
    const PERSONAL: bool = false;
    type View = InsuranceClaimView;

    fn view(id: &str, state: &Self::State, version: u64) -> InsuranceClaimView {
        InsuranceClaimView {
            claim_id: id.to_owned(),
            status: state.status.map(|s| s.as_str()).unwrap_or("").to_owned(),
            account_id: state.account_id.clone(),
            encounter_id: state.encounter_id.clone(),
            payer_id: state.payer_id.clone(),
            currency: state.currency.to_string(),
            lines: state
                .lines
                .iter()
                .map(|l| ClaimLineView {
                    charge_id: l.charge_id.clone(),
                    code: l.code.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price.to_string(),
                })
                .collect(),
            total: state.total.to_string(),
            submissions: state.submissions,
            paid: state.paid.to_string(),
            adjusted: state.adjusted.to_string(),
            patient_balance: state.patient_balance.to_string(),
            adjustments: state
                .adjustments
                .iter()
                .map(|a| RemittanceAdjustmentView {
                    reason_code: a.reason_code.clone(),
                    amount: a.amount.to_string(),
                })
                .collect(),
            denial_reason: state.denial_reason.clone(),
            reference: state.reference.clone(),
            note: state.note.clone(),
            void_reason: state.void_reason.clone(),
            version,
        }
    }
}

/// `GET /v1/rosters/{facility}.{department}.{date}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RosterView {
    pub roster_id: String,
    pub facility: String,
    pub department: String,
    /// YYYY-MM-DD.
    pub date: String,
    /// The shifts that will be worked, by start.
    pub shifts: Vec<ShiftView>,
    pub cancelled: Vec<String>,
    /// Sum of the shifts' hours.
    pub rostered_hours: f64,
    /// Sum of hours × hourly cost, rounded to the cent.
    pub labor_cost: String,
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShiftView {
    pub shift_id: String,
    pub staff_id: String,
    /// nurse | physician | technician
    pub role: String,
    pub start: String,
    pub end: String,
    pub hourly_cost: String,
}

impl Resource for Roster {
    const PATH: &'static str = "rosters";
    const NOUN: &'static str = "roster";
    const PERSONAL: bool = false;
    type View = RosterView;

    fn view(id: &str, state: &Self::State, version: u64) -> RosterView {
        let parsed = careflow_aggregates::roster::RosterId::parse(id).ok();
        let mut shifts: Vec<_> = state.shifts.values().collect();
        shifts.sort_by_key(|s| (s.start, s.shift_id.clone()));
        let minutes: i64 = shifts.iter().map(|s| (s.end - s.start).num_minutes()).sum();
        // cents × minutes / 60, rounded half up: exact in i128 for any shift careflow takes.
        let cost_cents: i128 = shifts
            .iter()
            .map(|s| i128::from(s.hourly_cost.0) * i128::from((s.end - s.start).num_minutes()))
            .sum::<i128>();
        let cost =
            careflow_aggregates::Cents(i64::try_from((cost_cents + 30) / 60).unwrap_or(i64::MAX));
        RosterView {
            roster_id: id.to_owned(),
            facility: parsed
                .as_ref()
                .map(|p| p.facility.clone())
                .unwrap_or_default(),
            department: parsed
                .as_ref()
                .map(|p| p.department.clone())
                .unwrap_or_default(),
            date: parsed.map(|p| p.date.to_string()).unwrap_or_default(),
            shifts: shifts
                .iter()
                .map(|s| ShiftView {
                    shift_id: s.shift_id.clone(),
                    staff_id: s.staff_id.clone(),
                    role: s.role.as_str().to_owned(),
                    start: s.start.to_rfc3339(),
                    end: s.end.to_rfc3339(),
                    hourly_cost: s.hourly_cost.to_string(),
                })
                .collect(),
            cancelled: state.cancelled.iter().cloned().collect(),
            rostered_hours: minutes as f64 / 60.0,
            labor_cost: cost.to_string(),
            version,
        }
    }
}
