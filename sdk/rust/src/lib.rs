//! Rust SDK for **kiln** WebAssembly plugins and op plugins, ABI `kiln:plugin@1.2.0`.
//!
//! A kiln plugin is a WebAssembly component that kiln serves as a model
//! (`backend: "wasm"`, `<version>/model.wasm` in the model repository). It
//! receives a request's input tensors and returns output tensors. This crate
//! wraps the bindings generated from `sdk/wit/plugin.wit` behind a small,
//! typed API:
//!
//! * [`Plugin`]: the trait a plugin implements, and [`export_plugin!`], the
//!   macro that exports it as the component's `kiln:plugin/processor`.
//! * [`Tensor`] with typed views ([`Tensor::as_f32`], ...), in-place views
//!   ([`Tensor::as_f32_mut`], ...) and builders ([`Tensor::from_f32`], ...);
//!   BYTES tensors through [`Tensor::elements`], [`Tensor::from_bytes`] and
//!   [`Tensor::from_strings`].
//! * [`Inputs`] (look a tensor up by name; the error names the missing one)
//!   and [`Params`] (the request's KServe `parameters`).
//! * [`Error`] with [`Error::invalid`], [`Error::unavailable`] and
//!   [`Error::internal`], mapped by kiln to gRPC `INVALID_ARGUMENT` /
//!   `UNAVAILABLE` / `INTERNAL` (HTTP 400 / 503 / 500).
//! * [`log`], [`config`] and [`time`]: the `kiln:plugin/host` imports.
//!
//! # Example
//!
//! ```no_run
//! use kiln_plugin::{config, Datatype, Error, Inputs, Metadata, Params, Plugin, Tensor, TensorSpec};
//!
//! struct Scale;
//!
//! impl Plugin for Scale {
//!     fn metadata() -> Metadata {
//!         Metadata::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
//!             .input(TensorSpec::new("INPUT", Datatype::Fp32, &[-1]))
//!             .output(TensorSpec::new("OUTPUT", Datatype::Fp32, &[-1]))
//!     }
//!
//!     fn process(mut inputs: Inputs, _params: &Params) -> Result<Vec<Tensor>, Error> {
//!         let factor: f32 = config::get_or("factor", 2.0)?;
//!         let mut t = inputs.take("INPUT")?;
//!         for x in t.as_f32_mut()? {
//!             *x *= factor;
//!         }
//!         Ok(vec![t.with_name("OUTPUT")])
//!     }
//! }
//!
//! kiln_plugin::export_plugin!(Scale);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`: the `cdylib`
//! that comes out is a component, ready to be copied to
//! `<model>/<version>/model.wasm`.
//!
//! # Panics and traps
//!
//! A panic aborts the component (Rust's `wasm32` targets use
//! `panic = "abort"`): kiln sees a trap, fails that one request with an
//! INTERNAL error and replaces the instance. The SDK installs a panic hook
//! that first writes the panic message and location to kiln's log (level
//! `error`). Return an [`Error`] for anything a client can cause.
//!
//! # Instances and state
//!
//! An instance handles one call at a time and may be reused for many calls;
//! kiln may create several instances of one model, and replaces an instance
//! after a trap. Plugin state kept in statics (`OnceLock`, `thread_local!`)
//! is therefore per instance and may be dropped at any time.

#![warn(missing_docs)]

mod error;
pub mod host;
mod inputs;
mod plugin;
mod tensor;

/// The bindings generated from `sdk/wit` (not a stable API: use the
/// re-exports at the crate root).
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "kiln_plugin::bindings",
    });
}

/// The op-plugin world's bindings (not a stable API: use [`ops`]).
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings_ops {
    wit_bindgen::generate!({
        path: "../wit",
        world: "op-plugin",
        with: {
            "kiln:plugin/types@1.2.0": crate::bindings::kiln::plugin::types,
            "kiln:plugin/host@1.2.0": crate::bindings::kiln::plugin::host,
        },
        pub_export_macro: true,
        export_macro_name: "__export_op_world",
        default_bindings_module: "kiln_plugin::bindings_ops",
    });
}

pub mod ops;

pub use bindings::kiln::plugin::types::{
    Datatype, Error, ErrorKind, Metadata, Parameter, ParameterValue, Tensor, TensorSpec,
};
pub use error::Result;
pub use host::{config, log, time};
pub use inputs::{Inputs, Params};
pub use plugin::Plugin;
pub use tensor::Element;

/// The `half` crate, for [`f16`](half::f16) and [`bf16`](half::bf16)
/// elements (FP16 and BF16 tensors).
pub use half;

/// The ABI version this SDK targets (the WIT package `kiln:plugin@1.2.0`).
pub const ABI_VERSION: &str = "1.2.0";

#[doc(hidden)]
pub mod __private {
    pub use crate::plugin::{metadata, process};
}

#[cfg(test)]
mod tests {
    /// `ABI_VERSION` and the `Cargo.toml` description name the WIT package
    /// the bindings are generated from (sdk/wit/plugin.wit).
    #[test]
    fn abi_version_is_the_wit_package_version() {
        let wit = include_str!("../../wit/plugin.wit");
        let package = format!("package kiln:plugin@{};", super::ABI_VERSION);
        assert!(
            wit.lines().any(|l| l.trim() == package),
            "{package} not in sdk/wit/plugin.wit"
        );
        let abi = format!("kiln:plugin@{}", super::ABI_VERSION);
        assert!(env!("CARGO_PKG_DESCRIPTION").contains(&abi));
    }
}
