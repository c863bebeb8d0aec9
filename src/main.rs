//! The `careflow` binary: a thin `main` around [`careflow::cli::run`].

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the writer thread and the async workers allocate and
/// free event buffers across threads all the time, and glibc's arenas spent a tenth of the
/// append benchmark's CPU consolidating and locking (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match careflow::cli::run(careflow::cli::Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("careflow: {err:#}");
            ExitCode::from(2)
        }
    }
}
