//! The dead-letter list's rules on SQLite; tests/it/dead_letters.rs runs the same life cycle on
//! PostgreSQL and through HTTP.

use serde_json::json;
use uuid::Uuid;

use super::*;

fn list() -> (tempfile::TempDir, DeadLetters) {
    let dir = tempfile::tempdir().expect("temp dir");
    let list = DeadLetters::open_sqlite(&dir.path().join("dead_letters.db")).expect("open");
    (dir, list)
}

fn failure(key: &str, item: &str, event_id: Uuid) -> NewDeadLetter {
    NewDeadLetter {
        source: "odoo".to_owned(),
        key: key.to_owned(),
        event_id,
        position: 7,
        payload: json!({"id": item, "action": "upsert_partner"}),
        error: "ValidationError: bad vat".to_owned(),
        attempts: 1,
    }
}

#[tokio::test]
async fn recording_an_item_twice_keeps_one_row_with_the_newest_error() {
    let (_dir, list) = list();
    let event = Uuid::new_v4();
    let first = list
        .record(failure("partner_M1", "e/0", event), DeadLetterStatus::Dead)
        .await
        .unwrap();
    let mut again = failure("partner_M1", "e/0", event);
    again.error = "ValidationError: still bad".to_owned();
    again.attempts = 2;
    let second = list.record(again, DeadLetterStatus::Dead).await.unwrap();
    assert_eq!(first, second);
    let rows = list.list(None, false).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].error, "ValidationError: still bad");
    assert_eq!(rows[0].attempts, 2);
    assert_eq!(rows[0].payload["id"], "e/0");
    assert_eq!(rows[0].position, 7);
    assert_eq!(rows[0].event_id, event);
    assert!(rows[0].first_failure <= rows[0].last_failure);

    // A second item of the same event and key is a row of its own.
    list.record(
        failure("partner_M1", "e/1", event),
        DeadLetterStatus::Parked,
    )
    .await
    .unwrap();
    assert_eq!(list.list(None, false).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_retry_is_asked_then_resolved_and_a_closed_row_stays_closed() {
    let (_dir, list) = list();
    let id = list
        .record(
            failure("partner_M1", "e/0", Uuid::new_v4()),
            DeadLetterStatus::Dead,
        )
        .await
        .unwrap();
    assert!(list.retry_requests("odoo").await.unwrap().is_empty());
    let asked = list.request_retry(id).await.unwrap();
    assert_eq!(asked.status, DeadLetterStatus::RetryRequested);
    let requests = list.retry_requests("odoo").await.unwrap();
    assert_eq!(requests.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id]);
    assert!(list.retry_requests("webhook").await.unwrap().is_empty());

    list.failed_again(id, "ValidationError: again")
        .await
        .unwrap();
    let row = list.get(id).await.unwrap().unwrap();
    assert_eq!(row.status, DeadLetterStatus::Dead);
    assert_eq!(row.attempts, 2);
    assert_eq!(row.error, "ValidationError: again");

    list.request_retry(id).await.unwrap();
    list.resolve(id).await.unwrap();
    assert_eq!(
        list.get(id).await.unwrap().unwrap().status,
        DeadLetterStatus::Resolved
    );
    assert!(list.list(None, false).await.unwrap().is_empty());
    assert_eq!(list.list(None, true).await.unwrap().len(), 1);
    assert!(matches!(
        list.request_retry(id).await,
        Err(DeadLetterError::NotOpen {
            status: DeadLetterStatus::Resolved,
            ..
        })
    ));
    assert!(matches!(
        list.discard(id, "late").await,
        Err(DeadLetterError::NotOpen { .. })
    ));
    assert!(matches!(
        list.request_retry(id + 100).await,
        Err(DeadLetterError::NotFound(_))
    ));
}

#[tokio::test]
async fn open_keys_and_the_rows_parked_behind_a_head_come_in_order() {
    let (_dir, list) = list();
    let head = list
        .record(
            failure("partner_M1", "a/0", Uuid::new_v4()),
            DeadLetterStatus::Dead,
        )
        .await
        .unwrap();
    let parked = list
        .record(
            failure("partner_M1", "b/0", Uuid::new_v4()),
            DeadLetterStatus::Parked,
        )
        .await
        .unwrap();
    let other = list
        .record(
            failure("product_I9", "c/0", Uuid::new_v4()),
            DeadLetterStatus::Dead,
        )
        .await
        .unwrap();
    assert_eq!(
        list.open_keys("odoo").await.unwrap(),
        vec!["partner_M1".to_owned(), "product_I9".to_owned()]
    );
    let behind: Vec<i64> = list
        .open_for_key("odoo", "partner_M1")
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(behind, vec![head, parked]);

    let discarded = list.discard(other, "fixed by hand in Odoo").await.unwrap();
    assert_eq!(discarded.status, DeadLetterStatus::Discarded);
    assert_eq!(
        discarded.discard_reason.as_deref(),
        Some("fixed by hand in Odoo")
    );
    assert_eq!(
        list.open_keys("odoo").await.unwrap(),
        vec!["partner_M1".to_owned()]
    );
    // A consumer that restarts and records the discarded item again does not reopen it.
    let again = list
        .record(
            NewDeadLetter {
                event_id: discarded.event_id,
                ..failure("product_I9", "c/0", discarded.event_id)
            },
            DeadLetterStatus::Dead,
        )
        .await
        .unwrap();
    assert_eq!(again, other);
    assert_eq!(
        list.get(other).await.unwrap().unwrap().status,
        DeadLetterStatus::Discarded
    );
}

#[tokio::test]
async fn a_damaged_row_is_an_error_naming_it_not_a_guess() {
    let (dir, list) = list();
    let id = list
        .record(
            failure("partner_M9", "e/0", Uuid::new_v4()),
            DeadLetterStatus::Dead,
        )
        .await
        .unwrap();
    // Someone edits the table by hand: a status this build never writes.
    let conn = rusqlite::Connection::open(dir.path().join("dead_letters.db")).unwrap();
    conn.execute(
        "UPDATE dead_letters SET status = 'maybe' WHERE id = ?1",
        [id],
    )
    .unwrap();
    let error = list.list(None, true).await.unwrap_err();
    assert!(
        matches!(&error, DeadLetterError::Corrupt { id: bad, column: "status", .. } if *bad == id),
        "{error}"
    );
    // And a payload that is not JSON, on another row.
    conn.execute(
        "UPDATE dead_letters SET status = 'dead', payload = '{' WHERE id = ?1",
        [id],
    )
    .unwrap();
    let error = list.get(id).await.unwrap_err();
    assert!(
        matches!(
            &error,
            DeadLetterError::Corrupt {
                column: "payload",
                ..
            }
        ),
        "{error}"
    );
}
