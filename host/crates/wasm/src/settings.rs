//! A plugin model's settings, from config.pbtxt `parameters`, and how a
//! failed call is explained in their terms.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_model_config::{Ceilings, ModelSpec};
use kiln_sandbox::{CallLimits, Grants, MAX_MEMORY_MB};

pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
pub const DEFAULT_MEMORY_MB: u64 = 256;
/// Log bytes (`host.log` messages and fields, a command's stderr) one call
/// may write.
pub const DEFAULT_LOG_BYTES: u64 = 64 << 10;

/// Per-model plugin settings, from config.pbtxt `parameters`.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSettings {
    pub timeout: Duration,
    pub memory_bytes: usize,
    /// Instructions budget per call (None: unlimited, deadline only).
    pub fuel: Option<u64>,
    pub grants: Grants,
    /// Bytes of log a call may write (`wasm_log_bytes`); the rest is dropped
    /// and counted.
    pub log_bytes: usize,
    /// All config parameters, visible to the plugin through `get-parameter`.
    pub parameters: Arc<BTreeMap<String, String>>,
}

impl PluginSettings {
    /// The sandbox's limits of one call.
    pub fn limits(&self) -> CallLimits {
        CallLimits {
            timeout: self.timeout,
            memory_bytes: self.memory_bytes,
            fuel: self.fuel,
        }
    }

    /// The check a config gets when it is validated (both wasm backends):
    /// the settings must read, the message names the field.
    pub fn validate(spec: &ModelSpec) -> Result<(), String> {
        Self::from_spec(spec)
            .map(drop)
            .map_err(|m| format!("field 'parameters': {m}"))
    }

    /// Reads the settings from config.pbtxt `parameters` (also used to
    /// reject bad values when the config is validated).
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, String> {
        let config = &spec.config;
        let parameters: BTreeMap<String, String> = config
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.string_value.clone()))
            .collect();
        let asked = |key: &str| -> Result<Option<u64>, String> {
            parameters
                .get(key)
                .map(|v| {
                    v.trim().parse().map_err(|_| {
                        format!("parameter '{key}': expected a whole number, got '{v}'")
                    })
                })
                .transpose()
        };
        // The repository owner's ceilings (a tenant's quotas) hold each
        // limit down; an absent one gets the lower of default and ceiling.
        let ceilings = spec.ceilings.as_deref();
        let limit =
            |key: &str, default: Option<u64>| Ceilings::apply(ceilings, key, asked(key)?, default);
        let number =
            |key: &str, default: u64| -> Result<u64, String> { Ok(asked(key)?.unwrap_or(default)) };
        let timeout_ms = limit("wasm_timeout_ms", Some(DEFAULT_TIMEOUT_MS))?
            .unwrap_or(DEFAULT_TIMEOUT_MS)
            .max(1);
        let memory_mb =
            limit("wasm_memory_mb", Some(DEFAULT_MEMORY_MB))?.unwrap_or(DEFAULT_MEMORY_MB);
        if memory_mb == 0 || memory_mb > MAX_MEMORY_MB {
            return Err(format!(
                "parameter 'wasm_memory_mb': must be 1..={MAX_MEMORY_MB}, got {memory_mb}"
            ));
        }
        let fuel = limit("wasm_fuel", None)?;
        let grants = Grants::parse(parameters.get("wasm_grants").map_or("", String::as_str))?;
        let log_bytes = number("wasm_log_bytes", DEFAULT_LOG_BYTES)?.min(64 << 20) as usize;
        Ok(Self {
            timeout: Duration::from_millis(timeout_ms),
            memory_bytes: (memory_mb as usize) << 20,
            fuel,
            grants,
            log_bytes,
            parameters: Arc::new(parameters),
        })
    }
}

/// Turns a wasmtime error into a message a client can act on.
pub fn describe(e: &wasmtime::Error, settings: &PluginSettings) -> String {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => format!(
                "plugin exceeded its deadline of {} ms (wasm_timeout_ms)",
                settings.timeout.as_millis()
            ),
            wasmtime::Trap::OutOfFuel => format!(
                "plugin ran out of fuel ({} units, wasm_fuel)",
                settings.fuel.unwrap_or(0)
            ),
            wasmtime::Trap::StackOverflow => {
                "plugin overflowed its stack (too deep recursion)".into()
            }
            other => format!("plugin trapped: {other}"),
        };
    }
    let text = format!("{e:#}");
    if text.contains("memory") && text.contains("limit")
        || text.contains("forcing trap when growing memory")
    {
        return format!(
            "plugin exceeded its memory cap of {} MiB (wasm_memory_mb)",
            settings.memory_bytes >> 20
        );
    }
    format!("plugin failed: {text}")
}
