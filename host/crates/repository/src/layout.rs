//! The Triton repository layout on disk: `<repo>/<model>/config.pbtxt`,
//! `<repo>/<model>/<version>/<model file>`, version folders numeric.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Model directories of the repository, by name (hidden entries skipped).
pub fn model_dirs(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        out.push((name, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Numeric version folders of a model directory.
pub fn versions(model_dir: &Path) -> Vec<i64> {
    let mut out: Vec<i64> = std::fs::read_dir(model_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()))
        .filter(|&v| v >= 0)
        .collect();
    out.sort_unstable();
    out
}

/// A change detector over the files under `dir` (recursively when `deep`):
/// names, sizes and modification times, plus the content of small files
/// (configs, labels, most plugins), whose edits can land within one mtime tick
/// and keep their size. Used by poll mode and explicit loads to decide what to
/// reload.
const CONTENT_HASH_LIMIT: u64 = 1 << 20;

pub fn fingerprint(dir: &Path, deep: bool) -> u64 {
    let mut hasher = DefaultHasher::new();
    walk(dir, deep, &mut hasher);
    hasher.finish()
}

fn walk(dir: &Path, deep: bool, hasher: &mut DefaultHasher) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            if deep {
                e.file_name().hash(hasher);
                walk(&e.path(), deep, hasher);
            }
            continue;
        }
        e.file_name().hash(hasher);
        meta.len().hash(hasher);
        meta.modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .hash(hasher);
        if meta.len() <= CONTENT_HASH_LIMIT {
            std::fs::read(e.path()).ok().hash(hasher);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_numeric_folders_only() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["1", "10", "2", "latest", ".3"] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
        }
        std::fs::write(tmp.path().join("4"), "file, not a folder").unwrap();
        assert_eq!(versions(tmp.path()), vec![1, 2, 10]);
    }

    #[test]
    fn fingerprint_changes_with_content() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("config.pbtxt"), "a").unwrap();
        let a = fingerprint(tmp.path(), false);
        std::fs::write(tmp.path().join("config.pbtxt"), "ab").unwrap();
        let b = fingerprint(tmp.path(), false);
        assert_ne!(a, b);
        // Same size, possibly the same mtime tick: content still tells.
        std::fs::write(tmp.path().join("config.pbtxt"), "ac").unwrap();
        assert_ne!(b, fingerprint(tmp.path(), false));
    }
}
