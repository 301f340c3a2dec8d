//! Wall-clock time for the `Instant`s a request records, which both
//! exporters use (OTLP needs it; Triton's files take it too, so a file's
//! timestamps line up with logs), and the ids spans are named by.

use std::time::{Instant, SystemTime};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    instant: Instant,
    system: SystemTime,
}

impl Clock {
    pub fn now() -> Self {
        Self {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    pub fn system(&self, t: Instant) -> SystemTime {
        match t.checked_duration_since(self.instant) {
            Some(after) => self.system + after,
            None => self.system - self.instant.duration_since(t),
        }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn ns(&self, t: Instant) -> u64 {
        self.system(t)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

/// A random span id (never zero, which W3C reserves for "none").
pub(crate) fn new_span_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

/// A random trace id, never zero.
pub(crate) fn new_trace_id() -> u128 {
    loop {
        let id: u128 = rand::random();
        if id != 0 {
            return id;
        }
    }
}
