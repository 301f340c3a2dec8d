//! Tenants: the callers one kiln serves, declared by the operator in the
//! tenants file (`kiln serve --tenants FILE`, TOML). Each tenant has a name,
//! credentials (API keys, stored as SHA-256 digests only), scopes (what it
//! may do), a namespace (its own repository, shared models) and quotas. The file is re-read while kiln serves: keys rotate and
//! tenants come and go without a restart; a file that fails to parse or
//! validate leaves the previous one in force.
//!
//! This crate decides *who* a credential belongs to and *what* a tenant may
//! do; admission (kiln-kserve) asks it once per request and records the
//! answer in the request's context. It knows no transport types.
#![forbid(unsafe_code)]

mod bounded;
mod file;
mod jwt;
mod keys;
mod meter;
mod scope;
mod watch;

pub use file::{Quotas, Rate, Tenant, Tenants, TenantsError};
pub use jwt::{looks_like_jwt, JwtVerifier};
pub use keys::KeyDigest;
pub use meter::{InFlight, Meters, QuotaRefusal};
pub use scope::{Scope, Scopes};
pub use watch::{Reload, TenantsWatch};

/// Told of every request refused before it ran, with the tenant (`None`:
/// no credential named one) and the reason: `unauthenticated`,
/// `permission_denied`, or the quota's name as the tenants file writes it
/// (kiln's Prometheus metrics implement it).
pub trait RefusalObserver: Send + Sync + 'static {
    fn refused(&self, tenant: Option<&str>, reason: &'static str);
}

/// No observer.
impl RefusalObserver for () {
    fn refused(&self, _: Option<&str>, _: &'static str) {}
}
