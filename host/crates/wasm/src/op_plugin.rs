//! Op plugins (`backend: "wasm_ops"`, the `op-plugin` world of
//! `kiln:plugin@1.2.0`): components that provide custom ops to the
//! TorchScript models of their repository (kiln-ops, kiln-torch's
//! `custom_ops`).
//!
//! An op plugin is served as a model version whose instances take no
//! requests; its [`WasmOps`] is the provider the registry hands to models.
//! Op calls come from the calling models' instance threads, so the
//! provider keeps a pool of plugin instances, one per concurrent call, each
//! with the plugin's sandbox limits (deadline, memory cap, fuel) armed per
//! call. A trap or a timeout fails the call, which fails the model's
//! request naming the op, and the instance is dropped, not reused.
//!
//! Tensor handles given to the guest carry the call's tensor id as their
//! representation (no table): `drop` releases the tensor in the call's
//! arena, and an instance whose guest leaks handles is retired once the
//! leaked count passes [`MAX_LEAKED_HANDLES`].

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime::Store;

use kiln_backend::{Backend, BackendError, BackendRequest, ExecTimings};
use kiln_model_config::ModelSpec;
use kiln_ops::{Binary, HostOp, OpDecl, OpProvider, OpValue, Reduction, ScalarOp, TensorId, Unary};
use kiln_sandbox::Sandbox;
use kiln_types::tensor::Tensor;

use crate::binary::PluginBinary;
use crate::bindings::wit;
use crate::component::read_plugin;
use crate::convert::{from_wit_datatype, to_wit, wit_datatype};
use crate::settings::{describe, PluginSettings};
use crate::state::{OpCall, PluginState};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../../sdk/wit",
        world: "op-plugin",
        with: {
            "kiln:plugin/types": crate::bindings::kiln::plugin::types,
            "kiln:plugin/host": crate::bindings::kiln::plugin::host,
            "kiln:plugin/tensors.device-tensor": super::DeviceTensor,
        },
    });
}

use bindings::exports::kiln::plugin::ops as guest;
use bindings::kiln::plugin::tensors as wit_tensors;
use bindings::{OpPlugin, OpPluginPre};

/// A tensor handle the guest holds; its representation is the call's
/// [`TensorId`].
pub struct DeviceTensor;

/// Most ops one plugin may declare, and the longest schema.
const MAX_OPS: usize = 256;
const MAX_SCHEMA_BYTES: usize = 4096;
/// Handles a guest may leak (never drop) before its instance is replaced.
const MAX_LEAKED_HANDLES: i64 = 4096;

/// The linker of the op-plugin world on a sandbox engine, process-wide.
struct OpRuntime {
    sandbox: &'static Sandbox,
    linker: Linker<PluginState>,
}

impl OpRuntime {
    fn get(fuel: bool) -> Result<&'static OpRuntime, String> {
        static PLAIN: OnceLock<Result<OpRuntime, String>> = OnceLock::new();
        static METERED: OnceLock<Result<OpRuntime, String>> = OnceLock::new();
        let cell = if fuel { &METERED } else { &PLAIN };
        cell.get_or_init(|| {
            let sandbox = Sandbox::shared(fuel)?;
            let link = |e: wasmtime::Error| format!("cannot link the op-plugin world: {e:#}");
            let mut linker = Linker::new(sandbox.engine());
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link)?;
            OpPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(link)?;
            Ok(OpRuntime { sandbox, linker })
        })
        .as_ref()
        .map_err(Clone::clone)
    }
}

/// The ops of one op plugin version: what the registry hands to models.
pub struct WasmOps {
    name: String,
    decls: Vec<OpDecl>,
    pre: OpPluginPre<PluginState>,
    settings: PluginSettings,
    /// Instances between calls, with the handles each has leaked.
    idle: parking_lot::Mutex<Vec<Live>>,
}

struct Live {
    store: Store<PluginState>,
    plugin: OpPlugin,
    leaked: i64,
}

impl WasmOps {
    fn load(spec: &ModelSpec, path: &std::path::Path) -> Result<Self, BackendError> {
        let (wasm, binary) = read_plugin(path)?;
        if binary != PluginBinary::Component {
            return Err(BackendError::Load(format!(
                "{}: an op plugin is a component of the op-plugin world (kiln:plugin@1.2.0), not a core or command module",
                path.display()
            )));
        }
        let settings = PluginSettings::from_spec(spec).map_err(BackendError::Load)?;
        let runtime = OpRuntime::get(settings.fuel.is_some()).map_err(BackendError::Load)?;
        let (component, _) = runtime.sandbox.component(&wasm).map_err(|e| {
            BackendError::Load(format!(
                "{} is not a valid component: {e:#}",
                path.display()
            ))
        })?;
        kiln_sandbox::check_imports(runtime.sandbox.engine(), &component)
            .map_err(BackendError::Load)?;
        let pre = runtime
            .linker
            .instantiate_pre(&component)
            .map_err(|e| BackendError::Load(format!("op plugin cannot be linked: {e:#}")))?;
        let pre = OpPluginPre::new(pre).map_err(|e| {
            BackendError::Load(format!(
                "{} does not export the op-plugin world (kiln:plugin/ops@1.2.0): {e:#}",
                path.display()
            ))
        })?;
        let mut ops = Self {
            name: spec.name.clone(),
            decls: Vec::new(),
            pre,
            settings,
            idle: parking_lot::Mutex::new(Vec::new()),
        };
        let mut live = ops.instantiate().map_err(BackendError::Load)?;
        kiln_sandbox::arm(&mut live.store, &ops.settings.limits());
        let declared = live
            .plugin
            .kiln_plugin_ops()
            .call_declare(&mut live.store)
            .map_err(|e| {
                BackendError::Load(format!("declare() failed: {}", describe(&e, &ops.settings)))
            })?;
        ops.decls = check_declarations(declared).map_err(BackendError::Load)?;
        ops.idle.lock().push(live);
        Ok(ops)
    }

    fn instantiate(&self) -> Result<Live, String> {
        let mut store = PluginState::store(
            self.pre.engine(),
            &self.settings,
            Arc::from(self.name.as_str()),
        );
        let plugin = self.pre.instantiate(&mut store).map_err(|e| {
            format!(
                "op plugin failed to instantiate: {}",
                describe(&e, &self.settings)
            )
        })?;
        Ok(Live {
            store,
            plugin,
            leaked: 0,
        })
    }
}

fn check_declarations(declared: Vec<guest::OpDecl>) -> Result<Vec<OpDecl>, String> {
    if declared.is_empty() {
        return Err("declare() returned no ops".into());
    }
    if declared.len() > MAX_OPS {
        return Err(format!(
            "declare() returned {} ops; at most {MAX_OPS}",
            declared.len()
        ));
    }
    declared
        .into_iter()
        .map(|d| {
            if d.schema.len() > MAX_SCHEMA_BYTES {
                return Err(format!(
                    "declare(): a schema of {} bytes; at most {MAX_SCHEMA_BYTES}",
                    d.schema.len()
                ));
            }
            Ok(OpDecl {
                schema: d.schema,
                output_like: d.output_like,
            })
        })
        .collect()
}

impl OpProvider for WasmOps {
    fn name(&self) -> &str {
        &self.name
    }

    fn ops(&self) -> &[OpDecl] {
        &self.decls
    }

    fn call(
        &self,
        op: &str,
        args: &[OpValue],
        tensors: Box<dyn kiln_ops::TensorArena + Send>,
    ) -> Result<Vec<TensorId>, String> {
        let idle = self.idle.lock().pop();
        let mut live = match idle {
            Some(live) => live,
            None => self.instantiate()?,
        };
        let started = Instant::now();
        let Live { store, plugin, .. } = &mut live;
        store.data_mut().op = Some(OpCall {
            tensors,
            live_handles: 0,
        });
        let args: Vec<guest::OpValue> =
            args.iter().map(|a| to_guest(store.data_mut(), a)).collect();
        kiln_sandbox::arm(store, &self.settings.limits());
        let result = plugin.kiln_plugin_ops().call_call(&mut *store, op, &args);
        store.data_mut().log.settle(&self.name);
        let returned = match result {
            Ok(Ok(handles)) => Ok(handles
                .into_iter()
                .map(|h| {
                    // Ownership comes back to the host.
                    if let Some(call) = store.data_mut().op.as_mut() {
                        call.live_handles -= 1;
                    }
                    h.rep()
                })
                .collect()),
            Ok(Err(message)) => Err(kiln_types::text::clip(&message).into_owned()),
            Err(trap) => {
                let message = describe(&trap, &self.settings);
                tracing::warn!(plugin = %self.name, op, "{message}; instance dropped");
                return Err(message);
            }
        };
        let call = store.data_mut().op.take();
        live.leaked += call.map_or(0, |c| c.live_handles.max(0));
        tracing::trace!(plugin = %self.name, op, us = started.elapsed().as_micros() as u64, "op call");
        if live.leaked <= MAX_LEAKED_HANDLES {
            self.idle.lock().push(live);
        } else {
            tracing::warn!(plugin = %self.name, "op plugin instance leaked {} tensor handles; replaced", live.leaked);
        }
        returned
    }
}

fn to_guest(state: &mut PluginState, value: &OpValue) -> guest::OpValue {
    match value {
        OpValue::None => guest::OpValue::None,
        OpValue::Tensor(id) => guest::OpValue::Tensor(state.lend(*id)),
        OpValue::Float(v) => guest::OpValue::Float(*v),
        OpValue::Int(v) => guest::OpValue::Int(*v),
        OpValue::Bool(v) => guest::OpValue::Bool(*v),
        OpValue::IntList(v) => guest::OpValue::IntList(v.clone()),
        OpValue::FloatList(v) => guest::OpValue::FloatList(v.clone()),
    }
}

impl PluginState {
    fn call(&mut self) -> Result<&mut OpCall, String> {
        self.op
            .as_mut()
            .ok_or_else(|| "tensors are only available during an op call".to_string())
    }

    /// A handle on tensor `id` that the guest owns.
    fn lend(&mut self, id: TensorId) -> Resource<DeviceTensor> {
        if let Some(call) = self.op.as_mut() {
            call.live_handles += 1;
        }
        Resource::new_own(id)
    }

    /// Runs a host op; the result as a new guest-owned handle.
    fn apply(&mut self, op: HostOp) -> Result<Resource<DeviceTensor>, String> {
        let id = self.call()?.tensors.apply(&op)?;
        Ok(self.lend(id))
    }
}

fn id(t: &Resource<DeviceTensor>) -> TensorId {
    t.rep()
}

impl wit_tensors::HostDeviceTensor for PluginState {
    fn shape(&mut self, t: Resource<DeviceTensor>) -> Vec<i64> {
        self.call()
            .and_then(|c| c.tensors.shape(id(&t)))
            .unwrap_or_default()
    }

    fn datatype(&mut self, t: Resource<DeviceTensor>) -> wit::Datatype {
        self.call()
            .and_then(|c| c.tensors.datatype(id(&t)))
            .map_or(wit::Datatype::Bytes, wit_datatype)
    }

    fn read(&mut self, t: Resource<DeviceTensor>) -> Result<wit::Tensor, String> {
        let tensor = self.call()?.tensors.read(id(&t))?;
        Ok(to_wit(&tensor))
    }

    fn drop(&mut self, t: Resource<DeviceTensor>) -> wasmtime::Result<()> {
        if let Some(call) = self.op.as_mut() {
            call.live_handles -= 1;
            call.tensors.release(t.rep());
        }
        Ok(())
    }
}

impl wit_tensors::Host for PluginState {
    fn create(&mut self, t: wit::Tensor) -> Result<Resource<DeviceTensor>, String> {
        let datatype = from_wit_datatype(t.datatype);
        let tensor = Tensor::new(String::new(), datatype, t.shape, t.data.into());
        let id = self.call()?.tensors.create(&tensor)?;
        Ok(self.lend(id))
    }

    fn unary(
        &mut self,
        op: wit_tensors::UnaryOp,
        x: Resource<DeviceTensor>,
    ) -> Result<Resource<DeviceTensor>, String> {
        use wit_tensors::UnaryOp as W;
        let op = match op {
            W::Neg => Unary::Neg,
            W::Abs => Unary::Abs,
            W::Relu => Unary::Relu,
            W::Sigmoid => Unary::Sigmoid,
            W::Tanh => Unary::Tanh,
            W::Gelu => Unary::Gelu,
            W::Exp => Unary::Exp,
            W::Log => Unary::Log,
            W::Sqrt => Unary::Sqrt,
            W::Rsqrt => Unary::Rsqrt,
            W::Contiguous => Unary::Contiguous,
        };
        self.apply(HostOp::Unary(op, id(&x)))
    }

    fn binary(
        &mut self,
        op: wit_tensors::BinaryOp,
        a: Resource<DeviceTensor>,
        b: Resource<DeviceTensor>,
    ) -> Result<Resource<DeviceTensor>, String> {
        use wit_tensors::BinaryOp as W;
        let op = match op {
            W::Add => Binary::Add,
            W::Sub => Binary::Sub,
            W::Mul => Binary::Mul,
            W::Div => Binary::Div,
            W::Pow => Binary::Pow,
            W::Maximum => Binary::Maximum,
            W::Minimum => Binary::Minimum,
            W::Matmul => Binary::Matmul,
        };
        self.apply(HostOp::Binary(op, id(&a), id(&b)))
    }

    fn scalar(
        &mut self,
        op: wit_tensors::ScalarOp,
        x: Resource<DeviceTensor>,
        value: f64,
    ) -> Result<Resource<DeviceTensor>, String> {
        use wit_tensors::ScalarOp as W;
        let op = match op {
            W::Add => ScalarOp::Add,
            W::Sub => ScalarOp::Sub,
            W::Mul => ScalarOp::Mul,
            W::Div => ScalarOp::Div,
            W::Pow => ScalarOp::Pow,
            W::LeakyRelu => ScalarOp::LeakyRelu,
            W::ClampMin => ScalarOp::ClampMin,
            W::ClampMax => ScalarOp::ClampMax,
        };
        self.apply(HostOp::Scalar(op, id(&x), value))
    }

    fn reduce(
        &mut self,
        op: wit_tensors::Reduction,
        x: Resource<DeviceTensor>,
        dims: Vec<i64>,
        keepdim: bool,
    ) -> Result<Resource<DeviceTensor>, String> {
        use wit_tensors::Reduction as W;
        let op = match op {
            W::Sum => Reduction::Sum,
            W::Mean => Reduction::Mean,
            W::Amax => Reduction::Amax,
            W::Amin => Reduction::Amin,
        };
        self.apply(HostOp::Reduce {
            op,
            input: id(&x),
            dims,
            keepdim,
        })
    }

    fn reshape(
        &mut self,
        x: Resource<DeviceTensor>,
        shape: Vec<i64>,
    ) -> Result<Resource<DeviceTensor>, String> {
        self.apply(HostOp::Reshape(id(&x), shape))
    }

    fn permute(
        &mut self,
        x: Resource<DeviceTensor>,
        dims: Vec<i64>,
    ) -> Result<Resource<DeviceTensor>, String> {
        self.apply(HostOp::Permute(id(&x), dims))
    }

    fn flip(
        &mut self,
        x: Resource<DeviceTensor>,
        dims: Vec<i64>,
    ) -> Result<Resource<DeviceTensor>, String> {
        self.apply(HostOp::Flip(id(&x), dims))
    }

    fn pad(
        &mut self,
        x: Resource<DeviceTensor>,
        pad: Vec<i64>,
        value: f64,
    ) -> Result<Resource<DeviceTensor>, String> {
        self.apply(HostOp::Pad {
            input: id(&x),
            pad,
            value,
        })
    }

    fn slice(
        &mut self,
        x: Resource<DeviceTensor>,
        dim: i64,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Resource<DeviceTensor>, String> {
        self.apply(HostOp::Slice {
            input: id(&x),
            dim,
            start,
            end,
            step,
        })
    }

    fn cat(
        &mut self,
        xs: Vec<Resource<DeviceTensor>>,
        dim: i64,
    ) -> Result<Resource<DeviceTensor>, String> {
        self.apply(HostOp::Cat(xs.iter().map(id).collect(), dim))
    }

    fn conv2d(
        &mut self,
        input: Resource<DeviceTensor>,
        weight: Resource<DeviceTensor>,
        bias: Option<Resource<DeviceTensor>>,
        options: wit_tensors::ConvOptions,
    ) -> Result<Resource<DeviceTensor>, String> {
        self.apply(HostOp::Conv2d {
            input: id(&input),
            weight: id(&weight),
            bias: bias.as_ref().map(id),
            stride: options.stride,
            padding: options.padding,
            dilation: options.dilation,
            groups: options.groups,
        })
    }

    fn conv_transpose2d(
        &mut self,
        input: Resource<DeviceTensor>,
        weight: Resource<DeviceTensor>,
        bias: Option<Resource<DeviceTensor>>,
        options: wit_tensors::ConvOptions,
    ) -> Result<Resource<DeviceTensor>, String> {
        self.apply(HostOp::ConvTranspose2d {
            input: id(&input),
            weight: id(&weight),
            bias: bias.as_ref().map(id),
            stride: options.stride,
            padding: options.padding,
            output_padding: options.output_padding,
            dilation: options.dilation,
            groups: options.groups,
        })
    }
}

/// The `wasm_ops` backend: op plugins, served as model versions that take
/// no requests and provide their ops.
pub struct WasmOpsFactory;

impl kiln_backend::BackendFactory for WasmOpsFactory {
    fn name(&self) -> &'static str {
        kiln_model_config::OP_PLUGIN_BACKEND
    }
    fn describe(&self) -> &'static str {
        "op plugins (backend \"wasm_ops\")"
    }
    fn runs_on_gpu(&self) -> bool {
        false
    }
    fn default_model_filename(&self) -> &'static str {
        "model.wasm"
    }
    fn validate(&self, spec: &mut ModelSpec) -> Result<(), String> {
        PluginSettings::validate(spec)
    }
    fn load(
        &self,
        spec: &ModelSpec,
        path: &std::path::Path,
        _placement: kiln_model_config::Placement,
        _ops: &Arc<dyn kiln_ops::OpResolver>,
    ) -> Result<Box<dyn Backend>, BackendError> {
        Ok(Box::new(OpPluginInstance(Arc::new(WasmOps::load(
            spec, path,
        )?))))
    }
}

/// An op plugin's "instance" in the scheduler: it takes no requests.
struct OpPluginInstance(Arc<WasmOps>);

impl Backend for OpPluginInstance {
    fn execute(
        &mut self,
        _: &BackendRequest,
        _: &mut ExecTimings,
    ) -> Result<Vec<Tensor>, BackendError> {
        Err(BackendError::InvalidInput(format!(
            "model '{}' is an op plugin and takes no inference requests",
            self.0.name
        )))
    }

    fn device(&self) -> String {
        "wasm".into()
    }

    fn replicate(&self) -> Option<Result<Box<dyn Backend>, BackendError>> {
        Some(Ok(Box::new(OpPluginInstance(self.0.clone()))))
    }

    fn op_provider(&self) -> Option<Arc<dyn OpProvider>> {
        Some(self.0.clone())
    }
}
