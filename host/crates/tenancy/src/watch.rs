//! The tenants file while kiln serves: the version in force, swapped
//! atomically when the file changes. A request reads the version in force
//! once, at admission, and keeps what it was given (its tenant's name and
//! scopes) to the end, so a reload never affects a request in flight.
//!
//! Changes are found by polling the file's content (kiln's server calls
//! [`TenantsWatch::reload_if_changed`] every second): content, not mtime,
//! because Kubernetes replaces a mounted ConfigMap by swapping a symlink,
//! and a rewrite within one mtime tick must not be missed. A file that fails
//! to read, parse or validate keeps the previous version in force and is
//! logged once per distinct content, not once per poll.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::file::{read_text, Tenants, TenantsError};
use crate::meter::Meters;

pub struct TenantsWatch {
    path: PathBuf,
    current: ArcSwap<Tenants>,
    /// What each tenant spends now (quotas), kept across reloads.
    meters: Meters,
    /// SHA-256 of the content last looked at (in force or refused).
    seen: Mutex<[u8; 32]>,
}

/// What [`TenantsWatch::reload_if_changed`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    /// The new version is in force; it has this many tenants.
    Replaced(usize),
    /// The new content was refused; the previous version stays in force.
    Refused(TenantsError),
}

impl TenantsWatch {
    /// Reads the file; an error here is fatal to the caller (kiln refuses
    /// to start with a broken tenants file rather than serve nobody or
    /// everybody).
    pub fn open(path: &Path) -> Result<Self, TenantsError> {
        let text = read_text(path)?;
        let tenants = Tenants::parse(path, &text)?;
        let seen = fingerprint(&text, &tenants);
        Ok(Self {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(tenants),
            meters: Meters::default(),
            seen: Mutex::new(seen),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version in force.
    pub fn current(&self) -> Arc<Tenants> {
        self.current.load_full()
    }

    /// The tenants' quota meters.
    pub fn meters(&self) -> &Meters {
        &self.meters
    }

    /// Re-reads the file; swaps in its new content if that validates.
    /// Blocking (file I/O): call it off the async workers.
    pub fn reload_if_changed(&self) -> Reload {
        let mut seen = self.seen.lock();
        let text = match read_text(&self.path) {
            Ok(text) => text,
            Err(e) => {
                // Unreadable (being replaced, deleted): refused once until
                // it reads again.
                let marker = [0u8; 32];
                if *seen == marker {
                    return Reload::Unchanged;
                }
                *seen = marker;
                tracing::error!(file = %self.path.display(), "tenants file refused, the previous one stays in force: {e}");
                return Reload::Refused(e);
            }
        };
        let digest = fingerprint(&text, &self.current());
        if *seen == digest {
            return Reload::Unchanged;
        }
        *seen = digest;
        match Tenants::parse(&self.path, &text) {
            Ok(tenants) => {
                // As the new file names its JWKS, so a JWKS it newly names
                // is not taken for a change on the next poll.
                *seen = fingerprint(&text, &tenants);
                let n = tenants.len();
                self.meters.retain(&tenants);
                tracing::info!(file = %self.path.display(), tenants = n, "tenants file reloaded");
                for w in tenants.warnings() {
                    tracing::warn!("{w}");
                }
                self.current.store(Arc::new(tenants));
                Reload::Replaced(n)
            }
            Err(e) => {
                tracing::error!(file = %self.path.display(), "tenants file refused, the previous one stays in force: {e}");
                Reload::Refused(e)
            }
        }
    }
}

/// What a change of the tenants file or of the JWKS file it names (as the
/// file in force names it) changes.
fn fingerprint(text: &str, current: &Tenants) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    if let Some(jwt) = current.jwt() {
        h.update(Sha256::digest(crate::jwt::jwks_bytes(jwt.jwks_path())));
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALPHA: &str = "sha256:8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8";
    const BETA: &str = "sha256:f44e64e75f3948e9f73f8dfa94721c4ce8cbb4f265c4790c702b2d41cfbf2753";

    fn file_with(dir: &Path, key: &str) -> PathBuf {
        let file = dir.join("tenants.toml");
        std::fs::write(
            &file,
            format!("[[tenant]]\nname = \"a\"\napi_keys = [\"{key}\"]\nscopes = [\"infer\"]\n"),
        )
        .unwrap();
        file
    }

    #[test]
    fn a_rotated_key_takes_over_and_a_broken_file_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_with(dir.path(), ALPHA);
        let watch = TenantsWatch::open(&file).unwrap();
        assert_eq!(watch.reload_if_changed(), Reload::Unchanged);
        let before = watch.current();

        file_with(dir.path(), BETA);
        assert_eq!(watch.reload_if_changed(), Reload::Replaced(1));
        assert!(watch.current().by_api_key("beta").is_some());
        assert!(watch.current().by_api_key("alpha").is_none());
        // What a request took before the reload is unchanged.
        assert!(before.by_api_key("alpha").is_some());

        std::fs::write(&file, "[[tenant]]\nname = \"a\"\n").unwrap();
        let Reload::Refused(e) = watch.reload_if_changed() else {
            panic!("a broken file must be refused")
        };
        assert!(e.0.contains("missing field"), "{e}");
        assert_eq!(watch.reload_if_changed(), Reload::Unchanged, "refused once");
        assert!(watch.current().by_api_key("beta").is_some());

        std::fs::remove_file(&file).unwrap();
        assert!(matches!(watch.reload_if_changed(), Reload::Refused(_)));
        assert_eq!(watch.reload_if_changed(), Reload::Unchanged);
        assert!(watch.current().by_api_key("beta").is_some());
        file_with(dir.path(), ALPHA);
        assert_eq!(watch.reload_if_changed(), Reload::Replaced(1));
        assert!(watch.current().by_api_key("alpha").is_some());
    }

    #[test]
    fn a_broken_file_at_start_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tenants.toml");
        std::fs::write(&file, "tenant = 3\n").unwrap();
        assert!(TenantsWatch::open(&file).is_err());
    }
}
