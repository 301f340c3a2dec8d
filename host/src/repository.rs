//! Repository sources by location: the one place a new kind of repository
//! is registered. A folder is read where it is; an object-store URL is
//! listed and downloaded into the cache (kiln-object-repository).

use std::path::Path;

use anyhow::Context;
use kiln_repository::{LocalRepository, MultiRepository, RepositorySource};

use crate::settings::RepositoryLocation;

/// The repositories of `--model-repository`, served as one.
pub fn open_all(
    locations: &[RepositoryLocation],
    cache: &Path,
) -> anyhow::Result<Box<dyn RepositorySource>> {
    let mut sources = locations
        .iter()
        .map(|l| open(l, cache))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(if sources.len() == 1 {
        sources.remove(0)
    } else {
        Box::new(MultiRepository::new(sources))
    })
}

fn open(location: &RepositoryLocation, cache: &Path) -> anyhow::Result<Box<dyn RepositorySource>> {
    Ok(match location {
        RepositoryLocation::Local(dir) => {
            let dir = dir
                .canonicalize()
                .with_context(|| format!("model repository {}", dir.display()))?;
            Box::new(LocalRepository::new(dir))
        }
        RepositoryLocation::Remote(url) => Box::new(
            kiln_object_repository::ObjectRepository::open(url, cache)
                .map_err(anyhow::Error::msg)?,
        ),
    })
}
