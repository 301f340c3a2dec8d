//! Warnings a client can cause (refused connections, failed
//! authentication) at most once per second per source: a flood of bad
//! requests must not become a flood of log lines. Each line says how many
//! were left out since the previous one.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Default)]
pub struct RateLimitedLog(Mutex<State>);

#[derive(Default)]
struct State {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// Logs `message` (with `what` as the `source` field) unless a line went
    /// out less than a second ago; then only counts it.
    pub fn warn(&self, what: &str, message: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        let suppressed = {
            let mut state = self.0.lock();
            if state
                .last
                .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
            {
                state.suppressed += 1;
                return;
            }
            state.last = Some(now);
            std::mem::take(&mut state.suppressed)
        };
        tracing::warn!(source = what, suppressed, "{message}");
    }
}
