//! Test support: an in-memory event log that wraps domain events in `RecordedEvent`s exactly
//! as the store would (positions, per-stream versions, metadata), so projection tests feed
//! `apply` what a runner would.

use std::collections::BTreeMap;

use careflow_aggregates::codec::DomainEvent;
use careflow_aggregates::{Aggregate, EventHash, EventMetadata, RecordedEvent, StreamId};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::projection::Projection;
use crate::store::MemoryViewStore;

/// Parses an RFC 3339 test timestamp.
#[track_caller]
pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad test time {text:?}: {e}"))
        .with_timezone(&Utc)
}

/// A growing global log.
#[derive(Debug, Default, Clone)]
pub struct EventLog {
    events: Vec<RecordedEvent>,
    versions: BTreeMap<String, u64>,
}

impl EventLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a domain event to `{kind}-{id}`, occurred and recorded at `when`.
    #[track_caller]
    pub fn push<E: DomainEvent>(self, id: &str, when: &str, event: E) -> Self {
        let encoded = <E::Aggregate as Aggregate>::encode(&event);
        let kind = <E::Aggregate as Aggregate>::KIND;
        self.push_raw(
            &format!("{kind}-{id}"),
            encoded.event_type,
            encoded.schema_version,
            encoded.data,
            when,
            "test-system",
        )
    }

    /// Appends any event, as an internal stream or an old schema would be stored.
    #[track_caller]
    pub fn push_raw(
        mut self,
        stream: &str,
        event_type: &str,
        schema_version: u32,
        data: Value,
        when: &str,
        principal: &str,
    ) -> Self {
        let stream_id = StreamId::parse(stream).unwrap_or_else(|e| panic!("{stream}: {e}"));
        let version = self.versions.entry(stream.to_owned()).or_insert(0);
        *version += 1;
        let position = self.events.len() as u64 + 1;
        let time = at(when);
        self.events.push(RecordedEvent {
            event_id: Uuid::from_u128(u128::from(position)),
            stream_id,
            version: *version,
            position,
            event_type: event_type.to_owned(),
            schema_version,
            data,
            metadata: EventMetadata {
                command_id: Uuid::from_u128(0xC0_0000 + u128::from(position)),
                correlation_id: format!("corr-{position}"),
                causation_id: format!("cause-{position}"),
                principal: principal.to_owned(),
                source: "http".to_owned(),
                recorded_at: time,
                occurred_at: time,
            },
            prev_hash: EventHash::ZERO,
            hash: EventHash::ZERO,
        });
        self
    }

    pub fn events(&self) -> &[RecordedEvent] {
        &self.events
    }
}

/// Replays `events` into a fresh in-memory view.
#[track_caller]
pub fn replay(projection: &dyn Projection, events: &[RecordedEvent]) -> MemoryViewStore {
    let mut store = MemoryViewStore::new();
    for event in events {
        projection
            .apply(&mut store, event)
            .unwrap_or_else(|e| panic!("{} failed: {e}", projection.name()));
    }
    store
}

/// Compares each table named in `expected` as a whole: `{"table": {"key": {"field": value}}}`.
/// The keys must match exactly; each expected row lists only the fields that test cares about.
#[track_caller]
pub fn assert_tables(store: &MemoryViewStore, expected: &Value) {
    let Value::Object(tables) = expected else {
        panic!("expected must be an object of tables")
    };
    for (table, rows) in tables {
        let Value::Object(rows) = rows else {
            panic!("rows of {table} must be an object")
        };
        let got = store.table(table);
        let got_keys: Vec<&String> = got.keys().collect();
        let want_keys: Vec<&String> = rows.keys().collect();
        assert_eq!(got_keys, want_keys, "keys of {table}");
        for (key, want) in rows {
            let Value::Object(fields) = want else {
                panic!("row {table}/{key} must be an object")
            };
            for (field, value) in fields {
                assert!(
                    got[key].get(field).is_some(),
                    "{table}/{key} has no field {field}: {}",
                    got[key]
                );
                assert_eq!(
                    &got[key][field], value,
                    "{table}/{key}.{field}; whole row: {}",
                    got[key]
                );
            }
        }
    }
}

/// Event constructors with the fields tests vary; everything else fixed.
pub mod events {
    use careflow_aggregates::encounter::{
        self, EncounterClass, EncounterCompleted, EncounterScheduled, Procedure,
    };
    use careflow_aggregates::inventory_item::{self, ItemDefined, StockConsumed};
    use careflow_aggregates::patient_account::{
        self, AdjustmentApplied, ChargePosted, Gender, HumanName, PatientIdentity,
        PatientRegistered, PaymentMethod, PaymentParty, PaymentRecorded,
    };
    use careflow_aggregates::purchase::{self, RequestLine};
    use careflow_aggregates::{Cents, Currency, Personal};
    use chrono::NaiveDate;

    pub fn registered(facility: &str) -> patient_account::Event {
        PatientRegistered {
            facility: facility.to_owned(),
            gender: Gender::Female,
            coverage: None,
            personal: Personal::Present(PatientIdentity {
                name: HumanName {
                    family: "Doe".to_owned(),
                    given: vec!["Jane".to_owned()],
                },
                birth_date: NaiveDate::from_ymd_opt(1980, 4, 12).unwrap(),
                member_id: Some("M-123".to_owned()),
                address: None,
            }),
        }
        .into()
    }

    pub fn charge(
        id: &str,
        encounter: &str,
        quantity: u32,
        unit_price: i64,
    ) -> patient_account::Event {
        ChargePosted {
            charge_id: id.to_owned(),
            encounter_id: encounter.to_owned(),
            code: "99213".to_owned(),
            description: "office visit".to_owned(),
            quantity,
            unit_price: Cents(unit_price),
            amount: Cents(unit_price * i64::from(quantity)),
            currency: Currency::USD,
        }
        .into()
    }

    pub fn payment(id: &str, amount: i64) -> patient_account::Event {
        PaymentRecorded {
            payment_id: id.to_owned(),
            amount: Cents(amount),
            currency: Currency::USD,
            method: PaymentMethod::Card,
            personal: Personal::Present(PaymentParty {
                payer: Some("John Doe".to_owned()),
            }),
        }
        .into()
    }

    pub fn adjustment(id: &str, amount: i64) -> patient_account::Event {
        AdjustmentApplied {
            adjustment_id: id.to_owned(),
            amount: Cents(amount),
            currency: Currency::USD,
            reason: "contractual".to_owned(),
        }
        .into()
    }

    /// `from` merged into `into`, and the survivor's side, as the aggregate and the `merges`
    /// process manager record them: `moved` as the merged account's `decide` builds it.
    pub fn merge(
        from: &str,
        into: &str,
        moved: patient_account::MovedAccount,
    ) -> (patient_account::Event, patient_account::Event) {
        (
            patient_account::PatientMerged {
                into: into.to_owned(),
                reason: "duplicate registration".to_owned(),
                moved: moved.clone(),
            }
            .into(),
            patient_account::PatientAccountMergedIn {
                from: from.to_owned(),
                reason: "duplicate registration".to_owned(),
                moved,
            }
            .into(),
        )
    }

    pub fn scheduled(account: &str, facility: &str, class: EncounterClass) -> encounter::Event {
        EncounterScheduled {
            account_id: account.to_owned(),
            facility: facility.to_owned(),
            department: "cardiology".to_owned(),
            encounter_class: class,
            scheduled_for: super::at("2025-03-01T08:00:00Z"),
        }
        .into()
    }

    /// Completion with one procedure line per `(line, amount)`.
    pub fn completed(account: &str, facility: &str, lines: &[(u32, i64)]) -> encounter::Event {
        EncounterCompleted {
            account_id: account.to_owned(),
            facility: facility.to_owned(),
            currency: (!lines.is_empty()).then_some(Currency::USD),
            procedures: lines
                .iter()
                .map(|&(line, amount)| Procedure {
                    line,
                    code: "99213".to_owned(),
                    description: "office visit".to_owned(),
                    quantity: 1,
                    unit_price: Cents(amount),
                    amount: Cents(amount),
                })
                .collect(),
            supplies: Vec::new(),
        }
        .into()
    }

    pub fn item_defined(facility: &str) -> inventory_item::Event {
        ItemDefined {
            name: "gauze".to_owned(),
            unit: "box".to_owned(),
            facility: facility.to_owned(),
            reorder_point: 5,
            reorder_quantity: 20,
            vendor_id: "VEND1".to_owned(),
            unit_cost: Cents(250),
            currency: Currency::USD,
        }
        .into()
    }

    pub fn stock_consumed(quantity: u32) -> inventory_item::Event {
        StockConsumed {
            quantity,
            reference: "V1".to_owned(),
        }
        .into()
    }

    /// A request for `(item, quantity)` lines at 1.00 each.
    pub fn requested(facility: &str, lines: &[(&str, u32)]) -> purchase::Event {
        purchase::PurchaseRequested {
            requester: "nurse.a".to_owned(),
            facility: facility.to_owned(),
            vendor_id: "VEND1".to_owned(),
            lines: lines
                .iter()
                .map(|&(item, quantity)| RequestLine {
                    item_id: item.to_owned(),
                    quantity,
                    unit_price: Cents(100),
                })
                .collect(),
            reason: "restock".to_owned(),
            approval_deadline: None,
            currency: Currency::USD,
            total: Cents(lines.iter().map(|&(_, q)| i64::from(q) * 100).sum()),
        }
        .into()
    }

    pub fn received(receipt: &str, lines: &[(&str, u32)]) -> purchase::Event {
        purchase::GoodsReceived {
            receipt_id: receipt.to_owned(),
            lines: lines
                .iter()
                .map(|&(item, quantity)| purchase::ReceiptLine {
                    item_id: item.to_owned(),
                    quantity,
                })
                .collect(),
        }
        .into()
    }
}
