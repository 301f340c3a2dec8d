//! A plugin store's data: WASI context, limits, the model's parameters, the
//! log budget, and the op call in progress (op plugins); what the host
//! interface offers every plugin.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::kiln;
use crate::settings::PluginSettings;
use kiln_sandbox::LogBudget;

/// Per-instance store data: WASI context, limits, the model's parameters.
pub struct PluginState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) parameters: Arc<BTreeMap<String, String>>,
    pub(crate) model: Arc<str>,
    pub(crate) log: LogBudget,
    /// The op call in progress (op plugins only).
    pub(crate) op: Option<OpCall>,
}

impl PluginState {
    /// A fresh store for one instance of `model`: its WASI context and
    /// grants, memory limiter, log budget and parameters from `settings`,
    /// armed for a first call (instantiation runs guest code).
    pub(crate) fn store(
        engine: &wasmtime::Engine,
        settings: &PluginSettings,
        model: Arc<str>,
    ) -> Store<PluginState> {
        let state = PluginState {
            wasi: kiln_sandbox::wasi_builder(settings.grants).build(),
            table: ResourceTable::new(),
            limits: kiln_sandbox::store_limits(&settings.limits()),
            parameters: settings.parameters.clone(),
            model,
            log: LogBudget::new(settings.log_bytes),
            op: None,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        kiln_sandbox::arm(&mut store, &settings.limits());
        store
    }
}

/// The state of the op call running in an op plugin's store.
pub(crate) struct OpCall {
    pub(crate) tensors: Box<dyn kiln_ops::TensorArena + Send>,
    /// Handles given to the guest and not yet dropped or returned.
    pub(crate) live_handles: i64,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl kiln::plugin::types::Host for PluginState {}

impl kiln::plugin::host::Host for PluginState {
    fn log(
        &mut self,
        level: kiln::plugin::host::LogLevel,
        message: String,
        fields: Vec<(String, String)>,
    ) {
        use kiln::plugin::host::LogLevel as L;
        let cost = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if !self.log.take(cost) {
            return;
        }
        let model = &*self.model;
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        match level {
            L::Trace => tracing::trace!(target: "kiln::plugin", model, %fields, "{message}"),
            L::Debug => tracing::debug!(target: "kiln::plugin", model, %fields, "{message}"),
            L::Info => tracing::info!(target: "kiln::plugin", model, %fields, "{message}"),
            L::Warn => tracing::warn!(target: "kiln::plugin", model, %fields, "{message}"),
            L::Error => tracing::error!(target: "kiln::plugin", model, %fields, "{message}"),
        }
    }
    fn log_enabled(&mut self, level: kiln::plugin::host::LogLevel) -> bool {
        use kiln::plugin::host::LogLevel as L;
        match level {
            L::Trace => tracing::enabled!(target: "kiln::plugin", tracing::Level::TRACE),
            L::Debug => tracing::enabled!(target: "kiln::plugin", tracing::Level::DEBUG),
            L::Info => tracing::enabled!(target: "kiln::plugin", tracing::Level::INFO),
            L::Warn => tracing::enabled!(target: "kiln::plugin", tracing::Level::WARN),
            L::Error => tracing::enabled!(target: "kiln::plugin", tracing::Level::ERROR),
        }
    }

    fn get_parameter(&mut self, key: String) -> Option<String> {
        self.parameters.get(&key).cloned()
    }
    fn parameters(&mut self) -> Vec<(String, String)> {
        self.parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    fn monotonic_now(&mut self) -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}
