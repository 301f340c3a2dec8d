//! The WebAssembly sandbox kiln runs guest code in, independent of what the
//! guest is for (a plugin serving a model today; custom-op glue next):
//!
//! - [`Sandbox`]: the process-wide wasmtime engines, with the pooling
//!   allocator, epoch interruption (a ticker thread) and, on the metered
//!   engine, fuel; compiled code comes from the [`cache`] of artifacts;
//! - [`CallLimits`]: the deadline, memory cap and fuel of one call,
//!   applied to a store with [`arm`] and [`store_limits`];
//! - [`grants`]: the capabilities a guest may be given, the imports that are
//!   refused, and the WASI context built from them;
//! - [`LogBudget`]: how much a call may write to the server's log.
//!
//! The unsafe code of the sandbox is the cache's deserialization, in one
//! module, of artifacts it wrote and checked.

pub mod cache;
pub mod grants;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig, Store,
    StoreLimits, StoreLimitsBuilder,
};

pub use grants::{check_imports, wasi_builder, Grants};

/// Engine epoch tick; deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(2);
/// Upper bound of any guest's linear memory (the pool's slot size).
pub const MAX_MEMORY_MB: u64 = 4096;

/// A process-wide wasmtime engine and the cache of what it compiled.
pub struct Sandbox {
    engine: Engine,
    cache: cache::ArtifactCache,
}

impl Sandbox {
    /// The shared engine, created on first use (servers without guests never
    /// pay for it). Two exist: fuel metering is compiled into the code and
    /// costs every call (about 6 % of plugin compute, BENCHMARKS.md), so only
    /// guests with a fuel budget run on the metered engine.
    pub fn shared(fuel: bool) -> Result<&'static Sandbox, String> {
        static PLAIN: OnceLock<Result<Sandbox, String>> = OnceLock::new();
        static METERED: OnceLock<Result<Sandbox, String>> = OnceLock::new();
        let cell = if fuel { &METERED } else { &PLAIN };
        cell.get_or_init(|| {
            Self::new(fuel).map_err(|e| format!("cannot start the wasm runtime: {e:#}"))
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    fn new(fuel: bool) -> wasmtime::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(1000)
            .total_core_instances(2000)
            .total_memories(1000)
            .total_tables(2000)
            .max_memory_size((MAX_MEMORY_MB as usize) << 20);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(fuel)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("kiln-wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;
        Ok(Self {
            engine,
            cache: cache::ArtifactCache::new(cache_dir()),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The compiled component for `wasm`, from the cache when present;
    /// whether it was a cache hit.
    pub fn component(&self, wasm: &[u8]) -> wasmtime::Result<(Component, bool)> {
        self.cache.component(&self.engine, wasm)
    }

    /// The compiled core module for `wasm`, from the cache when present.
    pub fn module(&self, wasm: &[u8]) -> wasmtime::Result<(Module, bool)> {
        self.cache.module(&self.engine, wasm)
    }
}

fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("KILN_CACHE_DIR") {
        Some(d) if d.is_empty() => None,
        Some(d) => Some(PathBuf::from(d).join("wasm")),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kiln/wasm")),
    }
}

/// What one call into a guest may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Wall-clock deadline of a call (epoch interruption).
    pub timeout: Duration,
    /// Cap of the guest's linear memories and tables.
    pub memory_bytes: usize,
    /// Instructions budget per call (None: unlimited, deadline only; Some
    /// needs the metered engine, `Sandbox::shared(true)`).
    pub fuel: Option<u64>,
}

/// The store limiter for `limits` (install with `store.limiter`).
pub fn store_limits(limits: &CallLimits) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(limits.memory_bytes)
        .trap_on_grow_failure(true)
        .build()
}

/// Sets the deadline (and fuel) for the next call into the store.
pub fn arm<T>(store: &mut Store<T>, limits: &CallLimits) {
    let ticks = (limits.timeout.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64;
    store.set_epoch_deadline(ticks);
    if let Some(fuel) = limits.fuel {
        let _ = store.set_fuel(fuel);
    }
}

/// What is left of a call's log allowance (`wasm_log_bytes`), and what was
/// dropped beyond it: a plugin cannot flood the server's log.
pub struct LogBudget {
    allowance: usize,
    left: usize,
    dropped: u64,
}

impl LogBudget {
    pub fn new(allowance: usize) -> Self {
        Self {
            allowance,
            left: allowance,
            dropped: 0,
        }
    }

    /// Takes `bytes` from the allowance; false (and counted) when over it.
    pub fn take(&mut self, bytes: usize) -> bool {
        if bytes > self.left {
            self.dropped += bytes as u64;
            self.left = 0;
            return false;
        }
        self.left -= bytes;
        true
    }

    /// Ends a call: one warning if anything was dropped; a full allowance
    /// for the next call.
    pub fn settle(&mut self, model: &str) {
        if self.dropped > 0 {
            tracing::warn!(
                target: "kiln::plugin",
                model,
                dropped_bytes = self.dropped,
                "plugin log output over wasm_log_bytes ({} bytes per call); the rest was dropped",
                self.allowance
            );
        }
        self.left = self.allowance;
        self.dropped = 0;
    }
}
