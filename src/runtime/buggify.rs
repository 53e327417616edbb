//! BUGGIFY (FoundationDB): seams where the simulator may make the server
//! take a legal but unusual path: a delay before a sync is reported, a
//! smaller batch, a retryable "not now" at a hand-over. Outside the
//! simulator [`buggify`] is always false. In a simulated seed each point is
//! enabled with probability 1/4 (drawn at its first use, from the seed), and
//! an enabled point fires a quarter of the times it is asked: seeds differ in
//! which seams they stress, and every run replays exactly.

/// Every point, by name.
pub const POINTS: [&str; 4] = [
    // The log flusher waits a while before it syncs and reports appends durable.
    "log-flush-delay",
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

#[cfg(madsim)]
mod sim {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use rand::Rng;

    thread_local! {
        /// Per seed (a seed runs on a thread of its own): which points are on.
        static ENABLED: RefCell<BTreeMap<&'static str, bool>> = const { RefCell::new(BTreeMap::new()) };
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
