//! KServe v2 over gRPC (tonic) and HTTP (axum), with Triton's extensions:
//! the protocol crate, the only one that knows tonic, axum or the generated
//! gRPC types. Every request passes [`admission`] (who is calling, may they,
//! the request's span) before its handler; both protocols turn wire messages
//! into [`kiln_pipeline::InferRequest`] and answer from the same core, with
//! [`kiln_types::KilnError`] mapped to statuses in one place ([`status`]).
//! Around them: per-request [`limits`], system [`shared_memory`], and
//! [`transport`] (connection caps, timeouts, idle close).
#![forbid(unsafe_code)]

pub mod admission;
pub mod grpc;
pub mod grpc_codec;
pub mod grpc_compression;
pub mod grpc_wire;
pub mod http;
pub mod json;
pub mod limits;
pub mod log_limit;
pub mod restricted;
pub mod shared_memory;
mod state;
pub mod status;
pub mod trace_setting;
pub mod transport;

pub use state::ServerState;

/// Types generated from `proto/grpc_service.proto` (package `inference`);
/// the model-config messages are kiln-model-config's.
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("inference");

    /// Descriptors of the generated messages, for text-format (config.pbtxt)
    /// parsing and JSON rendering.
    pub static DESCRIPTOR_POOL: std::sync::LazyLock<prost_reflect::DescriptorPool> =
        std::sync::LazyLock::new(|| {
            prost_reflect::DescriptorPool::decode(
                include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin")).as_ref(),
            )
            .expect("the build script writes a valid descriptor set")
        });
}

/// Work on at least this many bytes (decoding, converting or printing a
/// request or response) moves off the async worker first.
pub const BLOCKING_THRESHOLD: usize = 1 << 20;

/// Runs `work` on `bytes` bytes; large work under `block_in_place`, which
/// hands the async worker's other tasks to another thread first, so health
/// checks and small requests never wait behind a large tensor.
pub fn off_the_runtime<T>(bytes: usize, work: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if bytes >= BLOCKING_THRESHOLD && multi_thread {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// Server metadata shared by both protocols.
pub const SERVER_NAME: &str = "kiln";

/// Protocol extensions kiln implements (and only those).
pub const EXTENSIONS: &[&str] = &[
    "classification",
    "model_repository",
    "model_configuration",
    "binary_tensor_data",
    "statistics",
    "system_shared_memory",
    "trace",
];

/// CUDA shared memory (IPC handles to device memory) is the one shared-memory
/// flavour kiln lacks; the answer points at the one it has.
pub fn cuda_shared_memory_unimplemented() -> kiln_types::error::KilnError {
    kiln_types::error::KilnError::unimplemented(
        "CUDA shared memory is not implemented by kiln yet; system shared memory is (register a /dev/shm region)",
    )
}

/// The metadata of a ready model version, in KServe terms (batch dim -1).
pub fn model_metadata(
    namespace: &kiln_repository::Namespace,
    name: &str,
    version: &str,
) -> kiln_types::error::Result<proto::ModelMetadataResponse> {
    use proto::model_metadata_response::TensorMetadata;
    let runner = namespace.resolve(name, version)?;
    let spec = &runner.spec;
    let tensors = |specs: &[kiln_model_config::TensorSpec]| {
        specs
            .iter()
            .map(|t| {
                let mut shape = if spec.batched() { vec![-1] } else { vec![] };
                shape.extend_from_slice(&t.dims);
                TensorMetadata {
                    name: t.name.clone(),
                    datatype: t.datatype.kserve_name().into(),
                    shape,
                }
            })
            .collect()
    };
    Ok(proto::ModelMetadataResponse {
        name: spec.name.clone(),
        versions: namespace
            .ready_versions(name)
            .iter()
            .map(|v| v.to_string())
            .collect(),
        // Backend-only models (wasm plugins) have no platform; report the backend.
        platform: if spec.config.platform.is_empty() {
            spec.config.backend.clone()
        } else {
            spec.config.platform.clone()
        },
        inputs: tensors(&spec.inputs),
        outputs: tensors(&spec.outputs),
    })
}

/// Statistics of one model (all ready versions, or one), or of every model
/// the caller sees when `name` is empty.
pub fn model_statistics(
    namespace: &kiln_repository::Namespace,
    name: &str,
    version: &str,
) -> kiln_types::error::Result<proto::ModelStatisticsResponse> {
    let runners = if name.is_empty() {
        namespace.ready_runners("")
    } else if version.is_empty() {
        let r = namespace.ready_runners(name);
        if r.is_empty() {
            namespace.resolve(name, "")?; // the precise NOT_FOUND / UNAVAILABLE error
        }
        r
    } else {
        vec![namespace.resolve(name, version)?]
    };
    Ok(proto::ModelStatisticsResponse {
        model_stats: runners
            .iter()
            .map(|r| statistics(&r.spec.name, r.version, r.stats.snapshot()))
            .collect(),
    })
}

/// A model-control action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Load,
    Unload,
}

/// Loads or unloads `name` in the caller's namespace (explicit mode only,
/// Triton's rule), for both protocols. Every action that took place is
/// logged with who asked; refused ones at most once a second (a client can
/// send them as fast as it likes).
pub async fn model_control(
    state: &ServerState,
    ctx: &kiln_types::RequestContext,
    action: Control,
    name: &str,
) -> kiln_types::error::Result<()> {
    check_explicit(state)?;
    let namespace = state.namespace(ctx);
    let result = match action {
        Control::Load => namespace.load(name).await,
        Control::Unload => namespace.unload(name).await,
    };
    let model = kiln_types::text::clip(name);
    match &result {
        Ok(()) => tracing::info!(caller = ?ctx.identity, %model, ?action, "model control"),
        Err(e) => state.control_refusals.warn(
            "model control",
            format_args!("{action:?} of '{model}' by {:?} failed: {e}", ctx.identity),
        ),
    }
    result
}

/// Load and unload are only allowed in explicit mode (Triton's rule).
fn check_explicit(state: &ServerState) -> kiln_types::error::Result<()> {
    use kiln_repository::ControlMode;
    if state.main_registry().mode() != ControlMode::Explicit {
        return Err(kiln_types::error::KilnError::unavailable(
            "explicit model load / unload is not allowed unless the server runs with --model-control-mode explicit",
        ));
    }
    Ok(())
}

/// A model version's statistics as the ModelStatistics RPC and
/// `/v2/models/{m}/stats` report them.
fn statistics(
    name: &str,
    version: i64,
    s: kiln_scheduler::stats::StatsSnapshot,
) -> proto::ModelStatistics {
    let d = |d: kiln_scheduler::stats::Duration64| {
        Some(proto::StatisticDuration {
            count: d.count,
            ns: d.ns,
        })
    };
    proto::ModelStatistics {
        name: name.to_string(),
        version: version.to_string(),
        last_inference: s.last_inference_ms,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(proto::InferStatistics {
            success: d(s.success),
            fail: d(s.fail),
            queue: d(s.queue),
            compute_input: d(s.compute_input),
            compute_infer: d(s.compute_infer),
            compute_output: d(s.compute_output),
            cache_hit: Some(Default::default()),
            cache_miss: Some(Default::default()),
        }),
        batch_stats: s
            .batches
            .into_iter()
            .map(|b| proto::InferBatchStatistics {
                batch_size: b.batch_size,
                compute_input: d(b.compute_input),
                compute_infer: d(b.compute_infer),
                compute_output: d(b.compute_output),
            })
            .collect(),
        memory_usage: vec![],
        response_stats: Default::default(),
    }
}
