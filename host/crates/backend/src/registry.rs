//! Backends by name: what config.pbtxt's `backend` (or the backend its
//! `platform` implies) selects, the checks only that backend makes, and
//! loading its instances.

use std::path::Path;
use std::sync::Arc;

use kiln_model_config::proto::{model_instance_group::Kind as InstanceKind, ModelConfig};
use kiln_model_config::{Ceilings, ConfigError, ModelSpec, Placement, CONFIG_FILE};
use kiln_ops::OpResolver;

use crate::instance::{Backend, BackendError};

/// One kind of backend: a name, the checks it makes on a config beyond the
/// common ones (kiln-model-config's `validate`), and how to load an instance.
pub trait BackendFactory: Send + Sync + 'static {
    /// The name config.pbtxt's `backend` gives it ("pytorch", "wasm").
    fn name(&self) -> &'static str;

    /// How error messages name the models it serves, e.g. `TorchScript
    /// models (platform "pytorch_libtorch")`.
    fn describe(&self) -> &'static str;

    /// Whether its instances can run on a GPU. A CPU-only backend's
    /// `KIND_AUTO` instances run on the CPU; `KIND_GPU` and CUDA graphs are
    /// refused for it.
    fn runs_on_gpu(&self) -> bool;

    /// The file a version folder holds when `default_model_filename` is unset.
    fn default_model_filename(&self) -> &'static str;

    /// Checks and completes `spec` for this backend; the message names the
    /// field (the caller prefixes the config file).
    fn validate(&self, spec: &mut ModelSpec) -> Result<(), String>;

    /// Loads one instance of the model file at `path` for `placement`;
    /// `ops` finds the op plugins its `custom_ops` names.
    fn load(
        &self,
        spec: &ModelSpec,
        path: &Path,
        placement: Placement,
        ops: &Arc<dyn OpResolver>,
    ) -> Result<Box<dyn Backend>, BackendError>;
}

/// The backends kiln serves, built once at start.
#[derive(Clone, Default)]
pub struct BackendRegistry {
    factories: Vec<Arc<dyn BackendFactory>>,
}

impl BackendRegistry {
    pub fn register(&mut self, factory: impl BackendFactory) -> &mut Self {
        assert!(
            self.get(factory.name()).is_none(),
            "backend '{}' registered twice",
            factory.name()
        );
        self.factories.push(Arc::new(factory));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn BackendFactory>> {
        self.factories.iter().find(|f| f.name() == name)
    }

    /// Every check a config passes, common and backend-specific: the
    /// [`ModelSpec`] the server works from.
    /// `ceilings`: those of the repository's owner (a tenant's plugin quotas).
    pub fn spec(
        &self,
        model_dir: &Path,
        config: ModelConfig,
        ceilings: Option<Arc<Ceilings>>,
    ) -> Result<ModelSpec, ConfigError> {
        let mut spec = kiln_model_config::validate(model_dir, config)?;
        spec.ceilings = ceilings;
        self.validate(&mut spec)
            .map_err(|m| ConfigError::at(&model_dir.join(CONFIG_FILE), m))?;
        Ok(spec)
    }

    /// Reads, parses and checks `model_dir/config.pbtxt`.
    pub fn read_spec(
        &self,
        model_dir: &Path,
        ceilings: Option<Arc<Ceilings>>,
    ) -> Result<ModelSpec, ConfigError> {
        self.spec(
            model_dir,
            kiln_model_config::read_config(model_dir)?,
            ceilings,
        )
    }

    /// The backend-specific half of [`Self::spec`].
    fn validate(&self, spec: &mut ModelSpec) -> Result<(), String> {
        if spec.is_ensemble() {
            return Ok(());
        }
        let Some(factory) = self.get(&spec.backend) else {
            let served: Vec<&str> = self.factories.iter().map(|f| f.describe()).collect();
            return Err(format!(
                "field 'platform'/'backend': unsupported platform '{}' / backend '{}': kiln serves {}",
                spec.config.platform,
                spec.config.backend,
                served.join(" and ")
            ));
        };
        if !factory.runs_on_gpu() {
            self.keep_on_the_cpu(factory.as_ref(), spec)?;
        }
        if spec.config.default_model_filename.is_empty() {
            spec.config.default_model_filename = factory.default_model_filename().into();
            spec.model_filename = spec.config.default_model_filename.clone();
        }
        factory.validate(spec)
    }

    /// A CPU-only backend: `KIND_AUTO` means the CPU, `KIND_GPU` and CUDA
    /// graphs are errors.
    fn keep_on_the_cpu(
        &self,
        factory: &dyn BackendFactory,
        spec: &mut ModelSpec,
    ) -> Result<(), String> {
        for (i, group) in spec.config.instance_group.iter().enumerate() {
            if group.kind() == InstanceKind::Gpu {
                return Err(format!(
                    "instance_group[{i}]: {} run on the CPU; use KIND_CPU",
                    factory.describe()
                ));
            }
        }
        for placement in &mut spec.instances {
            *placement = Placement::Cpu;
        }
        let graphs = spec
            .config
            .optimization
            .as_ref()
            .and_then(|o| o.cuda.as_ref());
        if graphs.is_some_and(|c| c.graphs) {
            let gpu: Vec<&str> = self
                .factories
                .iter()
                .filter(|f| f.runs_on_gpu())
                .map(|f| f.describe())
                .collect();
            return Err(format!(
                "field 'optimization.cuda.graphs': only {} run on a GPU",
                if gpu.is_empty() {
                    "GPU backends".to_string()
                } else {
                    gpu.join(" and ")
                }
            ));
        }
        Ok(())
    }

    /// Loads one instance of `spec`'s version `version` at `placement`;
    /// `ops`: the op plugins of its repository.
    pub fn load_instance(
        &self,
        spec: &ModelSpec,
        version: i64,
        placement: Placement,
        ops: &Arc<dyn OpResolver>,
    ) -> Result<Box<dyn Backend>, BackendError> {
        let factory = self.get(&spec.backend).ok_or_else(|| {
            BackendError::Load(format!("model '{}' has no backend instances", spec.name))
        })?;
        let path = spec
            .model_dir
            .join(version.to_string())
            .join(&spec.model_filename);
        factory.load(spec, &path, placement, ops)
    }
}
