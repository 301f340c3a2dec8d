//! config.pbtxt: parsed with a real protobuf text-format parser
//! (prost-reflect) against kiln's `model_config.proto`, then checked and
//! normalised into a [`ModelSpec`], the typed view the server works from.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::Diagnostic;
use prost_reflect::{DynamicMessage, ReflectMessage};

use crate::backend::BackendKind;
use crate::protocol::proto::{
    model_config::SchedulingChoice, model_instance_group::Kind as InstanceKind,
    model_version_policy::PolicyChoice, ModelConfig, ModelInstanceGroup, ModelVersionPolicy,
};
use kiln_types::tensor::DataType;

pub const CONFIG_FILE: &str = "config.pbtxt";
pub const PYTORCH_PLATFORM: &str = "pytorch_libtorch";
pub const PYTORCH_BACKEND: &str = "pytorch";
pub const WASM_BACKEND: &str = "wasm";
pub const ENSEMBLE_PLATFORM: &str = "ensemble";
pub const DEFAULT_MODEL_FILENAME: &str = "model.pt";
pub const DEFAULT_PLUGIN_FILENAME: &str = "model.wasm";

/// A config that could not be read, parsed or accepted. The message names
/// the file, and for parse errors the line, column and field.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    fn at(file: &Path, msg: impl std::fmt::Display) -> Self {
        Self(format!("{}: {msg}", file.display()))
    }
}

/// Parses config.pbtxt text. Unknown fields, bad enum values, wrong types and
/// syntax errors are errors naming `file:line:column`.
pub fn parse_text(file: &Path, text: &str) -> Result<ModelConfig, ConfigError> {
    let desc = ModelConfig::default().descriptor();
    let normalized = colon_before_lists(text);
    let dynamic = DynamicMessage::parse_text_format(desc, &normalized).map_err(|e| {
        let location = e
            .labels()
            .and_then(|mut l| l.next())
            .map(|span| line_col(text, span.offset()))
            .map(|(line, col)| format!(":{line}:{col}"))
            .unwrap_or_default();
        ConfigError(format!("{}{location}: {e}", file.display()))
    })?;
    dynamic
        .transcode_to::<ModelConfig>()
        .map_err(|e| ConfigError::at(file, format!("cannot decode config: {e}")))
}

/// Protobuf text format lets a repeated message field use the list form
/// without a colon (`input [ { ... } ]`), and every Triton config does; the
/// prost-reflect parser insists on `input: [`. This adds the colon, in place
/// of the whitespace before `[` where there is some, so that byte offsets and
/// therefore reported line:column positions stay those of the user's file.
/// Strings and `#` comments are left alone.
fn colon_before_lists(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut edits: Vec<(usize, bool)> = Vec::new(); // (offset, replace whitespace?)
    let mut i = 0;
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' => {
                let mut j = i;
                while j > 0 && bytes[j - 1].is_ascii_whitespace() {
                    j -= 1;
                }
                let ident_end = j;
                while j > 0 && is_ident(bytes[j - 1]) {
                    j -= 1;
                }
                let mut k = j;
                while k > 0 && bytes[k - 1].is_ascii_whitespace() {
                    k -= 1;
                }
                let after_colon = k > 0 && bytes[k - 1] == b':';
                if ident_end > j && !bytes[j].is_ascii_digit() && !after_colon {
                    edits.push((ident_end, ident_end < i));
                }
            }
            _ => {}
        }
        i += 1;
    }
    if edits.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + edits.len());
    let mut last = 0;
    for (at, replace) in edits {
        out.push_str(&text[last..at]);
        out.push(':');
        last = if replace { at + 1 } else { at };
    }
    out.push_str(&text[last..]);
    std::borrow::Cow::Owned(out)
}

/// Line and column (1-based, in characters) of a byte offset. The offset
/// comes from the normalized text, which may be a byte longer than the
/// user's before it (`colon_before_lists`): it is taken at the nearest
/// character boundary at or before it (the fuzzer found an offset inside a
/// multi-byte character).
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Reads and parses `<model_dir>/config.pbtxt`.
pub fn read_config(model_dir: &Path) -> Result<ModelConfig, ConfigError> {
    let file = model_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&file).map_err(|e| ConfigError::at(&file, e))?;
    parse_text(&file, &text)
}

/// From config.pbtxt's `data_type`; `None` for `TYPE_INVALID`.
pub fn datatype_of(t: crate::protocol::proto::DataType) -> Option<DataType> {
    use crate::protocol::proto::DataType as C;
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
    pub kind: BackendKind,
    pub max_batch_size: usize,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub instances: Vec<Placement>,
    pub model_filename: String,
    pub model_dir: PathBuf,
    /// Shapes GPU instances capture as CUDA graphs (`optimization.cuda`).
    pub cuda_graphs: Vec<super::cuda_graphs::GraphShape>,
    /// Accepted settings kiln does not act on yet, for the load log.
    pub warnings: Vec<String>,
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
    let kind = match (config.platform.as_str(), config.backend.as_str()) {
        ("", WASM_BACKEND) => BackendKind::Wasm,
        (ENSEMBLE_PLATFORM, "") => BackendKind::Ensemble,
        ("" | PYTORCH_PLATFORM, "" | PYTORCH_BACKEND) if !(config.platform.is_empty() && config.backend.is_empty()) => {
            config.platform = PYTORCH_PLATFORM.into();
            config.backend = PYTORCH_BACKEND.into();
            BackendKind::TorchScript
        }
        ("", "") => {
            return Err(err("field 'platform'/'backend': one is required (platform \"pytorch_libtorch\" or backend \"wasm\")".into()))
        }
        (p, b) => {
            return Err(err(format!(
                "field 'platform'/'backend': unsupported platform '{p}' / backend '{b}': kiln serves TorchScript models (platform \"pytorch_libtorch\") and wasm plugins (backend \"wasm\")"
            )))
        }
    };
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
                "{field} '{}': shape tensors are not supported by the TorchScript backend",
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
    if inputs.is_empty() {
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
    if outputs.is_empty() {
        return Err(err(
            "field 'output': a model needs at least one output".into()
        ));
    }
    if kind == BackendKind::TorchScript {
        for spec in inputs.iter().chain(&outputs) {
            torchscript_supports(spec.datatype)
                .map_err(|m| err(format!("tensor '{}': {m}", spec.name)))?;
        }
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
            InstanceKind::Gpu if kind == BackendKind::Wasm => {
                return Err(err(format!(
                    "instance_group[{i}]: wasm plugins run on the CPU; use KIND_CPU"
                )));
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
            InstanceKind::Auto if kind == BackendKind::Wasm => {
                instances.extend(std::iter::repeat_n(Placement::Cpu, group.count as usize));
            }
            InstanceKind::Auto => {
                instances.extend(std::iter::repeat_n(Placement::Auto, group.count as usize));
            }
            InstanceKind::Model => {
                return Err(err(format!("instance_group[{i}]: KIND_MODEL is not supported by the TorchScript backend; use KIND_CPU or KIND_GPU")));
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
        Some(SchedulingChoice::EnsembleScheduling(e)) if kind == BackendKind::Ensemble => {
            let names = |ts: &[TensorSpec]| ts.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
            crate::pipeline::ensemble::validate(
                &config.name,
                &names(&inputs),
                &names(&outputs),
                &e.step,
            )
            .map_err(err)?;
        }
        Some(SchedulingChoice::EnsembleScheduling(_)) => {
            return Err(err(
                "field 'ensemble_scheduling': only valid with platform \"ensemble\"".into(),
            ));
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
    let cuda_graphs = super::cuda_graphs::graph_shapes(&config, kind, &inputs).map_err(&err)?;
    for setting in super::cuda_graphs::ignored_optimization_settings(&config) {
        warnings.push(format!("'optimization.{setting}' is accepted and ignored"));
    }
    if config.response_cache.as_ref().is_some_and(|c| c.enable) {
        warnings.push("'response_cache' is accepted and ignored".into());
    }
    if config.version_policy.is_none() {
        config.version_policy = Some(ModelVersionPolicy {
            policy_choice: Some(PolicyChoice::Latest(
                crate::protocol::proto::model_version_policy::Latest { num_versions: 1 },
            )),
        });
    }
    if config.default_model_filename.is_empty() && kind != BackendKind::Ensemble {
        config.default_model_filename = match kind {
            BackendKind::TorchScript => DEFAULT_MODEL_FILENAME,
            BackendKind::Wasm => DEFAULT_PLUGIN_FILENAME,
            BackendKind::Ensemble => unreachable!("ensembles have no model file"),
        }
        .into();
    }
    if kind == BackendKind::Wasm {
        crate::backend::wasm::PluginSettings::from_spec_parameters(&config)
            .map_err(|m| err(format!("field 'parameters': {m}")))?;
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
        kind,
        max_batch_size: config.max_batch_size as usize,
        model_filename: config.default_model_filename.clone(),
        config,
        inputs,
        outputs,
        instances,
        model_dir: model_dir.to_path_buf(),
        cuda_graphs,
        warnings,
    })
}

fn tensor_spec(
    field: &str,
    name: &str,
    data_type: crate::protocol::proto::DataType,
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

/// Datatypes libtorch can hold: every KServe type but BYTES.
fn torchscript_supports(d: DataType) -> Result<(), String> {
    match d {
        DataType::Bytes => {
            Err("BYTES (TYPE_STRING) tensors are not supported by the TorchScript backend".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(name: &str, text: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(CONFIG_FILE), text).unwrap();
        tmp
    }

    fn load(tmp: &tempfile::TempDir, name: &str) -> Result<ModelSpec, ConfigError> {
        let d = tmp.path().join(name);
        validate(&d, read_config(&d)?)
    }

    const RESNET: &str = r#"
name: "resnet50"
platform: "pytorch_libtorch"
max_batch_size: 8
input [
  {
    name: "INPUT__0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
  }
]
output [
  {
    name: "OUTPUT__0"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    label_filename: "labels.txt"
  }
]
instance_group [ { count: 2, kind: KIND_GPU, gpus: [ 0, 1 ] } ]
dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }
version_policy: { latest: { num_versions: 2 } }
parameters: { key: "INFERENCE_MODE" value: { string_value: "true" } }
model_warmup [
  {
    name: "zeros"
    batch_size: 1
    inputs { key: "INPUT__0" value: { data_type: TYPE_FP32 dims: [ 3, 224, 224 ] zero_data: true } }
  }
]
"#;

    #[test]
    fn triton_resnet_config_loads_unchanged() {
        let tmp = dir_with("resnet50", RESNET);
        std::fs::write(tmp.path().join("resnet50/labels.txt"), "tench\ngoldfish\n").unwrap();
        let spec = load(&tmp, "resnet50").unwrap();
        assert_eq!(spec.max_batch_size, 8);
        assert_eq!(spec.inputs[0].dims, vec![3, 224, 224]);
        assert_eq!(spec.outputs[0].labels.as_ref().unwrap()[1], "goldfish");
        assert_eq!(
            spec.instances,
            vec![
                Placement::Gpu(0),
                Placement::Gpu(0),
                Placement::Gpu(1),
                Placement::Gpu(1)
            ]
        );
        assert_eq!(spec.config.backend, PYTORCH_BACKEND);
        assert_eq!(spec.select_versions(&[1, 3, 2]), vec![2, 3]);
        assert!(spec.warnings.is_empty(), "{:?}", spec.warnings);
    }

    #[test]
    fn bert_and_full_dims_configs_load() {
        let bert = r#"
name: "bert"
backend: "pytorch"
max_batch_size: 4
input [ { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },
        { name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ -1, 2 ] } ]
"#;
        let tmp = dir_with("bert", bert);
        let spec = load(&tmp, "bert").unwrap();
        assert_eq!(spec.inputs.len(), 2);
        assert_eq!(spec.instances, vec![Placement::Auto]);

        let full = r#"
platform: "pytorch_libtorch"
max_batch_size: 0
input [ { name: "image" data_type: TYPE_FP32 dims: [ 1, 3, 256, 256 ] } ]
output [ { name: "mask" data_type: TYPE_FP32 dims: [ 1, 1, 256, 256 ] } ]
instance_group [ { kind: KIND_CPU } ]
"#;
        let tmp = dir_with("seg", full);
        let spec = load(&tmp, "seg").unwrap();
        assert_eq!(spec.name, "seg");
        assert!(!spec.batched());
        assert_eq!(spec.instances, vec![Placement::Cpu]);
    }

    #[test]
    fn an_error_inside_a_multibyte_character_is_located_not_a_panic() {
        // Found by host/fuzz (config_pbtxt): the error offset, taken from
        // the normalized text, fell inside U+031C.
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/corpus/config_pbtxt/crash-offset-inside-char"
        ))
        .unwrap();
        let e = parse_text(Path::new("config.pbtxt"), &text).unwrap_err();
        assert!(e.0.starts_with("config.pbtxt:"), "{e}");
        assert_eq!(line_col("aé", 2), (1, 2));
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let tmp = dir_with(
            "m",
            "name: \"m\"\nplatform: \"pytorch_libtorch\"\nmax_batch_sise: 8\n",
        );
        let e = load(&tmp, "m").unwrap_err().0;
        assert!(e.contains("config.pbtxt:3:1"), "{e}");
        assert!(e.contains("max_batch_sise"), "{e}");
    }

    #[test]
    fn bad_enum_value_is_reported() {
        let tmp = dir_with("m", "platform: \"pytorch_libtorch\"\ninput [ { name: \"x\" data_type: TYPE_FLOAT dims: [1] } ]\n");
        let e = load(&tmp, "m").unwrap_err().0;
        assert!(e.contains(":2:") && e.contains("TYPE_FLOAT"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let cases = [
            ("name: \"other\"\nplatform: \"pytorch_libtorch\"", "name"),
            ("platform: \"onnxruntime_onnx\"\ninput [ { name: \"x\" data_type: TYPE_FP32 dims: [1] } ]\noutput [ { name: \"y\" data_type: TYPE_FP32 dims: [1] } ]", "onnxruntime_onnx"),
            ("platform: \"pytorch_libtorch\"\nmax_batch_size: 1\ninput [ { name: \"x\" data_type: TYPE_STRING dims: [1] } ]\noutput [ { name: \"y\" data_type: TYPE_FP32 dims: [1] } ]", "BYTES"),
            ("platform: \"pytorch_libtorch\"\nmax_batch_size: 1\ninput [ { name: \"x\" data_type: TYPE_FP32 dims: [-2] } ]\noutput [ { name: \"y\" data_type: TYPE_FP32 dims: [1] } ]", "dims"),
            ("platform: \"pytorch_libtorch\"\nmax_batch_size: 1\ninput [ { name: \"x\" data_type: TYPE_FP32 dims: [1] } ]\noutput [ { name: \"y\" data_type: TYPE_FP32 dims: [1] label_filename: \"nope.txt\" } ]", "label_filename"),
        ];
        for (text, needle) in cases {
            let tmp = dir_with("m", text);
            let e = load(&tmp, "m").unwrap_err().0;
            assert!(
                e.contains(needle) && e.contains("config.pbtxt"),
                "{needle}: {e}"
            );
        }
    }

    #[test]
    fn list_syntax_without_colon_keeps_offsets() {
        let text = "input [ { name: \"a [b\" } ] # x [y\noutput[{}]\ndims: [ 1 ]";
        let fixed = colon_before_lists(text);
        assert_eq!(
            fixed,
            "input:[ { name: \"a [b\" } ] # x [y\noutput:[{}]\ndims: [ 1 ]"
        );
    }

    #[test]
    fn version_policies() {
        use crate::protocol::proto::model_version_policy::{All, Latest, Specific};
        let pol = |c| ModelVersionPolicy {
            policy_choice: Some(c),
        };
        assert_eq!(select_versions(None, &[1, 2, 3]), vec![3]);
        assert_eq!(
            select_versions(Some(&pol(PolicyChoice::All(All {}))), &[3, 1]),
            vec![1, 3]
        );
        assert_eq!(
            select_versions(
                Some(&pol(PolicyChoice::Latest(Latest { num_versions: 5 }))),
                &[1, 2]
            ),
            vec![1, 2]
        );
        assert_eq!(
            select_versions(
                Some(&pol(PolicyChoice::Specific(Specific {
                    versions: vec![1, 4]
                }))),
                &[1, 2, 3]
            ),
            vec![1]
        );
        assert!(select_versions(None, &[]).is_empty());
    }
}
