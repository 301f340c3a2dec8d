//! The checks every model passes whatever its backend, and [`ModelSpec`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_types::tensor::DataType;

use crate::parse::{ConfigError, CONFIG_FILE};
use crate::proto::{
    model_config::SchedulingChoice, model_instance_group::Kind as InstanceKind,
    model_version_policy::PolicyChoice, ModelConfig, ModelInstanceGroup, ModelVersionPolicy,
};

/// `platform: "ensemble"`: steps over other models, run by kiln's pipeline,
/// not by a backend.
pub const ENSEMBLE_PLATFORM: &str = "ensemble";
/// The name [`ModelSpec::backend`] gives an ensemble.
pub const ENSEMBLE_BACKEND: &str = "ensemble";

/// `backend: "wasm_ops"`: an op plugin, a WebAssembly component that provides
/// custom ops to the TorchScript models of its repository that name it in
/// their `custom_ops` parameter. It declares no inputs or outputs and takes
/// no inference requests.
pub const OP_PLUGIN_BACKEND: &str = "wasm_ops";
/// The parameter in which a model names its op plugins (comma-separated).
pub const CUSTOM_OPS_PARAMETER: &str = "custom_ops";
/// The parameter that turns off dispatching at once to an idle instance
/// (`"false"`: every batch waits `max_queue_delay_microseconds` for company,
/// as in Triton). See [`ModelSpec::dispatch_when_idle`].
pub const DISPATCH_WHEN_IDLE_PARAMETER: &str = "dispatch_when_idle";

/// Triton's platforms and the backend each one names (Triton fills one from
/// the other; kiln reports both as Triton does).
pub const PLATFORM_BACKENDS: &[(&str, &str)] = &[
    ("pytorch_libtorch", "pytorch"),
    ("onnxruntime_onnx", "onnxruntime"),
    ("tensorrt_plan", "tensorrt"),
    ("tensorflow_graphdef", "tensorflow"),
    ("tensorflow_savedmodel", "tensorflow"),
];

/// From config.pbtxt's `data_type`; `None` for `TYPE_INVALID`.
pub fn datatype_of(t: crate::proto::DataType) -> Option<DataType> {
    use crate::proto::DataType as C;
    Some(match t {
        C::TypeInvalid => return None,
        C::TypeBool => DataType::Bool,
        C::TypeUint8 => DataType::Uint8,
        C::TypeUint16 => DataType::Uint16,
        C::TypeUint32 => DataType::Uint32,
        C::TypeUint64 => DataType::Uint64,
        C::TypeInt8 => DataType::Int8,
        C::TypeInt16 => DataType::Int16,
        C::TypeInt32 => DataType::Int32,
        C::TypeInt64 => DataType::Int64,
        C::TypeFp16 => DataType::Fp16,
        C::TypeFp32 => DataType::Fp32,
        C::TypeFp64 => DataType::Fp64,
        C::TypeString => DataType::Bytes,
        C::TypeBf16 => DataType::Bf16,
    })
}

/// One declared input or output, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    /// Dims without the batch dim; -1 is "any size".
    pub dims: Vec<i64>,
    /// Shape (without batch dim) the backend receives/produces instead of `dims`.
    pub reshape: Option<Vec<i64>>,
    pub optional: bool,
    /// Output labels from `label_filename`, for the classification extension.
    pub labels: Option<Arc<Vec<String>>>,
}

/// Where one model instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Cpu,
    Gpu(i32),
    /// KIND_AUTO: a GPU when one is visible, else the CPU (decided at load).
    Auto,
}

/// A validated model configuration: everything the server needs, typed.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    /// The normalised config, as ModelConfig / `/config` report it.
    pub config: ModelConfig,
    /// The backend that serves it, as config.pbtxt names it (`backend`, or
    /// the one its `platform` implies): the key of kiln-backend's registry.
    /// [`ENSEMBLE_BACKEND`] for an ensemble, which no backend runs.
    pub backend: String,
    pub max_batch_size: usize,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub instances: Vec<Placement>,
    pub model_filename: String,
    pub model_dir: PathBuf,
    /// Accepted settings kiln does not act on yet, for the load log.
    pub warnings: Vec<String>,
    /// Ceilings its repository's owner puts on its parameters (a tenant's
    /// plugin quotas); backends apply them when they read the parameters.
    pub ceilings: Option<std::sync::Arc<crate::Ceilings>>,
}

impl ModelSpec {
    pub fn input(&self, name: &str) -> Option<(usize, &TensorSpec)> {
        self.inputs.iter().enumerate().find(|(_, t)| t.name == name)
    }
    pub fn output(&self, name: &str) -> Option<(usize, &TensorSpec)> {
        self.outputs
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == name)
    }
    /// An ensemble's steps (none for any other model).
    pub fn ensemble_steps(&self) -> &[crate::proto::model_ensembling::Step] {
        match &self.config.scheduling_choice {
            Some(SchedulingChoice::EnsembleScheduling(e)) => &e.step,
            _ => &[],
        }
    }

    /// Whether this is an op plugin ([`OP_PLUGIN_BACKEND`]).
    pub fn is_op_plugin(&self) -> bool {
        self.backend == OP_PLUGIN_BACKEND
    }

    /// The op plugins its `custom_ops` parameter names, in order.
    pub fn custom_ops(&self) -> Vec<String> {
        self.config
            .parameters
            .get(CUSTOM_OPS_PARAMETER)
            .map(|p| {
                p.string_value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether a batch goes out at once, with whatever is queued, while one
    /// of the model's instances is idle (default), instead of waiting
    /// `max_queue_delay_microseconds` for company; while every instance is
    /// busy it waits until one is idle or the delay ends. Waiting only pays
    /// while the instances are busy; a lone request otherwise waits the
    /// full delay beside an idle one (issue 15 measured 561 µs of a 2.43 ms
    /// p50 at concurrency 1; and at concurrency 4 on two instances, "idle"
    /// meaning no instance executing left the second one idle while
    /// requests waited: 1,290 against 1,446 requests/s with "idle" meaning
    /// any instance, BENCHMARKS.md). `validate` has checked the value.
    pub fn dispatch_when_idle(&self) -> bool {
        self.config
            .parameters
            .get(DISPATCH_WHEN_IDLE_PARAMETER)
            .and_then(|p| parse_bool(&p.string_value))
            .unwrap_or(true)
    }

    pub fn is_ensemble(&self) -> bool {
        self.backend == ENSEMBLE_BACKEND
    }
    pub fn batched(&self) -> bool {
        self.max_batch_size > 0
    }
    /// Versions to serve out of those present on disk, by `version_policy`.
    pub fn select_versions(&self, available: &[i64]) -> Vec<i64> {
        select_versions(self.config.version_policy.as_ref(), available)
    }
}

/// Applies a version policy (default: the latest one) to the versions on disk.
pub fn select_versions(policy: Option<&ModelVersionPolicy>, available: &[i64]) -> Vec<i64> {
    let mut sorted = available.to_vec();
    sorted.sort_unstable();
    match policy.and_then(|p| p.policy_choice.as_ref()) {
        Some(PolicyChoice::All(_)) => sorted,
        Some(PolicyChoice::Specific(s)) => sorted
            .into_iter()
            .filter(|v| s.versions.contains(v))
            .collect(),
        Some(PolicyChoice::Latest(l)) => {
            let n = l.num_versions.max(1) as usize;
            sorted.split_off(sorted.len().saturating_sub(n))
        }
        None => sorted.split_off(sorted.len().saturating_sub(1)),
    }
}

/// Checks a parsed config against the model directory and normalises it.
pub fn validate(model_dir: &Path, mut config: ModelConfig) -> Result<ModelSpec, ConfigError> {
    let file = model_dir.join(CONFIG_FILE);
    let err = |msg: String| ConfigError::at(&file, msg);
    let dir_name = model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if config.name.is_empty() {
        config.name = dir_name.clone();
    } else if config.name != dir_name {
        return Err(err(format!(
            "field 'name': model name '{}' must match its directory '{dir_name}'",
            config.name
        )));
    }

    let mut warnings = Vec::new();
    let backend = backend_of(&mut config).map_err(&err)?;
    let is_ensemble = backend == ENSEMBLE_BACKEND;
    let is_op_plugin = backend == OP_PLUGIN_BACKEND;
    if config.max_batch_size < 0 {
        return Err(err(format!(
            "field 'max_batch_size': must be >= 0, got {}",
            config.max_batch_size
        )));
    }
    let batched = config.max_batch_size > 0;

    let mut names = HashSet::new();
    let mut inputs = Vec::new();
    for (i, input) in config.input.iter().enumerate() {
        let field = format!("input[{i}]");
        let spec = tensor_spec(
            &field,
            &input.name,
            input.data_type(),
            &input.dims,
            input.reshape.as_ref().map(|r| &r.shape),
            batched,
        )
        .map_err(&err)?;
        if input.is_shape_tensor {
            return Err(err(format!(
                "{field} '{}': shape tensors are not supported",
                input.name
            )));
        }
        if !names.insert(input.name.clone()) {
            return Err(err(format!(
                "{field}: duplicate tensor name '{}'",
                input.name
            )));
        }
        inputs.push(TensorSpec {
            optional: input.optional,
            ..spec
        });
    }
    if is_op_plugin && !(config.input.is_empty() && config.output.is_empty()) {
        return Err(err(format!(
            "an op plugin (backend \"{OP_PLUGIN_BACKEND}\") takes no inference requests: leave out 'input' and 'output'"
        )));
    }
    if inputs.is_empty() && !is_op_plugin {
        return Err(err("field 'input': a model needs at least one input".into()));
    }
    let mut outputs = Vec::new();
    names.clear();
    for (i, output) in config.output.iter().enumerate() {
        let field = format!("output[{i}]");
        let mut spec = tensor_spec(
            &field,
            &output.name,
            output.data_type(),
            &output.dims,
            output.reshape.as_ref().map(|r| &r.shape),
            batched,
        )
        .map_err(&err)?;
        if !names.insert(output.name.clone()) {
            return Err(err(format!(
                "{field}: duplicate tensor name '{}'",
                output.name
            )));
        }
        if !output.label_filename.is_empty() {
            let path = model_dir.join(&output.label_filename);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                err(format!(
                    "{field} '{}': field 'label_filename': cannot read {}: {e}",
                    output.name,
                    path.display()
                ))
            })?;
            spec.labels = Some(Arc::new(text.lines().map(str::to_string).collect()));
        }
        outputs.push(spec);
    }
    if outputs.is_empty() && !is_op_plugin {
        return Err(err(
            "field 'output': a model needs at least one output".into()
        ));
    }
    if config.instance_group.is_empty() {
        config.instance_group.push(ModelInstanceGroup {
            count: 1,
            kind: InstanceKind::Auto as i32,
            ..Default::default()
        });
    }
    let mut instances = Vec::new();
    for (i, group) in config.instance_group.iter_mut().enumerate() {
        if group.name.is_empty() {
            group.name = format!("{}_{i}", config.name);
        }
        if group.count < 0 {
            return Err(err(format!(
                "instance_group[{i}]: field 'count' must be >= 0, got {}",
                group.count
            )));
        }
        if group.count == 0 {
            group.count = 1;
        }
        let group_kind = InstanceKind::try_from(group.kind).unwrap_or(InstanceKind::Auto);
        match group_kind {
            InstanceKind::Cpu => {
                if !group.gpus.is_empty() {
                    return Err(err(format!(
                        "instance_group[{i}]: field 'gpus' is only valid with KIND_GPU"
                    )));
                }
                instances.extend(std::iter::repeat_n(Placement::Cpu, group.count as usize));
            }
            InstanceKind::Gpu => {
                let gpus = if group.gpus.is_empty() {
                    vec![0]
                } else {
                    group.gpus.clone()
                };
                for gpu in gpus {
                    if gpu < 0 {
                        return Err(err(format!(
                            "instance_group[{i}]: field 'gpus': invalid GPU id {gpu}"
                        )));
                    }
                    instances.extend(std::iter::repeat_n(
                        Placement::Gpu(gpu),
                        group.count as usize,
                    ));
                }
            }
            InstanceKind::Auto => {
                instances.extend(std::iter::repeat_n(Placement::Auto, group.count as usize));
            }
            InstanceKind::Model => {
                return Err(err(format!(
                    "instance_group[{i}]: KIND_MODEL is not supported; use KIND_CPU or KIND_GPU"
                )));
            }
        }
    }

    match &config.scheduling_choice {
        None => {}
        Some(SchedulingChoice::DynamicBatching(_)) if !batched => warnings.push(
            "dynamic_batching has no effect with max_batch_size 0: requests execute one by one"
                .into(),
        ),
        Some(SchedulingChoice::DynamicBatching(_)) => {}
        Some(SchedulingChoice::SequenceBatching(_)) => {
            return Err(err(
                "field 'sequence_batching': sequence batching is not supported".into(),
            ))
        }
        Some(SchedulingChoice::EnsembleScheduling(e)) if is_ensemble => {
            let names = |ts: &[TensorSpec]| ts.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
            crate::ensemble::check_steps(&config.name, &names(&inputs), &names(&outputs), &e.step)
                .map_err(err)?;
        }
        Some(SchedulingChoice::EnsembleScheduling(_)) => {
            return Err(err(
                "field 'ensemble_scheduling': only valid with platform \"ensemble\"".into(),
            ));
        }
    }
    if let Some(p) = config.parameters.get(DISPATCH_WHEN_IDLE_PARAMETER) {
        if parse_bool(&p.string_value).is_none() {
            return Err(err(format!(
                "parameter '{DISPATCH_WHEN_IDLE_PARAMETER}': expected \"true\" or \"false\", got \"{}\"",
                kiln_types::text::clip(&p.string_value)
            )));
        }
    }
    if config
        .model_transaction_policy
        .as_ref()
        .is_some_and(|p| p.decoupled)
    {
        return Err(err(
            "field 'model_transaction_policy': decoupled models are not supported".into(),
        ));
    }
    for setting in ignored_optimization_settings(&config) {
        warnings.push(format!("'optimization.{setting}' is accepted and ignored"));
    }
    if config.response_cache.as_ref().is_some_and(|c| c.enable) {
        warnings.push("'response_cache' is accepted and ignored".into());
    }
    if config.version_policy.is_none() {
        config.version_policy = Some(ModelVersionPolicy {
            policy_choice: Some(PolicyChoice::Latest(
                crate::proto::model_version_policy::Latest { num_versions: 1 },
            )),
        });
    }
    for (i, warmup) in config.model_warmup.iter().enumerate() {
        if batched && warmup.batch_size as usize > config.max_batch_size as usize {
            return Err(err(format!(
                "model_warmup[{i}] '{}': batch_size {} exceeds max_batch_size {}",
                warmup.name, warmup.batch_size, config.max_batch_size
            )));
        }
        for name in warmup.inputs.keys() {
            if !inputs.iter().any(|t| &t.name == name) {
                return Err(err(format!(
                    "model_warmup[{i}] '{}': unknown input '{name}'",
                    warmup.name
                )));
            }
        }
    }

    Ok(ModelSpec {
        name: config.name.clone(),
        backend,
        max_batch_size: config.max_batch_size as usize,
        model_filename: config.default_model_filename.clone(),
        config,
        inputs,
        outputs,
        instances,
        model_dir: model_dir.to_path_buf(),
        warnings,
        ceilings: None,
    })
}

/// A boolean model parameter's value as Triton's backends read them (any
/// case, surrounding space ignored); `None` for anything else.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn tensor_spec(
    field: &str,
    name: &str,
    data_type: crate::proto::DataType,
    dims: &[i64],
    reshape: Option<&Vec<i64>>,
    batched: bool,
) -> Result<TensorSpec, String> {
    if name.is_empty() {
        return Err(format!("{field}: field 'name' is required"));
    }
    let datatype = datatype_of(data_type)
        .ok_or_else(|| format!("{field} '{name}': field 'data_type' is required"))?;
    if dims.is_empty() && !batched && reshape.is_none() {
        return Err(format!(
            "{field} '{name}': field 'dims' must not be empty when max_batch_size is 0"
        ));
    }
    if let Some(d) = dims.iter().find(|&&d| d < -1) {
        return Err(format!(
            "{field} '{name}': field 'dims': invalid dim {d} (use -1 for a variable dim)"
        ));
    }
    if let Some(r) = reshape {
        let fixed = |v: &[i64]| v.iter().all(|&d| d >= 0);
        if fixed(dims) && fixed(r) && dims.iter().product::<i64>() != r.iter().product::<i64>() {
            return Err(format!("{field} '{name}': field 'reshape' {r:?} has a different element count than dims {dims:?}"));
        }
    }
    Ok(TensorSpec {
        name: name.to_string(),
        datatype,
        dims: dims.to_vec(),
        reshape: reshape.cloned(),
        optional: false,
        labels: None,
    })
}

/// The backend a config names: `backend`, or the one its `platform` implies
/// (Triton's table); both fields are filled as Triton reports them where the
/// platform is unambiguous. Whether a backend of that name is registered is
/// kiln-backend's check.
fn backend_of(config: &mut ModelConfig) -> Result<String, String> {
    let (platform, backend) = (config.platform.as_str(), config.backend.as_str());
    let unsupported = || {
        format!(
            "field 'platform'/'backend': unsupported platform '{platform}' / backend '{backend}'"
        )
    };
    match (platform, backend) {
        ("", "") => Err("field 'platform'/'backend': one is required (platform \"pytorch_libtorch\" or backend \"wasm\")".into()),
        (ENSEMBLE_PLATFORM, "") => Ok(ENSEMBLE_BACKEND.into()),
        (ENSEMBLE_PLATFORM, _) => Err(unsupported()),
        ("", b) => {
            let mut platforms = PLATFORM_BACKENDS.iter().filter(|(_, pb)| *pb == b);
            if let (Some((p, _)), None) = (platforms.next(), platforms.next()) {
                config.platform = p.to_string();
            }
            Ok(b.to_string())
        }
        (p, b) => match PLATFORM_BACKENDS.iter().find(|(pp, _)| *pp == p) {
            Some((_, pb)) if b.is_empty() || b == *pb => {
                config.backend = pb.to_string();
                Ok(pb.to_string())
            }
            _ => Err(unsupported()),
        },
    }
}

/// Settings under `optimization` that kiln accepts but does not act on, for
/// the load log.
pub fn ignored_optimization_settings(config: &ModelConfig) -> Vec<&'static str> {
    let Some(o) = config.optimization.as_ref() else {
        return vec![];
    };
    let mut ignored = Vec::new();
    if o.graph.is_some() {
        ignored.push("graph");
    }
    if o.priority != 0 {
        ignored.push("priority");
    }
    if o.execution_accelerators.is_some() {
        ignored.push("execution_accelerators");
    }
    if o.input_pinned_memory.is_some() || o.output_pinned_memory.is_some() {
        ignored.push(
            "input_pinned_memory/output_pinned_memory (GPU inputs always go through pinned memory)",
        );
    }
    if o.gather_kernel_buffer_threshold != 0 {
        ignored.push("gather_kernel_buffer_threshold");
    }
    if o.eager_batching {
        ignored.push("eager_batching");
    }
    if let Some(c) = &o.cuda {
        if c.busy_wait_events {
            ignored.push("cuda.busy_wait_events");
        }
        if c.output_copy_stream {
            ignored.push("cuda.output_copy_stream");
        }
        if !c.graphs && !c.graph_spec.is_empty() {
            ignored.push("cuda.graph_spec (without cuda.graphs: true)");
        }
    }
    ignored
}
