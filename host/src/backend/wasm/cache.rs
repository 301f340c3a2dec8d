//! Compiled-plugin cache. Compiling a component (JavaScript and Python ones
//! take seconds) happens once per content: artifacts are stored on disk under
//! a key of the wasm's SHA-256, the wasmtime version and the engine's
//! compatibility hash, so a restart, a reload of unchanged bytes, or another
//! model using the same plugin skips compilation.
#![allow(unsafe_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

impl ArtifactCache {
    /// `dir = None` disables the cache (every load compiles).
    pub fn new(dir: Option<PathBuf>) -> Self {
        if let Some(d) = &dir {
            if let Err(e) = std::fs::create_dir_all(d) {
                tracing::warn!(dir = %d.display(), "plugin cache disabled: {e}");
                return Self { dir: None };
            }
        }
        Self { dir }
    }

    fn key(engine: &Engine, wasm: &[u8], kind: &str) -> String {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let digest = Sha256::digest(wasm);
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        // The compatibility hash covers the wasmtime version and engine settings.
        format!("{hex}-{:016x}.{kind}", h.finish())
    }

    /// The compiled component for `wasm`, from the cache when present.
    /// Returns whether it was a cache hit.
    pub fn component(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<(Component, bool)> {
        self.load(
            engine,
            wasm,
            "cwasm",
            |e, w| Component::new(e, w),
            // SAFETY: see `load`.
            |e, p| unsafe { Component::deserialize_file(e, p) },
            |c| c.serialize(),
        )
    }

    /// The compiled core module (a command module) for `wasm`.
    pub fn module(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<(Module, bool)> {
        self.load(
            engine,
            wasm,
            "cmodule",
            |e, w| Module::new(e, w),
            // SAFETY: see `load`.
            |e, p| unsafe { Module::deserialize_file(e, p) },
            |m| m.serialize(),
        )
    }

    /// `deserialize` is only ever given a file this cache wrote: one
    /// serialized by this same wasmtime build and engine configuration (both
    /// are part of the key), into a cache directory kiln owns. A corrupt or
    /// foreign file fails validation of its header and falls back to
    /// compiling.
    fn load<T>(
        &self,
        engine: &Engine,
        wasm: &[u8],
        kind: &str,
        compile: impl Fn(&Engine, &[u8]) -> wasmtime::Result<T>,
        deserialize: impl Fn(&Engine, &Path) -> wasmtime::Result<T>,
        serialize: impl Fn(&T) -> wasmtime::Result<Vec<u8>>,
    ) -> wasmtime::Result<(T, bool)> {
        let Some(dir) = &self.dir else {
            return Ok((compile(engine, wasm)?, false));
        };
        let path = dir.join(Self::key(engine, wasm, kind));
        if path.is_file() {
            match deserialize(engine, &path) {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached plugin: {e}")
                }
            }
        }
        let compiled = compile(engine, wasm)?;
        if let Err(e) = write_atomically(&path, &serialize(&compiled)?) {
            tracing::warn!(path = %path.display(), "cannot cache compiled plugin: {e}");
        }
        Ok((compiled, false))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}
