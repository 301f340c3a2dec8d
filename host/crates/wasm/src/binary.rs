//! What kind of `model.wasm` a plugin is (sdk/ABI.md, "Core-module ABI"):
//! a component; a core module of the core-module ABI, recognised by its
//! ABI-version marker export; or a WASI command module that speaks the
//! command protocol on stdin/stdout.

use std::fmt;

use wasmparser::{Encoding, ExternalKind, Parser, Payload};

/// A plugin ABI version (`kiln:plugin@major.minor.patch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl AbiVersion {
    /// Versions this host serves, oldest first (sdk/ABI.md, "Compatibility").
    pub const SUPPORTED: [AbiVersion; 3] = [
        AbiVersion::new(1, 0, 0),
        AbiVersion::new(1, 1, 0),
        AbiVersion::new(1, 2, 0),
    ];

    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// The marker export a core module of this version carries.
    pub fn marker(self) -> String {
        format!(
            "{MARKER_PREFIX}{}_{}_{}",
            self.major, self.minor, self.patch
        )
    }

    fn from_marker(name: &str) -> Option<Self> {
        let mut parts = name.strip_prefix(MARKER_PREFIX)?.split('_');
        let mut next = || parts.next()?.parse().ok();
        let version = Self::new(next()?, next()?, next()?);
        parts.next().is_none().then_some(version)
    }
}

impl fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

const MARKER_PREFIX: &str = "kiln_abi_version_";

/// How kiln serves a `model.wasm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginBinary {
    Component,
    /// A core module of the core-module ABI, wrapped into a component at load.
    CoreModule(AbiVersion),
    /// A WASI command module (`_start`), run once per call (command protocol 1).
    Command,
}

/// Classifies `wasm` by its header and exports; refuses a core module that
/// is neither a marked core module nor a command, naming what it lacks.
pub fn classify(wasm: &[u8]) -> Result<PluginBinary, String> {
    let mut markers = Vec::new();
    let mut has_start = false;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| format!("not a WebAssembly binary: {e}"))? {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => return Ok(PluginBinary::Component),
            Payload::ExportSection(exports) => {
                for export in exports {
                    let export = export.map_err(|e| format!("malformed export section: {e}"))?;
                    if export.kind != ExternalKind::Func {
                        continue;
                    }
                    if export.name == "_start" {
                        has_start = true;
                    } else if export.name.starts_with(MARKER_PREFIX) {
                        markers.push(export.name.to_string());
                    }
                }
                // Exports are all that is needed; skip the code.
                break;
            }
            _ => {}
        }
    }
    let supported = || {
        AbiVersion::SUPPORTED
            .iter()
            .map(|v| v.marker())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match markers.as_slice() {
        [] if has_start => Ok(PluginBinary::Command),
        [] => Err(format!(
            "this is a core WebAssembly module without a kiln ABI-version marker export; export one of: {} (a function of type () -> ()), or build a component, or a WASI command module (see sdk/ABI.md)",
            supported()
        )),
        [one] => match AbiVersion::from_marker(one) {
            Some(v) if AbiVersion::SUPPORTED.contains(&v) => Ok(PluginBinary::CoreModule(v)),
            _ => Err(format!(
                "the module's marker export '{one}' names a plugin ABI this kiln does not support; supported: {}",
                supported()
            )),
        },
        many => Err(format!(
            "the module exports several ABI-version markers ({}); export exactly one",
            many.join(", ")
        )),
    }
}

/// A small core module for tests: function imports (WASI `fd_write`'s
/// signature) and exports of one empty function.
#[cfg(test)]
pub(super) fn test_module(imports: &[(&str, &str)], exports: &[&str]) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection,
        ImportSection, Instruction, Module, TypeSection, ValType,
    };
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    types.ty().function([ValType::I32; 4], [ValType::I32]);
    m.section(&types);
    let mut section = ImportSection::new();
    for (module, name) in imports {
        section.import(module, name, EntityType::Function(1));
    }
    m.section(&section);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    m.section(&funcs);
    let mut ex = ExportSection::new();
    for name in exports {
        ex.export(name, ExportKind::Func, imports.len() as u32);
    }
    m.section(&ex);
    let mut code = CodeSection::new();
    let mut f = Function::new([]);
    f.instruction(&Instruction::End);
    code.function(&f);
    m.section(&code);
    m.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(exports: &[&str]) -> Vec<u8> {
        test_module(&[], exports)
    }

    #[test]
    fn marker_selects_the_abi_version() {
        assert_eq!(
            classify(&module(&["kiln_abi_version_1_0_0"])).unwrap(),
            PluginBinary::CoreModule(AbiVersion::new(1, 0, 0))
        );
        assert_eq!(
            classify(&module(&["x", "kiln_abi_version_1_1_0"])).unwrap(),
            PluginBinary::CoreModule(AbiVersion::new(1, 1, 0))
        );
    }

    #[test]
    fn command_modules_and_components_are_recognised() {
        assert_eq!(
            classify(&module(&["_start"])).unwrap(),
            PluginBinary::Command
        );
        let component = wasm_encoder::Component::new().finish();
        assert_eq!(classify(&component).unwrap(), PluginBinary::Component);
    }

    #[test]
    fn unmarked_unknown_and_ambiguous_modules_are_refused() {
        let e = classify(&module(&["process"])).unwrap_err();
        assert!(e.contains("kiln_abi_version_1_1_0"), "{e}");
        let e = classify(&module(&["kiln_abi_version_2_0_0"])).unwrap_err();
        assert!(
            e.contains("'kiln_abi_version_2_0_0'") && e.contains("does not support"),
            "{e}"
        );
        let e = classify(&module(&["kiln_abi_version_1_0"])).unwrap_err();
        assert!(e.contains("does not support"), "{e}");
        let e = classify(&module(&[
            "kiln_abi_version_1_0_0",
            "kiln_abi_version_1_1_0",
        ]))
        .unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        assert!(classify(b"not wasm")
            .unwrap_err()
            .contains("not a WebAssembly"));
    }
}
