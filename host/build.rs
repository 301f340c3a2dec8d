//! Build script: generates the gRPC protocol types from `proto/` (the
//! model-config types they use are kiln-model-config's), and fixes the two libtorch link gotchas (see ENVIRONMENT.md):
//! an RPATH to libtorch so `cargo run`/`cargo test` find it, and (feature
//! `cuda` only) force-linking libtorch_cuda, which `--as-needed` drops; and
//! (feature `cuda`) compiles the small C++ edge to libtorch's CUDA stream, TF32 and graph APIs,
//! `csrc/cuda.cpp`, against the torch install's headers.

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
        build_cuda_edge()?;
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

/// Compiles csrc/cuda.cpp. Headers: libtorch's (next to the library
/// tch links) and the CUDA runtime's: `KILN_CUDA_INCLUDE`, else the pip
/// wheels' beside torch (triton's, nvidia's), else /usr/local/cuda.
fn build_cuda_edge() -> Result<(), Box<dyn std::error::Error>> {
    use std::path::PathBuf;
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .map_err(|_| "feature cuda: tch did not report where libtorch is")?,
    );
    let torch = lib
        .parent()
        .ok_or("libtorch's lib has no parent")?
        .to_path_buf();
    // A complete set: the nvidia-cuda-runtime wheel ships cuda_runtime_api.h
    // without the crt/ headers it includes; the triton wheel (a torch
    // dependency) ships the whole CUDA include directory.
    let has_runtime = |d: &PathBuf| {
        d.join("cuda_runtime_api.h").is_file() && d.join("crt/host_defines.h").is_file()
    };
    let mut candidates: Vec<PathBuf> = std::env::var_os("KILN_CUDA_INCLUDE")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    // torch -> site-packages (LIBTORCH may be a symlink to the wheel's torch/).
    let torch_real = std::fs::canonicalize(&torch).unwrap_or(torch.clone());
    if let Some(site) = torch_real.parent() {
        candidates.push(site.join("triton/backends/nvidia/include"));
        if let Ok(entries) = std::fs::read_dir(site.join("nvidia")) {
            for e in entries.flatten() {
                candidates.push(e.path().join("include"));
                candidates.push(e.path().join("cuda_runtime").join("include"));
            }
        }
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    let cuda = candidates.into_iter().find(has_runtime).ok_or(
        "feature cuda: no cuda_runtime_api.h found; set KILN_CUDA_INCLUDE to the CUDA runtime headers",
    )?;
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("csrc/cuda.cpp")
        .include(torch.join("include"))
        .include(torch.join("include/torch/csrc/api/include"))
        .include(&cuda)
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag_if_supported("-w")
        .compile("kiln_cuda");
    println!("cargo:rustc-link-lib=dylib=c10_cuda");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rerun-if-changed=csrc/cuda.cpp");
    Ok(())
}
