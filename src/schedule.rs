//! The retry loop both waiters share: keys (peers) come due at given
//! instants, at most `limit` attempts run at once, and a progress tick fires
//! every period. Only the attempts in flight exist as tasks; waiting keys
//! are heap entries. The ping gate drives it for probes, the barrier for
//! dials.
//!
//! [`Queue`] is the pure half (no tasks, no clock: instants are passed
//! in); [`Scheduler`] adds the tasks and the tick.
//!
//! A key is never run twice at once: scheduling a key that is running
//! queues it for when the running attempt has finished. Scheduling a key
//! that is already queued keeps the earlier instant.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at, sleep_until};

/// What [`Scheduler::wait`] woke up for.
#[derive(Debug)]
pub enum Wake<K, T> {
    /// An attempt finished.
    Done {
        key: K,
        /// When it was started.
        started: Instant,
        output: T,
    },
    /// A key came due: call [`Scheduler::next_due`].
    Due,
    /// The progress period passed.
    Tick,
}

/// The pure half: which keys are due when, and which are running. The
/// barrier's core drives one directly (it runs no tasks itself); the
/// [`Scheduler`] wraps one with the tasks and the progress tick.
#[derive(Debug)]
pub struct Queue<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    /// The instant each queued key is due; heap entries that disagree are
    /// stale and skipped.
    queued: HashMap<K, Instant>,
    running: HashSet<K>,
    limit: usize,
}

impl<K> Queue<K>
where
    K: Copy + Eq + Hash + Ord,
{
    /// At most `limit` keys running at once (at least one).
    pub fn new(limit: usize) -> Self {
        Queue {
            heap: BinaryHeap::new(),
            queued: HashMap::new(),
            running: HashSet::new(),
            limit: limit.max(1),
        }
    }

    /// Queues `key` for `at` (keeping an earlier instant already queued).
    pub fn schedule(&mut self, key: K, at: Instant) {
        match self.queued.get(&key) {
            Some(&queued) if queued <= at => {}
            _ => {
                self.queued.insert(key, at);
                self.heap.push(Reverse((at, key)));
            }
        }
    }

    /// Forgets a queued `key` (an attempt already running goes on).
    pub fn cancel(&mut self, key: K) {
        self.queued.remove(&key);
    }

    pub fn is_running(&self, key: K) -> bool {
        self.running.contains(&key)
    }

    pub fn is_queued(&self, key: K) -> bool {
        self.queued.contains_key(&key)
    }

    /// Queued or running.
    pub fn is_pending(&self, key: K) -> bool {
        self.is_running(key) || self.is_queued(key)
    }

    /// Takes the next key due at `now`, if a slot is free, and counts it
    /// as running until [`Queue::finished`].
    pub fn next_due(&mut self, now: Instant) -> Option<K> {
        if self.running.len() >= self.limit {
            return None;
        }
        let mut parked = Vec::new();
        let mut found = None;
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.queued.get(&key) != Some(&at) {
                continue; // stale entry
            }
            if self.running.contains(&key) {
                parked.push(Reverse((at, key)));
                continue;
            }
            self.queued.remove(&key);
            found = Some(key);
            break;
        }
        self.heap.extend(parked);
        if let Some(key) = found {
            self.running.insert(key);
        }
        found
    }

    /// The attempt for `key` ended: its slot is free.
    pub fn finished(&mut self, key: K) {
        self.running.remove(&key);
    }

    /// The earliest instant a queued key that may start comes due; `None`
    /// when nothing is queued or every slot is taken.
    pub fn next_instant(&mut self) -> Option<Instant> {
        if self.running.len() >= self.limit {
            return None;
        }
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if self.queued.get(&key) == Some(&at) {
                // A running key's entry wakes nobody: its attempt's end does.
                return if self.running.contains(&key) {
                    self.heap
                        .iter()
                        .filter(|Reverse((at, k))| {
                            self.queued.get(k) == Some(at) && !self.running.contains(k)
                        })
                        .map(|Reverse((at, _))| *at)
                        .min()
                } else {
                    Some(at)
                };
            }
            self.heap.pop();
        }
        None
    }
}

/// A [`Queue`] whose attempts run as tasks, with a progress tick.
pub struct Scheduler<K, T> {
    queue: Queue<K>,
    inflight: JoinSet<(K, Instant, T)>,
    progress: Interval,
}

impl<K, T> Scheduler<K, T>
where
    K: Copy + Eq + Hash + Ord + Send + 'static,
    T: Send + 'static,
{
    /// `limit` attempts at once (at least one); the first progress tick
    /// fires at `start + period`.
    pub fn new(limit: usize, start: Instant, period: Duration) -> Self {
        let mut progress = interval_at(start + period, period);
        progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Scheduler {
            queue: Queue::new(limit),
            inflight: JoinSet::new(),
            progress,
        }
    }

    /// Queues `key` for `at` (keeping an earlier instant already queued).
    pub fn schedule(&mut self, key: K, at: Instant) {
        self.queue.schedule(key, at);
    }

    #[cfg(test)]
    pub fn cancel(&mut self, key: K) {
        self.queue.cancel(key);
    }

    #[cfg(test)]
    pub fn is_running(&self, key: K) -> bool {
        self.queue.is_running(key)
    }

    #[cfg(test)]
    pub fn is_queued(&self, key: K) -> bool {
        self.queue.is_queued(key)
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Takes the next key due at `now`, if an attempt may start; start it
    /// with [`Scheduler::start`].
    pub fn next_due(&mut self, now: Instant) -> Option<K> {
        self.queue.next_due(now)
    }

    /// Runs the attempt for `key` (taken from [`Scheduler::next_due`]),
    /// started at `started`.
    pub fn start<F>(&mut self, key: K, started: Instant, attempt: F)
    where
        F: Future<Output = T> + Send + 'static,
    {
        self.inflight
            .spawn(async move { (key, started, attempt.await) });
    }

    /// Waits for an attempt to finish, a key to come due, or the progress
    /// tick. Cancel-safe: nothing is lost when the future is dropped.
    pub async fn wait(&mut self) -> Wake<K, T> {
        let next = self.queue.next_instant();
        tokio::select! {
            Some(joined) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                let (key, started, output) = joined.expect("attempt tasks do not panic");
                self.queue.finished(key);
                Wake::Done { key, started, output }
            }
            _ = sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => Wake::Due,
            _ = self.progress.tick() => Wake::Tick,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Drives the scheduler until it has run `attempts` attempts; each
    /// sleeps `work` and reports its key. Returns (key, start) pairs.
    async fn drive(
        s: &mut Scheduler<u32, u32>,
        attempts: usize,
        work: Duration,
    ) -> Vec<(u32, Duration)> {
        let t0 = Instant::now();
        let mut log = Vec::new();
        while log.len() < attempts {
            let now = Instant::now();
            while let Some(k) = s.next_due(now) {
                s.start(k, now, async move {
                    tokio::time::sleep(work).await;
                    k
                });
            }
            if let Wake::Done { key, started, .. } = s.wait().await {
                log.push((key, started - t0));
            }
        }
        log
    }

    #[tokio::test(start_paused = true)]
    async fn keys_run_when_due_within_the_limit() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(2, t0, Duration::from_secs(100));
        for k in 0..4 {
            s.schedule(k, t0 + k * 10 * MS);
        }
        let log = drive(&mut s, 4, 25 * MS).await;
        // 0 at 0 and 1 at 10; 2 waits for a slot (0 ends at 25); 3 for the next (1 ends at 35).
        assert_eq!(
            log.iter().map(|(_, at)| *at).collect::<Vec<_>>(),
            [0, 10, 25, 35].map(|m| m * MS)
        );
        assert_eq!(s.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_is_never_run_twice_at_once_and_keeps_its_earliest_instant() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(8, t0, Duration::from_secs(100));
        s.schedule(7, t0 + 50 * MS);
        s.schedule(7, t0 + 10 * MS);
        s.schedule(7, t0 + 90 * MS);
        assert!(s.is_queued(7));
        let now = t0 + 10 * MS;
        tokio::time::sleep_until(now).await;
        let k = s.next_due(now).unwrap();
        s.start(k, now, async { 0 });
        // Queued again while running: it waits for the attempt to end.
        s.schedule(7, now);
        assert_eq!(s.next_due(now), None);
        assert!(s.is_running(7));
        assert!(matches!(s.wait().await, Wake::Done { key: 7, .. }));
        assert_eq!(s.next_due(Instant::now()), Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_keys_do_not_run_and_ticks_come_every_period() {
        let t0 = Instant::now();
        let mut s: Scheduler<u32, ()> = Scheduler::new(1, t0, 100 * MS);
        s.schedule(1, t0 + 30 * MS);
        s.cancel(1);
        assert!(!s.is_queued(1));
        // Nothing is due: the first wake is the tick at 100 ms.
        assert!(matches!(s.wait().await, Wake::Tick));
        assert_eq!(Instant::now() - t0, 100 * MS);
        assert_eq!(s.next_due(Instant::now()), None);
        assert!(matches!(s.wait().await, Wake::Tick));
        assert_eq!(Instant::now() - t0, 200 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_key_wakes_the_waiter() {
        let t0 = Instant::now();
        let mut s: Scheduler<u32, ()> = Scheduler::new(1, t0, Duration::from_secs(10));
        s.schedule(3, t0 + 40 * MS);
        assert!(matches!(s.wait().await, Wake::Due));
        assert_eq!(Instant::now() - t0, 40 * MS);
        assert_eq!(s.next_due(Instant::now()), Some(3));
    }
}
