//! WASI command modules (sdk/ABI.md, "Command protocol 1"): for toolchains
//! that can only make `_start` programs (Go 1.23). Every call runs in a
//! fresh instance: the call goes to stdin, `_start` runs, the answer comes
//! back on stdout. A command cannot run twice in one instance (the Go
//! runtime refuses), so nothing is recycled and nothing survives a call;
//! a trap or timeout needs no clean-up beyond dropping the store.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{InstancePre, Store, StoreLimits};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::I32Exit;

use std::sync::OnceLock;

use kiln_sandbox::Sandbox;
use wasmtime::Linker;

use crate::contract::{self, OutputContract};
use crate::settings::{describe, PluginSettings};
use crate::wire::{self, Answer, Call, ErrorKind};
use kiln_backend::{Backend, BackendError, BackendRequest, ExecTimings};
use kiln_model_config::ModelSpec;
use kiln_types::tensor::Tensor;

/// The linker of command modules on the plain or the metered engine:
/// WASI preview 1, nothing else.
fn command_linker(fuel: bool) -> Result<&'static (Linker<CommandState>, &'static Sandbox), String> {
    static PLAIN: OnceLock<Result<(Linker<CommandState>, &'static Sandbox), String>> =
        OnceLock::new();
    static METERED: OnceLock<Result<(Linker<CommandState>, &'static Sandbox), String>> =
        OnceLock::new();
    let cell = if fuel { &METERED } else { &PLAIN };
    cell.get_or_init(|| {
        let sandbox = Sandbox::shared(fuel)?;
        let mut linker = Linker::new(sandbox.engine());
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut CommandState| &mut s.wasi)
            .map_err(|e| format!("cannot link WASI preview 1: {e:#}"))?;
        Ok((linker, sandbox))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Store data of one call.
pub struct CommandState {
    pub wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// Stateless between calls (each call runs a fresh instance), so its
/// replicas are plain clones.
#[derive(Clone)]
pub struct CommandInstance {
    pre: InstancePre<CommandState>,
    settings: PluginSettings,
    model: Arc<str>,
    outputs: OutputContract,
}

/// What one run of the command left behind.
struct Run {
    stdout: bytes::Bytes,
    stderr: bytes::Bytes,
    /// `Err` carries the reason the run failed (trap, exit status).
    status: Result<(), String>,
}

impl CommandInstance {
    pub fn load(
        spec: &ModelSpec,
        path: &std::path::Path,
        wasm: &[u8],
    ) -> Result<Self, BackendError> {
        let settings = PluginSettings::from_spec(spec).map_err(BackendError::Load)?;
        let (linker, sandbox) =
            command_linker(settings.fuel.is_some()).map_err(BackendError::Load)?;
        let load_error = |e: wasmtime::Error| {
            BackendError::Load(format!(
                "{} is not a usable WASI command module: {e:#}",
                path.display()
            ))
        };
        let (module, cached) = sandbox.module(wasm).map_err(load_error)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| {
                BackendError::Load(format!(
                    "{}: command module cannot be linked (it may import only wasi_snapshot_preview1): {e:#}",
                    path.display()
                ))
            })?;
        let mut instance = Self {
            pre,
            settings,
            model: Arc::from(spec.name.as_str()),
            outputs: OutputContract::default(),
        };
        let started = Instant::now();
        let meta = match instance.call(Call::Metadata, &[], &[]) {
            Ok(Answer::Metadata(meta)) => meta,
            Ok(_) => unreachable!("decode_answer answers the call it was given"),
            Err(e) => {
                return Err(BackendError::Load(format!(
                    "plugin metadata call failed: {e}"
                )))
            }
        };
        tracing::debug!(model = %spec.name, cached, metadata_us = started.elapsed().as_micros() as u64, plugin = %meta.name, "command plugin ready");
        instance.outputs = contract::check_metadata(spec, &meta)?;
        Ok(instance)
    }

    /// Runs the command once for `call`.
    fn call(
        &self,
        call: Call,
        inputs: &[&Tensor],
        parameters: &[(String, kiln_types::ParamValue)],
    ) -> Result<Answer, BackendError> {
        let stdin = wire::encode_request(call, &self.settings.parameters, inputs, parameters);
        let run = self.run(stdin);
        self.log_stderr(&run.stderr);
        let last_stderr_line = || {
            String::from_utf8_lossy(&run.stderr)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| format!(" (stderr: {})", l.trim()))
                .unwrap_or_default()
        };
        if let Err(reason) = &run.status {
            return Err(BackendError::Execution(format!(
                "{reason}{}",
                last_stderr_line()
            )));
        }
        if run.stdout.len() >= self.settings.memory_bytes {
            return Err(BackendError::Execution(format!(
                "plugin wrote more than its cap of {} MiB to stdout (wasm_memory_mb)",
                self.settings.memory_bytes >> 20
            )));
        }
        match wire::decode_answer(&run.stdout, call) {
            Ok(Answer::Error(kind, message)) => Err(match kind {
                ErrorKind::InvalidArgument => BackendError::InvalidInput(message),
                ErrorKind::Unavailable => BackendError::Unavailable(message),
                ErrorKind::Internal => BackendError::Execution(format!("plugin error: {message}")),
            }),
            Ok(answer) => Ok(answer),
            Err(e) => Err(BackendError::Execution(format!(
                "plugin answered badly: {e}{}",
                last_stderr_line()
            ))),
        }
    }

    fn run(&self, stdin: Vec<u8>) -> Run {
        let stdout = MemoryOutputPipe::new(self.settings.memory_bytes);
        // stderr goes to the log: bounded like a component's host.log.
        let stderr = MemoryOutputPipe::new(self.settings.log_bytes.max(1024));
        let wasi = kiln_sandbox::wasi_builder(self.settings.grants)
            .stdin(MemoryInputPipe::new(stdin))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build_p1();
        let state = CommandState {
            wasi,
            limits: kiln_sandbox::store_limits(&self.settings.limits()),
        };
        let mut store = Store::new(self.pre.module().engine(), state);
        store.limiter(|s| &mut s.limits);
        kiln_sandbox::arm(&mut store, &self.settings.limits());
        let status = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"))
            .and_then(|start| start.call(&mut store, ()))
            .or_else(|e| match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(0)) => Ok(()),
                Some(I32Exit(code)) => Err(format!("plugin exited with status {code}")),
                None => Err(describe(&e, &self.settings)),
            });
        drop(store);
        Run {
            stdout: stdout.contents(),
            stderr: stderr.contents(),
            status,
        }
    }

    fn log_stderr(&self, stderr: &[u8]) {
        let model = &*self.model;
        for line in String::from_utf8_lossy(stderr).lines() {
            if !line.trim().is_empty() {
                tracing::info!(target: "kiln::plugin", model, "{line}");
            }
        }
    }
}

impl Backend for CommandInstance {
    fn execute(
        &mut self,
        request: &BackendRequest,
        timings: &mut ExecTimings,
    ) -> Result<Vec<Tensor>, BackendError> {
        let start = Instant::now();
        let inputs: Vec<&Tensor> = request.inputs.iter().flatten().collect();
        let answer = self.call(Call::Process, &inputs, &request.parameters);
        let output_start = Instant::now();
        timings.infer = output_start - start;
        let outputs = match answer? {
            Answer::Outputs(outputs) => self.outputs.collect(outputs)?,
            _ => unreachable!("decode_answer answers the call it was given"),
        };
        timings.output = output_start.elapsed();
        Ok(outputs)
    }

    fn device(&self) -> String {
        "wasm".into()
    }

    fn replicate(&self) -> Option<Result<Box<dyn Backend>, BackendError>> {
        Some(Ok(Box::new(self.clone())))
    }
}
