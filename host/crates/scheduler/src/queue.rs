//! The per-version request queue: one FIFO per priority level behind a mutex
//! and a condition variable. Instances take the oldest request of the highest
//! priority; a batching instance then keeps taking compatible requests until
//! its batch is full or the queue delay is spent.

use std::collections::VecDeque;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

pub struct Queue<T> {
    state: Mutex<State<T>>,
    arrived: Condvar,
}

struct State<T> {
    /// Index 0 is the highest priority.
    levels: Vec<VecDeque<T>>,
    len: usize,
    closed: bool,
}

/// Why a push was refused.
pub enum Refused<T> {
    Full(T),
    Closed(T),
}

impl<T> Queue<T> {
    pub fn new(levels: usize) -> Self {
        Self {
            state: Mutex::new(State {
                levels: (0..levels.max(1)).map(|_| VecDeque::new()).collect(),
                len: 0,
                closed: false,
            }),
            arrived: Condvar::new(),
        }
    }

    /// Appends to `level` (clamped), refusing when `max_len` (0 = unbounded)
    /// requests are already waiting.
    pub fn push(&self, item: T, level: usize, max_len: usize) -> Result<(), Refused<T>> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(Refused::Closed(item));
        }
        if max_len > 0 && s.len >= max_len {
            return Err(Refused::Full(item));
        }
        let level = level.min(s.levels.len() - 1);
        s.levels[level].push_back(item);
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

    fn pop_front(s: &mut State<T>, accept: &dyn Fn(&T) -> bool) -> Option<T> {
        let level = s.levels.iter().position(|l| !l.is_empty())?;
        if !accept(s.levels[level].front().expect("non-empty level")) {
            return None;
        }
        s.len -= 1;
        s.levels[level].pop_front()
    }

    /// The next request; blocks while the queue is empty and open.
    pub fn pop(&self) -> Option<T> {
        let mut s = self.state.lock();
        loop {
            if let Some(item) = Self::pop_front(&mut s, &|_| true) {
                return Some(item);
            }
            if s.closed {
                return None;
            }
            self.arrived.wait(&mut s);
        }
    }

    /// The next request if `accept` takes it, waiting until `deadline` for
    /// one to arrive. Stops at the first request `accept` refuses: requests
    /// are never overtaken, so arrival order holds within a priority level.
    pub fn pop_until(&self, deadline: Instant, accept: &dyn Fn(&T) -> bool) -> Option<T> {
        let mut s = self.state.lock();
        loop {
            if s.len > 0 {
                return Self::pop_front(&mut s, accept);
            }
            if s.closed || self.arrived.wait_until(&mut s, deadline).timed_out() {
                return Self::pop_front(&mut s, accept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn higher_priority_first_fifo_within_a_level() {
        let q = Queue::new(2);
        assert!(q.push(1, 1, 0).is_ok());
        assert!(q.push(2, 0, 0).is_ok());
        assert!(q.push(3, 1, 0).is_ok());
        assert_eq!([q.pop(), q.pop(), q.pop()], [Some(2), Some(1), Some(3)]);
    }

    #[test]
    fn full_and_closed_queues_refuse() {
        let q = Queue::new(1);
        assert!(q.push(1, 0, 1).is_ok());
        assert!(matches!(q.push(2, 0, 1), Err(Refused::Full(2))));
        q.close();
        assert!(matches!(q.push(3, 0, 0), Err(Refused::Closed(3))));
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn pop_until_waits_and_never_overtakes() {
        let q = Queue::new(1);
        let start = Instant::now();
        assert_eq!(
            q.pop_until(start + Duration::from_millis(20), &|_| true),
            None::<i32>
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        q.push(5, 0, 0).ok();
        q.push(1, 0, 0).ok();
        assert_eq!(q.pop_until(Instant::now(), &|x| *x < 3), None);
        assert_eq!(q.waiting(), 2);
    }
}
