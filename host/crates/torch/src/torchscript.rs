//! TorchScript models on libtorch (tch). One `CModule` per instance, loaded
//! onto the instance's device.
//!
//! Argument order: when every input is named `<name>__<index>` (Triton's
//! PyTorch convention, e.g. `INPUT__0`), the index is the forward argument
//! position; otherwise inputs are passed in config order. Outputs map the
//! same way onto the returned tensor, tuple or list.
//!
//! Precision: config parameter `precision` (`fp32`, `fp16` or `bf16`) runs
//! the model's floating-point weights and inputs in that type on the GPU;
//! clients keep sending and receiving the datatypes config.pbtxt declares,
//! and kiln converts on the device. Default: the model as it was saved.
//!
//! TorchScript executor switches, as Triton's PyTorch backend names them:
//! `ENABLE_JIT_PROFILING` and `ENABLE_TENSOR_FUSER` (`true`/`false`; default:
//! libtorch's). The profiling executor re-specialises the graph for every
//! new input shape, which a dynamically batched model meets constantly.
//! libtorch keeps these switches process-wide; kiln sets them before each
//! execution of a model that names them, as Triton does, so models that
//! disagree should not share a server.
//!
//! Threads: `INTRA_OP_THREAD_COUNT` (Triton's PyTorch backend's name) is the
//! size of the OpenMP team each instance's operators use, set on the
//! instance's own thread, so instances do not share it; default **1**.
//! libtorch's default (one thread per core, spinning while they wait)
//! collapses as soon as anything else wants a core: BENCHMARKS.md recorded
//! the digits pipeline falling from about 2,500 to 54 inferences/s when
//! another process held one of two cores. Serve more instances, or raise
//! the count for a large CPU model, to use more cores. `INTER_OP_THREAD_COUNT`
//! sizes libtorch's inter-op pool (TorchScript `fork`), which is
//! process-wide: the first model that sets it wins, later different values
//! are named in the load log.
//!
//! CUDA graphs: with `optimization { cuda { graphs: true } }`, each GPU
//! instance captures its forward pass at load for the shapes
//! `cuda_graphs` lists, and replays a captured graph for every
//! batch that fits one (padding the rows past the batch); other shapes run
//! eagerly. CPU instances always run eagerly.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tch::{CModule, Device, IValue, Kind};

use kiln_backend::{Backend, BackendError, BackendRequest, ExecTimings, InFlight, Submitted};
use kiln_model_config::{ModelSpec, Placement, TensorSpec};
use kiln_ops::OpResolver;

use crate::cuda_graphs::{self, GraphShape};
use crate::custom_ops::{self, ModelOps};
use crate::kinds::{datatype_of, kind_of};
use crate::torch_ffi;
use kiln_types::tensor::{DataType, Tensor};
use kiln_types::text::first_line;

pub struct TorchScriptInstance {
    module: CModule,
    device: Device,
    /// The floating-point type the model runs in (`precision`), if converted.
    precision: Option<Kind>,
    /// `ENABLE_JIT_PROFILING` / `ENABLE_TENSOR_FUSER`, when the config sets them.
    jit_profiling: Option<bool>,
    tensor_fuser: Option<bool>,
    /// The instance's own CUDA stream (GPU instances only).
    stream: Option<torch_ffi::CudaStream>,
    /// How inputs reach the GPU while the previous batch computes (GPU
    /// instances only).
    staging: Option<torch_ffi::InputStaging>,
    /// `arg_position[i]` = forward position of spec input `i`.
    arg_position: Vec<usize>,
    /// `output_position[i]` = index in the model's result of spec output `i`.
    output_position: Vec<usize>,
    outputs: Vec<TensorSpec>,
    /// Captured forward passes, smallest batch first (GPU instances of
    /// models with `optimization.cuda.graphs` only).
    graphs: Vec<CapturedForward>,
    /// `INTRA_OP_THREAD_COUNT`, and the thread it was last applied on.
    intra_op_threads: i32,
    threads_on: Option<std::thread::ThreadId>,
    /// The custom ops its forward pass calls, from the op plugins its
    /// `custom_ops` names.
    custom_ops: Option<Arc<ModelOps>>,
}

/// One forward pass captured as a CUDA graph: replaying it reruns the
/// captured kernels on the same memory, so a batch is copied into `inputs`
/// first and its results read from `outputs` before the next replay.
struct CapturedForward {
    /// The shape it was captured at; `shape.batch` is 0 for a model without
    /// a batch dimension (inputs must then match exactly).
    shape: GraphShape,
    inputs: Vec<tch::Tensor>,
    /// The model's flattened result, in result order.
    outputs: Vec<tch::Tensor>,
    graph: torch_ffi::CudaGraph,
}

impl CapturedForward {
    /// Whether inputs of these shapes run on this graph: the same dims but
    /// the batch, which may be smaller (the remaining rows are padding).
    fn fits(&self, shapes: &[Vec<i64>]) -> bool {
        shapes.len() == self.shape.inputs.len()
            && shapes
                .iter()
                .zip(&self.shape.inputs)
                .all(|(got, captured)| {
                    if self.shape.batch == 0 {
                        got == captured
                    } else {
                        got.len() == captured.len()
                            && got[0] <= captured[0]
                            && got[1..] == captured[1..]
                    }
                })
    }
}

/// Eager runs at a shape before it is captured: the TorchScript profiling
/// executor settles its optimised plan (and compiles any fused kernels)
/// over the first runs, and cuBLAS allocates its workspace; neither may
/// happen inside a capture.
const GRAPH_WARMUP_RUNS: usize = 5;

/// Whether libtorch can see a CUDA device (false on CPU-only builds).
pub fn cuda_device_count() -> i64 {
    if tch::Cuda::is_available() {
        tch::Cuda::device_count()
    } else {
        0
    }
}

pub fn resolve_device(placement: Placement) -> Result<Device, BackendError> {
    let gpus = cuda_device_count();
    match placement {
        Placement::Cpu => Ok(Device::Cpu),
        Placement::Auto => Ok(if gpus > 0 {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        Placement::Gpu(id) if (id as i64) < gpus => Ok(Device::Cuda(id as usize)),
        Placement::Gpu(id) => Err(BackendError::Load(format!(
            "instance_group asks for GPU {id} but {gpus} CUDA device(s) are visible to libtorch{}",
            if cfg!(feature = "cuda") {
                ""
            } else {
                " (this kiln was built without the `cuda` feature)"
            }
        ))),
    }
}

/// The `__<index>` suffix of Triton's naming convention, if all names have one.
fn convention_positions(names: &[&str]) -> Option<Vec<usize>> {
    let positions: Option<Vec<usize>> = names
        .iter()
        .map(|n| n.rsplit_once("__").and_then(|(_, i)| i.parse().ok()))
        .collect();
    let positions = positions?;
    let mut sorted = positions.clone();
    sorted.sort_unstable();
    sorted.dedup();
    (sorted.len() == positions.len()).then_some(positions)
}

fn positions(specs: &[TensorSpec]) -> Vec<usize> {
    let names: Vec<&str> = specs.iter().map(|t| t.name.as_str()).collect();
    convention_positions(&names).unwrap_or_else(|| (0..specs.len()).collect())
}

/// The `pytorch` backend (`platform: "pytorch_libtorch"`): TorchScript
/// modules through libtorch, on the CPU or a GPU.
pub struct TorchScriptFactory;

impl kiln_backend::BackendFactory for TorchScriptFactory {
    fn name(&self) -> &'static str {
        "pytorch"
    }
    fn describe(&self) -> &'static str {
        "TorchScript models (platform \"pytorch_libtorch\")"
    }
    fn runs_on_gpu(&self) -> bool {
        true
    }
    fn default_model_filename(&self) -> &'static str {
        "model.pt"
    }
    fn validate(&self, spec: &mut ModelSpec) -> Result<(), String> {
        for t in spec.inputs.iter().chain(&spec.outputs) {
            if t.datatype == DataType::Bytes {
                return Err(format!(
                    "tensor '{}': BYTES (TYPE_STRING) tensors are not supported by the TorchScript backend",
                    t.name
                ));
            }
        }
        cuda_graphs::graph_shapes(&spec.config, &spec.inputs).map(drop)
    }
    fn load(
        &self,
        spec: &ModelSpec,
        path: &Path,
        placement: Placement,
        ops: &Arc<dyn OpResolver>,
    ) -> Result<Box<dyn Backend>, BackendError> {
        Ok(Box::new(TorchScriptInstance::load(
            spec, path, placement, ops,
        )?))
    }
}

impl TorchScriptInstance {
    pub fn load(
        spec: &ModelSpec,
        path: &Path,
        placement: Placement,
        ops: &Arc<dyn OpResolver>,
    ) -> Result<Self, BackendError> {
        let device = resolve_device(placement)?;
        if !path.is_file() {
            return Err(BackendError::Load(format!(
                "model file {} not found",
                path.display()
            )));
        }
        // The ops must be in libtorch's registry before the model's code is
        // compiled by the load.
        let plugins = spec.custom_ops();
        let custom_ops = if plugins.is_empty() {
            None
        } else {
            let resolved = ModelOps::resolve(&spec.name, &plugins, ops).map_err(|e| {
                BackendError::Load(format!(
                    "parameter '{}': {e}",
                    kiln_model_config::CUSTOM_OPS_PARAMETER
                ))
            })?;
            Some(Arc::new(resolved))
        };
        let mut module = CModule::load_on_device(path, device)
            .map_err(|e| load_error(path, &e.to_string(), custom_ops.as_deref(), &plugins))?;
        module.set_eval();
        let precision = precision(spec)?;
        if let Some(kind) = precision {
            if device == Device::Cpu && kind != Kind::Float {
                return Err(BackendError::Load(format!(
                    "parameter 'precision': {kind:?} execution needs a GPU instance (instance_group kind: KIND_GPU)"
                )));
            }
            // tch panics if libtorch refuses; that is a load error, not a crash.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                module.to(device, kind, false)
            }))
            .map_err(|_| BackendError::Load(format!("cannot convert the model to {kind:?}")))?;
        }
        if let Device::Cuda(i) = device {
            // The weights were copied on the default stream; the instance's
            // own stream (non-blocking, from libtorch's pool) does not wait
            // for it, so the copies must be done before the first execution.
            tch::Cuda::synchronize(i as i64);
        }
        let intra_op_threads = thread_count(spec, "INTRA_OP_THREAD_COUNT")?.unwrap_or(1);
        if let Some(n) = thread_count(spec, "INTER_OP_THREAD_COUNT")? {
            apply_inter_op_threads(n, &spec.name);
        }
        let arg_position = positions(&spec.inputs);
        if let Some(max) = arg_position.iter().max() {
            if *max >= spec.inputs.len() {
                return Err(BackendError::Load(format!(
                    "input names use the __<index> convention but index {max} leaves a gap among {} inputs",
                    spec.inputs.len()
                )));
            }
        }
        let mut instance = Self {
            module,
            device,
            precision,
            stream: match device {
                Device::Cuda(i) => Some(torch_ffi::CudaStream::new(i).map_err(BackendError::Load)?),
                _ => None,
            },
            staging: match device {
                Device::Cuda(i) => {
                    Some(torch_ffi::InputStaging::new(device, i).map_err(BackendError::Load)?)
                }
                _ => None,
            },
            jit_profiling: bool_parameter(spec, "ENABLE_JIT_PROFILING")?,
            tensor_fuser: bool_parameter(spec, "ENABLE_TENSOR_FUSER")?,
            arg_position,
            output_position: positions(&spec.outputs),
            outputs: spec.outputs.clone(),
            graphs: Vec::new(),
            intra_op_threads,
            threads_on: None,
            custom_ops,
        };
        let graph_shapes =
            cuda_graphs::graph_shapes(&spec.config, &spec.inputs).map_err(BackendError::Load)?;
        if !graph_shapes.is_empty() {
            if instance.stream.is_some() {
                instance.capture_graphs(spec, &graph_shapes)?;
            } else {
                tracing::warn!(
                    model = %spec.name,
                    "optimization.cuda.graphs applies to GPU instances; this CPU instance runs eagerly"
                );
            }
        }
        Ok(instance)
    }

    /// Captures a forward pass for every shape in `shapes`
    /// (largest first, all in one memory pool), each after eager warm-up
    /// runs at that shape, then replays each once to prove it runs.
    fn capture_graphs(
        &mut self,
        spec: &ModelSpec,
        shapes: &[GraphShape],
    ) -> Result<(), BackendError> {
        let stream = self.stream.as_ref().expect("GPU instance");
        stream.make_current().map_err(BackendError::Load)?;
        let mut graphs: Vec<CapturedForward> = Vec::new();
        for shape in shapes {
            let fail = |e: String| {
                BackendError::Load(format!(
                    "optimization.cuda.graphs: cannot capture the forward pass for input shapes {:?}: {}",
                    shape.inputs,
                    first_line(&e)
                ))
            };
            let inputs = spec
                .inputs
                .iter()
                .zip(&shape.inputs)
                .map(|(t, dims)| {
                    let kind = kind_of(t.datatype).expect("checked by cuda_graphs::graph_shapes");
                    tch::Tensor::f_zeros(dims.as_slice(), (kind, self.device))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(e.to_string()))?;
            let args = || inputs.iter().map(|t| Some(t.shallow_clone())).collect();
            for _ in 0..GRAPH_WARMUP_RUNS {
                self.run_model(args()).map_err(|e| fail(e.to_string()))?;
            }
            stream.synchronize().map_err(fail)?;
            let mut graph = torch_ffi::CudaGraph::new().map_err(fail)?;
            graph
                .capture_begin(graphs.first().map(|g| &g.graph))
                .map_err(fail)?;
            let produced = self.run_model(args());
            // Always end the capture, also when the forward pass failed:
            // the stream must leave capture mode.
            let ended = graph.capture_end();
            let outputs = produced.map_err(|e| fail(e.to_string()))?;
            ended.map_err(fail)?;
            if shape.batch > 0 {
                if let Some(t) = outputs
                    .iter()
                    .find(|t| t.size().first() != Some(&(shape.batch as i64)))
                {
                    return Err(fail(format!(
                        "a result of shape {:?} does not start with the batch dimension {}; padded batches need batch-major results",
                        t.size(),
                        shape.batch
                    )));
                }
            }
            graph.replay().map_err(fail)?;
            stream.synchronize().map_err(fail)?;
            graphs.push(CapturedForward {
                shape: shape.clone(),
                inputs,
                outputs,
                graph,
            });
        }
        graphs.reverse();
        tracing::info!(
            model = %spec.name,
            device = %self.device(),
            batch_sizes = ?graphs.iter().map(|g| g.shape.batch).collect::<Vec<_>>(),
            "captured CUDA graphs"
        );
        self.graphs = graphs;
        Ok(())
    }

    fn to_torch(&self, t: &Tensor) -> Result<tch::Tensor, BackendError> {
        let shape = &t.shape;
        let Some(kind) = kind_of(t.datatype) else {
            let cpu = torch_ffi::unsigned_tensor(&t.data, shape, t.datatype)
                .map_err(|e| BackendError::InvalidInput(format!("tensor '{}': {e}", t.name)))?;
            return self.on_device(cpu);
        };
        let numel = kiln_types::tensor::element_count(shape).unwrap_or(usize::MAX);
        // tch does not check the length itself; the protocol layer already did,
        // this keeps an invariant violation from reading out of bounds.
        if numel.checked_mul(kind.elt_size_in_bytes()) != Some(t.data.len()) {
            return Err(BackendError::InvalidInput(format!(
                "tensor '{}': {} bytes do not match shape {shape:?}",
                t.name,
                t.data.len()
            )));
        }
        // The CPU model gets its own copy: a model may write into its inputs,
        // and the request buffer can be shared (ensembles, batching).
        tch::Tensor::f_from_data_size(&t.data, shape, kind)
            .map_err(|e| BackendError::Execution(e.to_string()))
    }

    /// Puts the inputs where the model runs. `inputs[i]` holds the parts of
    /// spec input `i`: one tensor, or the same tensor of each request of a
    /// batch (concatenated along the batch dimension; only on a GPU, where
    /// they are gathered in the pinned staging buffer).
    fn place_inputs(
        &mut self,
        inputs: &[Option<Vec<&Tensor>>],
    ) -> Result<Vec<Option<tch::Tensor>>, BackendError> {
        if let Some(stream) = &self.stream {
            // Everything this execution queues (copies, kernels) goes on it.
            stream.make_current().map_err(BackendError::Execution)?;
        }
        let mut placed: Vec<Option<tch::Tensor>> = (0..inputs.len()).map(|_| None).collect();
        let mut uploads = Vec::new();
        let mut slots = Vec::new();
        for (i, parts) in inputs.iter().enumerate() {
            let Some(parts) = parts else { continue };
            let first = parts[0];
            match (self.device, kind_of(first.datatype)) {
                (Device::Cuda(_), Some(kind)) => {
                    let mut shape = first.shape.clone();
                    if parts.len() > 1 {
                        shape[0] = parts.iter().map(|t| t.shape[0]).sum();
                    }
                    uploads.push(torch_ffi::Upload {
                        parts: parts.iter().map(|t| &t.data[..]).collect(),
                        shape,
                        kind,
                    });
                    slots.push(i);
                }
                // CPU models, and unsigned wide types (batches of those are merged first).
                _ => placed[i] = Some(self.to_torch(first)?),
            }
        }
        if !uploads.is_empty() {
            let device = self.device();
            let (staging, stream) = self.gpu_path();
            let sent = staging.upload(&uploads, stream).map_err(|e| {
                BackendError::Execution(format!("cannot copy the inputs to {device}: {e}"))
            })?;
            for (i, t) in slots.into_iter().zip(sent) {
                placed[i] = Some(t);
            }
        }
        Ok(placed)
    }

    /// A GPU instance's staging and compute stream (both exist exactly
    /// when the instance runs on a GPU; only GPU paths call this).
    fn gpu_path(&mut self) -> (&mut torch_ffi::InputStaging, &torch_ffi::CudaStream) {
        match (self.staging.as_mut(), self.stream.as_ref()) {
            (Some(staging), Some(stream)) => (staging, stream),
            _ => unreachable!("GPU instances have a stream and staging"),
        }
    }

    /// Converts a floating-point input to the model's `precision`.
    fn at_precision(&self, t: tch::Tensor) -> Result<tch::Tensor, BackendError> {
        match self.precision {
            Some(p) if t.kind() != p && is_floating(t.kind()) => t
                .f_to_kind(p)
                .map_err(|e| BackendError::Execution(e.to_string())),
            _ => Ok(t),
        }
    }

    /// Runs the model on placed CPU inputs (spec order, declared types)
    /// and reads the outputs.
    fn forward_on_cpu(
        &mut self,
        inputs: Vec<Option<tch::Tensor>>,
        start: Instant,
        timings: &mut ExecTimings,
    ) -> Result<Vec<Tensor>, BackendError> {
        self.apply_intra_op_threads();
        let infer_start = Instant::now();
        timings.input = infer_start - start;
        let produced = self.run_model(inputs)?;
        let output_start = Instant::now();
        timings.infer = output_start - infer_start;
        let outputs = (0..self.outputs.len())
            .map(|i| {
                let (t, datatype) = self.declared_output(&produced, i)?;
                let t = t
                    .f_to_device(Device::Cpu)
                    .and_then(|t| t.f_contiguous())
                    .map_err(|e| BackendError::Execution(e.to_string()))?;
                output_tensor(&self.outputs[i].name, &t, datatype)
            })
            .collect();
        timings.output = output_start.elapsed();
        outputs
    }

    /// Queues the forward pass on placed GPU inputs (a captured graph when
    /// one fits, else eagerly) and the copies of its results into pinned
    /// host memory, all on the instance's stream; returns them in flight.
    /// The next batch may be placed and launched before they are finished:
    /// stream order keeps a graph's next replay behind these copies.
    fn launch(
        &mut self,
        inputs: Vec<Option<tch::Tensor>>,
        start: Instant,
        timings: &mut ExecTimings,
    ) -> Result<Box<dyn InFlight>, BackendError> {
        self.apply_intra_op_threads();
        let launched = Instant::now();
        timings.input = launched - start;
        let graph = self.graph_for(&inputs);
        let produced = match graph {
            Some(g) => self.replay(g, inputs),
            None => self.run_model(inputs),
        };
        let forward_queued = Instant::now();
        let exec = BackendError::Execution;
        // A result may be (a view of) an input, which lives in the staging
        // slot: its copy is queued before the slot is released.
        let outputs = produced.and_then(|produced| {
            (0..self.outputs.len())
                .map(|i| {
                    let (t, datatype) = self.declared_output(&produced, i)?;
                    let host = torch_ffi::to_pinned_async(&t).map_err(exec)?;
                    Ok((self.outputs[i].name.clone(), datatype, host))
                })
                .collect::<Result<Vec<_>, BackendError>>()
        });
        let (staging, stream) = self.gpu_path();
        // Also after a failure: the slot is free once what was queued has run.
        staging.consumed(stream).map_err(exec)?;
        let outputs = outputs?;
        let mut done = torch_ffi::CudaEvent::new().map_err(exec)?;
        done.record(stream).map_err(exec)?;
        // Where a GPU batch's host time goes (`RUST_LOG=kiln::gpu=debug`;
        // bench/gpu_latency.sh reads it): its inputs gathered and their
        // copies queued, the forward queued (one launch when a graph
        // replays), the copies of the results queued.
        tracing::debug!(
            target: "kiln::gpu",
            graph = graph.is_some(),
            input_us = timings.input.as_micros() as u64,
            forward_us = (forward_queued - launched).as_micros() as u64,
            outputs_us = forward_queued.elapsed().as_micros() as u64,
            "launched"
        );
        Ok(Box::new(GpuResults {
            done,
            outputs,
            launched,
        }))
    }

    /// One eager forward pass: inputs (spec order) converted to the model's
    /// `precision`, passed in forward-argument order; the result flattened.
    fn run_model(
        &self,
        inputs: Vec<Option<tch::Tensor>>,
    ) -> Result<Vec<tch::Tensor>, BackendError> {
        let mut args: Vec<IValue> = (0..inputs.len()).map(|_| IValue::None).collect();
        for (i, input) in inputs.into_iter().enumerate() {
            if let Some(t) = input {
                args[self.arg_position[i]] = IValue::Tensor(self.at_precision(t)?);
            }
        }
        if let Some(on) = self.jit_profiling {
            tch::jit::set_profiling_mode(on);
        }
        if let Some(on) = self.tensor_fuser {
            tch::jit::set_tensor_expr_fuser_enabled(on);
        }
        let result = custom_ops::running(self.custom_ops.as_ref(), || {
            tch::no_grad(|| self.module.forward_is(&args))
        })
        .map_err(|e| {
            BackendError::InvalidInput(format!(
                "model execution failed: {}",
                execution_error(&e.to_string())
            ))
        })?;
        let mut produced = Vec::new();
        flatten_result(result, &mut produced)?;
        Ok(produced)
    }

    /// The smallest captured graph these inputs fit, if any (every input
    /// must be present).
    fn graph_for(&self, inputs: &[Option<tch::Tensor>]) -> Option<usize> {
        if self.graphs.is_empty() {
            return None;
        }
        let shapes: Vec<Vec<i64>> = inputs
            .iter()
            .map(|t| t.as_ref().map(|t| t.size()))
            .collect::<Option<_>>()?;
        self.graphs.iter().position(|g| g.fits(&shapes))
    }

    /// Copies the inputs into graph `g`'s static inputs (the leading rows,
    /// for a smaller batch) and replays it; returns its outputs cut to the
    /// batch. All of it is queued on the instance's stream.
    fn replay(
        &self,
        g: usize,
        inputs: Vec<Option<tch::Tensor>>,
    ) -> Result<Vec<tch::Tensor>, BackendError> {
        let g = &self.graphs[g];
        let exec = |e: tch::TchError| BackendError::Execution(e.to_string());
        let rows = (g.shape.batch > 0)
            .then(|| inputs[0].as_ref().map(|t| t.size()[0]))
            .flatten();
        for (captured, t) in g.inputs.iter().zip(inputs) {
            let t = t.expect("graph_for takes only complete inputs");
            let mut dst = match rows {
                Some(n) => captured.f_narrow(0, 0, n).map_err(exec)?,
                None => captured.shallow_clone(),
            };
            dst.f_copy_(&t).map_err(exec)?;
        }
        g.graph.replay().map_err(BackendError::Execution)?;
        g.outputs
            .iter()
            .map(|o| match rows {
                Some(n) => o.f_narrow(0, 0, n).map_err(exec),
                None => Ok(o.shallow_clone()),
            })
            .collect()
    }

    fn on_device(&self, cpu: tch::Tensor) -> Result<tch::Tensor, BackendError> {
        if self.device == Device::Cpu {
            Ok(cpu)
        } else {
            cpu.f_to_device(self.device)
                .map_err(|e| BackendError::Execution(e.to_string()))
        }
    }
}

/// Why a TorchScript file did not load. An op the model calls that no op
/// plugin of its `custom_ops` defines is named with the plugins looked in
/// and the call as the model's code makes it; a call that does not fit the
/// schema a plugin declared is named with both.
fn load_error(
    path: &Path,
    message: &str,
    ops: Option<&ModelOps>,
    plugins: &[String],
) -> BackendError {
    // libtorch quotes the offending line of the model's code, where the op
    // is `ops.ns.name`.
    let call = |op: &str| {
        let dotted = format!("ops.{}", op.replace("::", "."));
        message
            .lines()
            .find(|l| l.contains(&dotted))
            .map(|l| format!(" (the model's code: `{}`)", l.trim()))
            .unwrap_or_default()
    };
    if let Some(rest) = message.split("Unknown builtin op: ").nth(1) {
        let op = rest.split(['.', '\n', ' ']).next().unwrap_or_default();
        let looked_in = if plugins.is_empty() {
            "the model's config names no op plugins (parameter 'custom_ops')".to_string()
        } else {
            format!("its op plugins ({}) do not provide it", plugins.join(", "))
        };
        return BackendError::Load(format!(
            "{} calls custom op {op}, and {looked_in}{}",
            path.display(),
            call(op)
        ));
    }
    if let Some(ops) = ops {
        if let Some((op, plugin, schema)) = ops.ops().into_iter().find(|(op, _, _)| {
            message.contains(&format!("{op}("))
                || message.contains(&format!("{}(", op.replace("::", ".")))
        }) {
            return BackendError::Load(format!(
                "{} calls custom op {op} in a way its op plugin '{plugin}' does not declare: `{schema}`{}: {}",
                path.display(),
                call(op),
                first_line(message)
            ));
        }
    }
    BackendError::Load(format!(
        "cannot load TorchScript {}: {}",
        path.display(),
        first_line(message)
    ))
}

/// What a failed forward pass says: the exception the TorchScript
/// interpreter reports after its traceback (a custom op's message is
/// there), else the first line.
fn execution_error(message: &str) -> &str {
    if message.contains("failed in the TorchScript interpreter") {
        if let Some(last) = message.lines().rev().find(|l| {
            l.split_once(": ")
                .is_some_and(|(kind, _)| kind.ends_with("Error"))
        }) {
            return last.trim();
        }
    }
    first_line(message)
}

fn flatten_result(value: IValue, out: &mut Vec<tch::Tensor>) -> Result<(), BackendError> {
    match value {
        IValue::Tensor(t) => out.push(t),
        IValue::TensorList(ts) => out.extend(ts),
        IValue::Tuple(vs) | IValue::GenericList(vs) => {
            for v in vs {
                flatten_result(v, out)?;
            }
        }
        other => {
            return Err(BackendError::Execution(format!(
                "model returned a value that is not a tensor, tuple or list of tensors: {other:?}"
            )))
        }
    }
    Ok(())
}

fn is_floating(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double
    )
}

impl TorchScriptInstance {
    /// Sizes the calling thread's OpenMP team (once per thread: warm-up runs
    /// on the loading thread, requests on the instance's worker).
    fn apply_intra_op_threads(&mut self) {
        let me = std::thread::current().id();
        if self.threads_on != Some(me) {
            // The first parallel region of a thread initialises its team
            // from a process-wide value that other instances write; trigger
            // that first, then set this thread's own.
            tch::get_num_threads();
            tch::set_num_threads(self.intra_op_threads);
            self.threads_on = Some(me);
        }
    }
}

/// A positive thread count parameter, if set.
fn thread_count(spec: &ModelSpec, key: &str) -> Result<Option<i32>, BackendError> {
    let Some(value) = parameter_word(spec, key) else {
        return Ok(None);
    };
    match value.parse::<i32>() {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(BackendError::Load(format!(
            "parameter '{key}': expected a whole number of threads, at least 1, got '{value}'"
        ))),
    }
}

/// libtorch's inter-op pool exists once per process and can be sized once.
fn apply_inter_op_threads(n: i32, model: &str) {
    static SET: std::sync::OnceLock<Option<i32>> = std::sync::OnceLock::new();
    let set = SET.get_or_init(|| {
        // libtorch refuses once inter-op work has started; tch panics then.
        std::panic::catch_unwind(|| tch::set_num_interop_threads(n))
            .ok()
            .map(|()| n)
    });
    if *set != Some(n) {
        tracing::warn!(
            model,
            "INTER_OP_THREAD_COUNT {n} not applied: libtorch's inter-op pool is process-wide and was sized already{}",
            set.map(|s| format!(" ({s} threads)")).unwrap_or_default()
        );
    }
}

/// A config parameter's value, trimmed and lower-cased, if set.
fn parameter_word(spec: &ModelSpec, key: &str) -> Option<String> {
    spec.config
        .parameters
        .get(key)
        .map(|v| v.string_value.trim().to_ascii_lowercase())
}

/// A `true`/`false` config parameter, if set.
fn bool_parameter(spec: &ModelSpec, key: &str) -> Result<Option<bool>, BackendError> {
    let Some(value) = parameter_word(spec, key) else {
        return Ok(None);
    };
    match kiln_model_config::parse_bool(&value) {
        Some(on) => Ok(Some(on)),
        None => Err(BackendError::Load(format!(
            "parameter '{key}': expected true or false, got '{value}'"
        ))),
    }
}

/// The `precision` parameter: the floating-point type to run the model in.
fn precision(spec: &ModelSpec) -> Result<Option<Kind>, BackendError> {
    let Some(value) = parameter_word(spec, "precision") else {
        return Ok(None);
    };
    match value.as_str() {
        "" => Ok(None),
        "fp32" => Ok(Some(Kind::Float)),
        "fp16" => Ok(Some(Kind::Half)),
        "bf16" => Ok(Some(Kind::BFloat16)),
        other => Err(BackendError::Load(format!(
            "parameter 'precision': expected fp32, fp16 or bf16, got '{other}'"
        ))),
    }
}

impl TorchScriptInstance {
    /// A model run at a reduced `precision` returns that type; the client
    /// gets what config.pbtxt declares.
    fn to_declared_precision(
        &self,
        t: &tch::Tensor,
        declared: DataType,
    ) -> Result<tch::Tensor, BackendError> {
        match (self.precision, kind_of(declared)) {
            (Some(_), Some(kind))
                if t.kind() != kind && is_floating(t.kind()) && is_floating(kind) =>
            {
                t.f_to_kind(kind)
                    .map_err(|e| BackendError::Execution(e.to_string()))
            }
            _ => Ok(t.shallow_clone()),
        }
    }

    /// Result `i` of the model as output `i` is declared: at its declared
    /// precision, on the model's device, with its datatype checked.
    fn declared_output(
        &self,
        produced: &[tch::Tensor],
        i: usize,
    ) -> Result<(tch::Tensor, DataType), BackendError> {
        let (spec, pos) = (&self.outputs[i], self.output_position[i]);
        let t = produced.get(pos).ok_or_else(|| {
            BackendError::Execution(format!(
                "output '{}' is result #{pos} but the model returned {} tensor(s)",
                spec.name,
                produced.len()
            ))
        })?;
        let t = self.to_declared_precision(t, spec.datatype)?;
        let datatype = match t.f_kind() {
            Ok(kind) => datatype_of(kind),
            Err(_) => torch_ffi::unsigned_datatype(&t),
        }
        .ok_or_else(|| {
            BackendError::Execution(format!(
                "output '{}' has a tensor type kiln cannot return",
                spec.name
            ))
        })?;
        if datatype != spec.datatype {
            return Err(BackendError::Execution(format!(
                "output '{}' is declared {} in config.pbtxt but the model produced {datatype}",
                spec.name, spec.datatype
            )));
        }
        Ok((t, datatype))
    }
}

/// A contiguous CPU tensor's bytes as output `name`.
fn output_tensor(name: &str, t: &tch::Tensor, datatype: DataType) -> Result<Tensor, BackendError> {
    let buf = match kind_of(datatype) {
        Some(kind) => {
            let numel = t.numel();
            let mut buf = vec![0u8; numel * kind.elt_size_in_bytes()];
            t.f_copy_data_u8(&mut buf, numel)
                .map_err(|e| BackendError::Execution(e.to_string()))?;
            buf
        }
        None => torch_ffi::unsigned_bytes(t, datatype).map_err(BackendError::Execution)?,
    };
    Ok(Tensor::new(
        name.to_string(),
        datatype,
        t.size(),
        Bytes::from(buf),
    ))
}

/// A GPU batch's results on their way to pinned host memory.
struct GpuResults {
    /// Recorded after the copies to `outputs`.
    done: torch_ffi::CudaEvent,
    /// (name, datatype, pinned host tensor) per declared output.
    outputs: Vec<(String, DataType, tch::Tensor)>,
    launched: Instant,
}

impl InFlight for GpuResults {
    fn finish(self: Box<Self>, timings: &mut ExecTimings) -> Result<Vec<Tensor>, BackendError> {
        let waiting = Instant::now();
        self.done.synchronize().map_err(BackendError::Execution)?;
        let arrived = Instant::now();
        timings.infer = arrived - self.launched;
        let outputs = self
            .outputs
            .iter()
            .map(|(name, datatype, t)| output_tensor(name, t, *datatype))
            .collect();
        timings.output = arrived.elapsed();
        // `picked_up_us`: from the launch until this thread began to wait
        // (the hand-off to the finishing thread); `waited_us`: for the GPU.
        tracing::debug!(
            target: "kiln::gpu",
            picked_up_us = (waiting - self.launched).as_micros() as u64,
            waited_us = (arrived - waiting).as_micros() as u64,
            read_us = timings.output.as_micros() as u64,
            "finished"
        );
        outputs
    }
}

impl Backend for TorchScriptInstance {
    fn execute(
        &mut self,
        request: &BackendRequest,
        timings: &mut ExecTimings,
    ) -> Result<Vec<Tensor>, BackendError> {
        self.submit(&[request], timings)?.finish(timings)
    }

    /// On a GPU: gathered into the staging slot, copied and launched, and
    /// returned in flight. On the CPU, or for a batch of types the staging
    /// cannot gather (unsigned wide types, merged first): run here.
    fn submit(
        &mut self,
        requests: &[&BackendRequest],
        timings: &mut ExecTimings,
    ) -> Result<Submitted, BackendError> {
        let start = Instant::now();
        let on_gpu = self.stream.is_some();
        let gatherable = requests[0]
            .inputs
            .iter()
            .flatten()
            .all(|t| kind_of(t.datatype).is_some());
        let merged;
        let one;
        let requests = if requests.len() > 1 && !(on_gpu && gatherable) {
            merged = kiln_backend::batch::merge(requests);
            one = [&merged];
            &one[..]
        } else {
            requests
        };
        // Input i's tensor in each request: its parts along the batch dim.
        let parts: Vec<Option<Vec<&Tensor>>> = (0..requests[0].inputs.len())
            .map(|i| {
                let parts: Vec<&Tensor> = requests
                    .iter()
                    .filter_map(|r| r.inputs[i].as_ref())
                    .collect();
                (!parts.is_empty()).then_some(parts)
            })
            .collect();
        let inputs = self.place_inputs(&parts)?;
        if on_gpu {
            self.launch(inputs, start, timings).map(Submitted::InFlight)
        } else {
            self.forward_on_cpu(inputs, start, timings)
                .map(Submitted::Done)
        }
    }

    fn device(&self) -> String {
        match self.device {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_convention_orders_arguments() {
        assert_eq!(
            convention_positions(&["INPUT__1", "INPUT__0"]),
            Some(vec![1, 0])
        );
        assert_eq!(convention_positions(&["INPUT0", "INPUT1"]), None);
        assert_eq!(convention_positions(&["A__0", "B__0"]), None);
    }
}
