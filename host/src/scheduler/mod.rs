//! Scheduling: one queue per model version, drained by one worker thread per
//! model instance. Workers own their backend instance (synchronous, on its own
//! OS thread) and answer through a oneshot channel, bridging to tokio the way
//! text-embeddings-inference does. Dropping the runner closes the queue; the
//! workers finish what is queued and exit, so a reload or unload never drops
//! an accepted request.

pub mod stats;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::backend::{Backend, BackendError, BackendRequest, ExecTimings};
use crate::error::{KilnError, Result};
use crate::repository::config::ModelSpec;
use crate::tensor::Tensor;
use stats::ModelStats;

/// What one execution produced.
pub struct ExecOutcome {
    pub outputs: Vec<Tensor>,
    pub timings: ExecTimings,
    pub queue: Duration,
}

struct Job {
    request: BackendRequest,
    enqueued: Instant,
    reply: oneshot::Sender<Result<ExecOutcome>>,
}

/// A loaded, serving model version.
pub struct ModelRunner {
    pub spec: Arc<ModelSpec>,
    pub version: i64,
    pub stats: ModelStats,
    pub devices: Vec<String>,
    queue: crossbeam_channel::Sender<Job>,
}

impl ModelRunner {
    pub fn start(
        spec: Arc<ModelSpec>,
        version: i64,
        instances: Vec<Box<dyn Backend>>,
        stats: ModelStats,
    ) -> Result<Arc<Self>> {
        let (queue, jobs) = crossbeam_channel::unbounded::<Job>();
        let devices = instances.iter().map(|i| i.device()).collect();
        for (i, instance) in instances.into_iter().enumerate() {
            let jobs = jobs.clone();
            let model = format!("{}:{version}#{i}", spec.name);
            std::thread::Builder::new()
                .name(format!("kiln-{}", spec.name))
                .spawn(move || worker(model, instance, jobs))
                .map_err(|e| KilnError::internal(format!("cannot start instance thread: {e}")))?;
        }
        Ok(Arc::new(Self {
            spec,
            version,
            stats,
            devices,
            queue,
        }))
    }

    /// Queues one request's inputs (aligned with `spec.inputs`) and waits for
    /// an instance to run them.
    pub async fn execute(&self, request: BackendRequest) -> Result<ExecOutcome> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                request,
                enqueued: Instant::now(),
                reply,
            })
            .map_err(|_| {
                KilnError::unavailable(format!(
                    "model '{}' version {} is unloading",
                    self.spec.name, self.version
                ))
            })?;
        answer.await.map_err(|_| {
            KilnError::internal(format!(
                "model '{}' instance stopped before answering",
                self.spec.name
            ))
        })?
    }
}

fn worker(model: String, mut instance: Box<dyn Backend>, jobs: crossbeam_channel::Receiver<Job>) {
    tracing::debug!(%model, device = %instance.device(), "instance started");
    while let Ok(job) = jobs.recv() {
        let queue = job.enqueued.elapsed();
        if job.reply.is_closed() {
            continue; // the caller went away (cancelled); skip the work
        }
        let mut timings = ExecTimings::default();
        // A panic inside a backend fails this request only; the instance keeps serving.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            instance.execute(&job.request, &mut timings)
        }))
        .unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(BackendError::Execution(format!("backend panicked: {msg}")))
        })
        .map(|outputs| ExecOutcome {
            outputs,
            timings,
            queue,
        })
        .map_err(|e| match e {
            BackendError::InvalidInput(m) => KilnError::invalid(m),
            BackendError::Unavailable(m) => KilnError::unavailable(m),
            BackendError::Execution(m) | BackendError::Load(m) => KilnError::internal(m),
        });
        let _ = job.reply.send(result);
    }
    tracing::debug!(%model, "instance stopped");
}
