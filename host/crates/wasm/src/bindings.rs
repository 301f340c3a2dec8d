//! The bindings of the plugin world (`sdk/wit`, package `kiln:plugin`), shared
//! by plugins and op plugins.

wasmtime::component::bindgen!({
    path: "../../../sdk/wit",
    world: "plugin",
});

/// The data model every call shares.
pub use self::kiln::plugin::types as wit;
