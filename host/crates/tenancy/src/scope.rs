//! Scopes: the groups of the API a tenant may use. Health stays open to
//! everyone; every other route needs the scope its group maps to (the map
//! from routes to scopes is the protocol's, in kiln-kserve's admission).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Inference (ModelInfer, ModelStreamInfer, `/infer`).
    Infer,
    /// Server and model metadata, model configs, model readiness, the
    /// repository index.
    Metadata,
    /// Loading and unloading models.
    ModelControl,
    /// Model statistics.
    Statistics,
    /// Registering, querying and unregistering shared-memory regions.
    SharedMemory,
    /// Server-wide settings no tenant owns (trace and log settings): kiln's
    /// addition, for the operator's own tenant.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::Infer,
        Scope::Metadata,
        Scope::ModelControl,
        Scope::Statistics,
        Scope::SharedMemory,
        Scope::Admin,
    ];

    /// The name used in the tenants file and in refusals.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Infer => "infer",
            Scope::Metadata => "metadata",
            Scope::ModelControl => "model-control",
            Scope::Statistics => "statistics",
            Scope::SharedMemory => "shared-memory",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(name: &str) -> Option<Scope> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of scopes.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = Scopes::default();
        for s in iter {
            set.insert(s);
        }
        set
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(Scope::ALL.into_iter().filter(|s| self.contains(*s)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scope_parses_back_from_its_name_and_sets_hold_them() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.name()), Some(s));
        }
        assert_eq!(Scope::parse("Infer"), None);
        let set: Scopes = [Scope::Infer, Scope::Admin].into_iter().collect();
        assert!(set.contains(Scope::Infer) && set.contains(Scope::Admin));
        assert!(!set.contains(Scope::Metadata));
        assert!(Scopes::default().is_empty());
    }
}
