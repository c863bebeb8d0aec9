//! Shared test plumbing: temp dirs, the PostgreSQL switch, the real binary.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A directory removed when dropped.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new() -> Self {
        Self(
            tempfile::Builder::new()
                .prefix("careflow-test-")
                .tempdir()
                .unwrap(),
        )
    }

    pub fn path(&self) -> PathBuf {
        self.0.path().to_path_buf()
    }
}

/// The PostgreSQL server tests use, or `None` (test skipped) when none answers and
/// `CAREFLOW_REQUIRE_POSTGRES` is not `1`.
pub async fn postgres_url() -> Option<String> {
    let url = std::env::var("CAREFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(_) => Some(url),
        Err(error) => {
            if std::env::var("CAREFLOW_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("CAREFLOW_REQUIRE_POSTGRES=1 but PostgreSQL at {url} refused: {error}");
            }
            eprintln!("skipped: no PostgreSQL at {url} ({error})");
            None
        }
    }
}

/// The NATS server tests use (`CAREFLOW_TEST_NATS_URL`, default `nats://127.0.0.1:4222`), or
/// `None` (test skipped) when none answers and `CAREFLOW_REQUIRE_NATS` is not `1`.
pub async fn nats_url() -> Option<String> {
    let url =
        std::env::var("CAREFLOW_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(url.as_str()),
    )
    .await;
    let error = match connected {
        Ok(Ok(_client)) => return Some(url),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "no answer within 5 s".to_string(),
    };
    if std::env::var("CAREFLOW_REQUIRE_NATS").as_deref() == Ok("1") {
        panic!("CAREFLOW_REQUIRE_NATS=1 but NATS at {url} refused: {error}");
    }
    eprintln!("skipped: no NATS at {url} ({error})");
    None
}

/// A schema name no other test uses.
pub fn unique_schema(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

pub async fn drop_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
}

/// Polls `check` until it returns `Some` or `within` passes (then panics with `what`).
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await; // poll interval until the deadline
    }
}
