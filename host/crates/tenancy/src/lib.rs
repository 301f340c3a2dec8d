//! Tenants: the callers one kiln serves, declared by the operator in the
//! tenants file (`kiln serve --tenants FILE`, TOML). Each tenant has a name,
//! credentials (API keys, stored as SHA-256 digests only) and scopes (what
//! it may do). The file is re-read while kiln serves: keys rotate and
//! tenants come and go without a restart; a file that fails to parse or
//! validate leaves the previous one in force.
//!
//! This crate decides *who* a credential belongs to and *what* a tenant may
//! do; admission (kiln-kserve) asks it once per request and records the
//! answer in the request's context. It knows no transport types.
#![forbid(unsafe_code)]

mod file;
mod keys;
mod scope;
mod watch;

pub use file::{Tenant, Tenants, TenantsError};
pub use keys::KeyDigest;
pub use scope::{Scope, Scopes};
pub use watch::{Reload, TenantsWatch};
