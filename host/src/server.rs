//! Wires the server together: registry, protocol listeners, poll loop,
//! signals. Shutdown on SIGINT/SIGTERM: readiness goes false, listeners stop
//! accepting, in-flight requests finish, then the process exits 0.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::protocol::{grpc, http};
use crate::repository::{ControlMode, ModelRegistry};
use crate::settings::Settings;
use crate::shared_memory::SharedMemory;

/// State shared by every protocol handler.
pub struct ServerState {
    pub registry: Arc<ModelRegistry>,
    pub metrics: Arc<Metrics>,
    /// Registered system shared-memory regions (both protocols share them).
    pub shared_memory: SharedMemory,
    /// Start-up loading finished and not shutting down.
    ready: AtomicBool,
}

impl ServerState {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Nagle's algorithm against the client's delayed ACKs costs ~40 ms per
/// request/response exchange of a few hundred KB (measured on the H100 box
/// with ResNet-50 inputs: 43 ms p50 with it, see BENCHMARKS.md).
const NODELAY: bool = true;

/// How long shutdown waits for in-flight requests and open streams.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

async fn bind(host: &str, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("invalid {what} address {host}:{port}"))?;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for {what} on {addr}"))
}

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    if let Some(on) = settings.cuda_tf32 {
        // Before any model loads: the switches are process-wide.
        let (cublas, cudnn) =
            crate::backend::set_tf32(on).map_err(|e| anyhow::anyhow!("cuda_tf32: {e}"))?;
        tracing::info!(
            cublas,
            cudnn,
            "TF32 for FP32 matmuls (cuBLAS) and convolutions (cuDNN)"
        );
    }
    let repo = settings
        .model_repository
        .canonicalize()
        .with_context(|| format!("model repository {}", settings.model_repository.display()))?;
    let metrics = Arc::new(Metrics::new());
    let registry = ModelRegistry::new(repo.clone(), settings.model_control_mode, metrics.clone());
    let state = Arc::new(ServerState {
        registry: registry.clone(),
        metrics,
        shared_memory: SharedMemory::default(),
        ready: AtomicBool::new(false),
    });

    // Bind everything first: a busy port fails the start, not a request later.
    let http_listener = bind(&settings.host, settings.http_port, "HTTP").await?;
    let grpc_listener = bind(&settings.host, settings.grpc_port, "gRPC").await?;
    let metrics_listener = bind(&settings.host, settings.metrics_port, "metrics").await?;
    tracing::info!(
        http = %http_listener.local_addr()?, grpc = %grpc_listener.local_addr()?, metrics = %metrics_listener.local_addr()?,
        repository = %repo.display(), mode = ?settings.model_control_mode, "kiln listening"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    const GRPC_STREAM_WINDOW: u32 = 16 << 20;
    const GRPC_CONNECTION_WINDOW: u32 = 64 << 20;
    const GRPC_MAX_FRAME: u32 = 1 << 20;
    let (mut health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    // HTTP/2 flow control: h2's default 64 KiB windows make a client stop
    // and wait for a WINDOW_UPDATE every 64 KiB, i.e. ten round trips for
    // one 600 KB image. Windows large enough for a whole batch of tensors in
    // flight, and frames up to 1 MiB, let a request arrive in one go.
    let grpc_server = tonic::transport::Server::builder()
        .initial_stream_window_size(GRPC_STREAM_WINDOW)
        .initial_connection_window_size(GRPC_CONNECTION_WINDOW)
        .max_frame_size(GRPC_MAX_FRAME)
        .add_service(health_service)
        .add_service(grpc::service(state.clone()))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from_listener(grpc_listener, NODELAY, None)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            stopped(stop_rx.clone()),
        );
    let http_server = axum::serve(http_listener, http::router(state.clone()))
        .tcp_nodelay(NODELAY)
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let metrics_server = axum::serve(metrics_listener, http::metrics_router(state.clone()))
        .tcp_nodelay(NODELAY)
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let servers = tokio::spawn(async move {
        tokio::try_join!(
            async { grpc_server.await.map_err(anyhow::Error::from) },
            async { http_server.await.map_err(anyhow::Error::from) },
            async { metrics_server.await.map_err(anyhow::Error::from) }
        )
    });

    let startup = {
        let registry = registry.clone();
        let load_models = settings.load_model.clone();
        let mode = settings.model_control_mode;
        async move {
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
        _ = shutdown_signal() => return finish(state, stop_tx, servers).await,
    }
    state.ready.store(true, Ordering::Release);
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tracing::info!("kiln ready");

    if settings.model_control_mode == ControlMode::Poll {
        let registry = registry.clone();
        let every = Duration::from_secs(settings.repository_poll_secs.max(1));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    _ = tokio::time::sleep(every) => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                if stopping {
                    break;
                }
                registry.poll_once().await;
            }
        });
    }

    shutdown_signal().await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    finish(state, stop_tx, servers).await
}

async fn finish(
    state: Arc<ServerState>,
    stop: watch::Sender<bool>,
    servers: tokio::task::JoinHandle<anyhow::Result<((), (), ())>>,
) -> anyhow::Result<()> {
    tracing::info!("shutting down: no new requests, finishing in-flight ones");
    state.ready.store(false, Ordering::Release);
    let _ = stop.send(true);
    match tokio::time::timeout(SHUTDOWN_GRACE, servers).await {
        Ok(Ok(Ok(_))) => tracing::info!("requests finished; stopping model instances"),
        Ok(Ok(Err(e))) => return Err(e),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; exiting anyway"),
    }
    // Instances release their models and GPU memory before the process exits.
    let registry = state.registry.clone();
    let stopped = tokio::task::spawn_blocking(move || registry.stop_all());
    match tokio::time::timeout(SHUTDOWN_GRACE, stopped).await {
        Ok(_) => tracing::info!("shutdown complete"),
        Err(_) => {
            tracing::warn!("model instances still busy after {SHUTDOWN_GRACE:?}; exiting anyway")
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
