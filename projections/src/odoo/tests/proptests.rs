//! Property: however an encounter's completion and its charges interleave in the log (with
//! other encounters' events between them), each encounter is invoiced at most once, by the
//! event that completes it, with every charge posted up to that event, and the mapping state
//! keeps only encounters with charges still to come.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::super::*;
use crate::testing::EventLog;
use crate::testing::events::{charge, completed};

/// One event of the generated log.
#[derive(Debug, Clone)]
enum Step {
    /// `EncounterCompleted` of visit `V{visit}` with `procedures` procedure lines.
    Complete { visit: usize, procedures: u32 },
    /// A `ChargePosted` naming `V{visit}` with charge id `id`.
    Charge { visit: usize, id: String },
}

fn visit_name(visit: usize) -> String {
    format!("V{visit}")
}

/// Visits with 0-3 procedures and 0-2 other (DFT) charges each, all events shuffled.
fn log() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((0..4u32, 0..3usize), 1..5)
        .prop_map(|visits| {
            let mut steps = Vec::new();
            for (visit, &(procedures, others)) in visits.iter().enumerate() {
                steps.push(Step::Complete { visit, procedures });
                for line in 1..=procedures {
                    steps.push(Step::Charge {
                        visit,
                        id: format!("{}-{line}", visit_name(visit)),
                    });
                }
                for n in 0..others {
                    steps.push(Step::Charge {
                        visit,
                        id: format!("DFT{visit}-{n}"),
                    });
                }
            }
            steps
        })
        .prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn each_encounter_is_invoiced_once_with_the_charges_posted_by_then(steps in log()) {
        let mut events = EventLog::new();
        for step in &steps {
            events = match step {
                Step::Complete { visit, procedures } => {
                    let lines: Vec<(u32, i64)> = (1..=*procedures).map(|l| (l, 100)).collect();
                    events.push(&visit_name(*visit), "2025-03-01T11:00:00Z", completed("MRN1", "MAIN", &lines))
                }
                Step::Charge { visit, id } => {
                    events.push("MRN1", "2025-03-01T11:01:00Z", charge(id, &visit_name(*visit), 1, 100))
                }
            };
        }
        let mut state = MappingState::default();
        let mut invoices: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
        for (index, event) in events.events().iter().enumerate() {
            for intent in map_event(&mut state, event).unwrap() {
                let Action::PostCustomerInvoice { reference, lines, .. } = intent.action else {
                    panic!("only invoices expected: {intent:?}");
                };
                prop_assert_eq!(intent.key, format!("invoice_{reference}"));
                let ids = lines.into_iter().map(|line| line.charge_id).collect();
                prop_assert!(invoices.insert(reference, (index, ids)).is_none(), "invoiced twice");
            }
        }

        // The model: a visit closes at its completion or its last procedure charge, whichever
        // is later; the invoice holds the visit's charges up to there, in log order.
        let mut expected_open = 0;
        let visits: Vec<usize> = steps.iter().filter_map(|s| match s {
            Step::Complete { visit, .. } => Some(*visit),
            Step::Charge { .. } => None,
        }).collect();
        for visit in visits {
            let name = visit_name(visit);
            let closing = steps.iter().enumerate().filter(|(_, s)| match s {
                Step::Complete { visit: v, .. } => *v == visit,
                Step::Charge { visit: v, id } => *v == visit && id.starts_with(&format!("{name}-")),
            }).map(|(i, _)| i).max().unwrap();
            let lines: Vec<String> = steps[..=closing].iter().filter_map(|s| match s {
                Step::Charge { visit: v, id } if *v == visit => Some(id.clone()),
                _ => None,
            }).collect();
            if steps[closing + 1..].iter().any(|s| matches!(s, Step::Charge { visit: v, .. } if *v == visit)) {
                expected_open += 1;
            }
            match invoices.get(&name) {
                Some((index, ids)) => {
                    prop_assert_eq!(*index, closing, "{} invoiced by the wrong event", name);
                    prop_assert_eq!(ids, &lines);
                }
                None => prop_assert!(lines.is_empty(), "{} not invoiced: {:?}", name, lines),
            }
        }
        prop_assert_eq!(state.open_records(), expected_open);
    }
}
