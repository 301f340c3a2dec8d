//! Build script of the TorchScript backend: compiles the small C++ edge to
//! libtorch's operator registry (custom ops, `csrc/ops.cpp`) and, with
//! feature `cuda`, to its CUDA stream, TF32 and graph APIs (`csrc/cuda.cpp`),
//! against the torch install's headers. (The binary's own
//! build script sets libtorch's RUNPATH and force-links libtorch_cuda.)

// The fuzz build instruments build scripts too: see host/coverage_hooks.rs.
include!("../../coverage_hooks.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    build_ops_edge()?;
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        build_cuda_edge()?;
    }
    Ok(())
}

/// Where libtorch is: the folder above the library tch links.
fn torch_dir() -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let lib = std::path::PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .map_err(|_| "tch did not report where libtorch is")?,
    );
    Ok(lib
        .parent()
        .ok_or("libtorch's lib has no parent")?
        .to_path_buf())
}

/// libtorch's headers, C++17, the ABI the wheel's libtorch was built with.
fn torch_build(torch: &std::path::Path) -> cc::Build {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .include(torch.join("include"))
        .include(torch.join("include/torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag_if_supported("-w");
    build
}

/// Compiles csrc/ops.cpp: custom ops registered with libtorch's dispatcher
/// and implemented in Rust (src/custom_ops.rs).
fn build_ops_edge() -> Result<(), Box<dyn std::error::Error>> {
    let torch = torch_dir()?;
    torch_build(&torch).file("csrc/ops.cpp").compile("kiln_ops");
    println!("cargo:rustc-link-lib=dylib=c10");
    // This crate's test binary runs libtorch (custom_ops' tests): it finds
    // it the way the kiln binary does (host/build.rs).
    let lib = torch.join("lib");
    println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rerun-if-changed=csrc/ops.cpp");
    Ok(())
}

/// Compiles csrc/cuda.cpp. Headers: libtorch's (next to the library
/// tch links) and the CUDA runtime's: `KILN_CUDA_INCLUDE`, else the pip
/// wheels' beside torch (triton's, nvidia's), else /usr/local/cuda.
fn build_cuda_edge() -> Result<(), Box<dyn std::error::Error>> {
    use std::path::PathBuf;
    let torch = torch_dir()?;
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
    torch_build(&torch)
        .file("csrc/cuda.cpp")
        .include(&cuda)
        .compile("kiln_cuda");
    println!("cargo:rustc-link-lib=dylib=c10_cuda");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rerun-if-changed=csrc/cuda.cpp");
    Ok(())
}
