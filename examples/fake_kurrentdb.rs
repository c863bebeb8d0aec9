//! The fake KurrentDB on its own: `cargo run --release --example fake_kurrentdb -- --listen
//! 127.0.0.1:2113`. Data lives in memory and is gone when it stops (Ctrl-C).

use std::net::SocketAddr;

use fake_kurrentdb::FakeKurrentDb;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = "127.0.0.1:2113".parse()?;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args
                    .next()
                    .ok_or("--listen needs an address, e.g. 127.0.0.1:2113")?;
                listen = value
                    .parse()
                    .map_err(|e| format!("--listen {value:?}: {e}"))?;
            }
            "-h" | "--help" => {
                println!("fake_kurrentdb [--listen ADDR]   (default 127.0.0.1:2113)");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; see --help").into()),
        }
    }
    let server = FakeKurrentDb::start(listen).await?;
    println!(
        "fake KurrentDB listening on {} ({})",
        server.addr(),
        server.connection_string()
    );
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    Ok(())
}
