//! Scheduling: one queue per model version (per priority level), drained by
//! one worker thread per model instance. Workers own their backend instance
//! (synchronous, on its own OS thread) and answer through oneshot channels,
//! bridging to tokio the way text-embeddings-inference does.
//!
//! Tenants share a queue by weight (deficit round robin, see `queue`). An
//! idle instance takes the next request in that order (within a tenant, the
//! oldest of the highest priority) and, with `dynamic_batching`, keeps taking
//! compatible requests in the same order (same per-item
//! shapes and parameters) until the batch is full, a preferred size is
//! reached, or `max_queue_delay_microseconds` since the oldest request has
//! passed; only one idle instance gathers at a time, so a batch goes to one
//! idle instance while the others execute. Outputs are split back along the
//! batch dimension.
//!
//! Waiting for company pays only while every instance is busy anyway: while
//! one of the model's instances is idle, the batch goes out at once with the
//! compatible requests already queued, and a batch waiting while all are
//! busy goes as soon as one becomes idle (`dispatch_when_idle`, on unless
//! the model's parameter says `"false"`, which restores Triton's wait).
//! Under load every instance is busy, so batches still fill for the delay;
//! a lone request no longer waits the delay beside an idle instance.
//!
//! Dropping the runner closes the queue; the workers finish what is queued
//! and exit, so a reload or unload never drops an accepted request.
//!
//! Each queued job carries its request's context (who is calling) and
//! tracing span; the instance thread runs a batch inside a span that follows
//! from every request in it, so a request's trace reaches the backend.
#![forbid(unsafe_code)]

pub mod batch;
mod queue;
pub mod stats;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use batch::BatchPolicy;
use kiln_backend::{Backend, BackendError, BackendRequest, ExecTimings, InFlight, Submitted};
use kiln_model_config::ModelSpec;
use kiln_types::error::{KilnError, Result};
use kiln_types::tensor::Tensor;
use kiln_types::{ParamValue, RequestContext};
use queue::{Placement, Queue, Refused};
use stats::ModelStats;

/// What one execution produced for one request.
pub struct ExecOutcome {
    pub outputs: Vec<Tensor>,
    pub timings: ExecTimings,
    pub queue: Duration,
    /// This request's part of the execution's compute time (its batch
    /// items over the batch's).
    pub compute_share: Duration,
}

struct Job {
    request: BackendRequest,
    /// Who asked: named in the queue's logs, and kept with the job for the
    /// decisions a queue makes per caller (tenancy's fair share).
    ctx: RequestContext,
    /// The request's span, entered (as a cause) where the batch executes.
    span: tracing::Span,
    /// Items in this request (its batch dim; 1 for unbatched models).
    items: usize,
    enqueued: Instant,
    /// Reject if still queued at this instant (queue policy timeout).
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<ExecOutcome>>,
}

struct Shared {
    name: String,
    policy: BatchPolicy,
    queue: Queue<Job>,
    /// Held by the one idle instance that is gathering the next batch.
    gathering: parking_lot::Mutex<()>,
    /// Batches executing or in flight: counted up while the gatherer still
    /// holds `gathering`, so the next gatherer sees the batch just taken.
    executing: AtomicUsize,
    /// The model's instances: with fewer batches than this executing, one
    /// of them is idle (`dispatch_when_idle`).
    instances: usize,
    stats: Arc<ModelStats>,
}

impl Shared {
    /// Every instance has a batch executing or in flight.
    fn all_busy(&self) -> bool {
        self.executing.load(Ordering::SeqCst) >= self.instances
    }
}

/// A loaded, serving model version.
pub struct ModelRunner {
    pub spec: Arc<ModelSpec>,
    pub version: i64,
    pub stats: Arc<ModelStats>,
    pub devices: Vec<String>,
    /// What it provides when it is an op plugin (`backend: "wasm_ops"`).
    pub ops: Option<Arc<dyn kiln_ops::OpProvider>>,
    shared: Arc<Shared>,
    /// The instance threads; each drops its instance (model, GPU buffers,
    /// CUDA stream) when its queue closes.
    workers: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for ModelRunner {
    fn drop(&mut self) {
        self.shared.queue.close();
    }
}

fn parameter_u64(params: &[(String, ParamValue)], key: &str) -> Option<u64> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| match v {
            ParamValue::Int(i) => u64::try_from(*i).ok(),
            ParamValue::Double(d) if *d >= 0.0 => Some(*d as u64),
            _ => None,
        })
}

impl ModelRunner {
    pub fn start(
        spec: Arc<ModelSpec>,
        version: i64,
        instances: Vec<Box<dyn Backend>>,
        stats: ModelStats,
    ) -> Result<Arc<Self>> {
        let policy = BatchPolicy::from_spec(&spec);
        let stats = Arc::new(stats);
        let shared = Arc::new(Shared {
            name: format!("{}:{version}", spec.name),
            // A turn of one item per unit of weight (see `queue`).
            queue: Queue::new(policy.levels, 1),
            policy,
            gathering: parking_lot::Mutex::new(()),
            executing: AtomicUsize::new(0),
            instances: instances.len(),
            stats: stats.clone(),
        });
        let devices = instances.iter().map(|i| i.device()).collect();
        let ops = instances.first().and_then(|i| i.op_provider());
        let mut workers = Vec::with_capacity(instances.len());
        for (i, instance) in instances.into_iter().enumerate() {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("kiln-{}", spec.name))
                .spawn(move || worker(i, instance, shared))
                .map_err(|e| KilnError::internal(format!("cannot start instance thread: {e}")))?;
            workers.push(handle);
        }
        Ok(Arc::new(Self {
            spec,
            version,
            stats,
            devices,
            ops,
            shared,
            workers: parking_lot::Mutex::new(workers),
        }))
    }

    /// Closes the queue and waits until every instance thread has finished
    /// its work and dropped its instance. At process exit this must happen
    /// before `main` returns: CUDA tears itself down in exit handlers, and a
    /// GPU tensor freed on an instance thread after that aborts the process.
    /// Blocking; call it off the async runtime.
    pub fn stop(&self) {
        self.shared.queue.close();
        let workers = std::mem::take(&mut *self.workers.lock());
        for w in workers {
            if w.join().is_err() {
                tracing::error!(model = %self.shared.name, "an instance thread panicked");
            }
        }
    }

    /// Queues one request (inputs aligned with `spec.inputs`) and waits for an
    /// instance to run it, alone or in a batch.
    pub async fn execute(
        &self,
        ctx: &RequestContext,
        request: BackendRequest,
    ) -> Result<ExecOutcome> {
        let policy = &self.shared.policy;
        let items = if self.spec.batched() {
            request
                .inputs
                .iter()
                .flatten()
                .next()
                .and_then(|t| t.shape.first())
                .map_or(1, |&b| b.max(1) as usize)
        } else {
            1
        };
        let priority = match parameter_u64(&request.parameters, "priority") {
            None | Some(0) => policy.default_priority,
            Some(p) if p as usize <= policy.levels => p as usize,
            Some(p) => {
                return Err(KilnError::invalid(format!(
                    "parameter 'priority' is {p} but model '{}' has {} priority level(s)",
                    self.spec.name, policy.levels
                )))
            }
        };
        let level = &policy.level_policy[priority - 1];
        let timeout = match parameter_u64(&request.parameters, "timeout") {
            Some(us) if us > 0 && level.allow_timeout_override => Some(Duration::from_micros(us)),
            _ => level.default_timeout,
        };
        let enqueued = Instant::now();
        let deadline = timeout
            .filter(|_| level.reject_on_timeout)
            .map(|t| enqueued + t);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request,
            ctx: ctx.clone(),
            span: tracing::Span::current(),
            items,
            enqueued,
            deadline,
            reply,
        };
        // Counted before the push: an idle instance may take the job (and
        // count it out) before `push` returns.
        self.stats.pending(1);
        let flow_cap = ctx.share.max_queued_per_model;
        let placement = Placement {
            flow: ctx.tenant().cloned(),
            level: priority - 1,
            cost: items as u64,
            weight: ctx.share.weight,
            max_len: level.max_queue_size,
            max_flow_len: flow_cap.map_or(0, |n| n as usize),
        };
        let pushed = self.shared.queue.push(job, placement);
        if pushed.is_err() {
            self.stats.pending(-1);
        }
        match pushed {
            Ok(()) => {}
            Err(Refused::Full(_)) => {
                return Err(KilnError::unavailable(format!(
                "model '{}' exceeds its maximum queue size of {} (dynamic_batching queue policy)",
                self.spec.name, level.max_queue_size
            )))
            }
            Err(Refused::FlowFull(_)) => {
                self.stats.refused(ctx, "max_queued_per_model");
                return Err(KilnError::resource_exhausted(format!(
                "tenant '{}' has {} requests queued for model '{}', its quota max_queued_per_model",
                ctx.tenant().map_or("", |t| t),
                flow_cap.unwrap_or(0),
                self.spec.name
            )));
            }
            Err(Refused::Closed(_)) => {
                return Err(KilnError::unavailable(format!(
                    "model '{}' version {} is unloading",
                    self.spec.name, self.version
                )))
            }
        }
        answer.await.map_err(|_| {
            KilnError::internal(format!(
                "model '{}' instance stopped before answering",
                self.spec.name
            ))
        })?
    }
}

/// Answers jobs that can no longer run (and counts them out of the pending
/// gauge); the job back if it is still wanted.
fn still_wanted(shared: &Shared, job: Job, now: Instant) -> Option<Job> {
    let cancelled = job.reply.is_closed(); // the caller went away
    let expired = job.deadline.is_some_and(|d| now >= d);
    if cancelled || expired {
        shared.stats.pending(-1);
    }
    if cancelled {
        return None;
    }
    if expired {
        let waited = now - job.enqueued;
        tracing::debug!(parent: &job.span, caller = ?job.ctx.identity, waited_us = waited.as_micros() as u64, "queue timeout");
        let _ = job.reply.send(Err(KilnError::unavailable(format!(
            "request timeout expired after {} µs in the queue",
            waited.as_micros()
        ))));
        return None;
    }
    Some(job)
}

/// Takes the next batch: the oldest request, plus compatible ones when
/// batching. `None` when the queue is closed and empty. The batch is counted
/// as executing before the next gatherer may start (see [`Executing`]).
fn gather(shared: &Arc<Shared>) -> Option<(Vec<Job>, Executing)> {
    let _one_gatherer = shared.gathering.lock();
    let jobs = gather_batch(shared)?;
    Some((jobs, Executing::start(shared)))
}

/// One batch executing or in flight on an instance; counted out when
/// dropped.
struct Executing(Arc<Shared>);

impl Executing {
    fn start(shared: &Arc<Shared>) -> Self {
        shared.executing.fetch_add(1, Ordering::SeqCst);
        Self(shared.clone())
    }
}

impl Drop for Executing {
    fn drop(&mut self) {
        self.0.executing.fetch_sub(1, Ordering::SeqCst);
        // An instance is idle now: a gatherer waiting for company while
        // every instance was busy goes with what it has. (Without batching
        // nobody waits for company.)
        if self.0.policy.enabled && self.0.policy.dispatch_when_idle {
            self.0.queue.wake();
        }
    }
}

fn gather_batch(shared: &Shared) -> Option<Vec<Job>> {
    let first = loop {
        let job = shared.queue.pop()?;
        if let Some(job) = still_wanted(shared, job, Instant::now()) {
            break job;
        }
    };
    let policy = &shared.policy;
    let mut size = first.items;
    let mut jobs = vec![first];
    if !policy.enabled {
        return Some(jobs);
    }
    // `dispatch_when_idle`: waiting for company is worth it only while
    // every instance is busy; with one idle, its device time would go
    // unused while we wait, so take what is queued and go. A gatherer that
    // waits goes as soon as an instance becomes idle (`Executing`'s drop
    // wakes it), or at the deadline.
    let idle_instance = || policy.dispatch_when_idle && !shared.all_busy();
    let deadline = jobs[0].enqueued + policy.max_delay;
    while !policy.preferred_reached(size) {
        let room = policy.max_batch_size - size;
        let head = &jobs[0].request;
        let accept = |j: &Job| j.items <= room && kiln_backend::batch::compatible(head, &j.request);
        // A preferred size with nothing else waiting goes out at once.
        let wait_until = if policy.preferred.contains(&size) {
            Instant::now()
        } else {
            deadline
        };
        let Some(job) = shared.queue.pop_until(wait_until, &accept, &idle_instance) else {
            break;
        };
        if let Some(job) = still_wanted(shared, job, Instant::now()) {
            size += job.items;
            jobs.push(job);
        }
    }
    Some(jobs)
}

fn to_kiln_error(e: BackendError) -> KilnError {
    match e {
        BackendError::InvalidInput(m) => KilnError::invalid(m),
        BackendError::Unavailable(m) => KilnError::unavailable(m),
        BackendError::Execution(m) | BackendError::Load(m) => KilnError::internal(m),
    }
}

/// Runs backend code; a panic inside it fails this execution only, and the
/// instance keeps serving.
fn guarded<T>(f: impl FnOnce() -> std::result::Result<T, BackendError>) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|p| {
            Err(BackendError::Execution(format!(
                "backend panicked: {}",
                kiln_types::error::panic_message(&*p)
            )))
        })
        .map_err(to_kiln_error)
}

/// A batch from its start on an instance to its answers.
struct Batch {
    jobs: Vec<Job>,
    started: Instant,
    timings: ExecTimings,
    span: tracing::Span,
    /// Counted out when the answers go.
    executing: Executing,
}

impl Batch {
    fn start(shared: &Shared, index: usize, jobs: Vec<Job>, executing: Executing) -> Self {
        let total: usize = jobs.iter().map(|j| j.items).sum();
        let span =
            tracing::debug_span!("execute", model = %shared.name, instance = index, batch = total);
        for job in &jobs {
            span.follows_from(&job.span);
        }
        let count = jobs.len() as i64;
        shared.stats.pending(-count);
        shared.stats.executing(count);
        Self {
            jobs,
            started: Instant::now(),
            timings: ExecTimings::default(),
            span,
            executing,
        }
    }

    /// Splits the batched outputs back to the requests and answers each.
    fn answer(self, shared: &Shared, result: Result<Vec<Tensor>>) {
        let Batch {
            jobs,
            started,
            timings,
            span,
            executing,
        } = self;
        let _entered = span.enter();
        let sizes: Vec<usize> = jobs.iter().map(|j| j.items).collect();
        let total: usize = sizes.iter().sum();
        let result = if jobs.len() == 1 {
            result.map(|outputs| vec![outputs])
        } else {
            result.and_then(|outputs| {
                kiln_backend::batch::split(outputs, &sizes).map_err(|m| {
                    KilnError::internal(format!("cannot split the batch of {total}: {m}"))
                })
            })
        };
        // The device is free for the next gatherer before the answers go.
        drop(executing);
        if result.is_ok() {
            shared.stats.record_execution(total as u64, &timings);
        }
        // Counted out before the answers go: a caller that has its answer
        // never sees itself still counted.
        shared.stats.executing(-(jobs.len() as i64));
        match result {
            Ok(per_request) => {
                let compute = timings.input + timings.infer + timings.output;
                for (job, outputs) in jobs.into_iter().zip(per_request) {
                    let _ = job.reply.send(Ok(ExecOutcome {
                        outputs,
                        timings,
                        queue: started - job.enqueued,
                        compute_share: compute.mul_f64(job.items as f64 / total.max(1) as f64),
                    }));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Waits for the work the backend left in flight, then answers.
    fn finish(mut self, shared: &Shared, work: Box<dyn InFlight>) {
        let result = {
            let _entered = self.span.enter();
            guarded(|| work.finish(&mut self.timings))
        };
        self.answer(shared, result);
    }
}

type ToFinisher = std::sync::mpsc::SyncSender<(Batch, Box<dyn InFlight>)>;

/// The thread that finishes an instance's batches in flight, in order. The
/// hand-off is a rendezvous: the instance thread launches batch n + 1 while
/// batch n is waited for here, and waits to hand n + 1 over until n is
/// answered, so at most two batches of an instance are on its device.
fn start_finisher(
    shared: &Arc<Shared>,
    index: usize,
) -> Option<(ToFinisher, std::thread::JoinHandle<()>)> {
    let (to_finisher, batches) = std::sync::mpsc::sync_channel::<(Batch, Box<dyn InFlight>)>(0);
    let for_thread = shared.clone();
    std::thread::Builder::new()
        .name(format!("kiln-{}-out", shared.name))
        .spawn(move || {
            for (batch, work) in batches {
                batch.finish(&for_thread, work);
            }
        })
        .map_err(|e| {
            tracing::warn!(model = %shared.name, instance = index, "cannot start a finishing thread ({e}); batches finish on the instance thread")
        })
        .ok()
        .map(|handle| (to_finisher, handle))
}

fn worker(index: usize, mut instance: Box<dyn Backend>, shared: Arc<Shared>) {
    tracing::debug!(model = %shared.name, instance = index, device = %instance.device(), "instance started");
    // Started on the first batch the backend leaves in flight (never for a
    // backend that runs to the end).
    let mut finisher: Option<Option<(ToFinisher, std::thread::JoinHandle<()>)>> = None;
    while let Some((jobs, executing)) = gather(&shared) {
        let mut batch = Batch::start(&shared, index, jobs, executing);
        let submitted = {
            let _entered = batch.span.enter();
            let requests: Vec<&BackendRequest> = batch.jobs.iter().map(|j| &j.request).collect();
            guarded(|| instance.submit(&requests, &mut batch.timings))
        };
        match submitted {
            Ok(Submitted::Done(outputs)) => batch.answer(&shared, Ok(outputs)),
            Err(e) => batch.answer(&shared, Err(e)),
            Ok(Submitted::InFlight(work)) => {
                let to_finisher = finisher
                    .get_or_insert_with(|| start_finisher(&shared, index))
                    .as_ref()
                    .map(|(to, _)| to);
                match to_finisher {
                    Some(to) => {
                        if let Err(std::sync::mpsc::SendError((batch, work))) =
                            to.send((batch, work))
                        {
                            batch.finish(&shared, work);
                        }
                    }
                    None => batch.finish(&shared, work),
                }
            }
        }
    }
    // Every batch in flight is answered before the instance (its device
    // memory, streams, graphs) is dropped.
    if let Some(Some((to_finisher, handle))) = finisher {
        drop(to_finisher);
        if handle.join().is_err() {
            tracing::error!(model = %shared.name, instance = index, "a finishing thread panicked");
        }
    }
    tracing::debug!(model = %shared.name, instance = index, "instance stopped");
}

#[cfg(test)]
mod tests;
