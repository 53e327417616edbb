//! The newest log entries, kept in memory as they are appended.
//!
//! Every entry is read back soon after it is written: on every member to
//! apply it, and on the leader once more per follower to replicate it. Each
//! read opened a RocksDB iterator and decoded the entry's commands again.
//! Served from here, a read clones the entries instead (a clone shares the
//! entry's commands, see `types::SharedProposal`). In a profile of the
//! leader under 100 clients putting (`perf record --call-graph dwarf`, 3 s),
//! those engine scans and decodes were 2.9% of its samples and sending
//! entries to the followers 7.0%; with this, the scans are gone from the
//! profile and sending is 5.2%.
//!
//! The entries held are always a run of consecutive indexes ending at the
//! newest one the log store wrote, and equal to what the engine holds for
//! them: the store adds an entry only after its write succeeded, and drops
//! entries before it truncates or purges them. A read that is not wholly
//! inside the run goes to the engine.

use std::collections::VecDeque;

use super::types::Entry;

/// Most entries kept.
const MAX_ENTRIES: usize = 1024;
/// Most encoded bytes kept (at 100 clients an entry carries about 36 puts of
/// 256 B, some 10 KiB, so this keeps a few hundred of them).
const MAX_BYTES: usize = 4 << 20;

/// A run of consecutive log entries, newest last.
#[derive(Debug, Default)]
pub(super) struct RecentEntries {
    /// Each entry with its encoded size.
    entries: VecDeque<(Entry, usize)>,
    /// Sum of the encoded sizes.
    bytes: usize,
}

impl RecentEntries {
    /// Records entries the store has just written, in order, each with its
    /// encoded size. An entry that does not follow the newest one held starts
    /// a new run.
    pub(super) fn appended(&mut self, entries: impl IntoIterator<Item = (Entry, usize)>) {
        for (entry, size) in entries {
            if self.entries.back().is_some_and(|(last, _)| last.log_id.index + 1 != entry.log_id.index) {
                self.entries.clear();
                self.bytes = 0;
            }
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        while !self.entries.is_empty() && (self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES) {
            self.drop_oldest();
        }
    }

    /// Drops the entries from index `since` on (the store is about to delete them).
    pub(super) fn truncate(&mut self, since: u64) {
        while self.entries.back().is_some_and(|(last, _)| last.log_id.index >= since) {
            self.drop_newest();
        }
    }

    /// Drops the entries up to index `upto` (the store is about to purge them).
    pub(super) fn purge(&mut self, upto: u64) {
        while self.entries.front().is_some_and(|(first, _)| first.log_id.index <= upto) {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    fn drop_newest(&mut self) {
        if let Some((_, size)) = self.entries.pop_back() {
            self.bytes -= size;
        }
    }

    /// Copies of the entries with indexes `start..end`, if all of them are held.
    pub(super) fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        if start >= end {
            return Some(Vec::new());
        }
        let first = self.entries.front()?.0.log_id.index;
        let next = first + self.entries.len() as u64;
        if start < first || end > next {
            return None;
        }
        let range = (start - first) as usize..(end - first) as usize;
        Some(self.entries.range(range).map(|(entry, _)| entry.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::raft::types::{EntryPayload, LeaderId};

    use super::*;
    use crate::raft::types::LogId;

    fn entry(term: u64, index: u64) -> (Entry, usize) {
        (Entry { log_id: LogId::new(LeaderId { term, node_id: 1 }, index), payload: EntryPayload::Blank }, 100)
    }

    fn ids(entries: Option<Vec<Entry>>) -> Option<Vec<(u64, u64)>> {
        entries.map(|es| es.iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect())
    }

    #[test]
    fn serves_only_ranges_wholly_held() {
        let mut recent = RecentEntries::default();
        assert_eq!(ids(recent.get(1, 2)), None);
        recent.appended((5..=9).map(|i| entry(1, i)));
        assert_eq!(ids(recent.get(6, 8)), Some(vec![(1, 6), (1, 7)]));
        assert_eq!(ids(recent.get(5, 10)).map(|v| v.len()), Some(5));
        assert_eq!(ids(recent.get(4, 6)), None, "index 4 is not held");
        assert_eq!(ids(recent.get(8, 11)), None, "index 10 is not held");
        assert_eq!(ids(recent.get(7, 7)), Some(vec![]));
    }

    #[test]
    fn a_truncated_suffix_is_replaced_by_the_new_leaders_entries() {
        let mut recent = RecentEntries::default();
        recent.appended((1..=6).map(|i| entry(1, i)));
        recent.truncate(4);
        assert_eq!(ids(recent.get(3, 5)), None);
        recent.appended((4..=5).map(|i| entry(2, i)));
        assert_eq!(ids(recent.get(3, 6)), Some(vec![(1, 3), (2, 4), (2, 5)]));
    }

    #[test]
    fn purged_entries_are_no_longer_served() {
        let mut recent = RecentEntries::default();
        recent.appended((1..=6).map(|i| entry(1, i)));
        recent.purge(3);
        assert_eq!(ids(recent.get(3, 5)), None);
        assert_eq!(ids(recent.get(4, 7)).map(|v| v.len()), Some(3));
        recent.purge(10);
        assert_eq!(ids(recent.get(6, 7)), None);
        assert_eq!(recent.bytes, 0);
    }

    #[test]
    fn an_entry_that_does_not_follow_starts_a_new_run() {
        let mut recent = RecentEntries::default();
        recent.appended((1..=3).map(|i| entry(1, i)));
        recent.appended([entry(2, 10)]);
        assert_eq!(ids(recent.get(2, 4)), None);
        assert_eq!(ids(recent.get(10, 11)), Some(vec![(2, 10)]));
        assert_eq!(recent.bytes, 100);
    }

    #[test]
    fn the_oldest_entries_go_first_beyond_the_limits() {
        let mut recent = RecentEntries::default();
        recent.appended((1..=MAX_ENTRIES as u64 + 5).map(|i| entry(1, i)));
        assert_eq!(recent.entries.len(), MAX_ENTRIES);
        assert_eq!(ids(recent.get(5, 6)), None);
        assert!(recent.get(6, MAX_ENTRIES as u64 + 6).is_some());
        recent.appended([(entry(1, MAX_ENTRIES as u64 + 6).0, MAX_BYTES)]);
        assert_eq!(ids(recent.get(MAX_ENTRIES as u64 + 6, MAX_ENTRIES as u64 + 7)).map(|v| v.len()), Some(1));
        assert_eq!(recent.entries.len(), 1, "one entry of MAX_BYTES leaves room for nothing else");
    }
}
