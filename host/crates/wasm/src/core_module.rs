//! The core-module ABI (sdk/ABI.md): a core module that exports the
//! canonical-ABI lowering of `world plugin` plus an ABI-version marker is
//! wrapped into a component here, in process, and then served like any
//! component. The marker decides the world: any type information the
//! toolchain embedded is replaced by the world of the marker's version, so
//! what the module claims and what kiln links always agree.

use wasmparser::{Parser, Payload, TypeRef};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

use crate::binary::AbiVersion;

/// The WIT of every supported version, as shipped in `sdk/wit`.
fn world_source(abi: AbiVersion) -> &'static str {
    match (abi.major, abi.minor) {
        (1, 0) => include_str!("../../../../sdk/wit/v1.0.0/plugin.wit"),
        (1, 1) => include_str!("../../../../sdk/wit/v1.1.0/plugin.wit"),
        _ => include_str!("../../../../sdk/wit/plugin.wit"),
    }
}

/// Wraps a marked core module into a component of the marker's world.
pub fn componentize(core: &[u8], abi: AbiVersion) -> Result<Vec<u8>, String> {
    refuse_wasi_imports(core)?;
    let mismatch = |e: anyhow::Error| {
        format!(
            "the core module does not implement kiln:plugin@{abi} (its marker export says it does): {e:#}"
        )
    };
    let mut resolve = Resolve::default();
    let package = resolve
        .push_str("plugin.wit", world_source(abi))
        .expect("the shipped WIT parses");
    let world = resolve
        .select_world(&[package], Some("plugin"))
        .expect("the shipped WIT has world plugin");
    let (stripped, _) = wit_component::metadata::decode(core).map_err(mismatch)?;
    let mut module = stripped.unwrap_or_else(|| core.to_vec());
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .map_err(mismatch)?;
    ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|mut encoder| encoder.encode())
        .map_err(mismatch)
}

/// kiln does not link the WASI preview-1 adapter (it brings in
/// `wasi:filesystem`); a core module must not import preview 1.
fn refuse_wasi_imports(core: &[u8]) -> Result<(), String> {
    for payload in Parser::new(0).parse_all(core) {
        let Ok(Payload::ImportSection(imports)) = payload else {
            continue;
        };
        for import in imports.into_imports().flatten() {
            if import.module == "wasi_snapshot_preview1" && matches!(import.ty, TypeRef::Func(_)) {
                return Err(format!(
                    "the core module imports 'wasi_snapshot_preview1::{}'; core-module plugins may not import WASI (use kiln:plugin/host for logging, and build without stdio or files), or build a component",
                    import.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::test_module;

    /// A core module with the 1.0.0 marker and, optionally, a WASI import.
    fn marked_module(wasi_import: bool) -> Vec<u8> {
        let imports: &[(&str, &str)] = if wasi_import {
            &[("wasi_snapshot_preview1", "fd_write")]
        } else {
            &[]
        };
        test_module(imports, &["kiln_abi_version_1_0_0"])
    }

    #[test]
    fn wasi_preview1_imports_are_refused_by_name() {
        let e = componentize(&marked_module(true), AbiVersion::new(1, 0, 0)).unwrap_err();
        assert!(e.contains("'wasi_snapshot_preview1::fd_write'"), "{e}");
    }

    #[test]
    fn a_module_missing_the_world_exports_is_refused() {
        let e = componentize(&marked_module(false), AbiVersion::new(1, 0, 0)).unwrap_err();
        assert!(e.contains("does not implement kiln:plugin@1.0.0"), "{e}");
    }
}
