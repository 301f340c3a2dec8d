//! The model repository and the registry of what is loaded from it.
//!
//! Control modes (Triton's): `none` loads everything at start; `poll` also
//! rescans every N seconds and reloads what changed; `explicit` loads only
//! what RepositoryModelLoad (or `--load-model`) asks for.
//!
//! Reload rule: a new version is loaded and warmed up off the request path,
//! then swapped in; requests already holding the old runner finish on it. A
//! reload that fails leaves the previous version serving and records why.

#![forbid(unsafe_code)]

pub mod layout;
mod namespace;
mod source;
pub mod warmup;

pub use namespace::{Namespace, Namespaces, SharedFilter, TenantSpace};
pub use source::{LocalRepository, MultiRepository, RepositorySource};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use kiln_backend::BackendRegistry;
use kiln_model_config::{Ceilings, ModelSpec};
use kiln_ops::{OpProvider, OpResolver};
use kiln_scheduler::stats::{ModelStats, StatsObserver};
use kiln_scheduler::ModelRunner;
use kiln_types::error::{KilnError, Result};
use kiln_types::text::clip;

/// Told of what the registry does, for kiln's metrics: each version's
/// statistics observer, and readiness changes.
pub trait RegistryObserver: Send + Sync + 'static {
    /// The observer of version `version` of `model`'s statistics.
    fn version_stats(&self, model: &str, version: i64) -> Box<dyn StatsObserver>;
    fn set_ready(&self, model: &str, version: i64, ready: bool);
    /// A load was refused for the repository owner's quota `quota`.
    fn refused(&self, _quota: &'static str) {}
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    clap::ValueEnum,
    Default,
)]
#[serde(rename_all = "lowercase")]
pub enum ControlMode {
    #[default]
    None,
    Poll,
    Explicit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    Ready,
    Unavailable,
    Loading,
    Unloading,
}

impl ModelState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "READY",
            Self::Unavailable => "UNAVAILABLE",
            Self::Loading => "LOADING",
            Self::Unloading => "UNLOADING",
        }
    }
}

struct VersionEntry {
    state: ModelState,
    reason: String,
    runner: Option<Arc<ModelRunner>>,
    /// Fingerprint of the files the runner was loaded from.
    loaded_from: u64,
}

#[derive(Default)]
struct ModelEntry {
    versions: BTreeMap<i64, VersionEntry>,
    /// A model-level failure (unreadable config, no versions) with its reason.
    error: Option<String>,
    /// The fingerprint of the model directory last acted on (poll mode).
    seen: u64,
}

impl ModelEntry {
    fn ready_runner(&self, version: Option<i64>) -> Option<&Arc<ModelRunner>> {
        let ready = |e: &&VersionEntry| e.state == ModelState::Ready;
        match version {
            Some(v) => self.versions.get(&v).filter(ready)?.runner.as_ref(),
            None => self.versions.values().rev().find(ready)?.runner.as_ref(),
        }
    }
}

/// The op plugins of this repository, for its models' custom ops: the
/// latest ready version of a `wasm_ops` model.
impl OpResolver for ModelRegistry {
    fn op_plugin(&self, name: &str) -> std::result::Result<Arc<dyn OpProvider>, String> {
        let models = self.models.read();
        let runner = models
            .get(name)
            .and_then(|e| e.ready_runner(None))
            .ok_or_else(|| {
                format!(
                    "op plugin '{}' is not loaded in this repository",
                    clip(name)
                )
            })?;
        runner.ops.clone().ok_or_else(|| {
            format!(
                "model '{}' is not an op plugin (backend \"{}\", not \"{}\")",
                clip(name),
                runner.spec.backend,
                kiln_model_config::OP_PLUGIN_BACKEND
            )
        })
    }
}

/// One row of the repository index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    pub state: String,
    pub reason: String,
}

/// The reason an unloaded version shows in the index.
const UNLOADED: &str = "unloaded";

pub struct ModelRegistry {
    source: Box<dyn RepositorySource>,
    mode: ControlMode,
    backends: BackendRegistry,
    observer: Arc<dyn RegistryObserver>,
    models: RwLock<BTreeMap<String, ModelEntry>>,
    /// One load or unload at a time: keeps the file scan, load and swap of a
    /// model consistent without holding `models` across slow work.
    changes: tokio::sync::Mutex<()>,
    /// At most this many models with a ready version (a tenant's
    /// `max_loaded_models`; 0: no limit).
    max_models: std::sync::atomic::AtomicUsize,
    /// Ceilings on its models' parameters ([`Self::set_ceilings`]).
    ceilings: RwLock<Option<Arc<Ceilings>>>,
}

impl ModelRegistry {
    pub fn new(
        source: impl RepositorySource,
        mode: ControlMode,
        backends: BackendRegistry,
        observer: Arc<dyn RegistryObserver>,
    ) -> Arc<Self> {
        Arc::new(Self {
            source: Box::new(source),
            mode,
            backends,
            observer,
            models: RwLock::default(),
            changes: tokio::sync::Mutex::new(()),
            max_models: std::sync::atomic::AtomicUsize::new(0),
            ceilings: RwLock::default(),
        })
    }

    /// Caps how many models may be loaded at once (`None`: no cap). Models
    /// already loaded stay; a load past the cap is refused.
    pub fn set_max_models(&self, max: Option<usize>) {
        self.max_models
            .store(max.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    }

    /// Ceilings on its models' parameters (a tenant's plugin quotas), in
    /// force from the next load; models already loaded keep their settings.
    pub fn set_ceilings(&self, ceilings: Option<Arc<Ceilings>>) {
        *self.ceilings.write() = ceilings;
    }

    pub fn mode(&self) -> ControlMode {
        self.mode
    }

    /// The repository's model names.
    pub fn scan(&self) -> Result<Vec<String>> {
        self.source.models().map_err(|e| {
            KilnError::internal(format!(
                "cannot read model repository {}: {e}",
                self.source.location()
            ))
        })
    }

    /// The runner serving `name` at `version` ("" = the latest ready one).
    pub fn resolve(&self, name: &str, version: &str) -> Result<Arc<ModelRunner>> {
        let wanted = parse_version(name, version)?;
        let models = self.models.read();
        let entry = models.get(name).ok_or_else(|| unknown_model(name))?;
        if let Some(runner) = entry.ready_runner(wanted) {
            return Ok(runner.clone());
        }
        match wanted.map(|v| (v, entry.versions.get(&v))) {
            Some((v, None)) => Err(KilnError::not_found(format!(
                "Request for unknown model: '{name}' version {v} is not found"
            ))),
            Some((v, Some(e))) => Err(KilnError::unavailable(format!(
                "model '{name}' version {v} is not ready ({}): {}",
                e.state.as_str(),
                e.reason
            ))),
            // Unloaded (or being unloaded): gone as far as the client can
            // tell, as Triton answers.
            None if entry
                .versions
                .values()
                .all(|e| e.state == ModelState::Unloading || e.reason == UNLOADED)
                && entry.error.is_none() =>
            {
                Err(KilnError::not_found(format!(
                    "Request for unknown model: '{}' has no available versions",
                    clip(name)
                )))
            }
            None => {
                let reason = entry
                    .error
                    .clone()
                    .or_else(|| {
                        entry
                            .versions
                            .values()
                            .rev()
                            .map(|e| e.reason.clone())
                            .find(|r| !r.is_empty())
                    })
                    .unwrap_or_else(|| "not loaded".into());
                Err(KilnError::unavailable(format!(
                    "model '{name}' has no ready version: {reason}"
                )))
            }
        }
    }

    /// Whether this registry has ever been asked about `name` (loaded,
    /// failed, unloaded): a namespace's own models shadow shared ones.
    pub fn knows(&self, name: &str) -> bool {
        self.models.read().contains_key(name)
    }

    /// Is this model (version) ready? Unknown models are simply not ready.
    pub fn is_ready(&self, name: &str, version: &str) -> bool {
        self.resolve(name, version).is_ok()
    }

    /// All ready runners of a model, or of every model when `name` is empty.
    pub fn ready_runners(&self, name: &str) -> Vec<Arc<ModelRunner>> {
        let models = self.models.read();
        models
            .iter()
            .filter(|(n, _)| name.is_empty() || n.as_str() == name)
            .flat_map(|(_, e)| e.versions.values())
            .filter(|v| v.state == ModelState::Ready)
            .filter_map(|v| v.runner.clone())
            .collect()
    }

    /// Stops every loaded version's instances (see [`ModelRunner::stop`]),
    /// for shutdown, after the protocol servers finished their requests.
    pub fn stop_all(&self) {
        let runners: Vec<Arc<ModelRunner>> = self
            .models
            .read()
            .values()
            .flat_map(|e| e.versions.values())
            .filter_map(|v| v.runner.clone())
            .collect();
        for runner in runners {
            runner.stop();
        }
    }

    /// Versions of a model that are ready, ascending.
    pub fn ready_versions(&self, name: &str) -> Vec<i64> {
        self.ready_runners(name).iter().map(|r| r.version).collect()
    }

    /// The repository index: every model on disk, one row per known version.
    pub fn index(&self, ready_only: bool) -> Result<Vec<IndexEntry>> {
        let on_disk = self.scan()?;
        let models = self.models.read();
        let mut rows = Vec::new();
        let mut names: Vec<&str> = on_disk.iter().map(String::as_str).collect();
        names.extend(models.keys().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        for name in names {
            let row = |version: String, state: &str, reason: &str| IndexEntry {
                name: name.to_string(),
                version,
                state: state.to_string(),
                reason: reason.to_string(),
            };
            match models.get(name) {
                Some(entry) if !entry.versions.is_empty() => {
                    for (v, e) in &entry.versions {
                        let reason = if e.reason.is_empty() {
                            entry.error.as_deref().unwrap_or("")
                        } else {
                            &e.reason
                        };
                        rows.push(row(v.to_string(), e.state.as_str(), reason));
                    }
                }
                Some(ModelEntry {
                    error: Some(err), ..
                }) => rows.push(row(String::new(), ModelState::Unavailable.as_str(), err)),
                // On disk, never loaded (explicit mode): Triton lists the name only.
                _ => rows.push(row(String::new(), "", "")),
            }
        }
        if ready_only {
            rows.retain(|r| r.state == ModelState::Ready.as_str());
        }
        Ok(rows)
    }

    /// Loads every model of the repository (start-up in `none` and `poll`).
    pub async fn load_all(self: &Arc<Self>) {
        let dirs = match self.scan() {
            Ok(d) => d,
            Err(e) => return tracing::error!("{e}"),
        };
        for name in dirs {
            if let Err(e) = self.load(&name).await {
                tracing::error!(model = %name, "load failed: {e}");
            }
        }
    }

    /// Loads or reloads `name` from disk. Errors when the model ends up with
    /// no ready version (the previous versions keep serving if they were).
    pub async fn load(self: &Arc<Self>, name: &str) -> Result<()> {
        let _one_at_a_time = self.changes.lock().await;
        let this = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || this.load_blocking(&name))
            .await
            .map_err(|e| KilnError::internal(format!("model load task failed: {e}")))?
    }

    fn load_blocking(self: &Arc<Self>, name: &str) -> Result<()> {
        self.load_model(name, false)
    }

    /// Loads `name`; `as_dependency`: because another model's `custom_ops`
    /// names it, which loads no further dependencies (no chains, no loops).
    fn load_model(self: &Arc<Self>, name: &str, as_dependency: bool) -> Result<()> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(KilnError::invalid(format!(
                "invalid model name '{}'",
                clip(name)
            )));
        }
        let max = self.max_models.load(std::sync::atomic::Ordering::Relaxed);
        if max > 0 {
            let models = self.models.read();
            let loaded = |e: &ModelEntry| e.versions.values().any(|v| v.runner.is_some());
            let count = models.values().filter(|e| loaded(e)).count();
            if count >= max && !models.get(name).is_some_and(loaded) {
                self.observer.refused("max_loaded_models");
                return Err(KilnError::resource_exhausted(format!(
                    "failed to load '{}': {count} models are loaded, the quota max_loaded_models is {max}",
                    clip(name)
                )));
            }
        }
        // The fingerprint first: a change while the model loads makes the
        // next poll load it again rather than miss it.
        let seen = self.source.fingerprint(name).unwrap_or_default();
        let dir = match self.source.materialize(name) {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KilnError::not_found(format!(
                    "failed to load '{}': no such model directory in the repository",
                    clip(name)
                )))
            }
            Err(e) => {
                return Err(KilnError::unavailable(format!(
                    "failed to load '{}': cannot fetch it from {}: {e}",
                    clip(name),
                    self.source.location()
                )))
            }
        };
        let ceilings = self.ceilings.read().clone();
        let spec = match self.backends.read_spec(&dir, ceilings) {
            Ok(spec) => Arc::new(spec),
            Err(e) => return Err(self.fail_model(name, seen, e.0)),
        };
        for w in &spec.warnings {
            tracing::warn!(model = %name, "{w}");
        }
        // Op plugins first, as Triton loads an ensemble's models: a model
        // that names one in `custom_ops` needs it to load.
        for plugin in spec.custom_ops().into_iter().filter(|_| !as_dependency) {
            if !self.is_ready(&plugin, "") && plugin != name {
                if let Err(e) = self.load_model(&plugin, true) {
                    let msg = format!(
                        "failed to load '{name}': its op plugin '{plugin}' did not load: {e}"
                    );
                    return Err(self.fail_model(name, seen, msg));
                }
            }
        }
        let wanted = spec.select_versions(&layout::versions(&dir));
        if wanted.is_empty() {
            let msg = format!("failed to load '{name}': no version folder of {} is selected by its version_policy (versions are numeric folders)", dir.display());
            return Err(self.fail_model(name, seen, msg));
        }
        let config_print = layout::fingerprint(&dir, false);
        let mut failures = Vec::new();
        for &version in &wanted {
            let files = config_print
                ^ layout::fingerprint(&dir.join(version.to_string()), true).rotate_left(1);
            let serving = {
                let mut models = self.models.write();
                let entry = models.entry(name.to_string()).or_default();
                let current = entry.versions.get(&version);
                if current.is_some_and(|c| c.state == ModelState::Ready && c.loaded_from == files) {
                    continue; // unchanged
                }
                let serving = current.and_then(|c| c.runner.clone());
                if serving.is_none() {
                    entry.versions.insert(
                        version,
                        VersionEntry {
                            state: ModelState::Loading,
                            reason: String::new(),
                            runner: None,
                            loaded_from: 0,
                        },
                    );
                }
                serving.is_some()
            };
            let started = Instant::now();
            let loaded = self.load_version(&spec, version);
            let mut models = self.models.write();
            let entry = models.entry(name.to_string()).or_default();
            match loaded {
                Ok(runner) => {
                    tracing::info!(model = %name, version, devices = ?runner.devices, elapsed_ms = started.elapsed().as_millis() as u64, "model version ready");
                    entry.versions.insert(
                        version,
                        VersionEntry {
                            state: ModelState::Ready,
                            reason: String::new(),
                            runner: Some(runner),
                            loaded_from: files,
                        },
                    );
                    self.observer.set_ready(name, version, true);
                }
                Err(reason) => {
                    tracing::error!(model = %name, version, "load failed: {reason}");
                    let e = entry.versions.get_mut(&version).expect("inserted above");
                    if serving {
                        e.reason = format!("reload failed, previous files still serving: {reason}");
                    } else {
                        e.state = ModelState::Unavailable;
                        e.reason = reason.clone();
                    }
                    failures.push(format!("version {version}: {reason}"));
                }
            }
        }
        // Versions no longer selected (policy or folders changed) go away.
        let retired: Vec<i64> = {
            let mut models = self.models.write();
            let entry = models.entry(name.to_string()).or_default();
            entry.error = None;
            entry.seen = seen;
            entry
                .versions
                .keys()
                .copied()
                .filter(|v| !wanted.contains(v))
                .collect()
        };
        for v in retired {
            self.retire(name, v, "unloaded: no longer selected by version_policy");
        }
        let any_ready = !self.ready_versions(name).is_empty();
        match (failures.is_empty(), any_ready) {
            (true, _) => Ok(()),
            (false, true) => {
                tracing::warn!(model = %name, "some versions failed to load: {}", failures.join("; "));
                Ok(())
            }
            (false, false) => Err(KilnError::invalid(format!(
                "failed to load '{name}': {}",
                failures.join("; ")
            ))),
        }
    }

    /// Records a model-level failure; versions already serving keep serving.
    fn fail_model(&self, name: &str, seen: u64, reason: String) -> KilnError {
        tracing::error!(model = %name, "{reason}");
        let mut models = self.models.write();
        let entry = models.entry(name.to_string()).or_default();
        entry.seen = seen;
        entry.error = Some(reason.clone());
        for e in entry
            .versions
            .values_mut()
            .filter(|e| e.state == ModelState::Ready)
        {
            e.reason = format!("reload failed, previous version still serving: {reason}");
        }
        KilnError::invalid(reason)
    }

    fn load_version(
        self: &Arc<Self>,
        spec: &Arc<ModelSpec>,
        version: i64,
    ) -> std::result::Result<Arc<ModelRunner>, String> {
        let mut instances: Vec<Box<dyn kiln_backend::Backend>> =
            Vec::with_capacity(spec.instances.len());
        // Custom ops resolve among this repository's op plugins.
        let ops: Arc<dyn OpResolver> = self.clone();
        // Ensembles run their steps on the composing models' instances.
        let placements = if spec.is_ensemble() {
            &[][..]
        } else {
            &spec.instances[..]
        };
        for &placement in placements {
            // Instances after the first share its compiled plugin where the
            // backend allows (`Backend::replicate`).
            let replica = instances.first().and_then(|first| first.replicate());
            let mut instance = match replica {
                Some(replica) => replica,
                None => self.backends.load_instance(spec, version, placement, &ops),
            }
            .map_err(|e| e.to_string())?;
            warmup::warm_up(spec, instance.as_mut())?;
            instances.push(instance);
        }
        let stats = ModelStats::new(self.observer.version_stats(&spec.name, version));
        ModelRunner::start(spec.clone(), version, instances, stats).map_err(|e| e.to_string())
    }

    /// Takes a version out of service. Requests already running on it finish.
    fn retire(&self, name: &str, version: i64, reason: &str) -> Option<Arc<ModelRunner>> {
        let mut models = self.models.write();
        let e = models.get_mut(name)?.versions.get_mut(&version)?;
        e.state = ModelState::Unavailable;
        e.reason = reason.to_string();
        self.observer.set_ready(name, version, false);
        e.runner.take()
    }

    /// Unloads every version of `name`, waiting (bounded) for in-flight
    /// requests to finish.
    pub async fn unload(&self, name: &str) -> Result<()> {
        let _one_at_a_time = self.changes.lock().await;
        let versions: Vec<i64> = {
            let mut models = self.models.write();
            let entry = models.get_mut(name).ok_or_else(|| {
                KilnError::not_found(format!(
                    "failed to unload '{}': model is not loaded",
                    clip(name)
                ))
            })?;
            for e in entry.versions.values_mut().filter(|e| e.runner.is_some()) {
                e.state = ModelState::Unloading;
            }
            entry.error = None;
            entry.versions.keys().copied().collect()
        };
        let runners: Vec<_> = versions
            .iter()
            .filter_map(|&v| self.retire_unloading(name, v))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while runners.iter().any(|r| Arc::strong_count(r) > 1) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut models = self.models.write();
        if let Some(entry) = models.get_mut(name) {
            for e in entry.versions.values_mut() {
                e.state = ModelState::Unavailable;
                e.reason = UNLOADED.into();
            }
        }
        tracing::info!(model = %name, "model unloaded");
        Ok(())
    }

    fn retire_unloading(&self, name: &str, version: i64) -> Option<Arc<ModelRunner>> {
        let mut models = self.models.write();
        let e = models.get_mut(name)?.versions.get_mut(&version)?;
        self.observer.set_ready(name, version, false);
        e.runner.take()
    }

    /// One poll-mode pass: reload changed models, load new ones, unload
    /// removed ones.
    pub async fn poll_once(self: &Arc<Self>) {
        let dirs = match self.scan() {
            Ok(d) => d,
            Err(e) => return tracing::error!("{e}"),
        };
        for name in &dirs {
            let seen = self.models.read().get(name).map(|e| e.seen);
            if seen != self.source.fingerprint(name) {
                tracing::info!(model = %name, "repository change detected, reloading");
                if let Err(e) = self.load(name).await {
                    tracing::error!(model = %name, "reload failed: {e}");
                }
            }
        }
        let gone: Vec<String> = {
            let models = self.models.read();
            models
                .keys()
                .filter(|n| !dirs.contains(n))
                .cloned()
                .collect()
        };
        for name in gone {
            let _ = self.unload(&name).await;
            self.models.write().remove(&name);
        }
    }
}

/// What a client hears about a model that does not exist, or that it may
/// not see (the same words, so existence does not leak).
pub fn unknown_model(name: &str) -> KilnError {
    KilnError::not_found(format!(
        "Request for unknown model: '{}' is not found",
        clip(name)
    ))
}

fn parse_version(name: &str, version: &str) -> Result<Option<i64>> {
    if version.is_empty() {
        return Ok(None);
    }
    version.parse::<i64>().map(Some).map_err(|_| {
        KilnError::invalid(format!(
            "invalid version '{}' for model '{}': versions are integers",
            clip(version),
            clip(name)
        ))
    })
}

impl kiln_pipeline::ModelResolver for ModelRegistry {
    fn resolve(
        &self,
        name: &str,
        version: &str,
    ) -> Result<(Arc<ModelRunner>, &dyn kiln_pipeline::ModelResolver)> {
        Ok((ModelRegistry::resolve(self, name, version)?, self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoObserver;

    impl RegistryObserver for NoObserver {
        fn version_stats(&self, _: &str, _: i64) -> Box<dyn StatsObserver> {
            Box::new(())
        }
        fn set_ready(&self, _: &str, _: i64, _: bool) {}
    }

    #[tokio::test]
    async fn unknown_models_and_bad_configs_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("broken/1")).unwrap();
        std::fs::write(
            tmp.path().join("broken/config.pbtxt"),
            "platform: \"pytorch_libtorch\"\nbogus_field: 1\n",
        )
        .unwrap();
        let reg = ModelRegistry::new(
            LocalRepository::new(tmp.path()),
            ControlMode::None,
            BackendRegistry::default(),
            Arc::new(NoObserver),
        );
        reg.load_all().await;
        assert!(matches!(
            reg.resolve("nope", "").err(),
            Some(KilnError::NotFound(_))
        ));
        let err = reg.resolve("broken", "").err().unwrap();
        assert!(matches!(err, KilnError::Unavailable(_)), "{err:?}");
        assert!(err.message().contains("bogus_field"), "{err}");
        let index = reg.index(false).unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(index[0].state, "UNAVAILABLE");
        assert!(index[0].reason.contains("config.pbtxt:2"), "{:?}", index[0]);
        assert!(matches!(
            reg.resolve("broken", "x").err(),
            Some(KilnError::InvalidArgument(_))
        ));
    }
}
