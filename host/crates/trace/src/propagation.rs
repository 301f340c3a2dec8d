//! W3C trace context from a caller: the `traceparent` and `tracestate`
//! headers (HTTP) or metadata entries (gRPC, the same HTTP/2 headers), read
//! by OpenTelemetry's own propagator. A malformed header is ignored, as the
//! W3C specification asks: the request is served, just not joined to the
//! caller's trace.

use kiln_types::RemoteSpan;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The caller's span named by `headers`, if they name a valid one.
pub fn remote_span(headers: &http::HeaderMap) -> Option<RemoteSpan> {
    // Cheap exit for the common request without a trace context.
    if !headers.contains_key("traceparent") {
        return None;
    }
    let context = TraceContextPropagator::new().extract(&Headers(headers));
    let span = context.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    Some(RemoteSpan {
        trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
        sampled: sc.is_sampled(),
        trace_state: sc.trace_state().header(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn a_valid_traceparent_names_the_callers_span() {
        let r = remote_span(&headers(&[
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("tracestate", "vendor=abc"),
        ]))
        .unwrap();
        assert_eq!(r.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(r.span_id, 0x00f067aa0ba902b7);
        assert!(r.sampled);
        assert_eq!(r.trace_state, "vendor=abc");
    }

    #[test]
    fn malformed_or_missing_context_is_ignored() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(
                remote_span(&headers(&[("traceparent", bad)])),
                None,
                "{bad}"
            );
        }
        assert_eq!(remote_span(&http::HeaderMap::new()), None);
    }
}
