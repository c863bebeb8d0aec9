//! The release `careflow` beside the example binaries, run as a server: what the benchmarks in
//! examples/ share (`#[path]`-included; examples/shared/ holds no example of its own).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `careflow serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// SIGTERM, and waits for the clean shutdown.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `careflow` in the same target dir as the running example, with no `CAREFLOW_*` variable
/// of the caller's shell.
pub fn careflow() -> Command {
    let exe = std::env::current_exe().expect("current exe");
    let bin: PathBuf = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("careflow"))
        .expect("target dir");
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("CAREFLOW_")) {
        cmd.env_remove(key);
    }
    cmd
}

/// Starts `cmd serve` and waits until `/readyz` answers 200.
pub async fn serve(mut cmd: Command) -> Server {
    let mut child = cmd
        .arg("serve")
        .stdout(Stdio::piped())
        .spawn()
        .expect("careflow serve (build it with --release first)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let base = line
        .trim()
        .strip_prefix("careflow listening on ")
        .expect("listening line")
        .to_owned();
    let server = Server { child, base };
    let client = reqwest::Client::new();
    loop {
        if let Ok(reply) = client.get(format!("{}/readyz", server.base)).send().await
            && reply.status() == 200
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
