//! Build script: generates the gRPC protocol types from `proto/` (the
//! model-config types they use are kiln-model-config's), and fixes the two
//! libtorch link gotchas of the binaries (README, "GPU"): a
//! RUNPATH to libtorch so `cargo run`/`cargo test` find it, and (feature
//! `cuda` only) force-linking libtorch_cuda, which `--as-needed` drops. The
//! C++ edge itself is kiln-torch's (crates/torch/build.rs).

// The fuzz build instruments build scripts too: see coverage_hooks.rs.
include!("coverage_hooks.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        // RUNPATH (not RPATH) so LD_LIBRARY_PATH can still point the binary at
        // another libtorch, e.g. the GPU machine's own torch install.
        println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-ltorch,--as-needed");
    }

    // The model-config types are kiln-model-config's: every top-level message
    // and enum of its .proto maps there instead of being generated again.
    let model_config = "crates/model-config/proto/model_config.proto";
    let protos = ["proto/grpc_service.proto"];
    let includes = ["proto", "crates/model-config/proto"];
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
        .descriptor_pool("crate::protocol::proto::DESCRIPTOR_POOL")
        .configure(&mut config, &protos, &includes)?;
    tonic_prost_build::configure()
        .build_client(false)
        // prost plus the checks a server facing hostile clients needs before
        // decoding (protocol/grpc_codec.rs).
        .codec_path("crate::protocol::grpc_codec::KilnCodec")
        .compile_with_config(config, &protos, &includes)?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
