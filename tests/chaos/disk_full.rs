//! Disk full under SQLite: the data dir on a small tmpfs the test mounts, filled up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::api::Api;
use crate::api::assert_acknowledged_present_once;
use crate::server::{Server, careflow, run_to_end};
use crate::support::{TempDir, eventually};
use crate::{one_at_a_time, post_charge, register_body};

/// A tmpfs of a few MiB mounted on a fresh directory, unmounted when dropped.
struct SmallDisk {
    _dir: TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    /// `None` where this process may not mount (not root, outside CI); in CI a failure fails.
    fn mount(size: &str) -> Option<Self> {
        let dir = TempDir::new();
        let mount = dir.path().join("disk");
        std::fs::create_dir_all(&mount).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .status();
        match status {
            Ok(s) if s.success() => Some(Self { _dir: dir, mount }),
            other => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI runs as root and must mount a tmpfs: {other:?}"
                );
                eprintln!("skipped: cannot mount a tmpfs here ({other:?})");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Writes a file until the filesystem is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // The last partial chunk too.
    while file.write_all(&[0xA5]).is_ok() {}
    let _ = file.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_answers_503_writes_nothing_half_and_service_resumes_when_space_is_freed() {
    let _turn = one_at_a_time().await;
    let Some(disk) = SmallDisk::mount("24m") else {
        return;
    };
    let home = TempDir::new();
    let data = disk.mount.join("data");
    let serve = || {
        let mut cmd = careflow(&home.path());
        cmd.env("CAREFLOW_DATA_DIR", &data)
            .env("CAREFLOW_RATE_LIMIT_PER_SECOND", "0");
        cmd
    };
    let ehr = token_in(&data, &home.path(), "system", "ehr");
    let auditor = token_in(&data, &home.path(), "auditor", "compliance");

    let server = Server::spawn(serve());
    server.wait_ready().await;
    let api = Api::new(&server.base);
    api.ok(&ehr, "patient-accounts", "MRN-FULL", register_body())
        .await;
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let outcome = post_charge(&api, &ehr, "MRN-FULL", &format!("C-before-{i}")).await;
        assert_eq!(outcome.status, 200);
        acknowledged.extend(outcome.events);
    }

    // Full: every command is answered, 200 while a page is still free, then 503 with
    // Retry-After; nothing else.
    let filler = fill(&disk.mount);
    let mut refused = 0;
    let mut i = 0;
    while refused < 5 {
        assert!(i < 500, "the store kept taking commands on a full disk");
        let outcome = post_charge(&api, &ehr, "MRN-FULL", &format!("C-full-{i}")).await;
        match outcome.status {
            200 => acknowledged.extend(outcome.events),
            503 => {
                assert!(outcome.retry_after, "503 without Retry-After");
                refused += 1;
            }
            other => panic!("a command on a full disk was answered {other}"),
        }
        i += 1;
    }
    let ready = api.get("/readyz", None).await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert!(ready.text.contains("event_store"), "{}", ready.text);
    // What is stored verifies, full disk or not.
    let (code, output) = run_to_end(
        careflow(&home.path())
            .env("CAREFLOW_DATA_DIR", &data)
            .args(["audit", "verify"]),
    );
    assert_eq!(code, Some(0), "{output}");

    // Space again: the same server takes commands, without a restart.
    std::fs::remove_file(&filler).unwrap();
    eventually(Duration::from_secs(30), "commands accepted again", || {
        let api = api.clone();
        let ehr = ehr.clone();
        async move {
            let outcome = post_charge(&api, &ehr, "MRN-FULL", "C-after").await;
            (outcome.status == 200).then_some(outcome.events)
        }
    })
    .await;
    eventually(Duration::from_secs(30), "readyz 200", || async {
        (api.get("/readyz", None).await.status == 200).then_some(())
    })
    .await;
    let log = api.all_events(&auditor).await;
    crate::api::assert_log_is_sound(&log);
    assert_acknowledged_present_once(&acknowledged, &log);
    assert!(server.terminate().await.success());
    let (code, output) = run_to_end(
        careflow(&home.path())
            .env("CAREFLOW_DATA_DIR", &data)
            .args(["audit", "verify"]),
    );
    assert_eq!(code, Some(0), "{output}");
}

fn token_in(data: &Path, home: &Path, role: &str, subject: &str) -> String {
    let output = careflow(home)
        .env("CAREFLOW_DATA_DIR", data)
        .args(["token", "issue", "--role", role, "--subject", subject])
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}
