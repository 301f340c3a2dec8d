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
        Self {
            identity,
            protocol,
            received_at: Instant::now(),
            share: Share::default(),
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
