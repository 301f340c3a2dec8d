//! Generates the KServe v2 gRPC types and service from `proto/`; the
//! model-config types they use are kiln-model-config's.

// The fuzz build instruments build scripts too: see host/coverage_hooks.rs.
include!("../../coverage_hooks.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The model-config types are kiln-model-config's: every top-level message
    // and enum of its .proto maps there instead of being generated again.
    let model_config = "../model-config/proto/model_config.proto";
    let protos = ["proto/grpc_service.proto"];
    let includes = ["proto", "../model-config/proto"];
    let mut config = prost_build::Config::new();
    // Tensor payloads as `bytes::Bytes`: they move from the wire into the
    // backend without a copy.
    config.bytes(["."]);
    for line in std::fs::read_to_string(model_config)?.lines() {
        let name = ["message ", "enum "]
            .iter()
            .find_map(|k| line.strip_prefix(k))
            .and_then(|rest| rest.split_whitespace().next());
        if let Some(name) = name {
            config.extern_path(
                format!(".inference.{name}"),
                format!("::kiln_model_config::proto::{name}"),
            );
        }
    }
    println!("cargo:rerun-if-changed={model_config}");
    prost_reflect_build::Builder::new()
        .descriptor_pool("crate::proto::DESCRIPTOR_POOL")
        .configure(&mut config, &protos, &includes)?;
    tonic_prost_build::configure()
        .build_client(false)
        // prost plus the checks a server facing hostile clients needs before
        // decoding (src/grpc_codec.rs).
        .codec_path("crate::grpc_codec::KilnCodec")
        .compile_with_config(config, &protos, &includes)?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
