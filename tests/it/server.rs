//! Running the real binary from a test: `careflow serve` on a temp data dir and port 0, the
//! CLI, and tokens, with no `CAREFLOW_*` variable leaking in from the developer's shell.
//! Shared by the `it` and `chaos` test binaries.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::eventually;

/// A running `careflow serve`.
pub struct Server {
    child: Child,
    pub base: String,
    /// The MLLP listener's `host:port` (the second line `serve` prints).
    pub mllp: String,
}

pub fn careflow(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_careflow"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CAREFLOW_")) {
        cmd.env_remove(key);
    }
    cmd.current_dir(data_dir)
        .env("CAREFLOW_DATA_DIR", data_dir.join("data"))
        .env("CAREFLOW_LISTEN", "127.0.0.1:0")
        // Every server listens for HL7 too: port 0, so parallel tests never share 2575.
        .env("CAREFLOW_MLLP_LISTEN", "127.0.0.1:0")
        .env("CAREFLOW_LOG", "warn")
        // The process managers react to registrations and completed encounters with commands
        // of their own; tests of the bare command path turn them off, and
        // tests/it/process_managers.rs turns them on.
        .env("CAREFLOW_PROCESS_MANAGERS", "false");
    cmd
}

impl Server {
    pub fn start(dir: &Path) -> Self {
        Self::spawn(careflow(dir))
    }

    /// Starts with extra `CAREFLOW_*` variables (rate limits, a different store).
    pub fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = careflow(dir);
        for (key, value) in env {
            cmd.env(key, value);
        }
        Self::spawn(cmd)
    }

    /// Starts `serve` from a prepared command (see [`careflow`]).
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("careflow listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mllp = line
            .trim()
            .strip_prefix("careflow mllp listening on ")
            .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
            .to_string();
        Self { child, base, mllp }
    }

    /// The server's peak resident memory so far (`VmHWM`), in KiB: a counted bound on what
    /// an input cost, read from Linux's /proc.
    pub fn peak_memory_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.base);
        eventually(Duration::from_secs(30), "readyz", || async {
            let response = reqwest::get(&url).await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
    }

    /// SIGKILL: no shutdown, no flush; what a crash or a power cut leaves behind.
    pub fn kill9(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        assert!(status.success());
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        eventually(Duration::from_secs(30), "the server to exit", || {
            let exited = self.child.try_wait().unwrap();
            async move { exited }
        })
        .await
    }
}

/// A bearer token from `careflow token issue`, with the data dir (and so the secret) of the
/// servers started on `dir`.
pub fn token(dir: &Path, role: &str, subject: &str) -> String {
    token_with_env(dir, &[], role, subject)
}

pub fn token_with_env(dir: &Path, env: &[(&str, &str)], role: &str, subject: &str) -> String {
    let mut cmd = careflow(dir);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd
        .args(["token", "issue", "--role", role, "--subject", subject])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "token issue failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap();
    let token = token.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "not a bare JWT: {token:?}");
    token
}

/// Runs a CLI command to its end: its exit code and what it printed (stdout, then stderr).
pub fn run_to_end(cmd: &mut Command) -> (Option<i32>, String) {
    let output = cmd.output().unwrap();
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
