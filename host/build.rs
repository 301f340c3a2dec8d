//! Build script: generates the protocol and model-config types from
//! `proto/`, and fixes the two libtorch link gotchas (see ENVIRONMENT.md):
//! an RPATH to libtorch so `cargo run`/`cargo test` find it, and (feature
//! `cuda` only) force-linking libtorch_cuda, which `--as-needed` drops.

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

    let protos = ["proto/grpc_service.proto", "proto/model_config.proto"];
    let mut config = prost_build::Config::new();
    // Tensor payloads as `bytes::Bytes`: they move from the wire into the
    // backend without a copy.
    config.bytes(["."]);
    prost_reflect_build::Builder::new()
        .descriptor_pool("crate::protocol::proto::DESCRIPTOR_POOL")
        .configure(&mut config, &protos, &["proto"])?;
    tonic_build::configure()
        .build_client(false)
        .compile_protos_with_config(config, &protos, &["proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
