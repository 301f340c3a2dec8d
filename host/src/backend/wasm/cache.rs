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
use wasmtime::Engine;

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

    fn key(engine: &Engine, wasm: &[u8]) -> String {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let digest = Sha256::digest(wasm);
        let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
        // The compatibility hash covers the wasmtime version and engine settings.
        format!("{hex}-{:016x}.cwasm", h.finish())
    }

    /// The compiled component for `wasm`, from the cache when present.
    /// Returns whether it was a cache hit.
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> wasmtime::Result<(Component, bool)> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, wasm)?, false));
        };
        let path = dir.join(Self::key(engine, wasm));
        if path.is_file() {
            // SAFETY: the file was written by `Component::serialize` of this
            // same wasmtime build and engine configuration (both are part of
            // the key), into a cache directory kiln owns. A corrupt or foreign
            // file fails validation of its header and falls back to compiling.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached plugin: {e}")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(e) = write_atomically(&path, &component.serialize()?) {
            tracing::warn!(path = %path.display(), "cannot cache compiled plugin: {e}");
        }
        Ok((component, false))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}
