//! The client side of kiln's own copy of Triton's protos (host/proto), with
//! tensor payloads as `bytes::Bytes` so that every request shares one input.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../host/proto/grpc_service.proto";
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(config, &[proto], &["../../host/proto"])?;
    println!("cargo:rerun-if-changed={proto}");
    Ok(())
}
