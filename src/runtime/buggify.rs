//! BUGGIFY (FoundationDB): seams where the simulator may make the server
//! take a legal but unusual path: a delay before a sync is reported, a
//! smaller batch, a retryable "not now" at a hand-over. Outside the
//! simulator [`buggify`] is always false. In a simulated seed each point is
//! enabled with probability 1/4 (drawn at its first use, from the seed), and
//! an enabled point fires a quarter of the times it is asked: seeds differ in
//! which seams they stress, and every run replays exactly.

/// Every point, by name.
pub const POINTS: [&str; 7] = [
    // The log flusher waits a while before it syncs and reports appends durable.
    "log-flush-delay",
    // The state machine waits a while before it applies what was committed.
    "apply-delay",
    // A snapshot being sent to a follower fails at a chunk (openraft sends it again later).
    "snapshot-chunk-lost",
    // A replication stream ends after a message's answer (openraft opens another).
    "append-stream-end",
    // A proposal carries at most two commands.
    "proposal-batch-small",
    // A follower's write is answered "not proposed" before it is forwarded (it retries).
    "forward-not-proposed",
    // A leader answers a ReadIndex round "not now" without asking its quorum (the read retries).
    "read-index-not-now",
];

/// Whether the seam `point` (one of [`POINTS`]) takes its unusual path now.
#[inline]
pub fn buggify(point: &'static str) -> bool {
    #[cfg(madsim)]
    return sim::fire(point);
    #[cfg(not(madsim))]
    {
        let _ = point;
        false
    }
}

/// Turns every point off for the simulation on this thread (a regression
/// scenario fixes its own faults: the seams' draws would move its shape).
#[cfg(madsim)]
pub fn turn_off() {
    sim::ENABLED.with(|e| *e.borrow_mut() = POINTS.iter().map(|point| (*point, false)).collect());
}

#[cfg(madsim)]
mod sim {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use rand::Rng;

    thread_local! {
        /// Per seed (a seed runs on a thread of its own): which points are on.
        pub(super) static ENABLED: RefCell<BTreeMap<&'static str, bool>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub(super) fn fire(point: &'static str) -> bool {
        let enabled =
            ENABLED.with(|e| *e.borrow_mut().entry(point).or_insert_with(|| crate::runtime::rng().gen_bool(0.25)));
        let fired = enabled && crate::runtime::rng().gen_bool(0.25);
        if fired {
            crate::runtime::coverage::reached_buggify(point);
        }
        fired
    }
}
