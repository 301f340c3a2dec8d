//! WebAssembly plugins as models (`backend: "wasm"`, `<version>/model.wasm`).
//!
//! The engine, limits, grants and compiled-artifact cache are kiln-sandbox's.
//! Components are compiled once per content (the sandbox's cache), pre-instantiated
//! once per model version, and instantiated per model instance into the
//! pooling allocator. Each call runs under an epoch deadline, inside a memory
//! cap (ResourceLimiter), optionally with fuel. A trap, a timeout or a cap hit
//! fails that one request with a clear error and the instance is replaced by
//! a fresh one from the pre-instantiation; the server and the other models
//! never notice.
//!
//! Three kinds of `model.wasm` are served as models (see `binary`):
//! components (`component`); core modules of the core-module ABI, wrapped
//! into components at load (`core_module`); and WASI command modules, run
//! once per call over the command protocol (`command`). A fourth backend,
//! `wasm_ops` (`op_plugin`), serves op plugins: components that provide
//! custom ops to TorchScript models and take no requests themselves.

#![forbid(unsafe_code)]

mod binary;
mod bindings;
mod command;
mod component;
mod contract;
mod convert;
mod core_module;
mod op_plugin;
mod settings;
mod state;
pub mod wire;

pub use component::{load, WasmFactory, WasmInstance, WasmRuntime};
pub use op_plugin::{WasmOps, WasmOpsFactory};
pub use settings::{PluginSettings, DEFAULT_LOG_BYTES, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_MS};
pub use state::PluginState;
