//! The per-version request queue, shared fairly between tenants.
//!
//! Each tenant's waiting requests form a *flow* (callers without a tenant
//! share one), and each flow has one FIFO per priority level. Flows take
//! turns by deficit round robin (Shreedhar and Varghese): a flow whose turn
//! comes earns `weight × quantum` items of credit, spends an item of credit
//! per batch item it sends, and keeps its turn while its credit covers the
//! next request; a flow that empties leaves the rotation and loses its
//! credit. Over any busy stretch each backlogged tenant gets batch items in
//! proportion to its weight, whatever its request sizes.
//!
//! The quantum is one item: a tenant that becomes active waits for at most
//! `weight` items of each other busy tenant before its request is taken, so
//! its requests join the very next batch instead of waiting for a flooding
//! tenant's whole batch (a quantum of `max_batch_size` measured 1.8–2.7× the
//! light tenant's p99 alone, BENCHMARKS.md). A request larger than its
//! flow's turn waits a few rotations; each rotation adds credit that is
//! spent later, so the work per item taken stays O(1) amortized. Priority levels order requests within a flow: a
//! tenant's high-priority requests go before its own low-priority ones, and
//! never ahead of another tenant's turn. With one flow (no tenants file) this
//! is exactly one FIFO per priority level.
//!
//! Instances take the next request this order gives; a batching instance
//! then keeps taking while requests are compatible, so one batch may mix
//! tenants while the shares hold.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Whose turn a request waits for: a tenant, or `None` for every caller
/// without one.
pub type FlowKey = Option<Arc<str>>;

/// Where one request goes and what it may cost.
pub struct Placement {
    pub flow: FlowKey,
    /// Index 0 is the highest priority (clamped to the levels there are).
    pub level: usize,
    /// Batch items: what the request spends of its flow's credit.
    pub cost: u64,
    /// The flow's weight (at least 1); the latest request's counts.
    pub weight: u32,
    /// 0: unbounded. Requests of all flows.
    pub max_len: usize,
    /// 0: unbounded. Requests of this flow.
    pub max_flow_len: usize,
}

pub struct Queue<T> {
    state: Mutex<State<T>>,
    arrived: Condvar,
}

struct Flow<T> {
    /// Index 0 is the highest priority; items with their cost.
    levels: Vec<VecDeque<(u64, T)>>,
    len: usize,
    weight: u64,
    credit: u64,
}

struct State<T> {
    flows: HashMap<FlowKey, Flow<T>>,
    /// The flows with requests waiting, in turn order: the front one's turn.
    turns: VecDeque<FlowKey>,
    /// Emptied flows kept for reuse (at most [`SPARE_FLOWS`]): a queue that
    /// empties after every request does not allocate a flow for each.
    spare: Vec<Flow<T>>,
    levels: usize,
    /// Credit a turn earns per unit of weight.
    quantum: u64,
    len: usize,
    closed: bool,
}

const SPARE_FLOWS: usize = 8;

/// Why a push was refused.
pub enum Refused<T> {
    /// The queue holds `max_len` requests.
    Full(T),
    /// The request's flow holds `max_flow_len` requests.
    FlowFull(T),
    Closed(T),
}

impl<T> Queue<T> {
    /// `quantum`: the credit a turn earns per unit of weight; at least the
    /// largest request's cost keeps every turn to O(1).
    pub fn new(levels: usize, quantum: u64) -> Self {
        Self {
            state: Mutex::new(State {
                flows: HashMap::new(),
                turns: VecDeque::new(),
                spare: Vec::new(),
                levels: levels.max(1),
                quantum: quantum.max(1),
                len: 0,
                closed: false,
            }),
            arrived: Condvar::new(),
        }
    }

    pub fn push(&self, item: T, at: Placement) -> Result<(), Refused<T>> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(Refused::Closed(item));
        }
        if at.max_len > 0 && s.len >= at.max_len {
            return Err(Refused::Full(item));
        }
        let levels = s.levels;
        let level = at.level.min(levels - 1);
        let flow = match s.flows.get_mut(&at.flow) {
            Some(flow) => flow,
            None => {
                s.turns.push_back(at.flow.clone());
                let flow = s.spare.pop().unwrap_or_else(|| Flow {
                    levels: (0..levels).map(|_| VecDeque::new()).collect(),
                    len: 0,
                    weight: 1,
                    credit: 0,
                });
                s.flows.entry(at.flow).or_insert(flow)
            }
        };
        if at.max_flow_len > 0 && flow.len >= at.max_flow_len {
            return Err(Refused::FlowFull(item));
        }
        flow.weight = u64::from(at.weight.max(1));
        flow.levels[level].push_back((at.cost, item));
        flow.len += 1;
        s.len += 1;
        drop(s);
        self.arrived.notify_one();
        Ok(())
    }

    /// Requests waiting.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.state.lock().len
    }

    /// No more pushes; waiting takers drain what is left, then get `None`.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.arrived.notify_all();
    }

    /// The next request in turn order, if `accept` takes it.
    fn take(s: &mut State<T>, accept: &dyn Fn(&T) -> bool) -> Option<T> {
        loop {
            let key = s.turns.front()?;
            let flow = s.flows.get_mut(key).expect("a flow in turn has requests");
            let level = flow
                .levels
                .iter()
                .position(|l| !l.is_empty())
                .expect("a flow in turn has requests");
            let (cost, head) = flow.levels[level].front().expect("non-empty level");
            let cost = *cost;
            if flow.credit < cost {
                // This turn is spent: the next flow's, and this one's credit
                // for when its turn comes again.
                flow.credit += flow.weight * s.quantum;
                s.turns.rotate_left(1);
                continue;
            }
            if !accept(head) {
                return None;
            }
            flow.credit -= cost;
            flow.len -= 1;
            s.len -= 1;
            let (_, item) = flow.levels[level].pop_front().expect("non-empty level");
            if flow.len == 0 {
                let key = s.turns.pop_front().expect("the front flow");
                if let Some(mut emptied) = s.flows.remove(&key) {
                    if s.spare.len() < SPARE_FLOWS {
                        emptied.credit = 0;
                        s.spare.push(emptied);
                    }
                }
            }
            return Some(item);
        }
    }

    /// The next request; blocks while the queue is empty and open.
    pub fn pop(&self) -> Option<T> {
        let mut s = self.state.lock();
        loop {
            if let Some(item) = Self::take(&mut s, &|_| true) {
                return Some(item);
            }
            if s.closed {
                return None;
            }
            self.arrived.wait(&mut s);
        }
    }

    /// The next request if `accept` takes it, waiting until `deadline` for
    /// one to arrive, or until `stop_waiting` holds (checked at the start
    /// and at each [`Self::wake`]). Stops at the first request `accept`
    /// refuses: requests are never overtaken, so arrival order holds within
    /// a flow's priority level and turns are never skipped.
    pub fn pop_until(
        &self,
        deadline: Instant,
        accept: &dyn Fn(&T) -> bool,
        stop_waiting: &dyn Fn() -> bool,
    ) -> Option<T> {
        let mut s = self.state.lock();
        loop {
            if s.len > 0 || s.closed || stop_waiting() {
                return Self::take(&mut s, accept);
            }
            if self.arrived.wait_until(&mut s, deadline).timed_out() {
                return Self::take(&mut s, accept);
            }
        }
    }

    /// Wakes the callers waiting in [`Self::pop_until`] to check their
    /// `stop_waiting` again. Taken under the lock, so a caller between its
    /// check and its wait cannot miss it.
    pub fn wake(&self) {
        let _s = self.state.lock();
        self.arrived.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(flow: &str, level: usize) -> Placement {
        Placement {
            flow: (!flow.is_empty()).then(|| flow.into()),
            level,
            cost: 1,
            weight: 1,
            max_len: 0,
            max_flow_len: 0,
        }
    }

    fn drain<T>(q: &Queue<T>) -> Vec<T> {
        std::iter::from_fn(|| q.pop_until(Instant::now(), &|_| true, &|| false)).collect()
    }

    #[test]
    fn higher_priority_first_fifo_within_a_level() {
        let q = Queue::new(2, 1);
        assert!(q.push(1, at("", 1)).is_ok());
        assert!(q.push(2, at("", 0)).is_ok());
        assert!(q.push(3, at("", 1)).is_ok());
        assert_eq!([q.pop(), q.pop(), q.pop()], [Some(2), Some(1), Some(3)]);
    }

    #[test]
    fn full_and_closed_queues_refuse() {
        let q = Queue::new(1, 1);
        let bounded = || Placement {
            max_len: 1,
            ..at("", 0)
        };
        assert!(q.push(1, bounded()).is_ok());
        assert!(matches!(q.push(2, bounded()), Err(Refused::Full(2))));
        q.close();
        assert!(matches!(q.push(3, at("", 0)), Err(Refused::Closed(3))));
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_flow_over_its_bound_is_refused_and_others_are_not() {
        let q = Queue::new(1, 1);
        let capped = |flow| Placement {
            max_flow_len: 2,
            ..at(flow, 0)
        };
        assert!(q.push(1, capped("a")).is_ok());
        assert!(q.push(2, capped("a")).is_ok());
        assert!(matches!(q.push(3, capped("a")), Err(Refused::FlowFull(3))));
        assert!(q.push(4, capped("b")).is_ok());
        assert_eq!(q.pop(), Some(1));
        assert!(
            q.push(5, capped("a")).is_ok(),
            "room again once one is taken"
        );
    }

    #[test]
    fn pop_until_waits_and_never_overtakes() {
        let q = Queue::new(1, 1);
        let start = Instant::now();
        assert_eq!(
            q.pop_until(start + Duration::from_millis(20), &|_| true, &|| false),
            None::<i32>
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        q.push(5, at("", 0)).ok();
        q.push(1, at("", 0)).ok();
        assert_eq!(q.pop_until(Instant::now(), &|x| *x < 3, &|| false), None);
        assert_eq!(q.waiting(), 2);
    }

    #[test]
    fn equal_weights_alternate_whatever_arrived_first() {
        let q = Queue::new(1, 1);
        for i in 0..6 {
            q.push(("a", i), at("a", 0)).ok();
        }
        for i in 0..3 {
            q.push(("b", i), at("b", 0)).ok();
        }
        let order: Vec<&str> = drain(&q).into_iter().map(|(f, _)| f).collect();
        assert_eq!(order, ["a", "b", "a", "b", "a", "b", "a", "a", "a"]);
    }

    #[test]
    fn weights_set_the_split_in_items_not_requests() {
        // a: weight 3, requests of 1 item; b: weight 1, requests of 2 items.
        // quantum 2: a turn of a earns 6 items, b's earns 2.
        let q = Queue::new(1, 2);
        for i in 0..300 {
            let a = Placement {
                weight: 3,
                ..at("a", 0)
            };
            q.push(("a", 1, i), a).ok();
            if i < 100 {
                let b = Placement {
                    cost: 2,
                    ..at("b", 0)
                };
                q.push(("b", 2, i), b).ok();
            }
        }
        // While both are backlogged (the first 200 items), a gets 3/4.
        let mut items = [0u64; 2];
        for (flow, cost, _) in drain(&q) {
            if items[0] + items[1] >= 200 {
                break;
            }
            items[usize::from(flow == "b")] += cost;
        }
        assert_eq!(items, [150, 50]);
    }

    #[test]
    fn priority_orders_within_a_tenant_not_across() {
        let q = Queue::new(2, 1);
        q.push("a-low-1", at("a", 1)).ok();
        q.push("a-low-2", at("a", 1)).ok();
        q.push("b-high", at("b", 0)).ok();
        q.push("a-high", at("a", 0)).ok();
        assert_eq!(drain(&q), ["a-high", "b-high", "a-low-1", "a-low-2"]);
    }

    #[test]
    fn an_emptied_flow_loses_its_credit_and_rejoins_at_the_back() {
        let q = Queue::new(1, 1);
        let heavy = |flow| Placement {
            weight: 5,
            ..at(flow, 0)
        };
        q.push("a1", heavy("a")).ok();
        q.push("b1", at("b", 0)).ok();
        assert_eq!(q.pop(), Some("a1")); // a had credit 5, spent 1, emptied
        q.push("a2", heavy("a")).ok();
        q.push("b2", at("b", 0)).ok();
        assert_eq!(drain(&q), ["b1", "b2", "a2"]);
    }
}
