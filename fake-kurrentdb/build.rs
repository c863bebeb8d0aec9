//! Generates the server side of KurrentDB's gRPC API from the client's own .proto files.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=protos");
    let descriptors = protox::compile(
        ["protos/streams.proto", "protos/serverfeatures.proto"],
        ["protos"],
    )?;
    tonic_build::configure()
        .build_client(false)
        .compile_fds(descriptors)?;
    Ok(())
}
