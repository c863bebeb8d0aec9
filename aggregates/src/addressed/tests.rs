use super::*;
use crate::patient_account::ActivateAccount;
use crate::purchase::EscalateApproval;

#[test]
fn the_target_is_of_the_commands_own_aggregate() {
    let id = Uuid::from_u128(7);
    let account = AnyCommand::PatientAccount(ActivateAccount {}.into());
    let addressed = AddressedCommand::new("MRN-1", id, account.clone()).unwrap();
    assert_eq!(addressed.target().as_str(), "patient_account-MRN-1");
    assert_eq!(addressed.command_id(), id);
    assert_eq!(addressed.command(), &account);
    assert_eq!(addressed.command().name(), "ActivateAccount");

    let purchase = AnyCommand::Purchase(EscalateApproval {}.into());
    let addressed = AddressedCommand::new("REQ-9", id, purchase).unwrap();
    assert_eq!(addressed.target().as_str(), "purchase-REQ-9");
}

#[test]
fn an_id_outside_the_id_rule_addresses_nothing() {
    let command = AnyCommand::PatientAccount(ActivateAccount {}.into());
    assert_eq!(
        AddressedCommand::new("MRN 1", Uuid::nil(), command),
        Err(StreamIdError::IdCharacter(' '))
    );
}
