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
        }
    }

    pub fn internal() -> Self {
        Self::new(Protocol::Internal, Identity::Anonymous)
    }
}
