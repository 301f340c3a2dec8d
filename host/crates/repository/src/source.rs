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

impl RepositorySource for Box<dyn RepositorySource> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn models(&self) -> std::io::Result<Vec<String>> {
        (**self).models()
    }
    fn fingerprint(&self, name: &str) -> Option<u64> {
        (**self).fingerprint(name)
    }
    fn materialize(&self, name: &str) -> std::io::Result<PathBuf> {
        (**self).materialize(name)
    }
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

/// Several repositories served as one (`--model-repository` given more
/// than once, local and remote mixed, as in Triton). A model name must be
/// in only one of them: one that is in two fails to load, naming both.
pub struct MultiRepository {
    sources: Vec<Box<dyn RepositorySource>>,
}

impl MultiRepository {
    pub fn new(sources: Vec<Box<dyn RepositorySource>>) -> Self {
        Self { sources }
    }

    /// The sources that hold `name`, by index.
    fn holders(&self, name: &str) -> Vec<usize> {
        (0..self.sources.len())
            .filter(|&i| self.sources[i].fingerprint(name).is_some())
            .collect()
    }
}

impl RepositorySource for MultiRepository {
    fn location(&self) -> String {
        self.sources
            .iter()
            .map(|s| s.location())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn models(&self) -> std::io::Result<Vec<String>> {
        let mut all = std::collections::BTreeSet::new();
        for source in &self.sources {
            let names = source.models().map_err(|e| {
                std::io::Error::new(e.kind(), format!("{}: {e}", source.location()))
            })?;
            all.extend(names);
        }
        Ok(all.into_iter().collect())
    }

    fn fingerprint(&self, name: &str) -> Option<u64> {
        // Every holder's: a model that appears in a second repository
        // changes, and its next load reports the clash.
        let prints: Vec<u64> = self
            .sources
            .iter()
            .filter_map(|s| s.fingerprint(name))
            .collect();
        match prints.as_slice() {
            [] => None,
            [one] => Some(*one),
            many => Some(many.iter().fold(0u64, |h, p| h.rotate_left(7) ^ p)),
        }
    }

    fn materialize(&self, name: &str) -> std::io::Result<PathBuf> {
        match self.holders(name).as_slice() {
            [] => Err(std::io::ErrorKind::NotFound.into()),
            [one] => self.sources[*one].materialize(name),
            many => Err(std::io::Error::other(format!(
                "the model is in more than one repository ({}); a model name must be unique across repositories",
                many.iter()
                    .map(|&i| self.sources[i].location())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(root: &std::path::Path, name: &str) {
        std::fs::create_dir_all(root.join(name).join("1")).unwrap();
        std::fs::write(root.join(name).join("config.pbtxt"), "").unwrap();
    }

    #[test]
    fn several_repositories_serve_as_one_and_refuse_a_name_in_two() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        model(a.path(), "x");
        model(b.path(), "y");
        model(b.path(), "both");
        model(a.path(), "both");
        let multi = MultiRepository::new(vec![
            Box::new(LocalRepository::new(a.path())),
            Box::new(LocalRepository::new(b.path())),
        ]);
        assert_eq!(multi.models().unwrap(), ["both", "x", "y"]);
        assert_eq!(multi.materialize("y").unwrap(), b.path().join("y"));
        assert!(multi.fingerprint("x").is_some() && multi.fingerprint("z").is_none());
        let e = multi.materialize("both").unwrap_err().to_string();
        assert!(
            e.contains("more than one repository") && e.contains(&a.path().display().to_string()),
            "{e}"
        );
        assert_eq!(
            multi.materialize("z").unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    }
}
