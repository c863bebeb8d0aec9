//! Runs one batch of intents: concurrently where Odoo allows, in order where it matters.
//!
//! Order: an intent starts after the earlier intents (in log order) of its own key, of every
//! key it refers to (an invoice after its partner, a receipt after its purchase order), and,
//! for a payment, after the earlier invoices of the same partner (the payment is registered
//! against them). Everything else runs at once, at most `per_model` intents of one Odoo model
//! in flight.
//!
//! Failures (see [`super::client::ErrorClass`]): a poison intent is dead-lettered (source
//! `odoo`, key = its external id) and every later intent of that key in this batch and after
//! is parked behind it; a retryable failure is retried with jittered exponential backoff (the
//! breaker makes a down Odoo cost nothing per retry); an authentication failure abandons the
//! batch.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use careflow_projections::odoo::{Action, OdooIntent};
use rand::Rng;
use tokio::sync::{Semaphore, watch};

use super::client::ErrorClass;
use super::perform::{IntentError, Session, perform};
use super::runner::Attempt;
use super::{Deps, SOURCE};
use crate::operations::dead_letters::{DeadLetterStatus, NewDeadLetter};
use crate::operations::metrics;
use crate::runtime::consumers::wait;

/// Why a batch was abandoned (its checkpoint is not written; it runs again).
#[derive(Debug, Clone)]
pub(crate) enum Abort {
    Stopped,
    Auth(String),
    Failed(String),
}

/// What a finished batch did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BatchOutcome {
    pub done: u64,
    pub dead_lettered: u64,
    pub parked: u64,
}

/// The careflow keys an intent refers to (records that must exist in Odoo before it runs):
/// its references in module `careflow`; Odoo's own records (payment terms, locations) are not
/// made by careflow.
pub fn references(action: &Action) -> Vec<String> {
    let prefix = format!("{}.", careflow_projections::odoo::MODULE);
    action
        .refs()
        .into_iter()
        .filter_map(|xmlid| xmlid.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

/// The keys an intent "touches" besides its own: the order a receipt, bill or cancellation
/// acts on (two receipts of one order must not pick the same open picking), the customer an
/// invoice, payment or credit note is for (a payment is registered against that customer's
/// invoices), and the invoice a remittance's payment or credit note settles (one
/// reconciliation of an invoice at a time).
fn touched(action: &Action) -> Vec<&str> {
    match action {
        Action::ReceiveGoods { order, .. }
        | Action::PostVendorBill { order, .. }
        | Action::CancelPurchaseOrder { order, .. } => vec![order],
        Action::PostCustomerInvoice { partner, .. } => vec![partner],
        Action::RegisterPayment {
            partner, settles, ..
        } => std::iter::once(partner)
            .chain(settles)
            .map(String::as_str)
            .collect(),
        Action::PostCreditNote {
            partner, settles, ..
        } => vec![partner, settles],
        _ => Vec::new(),
    }
}

/// For each intent, the indices of the earlier intents it must wait for: the last earlier
/// intent touching its own key or any key it refers to.
fn dependencies(intents: &[OdooIntent]) -> Vec<Vec<usize>> {
    let mut last_touch: HashMap<String, usize> = HashMap::new();
    let mut deps = Vec::with_capacity(intents.len());
    for (index, intent) in intents.iter().enumerate() {
        let mut mine: Vec<usize> = references(&intent.action)
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(intent.key.as_str()))
            .filter_map(|key| last_touch.get(key).copied())
            .collect();
        mine.sort_unstable();
        mine.dedup();
        deps.push(mine);
        last_touch.insert(intent.key.clone(), index);
        for key in touched(&intent.action) {
            last_touch.insert(key.to_owned(), index);
        }
    }
    deps
}

/// What the intents of one batch share.
struct Shared {
    /// Keys with an open dead letter: later intents of these keys are parked.
    open: Mutex<HashSet<String>>,
    abort: Mutex<Option<Abort>>,
    outcome: Mutex<BatchOutcome>,
    per_model: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Shared {
    fn aborted(&self) -> bool {
        self.abort.lock().map(|a| a.is_some()).unwrap_or(true)
    }

    fn abort(&self, why: Abort) {
        if let Ok(mut slot) = self.abort.lock()
            && slot.is_none()
        {
            *slot = Some(why);
        }
    }

    fn count(&self, f: impl FnOnce(&mut BatchOutcome)) {
        if let Ok(mut outcome) = self.outcome.lock() {
            f(&mut outcome);
        }
    }
}

/// Runs `intents` (in log order) to completion: each done, dead-lettered or parked.
///
/// # Errors
/// [`Abort`] when shutdown was asked, Odoo refused the credentials, or the dead letters could
/// not be written; the caller does not checkpoint the batch.
pub(crate) async fn execute(
    deps: &Arc<Deps>,
    session: &Arc<Session>,
    intents: Vec<OdooIntent>,
    open: HashSet<String>,
) -> Result<BatchOutcome, Abort> {
    let waits = dependencies(&intents);
    let (done_tx, done_rx): (Vec<_>, Vec<_>) =
        intents.iter().map(|_| watch::channel(false)).unzip();
    let shared = Arc::new(Shared {
        open: Mutex::new(open),
        abort: Mutex::new(None),
        outcome: Mutex::new(BatchOutcome::default()),
        per_model: Mutex::new(HashMap::new()),
    });
    let tasks = intents
        .into_iter()
        .zip(waits)
        .zip(done_tx)
        .map(|((intent, waits), done)| {
            let shared = Arc::clone(&shared);
            let before: Vec<watch::Receiver<bool>> =
                waits.iter().map(|&i| done_rx[i].clone()).collect();
            async move {
                for mut receiver in before {
                    let _ = receiver.wait_for(|finished| *finished).await;
                }
                if !shared.aborted() {
                    run_one(deps, session, &shared, &intent).await;
                }
                let _ = done.send(true);
            }
        });
    futures_util::future::join_all(tasks).await;
    if let Some(abort) = shared.abort.lock().ok().and_then(|mut a| a.take()) {
        return Err(abort);
    }
    Ok(shared.outcome.lock().map(|o| *o).unwrap_or_default())
}

/// One intent of a batch: parked, done, dead-lettered, or the batch aborted.
async fn run_one(deps: &Arc<Deps>, session: &Arc<Session>, shared: &Shared, intent: &OdooIntent) {
    let parked = shared
        .open
        .lock()
        .map(|open| open.contains(&intent.key))
        .unwrap_or(false);
    if parked {
        match park(deps, intent).await {
            Ok(()) => {
                metrics::odoo_intent(&intent.model, "parked");
                shared.count(|o| o.parked += 1);
            }
            Err(error) => shared.abort(Abort::Failed(error)),
        }
        return;
    }
    let semaphore = shared.per_model.lock().ok().map(|mut map| {
        Arc::clone(
            map.entry(intent.model.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(deps.config.per_model.max(1)))),
        )
    });
    let _permit = match &semaphore {
        Some(semaphore) => semaphore.acquire().await.ok(),
        None => None,
    };
    let mut delay = deps.config.retry_first;
    let mut stop = deps.stop.clone();
    loop {
        if shared.aborted() {
            return;
        }
        let error = match perform(session, intent).await {
            Ok(()) => {
                metrics::odoo_intent(&intent.model, "done");
                shared.count(|o| o.done += 1);
                return;
            }
            Err(error) => error,
        };
        match error.class() {
            ErrorClass::Poison => {
                // Marked open before the dead letter is written: a later intent of the key in
                // this batch (it waits for this one) is parked behind it either way.
                if let Ok(mut open) = shared.open.lock() {
                    open.insert(intent.key.clone());
                }
                match dead_letter(deps, intent, &error.to_string()).await {
                    Ok(()) => {
                        tracing::warn!(key = %intent.key, intent = %intent.id, position = intent.position, error = %error, "Odoo refused an intent; dead-lettered");
                        metrics::odoo_intent(&intent.model, "dead_lettered");
                        shared.count(|o| o.dead_lettered += 1);
                    }
                    Err(failure) => shared.abort(Abort::Failed(failure)),
                }
                return;
            }
            ErrorClass::Auth => {
                shared.abort(Abort::Auth(error.to_string()));
                return;
            }
            ErrorClass::Retry => {
                metrics::odoo_retry();
                tracing::debug!(key = %intent.key, error = %error, "Odoo call failed; retrying");
                let pause = match &error {
                    IntentError::Odoo(super::OdooError::CircuitOpen(open)) => {
                        open.retry_in.max(Duration::from_millis(50))
                    }
                    _ => jittered(delay),
                };
                delay = (delay * 2).min(deps.config.backoff_max);
                if wait(&mut stop, pause).await {
                    shared.abort(Abort::Stopped);
                    return;
                }
            }
        }
    }
}

/// Between half and all of `delay`, so intents retrying together spread out.
fn jittered(delay: Duration) -> Duration {
    let half = delay / 2;
    half + rand::rng().random_range(Duration::ZERO..=half)
}

/// Tries an intent from the dead-letter list once (retrying transport failures a few times).
///
/// # Errors
/// [`Abort`] is mapped by the runner: authentication failure or shutdown.
pub(crate) async fn attempt(
    deps: &Arc<Deps>,
    session: &Arc<Session>,
    intent: &OdooIntent,
) -> Result<Attempt, Abort> {
    let mut delay = deps.config.retry_first;
    let mut stop = deps.stop.clone();
    for _ in 0..3 {
        match perform(session, intent).await {
            Ok(()) => return Ok(Attempt::Done),
            Err(error) => match error.class() {
                ErrorClass::Poison => return Ok(Attempt::Poison(error.to_string())),
                ErrorClass::Auth => return Err(Abort::Auth(error.to_string())),
                ErrorClass::Retry => {
                    metrics::odoo_retry();
                    if wait(&mut stop, jittered(delay)).await {
                        return Err(Abort::Stopped);
                    }
                    delay = (delay * 2).min(deps.config.backoff_max);
                }
            },
        }
    }
    Ok(Attempt::Later)
}

fn new_letter(intent: &OdooIntent, error: &str) -> Result<NewDeadLetter, String> {
    Ok(NewDeadLetter {
        source: SOURCE.to_owned(),
        key: intent.key.clone(),
        event_id: intent.event_id,
        position: intent.position,
        payload: serde_json::to_value(intent).map_err(|e| e.to_string())?,
        error: error.to_owned(),
        attempts: 1,
    })
}

async fn dead_letter(deps: &Deps, intent: &OdooIntent, error: &str) -> Result<(), String> {
    deps.dead_letters
        .record(new_letter(intent, error)?, DeadLetterStatus::Dead)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Records `intent` as waiting behind its key's dead letter, unless it already is one of the
/// key's open letters (a redelivered batch must not turn a dead head into a parked one).
async fn park(deps: &Deps, intent: &OdooIntent) -> Result<(), String> {
    let open = deps
        .dead_letters
        .open_for_key(SOURCE, &intent.key)
        .await
        .map_err(|e| e.to_string())?;
    let id = serde_json::Value::String(intent.id.clone());
    if open
        .iter()
        .any(|letter| letter.payload.get("id") == Some(&id))
    {
        return Ok(());
    }
    let error = format!(
        "waiting behind an earlier intent of {} in the dead-letter list",
        intent.key
    );
    deps.dead_letters
        .record(new_letter(intent, &error)?, DeadLetterStatus::Parked)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use careflow_aggregates::Cents;
    use careflow_projections::odoo::{Action, OdooIntent};
    use serde_json::Map;
    use uuid::Uuid;

    use super::dependencies;

    fn intent(key: &str, action: Action) -> OdooIntent {
        OdooIntent {
            id: format!("{key}/0"),
            event_id: Uuid::nil(),
            position: 1,
            key: key.to_owned(),
            model: action.model().to_owned(),
            action,
        }
    }

    fn partner(mrn: &str) -> OdooIntent {
        intent(
            &format!("partner_{mrn}"),
            Action::UpsertPartner {
                values: Map::new(),
                payment_terms: None,
            },
        )
    }

    fn invoice(visit: &str, mrn: &str) -> OdooIntent {
        intent(
            &format!("invoice_{visit}"),
            Action::PostCustomerInvoice {
                partner: format!("partner_{mrn}"),
                invoice_date: "2026-03-01".into(),
                reference: visit.into(),
                lines: Vec::new(),
            },
        )
    }

    fn payment(id: &str, mrn: &str) -> OdooIntent {
        intent(
            &format!("payment_{id}"),
            Action::RegisterPayment {
                partner: format!("partner_{mrn}"),
                amount: Cents(100),
                payment_date: "2026-03-01".into(),
                memo: id.into(),
                settles: None,
            },
        )
    }

    /// A remittance's payment by `payer`, settling `visit`'s invoice.
    fn remitted(id: &str, payer: &str, visit: &str) -> OdooIntent {
        intent(
            &format!("payment_{id}"),
            Action::RegisterPayment {
                partner: format!("payer_{payer}"),
                amount: Cents(100),
                payment_date: "2026-03-01".into(),
                memo: id.into(),
                settles: Some(format!("invoice_{visit}")),
            },
        )
    }

    fn credit_note(id: &str, mrn: &str, visit: &str) -> OdooIntent {
        intent(
            &format!("adjustment_{id}"),
            Action::PostCreditNote {
                partner: format!("partner_{mrn}"),
                invoice_date: "2026-03-01".into(),
                reference: id.into(),
                label: "contractual".into(),
                amount: Cents(100),
                settles: format!("invoice_{visit}"),
            },
        )
    }

    fn payer(id: &str) -> OdooIntent {
        intent(
            &format!("payer_{id}"),
            Action::UpsertPayer { values: Map::new() },
        )
    }

    fn receipt(id: &str, requisition: &str) -> OdooIntent {
        intent(
            &format!("receipt_{id}"),
            Action::ReceiveGoods {
                order: format!("po_{requisition}"),
                lines: Vec::new(),
            },
        )
    }

    #[track_caller]
    fn check(intents: &[OdooIntent], expected: &[&[usize]]) {
        let expected: Vec<Vec<usize>> = expected.iter().map(|d| d.to_vec()).collect();
        assert_eq!(dependencies(intents), expected);
    }

    #[test]
    fn different_records_run_at_once() {
        check(
            &[partner("A"), partner("B"), partner("C")],
            &[&[], &[], &[]],
        );
    }

    #[test]
    fn a_key_runs_in_log_order_and_after_the_records_it_refers_to() {
        check(
            &[partner("A"), partner("B"), partner("A"), invoice("V1", "A")],
            &[&[], &[], &[0], &[2]],
        );
    }

    #[test]
    fn a_payment_waits_for_the_customers_earlier_invoices_only() {
        check(
            &[
                partner("A"),
                invoice("V1", "A"),
                invoice("V2", "B"),
                payment("P1", "A"),
                invoice("V3", "A"),
            ],
            &[&[], &[0], &[], &[1], &[3]],
        );
    }

    #[test]
    fn a_remittance_settles_its_invoice_one_reconciliation_at_a_time() {
        check(
            &[
                partner("A"),
                invoice("V1", "A"),
                payer("ACME"),
                remitted("INS-1", "ACME", "V1"),
                credit_note("INS-1-0", "A", "V1"),
                credit_note("INS-1-1", "A", "V1"),
                payment("P1", "A"),
            ],
            // The payment after its payer and the invoice; each credit note after the one
            // before it on that invoice; the patient's payment after the last credit note.
            &[&[], &[0], &[], &[1, 2], &[1, 3], &[4], &[5]],
        );
    }

    #[test]
    fn receipts_of_one_order_run_one_after_the_other() {
        check(
            &[
                receipt("R1", "PO1"),
                receipt("R2", "PO2"),
                receipt("R3", "PO1"),
            ],
            &[&[], &[], &[0]],
        );
    }
}
