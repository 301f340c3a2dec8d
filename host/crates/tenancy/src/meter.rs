//! Quota meters: what each tenant is spending now, checked at admission.
//! A request is admitted when the tenant's token bucket has a token and
//! its requests in flight are under `max_in_flight`; the [`InFlight`] guard
//! it gets counts it until the answer is done.
//!
//! Meters live across reloads of the tenants file while a tenant's quotas
//! are unchanged (a reload does not refill anyone's bucket); a changed
//! quota starts a fresh meter, and tenants the file drops are forgotten
//! ([`Meters::retain`]), so there is one meter per configured tenant.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::RwLock;

use crate::file::{Quotas, Rate, Tenant, Tenants};

/// Which quota refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaRefusal {
    /// Out of tokens; one is back after `retry_after`.
    Rate {
        message: String,
        retry_after: Duration,
    },
    /// As many requests in flight as `max_in_flight` allows.
    InFlight { message: String },
}

impl QuotaRefusal {
    /// The quota's name, as the tenants file writes it.
    pub fn quota(&self) -> &'static str {
        match self {
            QuotaRefusal::Rate { .. } => "requests_per_second",
            QuotaRefusal::InFlight { .. } => "max_in_flight",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            QuotaRefusal::Rate { message, .. } | QuotaRefusal::InFlight { message } => message,
        }
    }

    /// When to try again, where that is known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            QuotaRefusal::Rate { retry_after, .. } => Some(*retry_after),
            QuotaRefusal::InFlight { .. } => None,
        }
    }
}

/// The quotas admission meters (rate and in-flight); a change to any other
/// quota leaves a tenant's bucket and count as they are.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Metered {
    rate: Option<Rate>,
    max_in_flight: Option<NonZeroU32>,
}

impl Metered {
    fn of(quotas: &Quotas) -> Self {
        Self {
            rate: quotas.rate,
            max_in_flight: quotas.max_in_flight,
        }
    }
}

struct Meter {
    quotas: Metered,
    bucket: Option<DefaultDirectRateLimiter>,
    in_flight: AtomicU32,
}

/// One admitted request of a tenant, counted in flight until dropped.
pub struct InFlight(Arc<Meter>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
pub struct Meters(RwLock<HashMap<Arc<str>, Arc<Meter>>>);

impl Meters {
    fn meter(&self, tenant: &Tenant) -> Arc<Meter> {
        let quotas = Metered::of(&tenant.quotas);
        if let Some(m) = self.0.read().get(&tenant.name) {
            if m.quotas == quotas {
                return m.clone();
            }
        }
        let mut meters = self.0.write();
        let m = meters
            .entry(tenant.name.clone())
            .or_insert_with(|| Arc::new(Meter::new(quotas)));
        if m.quotas != quotas {
            *m = Arc::new(Meter::new(quotas));
        }
        m.clone()
    }

    /// Takes a token and an in-flight slot for one request of `tenant`.
    pub fn admit(&self, tenant: &Tenant) -> Result<InFlight, QuotaRefusal> {
        let meter = self.meter(tenant);
        if let Some(bucket) = &meter.bucket {
            if let Err(not_until) = bucket.check() {
                let retry_after = not_until.wait_time_from(DefaultClock::default().now());
                let rate = meter.quotas.rate.expect("a bucket has a rate");
                return Err(QuotaRefusal::Rate {
                    message: format!(
                        "tenant '{}' is over its quota requests_per_second = {} (burst {})",
                        tenant.name, rate.per_second, rate.burst
                    ),
                    retry_after,
                });
            }
        }
        let before = meter.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(meter); // gives the slot back if refused below
        if let Some(max) = guard.0.quotas.max_in_flight {
            if before >= max.get() {
                return Err(QuotaRefusal::InFlight {
                    message: format!(
                        "tenant '{}' is over its quota max_in_flight = {max}",
                        tenant.name
                    ),
                });
            }
        }
        Ok(guard)
    }

    /// Forgets the meters of tenants `tenants` no longer has.
    pub fn retain(&self, tenants: &Tenants) {
        self.0
            .write()
            .retain(|name, _| tenants.iter().any(|t| &t.name == name));
    }

    pub fn len(&self) -> usize {
        self.0.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Meter {
    fn new(quotas: Metered) -> Self {
        Self {
            bucket: quotas.rate.map(|rate| {
                RateLimiter::direct(Quota::per_second(rate.per_second).allow_burst(rate.burst))
            }),
            quotas,
            in_flight: AtomicU32::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const ALPHA: &str = "sha256:8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8";

    fn tenants(quotas: &str) -> Tenants {
        Tenants::parse(
            Path::new("tenants.toml"),
            &format!("[[tenant]]\nname = \"a\"\napi_keys = [\"{ALPHA}\"]\nscopes = [\"infer\"]\n[tenant.quotas]\n{quotas}"),
        )
        .unwrap()
    }

    #[test]
    fn the_bucket_allows_its_burst_then_says_when_to_come_back() {
        let t = tenants("requests_per_second = 1\nburst = 3\n");
        let a = t.by_api_key("alpha").unwrap();
        let meters = Meters::default();
        for _ in 0..3 {
            drop(meters.admit(a).unwrap());
        }
        let refusal = meters.admit(a).err().unwrap();
        assert!(
            refusal
                .message()
                .contains("requests_per_second = 1 (burst 3)"),
            "{refusal:?}"
        );
        let wait = refusal.retry_after().unwrap();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // A reload with the same quotas keeps the (empty) bucket.
        let again = tenants("requests_per_second = 1\nburst = 3\n");
        assert!(meters.admit(again.by_api_key("alpha").unwrap()).is_err());
        // A changed quota is a fresh meter.
        let changed = tenants("requests_per_second = 2\n");
        assert!(meters.admit(changed.by_api_key("alpha").unwrap()).is_ok());
        meters.retain(&Tenants::parse(Path::new("t.toml"), "").unwrap());
        assert!(meters.is_empty());
    }

    #[test]
    fn in_flight_slots_come_back_when_requests_finish() {
        let t = tenants("max_in_flight = 2\n");
        let a = t.by_api_key("alpha").unwrap();
        let meters = Meters::default();
        let first = meters.admit(a).unwrap();
        let _second = meters.admit(a).unwrap();
        let refusal = meters.admit(a).err().unwrap();
        assert_eq!(refusal.retry_after(), None);
        assert!(
            refusal.message().contains("max_in_flight = 2"),
            "{refusal:?}"
        );
        drop(first);
        assert!(meters.admit(a).is_ok());
    }
}
