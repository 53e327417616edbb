//! The state-machine store: applies committed entries to the pure
//! [`KvState`](crate::state::KvState) and persists the result.
//!
//! Layout: column family `kv` maps a key to its protobuf `mvccpb.KeyValue`;
//! `sm_meta` holds the last applied log id, the membership, the revision and
//! the latest snapshot.
//!
//! Atomicity: the key changes of applied entries, the new last-applied log id,
//! membership and revision are written in ONE batch. A crash leaves the disk at
//! some applied index with exactly the keys of that index, never in between
//! (etcd 3.5's data inconsistency came from splitting these two).

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, OptionalSend};
use prost::Message;

use super::codec::{self, decode};
use super::log_store::{read_err, write_err};
use super::types::{ApplyResult, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::proto::mvccpb::KeyValue;
use crate::proto::raft::v1 as pb;
use crate::state::{Change, KvState};
use crate::storage::{Engine, WriteBatch};

/// Column family of live keys.
pub const CF_KV: &str = "kv";
/// Column family of the state machine's bookkeeping.
pub const CF_SM: &str = "sm_meta";

const KEY_APPLIED: &[u8] = b"applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
const KEY_REVISION: &[u8] = b"revision";
const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// The key space as the API reads it; shared with the state-machine store.
pub type SharedState = Arc<RwLock<KvState>>;

/// Reads the shared state, surviving a poisoned lock (the state is only
/// mutated wholesale, so it is consistent even then).
pub fn read_state(state: &SharedState) -> std::sync::RwLockReadGuard<'_, KvState> {
    state.read().unwrap_or_else(|e| e.into_inner())
}

fn write_state(state: &SharedState) -> std::sync::RwLockWriteGuard<'_, KvState> {
    state.write().unwrap_or_else(|e| e.into_inner())
}

/// openraft's state machine over the engine.
pub struct StateMachineStore {
    /// Where keys and bookkeeping persist.
    engine: Arc<dyn Engine>,
    /// The in-memory key space (also read by the API).
    state: SharedState,
    /// Last applied log id, as persisted.
    last_applied: Option<LogId>,
    /// Membership as of `last_applied`.
    membership: StoredMembership,
    /// Distinguishes snapshots built at the same log id.
    snapshot_seq: u64,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError {
    read_err(ErrorSubject::StateMachine, e)
}

impl StateMachineStore {
    /// Loads the persisted state machine (empty on a fresh engine).
    pub fn open(engine: Arc<dyn Engine>) -> Result<Self, StorageError> {
        let get = |key: &[u8]| engine.get(CF_SM, key).map_err(sm_err);
        let last_applied = match get(KEY_APPLIED)? {
            Some(b) => {
                Some(decode::<pb::LogId>("LogId", &b).and_then(|id| codec::log_id_from_pb(&id)).map_err(sm_err)?)
            }
            None => None,
        };
        let membership = match get(KEY_MEMBERSHIP)? {
            Some(b) => decode::<pb::StoredMembership>("StoredMembership", &b)
                .and_then(|m| codec::stored_membership_from_pb(&m))
                .map_err(sm_err)?,
            None => StoredMembership::default(),
        };
        let revision = match get(KEY_REVISION)? {
            Some(b) => i64::from_be_bytes(
                b.as_slice().try_into().map_err(|_| sm_err(std::io::Error::other("revision is not 8 bytes")))?,
            ),
            None => 1,
        };
        let kvs = engine
            .export(CF_KV)
            .map_err(sm_err)?
            .into_iter()
            .map(|(_, v)| decode::<KeyValue>("KeyValue", &v))
            .collect::<Result<Vec<_>, _>>()
            .map_err(sm_err)?;
        Ok(Self {
            engine,
            state: Arc::new(RwLock::new(KvState::restore(revision, kvs))),
            last_applied,
            membership,
            snapshot_seq: 0,
        })
    }

    /// The handle the API reads the key space through.
    pub fn shared_state(&self) -> SharedState {
        self.state.clone()
    }

    fn bookkeeping(&self, batch: &mut WriteBatch, revision: i64) {
        if let Some(applied) = &self.last_applied {
            batch.put(CF_SM, KEY_APPLIED, codec::log_id_to_pb(applied).encode_to_vec());
        }
        batch.put(CF_SM, KEY_MEMBERSHIP, codec::stored_membership_to_pb(&self.membership).encode_to_vec());
        batch.put(CF_SM, KEY_REVISION, revision.to_be_bytes().to_vec());
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::new();
        let mut results = Vec::new();
        let state = self.state.clone();
        let mut kv = write_state(&state);
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => results.push(Ok(Default::default())),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    results.push(Ok(Default::default()));
                }
                EntryPayload::Normal(cmd) => match kv.apply(&cmd) {
                    Ok(applied) => {
                        for change in applied.changes {
                            match change {
                                Change::Put(record) => {
                                    let value = record.encode_to_vec();
                                    batch.put(CF_KV, record.key, value)
                                }
                                Change::Delete(key) => batch.delete(CF_KV, key),
                            }
                        }
                        results.push(Ok(applied.result));
                    }
                    // Refused deterministically on every replica; nothing to persist.
                    Err(refused) => results.push(Err(refused)),
                },
            }
        }
        self.bookkeeping(&mut batch, kv.revision());
        // One atomic batch: changes + last applied (see the module comment). Not
        // synced: the log is durable, a lost suffix is re-applied from it.
        self.engine.write(batch, false).map_err(|e| write_err(ErrorSubject::StateMachine, e))?;
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        let kv = read_state(&self.state);
        let data = pb::StateSnapshot { revision: kv.revision(), kvs: kv.records().cloned().collect() }.encode_to_vec();
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: match &self.last_applied {
                Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, self.snapshot_seq),
                None => format!("0-0-{}", self.snapshot_seq),
            },
        };
        SnapshotBuilder { engine: self.engine.clone(), meta, data }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let decoded: pb::StateSnapshot = decode("StateSnapshot", &data).map_err(sm_err)?;
        let mut batch = WriteBatch::new();
        self.engine.clear_into(CF_KV, &mut batch).map_err(sm_err)?;
        for kv in &decoded.kvs {
            batch.put(CF_KV, kv.key.clone(), kv.encode_to_vec());
        }
        let new_state = KvState::restore(decoded.revision, decoded.kvs);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.bookkeeping(&mut batch, new_state.revision());
        store_snapshot(&mut batch, meta, data);
        // Synced: the log before this point may be purged right after.
        self.engine.write(batch, true).map_err(|e| write_err(ErrorSubject::Snapshot(Some(meta.signature())), e))?;
        *write_state(&self.state) = new_state;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(bytes) = self.engine.get(CF_SM, KEY_SNAPSHOT).map_err(sm_err)? else {
            return Ok(None);
        };
        let stored: pb::StoredSnapshot = decode("StoredSnapshot", &bytes).map_err(sm_err)?;
        let meta = stored.meta.as_ref().ok_or_else(|| sm_err(std::io::Error::other("stored snapshot without meta")))?;
        let meta = codec::snapshot_meta_from_pb(meta).map_err(sm_err)?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(stored.data)) }))
    }
}

fn store_snapshot(batch: &mut WriteBatch, meta: &SnapshotMeta, data: Vec<u8>) {
    let stored = pb::StoredSnapshot { meta: Some(codec::snapshot_meta_to_pb(meta)), data };
    batch.put(CF_SM, KEY_SNAPSHOT, stored.encode_to_vec());
}

/// Builds a snapshot from a copy of the state taken when it was requested.
pub struct SnapshotBuilder {
    engine: Arc<dyn Engine>,
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mut batch = WriteBatch::new();
        store_snapshot(&mut batch, &self.meta, self.data.clone());
        self.engine
            .write(batch, true)
            .map_err(|e| write_err(ErrorSubject::Snapshot(Some(self.meta.signature())), e))?;
        Ok(Snapshot { meta: self.meta.clone(), snapshot: Box::new(Cursor::new(self.data.clone())) })
    }
}
