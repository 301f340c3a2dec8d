//! The request context: who is calling and how, made once per request by
//! admission (kiln-kserve's `admission`) and carried down to the
//! scheduler's job.

use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// No credentials: no tenants file is in force, or the route is open
    /// (health).
    Anonymous,
    /// Named by the `kiln-tenant` header while no tenants file is in force:
    /// unverified, so it is recorded in logs and keeps callers' shared-memory
    /// regions apart, and decides nothing else. With a tenants file the
    /// header is ignored.
    Claimed(String),
    /// A tenant of the tenants file, authenticated by its credentials.
    Tenant(Arc<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
    /// Requests the server makes itself (model warm-up).
    Internal,
}

#[derive(Debug, Clone)]
pub struct RequestContext {
    pub identity: Identity,
    pub protocol: Protocol,
    /// When the protocol layer received the request; the base of the
    /// request-duration statistics.
    pub received_at: Instant,
    /// The caller's claim on a model's queue (its tenant's weight and
    /// queued-requests quota); the default for callers without a tenant.
    pub share: Share,
    /// When admission let the request through (identity, scopes, quotas
    /// checked); `received_at` until then. The end of a trace's `admission`
    /// span.
    pub admitted_at: Instant,
    /// The caller's span, from a W3C `traceparent` header (HTTP) or metadata
    /// entry (gRPC): a traced request's spans join the caller's trace.
    pub trace_parent: Option<RemoteSpan>,
}

/// A span of another process, named by a W3C `traceparent` (and
/// `tracestate`): the parent of a request's spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpan {
    /// Never zero.
    pub trace_id: u128,
    /// Never zero.
    pub span_id: u64,
    /// The caller's sampling decision (the `sampled` flag).
    pub sampled: bool,
    /// The `tracestate` header, validated; empty when none.
    pub trace_state: String,
}

/// What a model's queue needs to know of the caller's tenant to share the
/// model fairly: requests are taken from each tenant's requests in
/// proportion to `weight` (deficit round robin, kiln-scheduler's `queue`),
/// and at most `max_queued_per_model` of them wait in one model's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// At least 1.
    pub weight: u32,
    /// `None`: only the model's own `max_queue_size` applies.
    pub max_queued_per_model: Option<u32>,
}

impl Default for Share {
    fn default() -> Self {
        Self {
            weight: 1,
            max_queued_per_model: None,
        }
    }
}

/// Header (HTTP) and metadata key (gRPC) a caller may name itself with when
/// no tenants file is in force ([`Identity::Claimed`]).
pub const TENANT_HEADER: &str = "kiln-tenant";

impl RequestContext {
    pub fn new(protocol: Protocol, identity: Identity) -> Self {
        let now = Instant::now();
        Self {
            identity,
            protocol,
            received_at: now,
            share: Share::default(),
            admitted_at: now,
            trace_parent: None,
        }
    }

    /// The tenant the request's requests count against when a queue shares
    /// a model between tenants; `None` for every caller without one (they
    /// share one turn).
    pub fn tenant(&self) -> Option<&Arc<str>> {
        match &self.identity {
            Identity::Tenant(name) => Some(name),
            _ => None,
        }
    }

    pub fn internal() -> Self {
        Self::new(Protocol::Internal, Identity::Anonymous)
    }
}
