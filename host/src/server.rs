//! Wires the server together: registry, protocol listeners, poll loop,
//! signals. Shutdown on SIGINT/SIGTERM: readiness goes false, listeners stop
//! accepting, idle connections and streams close, in-flight requests finish,
//! model instances stop, then the process exits 0; all of it within
//! `--exit-timeout-secs`, after which it exits anyway. A second signal exits
//! at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::settings::Settings;
use kiln_kserve::admission::{self, Admission};
use kiln_kserve::restricted::Wire;
use kiln_kserve::shared_memory::SharedMemory;
use kiln_kserve::transport::Listener;
use kiln_kserve::{grpc, http, ServerState};
use kiln_model_config::Ceilings;
use kiln_repository::{ControlMode, LocalRepository, ModelRegistry, Namespaces, TenantSpace};
use kiln_tenancy::{Reload, Tenants, TenantsWatch};

/// Instances get at least this long to stop, even when the exit timeout
/// was spent on draining connections: a GPU instance freed after CUDA's exit
/// handlers ran aborts the process.
const MIN_INSTANCE_STOP: Duration = Duration::from_secs(5);

/// How often the tenants file is looked at: a rotated key is in force
/// within this long. Reading a small file once a second costs nothing.
const TENANTS_POLL: Duration = Duration::from_secs(1);

async fn bind(host: &str, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("invalid {what} address {host}:{port}"))?;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// Writes the bound ports as JSON, through a temporary file renamed into
/// place, so a reader never sees half a file.
fn write_port_file(
    file: &std::path::Path,
    http: u16,
    grpc: u16,
    metrics: u16,
) -> std::io::Result<()> {
    let json = format!("{{\"http\": {http}, \"grpc\": {grpc}, \"metrics\": {metrics}}}\n");
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, file)
}

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    kiln_kserve::limits::set(settings.limits.clone());
    if let Some(on) = settings.cuda_tf32 {
        // Before any model loads: the switches are process-wide.
        let (cublas, cudnn) =
            kiln_torch::set_tf32(on).map_err(|e| anyhow::anyhow!("cuda_tf32: {e}"))?;
        tracing::info!(
            cublas,
            cudnn,
            "TF32 for FP32 matmuls (cuBLAS) and convolutions (cuDNN)"
        );
    }
    let source =
        crate::repository::open_all(&settings.model_repositories, &settings.repository_cache_dir)?;
    let repository = source.location();
    // A broken tenants file stops the start: serving nobody or everybody
    // instead would be worse than not serving.
    let tenants = match &settings.tenants {
        Some(file) => {
            let watch = TenantsWatch::open(file).context("--tenants")?;
            tracing::info!(file = %file.display(), tenants = watch.current().len(), "tenants file in force");
            for w in watch.current().warnings() {
                tracing::warn!("{w}");
            }
            Some(Arc::new(watch))
        }
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let mode = settings.model_control_mode;
    let registry = ModelRegistry::new(
        source,
        mode,
        crate::backend::registry(),
        metrics.owned_by(""),
    );
    let namespaces = {
        let metrics = metrics.clone();
        Arc::new(Namespaces::new(
            registry.clone(),
            Box::new(move |tenant: &str, root: &std::path::Path| {
                ModelRegistry::new(
                    LocalRepository::new(root),
                    mode,
                    crate::backend::registry(),
                    metrics.owned_by(tenant),
                )
            }),
        ))
    };
    // Each tenant's own repository, loaded with the main one at start.
    let tenant_registries = match &tenants {
        Some(tenants) => namespaces.update(tenant_spaces(&tenants.current())).0,
        None => Vec::new(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let tracing_manager = kiln_trace::TraceManager::new(&settings.trace)
        .map_err(|e| anyhow::anyhow!("--trace-config: {e}"))?;
    let state = Arc::new(ServerState::new(
        namespaces.clone(),
        SharedMemory::new(settings.shared_memory),
        tracing_manager,
        stop_rx.clone(),
    ));

    // Bind everything first: a busy port fails the start, not a request later.
    let http_listener = Listener::new(
        "HTTP",
        bind(&settings.host, settings.http_port, "HTTP").await?,
        settings.http_connections.clone(),
    );
    let grpc_listener = Listener::new(
        "gRPC",
        bind(&settings.host, settings.grpc_port, "gRPC").await?,
        settings.grpc_connections.clone(),
    );
    let metrics_listener = Listener::new(
        "metrics",
        bind(&settings.host, settings.metrics_port, "metrics").await?,
        settings.http_connections.clone(),
    );
    if let Some(file) = &settings.port_file {
        write_port_file(
            file,
            http_listener.local_addr()?.port(),
            grpc_listener.local_addr()?.port(),
            metrics_listener.local_addr()?.port(),
        )
        .with_context(|| format!("--port-file {}", file.display()))?;
    }
    tracing::info!(
        http = %http_listener.local_addr()?, grpc = %grpc_listener.local_addr()?, metrics = %metrics_listener.local_addr()?,
        repository = %repository, mode = ?settings.model_control_mode, "kiln listening"
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let grpc_router = tonic::service::Routes::new(health_service)
        .add_service(grpc::service(state.clone()))
        .prepare()
        .into_axum_router()
        .layer(axum::middleware::from_fn(
            kiln_kserve::grpc_compression::inflate_requests,
        ));
    let grpc_router = admission::apply(
        grpc_router,
        Admission::new(
            Wire::Grpc,
            settings.grpc_restricted.clone(),
            tenants.clone(),
        )
        .with_refusals(metrics.clone()),
    );
    let http_router = admission::apply(
        http::router(state.clone()),
        Admission::new(
            Wire::Http,
            settings.http_restricted.clone(),
            tenants.clone(),
        )
        .with_refusals(metrics.clone()),
    );
    let metrics_router = crate::metrics::router(metrics);
    let servers = {
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::join!(
                grpc_listener.serve(grpc_router, stop.clone()),
                http_listener.serve(http_router, stop.clone()),
                metrics_listener.serve(metrics_router, stop),
            );
        })
    };

    let startup = {
        let registry = registry.clone();
        let load_models = settings.load_model.clone();
        async move {
            // Tenants' repositories follow the control mode; `--load-model`
            // names models of the main repository.
            for own in &tenant_registries {
                load_at_start(own, mode).await;
            }
            match mode {
                ControlMode::None | ControlMode::Poll => registry.load_all().await,
                ControlMode::Explicit if load_models.iter().any(|m| m == "*") => {
                    registry.load_all().await
                }
                ControlMode::Explicit => {
                    for m in &load_models {
                        if let Err(e) = registry.load(m).await {
                            tracing::error!(model = %m, "{e}");
                        }
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = startup => {}
        _ = shutdown_signal() => return finish(state, stop_tx, servers, settings.exit_timeout).await,
    }
    state.set_ready(true);
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tracing::info!("kiln ready");

    if let Some(tenants) = tenants {
        let stopping = state.stopping();
        let namespaces = namespaces.clone();
        tokio::spawn(async move {
            tokio::pin!(stopping);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(TENANTS_POLL) => {
                        let watch = tenants.clone();
                        // Outcomes are logged by the watch itself.
                        let reload = tokio::task::spawn_blocking(move || watch.reload_if_changed()).await;
                        if matches!(reload, Ok(Reload::Replaced(_))) {
                            apply_tenants(&namespaces, &tenants.current(), mode).await;
                        }
                    }
                    _ = &mut stopping => break,
                }
            }
        });
    }

    if mode == ControlMode::Poll {
        let namespaces = namespaces.clone();
        let every = Duration::from_secs(settings.repository_poll_secs.max(1));
        let stopping = state.stopping();
        tokio::spawn(async move {
            tokio::pin!(stopping);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {
                        for registry in namespaces.registries() {
                            registry.poll_once().await;
                        }
                    }
                    _ = &mut stopping => break,
                }
            }
        });
    }

    shutdown_signal().await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    finish(state, stop_tx, servers, settings.exit_timeout).await
}

/// How long exit waits for traces to be written or exported.
const TRACE_FLUSH: Duration = Duration::from_secs(5);

async fn finish(
    state: Arc<ServerState>,
    stop: watch::Sender<bool>,
    servers: tokio::task::JoinHandle<()>,
    exit_timeout: Duration,
) -> anyhow::Result<()> {
    tracing::info!(
        "shutting down: no new requests, finishing in-flight ones (at most {exit_timeout:?}; a second signal exits now)"
    );
    let deadline = Instant::now() + exit_timeout;
    state.set_ready(false);
    let _ = stop.send(true);
    tokio::spawn(async {
        shutdown_signal().await;
        tracing::warn!("second shutdown signal: exiting now");
        std::process::exit(1);
    });
    // As Triton: a drain cut short by the timeout exits non-zero.
    let mut clean = true;
    match tokio::time::timeout_at(deadline.into(), servers).await {
        Ok(Ok(())) => tracing::info!("requests finished; stopping model instances"),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => {
            clean = false;
            tracing::warn!(
                "connections still busy after the exit timeout of {exit_timeout:?}; exiting anyway"
            )
        }
    }
    // Instances release their models and GPU memory before the process exits.
    let registries = state.namespaces.registries();
    let stopped = tokio::task::spawn_blocking(move || {
        for registry in registries {
            registry.stop_all();
        }
    });
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(MIN_INSTANCE_STOP);
    match tokio::time::timeout(left, stopped).await {
        Ok(_) => {}
        Err(_) => {
            clean = false;
            tracing::warn!("model instances still busy after {left:?}; exiting anyway")
        }
    }
    // Traces waiting for their file are written, OTLP batches sent; an
    // unreachable collector does not hold the exit past TRACE_FLUSH.
    let traces = state.tracing.clone();
    let flushed = tokio::task::spawn_blocking(move || traces.shutdown());
    if tokio::time::timeout(TRACE_FLUSH, flushed).await.is_err() {
        tracing::warn!("traces not flushed within {TRACE_FLUSH:?}; exiting anyway");
    }
    tracing::info!("shutdown complete");
    anyhow::ensure!(
        clean,
        "the exit timeout of {exit_timeout:?} expired before everything in flight finished"
    );
    Ok(())
}

/// What the tenants file says of each tenant's namespace.
fn tenant_spaces(tenants: &Tenants) -> Vec<TenantSpace> {
    tenants
        .iter()
        .map(|t| {
            let tenant = t.clone();
            TenantSpace {
                name: t.name.clone(),
                repository: t.repository.clone(),
                max_loaded_models: t.quotas.max_loaded_models.map(|n| n.get() as usize),
                ceilings: (!t.quotas.plugin_ceilings.is_empty()).then(|| {
                    Arc::new(Ceilings {
                        owner: format!("tenant '{}'", t.name),
                        limits: t
                            .quotas
                            .plugin_ceilings
                            .iter()
                            .map(|&(key, max)| (key.to_string(), max))
                            .collect(),
                    })
                }),
                shared: Arc::new(move |model: &str| tenant.may_use_shared(model)),
            }
        })
        .collect()
}

/// Loads what a registry serves from the start in `mode` (everything in
/// `none` and `poll`; nothing in `explicit`, where the tenant loads).
async fn load_at_start(registry: &Arc<ModelRegistry>, mode: ControlMode) {
    if mode != ControlMode::Explicit {
        registry.load_all().await;
    }
}

/// A new version of the tenants file: new repositories load, dropped ones
/// stop once what runs on them has finished.
async fn apply_tenants(namespaces: &Namespaces, tenants: &Tenants, mode: ControlMode) {
    let (added, removed) = namespaces.update(tenant_spaces(tenants));
    for registry in removed {
        let _ = tokio::task::spawn_blocking(move || registry.stop_all()).await;
    }
    for registry in &added {
        load_at_start(registry, mode).await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
