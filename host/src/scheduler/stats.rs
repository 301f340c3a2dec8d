//! Per model-version statistics, with Triton's semantics (the
//! ModelStatistics RPC and `/v2/models/{m}/stats`): request-level counts
//! for success/fail/queue/compute_*, `inference_count` in batch items,
//! `execution_count` in model executions (a batch of requests is one). The same recording call updates the
//! Prometheus counters, so the two views never disagree.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::metrics::ModelMetrics;
use crate::protocol::proto;
use kiln_backend::ExecTimings;

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
    fn snapshot(&self) -> proto::StatisticDuration {
        proto::StatisticDuration {
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
    metrics: ModelMetrics,
}

/// What one successful request cost (its batch's compute times included, as
/// Triton reports them per request).
pub struct RequestTiming {
    pub total: Duration,
    pub queue: Duration,
    pub exec: ExecTimings,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ModelStats {
    pub fn new(metrics: ModelMetrics) -> Self {
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
            metrics,
        }
    }

    /// One successful request (alone or part of a batch).
    pub fn record_success(&self, t: &RequestTiming) {
        self.success.add(1, t.total);
        self.queue.add(1, t.queue);
        self.compute_input.add(1, t.exec.input);
        self.compute_infer.add(1, t.exec.infer);
        self.compute_output.add(1, t.exec.output);
        self.last_inference_ms.store(now_ms(), Relaxed);
        self.metrics.record_success(t);
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
        self.metrics.record_execution(batch_size);
    }

    pub fn record_failure(&self, total: Duration) {
        self.fail.add(1, total);
        self.last_inference_ms.store(now_ms(), Relaxed);
        self.metrics.record_failure();
    }

    pub fn snapshot(&self, name: &str, version: i64) -> proto::ModelStatistics {
        let batch_stats = self
            .batches
            .lock()
            .iter()
            .map(|(&size, b)| {
                let d = |(count, ns): (u64, u64)| Some(proto::StatisticDuration { count, ns });
                proto::InferBatchStatistics {
                    batch_size: size,
                    compute_input: d(b.input),
                    compute_infer: d(b.infer),
                    compute_output: d(b.output),
                }
            })
            .collect();
        proto::ModelStatistics {
            name: name.to_string(),
            version: version.to_string(),
            last_inference: self.last_inference_ms.load(Relaxed),
            inference_count: self.inference_count.load(Relaxed),
            execution_count: self.execution_count.load(Relaxed),
            inference_stats: Some(proto::InferStatistics {
                success: Some(self.success.snapshot()),
                fail: Some(self.fail.snapshot()),
                queue: Some(self.queue.snapshot()),
                compute_input: Some(self.compute_input.snapshot()),
                compute_infer: Some(self.compute_infer.snapshot()),
                compute_output: Some(self.compute_output.snapshot()),
                cache_hit: Some(Default::default()),
                cache_miss: Some(Default::default()),
            }),
            batch_stats,
            memory_usage: vec![],
            response_stats: Default::default(),
        }
    }
}
