//! The request context: who is calling and how, made once per request by
//! admission (kiln's `protocol::admission`) and carried down to the
//! scheduler's job. Today a caller is anonymous or names itself with the
//! `kiln-tenant` header (recorded, not trusted for decisions); tenancy fills
//! `Identity` from verified credentials at that same point.

use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// No credentials were presented (the only kind until auth lands).
    Anonymous,
    /// A caller named by a trusted header (`kiln-tenant`), reserved for the
    /// tenancy work; recorded in logs, not yet used for decisions.
    Tenant(String),
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

/// Header (HTTP) and metadata key (gRPC) naming the caller's tenant.
pub const TENANT_HEADER: &str = "kiln-tenant";

impl RequestContext {
    pub fn new(protocol: Protocol, tenant: Option<&str>) -> Self {
        let identity = match tenant {
            Some(t) if !t.is_empty() => Identity::Tenant(t.to_string()),
            _ => Identity::Anonymous,
        };
        Self {
            identity,
            protocol,
            received_at: Instant::now(),
        }
    }

    pub fn internal() -> Self {
        Self::new(Protocol::Internal, None)
    }
}
