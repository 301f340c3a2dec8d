//! Prometheus metrics with Triton's names and meanings
//! (`nv_inference_request_success`, `..._duration_us`, ...), labelled by
//! `model`, `version` and `tenant`, served as text on the metrics port.
//!
//! `tenant` is only ever a tenant of the tenants file (or empty), so the
//! number of series stays bounded by what the operator configured. On the
//! per-request series (success, failure and the request's durations) it is
//! the tenant that asked ("" for callers without one); on the per-model
//! series (inference and execution counts, the pending and executing gauges,
//! readiness), which a batch of several tenants' requests shares, it is the
//! tenant whose repository holds the model ("" for the main repository), so
//! two tenants' same-named models never share a series. Plus, per tenant:
//! `kiln_tenant_compute_duration_us` (each request's part of its batch's
//! compute time) and `kiln_tenant_refusals_total` by reason.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use kiln_scheduler::stats::{RequestTiming, StatsObserver};

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
    /// Per tenant and model: each request's part of its execution's compute.
    tenant_compute_us: IntCounterVec,
    /// Per tenant and reason (`unauthenticated`, `permission_denied`, or the
    /// quota's name).
    refusals: IntCounterVec,
}

const LABELS: [&str; 3] = ["model", "version", "tenant"];

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
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
        let model = |name, help| counter(&registry, name, help, &LABELS);
        Self {
            success: model(
                "nv_inference_request_success",
                "Number of successful inference requests, all batch sizes",
            ),
            failure: model(
                "nv_inference_request_failure",
                "Number of failed inference requests, all batch sizes",
            ),
            inference_count: model(
                "nv_inference_count",
                "Number of inferences performed (a batch of N counts N)",
            ),
            exec_count: model(
                "nv_inference_exec_count",
                "Number of model executions performed",
            ),
            request_us: model(
                "nv_inference_request_duration_us",
                "Cumulative inference request duration in microseconds",
            ),
            queue_us: model(
                "nv_inference_queue_duration_us",
                "Cumulative inference queuing duration in microseconds",
            ),
            input_us: model(
                "nv_inference_compute_input_duration_us",
                "Cumulative compute input duration in microseconds",
            ),
            infer_us: model(
                "nv_inference_compute_infer_duration_us",
                "Cumulative compute inference duration in microseconds",
            ),
            output_us: model(
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
            tenant_compute_us: counter(
                &registry,
                "kiln_tenant_compute_duration_us",
                "Cumulative compute time charged to the tenant in microseconds (each request's part of its batch)",
                &["tenant", "model"],
            ),
            refusals: counter(
                &registry,
                "kiln_tenant_refusals_total",
                "Requests refused before they ran, by tenant and reason (unauthenticated, permission_denied, or the quota's name)",
                &["tenant", "reason"],
            ),
            registry,
        }
    }

    /// The observer of the models of `owner`'s repository ("": the main one).
    pub fn owned_by(self: &Arc<Self>, owner: &str) -> Arc<dyn kiln_repository::RegistryObserver> {
        Arc::new(OwnedBy {
            metrics: self.clone(),
            owner: owner.to_string(),
        })
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

impl kiln_tenancy::RefusalObserver for Metrics {
    fn refused(&self, tenant: Option<&str>, reason: &'static str) {
        self.refusals
            .with_label_values(&[tenant.unwrap_or(""), reason])
            .inc();
    }
}

/// The metrics of one repository's models.
struct OwnedBy {
    metrics: Arc<Metrics>,
    owner: String,
}

impl kiln_repository::RegistryObserver for OwnedBy {
    fn version_stats(&self, model: &str, version: i64) -> Box<dyn StatsObserver> {
        let m = &self.metrics;
        let v = version.to_string();
        let l = [model, v.as_str(), self.owner.as_str()];
        let metrics = ModelMetrics {
            metrics: m.clone(),
            model: model.to_string(),
            version: v.clone(),
            by_tenant: RwLock::default(),
            inference_count: m.inference_count.with_label_values(&l),
            exec_count: m.exec_count.with_label_values(&l),
            pending: m.pending.with_label_values(&l),
            executing: m.executing.with_label_values(&l),
        };
        // Every loaded model is listed from the start, at 0, as Triton does:
        // with the series of the callers most likely to use it (the owner's;
        // callers without a tenant for the main repository's).
        metrics.of(Some(&self.owner));
        Box::new(metrics)
    }

    fn set_ready(&self, model: &str, version: i64, ready: bool) {
        self.metrics
            .ready
            .with_label_values(&[model, &version.to_string(), &self.owner])
            .set(ready as i64);
    }

    fn refused(&self, quota: &'static str) {
        kiln_tenancy::RefusalObserver::refused(&*self.metrics, Some(&self.owner), quota);
    }
}

/// One model version's series: those of the model bound once, those of the
/// requests bound per tenant the first time it asks.
pub struct ModelMetrics {
    metrics: Arc<Metrics>,
    model: String,
    version: String,
    by_tenant: RwLock<HashMap<String, Arc<RequestMetrics>>>,
    inference_count: IntCounter,
    exec_count: IntCounter,
    pending: IntGauge,
    executing: IntGauge,
}

struct RequestMetrics {
    success: IntCounter,
    failure: IntCounter,
    request_us: IntCounter,
    queue_us: IntCounter,
    input_us: IntCounter,
    infer_us: IntCounter,
    output_us: IntCounter,
    compute_us: IntCounter,
}

impl ModelMetrics {
    fn of(&self, tenant: Option<&str>) -> Arc<RequestMetrics> {
        let tenant = tenant.unwrap_or("");
        if let Some(m) = self.by_tenant.read().get(tenant) {
            return m.clone();
        }
        let m = &self.metrics;
        let l = [self.model.as_str(), self.version.as_str(), tenant];
        let bound = Arc::new(RequestMetrics {
            success: m.success.with_label_values(&l),
            failure: m.failure.with_label_values(&l),
            request_us: m.request_us.with_label_values(&l),
            queue_us: m.queue_us.with_label_values(&l),
            input_us: m.input_us.with_label_values(&l),
            infer_us: m.infer_us.with_label_values(&l),
            output_us: m.output_us.with_label_values(&l),
            compute_us: m
                .tenant_compute_us
                .with_label_values(&[tenant, self.model.as_str()]),
        });
        self.by_tenant
            .write()
            .entry(tenant.to_string())
            .or_insert(bound)
            .clone()
    }
}

impl StatsObserver for ModelMetrics {
    fn success(&self, tenant: Option<&str>, t: &RequestTiming) {
        let us = |d: std::time::Duration| d.as_micros() as u64;
        let m = self.of(tenant);
        m.success.inc();
        m.request_us.inc_by(us(t.total));
        m.queue_us.inc_by(us(t.queue));
        m.input_us.inc_by(us(t.exec.input));
        m.infer_us.inc_by(us(t.exec.infer));
        m.output_us.inc_by(us(t.exec.output));
        m.compute_us.inc_by(us(t.compute_share));
    }

    fn failure(&self, tenant: Option<&str>) {
        self.of(tenant).failure.inc();
    }

    fn refused(&self, tenant: Option<&str>, quota: &'static str) {
        kiln_tenancy::RefusalObserver::refused(&*self.metrics, tenant, quota);
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
