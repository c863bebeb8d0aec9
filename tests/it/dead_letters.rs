//! The dead-letter list: its life cycle on PostgreSQL (the SQLite one is unit-tested in
//! src/dead_letters/tests.rs), and the admin routes of the real binary. Rows are put in the
//! list the way a consumer does, through `careflow::operations::dead_letters`, on the server's own file.

use careflow::operations::dead_letters::{DeadLetterStatus, DeadLetters, NewDeadLetter};
use serde_json::json;
use uuid::Uuid;

use crate::api::Api;
use crate::server::{Server, token};
use crate::support::{TempDir, drop_schema, postgres_url, unique_schema};

fn failure(key: &str, item: &str) -> NewDeadLetter {
    NewDeadLetter {
        source: "odoo".to_owned(),
        key: key.to_owned(),
        event_id: Uuid::new_v4(),
        position: 3,
        payload: json!({"id": item, "action": "upsert_partner", "key": key}),
        error: "odoo.exceptions.ValidationError: The VAT number is not valid".to_owned(),
        attempts: 1,
    }
}

#[tokio::test]
async fn the_life_cycle_holds_on_postgres() {
    let Some(url) = postgres_url().await else {
        return;
    };
    let schema = unique_schema("dead_letters");
    let list = DeadLetters::open_postgres(&url, &schema).await.unwrap();
    let head = list
        .record(failure("partner_M1", "a/0"), DeadLetterStatus::Dead)
        .await
        .unwrap();
    let mut parked_item = failure("partner_M1", "b/0");
    let parked = list
        .record(parked_item.clone(), DeadLetterStatus::Parked)
        .await
        .unwrap();
    // Recorded again after a restart: the same row.
    parked_item.attempts = 0;
    assert_eq!(
        list.record(parked_item, DeadLetterStatus::Parked)
            .await
            .unwrap(),
        parked
    );
    assert_eq!(
        list.open_keys("odoo").await.unwrap(),
        vec!["partner_M1".to_owned()]
    );
    let order: Vec<i64> = list
        .open_for_key("odoo", "partner_M1")
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(order, vec![head, parked]);

    list.request_retry(head).await.unwrap();
    assert_eq!(list.retry_requests("odoo").await.unwrap()[0].id, head);
    list.failed_again(head, "still refused").await.unwrap();
    let row = list.get(head).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.attempts, row.error.as_str()),
        (DeadLetterStatus::Dead, 2, "still refused")
    );
    list.discard(head, "fixed by hand").await.unwrap();
    list.resolve(parked).await.unwrap();
    assert!(list.list(Some("odoo"), false).await.unwrap().is_empty());
    let closed = list.list(Some("odoo"), true).await.unwrap();
    assert_eq!(
        closed
            .iter()
            .map(|r| (r.id, r.status, r.discard_reason.clone()))
            .collect::<Vec<_>>(),
        vec![
            (
                head,
                DeadLetterStatus::Discarded,
                Some("fixed by hand".to_owned())
            ),
            (parked, DeadLetterStatus::Resolved, None),
        ]
    );
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn admins_list_retry_and_discard_over_http_and_discards_are_history() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    let admin = token(&dir.path(), "admin", "ops-oliver");
    let finance = token(&dir.path(), "finance", "ar-team");
    let auditor = token(&dir.path(), "auditor", "compliance");

    let empty = api.get("/v1/dead-letters", Some(&admin)).await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(empty.body["dead_letters"], json!([]));
    api.get("/v1/dead-letters", Some(&finance))
        .await
        .assert_problem(403);
    api.get("/v1/dead-letters", None).await.assert_problem(401);

    // What a consumer does when Odoo refuses a record.
    let list = DeadLetters::open_sqlite(&dir.path().join("data").join("dead_letters.db")).unwrap();
    let refused = failure("partner_M7", "e/0");
    let id = list
        .record(refused.clone(), DeadLetterStatus::Dead)
        .await
        .unwrap();
    let other = list
        .record(failure("product_I1", "f/0"), DeadLetterStatus::Dead)
        .await
        .unwrap();

    let listed = api.get("/v1/dead-letters?source=odoo", Some(&admin)).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let rows = listed.body["dead_letters"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{}", listed.text);
    assert_eq!(rows[0]["id"], id);
    assert_eq!(rows[0]["key"], "partner_M7");
    assert_eq!(rows[0]["status"], "dead");
    assert_eq!(rows[0]["attempts"], 1);
    assert_eq!(rows[0]["event_id"], refused.event_id.to_string());
    assert_eq!(rows[0]["payload"]["action"], "upsert_partner");
    assert_eq!(rows[0]["error"], refused.error);
    assert!(rows[0]["first_failure"].is_string() && rows[0]["last_failure"].is_string());
    let none = api
        .get("/v1/dead-letters?source=webhook", Some(&admin))
        .await;
    assert_eq!(none.body["dead_letters"], json!([]));

    let retried = api
        .post_raw(
            &format!("/v1/dead-letters/{id}/retry"),
            Some(&admin),
            &[],
            String::new(),
        )
        .await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    assert_eq!(retried.body["status"], "retry_requested");
    assert_eq!(list.retry_requests("odoo").await.unwrap()[0].id, id);

    let json = [("content-type", "application/json")];
    let discard = format!("/v1/dead-letters/{other}/discard");
    api.post_raw(&discard, Some(&admin), &json, json!({}).to_string())
        .await
        .assert_problem(422);
    api.post_raw(
        &discard,
        Some(&admin),
        &json,
        json!({"reason": " "}).to_string(),
    )
    .await
    .assert_problem(422);
    api.post_raw(
        &discard,
        Some(&finance),
        &json,
        json!({"reason": "x"}).to_string(),
    )
    .await
    .assert_problem(403);
    let discarded = api
        .post_raw(
            &discard,
            Some(&admin),
            &json,
            json!({"reason": "product archived in Odoo on purpose"}).to_string(),
        )
        .await;
    assert_eq!(discarded.status, 200, "{}", discarded.text);
    assert_eq!(discarded.body["status"], "discarded");
    assert_eq!(
        discarded.body["discard_reason"],
        "product archived in Odoo on purpose"
    );
    let again = api
        .post_raw(
            &discard,
            Some(&admin),
            &json,
            json!({"reason": "twice"}).to_string(),
        )
        .await;
    assert_eq!(again.assert_problem(409), "dead_letter_closed");
    api.post_raw(
        "/v1/dead-letters/999999/retry",
        Some(&admin),
        &[],
        String::new(),
    )
    .await
    .assert_problem(404);

    // Only open rows by default; all of them on request.
    let open = api.get("/v1/dead-letters", Some(&admin)).await;
    assert_eq!(open.body["dead_letters"].as_array().unwrap().len(), 1);
    let all = api.get("/v1/dead-letters?all=true", Some(&admin)).await;
    assert_eq!(all.body["dead_letters"].as_array().unwrap().len(), 2);

    // The decisions are in the log, by the operator, with the reason; the refused discard
    // left nothing.
    let events = api.all_events(&auditor).await;
    let decisions: Vec<_> = events
        .iter()
        .filter(|e| e.stream_id.to_string() == "dead_letters-odoo")
        .map(|e| {
            (
                e.event_type.clone(),
                e.metadata.principal.clone(),
                e.data["dead_letter_id"].clone(),
                e.data["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        vec![
            (
                "DeadLetterRetryRequested".to_owned(),
                "ops-oliver".to_owned(),
                json!(id),
                json!(null)
            ),
            (
                "DeadLetterDiscarded".to_owned(),
                "ops-oliver".to_owned(),
                json!(other),
                json!("product archived in Odoo on purpose")
            ),
        ]
    );
    server.terminate().await;
}
