//! History: reads at past revisions, watch replay, compaction.
//!
//! Kept: every event of revision >= `compact_revision`. The state at a kept
//! revision `r` is the live records rolled back through the events newer than
//! `r`, each of which carries the record it replaced.

use super::kv::Records;
use super::{Change, KeyRange, KvState, StateError, Write};
use crate::proto::mvccpb::{Event, KeyValue};

/// The revision an event happened at.
pub(super) fn event_revision(event: &Event) -> i64 {
    event.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

fn check_kept(state: &KvState, revision: i64) -> Result<(), StateError> {
    if revision > state.revision {
        return Err(StateError::FutureRevision);
    }
    if revision < state.compact_revision {
        return Err(StateError::Compacted);
    }
    Ok(())
}

/// The records inside `range` as they were at `revision`. `pending` are
/// events already applied to the live records but not yet in the history
/// (earlier writes of the txn being applied).
pub(super) fn records_at(
    state: &KvState,
    range: &KeyRange,
    revision: i64,
    pending: &[Event],
) -> Result<Records, StateError> {
    check_kept(state, revision)?;
    let mut records: Records = range.select(&state.keys).into_iter().map(|kv| (kv.key.clone(), kv.clone())).collect();
    let newer = state.history.range(revision + 1..).rev().flat_map(|(_, events)| events.iter().rev());
    for event in pending.iter().rev().chain(newer) {
        let Some(key) = event.kv.as_ref().map(|kv| &kv.key) else { continue };
        if !range.contains(key) {
            continue;
        }
        match &event.prev_kv {
            Some(prev) => records.insert(key.clone(), prev.clone()),
            None => records.remove(key),
        };
    }
    Ok(records)
}

/// What an event costs in memory beyond its keys and values: the two
/// records' revisions, versions and lease, and the map and vector slots
/// that hold it (an estimate; what matters is that small events count).
const EVENT_OVERHEAD: u64 = 96;

/// Bytes an event holds: its record and the record it replaced, keys and
/// values, plus [`EVENT_OVERHEAD`].
pub(super) fn event_bytes(event: &Event) -> u64 {
    let record = |kv: &KeyValue| (kv.key.len() + kv.value.len()) as u64;
    event.kv.as_ref().map_or(0, record) + event.prev_kv.as_ref().map_or(0, record) + EVENT_OVERHEAD
}

/// See [`KvState::compaction_to_fit`].
pub(super) fn compaction_to_fit(state: &KvState, budget: u64) -> Option<i64> {
    let mut kept = state.history_bytes;
    if kept <= budget {
        return None;
    }
    for (revision, events) in state.kept_history() {
        if kept <= budget || *revision == state.revision {
            return Some(*revision);
        }
        kept -= events.iter().map(event_bytes).sum::<u64>();
    }
    Some(state.revision)
}

/// Compacted revisions whose events each write frees. A compaction only
/// moves `compact_revision`; freeing its events at once took 25-58 ms of the
/// apply path for the 22k revisions of a 5 s auto-compaction pass at 4.4k
/// puts/s, and every write waited behind it. 64 per write frees faster than
/// writes add history, by far.
pub(super) const DROP_PER_WRITE: usize = 64;

/// Frees up to [`DROP_PER_WRITE`] revisions of events below the compact revision.
pub(super) fn drop_compacted(state: &mut KvState) {
    for _ in 0..DROP_PER_WRITE {
        match state.history.get_min().map(|(revision, _)| *revision) {
            Some(oldest) if oldest < state.compact_revision => drop(state.history.remove(&oldest)),
            _ => break,
        }
    }
}

/// Drops the history below `revision` (the events go later, see
/// [`drop_compacted`]), and the records the events at `revision` replaced:
/// only a read below `revision` needs them, and a delete's event would
/// otherwise keep every value it deleted, so compacting to a delete's
/// revision would free nothing. A watch replaying from `revision` gets those
/// events without `prev_kv`, as etcd's does when the revision before is
/// compacted.
pub(super) fn compact(state: &mut KvState, write: &mut Write, revision: i64) -> Result<(), StateError> {
    if revision > state.revision {
        return Err(StateError::FutureRevision);
    }
    if revision <= state.compact_revision {
        return Err(StateError::Compacted);
    }
    let mut dropped: u64 =
        state.history.range(state.compact_revision..revision).flat_map(|(_, events)| events).map(event_bytes).sum();
    let mut boundary = Vec::new();
    if let Some(events) = state.history.get_mut(&revision) {
        if events.iter().any(|e| e.prev_kv.is_some()) {
            for event in events.iter_mut() {
                dropped += event_bytes(event);
                event.prev_kv = None;
                dropped -= event_bytes(event);
            }
            boundary = events.clone();
        }
    }
    state.history_bytes -= dropped;
    state.compact_revision = revision;
    write.other.push(Change::Compacted { below: revision, boundary });
    Ok(())
}

/// Kept events from `from` on; `Err(compact_revision)` if `from` is compacted.
pub(super) fn events_from(state: &KvState, from: i64) -> Result<impl Iterator<Item = (&i64, &Vec<Event>)>, i64> {
    if from < state.compact_revision {
        return Err(state.compact_revision);
    }
    Ok(state.history.range(from..))
}
