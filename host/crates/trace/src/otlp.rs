//! OpenTelemetry export over OTLP/HTTP (protobuf), as Triton exports. A
//! finished request becomes its spans at once, with the times it recorded:
//!
//! ```text
//! InferRequest                      (server span; child of the caller's span)
//! ├── admission                     received → admitted
//! └── <model>                       REQUEST_START → REQUEST_END, Triton's events
//!     ├── queue                     QUEUE_START → COMPUTE_START
//!     ├── compute                   COMPUTE_START → COMPUTE_END
//!     │   ├── compute_input
//!     │   ├── compute_infer
//!     │   └── compute_output
//!     └── <step model> ...          each ensemble step (a plugin call is a
//!                                   step of backend "wasm"), the same shape
//! ```
//!
//! Spans are built here rather than through `tracing-opentelemetry`: the
//! sampling decision is Triton's (rate, count, per model) and is taken once
//! per request, the phases are measured on the scheduler's threads as
//! `Instant`s anyway, and an unsampled request then costs no span at all.

use std::borrow::Cow;
use std::time::Instant;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

use crate::clock::{new_span_id, Clock};
use crate::config::OtlpConfig;
use crate::file::timestamps;
use crate::record::{ModelRecord, Shared};

pub(crate) struct OtlpExporter {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl OtlpExporter {
    pub fn start(config: &OtlpConfig) -> Result<Self, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(config.url.clone())
            .build()
            .map_err(|e| format!("OTLP exporter for {}: {e}", config.url))?;
        // OTEL_BSP_* set the batching unless --trace-config does.
        let mut batch = BatchConfigBuilder::default();
        if let Some(n) = config.max_queue_size {
            batch = batch.with_max_queue_size(n);
        }
        if let Some(d) = config.schedule_delay {
            batch = batch.with_scheduled_delay(d);
        }
        if let Some(n) = config.max_export_batch_size {
            batch = batch.with_max_export_batch_size(n);
        }
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch.build())
            .build();
        // service.name=kiln (or OTEL_SERVICE_NAME), then
        // OTEL_RESOURCE_ATTRIBUTES, then --trace-config
        // opentelemetry,resource=...: later ones win.
        let service = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "kiln".into());
        let resource = Resource::builder_empty()
            .with_service_name(service)
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .with_detector(Box::new(
                opentelemetry_sdk::resource::EnvResourceDetector::new(),
            ))
            .with_attributes(
                config
                    .resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            // The decision was taken already (Triton's rules, per request).
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("kiln");
        Ok(Self { provider, tracer })
    }

    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("OTLP exporter shutdown: {e}");
        }
    }

    pub fn export(&self, clock: &Clock, request: &Shared, records: &[ModelRecord], end: Instant) {
        let trace_id = TraceId::from_bytes(request.trace_id.to_be_bytes());
        let context_of = |span_id: u64, remote: bool, state: TraceState| {
            Context::new().with_remote_span_context(SpanContext::new(
                trace_id,
                SpanId::from_bytes(span_id.to_be_bytes()),
                TraceFlags::SAMPLED,
                remote,
                state,
            ))
        };
        let root_parent = match &request.remote {
            Some(remote) => context_of(
                remote.span_id,
                true,
                remote.trace_state.parse().unwrap_or_default(),
            ),
            None => Context::new(),
        };
        let tenant = request.tenant.as_deref();
        let mut root_attributes = vec![KeyValue::new(
            "kiln.protocol",
            match request.protocol {
                kiln_types::context::Protocol::Grpc => "grpc",
                kiln_types::context::Protocol::Http => "http",
                kiln_types::context::Protocol::Internal => "internal",
            },
        )];
        if let Some(t) = tenant {
            root_attributes.push(KeyValue::new("kiln.tenant", t.to_string()));
        }
        let span = |name: Cow<'static, str>,
                    id: u64,
                    parent: &Context,
                    kind: SpanKind,
                    (start, finish): (Instant, Instant),
                    attributes: Vec<KeyValue>,
                    events: Vec<(&'static str, Instant)>,
                    error: Option<&str>| {
            let mut s = self
                .tracer
                .span_builder(name)
                .with_span_id(SpanId::from_bytes(id.to_be_bytes()))
                .with_trace_id(trace_id)
                .with_kind(kind)
                .with_start_time(clock.system(start))
                .with_attributes(attributes)
                .start_with_context(&self.tracer, parent);
            for (event, at) in events {
                s.add_event_with_timestamp(event, clock.system(at), Vec::new());
            }
            if let Some(message) = error {
                s.set_status(Status::error(message.to_string()));
            }
            s.end_with_timestamp(clock.system(finish));
        };
        let root = request.root_span;
        span(
            "InferRequest".into(),
            root,
            &root_parent,
            SpanKind::Server,
            (request.received_at, end),
            root_attributes,
            Vec::new(),
            None,
        );
        let under_root = context_of(root, false, TraceState::NONE);
        span(
            "admission".into(),
            new_span_id(),
            &under_root,
            SpanKind::Internal,
            (request.received_at, request.admitted_at),
            Vec::new(),
            Vec::new(),
            None,
        );
        for r in records {
            let mut attributes = vec![
                KeyValue::new("triton.model_name", r.model.clone()),
                KeyValue::new(
                    "triton.model_version",
                    r.version.parse::<i64>().unwrap_or(-1),
                ),
                KeyValue::new("triton.trace_id", r.id as i64),
                KeyValue::new("triton.trace_parent_id", r.parent_id.unwrap_or(0) as i64),
                KeyValue::new("kiln.backend", r.backend.clone()),
            ];
            if !r.request_id.is_empty() {
                attributes.push(KeyValue::new("triton.request_id", r.request_id.clone()));
            }
            if let Some(t) = tenant {
                attributes.push(KeyValue::new("kiln.tenant", t.to_string()));
            }
            let events = timestamps(r, request)
                .into_iter()
                .filter(|(name, _)| !matches!(*name, "RECV_START" | "ADMITTED"))
                .collect();
            let parent = context_of(r.parent_span, false, TraceState::NONE);
            span(
                r.model.clone().into(),
                r.span_id,
                &parent,
                SpanKind::Internal,
                (r.request_start, r.request_end),
                attributes,
                events,
                r.error.as_deref(),
            );
            let under_model = context_of(r.span_id, false, TraceState::NONE);
            let child = |name: &'static str, parent: &Context, times: (Instant, Instant)| {
                let id = new_span_id();
                span(
                    name.into(),
                    id,
                    parent,
                    SpanKind::Internal,
                    times,
                    Vec::new(),
                    Vec::new(),
                    None,
                );
                id
            };
            if let (Some(queued), Some(c)) = (r.queue_start, r.compute) {
                child("queue", &under_model, (queued, c.start));
            }
            if let Some(c) = r.compute {
                let compute = child("compute", &under_model, (c.start, c.end));
                let under_compute = context_of(compute, false, TraceState::NONE);
                child("compute_input", &under_compute, (c.start, c.input_end));
                child(
                    "compute_infer",
                    &under_compute,
                    (c.input_end, c.output_start),
                );
                child("compute_output", &under_compute, (c.output_start, c.end));
            }
        }
    }
}
