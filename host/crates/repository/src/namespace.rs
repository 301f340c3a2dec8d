//! Namespaces: what one caller can see. With a tenants file each tenant has
//! its own repository (a registry of its own) and a grant over the main
//! repository's models; a name resolves in its own repository first, then
//! among the shared models granted to it. Everything else answers exactly
//! as an unknown model does, so a tenant cannot learn what it may not see.
//! Without a tenants file (and for anonymous callers of open routes) the
//! namespace is the main repository, all of it.
//!
//! An ensemble's steps resolve in the namespace that owns the ensemble: a
//! tenant's ensemble sees what the tenant sees, a shared ensemble sees the
//! main repository.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use kiln_pipeline::ModelResolver;
use kiln_scheduler::ModelRunner;
use kiln_types::context::Identity;
use kiln_types::error::{KilnError, Result};
use kiln_types::text::clip;

use crate::{unknown_model, ControlMode, IndexEntry, ModelRegistry};

/// Which of the main repository's models a namespace may use.
pub type SharedFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

pub struct Namespace {
    /// The tenant's own repository: where it is, and its registry.
    repository: Option<PathBuf>,
    own: Option<Arc<ModelRegistry>>,
    main: Arc<ModelRegistry>,
    /// `None`: every model of the main repository.
    shared: Option<SharedFilter>,
}

impl Namespace {
    fn sees_shared(&self, name: &str) -> bool {
        self.shared.as_ref().is_none_or(|f| f(name))
    }

    /// The own registry when it holds `name` (own models shadow shared ones).
    fn owner_of(&self, name: &str) -> Option<&Arc<ModelRegistry>> {
        self.own.as_ref().filter(|own| own.knows(name))
    }

    /// The registry `name` resolves in for this namespace.
    fn registry_of(&self, name: &str) -> Option<&Arc<ModelRegistry>> {
        self.owner_of(name)
            .or_else(|| self.sees_shared(name).then_some(&self.main))
    }

    /// The runner serving `name` at `version` ("" = the latest ready one).
    pub fn resolve(&self, name: &str, version: &str) -> Result<Arc<ModelRunner>> {
        self.registry_of(name)
            .ok_or_else(|| unknown_model(name))?
            .resolve(name, version)
    }

    pub fn is_ready(&self, name: &str, version: &str) -> bool {
        self.resolve(name, version).is_ok()
    }

    /// Ready runners of `name`, or of every model this namespace sees when
    /// `name` is empty.
    pub fn ready_runners(&self, name: &str) -> Vec<Arc<ModelRunner>> {
        if !name.is_empty() {
            return self
                .registry_of(name)
                .map(|r| r.ready_runners(name))
                .unwrap_or_default();
        }
        let mut runners = self
            .own
            .as_ref()
            .map(|own| own.ready_runners(""))
            .unwrap_or_default();
        runners.extend(
            self.main.ready_runners("").into_iter().filter(|r| {
                self.owner_of(&r.spec.name).is_none() && self.sees_shared(&r.spec.name)
            }),
        );
        runners
    }

    pub fn ready_versions(&self, name: &str) -> Vec<i64> {
        self.ready_runners(name).iter().map(|r| r.version).collect()
    }

    /// The repository index as this namespace sees it: its own models, then
    /// the shared ones it may use that no own model shadows.
    pub fn index(&self, ready_only: bool) -> Result<Vec<IndexEntry>> {
        let mut rows = match &self.own {
            Some(own) => own.index(ready_only)?,
            None => Vec::new(),
        };
        let own_names: std::collections::HashSet<String> =
            rows.iter().map(|r| r.name.clone()).collect();
        rows.extend(
            self.main
                .index(ready_only)?
                .into_iter()
                .filter(|r| !own_names.contains(&r.name) && self.sees_shared(&r.name)),
        );
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    /// The registry model control acts on: the tenant's own; the main one
    /// when the namespace is the whole main repository.
    fn controlled(&self, name: &str, what: &str) -> Result<&Arc<ModelRegistry>> {
        match (&self.own, &self.shared) {
            (Some(own), _) => Ok(own),
            (None, None) => Ok(&self.main),
            // A tenant without a repository loads nothing; the answer is a
            // missing model's, not a hint at what the main repository holds.
            (None, Some(_)) => Err(KilnError::not_found(format!(
                "failed to {what} '{}': no such model directory in the repository",
                clip(name)
            ))),
        }
    }

    /// Loads `name` from this namespace's own repository.
    pub async fn load(&self, name: &str) -> Result<()> {
        self.controlled(name, "load")?.load(name).await
    }

    /// Unloads `name` from this namespace's own repository.
    pub async fn unload(&self, name: &str) -> Result<()> {
        self.controlled(name, "unload")?.unload(name).await
    }

    pub fn mode(&self) -> ControlMode {
        self.main.mode()
    }
}

impl ModelResolver for Namespace {
    fn resolve(&self, name: &str, version: &str) -> Result<(Arc<ModelRunner>, &dyn ModelResolver)> {
        match self.owner_of(name) {
            Some(own) => Ok((own.resolve(name, version)?, self)),
            None if self.sees_shared(name) => {
                Ok((self.main.resolve(name, version)?, self.main.as_ref()))
            }
            None => Err(unknown_model(name)),
        }
    }
}

/// A tenant's namespace, as the tenants file declares it.
pub struct TenantSpace {
    pub name: Arc<str>,
    pub repository: Option<PathBuf>,
    pub shared: SharedFilter,
    /// How many of its own models may be loaded at once.
    pub max_loaded_models: Option<usize>,
    /// Ceilings on its own models' parameters (plugin quotas).
    pub ceilings: Option<Arc<kiln_model_config::Ceilings>>,
}

/// Makes the registry of a tenant's own repository.
/// Makes the registry of tenant `name`'s own repository at `root`.
pub type RegistryFactory = Box<dyn Fn(&str, &Path) -> Arc<ModelRegistry> + Send + Sync>;

/// Every caller's namespace: the main repository's for callers without a
/// tenant, and one per tenant.
pub struct Namespaces {
    main: Arc<ModelRegistry>,
    everything: Arc<Namespace>,
    /// For a tenant the file no longer has (a request admitted just before
    /// a reload): it sees nothing.
    nothing: Arc<Namespace>,
    tenants: RwLock<HashMap<Arc<str>, Arc<Namespace>>>,
    make_registry: RegistryFactory,
}

impl Namespaces {
    pub fn new(main: Arc<ModelRegistry>, make_registry: RegistryFactory) -> Self {
        Self {
            everything: Arc::new(Namespace {
                repository: None,
                own: None,
                main: main.clone(),
                shared: None,
            }),
            nothing: Arc::new(Namespace {
                repository: None,
                own: None,
                main: main.clone(),
                shared: Some(Arc::new(|_: &str| false)),
            }),
            main,
            tenants: RwLock::default(),
            make_registry,
        }
    }

    pub fn main(&self) -> &Arc<ModelRegistry> {
        &self.main
    }

    /// The namespace of the caller `identity`.
    pub fn of(&self, identity: &Identity) -> Arc<Namespace> {
        match identity {
            Identity::Tenant(name) => self
                .tenants
                .read()
                .get(name)
                .cloned()
                .unwrap_or_else(|| self.nothing.clone()),
            Identity::Anonymous | Identity::Claimed(_) => self.everything.clone(),
        }
    }

    /// Brings the tenants' namespaces in line with the tenants file. A
    /// tenant whose repository is unchanged keeps its registry (and what it
    /// loaded); grants take effect at once. Returns the registries that are
    /// new (to load, per the control mode) and those no tenant has any more
    /// (to stop; requests already running on them finish first).
    pub fn update(
        &self,
        spaces: Vec<TenantSpace>,
    ) -> (Vec<Arc<ModelRegistry>>, Vec<Arc<ModelRegistry>>) {
        let mut tenants = self.tenants.write();
        let mut old = std::mem::take(&mut *tenants);
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for space in spaces {
            let kept = match old.remove(&space.name) {
                Some(ns) if ns.repository == space.repository => ns.own.clone(),
                Some(ns) => {
                    removed.extend(ns.own.clone()); // moved to another repository
                    None
                }
                None => None,
            };
            let own = match (kept, &space.repository) {
                (Some(own), _) => Some(own),
                (None, Some(dir)) => {
                    let registry = (self.make_registry)(&space.name, dir);
                    added.push(registry.clone());
                    Some(registry)
                }
                (None, None) => None,
            };
            if let Some(own) = &own {
                own.set_max_models(space.max_loaded_models);
                own.set_ceilings(space.ceilings.clone());
            }
            let namespace = Arc::new(Namespace {
                repository: space.repository,
                own,
                main: self.main.clone(),
                shared: Some(space.shared),
            });
            tenants.insert(space.name, namespace);
        }
        removed.extend(old.into_values().filter_map(|ns| ns.own.clone()));
        (added, removed)
    }

    /// The main registry and every tenant's own, for polling and shutdown.
    pub fn registries(&self) -> Vec<Arc<ModelRegistry>> {
        let mut all = vec![self.main.clone()];
        all.extend(self.tenants.read().values().filter_map(|ns| ns.own.clone()));
        all
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bytes::Bytes;
    use kiln_backend::ExecTimings;
    use kiln_backend::{Backend, BackendError, BackendFactory, BackendRegistry, BackendRequest};
    use kiln_model_config::{ModelSpec, Placement};
    use kiln_pipeline::InferRequest;
    use kiln_types::tensor::{DataType, Tensor};
    use kiln_types::{KilnError, RequestContext};

    use super::*;
    use crate::{LocalRepository, RegistryObserver};

    /// Answers `y` = the float its model file holds, whatever `x` is.
    struct Constant;
    struct ConstantInstance(f32);

    impl Backend for ConstantInstance {
        fn execute(
            &mut self,
            _: &BackendRequest,
            _: &mut ExecTimings,
        ) -> std::result::Result<Vec<Tensor>, BackendError> {
            let data = Bytes::from(self.0.to_le_bytes().to_vec());
            Ok(vec![Tensor::new("y", DataType::Fp32, vec![1], data)])
        }
        fn device(&self) -> String {
            "cpu".into()
        }
    }

    impl BackendFactory for Constant {
        fn name(&self) -> &'static str {
            "constant"
        }
        fn describe(&self) -> &'static str {
            "constant models"
        }
        fn runs_on_gpu(&self) -> bool {
            false
        }
        fn default_model_filename(&self) -> &'static str {
            "value"
        }
        fn validate(&self, _: &mut ModelSpec) -> std::result::Result<(), String> {
            Ok(())
        }
        fn load(
            &self,
            _: &ModelSpec,
            path: &Path,
            _: Placement,
            _: &Arc<dyn kiln_ops::OpResolver>,
        ) -> std::result::Result<Box<dyn Backend>, BackendError> {
            let text =
                std::fs::read_to_string(path).map_err(|e| BackendError::Load(e.to_string()))?;
            Ok(Box::new(ConstantInstance(text.trim().parse().unwrap())))
        }
    }

    struct NoObserver;
    impl RegistryObserver for NoObserver {
        fn version_stats(&self, _: &str, _: i64) -> Box<dyn kiln_scheduler::stats::StatsObserver> {
            Box::new(())
        }
        fn set_ready(&self, _: &str, _: i64, _: bool) {}
    }

    const IO: &str = "input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n\
                      output [ { name: \"y\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n";

    fn constant_model(repo: &Path, name: &str, value: f32) {
        std::fs::create_dir_all(repo.join(name).join("1")).unwrap();
        std::fs::write(repo.join(name).join("1/value"), value.to_string()).unwrap();
        std::fs::write(
            repo.join(name).join("config.pbtxt"),
            format!("backend: \"constant\"\n{IO}"),
        )
        .unwrap();
    }

    /// `pipe`: x -> m -> y.
    fn ensemble(repo: &Path) {
        std::fs::create_dir_all(repo.join("pipe/1")).unwrap();
        std::fs::write(
            repo.join("pipe/config.pbtxt"),
            format!(
                "platform: \"ensemble\"\n{IO}ensemble_scheduling {{ step [ {{ model_name: \"m\" model_version: -1 \
                 input_map {{ key: \"x\" value: \"x\" }} output_map {{ key: \"y\" value: \"y\" }} }} ] }}\n"
            ),
        )
        .unwrap();
    }

    fn registry(root: &Path) -> Arc<ModelRegistry> {
        let mut backends = BackendRegistry::default();
        backends.register(Constant);
        ModelRegistry::new(
            LocalRepository::new(root),
            ControlMode::None,
            backends,
            Arc::new(NoObserver),
        )
    }

    async fn answer(ns: &Namespace, model: &str) -> Result<f32> {
        let request = InferRequest {
            ctx: RequestContext::internal(),
            model_name: model.into(),
            model_version: String::new(),
            id: String::new(),
            inputs: vec![Tensor::new(
                "x",
                DataType::Fp32,
                vec![1],
                Bytes::from(vec![0u8; 4]),
            )],
            outputs: vec![],
            parameters: Default::default(),
            trace: None,
        };
        let response = kiln_pipeline::infer(ns, request).await?;
        let data = &response.outputs[0].tensor.data;
        Ok(f32::from_le_bytes(data[..4].try_into().unwrap()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn own_models_shadow_shared_ones_and_ensembles_resolve_where_they_live() {
        let main_dir = tempfile::tempdir().unwrap();
        constant_model(main_dir.path(), "m", 1.0);
        constant_model(main_dir.path(), "other", 3.0);
        ensemble(main_dir.path());
        let own_dir = tempfile::tempdir().unwrap();
        constant_model(own_dir.path(), "m", 2.0);
        ensemble(own_dir.path());

        let main = registry(main_dir.path());
        main.load_all().await;
        let namespaces = Namespaces::new(
            main.clone(),
            Box::new(|_: &str, root: &Path| registry(root)),
        );
        let only_pipe: SharedFilter = Arc::new(|name: &str| name == "pipe");
        let (added, removed) = namespaces.update(vec![
            TenantSpace {
                name: "a".into(),
                repository: Some(own_dir.path().into()),
                shared: Arc::new(|_: &str| true),
                max_loaded_models: None,
                ceilings: None,
            },
            TenantSpace {
                name: "b".into(),
                repository: None,
                shared: only_pipe,
                max_loaded_models: None,
                ceilings: None,
            },
        ]);
        assert_eq!((added.len(), removed.len()), (1, 0));
        for r in &added {
            r.load_all().await;
        }
        let a = namespaces.of(&Identity::Tenant("a".into()));
        let b = namespaces.of(&Identity::Tenant("b".into()));
        let anyone = namespaces.of(&Identity::Anonymous);

        // a's own m and own pipe (whose step is a's m); the shared one for the rest.
        assert_eq!(answer(&a, "m").await.unwrap(), 2.0);
        assert_eq!(answer(&a, "pipe").await.unwrap(), 2.0);
        assert_eq!(answer(&a, "other").await.unwrap(), 3.0);
        // b may use the shared pipe, whose step is the main repository's m,
        // though b may not call m itself.
        assert_eq!(answer(&b, "pipe").await.unwrap(), 1.0);
        let hidden = answer(&b, "m").await.unwrap_err();
        let unknown = answer(&b, "nope").await.unwrap_err();
        assert!(matches!(hidden, KilnError::NotFound(_)));
        assert_eq!(hidden.message(), unknown.message().replace("nope", "m"));
        assert_eq!(answer(&anyone, "m").await.unwrap(), 1.0);
        let names = |ns: &Namespace| {
            ns.index(false)
                .unwrap()
                .into_iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&a), ["m", "other", "pipe"]);
        assert_eq!(names(&b), ["pipe"]);
        assert_eq!(b.ready_runners("").len(), 1);

        // A tenant the file no longer has sees nothing; its registry is handed back to stop.
        let (added, removed) = namespaces.update(vec![]);
        assert_eq!((added.len(), removed.len()), (0, 1));
        let gone = namespaces.of(&Identity::Tenant("a".into()));
        assert!(matches!(
            answer(&gone, "other").await,
            Err(KilnError::NotFound(_))
        ));
        assert_eq!(namespaces.registries().len(), 1);
    }
}
