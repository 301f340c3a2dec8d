//! Where models come from. The registry loads from local directories in
//! Triton's layout; a [`RepositorySource`] lists a repository's models and
//! makes one model's directory local. The filesystem source
//! ([`LocalRepository`]) only points at it; an object-store source downloads
//! into a cache directory and answers the same way.

use std::path::PathBuf;

use crate::layout;

pub trait RepositorySource: Send + Sync + 'static {
    /// The repository as messages name it ("/models", "s3://bucket/prefix").
    fn location(&self) -> String;

    /// Model names, sorted; hidden entries skipped.
    fn models(&self) -> std::io::Result<Vec<String>>;

    /// A value that changes whenever anything of model `name` changes (its
    /// config, label files or version folders); poll mode reloads on a
    /// change. `None` when the model is not there.
    fn fingerprint(&self, name: &str) -> Option<u64>;

    /// A local directory holding model `name` in Triton's layout
    /// (`config.pbtxt`, label files, numeric version folders), current as of
    /// this call. `NotFound` when the repository has no such model.
    fn materialize(&self, name: &str) -> std::io::Result<PathBuf>;
}

/// A repository on a local filesystem: `<root>/<model>/...`.
pub struct LocalRepository {
    root: PathBuf,
}

impl LocalRepository {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

impl RepositorySource for LocalRepository {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn models(&self) -> std::io::Result<Vec<String>> {
        Ok(layout::model_dirs(&self.root)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    fn fingerprint(&self, name: &str) -> Option<u64> {
        let dir = self.root.join(name);
        dir.is_dir().then(|| layout::fingerprint(&dir, true))
    }

    fn materialize(&self, name: &str) -> std::io::Result<PathBuf> {
        let dir = self.root.join(name);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(std::io::ErrorKind::NotFound.into())
        }
    }
}
