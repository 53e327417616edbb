//! Simulation only: per-node clock skew for Raft's timers. madsim has one
//! global clock; this seam gives each simulated node its own monotonic clock
//! that the nemesis can make run fast or slow, or jump forward.
//!
//! A node's local time is piecewise linear in the global (virtual) time:
//! `local = local0 + (global - global0) * rate`, with `rate > 0` so it never
//! goes back. openraft's `Instant` for the simulation ([`SkewedInstant`]) reads
//! it, and sleeps convert local deadlines back to global ones.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::{Duration, Instant as StdInstant};

tokio::task_local! {
    /// The simulated node whose clock the current task reads.
    static NODE_CLOCK: u64;
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    global0: Duration,
    local0: Duration,
    rate: f64,
}

impl Segment {
    const IDENTITY: Segment = Segment { global0: Duration::ZERO, local0: Duration::ZERO, rate: 1.0 };

    fn local(&self, global: Duration) -> Duration {
        self.local0 + global.saturating_sub(self.global0).mul_f64(self.rate)
    }

    fn global(&self, local: Duration) -> Duration {
        self.global0 + local.saturating_sub(self.local0).div_f64(self.rate)
    }
}

// A simulated world runs on one thread, and the harness gives every seed a
// thread of its own: per-thread state keeps concurrent or successive runs
// from seeing each other's clocks.
thread_local! {
    /// Each node's current clock segment.
    static SEGMENTS: RefCell<BTreeMap<u64, Segment>> = const { RefCell::new(BTreeMap::new()) };
    /// Global time zero of this world: its first reading.
    static BASE: Cell<Option<StdInstant>> = const { Cell::new(None) };
}

fn base() -> StdInstant {
    BASE.with(|b| match b.get() {
        Some(base) => base,
        None => {
            let base = StdInstant::now();
            b.set(Some(base));
            base
        }
    })
}

fn global_now() -> Duration {
    StdInstant::now().saturating_duration_since(base())
}

fn segment() -> Segment {
    let Ok(node) = NODE_CLOCK.try_with(|n| *n) else { return Segment::IDENTITY };
    SEGMENTS.with(|s| s.borrow().get(&node).copied().unwrap_or(Segment::IDENTITY))
}

/// Node `node`'s local time now, whichever task asks.
pub fn now_on(node: u64) -> SkewedInstant {
    let segment = SEGMENTS.with(|s| s.borrow().get(&node).copied().unwrap_or(Segment::IDENTITY));
    SkewedInstant(segment.local(global_now()))
}

/// Runs `future` (and every Raft task it spawns) on node `node`'s clock.
pub fn with_node_clock<F: std::future::Future>(node: u64, future: F) -> impl std::future::Future<Output = F::Output> {
    NODE_CLOCK.scope(node, future)
}

/// The current task's node, to hand to tasks it spawns.
pub(crate) fn current_node() -> Option<u64> {
    NODE_CLOCK.try_with(|n| *n).ok()
}

/// Scopes `future` to `node`'s clock if there is one.
pub(crate) fn scoped<F: std::future::Future>(node: u64, future: F) -> impl std::future::Future<Output = F::Output> {
    NODE_CLOCK.scope(node, future)
}

/// From now on node `node`'s clock runs at `rate` (1.0 = true time) after
/// jumping forward by `jump`.
pub fn skew_clock(node: u64, jump: Duration, rate: f64) {
    let rate = rate.clamp(0.1, 10.0);
    let now = global_now();
    SEGMENTS.with(|s| {
        let mut segments = s.borrow_mut();
        let current = segments.get(&node).copied().unwrap_or(Segment::IDENTITY);
        segments.insert(node, Segment { global0: now, local0: current.local(now) + jump, rate });
    });
}

/// Forgets every skew and the time base (at the start of a simulation run).
pub fn reset_clocks() {
    SEGMENTS.with(|s| s.borrow_mut().clear());
    BASE.with(|b| b.set(None));
}

/// openraft's `Instant` in simulation: the local time of the reading task's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SkewedInstant(Duration);

impl SkewedInstant {
    /// The global (madsim) instant at which this local instant occurs on the
    /// current node's clock.
    pub(crate) fn to_global(self) -> tokio::time::Instant {
        base() + segment().global(self.0)
    }
}

impl openraft::Instant for SkewedInstant {
    fn now() -> Self {
        SkewedInstant(segment().local(global_now()))
    }
}

impl Add<Duration> for SkewedInstant {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        SkewedInstant(self.0 + d)
    }
}

impl AddAssign<Duration> for SkewedInstant {
    fn add_assign(&mut self, d: Duration) {
        self.0 += d;
    }
}

impl Sub<Duration> for SkewedInstant {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        SkewedInstant(self.0.saturating_sub(d))
    }
}

impl SubAssign<Duration> for SkewedInstant {
    fn sub_assign(&mut self, d: Duration) {
        self.0 = self.0.saturating_sub(d);
    }
}

impl Sub<SkewedInstant> for SkewedInstant {
    type Output = Duration;
    fn sub(self, other: SkewedInstant) -> Duration {
        self.0.saturating_sub(other.0)
    }
}

/// How long `local` takes on the current node's clock, in global time.
pub(crate) fn global_duration(local: Duration) -> Duration {
    local.div_f64(segment().rate)
}
