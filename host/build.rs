//! Build script: fixes the two libtorch link gotchas of the binaries (README, "GPU"): a
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

    Ok(())
}
