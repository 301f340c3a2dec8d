//! What every protocol handler shares.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kiln_pipeline::InferRequest;
use kiln_repository::{ModelRegistry, Namespace, Namespaces};
use kiln_trace::{RequestTrace, TraceManager};
use kiln_types::RequestContext;
use tokio::sync::watch;

use crate::log_limit::RateLimitedLog;
use crate::shared_memory::SharedMemory;

/// State shared by every protocol handler.
pub struct ServerState {
    /// Every caller's view of the repositories (the main one, and each
    /// tenant's with a tenants file).
    pub namespaces: Arc<Namespaces>,
    /// Registered system shared-memory regions (both protocols share them).
    pub shared_memory: SharedMemory,
    /// Failed model-control actions, logged at most once a second.
    pub control_refusals: RateLimitedLog,
    /// Trace settings and the sampling of requests to trace.
    pub tracing: Arc<TraceManager>,
    /// Start-up loading finished and not shutting down.
    ready: AtomicBool,
    /// Turns true when shutdown begins.
    stop: watch::Receiver<bool>,
}

impl ServerState {
    pub fn new(
        namespaces: Arc<Namespaces>,
        shared_memory: SharedMemory,
        tracing: Arc<TraceManager>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            namespaces,
            shared_memory,
            control_refusals: RateLimitedLog::default(),
            tracing,
            ready: AtomicBool::new(false),
            stop,
        }
    }

    /// Decides whether to trace `request` and, if so, sets its trace. The
    /// handle returned keeps the trace open until the caller drops it, after
    /// the answer is encoded.
    pub fn sample_trace(&self, request: &mut InferRequest) -> Option<RequestTrace> {
        request.trace = self.tracing.sample(&request.model_name, &request.ctx);
        request.trace.clone()
    }

    /// What the caller of `ctx` can see and control.
    pub fn namespace(&self, ctx: &RequestContext) -> Arc<Namespace> {
        self.namespaces.of(&ctx.identity)
    }

    /// The main repository's registry (its control mode is the server's).
    pub fn main_registry(&self) -> &Arc<ModelRegistry> {
        self.namespaces.main()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Ready once start-up loading is done; not ready from shutdown on.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Completes when shutdown begins (long-lived streams end on it).
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }
}
