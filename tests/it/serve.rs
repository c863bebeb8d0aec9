//! Black-box tests of `careflow serve` and the CLI: the real binary, a temp data dir, port 0,
//! and no `CAREFLOW_*` variable leaking in from the developer's shell.

use crate::server::{Server, careflow};
use crate::support::TempDir;

#[tokio::test]
async fn serve_starts_with_no_config_answers_health_and_stops_cleanly_on_sigterm() {
    let dir = TempDir::new();
    let server = Server::start(&dir.path());
    server.wait_ready().await;

    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready,
        serde_json::json!({"status": "ready", "store": "sqlite"})
    );
    assert!(dir.path().join("data/careflow.db").exists());

    let missing = reqwest::get(format!("{}/no/such/route", server.base))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(problem["status"], 404);
    assert_eq!(problem["title"], "no such resource");

    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.is_empty() || metrics.contains("careflow_"),
        "{metrics}"
    );

    let status = server.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    // The lock is released: a second start on the same data dir comes up ready.
    let again = Server::start(&dir.path());
    again.wait_ready().await;
    assert!(again.terminate().await.success());
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused_with_exit_2() {
    let dir = TempDir::new();
    let first = Server::start(&dir.path());
    first.wait_ready().await;
    let output = careflow(&dir.path()).arg("serve").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another careflow process"),
        "{stderr}"
    );
    assert!(first.terminate().await.success());
}

#[test]
fn invalid_configuration_is_a_usage_error_with_a_hint() {
    let dir = TempDir::new();
    let output = careflow(&dir.path())
        .env("CAREFLOW_STORE", "oracle")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid store \"oracle\": use sqlite, postgres or kurrentdb"),
        "{stderr}"
    );
}

#[test]
fn bench_append_reports_throughput_and_latency() {
    let dir = TempDir::new();
    let output = careflow(&dir.path())
        .args([
            "bench",
            "append",
            "--store",
            "sqlite",
            "--writers",
            "4",
            "--events",
            "400",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| -> f64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(field("appends/s:") > 0.0);
    assert!(field("p99_ms:") >= field("p50_ms:"));
    assert!(
        stdout.contains("streams: per-writer writers: 4 events: 400"),
        "{stdout}"
    );
    // The throw-away database is gone afterwards.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "bench left files behind: {left:?}");
}

#[tokio::test]
async fn serve_reads_careflow_toml_and_the_environment_overrides_it() {
    let dir = TempDir::new();
    // The file names a data dir; the environment (set by `careflow()`) names another and wins.
    std::fs::write(
        dir.path().join("careflow.toml"),
        "data_dir = \"from-file\"\nlog = \"warn\"\n",
    )
    .unwrap();
    let server = Server::start(&dir.path());
    server.wait_ready().await;
    assert!(dir.path().join("data/careflow.db").exists());
    assert!(!dir.path().join("from-file").exists());
    assert!(server.terminate().await.success());

    // Without the variable, the file's data dir is used.
    let mut cmd = careflow(&dir.path());
    cmd.env_remove("CAREFLOW_DATA_DIR");
    let server = Server::spawn(cmd);
    server.wait_ready().await;
    assert!(dir.path().join("from-file/careflow.db").exists());
    assert!(server.terminate().await.success());

    // A key careflow does not know is refused, naming it.
    std::fs::write(dir.path().join("careflow.toml"), "listen_port = 8080\n").unwrap();
    let output = careflow(&dir.path()).arg("serve").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no such key \"listen_port\""), "{stderr}");
}

#[tokio::test]
async fn serve_runs_on_postgres_when_configured() {
    let Some(url) = crate::support::postgres_url().await else {
        return;
    };
    let schema = crate::support::unique_schema("serve");
    let dir = TempDir::new();
    let mut cmd = careflow(&dir.path());
    cmd.env("CAREFLOW_STORE", "postgres")
        .env("CAREFLOW_DATABASE_URL", &url)
        .env("CAREFLOW_DATABASE_SCHEMA", &schema);
    let server = Server::spawn(cmd);
    server.wait_ready().await;
    let ready: serde_json::Value = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"], "postgres");
    assert!(server.terminate().await.success());
    crate::support::drop_schema(&url, &schema).await;
}
