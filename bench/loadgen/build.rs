//! The client side of kiln's own copy of Triton's protos (kiln-kserve's and
//! kiln-model-config's proto/), with
//! tensor payloads as `bytes::Bytes` so that every request shares one input.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../../host/crates/kserve/proto/grpc_service.proto";
    let includes = [
        "../../host/crates/kserve/proto",
        "../../host/crates/model-config/proto",
    ];
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_server(false)
        .compile_with_config(config, &[proto], &includes)?;
    println!("cargo:rerun-if-changed={proto}");
    println!("cargo:rerun-if-changed=../../host/crates/model-config/proto/model_config.proto");
    Ok(())
}
