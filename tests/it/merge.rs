//! Black-box: a patient merge (issue #16 part 2) through the real binary with the process
//! managers on, over each channel: `MergePatient` over HTTP, HL7 ADT^A40 over MLLP, FHIR
//! `POST Patient/$merge`. Each checks the sum of balances is unchanged, the 409
//! `account_merged` naming the survivor, the billing and analytics views' exact figures, and
//! that the bad merges (into itself, into an unregistered account, into a merged account)
//! append nothing to either stream.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{Api, Reply};
use crate::mllp::{Sender, fixture};
use crate::server::{Server, careflow, token};
use crate::support::{TempDir, eventually};

const WITHIN: Duration = Duration::from_secs(30);
const FHIR_JSON: &str = "application/fhir+json";
/// The survivor and the merged account: PID-3 and MRG-1 of tests/fixtures/hl7/adt_a40.hl7.
const SURVIVOR: &str = "10006579";
const MERGED: &str = "10006580";

struct Site {
    _dir: TempDir,
    server: Server,
    api: Api,
    system: String,
    finance: String,
}

/// A server with the process managers on, and two accounts of facility MAIN: the merged one
/// owes 70.00 (charged 100.00, paid 30.00), the survivor 50.00.
async fn two_accounts() -> Site {
    let dir = TempDir::new();
    let mut cmd = careflow(&dir.path());
    cmd.env("CAREFLOW_PROCESS_MANAGERS", "true");
    let server = Server::spawn(cmd);
    server.wait_ready().await;
    let site = Site {
        api: Api::new(&server.base),
        system: token(&dir.path(), "system", "ehr"),
        finance: token(&dir.path(), "finance", "finance-1"),
        server,
        _dir: dir,
    };
    for mrn in [MERGED, SURVIVOR] {
        site.ok(
            mrn,
            json!({
                "type": "RegisterPatient", "name": {"family": "Duck", "given": ["Donald"]},
                "birth_date": "1924-10-10", "gender": "male", "facility": "MAIN"
            }),
        )
        .await;
        // Without coverage the eligibility process manager flags the account self-pay: wait
        // for it, so the versions compared below are settled.
        eventually(WITHIN, "the account flagged self-pay", || async {
            (site.state(mrn).await["status"] == "self_pay").then_some(())
        })
        .await;
    }
    site.ok(MERGED, charge("C1", "V-M", "100.00")).await;
    site.ok(
        MERGED,
        json!({"type": "RecordPayment", "payment_id": "P1", "amount": "30.00",
                          "method": "card"}),
    )
    .await;
    site.ok(SURVIVOR, charge("C9", "V-S", "50.00")).await;
    assert_eq!(site.state(MERGED).await["balance"], "70.00");
    assert_eq!(site.state(SURVIVOR).await["balance"], "50.00");
    site
}

fn charge(charge_id: &str, visit: &str, price: &str) -> Value {
    json!({"type": "PostCharge", "charge_id": charge_id, "encounter_id": visit,
           "code": "99213", "description": "office visit", "quantity": 1, "unit_price": price})
}

impl Site {
    async fn ok(&self, mrn: &str, body: Value) -> Value {
        self.api
            .ok(&self.system, "patient-accounts", mrn, body)
            .await
    }

    async fn state(&self, mrn: &str) -> Value {
        let reply = self
            .api
            .get(&format!("/v1/patient-accounts/{mrn}"), Some(&self.system))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body
    }

    /// Both streams' versions, to show a refused merge appended nothing.
    async fn versions(&self) -> (u64, u64) {
        let version = |state: Value| state["version"].as_u64().unwrap();
        (
            version(self.state(MERGED).await),
            version(self.state(SURVIVOR).await),
        )
    }

    async fn fhir_merge(&self, source: &str, target: &str) -> Reply {
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "source-patient-identifier", "valueIdentifier": {"value": source}},
            {"name": "target-patient-identifier", "valueIdentifier": {"value": target}},
        ]});
        self.api
            .post_raw(
                "/fhir/r4/Patient/$merge",
                Some(&self.system),
                &[("content-type", FHIR_JSON)],
                body.to_string(),
            )
            .await
    }

    /// Waits for the survivor to hold the merged account's money, then checks the accounts,
    /// the 409 for the merged MRN, and the views' exact figures.
    /// `merge_day`: the merge's business date (an A40 carries its own, EVN-2).
    async fn assert_merged(&self, merge_day: chrono::NaiveDate) {
        let survivor = eventually(WITHIN, "the survivor took the money over", || async {
            let state = self.state(SURVIVOR).await;
            (state["merged_from"] == json!([MERGED])).then_some(state)
        })
        .await;
        let merged = self.state(MERGED).await;
        assert_eq!(merged["status"], "merged", "{merged}");
        assert_eq!(merged["merged_into"], SURVIVOR);
        // The sum of balances is what it was: 70.00 + 50.00.
        assert_eq!(merged["balance"], "0.00");
        assert_eq!(survivor["balance"], "120.00", "{survivor}");
        assert_eq!(survivor["charges"].as_array().unwrap().len(), 2);
        assert_eq!(survivor["payments"][0]["payment_id"], "P1");

        // Any later command to the merged MRN: 409 account_merged naming the survivor.
        let reply = self
            .api
            .command(
                &self.system,
                "patient-accounts",
                MERGED,
                charge("C2", "V-M", "1.00"),
            )
            .await;
        assert_eq!(reply.assert_problem(409), "account_merged");
        assert_eq!(reply.body["merged_into"], SURVIVOR, "{}", reply.text);
        assert!(reply.body["title"].as_str().unwrap().contains(SURVIVOR));

        // A merge into the merged account is refused; neither stream moves.
        let before = self.versions().await;
        let reply = self
            .api
            .command(
                &self.system,
                "patient-accounts",
                SURVIVOR,
                json!({"type": "MergePatient", "into": MERGED, "reason": "wrong way"}),
            )
            .await;
        assert_eq!(
            reply.assert_problem(409),
            "merge_target_merged",
            "{}",
            reply.text
        );
        assert_eq!(self.versions().await, before);

        // Billing: the survivor holds both accounts' totals, the merged row none of them.
        let billing = eventually(WITHIN, "billing moved the totals", || async {
            let reply = self
                .api
                .get(
                    &format!("/v1/billing/accounts/{SURVIVOR}"),
                    Some(&self.finance),
                )
                .await;
            (reply.status == 200 && reply.body["account"]["balance"] == "120.00")
                .then_some(reply.body)
        })
        .await;
        let row = &billing["account"];
        assert_eq!(row["charged"], "150.00", "{billing}");
        assert_eq!(row["paid"], "30.00");
        assert_eq!(row["charge_count"], 2);
        assert_eq!(row["merged_from"], json!([MERGED]));
        let reply = self
            .api
            .get(
                &format!("/v1/billing/accounts/{MERGED}"),
                Some(&self.finance),
            )
            .await;
        let row = &reply.body["account"];
        assert_eq!(row["status"], "merged", "{}", reply.text);
        assert_eq!(
            (&row["balance"], &row["charged"]),
            (&json!("0.00"), &json!("0.00"))
        );
        let aging = self.api.get("/v1/billing/aging", Some(&self.finance)).await;
        assert_eq!(
            aging.body["totals"]["USD"]["total"], "120.00",
            "{}",
            aging.text
        );

        // Analytics: each charge and payment counted once, on the day it happened; one merge
        // on the merge's own day.
        let today = chrono::Utc::now().date_naive();
        let daily = |day: chrono::NaiveDate| async move {
            self.api
                .get(
                    &format!("/v1/analytics/daily?facility=MAIN&from={day}&to={day}"),
                    Some(&self.finance),
                )
                .await
                .body
        };
        eventually(WITHIN, "analytics counted the merge", || async {
            (daily(merge_day).await["days"][0]["merges"] == 1).then_some(())
        })
        .await;
        let daily = daily(today).await;
        let day = &daily["days"][0];
        assert_eq!(day["registrations"], 2, "{daily}");
        assert_eq!(day["charges"]["count"], 2);
        assert_eq!(day["charges"]["amounts"]["USD"], "150.00");
        assert_eq!(day["payments"]["amounts"]["USD"], "30.00");
    }
}

#[tokio::test]
async fn a_merge_over_http_moves_the_money_and_bad_merges_append_nothing() {
    let site = two_accounts().await;
    let before = site.versions().await;
    for (into, status, code) in [
        (MERGED, 422, "merge_into_self"),
        ("NOPE-1", 409, "merge_target_not_registered"),
        ("not an id", 422, "invalid_id"),
    ] {
        let reply = site
            .api
            .command(
                &site.system,
                "patient-accounts",
                MERGED,
                json!({"type": "MergePatient", "into": into, "reason": "duplicate"}),
            )
            .await;
        assert_eq!(reply.assert_problem(status), code, "{}", reply.text);
    }
    // The survivor's own command cannot be sent from outside.
    let reply = site
        .api
        .command(
            &site.system,
            "patient-accounts",
            SURVIVOR,
            json!({"type": "AbsorbMergedAccount", "from": MERGED, "reason": "x",
                        "moved": {"balance": "70.00"}}),
        )
        .await;
    assert_eq!(reply.assert_problem(422), "invalid_command");
    assert_eq!(site.versions().await, before);

    let answer = site
        .ok(
            MERGED,
            json!({"type": "MergePatient", "into": SURVIVOR,
                           "reason": "duplicate registration"}),
        )
        .await;
    assert_eq!(
        answer["events"][0]["event_type"], "PatientMerged",
        "{answer}"
    );
    site.assert_merged(chrono::Utc::now().date_naive()).await;
}

#[tokio::test]
async fn an_hl7_a40_merges_mrg1_into_pid3_and_bad_ones_are_refused_with_ae() {
    let site = two_accounts().await;
    let mut sender = Sender::connect(&site.server.mllp).await;
    let before = site.versions().await;
    // MRG-1 naming PID-3's own account: AE with the rejection's code, nothing appended.
    let into_itself = fixture(
        "adt_a40.hl7",
        &[("599200", "599201"), ("MRG|10006580", "MRG|10006579")],
    );
    let ack = sender.exchange(&into_itself).await;
    assert_eq!(ack.code(), "AE", "{ack:?}");
    assert!(
        ack.err()
            .unwrap()
            .iter()
            .any(|f| f.contains("merge_into_self")),
        "{ack:?}"
    );
    // No MRG segment: AE "required field missing", as for any missing field.
    let no_mrg = fixture(
        "adt_a40.hl7",
        &[("599200", "599202"), ("\rMRG|10006580^^^1^MR^1", "")],
    );
    let ack = sender.exchange(&no_mrg).await;
    assert_eq!(ack.code(), "AE", "{ack:?}");
    assert!(
        ack.err()
            .unwrap()
            .iter()
            .any(|f| f.contains("missing_field")),
        "{ack:?}"
    );
    assert_eq!(site.versions().await, before);

    let ack = sender.exchange(&fixture("adt_a40.hl7", &[])).await;
    assert_eq!(ack.code(), "AA", "{ack:?}");
    // The same A40 again, and a second A40 for the same merge: AA, nothing more appended.
    let merged_version = site.state(MERGED).await["version"].clone();
    let ack = sender.exchange(&fixture("adt_a40.hl7", &[])).await;
    assert_eq!(ack.code(), "AA", "{ack:?}");
    let ack = sender
        .exchange(&fixture("adt_a40.hl7", &[("599200", "599203")]))
        .await;
    assert_eq!(ack.code(), "AA", "{ack:?}");
    assert_eq!(site.state(MERGED).await["version"], merged_version);
    // EVN-2 of the fixture: the merge's business date.
    site.assert_merged(chrono::NaiveDate::from_ymd_opt(2005, 1, 10).unwrap())
        .await;
}

#[tokio::test]
async fn a_fhir_patient_merge_moves_the_money_and_bad_ones_get_an_operation_outcome() {
    let site = two_accounts().await;
    let before = site.versions().await;
    for (source, target, status) in [(MERGED, MERGED, 422), (MERGED, "NOPE-1", 409)] {
        let reply = site.fhir_merge(source, target).await;
        assert_eq!(reply.status, status, "{}", reply.text);
        assert_eq!(
            reply.body["resourceType"], "OperationOutcome",
            "{}",
            reply.text
        );
    }
    let reply = site
        .api
        .post_raw(
            "/fhir/r4/Patient/$merge",
            Some(&site.system),
            &[("content-type", FHIR_JSON)],
            json!({"resourceType": "Parameters", "parameter": [
                {"name": "target-patient-identifier", "valueIdentifier": {"value": SURVIVOR}}
            ]})
            .to_string(),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert!(
        reply.text.contains("source-patient-identifier"),
        "{}",
        reply.text
    );
    assert_eq!(site.versions().await, before);

    let reply = site.fhir_merge(MERGED, SURVIVOR).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["resourceType"], "Parameters", "{}", reply.text);
    let outcome = &reply.body["parameter"][1]["resource"];
    assert!(outcome.to_string().contains("PatientMerged"), "{outcome}");
    site.assert_merged(chrono::Utc::now().date_naive()).await;

    // The merged patient again: the OperationOutcome names the survivor.
    let reply = site.fhir_merge(MERGED, SURVIVOR).await;
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert!(reply.text.contains(SURVIVOR), "{}", reply.text);
}
