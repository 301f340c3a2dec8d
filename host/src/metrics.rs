//! Prometheus metrics with Triton's names and meanings
//! (`nv_inference_request_success`, `..._duration_us`, ...), labelled by
//! `model` and `version`, served as text on the metrics port.

use std::sync::Arc;

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use kiln_scheduler::stats::RequestTiming;

pub struct Metrics {
    registry: Registry,
    success: IntCounterVec,
    failure: IntCounterVec,
    inference_count: IntCounterVec,
    exec_count: IntCounterVec,
    request_us: IntCounterVec,
    queue_us: IntCounterVec,
    input_us: IntCounterVec,
    infer_us: IntCounterVec,
    output_us: IntCounterVec,
    pending: IntGaugeVec,
    /// Requests on an instance now (kiln-specific; with `pending`, what a
    /// model version holds).
    executing: IntGaugeVec,
    /// 1 for each model version that is READY (kiln-specific).
    ready: IntGaugeVec,
}

const LABELS: [&str; 2] = ["model", "version"];

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &LABELS).expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), &LABELS).expect("valid metric definition");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        Self {
            success: counter(
                &registry,
                "nv_inference_request_success",
                "Number of successful inference requests, all batch sizes",
            ),
            failure: counter(
                &registry,
                "nv_inference_request_failure",
                "Number of failed inference requests, all batch sizes",
            ),
            inference_count: counter(
                &registry,
                "nv_inference_count",
                "Number of inferences performed (a batch of N counts N)",
            ),
            exec_count: counter(
                &registry,
                "nv_inference_exec_count",
                "Number of model executions performed",
            ),
            request_us: counter(
                &registry,
                "nv_inference_request_duration_us",
                "Cumulative inference request duration in microseconds",
            ),
            queue_us: counter(
                &registry,
                "nv_inference_queue_duration_us",
                "Cumulative inference queuing duration in microseconds",
            ),
            input_us: counter(
                &registry,
                "nv_inference_compute_input_duration_us",
                "Cumulative compute input duration in microseconds",
            ),
            infer_us: counter(
                &registry,
                "nv_inference_compute_infer_duration_us",
                "Cumulative compute inference duration in microseconds",
            ),
            output_us: counter(
                &registry,
                "nv_inference_compute_output_duration_us",
                "Cumulative inference compute output duration in microseconds",
            ),
            pending: gauge(
                &registry,
                "nv_inference_pending_request_count",
                "Instantaneous number of pending requests awaiting execution per-model",
            ),
            executing: gauge(
                &registry,
                "kiln_inference_executing_request_count",
                "Instantaneous number of requests executing on the model's instances",
            ),
            ready: gauge(
                &registry,
                "kiln_model_ready",
                "1 when the model version is READY",
            ),
            registry,
        }
    }

    /// Counters bound to one model version (label lookup done once).
    fn for_model(&self, model: &str, version: i64) -> ModelMetrics {
        let v = version.to_string();
        let l = [model, v.as_str()];
        ModelMetrics {
            success: self.success.with_label_values(&l),
            failure: self.failure.with_label_values(&l),
            inference_count: self.inference_count.with_label_values(&l),
            exec_count: self.exec_count.with_label_values(&l),
            request_us: self.request_us.with_label_values(&l),
            queue_us: self.queue_us.with_label_values(&l),
            input_us: self.input_us.with_label_values(&l),
            infer_us: self.infer_us.with_label_values(&l),
            output_us: self.output_us.with_label_values(&l),
            pending: self.pending.with_label_values(&l),
            executing: self.executing.with_label_values(&l),
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding never fails");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl kiln_repository::RegistryObserver for Metrics {
    fn version_stats(
        &self,
        model: &str,
        version: i64,
    ) -> Box<dyn kiln_scheduler::stats::StatsObserver> {
        Box::new(self.for_model(model, version))
    }

    fn set_ready(&self, model: &str, version: i64, ready: bool) {
        self.ready
            .with_label_values(&[model, &version.to_string()])
            .set(ready as i64);
    }
}

pub struct ModelMetrics {
    success: IntCounter,
    failure: IntCounter,
    inference_count: IntCounter,
    exec_count: IntCounter,
    request_us: IntCounter,
    queue_us: IntCounter,
    input_us: IntCounter,
    infer_us: IntCounter,
    output_us: IntCounter,
    pending: IntGauge,
    executing: IntGauge,
}

impl kiln_scheduler::stats::StatsObserver for ModelMetrics {
    fn success(&self, t: &RequestTiming) {
        let us = |d: std::time::Duration| d.as_micros() as u64;
        self.success.inc();
        self.request_us.inc_by(us(t.total));
        self.queue_us.inc_by(us(t.queue));
        self.input_us.inc_by(us(t.exec.input));
        self.infer_us.inc_by(us(t.exec.infer));
        self.output_us.inc_by(us(t.exec.output));
    }

    fn failure(&self) {
        self.failure.inc();
    }

    fn execution(&self, batch_size: u64) {
        self.inference_count.inc_by(batch_size);
        self.exec_count.inc();
    }

    fn pending(&self, delta: i64) {
        self.pending.add(delta);
    }

    fn executing(&self, delta: i64) {
        self.executing.add(delta);
    }
}

/// The metrics listener's routes: `/metrics` in Prometheus' text format.
pub fn router(metrics: Arc<Metrics>) -> axum::Router {
    use axum::routing::get;
    axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.render(),
                )
            }
        }),
    )
}
