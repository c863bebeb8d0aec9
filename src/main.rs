//! The `careflow` binary: a thin `main` around [`careflow::cli::run`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match careflow::cli::run(careflow::cli::Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("careflow: {err:#}");
            ExitCode::from(2)
        }
    }
}
