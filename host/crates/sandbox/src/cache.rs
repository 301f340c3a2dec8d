//! Compiled-plugin cache. Compiling a component (JavaScript and Python ones
//! take seconds) happens once per content: artifacts are stored on disk under
//! a key of the wasm's SHA-256, the wasmtime version and the engine's
//! compatibility hash, so a restart, a reload of unchanged bytes, or another
//! model using the same plugin skips compilation.
//!
//! Deserializing an artifact runs the machine code in it, so the cache is
//! trusted only as far as nobody but kiln can write it: the directory is
//! created 0700, and a directory that another user owns or that group or
//! others may write disables the cache (every load compiles). Each artifact
//! file starts with the SHA-256 of the rest, checked before the rest is
//! deserialized from memory (never from the file a second time, which could
//! have changed since).
#![allow(unsafe_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

impl ArtifactCache {
    /// `dir = None` disables the cache (every load compiles), as does a
    /// directory kiln cannot trust (see the module's documentation).
    pub fn new(dir: Option<PathBuf>) -> Self {
        if let Some(d) = &dir {
            if let Err(e) = private_dir(d) {
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
            |e, bytes| unsafe { Component::deserialize(e, bytes) },
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
            |e, bytes| unsafe { Module::deserialize(e, bytes) },
            |m| m.serialize(),
        )
    }

    /// `deserialize` is only ever given bytes this cache wrote: serialized by
    /// this same wasmtime build and engine configuration (both are part of
    /// the key), into a directory only kiln's user can write, and matching
    /// the SHA-256 recorded with them. Anything else (a corrupt, truncated or
    /// foreign file) is ignored and the plugin compiled again.
    fn load<T>(
        &self,
        engine: &Engine,
        wasm: &[u8],
        kind: &str,
        compile: impl Fn(&Engine, &[u8]) -> wasmtime::Result<T>,
        deserialize: impl Fn(&Engine, &[u8]) -> wasmtime::Result<T>,
        serialize: impl Fn(&T) -> wasmtime::Result<Vec<u8>>,
    ) -> wasmtime::Result<(T, bool)> {
        let Some(dir) = &self.dir else {
            return Ok((compile(engine, wasm)?, false));
        };
        let path = dir.join(Self::key(engine, wasm, kind));
        match read_checked(&path) {
            Ok(Some(artifact)) => match deserialize(engine, &artifact) {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached plugin: {e}")
                }
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(path = %path.display(), "ignoring cached plugin: {e}"),
        }
        let compiled = compile(engine, wasm)?;
        if let Err(e) = write_atomically(&path, &with_digest(&serialize(&compiled)?)) {
            tracing::warn!(path = %path.display(), "cannot cache compiled plugin: {e}");
        }
        Ok((compiled, false))
    }
}

/// Creates `dir` (0700) if needed and checks that only this user can write
/// it: owned by the effective user, not writable by group or others.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::PermissionDenied, why);
    if !meta.is_dir() {
        return Err(invalid("not a directory (a symlink?)".into()));
    }
    let me = effective_uid();
    if meta.uid() != me {
        return Err(invalid(format!(
            "owned by uid {}, not by kiln's user (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(invalid(format!(
            "mode {:o} lets group or others write it; chmod 700 it",
            meta.mode() & 0o777
        )));
    }
    Ok(())
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

const DIGEST_BYTES: usize = 32;

/// An artifact as stored: the SHA-256 of `artifact`, then `artifact`.
fn with_digest(artifact: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(DIGEST_BYTES + artifact.len());
    stored.extend_from_slice(&Sha256::digest(artifact));
    stored.extend_from_slice(artifact);
    stored
}

/// The artifact stored at `path` if its recorded digest matches; `None`
/// when there is no file; an error for a file that does not check out.
fn read_checked(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut stored = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if stored.len() < DIGEST_BYTES
        || Sha256::digest(&stored[DIGEST_BYTES..])[..] != stored[..DIGEST_BYTES]
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "its contents do not match the digest recorded with them",
        ));
    }
    stored.drain(..DIGEST_BYTES);
    Ok(Some(stored))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_directory_others_can_write_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wasm");
        assert!(ArtifactCache::new(Some(dir.clone())).dir.is_some());
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ArtifactCache::new(Some(dir)).dir.is_none());
    }

    #[test]
    fn an_artifact_that_does_not_match_its_digest_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.cwasm");
        assert!(read_checked(&path).unwrap().is_none());
        write_atomically(&path, &with_digest(b"compiled code")).unwrap();
        assert_eq!(read_checked(&path).unwrap().unwrap(), b"compiled code");
        let mut stored = std::fs::read(&path).unwrap();
        *stored.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &stored).unwrap();
        assert!(read_checked(&path).is_err());
        std::fs::write(&path, b"short").unwrap();
        assert!(read_checked(&path).is_err());
    }
}
