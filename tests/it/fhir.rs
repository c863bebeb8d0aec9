//! Black-box: the FHIR R4 adapter through the real binary. The official R4 examples parse and
//! map to exact events and render back; a transaction Bundle is all or nothing; broken
//! resources are refused with an OperationOutcome and append nothing.

use careflow_aggregates::RecordedEvent;
use serde_json::{Value, json};

use crate::api::{Api, Reply, assert_log_is_sound};
use crate::server::{Server, token};
use crate::support::TempDir;

const FHIR_JSON: &str = "application/fhir+json";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/fhir/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

async fn post(api: &Api, token: &str, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("content-type", FHIR_JSON)];
    all.extend_from_slice(headers);
    api.post_raw(
        &format!("/fhir/r4{path}"),
        Some(token),
        &all,
        body.to_string(),
    )
    .await
}

/// An OperationOutcome refusal with `status` and issue `code`; returns the issue.
#[track_caller]
fn assert_outcome(reply: &Reply, status: u16, code: &str) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(
        reply.header("content-type"),
        Some(FHIR_JSON),
        "{}",
        reply.text
    );
    assert_eq!(
        reply.body["resourceType"], "OperationOutcome",
        "{}",
        reply.text
    );
    let issue = reply.body["issue"][0].clone();
    assert_eq!(issue["severity"], "error", "{}", reply.text);
    assert_eq!(issue["code"], code, "{}", reply.text);
    issue
}

async fn head(api: &Api, auditor: &str) -> u64 {
    api.all_events(auditor)
        .await
        .last()
        .map_or(0, |e| e.position)
}

async fn stream_events(api: &Api, auditor: &str, stream: &str) -> Vec<RecordedEvent> {
    api.all_events(auditor)
        .await
        .into_iter()
        .filter(|e| e.stream_id.as_str() == stream)
        .collect()
}

fn types(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

fn register(family: &str, facility: &str) -> Value {
    json!({
        "type": "RegisterPatient",
        "name": {"family": family, "given": ["Test"]},
        "birth_date": "1970-01-01", "gender": "other", "facility": facility
    })
}

/// The metric sample `name{labels}` from a /metrics page (0 when absent).
fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name_and_labels))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn official_r4_examples_become_commands_and_render_back() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    let auditor = token(&dir.path(), "auditor", "compliance");

    // The CapabilityStatement needs no token and lists every resource careflow takes.
    let meta = api.get("/fhir/r4/metadata", None).await;
    assert_eq!(meta.status, 200, "{}", meta.text);
    assert_eq!(meta.header("content-type"), Some(FHIR_JSON));
    assert_eq!(meta.body["resourceType"], "CapabilityStatement");
    assert_eq!(meta.body["fhirVersion"], "4.0.1");
    let rest = &meta.body["rest"][0];
    let listed: Vec<&str> = rest["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "Patient",
            "Encounter",
            "Coverage",
            "ChargeItem",
            "SupplyDelivery",
            "CoverageEligibilityResponse",
            "Claim",
            "ClaimResponse"
        ]
    );
    assert_eq!(rest["interaction"][0]["code"], "transaction");

    // Patient: the MR identifier is the MRN; RegisterPatient.
    let reply = post(
        &api,
        &ehr,
        "/Patient",
        &fixture("patient-example.json"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(
        reply.header("location"),
        Some("/fhir/r4/Patient/12345/_history/1")
    );
    assert_eq!(reply.body["resourceType"], "OperationOutcome");
    let events = stream_events(&api, &auditor, "patient_account-12345").await;
    assert_eq!(types(&events), ["PatientRegistered"]);
    let data = &events[0].data;
    assert_eq!(data["facility"], "1");
    assert_eq!(data["gender"], "male");
    assert_eq!(
        data["personal"],
        json!({"name": {"family": "Chalmers", "given": ["Peter", "James"]}, "birth_date": "1974-12-25",
            "address": {"line": ["534 Erewhon St"], "city": "PleasantVille", "postal_code": "3999"}})
    );
    assert_eq!(events[0].metadata.source, "fhir");
    assert_eq!(events[0].metadata.principal, "ehr");

    // ... and reads back as a FHIR Patient.
    let read = api.get("/fhir/r4/Patient/12345", Some(&ehr)).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.header("content-type"), Some(FHIR_JSON));
    assert_eq!(read.header("etag"), Some("W/\"1\""));
    let patient = &read.body;
    assert_eq!(patient["resourceType"], "Patient");
    assert_eq!(patient["id"], "12345");
    assert_eq!(patient["meta"]["versionId"], "1");
    assert_eq!(patient["identifier"][0]["value"], "12345");
    assert_eq!(patient["identifier"][0]["type"]["coding"][0]["code"], "MR");
    assert_eq!(patient["name"][0]["family"], "Chalmers");
    assert_eq!(patient["name"][0]["given"], json!(["Peter", "James"]));
    assert_eq!(patient["gender"], "male");
    assert_eq!(patient["birthDate"], "1974-12-25");
    assert_eq!(
        patient["managingOrganization"]["reference"],
        "Organization/1"
    );
    assert_eq!(patient["active"], true);

    // The other examples name patients `example`, `4` and `pat1`: registered over /v1.
    for (mrn, facility) in [("example", "MAIN"), ("4", "MAIN"), ("pat1", "EAST")] {
        api.ok(&ehr, "patient-accounts", mrn, register("Example", facility))
            .await;
    }

    // Encounter `in-progress`, new: scheduled, then checked in; the facility is the account's.
    let reply = post(
        &api,
        &ehr,
        "/Encounter",
        &fixture("encounter-example.json"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(
        reply.header("location"),
        Some("/fhir/r4/Encounter/example/_history/2")
    );
    let events = stream_events(&api, &auditor, "encounter-example").await;
    assert_eq!(types(&events), ["EncounterScheduled", "PatientArrived"]);
    let scheduled = &events[0].data;
    assert_eq!(scheduled["account_id"], "example");
    assert_eq!(scheduled["facility"], "MAIN");
    assert_eq!(scheduled["department"], "general");
    assert_eq!(scheduled["class"], "inpatient");
    // The same resource again changes nothing.
    let again = post(
        &api,
        &ehr,
        "/Encounter",
        &fixture("encounter-example.json"),
        &[],
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(
        stream_events(&api, &auditor, "encounter-example")
            .await
            .len(),
        2
    );

    let read = api.get("/fhir/r4/Encounter/example", Some(&auditor)).await;
    assert_eq!(read.status, 200, "{}", read.text);
    let encounter = &read.body;
    assert_eq!(encounter["resourceType"], "Encounter");
    assert_eq!(encounter["id"], "example");
    assert_eq!(encounter["status"], "arrived");
    assert_eq!(encounter["class"]["code"], "IMP");
    assert_eq!(encounter["subject"]["reference"], "Patient/example");
    assert_eq!(
        encounter["serviceProvider"]["reference"],
        "Organization/MAIN"
    );
    assert_eq!(encounter["identifier"][0]["value"], "example");
    assert_eq!(
        encounter["identifier"][0]["type"]["coding"][0]["code"],
        "VN"
    );
    assert_eq!(encounter["meta"]["versionId"], "2");

    // Coverage: the account's coverage (payer Organization/2, plan class B37FC).
    let reply = post(
        &api,
        &ehr,
        "/Coverage",
        &fixture("coverage-example.json"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let events = stream_events(&api, &auditor, "patient_account-4").await;
    assert_eq!(types(&events), ["PatientRegistered", "DemographicsUpdated"]);
    assert_eq!(
        events[1].data["coverage"],
        json!({"payer_id": "2", "plan": "B37FC"})
    );
    assert_eq!(events[1].data["personal"]["member_id"], "12345");

    // ChargeItem: PostCharge of the total price (40 EUR for 1).
    let reply = post(
        &api,
        &ehr,
        "/ChargeItem",
        &fixture("chargeitem-example.json"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let events = stream_events(&api, &auditor, "patient_account-example").await;
    assert_eq!(types(&events), ["PatientRegistered", "ChargePosted"]);
    assert_eq!(
        events[1].data,
        json!({
            "charge_id": "654321", "encounter_id": "example", "code": "01510",
            "description": "Zusatzpauschale für Beobachtung nach diagnostischer Koronarangiografie",
            "quantity": 1, "unit_price": "40.00", "amount": "40.00", "currency": "EUR"
        })
    );

    // SupplyDelivery based on SupplyRequest/simpleorder: goods received on that purchase.
    api.ok(
        &ehr,
        "purchases",
        "simpleorder",
        json!({
            "type": "RequestPurchase", "requester": "ward-4", "facility": "MAIN",
            "vendor_id": "Vendor1", "reason": "restock",
            "lines": [{"item_id": "BlueTubes", "quantity": 10, "unit_price": "0.50"}]
        }),
    )
    .await;
    api.ok(
        &ehr,
        "purchases",
        "simpleorder",
        json!({"type": "ApprovePurchase", "approver": "head-nurse"}),
    )
    .await;
    api.ok(
        &ehr,
        "purchases",
        "simpleorder",
        json!({"type": "RecordPurchaseOrder", "odoo_order_ref": "PO0001"}),
    )
    .await;
    let reply = post(
        &api,
        &ehr,
        "/SupplyDelivery",
        &fixture("supplydelivery-example.json"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let events = stream_events(&api, &auditor, "purchase-simpleorder").await;
    assert_eq!(
        types(&events),
        [
            "PurchaseRequested",
            "PurchaseApproved",
            "PurchaseOrderPlaced",
            "GoodsReceived"
        ]
    );
    assert_eq!(events[3].data["receipt_id"], "Order10284");
    assert_eq!(events[3].data["lines"][0]["item_id"], "BlueTubes");
    assert_eq!(events[3].data["lines"][0]["quantity"], 10);

    // SupplyDelivery with careflow's encounter extension: supplies used on the visit.
    let usage = json!({
        "resourceType": "SupplyDelivery",
        "status": "completed",
        "extension": [{
            "url": "https://careflow.example/fhir/StructureDefinition/supply-delivery-encounter",
            "valueReference": {"reference": "Encounter/example"}
        }],
        "suppliedItem": {"quantity": {"value": 3}, "itemCodeableConcept": {"coding": [{"code": "GAUZE-10"}]}}
    });
    let reply = post(&api, &ehr, "/SupplyDelivery", &usage, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let events = stream_events(&api, &auditor, "encounter-example").await;
    assert_eq!(events[2].event_type, "SuppliesConsumed");
    assert_eq!(events[2].data["item_id"], "GAUZE-10");
    assert_eq!(events[2].data["quantity"], 3);

    // CoverageEligibilityResponse: inforce true, eligibility verified by payer 2.
    let reply = post(
        &api,
        &ehr,
        "/CoverageEligibilityResponse",
        &fixture("coverageeligibilityresponse-example.json"),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let events = stream_events(&api, &auditor, "patient_account-pat1").await;
    assert_eq!(types(&events), ["PatientRegistered", "EligibilityVerified"]);
    assert_eq!(
        events[1].data,
        json!({"payer_id": "2", "reference": "881234"})
    );

    // Every FHIR write was a message of the `fhir` interface, and all were answered.
    let metrics = api.get("/metrics", None).await.text;
    assert_eq!(
        sample(
            &metrics,
            "careflow_interface_messages_total{interface=\"fhir\",outcome=\"received\"}"
        ),
        8.0
    );
    assert_eq!(
        sample(
            &metrics,
            "careflow_interface_messages_total{interface=\"fhir\",outcome=\"acked\"}"
        ),
        8.0
    );
    assert_eq!(
        sample(&metrics, "careflow_interface_in_flight{interface=\"fhir\"}"),
        0.0
    );
    assert_eq!(
        sample(
            &metrics,
            "careflow_interface_oldest_unacked_seconds{interface=\"fhir\"}"
        ),
        0.0
    );
    assert_log_is_sound(&api.all_events(&auditor).await);
}

pub fn bundle_entries(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

pub fn patient_entry(mrn: &str) -> Value {
    json!({
        "fullUrl": format!("urn:uuid:patient-{mrn}"),
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}, "value": mrn}],
            "name": [{"family": "Bundle", "given": ["Ann"]}],
            "gender": "female",
            "birthDate": "1990-02-03",
            "managingOrganization": {"reference": "Organization/MAIN"}
        },
        "request": {"method": "POST", "url": "Patient"}
    })
}

fn charge_entry(subject: &str, visit: &str, charge_id: &str) -> Value {
    json!({
        "resource": {
            "resourceType": "ChargeItem",
            "identifier": [{"value": charge_id}],
            "status": "billable",
            "code": {"coding": [{"code": "99213", "display": "office visit"}]},
            "subject": {"reference": subject},
            "context": {"reference": format!("Encounter/{visit}")},
            "quantity": {"value": 2},
            "priceOverride": {"value": 30.5, "currency": "USD"}
        },
        "request": {"method": "POST", "url": "ChargeItem"}
    })
}

#[tokio::test]
async fn a_transaction_bundle_appends_all_of_its_entries_or_none() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    let auditor = token(&dir.path(), "auditor", "compliance");

    // A patient, their coverage, their visit and a charge, one unit; later entries refer to
    // earlier ones by fullUrl.
    let bundle = bundle_entries(vec![
        patient_entry("B-1"),
        json!({"resource": {
            "resourceType": "Coverage", "status": "active",
            "beneficiary": {"reference": "urn:uuid:patient-B-1"},
            "payor": [{"reference": "Organization/ACME"}], "subscriberId": "MEM-1"
        }, "request": {"method": "POST", "url": "Coverage"}}),
        json!({"fullUrl": "urn:uuid:visit-1", "resource": {
            "resourceType": "Encounter",
            "identifier": [{"type": {"coding": [{"code": "VN"}]}, "value": "V-B1"}],
            "status": "arrived",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "urn:uuid:patient-B-1"},
            "serviceType": {"text": "cardiology"},
            "period": {"start": "2026-11-25T09:00:00Z"}
        }, "request": {"method": "POST", "url": "Encounter"}}),
        charge_entry("urn:uuid:patient-B-1", "V-B1", "CH-1"),
    ]);
    let before = head(&api, &auditor).await;
    let reply = post(&api, &ehr, "", &bundle, &[("X-Correlation-Id", "bundle-1")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["resourceType"], "Bundle");
    assert_eq!(reply.body["type"], "transaction-response");
    let entries = reply.body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    assert_eq!(entries[0]["response"]["location"], "Patient/B-1");
    assert_eq!(entries[1]["response"]["status"], "200 OK");
    assert_eq!(entries[2]["response"]["status"], "201 Created");
    assert_eq!(entries[2]["response"]["location"], "Encounter/V-B1");

    let all = api.all_events(&auditor).await;
    let new: Vec<&RecordedEvent> = all.iter().filter(|e| e.position > before).collect();
    let got: Vec<(&str, &str)> = new
        .iter()
        .map(|e| (e.stream_id.as_str(), e.event_type.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("patient_account-B-1", "PatientRegistered"),
            ("patient_account-B-1", "DemographicsUpdated"),
            ("encounter-V-B1", "EncounterScheduled"),
            ("encounter-V-B1", "PatientArrived"),
            ("patient_account-B-1", "ChargePosted"),
        ]
    );
    assert!(new.iter().all(|e| e.metadata.source == "fhir"
        && e.metadata.correlation_id == "bundle-1"
        && e.metadata.principal == "ehr"));
    assert_eq!(new[2].data["department"], "cardiology");
    assert_eq!(new[2].data["class"], "outpatient");
    assert_eq!(new[2].data["account_id"], "B-1");
    assert_eq!(new[4].data["unit_price"], "15.25");
    assert_eq!(new[4].data["quantity"], 2);
    assert_eq!(new[4].data["encounter_id"], "V-B1");
    let after_first = new.last().unwrap().position;

    // One bad entry (the charge CH-1 was posted already: 409): nothing of the Bundle lands,
    // not even the new patient of entry 0.
    let bad = bundle_entries(vec![
        patient_entry("B-2"),
        charge_entry("Patient/B-1", "V-B1", "CH-1"),
    ]);
    let reply = post(&api, &ehr, "", &bad, &[]).await;
    let issue = assert_outcome(&reply, 409, "business-rule");
    assert_eq!(issue["expression"], json!(["Bundle.entry[1]"]));
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("Bundle.entry[1]: "),
        "{issue}"
    );
    assert_eq!(
        head(&api, &auditor).await,
        after_first,
        "a refused Bundle appended"
    );
    let missing = api.get("/fhir/r4/Patient/B-2", Some(&ehr)).await;
    assert_outcome(&missing, 404, "not-found");

    // An entry careflow cannot map: 422 naming the element, nothing appended.
    let mut unmappable = patient_entry("B-3");
    unmappable["resource"]["birthDate"] = json!("1990");
    let reply = post(
        &api,
        &ehr,
        "",
        &bundle_entries(vec![patient_entry("B-4"), unmappable]),
        &[],
    )
    .await;
    let issue = assert_outcome(&reply, 422, "value");
    assert_eq!(
        issue["expression"],
        json!(["Bundle.entry[1].resource.Patient.birthDate"])
    );
    // An entry that is not a resource careflow takes: 400.
    let other = json!({"resource": {"resourceType": "Observation", "status": "final"}});
    let reply = post(
        &api,
        &ehr,
        "",
        &bundle_entries(vec![patient_entry("B-5"), other]),
        &[],
    )
    .await;
    let issue = assert_outcome(&reply, 400, "not-supported");
    assert_eq!(issue["expression"], json!(["Bundle.entry[1]"]));
    // A batch is not a transaction.
    let mut batch = bundle_entries(vec![patient_entry("B-6")]);
    batch["type"] = json!("batch");
    assert_outcome(&post(&api, &ehr, "", &batch, &[]).await, 422, "value");
    assert_eq!(
        head(&api, &auditor).await,
        after_first,
        "a refused Bundle appended"
    );

    // A retried Bundle (same Idempotency-Key and body) answers the first answer again.
    let keyed = bundle_entries(vec![
        patient_entry("B-7"),
        charge_entry("urn:uuid:patient-B-7", "V-B7", "CH-7"),
    ]);
    let first = post(&api, &ehr, "", &keyed, &[("Idempotency-Key", "bundle-7")]).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let after_keyed = head(&api, &auditor).await;
    assert_eq!(after_keyed, after_first + 2);
    let second = post(&api, &ehr, "", &keyed, &[("Idempotency-Key", "bundle-7")]).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body, first.body);
    assert_eq!(head(&api, &auditor).await, after_keyed);

    // Actors decide on the Bundle's result afterwards (the registry forgot their old state).
    let reply = api
        .command(
            &ehr,
            "encounters",
            "V-B1",
            json!({"type": "CompleteEncounter"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["version"], 3);
    assert_log_is_sound(&api.all_events(&auditor).await);
}

#[tokio::test]
async fn broken_resources_get_an_operation_outcome_and_append_nothing() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    let auditor = token(&dir.path(), "auditor", "compliance");
    let patient = fixture("patient-example.json");
    let before = head(&api, &auditor).await;

    // Not JSON.
    let reply = api
        .post_raw(
            "/fhir/r4/Patient",
            Some(&ehr),
            &[("content-type", FHIR_JSON)],
            "{\"resourceType\": ".into(),
        )
        .await;
    assert_outcome(&reply, 400, "structure");
    // Another resource type than the route's.
    let reply = post(
        &api,
        &ehr,
        "/Patient",
        &fixture("encounter-example.json"),
        &[],
    )
    .await;
    assert_outcome(&reply, 400, "not-supported");
    // An element of the wrong JSON type.
    let mut wrong = patient.clone();
    wrong["gender"] = json!(7);
    assert_outcome(
        &post(&api, &ehr, "/Patient", &wrong, &[]).await,
        400,
        "structure",
    );
    // No MRN: no MR identifier and no id.
    let mut anonymous = patient.clone();
    anonymous["identifier"] = json!([]);
    anonymous.as_object_mut().unwrap().remove("id");
    let issue = assert_outcome(
        &post(&api, &ehr, "/Patient", &anonymous, &[]).await,
        422,
        "required",
    );
    assert_eq!(issue["expression"], json!(["Patient.identifier"]));
    // A birth date careflow cannot use.
    let mut partial = patient.clone();
    partial["birthDate"] = json!("1974-12");
    let issue = assert_outcome(
        &post(&api, &ehr, "/Patient", &partial, &[]).await,
        422,
        "value",
    );
    assert_eq!(issue["expression"], json!(["Patient.birthDate"]));
    // A ChargeItem without a price.
    let mut unpriced = fixture("chargeitem-example.json");
    unpriced.as_object_mut().unwrap().remove("priceOverride");
    let issue = assert_outcome(
        &post(&api, &ehr, "/ChargeItem", &unpriced, &[]).await,
        422,
        "required",
    );
    assert_eq!(issue["expression"], json!(["ChargeItem.priceOverride"]));
    // An Encounter whose status careflow does not map.
    let mut triaged = fixture("encounter-example.json");
    triaged["status"] = json!("entered-in-error");
    assert_outcome(
        &post(&api, &ehr, "/Encounter", &triaged, &[]).await,
        422,
        "value",
    );
    // No token, and a role that may not send commands.
    let reply = api
        .post_raw(
            "/fhir/r4/Patient",
            None,
            &[("content-type", FHIR_JSON)],
            patient.to_string(),
        )
        .await;
    assert_outcome(&reply, 401, "login");
    assert!(reply.header("www-authenticate").is_some());
    assert_outcome(
        &post(&api, &auditor, "/Patient", &patient, &[]).await,
        403,
        "forbidden",
    );
    // A route careflow does not serve.
    assert_outcome(
        &api.get("/fhir/r4/Observation/1", Some(&ehr)).await,
        404,
        "not-supported",
    );
    assert_outcome(
        &api.get("/fhir/r4/Patient/nobody", Some(&ehr)).await,
        404,
        "not-found",
    );
    assert_eq!(
        head(&api, &auditor).await,
        before,
        "a refused resource appended"
    );

    // Registered once; the second registration is the domain's 409.
    assert_eq!(
        post(&api, &ehr, "/Patient", &patient, &[]).await.status,
        201
    );
    let issue = assert_outcome(
        &post(&api, &ehr, "/Patient", &patient, &[]).await,
        409,
        "business-rule",
    );
    assert_eq!(issue["details"]["coding"][0]["code"], "already_registered");

    // PUT updates the registered patient (DemographicsUpdated) and creates a new one.
    let mut renamed = patient.clone();
    renamed["id"] = json!("12345");
    renamed["name"][0]["family"] = json!("Chalmers-Windsor");
    let put = |id: &str, body: &Value| {
        let api = api.clone();
        let ehr = ehr.clone();
        let (id, body) = (id.to_owned(), body.to_string());
        async move {
            api.send(
                reqwest::Method::PUT,
                &format!("/fhir/r4/Patient/{id}"),
                Some(&ehr),
                &[("content-type", FHIR_JSON)],
                Some(body),
            )
            .await
            .unwrap()
        }
    };
    let reply = put("12345", &renamed).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let events = stream_events(&api, &auditor, "patient_account-12345").await;
    assert_eq!(types(&events), ["PatientRegistered", "DemographicsUpdated"]);
    assert_eq!(
        events[1].data["personal"]["name"]["family"],
        "Chalmers-Windsor"
    );
    let read = api.get("/fhir/r4/Patient/12345", Some(&ehr)).await;
    assert_eq!(read.body["name"][0]["family"], "Chalmers-Windsor");
    // The URL's id must be the resource's.
    let issue = assert_outcome(&put("99999", &renamed).await, 422, "value");
    assert_eq!(issue["expression"], json!(["Patient.id"]));
    let mut fresh = patient.clone();
    fresh["id"] = json!("P-NEW");
    fresh["identifier"] = json!([]);
    let reply = put("P-NEW", &fresh).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let events = stream_events(&api, &auditor, "patient_account-P-NEW").await;
    assert_eq!(types(&events), ["PatientRegistered"]);

    let metrics = api.get("/metrics", None).await.text;
    assert_eq!(
        sample(
            &metrics,
            "careflow_interface_messages_total{interface=\"fhir\",outcome=\"nacked_structure\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            "careflow_interface_messages_total{interface=\"fhir\",outcome=\"nacked_required\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            "careflow_interface_messages_total{interface=\"fhir\",outcome=\"nacked_business-rule\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&metrics, "careflow_interface_in_flight{interface=\"fhir\"}"),
        0.0
    );
}

#[tokio::test]
async fn patient_address_becomes_the_billing_address_and_a_country_careflow_cannot_keep_is_refused()
{
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let ehr = token(&dir.path(), "system", "ehr");
    let auditor = token(&dir.path(), "auditor", "compliance");
    let mut patient = fixture("patient-example.json");
    // An old address and a billing one besides the fixture's home address: billing wins.
    let mut addresses = patient["address"].as_array().unwrap().clone();
    addresses.push(json!({"use": "old", "line": ["1 Gone Rd"], "city": "Elsewhere"}));
    addresses.push(
        json!({"use": "billing", "line": ["PO Box 12"], "city": "Melbourne",
        "postalCode": "3000", "country": "au"}),
    );
    patient["address"] = json!(addresses);

    // A country code careflow cannot keep (alpha-3): refused, nothing appended.
    let mut alpha3 = patient.clone();
    alpha3["address"][2]["country"] = json!("AUS");
    let before = head(&api, &auditor).await;
    assert_outcome(
        &post(&api, &ehr, "/Patient", &alpha3, &[]).await,
        422,
        "invalid",
    );
    assert_eq!(
        head(&api, &auditor).await,
        before,
        "a refused Patient appended"
    );

    assert_eq!(
        post(&api, &ehr, "/Patient", &patient, &[]).await.status,
        201
    );
    let mrn = patient["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"]["coding"][0]["code"] == "MR")
        .and_then(|i| i["value"].as_str())
        .unwrap()
        .to_owned();
    let state = api
        .get(&format!("/v1/patient-accounts/{mrn}"), Some(&ehr))
        .await;
    assert_eq!(state.status, 200, "{}", state.text);
    assert_eq!(
        state.body["personal"]["address"],
        json!({"line": ["PO Box 12"], "city": "Melbourne", "postal_code": "3000", "country": "AU"})
    );
}
