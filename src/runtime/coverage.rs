//! "Sometimes" points (FoundationDB's `TEST()`): rare paths the simulator
//! must show it reaches, so a sweep that passes is known to have exercised
//! them. The server marks a point with [`reached`]; outside the simulator it
//! compiles to nothing. A simulated seed runs on a thread of its own, and
//! its harness takes the counts at the end (`take_reached`, simulation only).

/// Every point, by name: a sweep reports each, and can require them all.
pub const POINTS: [&str; 9] = [
    // A follower installed a snapshot the leader sent (it was too far behind).
    "snapshot-installed",
    // A leadership transfer (MoveLeader, or a leader's graceful hand-over) landed.
    "leader-transfer-landed",
    // A watcher asked for history older than the compaction and was canceled.
    "watch-canceled-by-compaction",
    // A keepalive reached the leader after its lease's deadline (answered TTL 0).
    "keepalive-after-deadline",
    // A proposal carrying several commands was cut by a leader change (not applied here).
    "proposal-batch-cut",
    // A ReadIndex round found no quorum behind the leader (the reads retried).
    "read-index-without-quorum",
    // The controller moved a shard's leadership off a broker that was gone.
    "shard-failed-over",
    // A shard lost its last live in-sync replica: no leader until it is back.
    "shard-left-without-leader",
    // A shard status report was refused for a stale leader epoch.
    "shard-status-fenced",
];

/// Marks `point` (one of [`POINTS`]) as reached.
#[inline]
pub fn reached(point: &'static str) {
    mark("", point);
}

/// Marks a path that a regression scenario (sim/src/scenarios.rs) drives on
/// purpose and checks it reached, so that it cannot pass without its shape;
/// sweeps report it as `scenario:<point>` but do not require it.
#[inline]
pub fn reached_in_scenario(point: &'static str) {
    mark("scenario:", point);
}

/// Counts `point`, reported as `<prefix><point>`, in a simulated seed.
#[inline]
fn mark(prefix: &'static str, point: &'static str) {
    #[cfg(madsim)]
    sim::count(prefix, point);
    #[cfg(not(madsim))]
    let _ = (prefix, point);
}

/// Counts a BUGGIFY point's firing (reported as `buggify:<point>`; not
/// required: a seed enables only some points).
#[cfg(madsim)]
pub(crate) fn reached_buggify(point: &'static str) {
    sim::count("buggify:", point);
}

/// The points reached on this thread since the last call, by name, with
/// how often; and forgets them.
#[cfg(madsim)]
pub fn take_reached() -> std::collections::BTreeMap<String, u64> {
    let hits = sim::HITS.with(|hits| std::mem::take(&mut *hits.borrow_mut()));
    hits.into_iter().map(|((prefix, point), n)| (format!("{prefix}{point}"), n)).collect()
}

#[cfg(madsim)]
mod sim {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    thread_local! {
        /// (prefix, point) -> hits: a name is only built when the counts are taken.
        pub(super) static HITS: RefCell<BTreeMap<(&'static str, &'static str), u64>> =
            const { RefCell::new(BTreeMap::new()) };
    }

    pub(super) fn count(prefix: &'static str, point: &'static str) {
        HITS.with(|hits| *hits.borrow_mut().entry((prefix, point)).or_default() += 1);
    }
}
