use std::sync::Arc;

use careflow_aggregates::StreamId;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::store::snapshot::{MemorySnapshots, Snapshot, SnapshotStore};
use crate::store::sqlite::{SqliteConfig, SqliteStore};
use crate::store::{
    AppendRequest, CommandMeta, Direction, EventStore, ExpectedVersion, ProposedEvent,
};

const NAME: &str = "Zebedee-Quillfeather";

fn master() -> MasterKey {
    MasterKey::parse(&"ab".repeat(32)).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    stored: Arc<dyn EventStore>,
    keys: Arc<PersonalKeys>,
    store: EncryptingStore,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let stored: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(SqliteConfig::new(path.join("careflow.db"))).unwrap());
    let keys = Arc::new(
        PersonalKeys::new(
            master(),
            Box::new(keys::SqliteKeys::open(path.join("keys.db")).unwrap()),
            None,
        )
        .await
        .unwrap(),
    );
    let store = EncryptingStore::new(Arc::clone(&stored), Arc::clone(&keys));
    Fixture {
        _dir: dir,
        dir: path,
        stored,
        keys,
        store,
    }
}

fn request(
    stream: &StreamId,
    expected: ExpectedVersion,
    event_type: &str,
    data: serde_json::Value,
) -> AppendRequest {
    AppendRequest {
        stream_id: stream.clone(),
        expected,
        meta: CommandMeta {
            command_id: Uuid::new_v4(),
            correlation_id: "c".into(),
            causation_id: "c".into(),
            principal: "tester".into(),
            source: "test".into(),
            occurred_at: chrono::Utc::now(),
        },
        events: vec![ProposedEvent {
            event_type: event_type.into(),
            schema_version: 1,
            data,
        }],
    }
}

fn registered() -> serde_json::Value {
    json!({
        "facility": "NORTH",
        "gender": "female",
        "personal": {"name": {"family": NAME, "given": ["Ada"]}, "birth_date": "1970-01-02"}
    })
}

fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).ok()?;
            bytes
                .windows(needle.len())
                .any(|w| w == needle)
                .then(|| path.display().to_string())
        })
        .collect()
}

#[test]
fn master_keys_parse_from_hex_or_base64_and_nothing_else() {
    let hex_key = MasterKey::parse(&"01".repeat(32)).unwrap();
    let b64 = BASE64.encode([1u8; 32]);
    assert_eq!(
        MasterKey::parse(&b64).unwrap().fingerprint(),
        hex_key.fingerprint()
    );
    assert!(matches!(
        MasterKey::parse("short"),
        Err(PersonalDataError::InvalidMasterKey(_))
    ));
    assert!(matches!(
        MasterKey::parse(&BASE64.encode([1u8; 31])),
        Err(PersonalDataError::InvalidMasterKey(_))
    ));
    assert!(!format!("{hex_key:?}").contains("0101"));
}

#[test]
fn a_ciphertext_only_opens_with_its_key_and_its_stream() {
    let key = DataKey::new("k1".into(), &[7u8; 32]);
    let envelope = key.seal("patient_account-A", b"secret").unwrap();
    assert_eq!(envelope.enc, "aes-256-gcm");
    assert_eq!(
        key.open("patient_account-A", &envelope).as_deref(),
        Some(&b"secret"[..])
    );
    assert_eq!(key.open("patient_account-B", &envelope), None);
    let other = DataKey::new("k1".into(), &[8u8; 32]);
    assert_eq!(other.open("patient_account-A", &envelope), None);
}

#[tokio::test]
async fn stored_event_data_holds_ciphertext_and_reads_back_plain_until_erased() {
    let f = fixture().await;
    let stream = StreamId::parse("patient_account-MRN-1").unwrap();
    let appended = f
        .store
        .append(request(
            &stream,
            ExpectedVersion::NoStream,
            "PatientRegistered",
            registered(),
        ))
        .await
        .unwrap();
    // The answer is plain, the stored bytes are not.
    assert_eq!(appended.events[0].data, registered());
    let raw = f
        .stored
        .read_stream(&stream, 1, Direction::Forward, 10)
        .await
        .unwrap();
    let personal = &raw[0].data["personal"];
    assert_eq!(personal["enc"], "aes-256-gcm", "{personal}");
    assert!(!raw[0].data.to_string().contains(NAME));
    assert_eq!(raw[0].data["facility"], "NORTH");
    let read = f
        .store
        .read_stream(&stream, 1, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(read[0].data, registered());
    assert_eq!(read[0].hash, raw[0].hash);
    f.stored.close().await;
    assert!(files_containing(&f.dir, NAME.as_bytes()).is_empty());

    let kid = personal["kid"].as_str().unwrap();
    let wrapped = f
        .keys
        .stored(kid)
        .await
        .unwrap()
        .expect("the key is stored");
    assert_eq!(
        files_containing(&f.dir, &wrapped).len(),
        1,
        "the key is in keys.db"
    );
}

#[tokio::test]
async fn erasure_destroys_the_key_and_later_reads_are_null() {
    let f = fixture().await;
    let stream = StreamId::parse("patient_account-MRN-2").unwrap();
    f.store
        .append(request(
            &stream,
            ExpectedVersion::NoStream,
            "PatientRegistered",
            registered(),
        ))
        .await
        .unwrap();
    let raw = f
        .stored
        .read_stream(&stream, 1, Direction::Forward, 1)
        .await
        .unwrap();
    let kid = raw[0].data["personal"]["kid"].as_str().unwrap().to_owned();
    let wrapped = f
        .keys
        .stored(&kid)
        .await
        .unwrap()
        .expect("the key is stored");
    f.store
        .append(request(
            &stream,
            ExpectedVersion::Exact(1),
            "PersonalDataErased",
            json!({"reason": "request 7"}),
        ))
        .await
        .unwrap();
    assert_eq!(f.keys.stored(&kid).await.unwrap(), None);
    assert!(f.keys.is_erased("MRN-2").await.unwrap());
    let read = f
        .store
        .read_stream(&stream, 1, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(read[0].data["personal"], serde_json::Value::Null);
    assert_eq!(read[0].data["facility"], "NORTH");
    // Personal data sent after the erasure is not stored at all, and no key comes back.
    let mut late = registered();
    late["personal"] = json!({"payer": NAME});
    f.store
        .append(request(
            &stream,
            ExpectedVersion::Exact(2),
            "PaymentRecorded",
            late,
        ))
        .await
        .unwrap();
    let raw = f
        .stored
        .read_stream(&stream, 3, Direction::Forward, 1)
        .await
        .unwrap();
    assert_eq!(raw[0].data["personal"], serde_json::Value::Null);
    assert!(f.keys.for_writing("MRN-2", false).await.unwrap().is_none());
    f.stored.close().await;
    assert!(
        files_containing(&f.dir, &wrapped).is_empty(),
        "the wrapped key's bytes are still on disk"
    );
    assert!(files_containing(&f.dir, NAME.as_bytes()).is_empty());
}

#[tokio::test]
async fn a_store_refuses_another_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    PersonalKeys::new(
        master(),
        Box::new(keys::SqliteKeys::open(&path).unwrap()),
        None,
    )
    .await
    .unwrap();
    let other = MasterKey::parse(&"cd".repeat(32)).unwrap();
    let refused = PersonalKeys::new(
        other,
        Box::new(keys::SqliteKeys::open(&path).unwrap()),
        None,
    )
    .await;
    assert!(matches!(
        refused,
        Err(PersonalDataError::MasterKeyMismatch { .. })
    ));
}

#[tokio::test]
async fn patient_snapshots_are_sealed_and_unreadable_after_erasure() {
    let f = fixture().await;
    let inner = Arc::new(MemorySnapshots::new());
    let snapshots = EncryptingSnapshots::new(inner.clone(), Arc::clone(&f.keys));
    let stream = StreamId::parse("patient_account-MRN-3").unwrap();
    let key = f.keys.for_writing("MRN-3", true).await.unwrap().unwrap();
    let state = json!({"identity": {"name": NAME}}).to_string();
    let snapshot = Snapshot {
        stream_id: stream.clone(),
        version: 5,
        position: 5,
        head_hash: "00".into(),
        snapshot_version: 1,
        state: state.clone(),
    };
    snapshots.save(snapshot).await.unwrap();
    assert!(!inner.get(&stream).unwrap().state.contains(NAME));
    assert_eq!(snapshots.load(&stream).await.unwrap().unwrap().state, state);
    f.keys
        .destroy("MRN-3", &[key.kid().to_owned()])
        .await
        .unwrap();
    assert_eq!(f.keys.stored(key.kid()).await.unwrap(), None);
    assert_eq!(snapshots.load(&stream).await.unwrap(), None);
    // Other kinds pass through untouched.
    let item = StreamId::parse("inventory_item-I1").unwrap();
    let plain = Snapshot {
        stream_id: item.clone(),
        version: 1,
        position: 1,
        head_hash: "00".into(),
        snapshot_version: 1,
        state: "{}".into(),
    };
    snapshots.save(plain.clone()).await.unwrap();
    assert_eq!(inner.get(&item), Some(plain));
}
