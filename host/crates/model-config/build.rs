//! Generates the model-config types from `proto/model_config.proto` (Triton's
//! schema), with the descriptors prost-reflect parses config.pbtxt against.

// The fuzz build instruments build scripts too: see host/coverage_hooks.rs.
include!("../../coverage_hooks.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/model_config.proto"];
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    prost_reflect_build::Builder::new()
        .descriptor_pool("crate::proto::DESCRIPTOR_POOL")
        .configure(&mut config, &protos, &["proto"])?;
    config.compile_protos(&protos, &["proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
