//! The Raft log and vote, kept in the storage engine.
//!
//! Layout: column family `raft_log` maps the big-endian log index to a
//! protobuf `raft.v1.Entry`; `raft_meta` holds the vote, the committed log id,
//! the last purged log id and a purge put off (see `purge`).
//!
//! Durability (openraft's storage contract): `append` calls back only after the
//! entries are fsynced, and `save_vote` returns only after the vote is fsynced,
//! so no reply that depends on them is sent before they are durable.
//!
//! `append` writes the entries without waiting for the disk and returns; a
//! flusher task syncs and then calls back, once for every append that queued
//! meanwhile (a group commit). openraft replicates entries as soon as
//! `append` returns, so a leader's own fsync overlaps its followers'
//! (0.9 waited for the leader's flush before replicating).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use prost::Message;

use super::codec::{self, decode};
use super::recent_entries::RecentEntries;
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::proto::raft::v1 as pb;
use crate::storage::{Engine, WriteBatch};

/// Column family of log entries.
pub const CF_LOG: &str = "raft_log";
/// Column family of the vote and log bookkeeping.
pub const CF_META: &str = "raft_meta";

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
/// A purge put off while entries after it were appended (see `write_entries`).
const KEY_PURGE_PUT_OFF: &[u8] = b"purge_put_off";

pub(super) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// A failed read of `subject`, as openraft's storage traits report it.
pub(super) fn read_err(subject: &str, e: impl std::fmt::Display) -> StorageError {
    std::io::Error::other(format!("reading the {subject}: {e}"))
}

/// A failed write of `subject`, as openraft's storage traits report it.
pub(super) fn write_err(subject: &str, e: impl std::fmt::Display) -> StorageError {
    std::io::Error::other(format!("writing the {subject}: {e}"))
}

/// The log store; clones share the engine and the recent entries (one
/// clone is the log reader).
#[derive(Clone)]
pub struct LogStore {
    /// Where entries and the vote live.
    engine: Arc<dyn Engine>,
    /// The newest entries, which most reads ask for (see `recent_entries`).
    recent: Arc<Mutex<RecentEntries>>,
    /// A purge openraft asked for that is not written yet because the state
    /// machine does not hold that far (see `purge`). Reads and the log
    /// state already treat it as done.
    pending_purge: Arc<Mutex<Option<LogId>>>,
    /// Where appends queue to be synced (see the module); the flusher task
    /// starts with the first append and stops when the store is dropped.
    flusher: Arc<Mutex<Option<FlushQueue>>>,
}

/// Appends whose entries are written and wait for the fsync.
type FlushQueue = tokio::sync::mpsc::UnboundedSender<IOFlushed<TypeConfig>>;

/// Syncs the engine for the appends queued, then tells openraft they are
/// durable; runs until every store handle (every sender) is gone.
async fn flush_appends(
    engine: Arc<dyn Engine>,
    mut queued: tokio::sync::mpsc::UnboundedReceiver<IOFlushed<TypeConfig>>,
) {
    while let Some(first) = queued.recv().await {
        let latency = engine.injected_delays().io;
        if !latency.is_zero() {
            crate::runtime::sleep(latency).await;
        }
        if crate::runtime::buggify::buggify("log-flush-delay") {
            crate::runtime::sleep(std::time::Duration::from_millis(30)).await;
        }
        // Every append queued by now was written before this sync.
        let mut callbacks = vec![first];
        while let Ok(more) = queued.try_recv() {
            callbacks.push(more);
        }
        let synced = {
            let engine = engine.clone();
            crate::runtime::blocking(move || engine.sync()).await
        };
        let failure = match synced {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        for callback in callbacks {
            callback.io_completed(match &failure {
                None => Ok(()),
                Some(e) => Err(write_err("log", e)),
            });
        }
    }
}

impl LogStore {
    /// A log store over `engine` (opened with [`CF_LOG`] and [`CF_META`]).
    pub fn new(engine: Arc<dyn Engine>) -> Self {
        Self { engine, recent: Default::default(), pending_purge: Default::default(), flusher: Default::default() }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, RecentEntries> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending_purge(&self) -> std::sync::MutexGuard<'_, Option<LogId>> {
        self.pending_purge.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the purge up to `log_id` if the state machine holds that far;
    /// returns whether it did.
    fn purge_if_applied(&self, log_id: &LogId) -> Result<bool, StorageError> {
        let applied = super::state_store::applied_index(self.engine.as_ref())?;
        if applied.is_none_or(|applied| applied < log_id.index) {
            return Ok(false);
        }
        let mut batch = WriteBatch::new();
        // Record the purge point first in the same batch: the log state stays
        // correct whatever prefix of the deletion survives.
        batch.put(CF_META, KEY_LAST_PURGED, codec::log_id_to_pb(log_id).encode_to_vec());
        batch.delete(CF_META, KEY_PURGE_PUT_OFF);
        batch.delete_range(CF_LOG, index_key(0).to_vec(), index_key(log_id.index + 1).to_vec());
        self.engine.write(batch, false).map_err(|e| write_err("log", e))?;
        Ok(true)
    }

    /// Writes the pending purge once the state machine caught up with it.
    fn settle_pending_purge(&self) -> Result<(), StorageError> {
        let mut pending = self.pending_purge();
        if let Some(log_id) = pending.as_ref() {
            if self.purge_if_applied(log_id)? {
                *pending = None;
            }
        }
        Ok(())
    }

    async fn disk_latency(&self) {
        let latency = self.engine.injected_delays().io;
        if !latency.is_zero() {
            crate::runtime::sleep(latency).await;
        }
    }

    fn read_log_id(&self, key: &[u8]) -> Result<Option<LogId>, StorageError> {
        let Some(bytes) = self.engine.get(CF_META, key).map_err(|e| read_err("log bookkeeping", e))? else {
            return Ok(None);
        };
        let id: pb::LogId = decode("LogId", &bytes).map_err(|e| read_err("log bookkeeping", e))?;
        codec::log_id_from_pb(&id).map(Some).map_err(|e| read_err("log bookkeeping", e))
    }

    /// Writes `entries`, synced, and keeps them among the recent entries.
    #[cfg(test)]
    pub(super) fn write_entries(
        &self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<(), crate::storage::StorageError> {
        self.put_entries(entries, true)
    }

    /// Queues `callback` for the flusher's next sync (see the module).
    fn flush_later(&self, callback: IOFlushed<TypeConfig>) {
        let mut flusher = self.flusher.lock().unwrap_or_else(|e| e.into_inner());
        let queue = match flusher.as_ref().filter(|queue| !queue.is_closed()) {
            Some(queue) => queue,
            None => {
                let (queue, queued) = tokio::sync::mpsc::unbounded_channel();
                crate::runtime::spawn_detached("log-flush", flush_appends(self.engine.clone(), queued));
                flusher.insert(queue)
            }
        };
        if let Err(unsent) = queue.send(callback) {
            unsent.0.io_completed(Err(write_err("log", "the log flusher stopped")));
        }
    }

    /// Writes `entries` (synced or not) and keeps them among the recent
    /// entries once written.
    ///
    /// With a purge still put off, the batch records it too. The entries below
    /// it may be stale ones of an old term that a snapshot replaced (openraft
    /// 0.9 truncates before installing a snapshot only if the snapshot's last
    /// index conflicts), and the new entries follow it: after a crash the log
    /// on disk would run stale entries, a gap, then the new ones, and a
    /// restarted leader could send a stale one to a follower as committed.
    /// The record makes the restarted log start after the purge.
    fn put_entries(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        sync: bool,
    ) -> Result<(), crate::storage::StorageError> {
        let mut batch = WriteBatch::new();
        if let Some(put_off) = *self.pending_purge() {
            batch.put(CF_META, KEY_PURGE_PUT_OFF, codec::log_id_to_pb(&put_off).encode_to_vec());
        }
        let mut written = Vec::new();
        for entry in entries {
            let bytes = codec::encode_entry(&entry);
            let size = bytes.len();
            batch.put(CF_LOG, index_key(entry.log_id.index), bytes);
            written.push((entry, size));
        }
        self.engine.write(batch, sync)?;
        self.recent().appended(written);
        Ok(())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let Some((_, bytes)) = self.engine.last(CF_LOG).map_err(|e| read_err("log", e))? else {
            return Ok(None);
        };
        let entry =
            decode::<pb::Entry>("Entry", &bytes).and_then(codec::entry_from_pb).map_err(|e| read_err("log", e))?;
        Ok(Some(entry.log_id))
    }
}

/// Makes a node that led when it stopped start as a follower. openraft
/// resumes leading at once when the stored vote is its own and committed,
/// keeping its term, and a leader's ReadIndex is its committed index, which
/// `save_committed` does not sync: after a power loss it could be older than
/// writes it acknowledged. With the vote stored as granted but not committed
/// the node still never votes for another candidate in that term, and it
/// leads again only by winning an election in a newer one, whose first entry
/// follows every acknowledged write. (etcd's members also restart as
/// followers.)
pub(super) fn demote_restarted_leader(engine: &Arc<dyn Engine>, id: u64) -> Result<(), StorageError> {
    let Some(bytes) = engine.get(CF_META, KEY_VOTE).map_err(|e| read_err("vote", e))? else {
        return Ok(());
    };
    let mut vote: pb::Vote = decode("Vote", &bytes).map_err(|e| read_err("vote", e))?;
    if !(vote.committed && vote.node_id == id) {
        return Ok(());
    }
    vote.committed = false;
    let mut batch = WriteBatch::new();
    batch.put(CF_META, KEY_VOTE, vote.encode_to_vec());
    engine.write(batch, true).map_err(|e| write_err("vote", e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        // Entries of a pending purge are gone as far as openraft knows.
        let start = start.max(self.pending_purge().map_or(0, |p| p.index + 1));
        let end = match range.end_bound() {
            Bound::Included(i) => i.checked_add(1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        if let Some(entries) = end.and_then(|end| self.recent().get(start, end)) {
            return Ok(entries);
        }
        let end_key = end.map(index_key);
        let pairs = self
            .engine
            .scan(CF_LOG, &index_key(start), end_key.as_ref().map(|k| k.as_slice()), usize::MAX)
            .map_err(|e| read_err("log", e))?;
        pairs
            .into_iter()
            .map(|(_, bytes)| decode::<pb::Entry>("Entry", &bytes).and_then(codec::entry_from_pb))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read_err("log", e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let Some(bytes) = self.engine.get(CF_META, KEY_VOTE).map_err(|e| read_err("vote", e))? else {
            return Ok(None);
        };
        let vote: pb::Vote = decode("Vote", &bytes).map_err(|e| read_err("vote", e))?;
        Ok(Some(codec::vote_from_pb(&vote)))
    }

    /// What replication sends after the entry at `start - 1`: only the run of
    /// consecutive entries from `start`. A purge racing with the read can
    /// remove the head of the range; returning the rest would hand a follower
    /// a log with a hole. Empty instead makes openraft treat the round as a
    /// heartbeat, notice the purge and send a snapshot.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        let entries = self.try_get_log_entries(start..end).await?;
        Ok(entries
            .into_iter()
            .enumerate()
            .take_while(|(i, e)| e.log_id.index == start + *i as u64)
            .map(|(_, e)| e)
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let put_off = self.read_log_id(KEY_PURGE_PUT_OFF)?;
        let mut pending = self.pending_purge();
        if let Some(put_off) = put_off.filter(|p| Some(*p) > *pending) {
            // Recorded before a restart. The state machine installed the
            // snapshot before the entries after it arrived (synced), unless
            // the data dir lost that write.
            let applied = super::state_store::applied_index(self.engine.as_ref())?;
            if applied.is_none_or(|applied| applied < put_off.index) {
                return Err(read_err(
                    "log",
                    std::io::Error::other(format!(
                        "the log continues after index {} but the state machine holds only up to {}: the snapshot \
                         that covered the gap was lost; remove this member and add it back with an empty data dir",
                        put_off.index,
                        applied.unwrap_or(0)
                    )),
                ));
            }
            *pending = Some(put_off);
        }
        let last_purged_log_id = self.read_log_id(KEY_LAST_PURGED)?.max(*pending);
        drop(pending);
        let last_log_id = self.last_entry_log_id()?.max(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.disk_latency().await;
        let mut batch = WriteBatch::new();
        batch.put(CF_META, KEY_VOTE, codec::vote_to_pb(vote).encode_to_vec());
        // Synced: a vote granted must survive any crash.
        self.engine.write(batch, true).map_err(|e| write_err("vote", e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        match committed {
            Some(id) => batch.put(CF_META, KEY_COMMITTED, codec::log_id_to_pb(&id).encode_to_vec()),
            None => batch.delete(CF_META, KEY_COMMITTED),
        }
        // Not synced: it saves a fsync per commit on every node. A crash may
        // bring back an older committed index (never one past the synced log);
        // the node then learns the rest from the leader. The one reader that
        // must not see an older index is a leader that restarts into its own
        // term and answers ReadIndex with it: `demote_restarted_leader` stops
        // that (sim seed 20131 found a stale read when it was possible).
        // RocksDB keeps unsynced writes in order, so the apply that follows is
        // never kept without this.
        self.engine.write(batch, false).map_err(|e| write_err("log bookkeeping", e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_log_id(KEY_COMMITTED)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.settle_pending_purge()?;
        // Written now, readable for replication at once; durable (and
        // reported so) after the flusher's next sync.
        match self.put_entries(entries, false) {
            Ok(()) => {
                self.flush_later(callback);
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err("log", e))
            }
        }
    }

    /// Removes every entry after `last` (all of them when `None`).
    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), StorageError> {
        let from = last.map_or(0, |id| id.index + 1);
        self.recent().truncate(from);
        let mut batch = WriteBatch::new();
        batch.delete_range(CF_LOG, index_key(from).to_vec(), index_key(u64::MAX).to_vec());
        batch.delete(CF_LOG, index_key(u64::MAX));
        // Synced: a truncated suffix must not come back after a crash while newer
        // entries from another leader are appended in its place.
        self.engine.write(batch, true).map_err(|e| write_err("log", e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Written only once the state machine holds that far: openraft 0.9
        // purges the log up to a snapshot it received right after queueing
        // the snapshot's install, and if that install then fails (a full
        // disk) the member restarted with its log purged past its applied
        // state, which openraft refuses ("purge_upto <= committed"; seed
        // 20048, disk-full on a member catching up). Until then the purge is
        // pending: reads and the log state treat it as done, and the next
        // append or purge writes it.
        self.recent().purge(log_id.index);
        let mut pending = self.pending_purge();
        let upto = (*pending).max(Some(log_id)).unwrap_or(log_id);
        if self.purge_if_applied(&upto)? {
            *pending = None;
        } else {
            tracing::info!(upto = upto.index, "log purge put off until the state machine holds that far");
            *pending = Some(upto);
        }
        Ok(())
    }
}
