//! Dynamic batching (config `dynamic_batching`, Triton's semantics): the
//! policy read from the config. Combining requests into one execution and
//! splitting the outputs back is kiln-backend's `batch`.

use std::time::Duration;

use kiln_model_config::proto::{
    model_config::SchedulingChoice, model_queue_policy::TimeoutAction, ModelQueuePolicy,
};
use kiln_model_config::ModelSpec;

/// Queueing rules for one priority level.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelPolicy {
    /// 0: unbounded.
    pub max_queue_size: usize,
    pub default_timeout: Option<Duration>,
    pub allow_timeout_override: bool,
    /// REJECT (true): a request still queued at its timeout fails. DELAY:
    /// it stays queued (kiln serves it when its turn comes).
    pub reject_on_timeout: bool,
}

impl LevelPolicy {
    fn from_proto(p: Option<&ModelQueuePolicy>) -> Self {
        match p {
            None => Self {
                max_queue_size: 0,
                default_timeout: None,
                allow_timeout_override: false,
                reject_on_timeout: true,
            },
            Some(p) => Self {
                max_queue_size: p.max_queue_size as usize,
                default_timeout: (p.default_timeout_microseconds > 0)
                    .then(|| Duration::from_micros(p.default_timeout_microseconds)),
                allow_timeout_override: p.allow_timeout_override,
                reject_on_timeout: p.timeout_action() == TimeoutAction::Reject,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchPolicy {
    /// Whether requests are combined (dynamic_batching set and max_batch_size > 0).
    pub enabled: bool,
    pub max_batch_size: usize,
    /// Ascending.
    pub preferred: Vec<usize>,
    pub max_delay: Duration,
    /// A batch goes out at once with what is queued while an instance of
    /// the model is idle; `max_delay` applies only while every instance is
    /// busy, until one becomes idle ([`ModelSpec::dispatch_when_idle`]).
    pub dispatch_when_idle: bool,
    /// Levels 1..=levels, 1 the highest; requests name theirs with the
    /// `priority` parameter (0 or absent: `default_priority`).
    pub levels: usize,
    pub default_priority: usize,
    /// Index 0 is priority level 1.
    pub level_policy: Vec<LevelPolicy>,
}

impl BatchPolicy {
    pub fn from_spec(spec: &ModelSpec) -> Self {
        let db = match &spec.config.scheduling_choice {
            Some(SchedulingChoice::DynamicBatching(db)) => Some(db),
            _ => None,
        };
        let levels = db.map_or(1, |d| d.priority_levels.max(1) as usize);
        let default_priority =
            db.map_or(1, |d| (d.default_priority_level as usize).clamp(1, levels));
        let default = db.and_then(|d| d.default_queue_policy.as_ref());
        let level_policy = (1..=levels as u64)
            .map(|l| {
                LevelPolicy::from_proto(
                    db.and_then(|d| d.priority_queue_policy.get(&l)).or(default),
                )
            })
            .collect();
        let mut preferred: Vec<usize> = db.map_or_else(Vec::new, |d| {
            d.preferred_batch_size
                .iter()
                .filter(|&&s| s > 0)
                .map(|&s| s as usize)
                .collect()
        });
        preferred.sort_unstable();
        Self {
            enabled: db.is_some() && spec.max_batch_size > 0,
            max_batch_size: spec.max_batch_size.max(1),
            preferred,
            max_delay: Duration::from_micros(db.map_or(0, |d| d.max_queue_delay_microseconds)),
            dispatch_when_idle: spec.dispatch_when_idle(),
            levels,
            default_priority,
            level_policy,
        }
    }

    /// The batch is worth sending now rather than waiting for more.
    pub fn preferred_reached(&self, size: usize) -> bool {
        size >= self.max_batch_size || self.preferred.last().is_some_and(|&p| size >= p)
    }
}
