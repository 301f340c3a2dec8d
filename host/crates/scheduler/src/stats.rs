//! Per model-version statistics, with Triton's semantics (the
//! ModelStatistics RPC and `/v2/models/{m}/stats`): request-level counts
//! for success/fail/queue/compute_*, `inference_count` in batch items,
//! `execution_count` in model executions (a batch of requests is one). The
//! same recording call tells the [`StatsObserver`] (kiln's Prometheus
//! counters), so the two views never disagree. The protocol layer turns a
//! [`StatsSnapshot`] into its messages.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use kiln_backend::ExecTimings;
use kiln_types::RequestContext;

/// Told of every recorded event, as it is recorded (kiln's Prometheus
/// counters implement it).
pub trait StatsObserver: Send + Sync + 'static {
    /// A request of `tenant` (`None`: a caller without one) succeeded.
    fn success(&self, tenant: Option<&str>, timing: &RequestTiming);
    fn failure(&self, tenant: Option<&str>);
    /// A request of `tenant` was refused for its quota `quota` (named as
    /// the tenants file names it).
    fn refused(&self, _tenant: Option<&str>, _quota: &'static str) {}
    fn execution(&self, batch_size: u64);
    /// Requests accepted and not yet executing changed by `delta` (Triton's
    /// `nv_inference_pending_request_count`).
    fn pending(&self, delta: i64);
    /// Requests on an instance right now changed by `delta`.
    fn executing(&self, delta: i64);
}

impl StatsObserver for Box<dyn StatsObserver> {
    fn success(&self, tenant: Option<&str>, timing: &RequestTiming) {
        (**self).success(tenant, timing)
    }
    fn failure(&self, tenant: Option<&str>) {
        (**self).failure(tenant)
    }
    fn refused(&self, tenant: Option<&str>, quota: &'static str) {
        (**self).refused(tenant, quota)
    }
    fn execution(&self, batch_size: u64) {
        (**self).execution(batch_size)
    }
    fn pending(&self, delta: i64) {
        (**self).pending(delta)
    }
    fn executing(&self, delta: i64) {
        (**self).executing(delta)
    }
}

/// No observer.
impl StatsObserver for () {
    fn success(&self, _: Option<&str>, _: &RequestTiming) {}
    fn failure(&self, _: Option<&str>) {}
    fn execution(&self, _: u64) {}
    fn pending(&self, _: i64) {}
    fn executing(&self, _: i64) {}
}

/// A count and the total time of what it counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Duration64 {
    pub count: u64,
    pub ns: u64,
}

/// Compute times of the executions of one batch size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSnapshot {
    pub batch_size: u64,
    pub compute_input: Duration64,
    pub compute_infer: Duration64,
    pub compute_output: Duration64,
}

/// The statistics of one model version at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Milliseconds since the epoch of the last request (0: none yet).
    pub last_inference_ms: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub success: Duration64,
    pub fail: Duration64,
    pub queue: Duration64,
    pub compute_input: Duration64,
    pub compute_infer: Duration64,
    pub compute_output: Duration64,
    /// Ascending batch size.
    pub batches: Vec<BatchSnapshot>,
}

#[derive(Default)]
struct Counter {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Counter {
    fn add(&self, n: u64, d: Duration) {
        self.count.fetch_add(n, Relaxed);
        self.ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }
    fn snapshot(&self) -> Duration64 {
        Duration64 {
            count: self.count.load(Relaxed),
            ns: self.ns.load(Relaxed),
        }
    }
}

#[derive(Default)]
struct BatchCounters {
    input: (u64, u64),
    infer: (u64, u64),
    output: (u64, u64),
}

pub struct ModelStats {
    success: Counter,
    fail: Counter,
    queue: Counter,
    compute_input: Counter,
    compute_infer: Counter,
    compute_output: Counter,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    last_inference_ms: AtomicU64,
    batches: Mutex<BTreeMap<u64, BatchCounters>>,
    observer: Box<dyn StatsObserver>,
}

/// What one successful request cost (its batch's compute times included, as
/// Triton reports them per request).
pub struct RequestTiming {
    pub total: Duration,
    pub queue: Duration,
    pub exec: ExecTimings,
    /// The request's part of its execution's compute time (input + infer +
    /// output, times its batch items over the batch's): what a tenant is
    /// charged for (`kiln_tenant_compute_duration_us`).
    pub compute_share: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ModelStats {
    pub fn new(observer: impl StatsObserver) -> Self {
        Self {
            success: Counter::default(),
            fail: Counter::default(),
            queue: Counter::default(),
            compute_input: Counter::default(),
            compute_infer: Counter::default(),
            compute_output: Counter::default(),
            inference_count: AtomicU64::new(0),
            execution_count: AtomicU64::new(0),
            last_inference_ms: AtomicU64::new(0),
            batches: Mutex::new(BTreeMap::new()),
            observer: Box::new(observer),
        }
    }

    /// One successful request (alone or part of a batch) of `ctx`'s caller.
    pub fn record_success(&self, ctx: &RequestContext, t: &RequestTiming) {
        self.success.add(1, t.total);
        self.queue.add(1, t.queue);
        self.compute_input.add(1, t.exec.input);
        self.compute_infer.add(1, t.exec.infer);
        self.compute_output.add(1, t.exec.output);
        self.last_inference_ms.store(now_ms(), Relaxed);
        self.observer.success(ctx.tenant().map(|t| &**t), t);
    }

    /// One model execution of `batch_size` items (one or more requests).
    pub fn record_execution(&self, batch_size: u64, exec: &ExecTimings) {
        self.inference_count.fetch_add(batch_size, Relaxed);
        self.execution_count.fetch_add(1, Relaxed);
        {
            let mut batches = self.batches.lock();
            let b = batches.entry(batch_size).or_default();
            let ns = |d: Duration| d.as_nanos() as u64;
            b.input = (b.input.0 + 1, b.input.1 + ns(exec.input));
            b.infer = (b.infer.0 + 1, b.infer.1 + ns(exec.infer));
            b.output = (b.output.0 + 1, b.output.1 + ns(exec.output));
        }
        self.observer.execution(batch_size);
    }

    pub fn record_failure(&self, ctx: &RequestContext, total: Duration) {
        self.fail.add(1, total);
        self.last_inference_ms.store(now_ms(), Relaxed);
        self.observer.failure(ctx.tenant().map(|t| &**t));
    }

    /// A request of `ctx`'s caller refused for its tenant's quota `quota`.
    pub(crate) fn refused(&self, ctx: &RequestContext, quota: &'static str) {
        self.observer.refused(ctx.tenant().map(|t| &**t), quota);
    }

    /// Requests entered (`delta` > 0) or left (`delta` < 0) the state
    /// "accepted, not yet executing". Only the observer keeps the gauge: the
    /// statistics extension has no such field.
    pub(crate) fn pending(&self, delta: i64) {
        self.observer.pending(delta);
    }

    /// Requests started (`delta` > 0) or finished (`delta` < 0) executing.
    pub(crate) fn executing(&self, delta: i64) {
        self.observer.executing(delta);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let batches = self
            .batches
            .lock()
            .iter()
            .map(|(&batch_size, b)| {
                let d = |(count, ns): (u64, u64)| Duration64 { count, ns };
                BatchSnapshot {
                    batch_size,
                    compute_input: d(b.input),
                    compute_infer: d(b.infer),
                    compute_output: d(b.output),
                }
            })
            .collect();
        StatsSnapshot {
            last_inference_ms: self.last_inference_ms.load(Relaxed),
            inference_count: self.inference_count.load(Relaxed),
            execution_count: self.execution_count.load(Relaxed),
            success: self.success.snapshot(),
            fail: self.fail.snapshot(),
            queue: self.queue.snapshot(),
            compute_input: self.compute_input.snapshot(),
            compute_infer: self.compute_infer.snapshot(),
            compute_output: self.compute_output.snapshot(),
            batches,
        }
    }
}
