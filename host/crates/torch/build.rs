//! Build script of the TorchScript backend: with feature `cuda`, compiles
//! the small C++ edge to libtorch's CUDA stream, TF32 and graph APIs,
//! `csrc/cuda.cpp`, against the torch install's headers. (The binary's own
//! build script sets libtorch's RUNPATH and force-links libtorch_cuda.)

// The fuzz build instruments build scripts too: see host/coverage_hooks.rs.
include!("../../coverage_hooks.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        build_cuda_edge()?;
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
