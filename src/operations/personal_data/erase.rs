//! The right to erasure, shared by `careflow erase` and `POST /v1/patient-accounts/{mrn}/erase`.

use careflow_aggregates::PatientAccount;
use careflow_aggregates::StreamId;
use careflow_aggregates::patient_account::{Command, ErasePersonalData};

use super::{PATIENT_KIND, PersonalKeys};
use crate::runtime::actors::{CommandContext, CommandError, CommandOutcome, Registry};
use crate::store::EventStore;

/// Erases `mrn`'s personal data:
///
/// 1. `ErasePersonalData` goes through the account's actor with the admin as principal, so
///    the decision, the conflict retries and the event's metadata are those of any command.
///    The [`super::EncryptingStore`] destroys the key before it appends `PersonalDataErased`.
/// 2. The key is destroyed again (idempotent): this completes an erasure that a crash cut
///    short, and covers a repeated request, which appends nothing.
/// 3. The actor is passivated and the snapshot deleted, so nothing derived from the old
///    state stays in memory or on disk (snapshots were encrypted with the destroyed key).
///
/// # Errors
/// [`CommandError`]: `NotRegistered` (409) for an unknown patient, a blank reason (422), or
/// the store or key store being unavailable (503).
pub async fn erase(
    registry: &Registry,
    keys: &PersonalKeys,
    stored: &dyn EventStore,
    mrn: &str,
    reason: &str,
    context: CommandContext,
) -> Result<CommandOutcome, CommandError> {
    let stream = StreamId::new(PATIENT_KIND, mrn)
        .map_err(|error| CommandError::Unavailable(error.to_string()))?;
    let command = Command::ErasePersonalData(ErasePersonalData {
        reason: reason.to_owned(),
    });
    let outcome = registry
        .execute::<PatientAccount>(&stream, command, context)
        .await?;
    super::destroy_patient(keys, stored, &stream)
        .await
        .map_err(|error| CommandError::Unavailable(error.to_string()))?;
    registry.passivate(&stream);
    if let Err(error) = registry.snapshots().delete(&stream).await {
        // Not a leak: the snapshot is sealed with the destroyed key and is ignored on load.
        tracing::warn!(%error, stream_id = %stream, "snapshot of an erased patient not deleted");
    }
    tracing::info!(stream_id = %stream, version = outcome.version, "personal data erased");
    Ok(outcome)
}
