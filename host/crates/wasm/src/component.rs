//! Plugins as models: the plugin world's linker, the `wasm` backend and its
//! instances (components and wrapped core modules; command modules are
//! `command`'s).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::Store;

use crate::binary::{self, PluginBinary};
use crate::bindings::{wit, Plugin, PluginPre};
use crate::contract::{self, OutputContract, PluginMetadata};
use crate::convert::{from_wit, from_wit_datatype, to_wit, to_wit_parameter};
use crate::settings::{describe, PluginSettings};
use crate::state::PluginState;
use crate::{command, core_module};
use kiln_backend::{Backend, BackendError, BackendRequest, ExecTimings};
use kiln_model_config::ModelSpec;
use kiln_sandbox::Sandbox;
use kiln_types::tensor::Tensor;

/// The linker of the plugin world on a sandbox engine, process-wide.
pub struct WasmRuntime {
    sandbox: &'static Sandbox,
    linker: Linker<PluginState>,
}

impl WasmRuntime {
    /// The shared runtime on the plain or the metered (`wasm_fuel`) engine,
    /// created on first use.
    pub fn get(fuel: bool) -> Result<&'static WasmRuntime, String> {
        static PLAIN: OnceLock<Result<WasmRuntime, String>> = OnceLock::new();
        static METERED: OnceLock<Result<WasmRuntime, String>> = OnceLock::new();
        let cell = if fuel { &METERED } else { &PLAIN };
        cell.get_or_init(|| Self::new(Sandbox::shared(fuel)?))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn new(sandbox: &'static Sandbox) -> Result<Self, String> {
        let link = |e: wasmtime::Error| format!("cannot link the plugin world: {e:#}");
        let mut linker = Linker::new(sandbox.engine());
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link)?;
        Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(link)?;
        Ok(Self { sandbox, linker })
    }

    /// Compiles (or fetches from the cache), checks imports, and
    /// pre-instantiates a plugin component (or a core module of the
    /// core-module ABI, wrapped into one first).
    fn prepare(
        &self,
        path: &std::path::Path,
        wasm: &[u8],
        binary: PluginBinary,
    ) -> Result<(PluginPre<PluginState>, bool), String> {
        let wrapped;
        let wasm = match binary {
            PluginBinary::CoreModule(abi) => {
                wrapped = core_module::componentize(wasm, abi)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                &wrapped[..]
            }
            _ => wasm,
        };
        let started = Instant::now();
        let (component, cached) = self
            .sandbox
            .component(wasm)
            .map_err(|e| format!("{} is not a valid plugin component: {e:#}", path.display()))?;
        tracing::debug!(path = %path.display(), cached, ms = started.elapsed().as_millis() as u64, "plugin compiled");
        kiln_sandbox::check_imports(self.sandbox.engine(), &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("plugin cannot be linked: {e:#}"))?;
        let pre = PluginPre::new(pre)
            .map_err(|e| format!("plugin does not export the kiln:plugin world: {e:#}"))?;
        Ok((pre, cached))
    }
}

/// The `wasm` backend: kiln plugins (sdk/ABI.md), components, core modules
/// or WASI commands, on the CPU.
pub struct WasmFactory;

impl kiln_backend::BackendFactory for WasmFactory {
    fn name(&self) -> &'static str {
        "wasm"
    }
    fn describe(&self) -> &'static str {
        "wasm plugins (backend \"wasm\")"
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
        load(spec, path)
    }
}

/// Reads a plugin and serves it as what it is (see `binary`).
pub fn load(spec: &ModelSpec, path: &std::path::Path) -> Result<Box<dyn Backend>, BackendError> {
    let (wasm, binary) = read_plugin(path)?;
    Ok(match binary {
        PluginBinary::Command => Box::new(command::CommandInstance::load(spec, path, &wasm)?),
        _ => Box::new(WasmInstance::load_binary(spec, path, &wasm, binary)?),
    })
}

pub(crate) fn read_plugin(path: &std::path::Path) -> Result<(Vec<u8>, PluginBinary), BackendError> {
    let wasm = std::fs::read(path)
        .map_err(|e| BackendError::Load(format!("cannot read {}: {e}", path.display())))?;
    let binary = binary::classify(&wasm)
        .map_err(|e| BackendError::Load(format!("{}: {e}", path.display())))?;
    Ok((wasm, binary))
}

/// One plugin instance: its own store, instance and limits.
pub struct WasmInstance {
    pre: PluginPre<PluginState>,
    settings: PluginSettings,
    model: Arc<str>,
    outputs: OutputContract,
    live: Option<(Store<PluginState>, Plugin)>,
}

impl WasmInstance {
    /// Loads a component or a core module of the core-module ABI.
    pub fn load(spec: &ModelSpec, path: &std::path::Path) -> Result<Self, BackendError> {
        let (wasm, binary) = read_plugin(path)?;
        if binary == PluginBinary::Command {
            return Err(BackendError::Load(format!(
                "{} is a command module; serve it with wasm::load",
                path.display()
            )));
        }
        Self::load_binary(spec, path, &wasm, binary)
    }

    fn load_binary(
        spec: &ModelSpec,
        path: &std::path::Path,
        wasm: &[u8],
        binary: PluginBinary,
    ) -> Result<Self, BackendError> {
        let settings = PluginSettings::from_spec(spec).map_err(BackendError::Load)?;
        let runtime = WasmRuntime::get(settings.fuel.is_some()).map_err(BackendError::Load)?;
        let (pre, cached) = runtime
            .prepare(path, wasm, binary)
            .map_err(BackendError::Load)?;
        let mut instance = Self {
            pre,
            settings,
            model: Arc::from(spec.name.as_str()),
            outputs: OutputContract::default(),
            live: None,
        };
        let started = Instant::now();
        instance.instantiate().map_err(BackendError::Load)?;
        tracing::debug!(model = %spec.name, cached, instantiate_us = started.elapsed().as_micros() as u64, "plugin instance ready");
        instance.check_metadata(spec)?;
        Ok(instance)
    }

    /// Replaces the live instance with a fresh one from the pre-instantiation
    /// (done after every trap; public so benchmarks can time it).
    pub fn instantiate(&mut self) -> Result<(), String> {
        let mut store = PluginState::store(self.pre.engine(), &self.settings, self.model.clone());
        let plugin = self.pre.instantiate(&mut store).map_err(|e| {
            format!(
                "plugin failed to instantiate: {}",
                describe(&e, &self.settings)
            )
        })?;
        self.live = Some((store, plugin));
        Ok(())
    }

    /// The plugin's declared tensors must cover config.pbtxt's, same types.
    fn check_metadata(&mut self, spec: &ModelSpec) -> Result<(), BackendError> {
        let (store, plugin) = self.live.as_mut().expect("instantiated");
        let meta = plugin
            .kiln_plugin_processor()
            .call_metadata(&mut *store)
            .map_err(|e| BackendError::Load(format!("plugin metadata() failed: {e:#}")))?;
        let specs = |specs: Vec<wit::TensorSpec>| {
            specs
                .into_iter()
                .map(|t| (t.name, from_wit_datatype(t.datatype), t.dims))
                .collect()
        };
        let meta = PluginMetadata {
            name: meta.name,
            version: meta.version,
            inputs: specs(meta.inputs),
            outputs: specs(meta.outputs),
        };
        self.outputs = contract::check_metadata(spec, &meta)?;
        Ok(())
    }
}

impl Backend for WasmInstance {
    fn execute(
        &mut self,
        request: &BackendRequest,
        timings: &mut ExecTimings,
    ) -> Result<Vec<Tensor>, BackendError> {
        let inputs = &request.inputs;
        let start = Instant::now();
        if self.live.is_none() {
            self.instantiate().map_err(BackendError::Execution)?;
        }
        let args: Vec<wit::Tensor> = inputs.iter().flatten().map(to_wit).collect();
        let params: Vec<wit::Parameter> = request.parameters.iter().map(to_wit_parameter).collect();
        let infer_start = Instant::now();
        timings.input = infer_start - start;
        let (store, plugin) = self.live.as_mut().expect("instantiated above");
        kiln_sandbox::arm(store, &self.settings.limits());
        let result = plugin
            .kiln_plugin_processor()
            .call_process(&mut *store, &args, &params);
        store.data_mut().log.settle(&self.model);
        let output_start = Instant::now();
        timings.infer = output_start - infer_start;
        let produced = match result {
            Ok(Ok(outputs)) => outputs,
            Ok(Err(e)) => {
                return Err(match e.kind {
                    wit::ErrorKind::InvalidArgument => BackendError::InvalidInput(e.message),
                    wit::ErrorKind::Unavailable => BackendError::Unavailable(e.message),
                    wit::ErrorKind::Internal => {
                        BackendError::Execution(format!("plugin error: {}", e.message))
                    }
                })
            }
            Err(trap) => {
                // The instance may be in any state after a trap: replace it.
                let message = describe(&trap, &self.settings);
                self.live = None;
                if let Err(e) = self.instantiate() {
                    tracing::error!(model = %self.model, "cannot replace plugin instance: {e}");
                }
                tracing::warn!(model = %self.model, "{message}; instance replaced");
                return Err(BackendError::Execution(message));
            }
        };
        let produced = produced
            .into_iter()
            .map(from_wit)
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = self.outputs.collect(produced)?;
        timings.output = output_start.elapsed();
        Ok(outputs)
    }

    fn device(&self) -> String {
        "wasm".into()
    }

    fn replicate(&self) -> Option<Result<Box<dyn Backend>, BackendError>> {
        let mut sibling = Self {
            pre: self.pre.clone(),
            settings: self.settings.clone(),
            model: self.model.clone(),
            outputs: self.outputs.clone(),
            live: None,
        };
        // Its own store and memory; the metadata was checked for the first.
        Some(
            sibling
                .instantiate()
                .map(|()| Box::new(sibling) as Box<dyn Backend>)
                .map_err(BackendError::Load),
        )
    }
}
