//! The state-machine store: applies committed entries to the pure
//! [`KvState`] and persists the result.
//!
//! Layout: column family `kv` maps a key to its protobuf `mvccpb.KeyValue`;
//! `history` maps (revision, index) big-endian to the `mvccpb.Event` (with the
//! replaced record); `lease` maps a lease id to its `LeaseRecord`; `sm_meta`
//! holds the last applied log id, the membership, the revision, the compact
//! revision and the latest snapshot.
//!
//! Atomicity: the key changes of applied entries, the new last-applied log id,
//! membership and revision are written in ONE batch. A crash leaves the disk at
//! some applied index with exactly the keys of that index, never in between
//! (etcd 3.5's data inconsistency came from splitting these two).
//!
//! Snapshots: the persisted state machine is itself the snapshot, as etcd's
//! bbolt file is. Building one only makes the applied state durable (one
//! synced write of a record naming it); its bytes are encoded from the
//! in-memory state when a follower needs them. Before, a snapshot copied the
//! whole state on the apply path and wrote it out again: at 100k keys a
//! 46-89 ms copy and 160-200 ms of writes every 10,000 entries, the write
//! latency p99 of 250 ms that the benchmark saw.

use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::OptionalSend;
use prost::Message;

use super::codec::{self, decode};
use super::log_store::{read_err, write_err};
use super::types::{
    EntryPayload, LogId, Snapshot, SnapshotData, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::proto::mvccpb::{Event, KeyValue};
use crate::proto::raft::v1 as pb;
use crate::state::{Change, KvState, Persisted};
use crate::storage::{Engine, WriteBatch};

/// Column family of live keys.
pub const CF_KV: &str = "kv";
/// Column family of the state machine's bookkeeping.
pub const CF_SM: &str = "sm_meta";
/// Column family of the kept history (events by revision).
pub const CF_HISTORY: &str = "history";
/// Column family of granted leases.
pub const CF_LEASE: &str = "lease";

const KEY_APPLIED: &[u8] = b"applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
const KEY_REVISION: &[u8] = b"revision";
const KEY_COMPACT: &[u8] = b"compact_revision";
const KEY_SNAPSHOT: &[u8] = b"snapshot";
/// The auth store (`AuthSnapshot`), rewritten whole on every auth change.
const KEY_AUTH: &[u8] = b"auth";
/// The raised alarms (`AlarmList`).
const KEY_ALARMS: &[u8] = b"alarms";
/// The layout version of the data dir, 4 bytes big-endian.
const KEY_FORMAT: &[u8] = b"format_version";

/// The data dir layout this build reads and writes: the column families,
/// their keys and encodings. A data dir of another version is refused at
/// open rather than misread. Version 2: every value ends with its checksum
/// (`storage::checked`); version 1 data dirs are rewritten at open
/// ([`seal_unchecked_records`]).
pub const FORMAT_VERSION: u32 = 2;
/// Chunks of snapshots that earlier versions stored:
/// `snapshot_chunk/<snapshot id>/<index, u32 BE>`; dropped at open.
const CHUNK_PREFIX: &[u8] = b"snapshot_chunk/";
/// The key after every chunk key ('0' follows '/').
const CHUNK_END: &[u8] = b"snapshot_chunk0";

/// The key space as the API reads it; shared with the state-machine store.
pub type SharedState = Arc<RwLock<KvState>>;

/// Reads the shared state, surviving a poisoned lock (the state is only
/// mutated wholesale, so it is consistent even then).
pub fn read_state(state: &SharedState) -> std::sync::RwLockReadGuard<'_, KvState> {
    state.read().unwrap_or_else(|e| e.into_inner())
}

/// Runs `scan`, a read of the whole state (Hash, HashKV, Snapshot), on a
/// copy of the state as applied now, on the blocking threads: neither the
/// state lock nor an async thread is held while it reads. Taking the copy
/// holds the lock for O(1) (the maps are persistent, a copy shares their
/// nodes); it keeps what later applies replace until it is dropped.
pub async fn scan_state<T: Send + 'static>(
    state: &SharedState,
    scan: impl FnOnce(KvState) -> T + Send + 'static,
) -> std::io::Result<T> {
    let view = read_state(state).clone();
    crate::runtime::blocking(move || scan(view)).await
}

/// Adds checksums to a data dir written before values carried them (format
/// version 1, or a data dir from before versions were stored): every value
/// of every column family is rewritten sealed, and the version set to 2, in
/// one synced batch, so a crash halfway leaves the old data dir as it was.
/// The batch holds the whole data dir in memory once: the space quota
/// bounds it. A data dir already at version 2 or later is left alone; an
/// empty one gets its version record.
pub fn seal_unchecked_records(raw: &dyn Engine) -> Result<(), crate::storage::StorageError> {
    use crate::storage::StorageError as DiskError;
    let sealed_version = 4 + crate::storage::checked::TRAILER_BYTES;
    match raw.get(CF_SM, KEY_FORMAT)? {
        Some(version) if version.len() == sealed_version => return Ok(()),
        Some(version) if version.as_slice() != 1u32.to_be_bytes() => {
            return Err(DiskError::Corrupt(format!(
                "the data dir's format version record is {version:?}, neither version 1 nor checksummed"
            )))
        }
        Some(_) => {}
        None => {
            let mut empty = true;
            for family in super::COLUMN_FAMILIES {
                empty &= raw.last(family.name)?.is_none();
            }
            if empty {
                // A new data dir: versioned before anything else is written
                // (a restore writes state before the node first starts).
                let mut batch = WriteBatch::new();
                let sealed = crate::storage::checked::seal(CF_SM, KEY_FORMAT, FORMAT_VERSION.to_be_bytes().to_vec());
                batch.put(CF_SM, KEY_FORMAT, sealed);
                return raw.write(batch, true);
            }
        }
    }
    let started = crate::runtime::now();
    let mut batch = WriteBatch::new();
    for family in super::COLUMN_FAMILIES {
        for (key, value) in raw.export(family.name)? {
            let value =
                if family.name == CF_SM && key == KEY_FORMAT { FORMAT_VERSION.to_be_bytes().to_vec() } else { value };
            let sealed = crate::storage::checked::seal(family.name, &key, value);
            batch.put(family.name, key, sealed);
        }
    }
    let sealed = crate::storage::checked::seal(CF_SM, KEY_FORMAT, FORMAT_VERSION.to_be_bytes().to_vec());
    batch.put(CF_SM, KEY_FORMAT, sealed);
    let records = batch.ops.len();
    raw.write(batch, true)?;
    let elapsed_ms = (crate::runtime::now() - started).as_millis() as u64;
    tracing::info!(
        records,
        elapsed_ms,
        "data dir upgraded to format version {FORMAT_VERSION}: values now carry checksums"
    );
    Ok(())
}

fn write_state(state: &SharedState) -> std::sync::RwLockWriteGuard<'_, KvState> {
    state.write().unwrap_or_else(|e| e.into_inner())
}

/// How many times openraft's startup (`StorageHelper::get_initial_state`)
/// reads the current snapshot, using only its meta: once to see whether a
/// transient state machine must be restored from it, once for the snapshot's
/// log id (openraft 0.10, storage/helper.rs).
const META_ONLY_AT_STARTUP: u8 = 2;

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
    /// Publishes the applied revision to watchers.
    revision_tx: tokio::sync::watch::Sender<i64>,
    /// Where apply durations go.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The meta of the snapshot last made durable, if any; builders set it.
    snapshot: LastSnapshot,
    /// How many more `get_current_snapshot` calls answer without bytes (see
    /// [`StateMachineStore::meta_only_at_startup`]).
    meta_only: u8,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError {
    read_err("state machine", e)
}

impl StateMachineStore {
    /// Records apply durations into `metrics`.
    pub fn set_metrics(&mut self, metrics: Arc<crate::metrics::Metrics>) {
        self.metrics = Some(metrics);
    }

    /// Loads the persisted state machine (empty on a fresh engine).
    pub fn open(engine: Arc<dyn Engine>) -> Result<Self, StorageError> {
        let get = |key: &[u8]| engine.get(CF_SM, key).map_err(sm_err);
        match get(KEY_FORMAT)? {
            Some(b) if b.as_slice() == FORMAT_VERSION.to_be_bytes() => {}
            Some(b) => {
                return Err(sm_err(std::io::Error::other(format!(
                    "the data dir has format version {}, this build reads version {FORMAT_VERSION}",
                    b.try_into().map(u32::from_be_bytes).map_or_else(|b: Vec<u8>| format!("{b:?}"), |v| v.to_string())
                ))))
            }
            None => {
                // A new data dir (older ones were upgraded by `seal_unchecked_records`).
                let mut batch = WriteBatch::new();
                batch.put(CF_SM, KEY_FORMAT, FORMAT_VERSION.to_be_bytes().to_vec());
                engine.write(batch, true).map_err(|e| write_err("state machine", e))?;
            }
        }
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
        let revision = get(KEY_REVISION)?.map(|b| be_i64("revision", &b)).transpose()?.unwrap_or(1);
        let compact_revision = get(KEY_COMPACT)?.map(|b| be_i64("compact revision", &b)).transpose()?.unwrap_or(0);
        let kvs = decode_cf::<KeyValue>(&engine, CF_KV, "KeyValue")?;
        let history = decode_cf::<Event>(&engine, CF_HISTORY, "Event")?;
        let leases = decode_cf::<pb::LeaseRecord>(&engine, CF_LEASE, "LeaseRecord")?
            .into_iter()
            .map(|l| (l.id, l.ttl))
            .collect();
        let auth =
            get(KEY_AUTH)?.map(|b| decode::<pb::AuthSnapshot>("AuthSnapshot", &b)).transpose().map_err(sm_err)?;
        let alarm_list = get(KEY_ALARMS)?
            .map(|b| decode::<pb::AlarmList>("AlarmList", &b))
            .transpose()
            .map_err(sm_err)?
            .unwrap_or_default();
        let persisted = Persisted {
            revision,
            kvs,
            compact_revision,
            history,
            leases,
            auth,
            alarms: alarm_list.alarms,
            alarm_disarms: alarm_list.disarms,
        };
        let snapshot = match get(KEY_SNAPSHOT)? {
            Some(bytes) => Some(drop_legacy_snapshot_data(&engine, &bytes)?),
            None => None,
        };
        Ok(Self {
            engine,
            state: Arc::new(RwLock::new(KvState::restore(persisted))),
            last_applied,
            membership,
            // Not 0: a snapshot made after a restart at the log id of the
            // stored one gets an id of its own.
            revision_tx: tokio::sync::watch::Sender::new(revision),
            metrics: None,
            snapshot: Arc::new(std::sync::Mutex::new(snapshot)),
            meta_only: 0,
        })
    }

    /// The handle the API reads the key space through.
    pub fn shared_state(&self) -> SharedState {
        self.state.clone()
    }

    /// Adds the applied position (and the membership, when `membership_changed`)
    /// to `batch`. The stored membership is rewritten only when it changed: it
    /// is the record of a membership entry, not of every batch, and the
    /// engine keeps writes in order (a batch that survives a crash has every
    /// earlier one with it), so the stored record always matches the state.
    fn bookkeeping(&self, batch: &mut WriteBatch, kv: &KvState, membership_changed: bool) {
        if let Some(applied) = &self.last_applied {
            batch.put(CF_SM, KEY_APPLIED, codec::log_id_to_pb(applied).encode_to_vec());
        }
        if membership_changed {
            batch.put(CF_SM, KEY_MEMBERSHIP, codec::stored_membership_to_pb(&self.membership).encode_to_vec());
        }
        batch.put(CF_SM, KEY_REVISION, kv.revision().to_be_bytes().to_vec());
        batch.put(CF_SM, KEY_COMPACT, kv.compact_revision().to_be_bytes().to_vec());
    }

    /// A receiver of the applied revision, for watchers: it changes after
    /// every apply that wrote something.
    pub fn applied_revision(&self) -> tokio::sync::watch::Receiver<i64> {
        self.revision_tx.subscribe()
    }

    /// Makes the next `META_ONLY_AT_STARTUP` `get_current_snapshot` calls
    /// answer the meta only, with no bytes. For openraft's startup
    /// (`StorageHelper::get_initial_state`, run inside `Raft::new`), which
    /// reads the current snapshot's meta and drops the rest: at 1M keys
    /// encoding those bytes took 790 ms of a restart. Call it right before
    /// `Raft::new`; the storage tests check that openraft's startup is what
    /// uses it up.
    pub fn meta_only_at_startup(&mut self) {
        self.meta_only = META_ONLY_AT_STARTUP;
    }

    /// The meta of a snapshot of the state as applied now.
    fn meta_now(&self) -> SnapshotMeta {
        SnapshotMeta { last_log_id: self.last_applied, last_membership: self.membership.clone() }
    }
}

/// The index of the last log entry whose effects `engine` holds (written,
/// synced or not, in the order of the writes), `None` if none.
pub fn applied_index(engine: &dyn Engine) -> Result<Option<u64>, StorageError> {
    let Some(bytes) = engine.get(CF_SM, KEY_APPLIED).map_err(sm_err)? else { return Ok(None) };
    let id = decode::<pb::LogId>("LogId", &bytes).and_then(|id| codec::log_id_from_pb(&id)).map_err(sm_err)?;
    Ok(Some(id.index))
}

/// Decodes the stored snapshot record. Records of earlier versions carry the
/// snapshot's bytes, inline or in chunks: they are dropped (the persisted
/// state is the snapshot now).
fn drop_legacy_snapshot_data(engine: &Arc<dyn Engine>, bytes: &[u8]) -> Result<SnapshotMeta, StorageError> {
    let stored: pb::StoredSnapshot = decode("StoredSnapshot", bytes).map_err(sm_err)?;
    let meta = stored.meta.as_ref().ok_or_else(|| sm_err(std::io::Error::other("stored snapshot without meta")))?;
    let meta = codec::snapshot_meta_from_pb(meta).map_err(sm_err)?;
    if !stored.data.is_empty() || stored.chunks != 0 {
        let mut batch = WriteBatch::new();
        put_snapshot_record(&mut batch, &meta);
        batch.delete_range(CF_SM, CHUNK_PREFIX.to_vec(), CHUNK_END.to_vec());
        engine.write(batch, true).map_err(|e| write_err("snapshot", e))?;
    }
    Ok(meta)
}

/// Adds to `batch` the replacement of the whole persisted key space,
/// history and leases by `snapshot`'s (written as apply writes them), and
/// returns the state it restores. The caller adds the bookkeeping.
fn replace_state(
    engine: &Arc<dyn Engine>,
    batch: &mut WriteBatch,
    snapshot: pb::StateSnapshot,
) -> Result<KvState, StorageError> {
    for cf in [CF_KV, CF_HISTORY, CF_LEASE] {
        engine.clear_into(cf, batch).map_err(sm_err)?;
    }
    let new_state = KvState::restore(Persisted {
        revision: snapshot.revision,
        kvs: snapshot.kvs,
        compact_revision: snapshot.compact_revision,
        history: snapshot.history,
        leases: snapshot.leases.iter().map(|l| (l.id, l.ttl)).collect(),
        auth: snapshot.auth,
        alarms: snapshot.alarms,
        alarm_disarms: snapshot.alarm_disarms,
    });
    let alarms = pb::AlarmList { alarms: new_state.alarms(), disarms: new_state.alarm_disarms() };
    batch.put(CF_SM, KEY_ALARMS, alarms.encode_to_vec());
    match new_state.auth_record() {
        Some(auth) => batch.put(CF_SM, KEY_AUTH, auth.encode_to_vec()),
        None => batch.delete(CF_SM, KEY_AUTH),
    }
    for kv in new_state.records() {
        batch.put(CF_KV, kv.key.clone(), kv.encode_to_vec());
    }
    for (revision, events) in new_state.kept_history() {
        for (index, event) in events.iter().enumerate() {
            batch.put(CF_HISTORY, history_key(*revision, index as u32), event.encode_to_vec());
        }
    }
    for (id, lease) in new_state.leases() {
        put_lease(batch, *id, lease.ttl);
    }
    Ok(new_state)
}

/// Seeds an empty data dir with a backup's state (`placement-center
/// --restore-from`): the key space, history and leases, with no log and no
/// membership. Every member of the new cluster must be seeded from the same
/// file; Raft then starts from there as from an empty state.
pub fn restore_backup(engine: &Arc<dyn Engine>, snapshot: pb::StateSnapshot) -> Result<i64, StorageError> {
    let mut batch = WriteBatch::new();
    let state = replace_state(engine, &mut batch, snapshot)?;
    batch.put(CF_SM, KEY_REVISION, state.revision().to_be_bytes().to_vec());
    batch.put(CF_SM, KEY_COMPACT, state.compact_revision().to_be_bytes().to_vec());
    engine.write(batch, true).map_err(|e| write_err("state machine", e))?;
    Ok(state.revision())
}

/// Every value of column family `cf`, decoded as `what`. Read a piece at a
/// time (only at open, when nothing else writes), so that the raw pairs of
/// the whole family (300 MB at 1M keys) are never held at once.
fn decode_cf<M: Message + Default>(
    engine: &Arc<dyn Engine>,
    cf: &'static str,
    what: &'static str,
) -> Result<Vec<M>, StorageError> {
    const PIECE: usize = 16 * 1024;
    let mut decoded = Vec::new();
    let mut from = Vec::new();
    loop {
        let pairs = engine.scan(cf, &from, None, PIECE).map_err(sm_err)?;
        for (_, value) in &pairs {
            decoded.push(decode::<M>(what, value).map_err(sm_err)?);
        }
        match pairs.last() {
            Some((last, _)) if pairs.len() == PIECE => {
                from = last.clone();
                from.push(0);
            }
            _ => return Ok(decoded),
        }
    }
}

fn be_i64(what: &str, bytes: &[u8]) -> Result<i64, StorageError> {
    let bytes: [u8; 8] =
        bytes.try_into().map_err(|_| sm_err(std::io::Error::other(format!("{what} is not 8 bytes"))))?;
    Ok(i64::from_be_bytes(bytes))
}

/// History key: revision then index within it, big-endian, so that the
/// engine's order is revision order.
fn history_key(revision: i64, index: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(12);
    key.extend_from_slice(&(revision as u64).to_be_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// Adds one applied command's changes to `batch`: `events` are its key
/// events (the history's at `revision`), `changes` the rest.
fn persist_changes(batch: &mut WriteBatch, revision: i64, events: &[Event], changes: Vec<Change>) {
    for (index, event) in events.iter().enumerate() {
        if let Some(kv) = &event.kv {
            if event.r#type == crate::proto::mvccpb::event::EventType::Put as i32 {
                batch.put(CF_KV, kv.key.clone(), kv.encode_to_vec());
            } else {
                batch.delete(CF_KV, kv.key.clone());
            }
        }
        batch.put(CF_HISTORY, history_key(revision, index as u32), event.encode_to_vec());
    }
    for change in changes {
        match change {
            Change::LeaseGranted { id, ttl } => put_lease(batch, id, ttl),
            Change::LeaseRevoked(id) => batch.delete(CF_LEASE, id.to_be_bytes().to_vec()),
            Change::Compacted { below, boundary } => {
                batch.delete_range(CF_HISTORY, history_key(0, 0), history_key(below, 0));
                for (index, event) in boundary.iter().enumerate() {
                    batch.put(CF_HISTORY, history_key(below, index as u32), event.encode_to_vec());
                }
            }
            Change::Auth(auth) => batch.put(CF_SM, KEY_AUTH, auth.encode_to_vec()),
            Change::Alarms { alarms, disarms } => {
                batch.put(CF_SM, KEY_ALARMS, pb::AlarmList { alarms, disarms }.encode_to_vec())
            }
        }
    }
}

fn put_lease(batch: &mut WriteBatch, id: i64, ttl: i64) {
    batch.put(CF_LEASE, id.to_be_bytes().to_vec(), pb::LeaseRecord { id, ttl }.encode_to_vec());
}

/// The state machine as a raft.v1 `StateSnapshot` message, encoded from the
/// state in place, without a copy of it first. Equal, byte for byte, to
/// encoding [`KvState::persisted`].
pub fn snapshot_bytes(kv: &KvState) -> Vec<u8> {
    use prost::encoding::{encoded_len_varint, int64, key_len, message};
    // Tags of raft.v1 StateSnapshot.
    const REVISION: u32 = 1;
    const KVS: u32 = 2;
    const COMPACT_REVISION: u32 = 3;
    const HISTORY: u32 = 4;
    const LEASES: u32 = 5;
    const AUTH: u32 = 6;
    const ALARMS: u32 = 7;
    const ALARM_DISARMS: u32 = 8;
    let leases: Vec<pb::LeaseRecord> =
        kv.leases().iter().map(|(id, lease)| pb::LeaseRecord { id: *id, ttl: lease.ttl }).collect();
    let auth = kv.auth_record();
    let alarms = kv.alarms();
    let events = || kv.kept_history().flat_map(|(_, events)| events.iter());
    let field = |tag: u32, len: usize| key_len(tag) + encoded_len_varint(len as u64) + len;
    let int = |tag: u32, v: i64| if v == 0 { 0 } else { int64::encoded_len(tag, &v) };
    let len = int(REVISION, kv.revision())
        + kv.records().map(|r| field(KVS, r.encoded_len())).sum::<usize>()
        + int(COMPACT_REVISION, kv.compact_revision())
        + events().map(|e| field(HISTORY, e.encoded_len())).sum::<usize>()
        + leases.iter().map(|l| field(LEASES, l.encoded_len())).sum::<usize>()
        + auth.as_ref().map_or(0, |a| field(AUTH, a.encoded_len()))
        + alarms.iter().map(|a| field(ALARMS, a.encoded_len())).sum::<usize>()
        + match kv.alarm_disarms() {
            0 => 0,
            disarms => prost::encoding::uint64::encoded_len(ALARM_DISARMS, &disarms),
        };
    let mut buf = Vec::with_capacity(len);
    // proto3: fields at their default are not written.
    if kv.revision() != 0 {
        int64::encode(REVISION, &kv.revision(), &mut buf);
    }
    kv.records().for_each(|r| message::encode(KVS, r, &mut buf));
    if kv.compact_revision() != 0 {
        int64::encode(COMPACT_REVISION, &kv.compact_revision(), &mut buf);
    }
    events().for_each(|e| message::encode(HISTORY, e, &mut buf));
    leases.iter().for_each(|l| message::encode(LEASES, l, &mut buf));
    if let Some(auth) = &auth {
        message::encode(AUTH, auth, &mut buf);
    }
    alarms.iter().for_each(|a| message::encode(ALARMS, a, &mut buf));
    if kv.alarm_disarms() != 0 {
        prost::encoding::uint64::encode(ALARM_DISARMS, &kv.alarm_disarms(), &mut buf);
    }
    buf
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<S>(&mut self, entries: S) -> Result<(), StorageError>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, StorageError>> + Unpin + OptionalSend,
    {
        // The committed entries openraft hands over at once, read before the
        // state's lock is taken (it is not held across an await).
        let entries: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        if crate::runtime::buggify::buggify("apply-delay") {
            crate::runtime::sleep(std::time::Duration::from_millis(40)).await;
        }
        let stall = self.engine.injected_delays().write_stall;
        if !stall.is_zero() {
            crate::runtime::sleep(stall).await;
        }
        let started = crate::runtime::now();
        let mut batch = WriteBatch::new();
        let mut answers = Vec::new();
        let state = self.state.clone();
        let mut kv = write_state(&state);
        let mut membership_changed = false;
        for (entry, responder) in entries {
            self.last_applied = Some(entry.log_id);
            let results = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    membership_changed = true;
                    Vec::new()
                }
                EntryPayload::Normal(proposal) => {
                    let mut outcomes = Vec::with_capacity(proposal.commands.len());
                    for cmd in &proposal.commands {
                        match kv.apply(cmd) {
                            Ok(applied) => {
                                let events = kv.events_of(&applied);
                                persist_changes(&mut batch, applied.result.revision, events, applied.changes);
                                outcomes.push(Ok(applied.result));
                            }
                            // Refused deterministically on every replica; nothing to persist.
                            Err(refused) => outcomes.push(Err(refused)),
                        }
                    }
                    outcomes
                }
            };
            if let Some(responder) = responder {
                answers.push((responder, results));
            }
        }
        self.bookkeeping(&mut batch, &kv, membership_changed);
        let revision = kv.revision();
        drop(kv);
        // One atomic batch: changes + last applied (see the module comment). Not
        // synced: the log is durable, a lost suffix is re-applied from it.
        self.engine.write(batch, false).map_err(|e| write_err("state machine", e))?;
        // Watchers read the state once it is applied (and persisted).
        self.revision_tx.send_if_modified(|r| std::mem::replace(r, revision) != revision);
        if let Some(metrics) = &self.metrics {
            metrics.apply.observe(crate::runtime::now() - started);
        }
        // Proposers hear their results once the changes are written.
        for (responder, results) in answers {
            responder.send(results);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Nothing is copied: the state this meta names is already written
        // (apply wrote it before returning); the builder makes it durable.
        SnapshotBuilder { engine: self.engine.clone(), meta: self.meta_now(), last: self.snapshot.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, data: SnapshotData) -> Result<(), StorageError> {
        let body = unseal_snapshot(&data).map_err(|e| sm_err(std::io::Error::other(e)))?;
        let decoded: pb::StateSnapshot = decode("StateSnapshot", body).map_err(sm_err)?;
        let mut batch = WriteBatch::new();
        let new_state = replace_state(&self.engine, &mut batch, decoded)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.bookkeeping(&mut batch, &new_state, true);
        put_snapshot_record(&mut batch, meta);
        // Synced: the log before this point may be purged right after.
        self.engine.write(batch, true).map_err(|e| write_err("snapshot", e))?;
        let revision = new_state.revision();
        *write_state(&self.state) = new_state;
        *lock(&self.snapshot) = Some(meta.clone());
        self.revision_tx.send_replace(revision);
        crate::runtime::coverage::reached("snapshot-installed");
        Ok(())
    }

    /// The state as applied now. It runs between applies, so the state and
    /// the bookkeeping agree. Unchanged since the last snapshot, it is that
    /// snapshot (same meta); else it is a newer one, made durable here
    /// first, since openraft may purge the log up to what it is told.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let Some(last) = lock(&self.snapshot).clone() else {
            self.meta_only = 0;
            return Ok(None);
        };
        let meta = if last.last_log_id == self.last_applied {
            last
        } else {
            let meta = self.meta_now();
            let mut batch = WriteBatch::new();
            put_snapshot_record(&mut batch, &meta);
            self.engine.write(batch, true).map_err(|e| write_err("snapshot", e))?;
            record_newer(&self.snapshot, &meta);
            meta
        };
        let data = if self.meta_only > 0 {
            self.meta_only -= 1;
            Vec::new()
        } else {
            // The apply task is this one: it waits for the encoding
            // whether the lock is held or not.
            seal_snapshot(snapshot_bytes(&read_state(&self.state)))
        };
        Ok(Some(Snapshot { meta, snapshot: data }))
    }
}

/// The protobuf key of the checksum a Raft snapshot ends with: field 8,
/// wire type fixed32 (a `StateSnapshot` decoder skips it as unknown).
const CHECKSUM_KEY: u8 = (8 << 3) | 5;

/// Appends to `data` (an encoded `StateSnapshot`) the CRC-32 of its bytes,
/// as the last 5 bytes: what a member receiving it checks first.
pub fn seal_snapshot(mut data: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&data);
    data.push(CHECKSUM_KEY);
    data.extend_from_slice(&crc.to_le_bytes());
    data
}

/// Checks the checksum that [`seal_snapshot`] appended to a snapshot, and
/// returns the snapshot without it.
pub fn unseal_snapshot(data: &[u8]) -> Result<&[u8], String> {
    let Some(body_len) = data.len().checked_sub(5).filter(|n| data[*n] == CHECKSUM_KEY) else {
        return Err("the snapshot has no checksum".into());
    };
    let (body, trailer) = data.split_at(body_len);
    let sent = u32::from_le_bytes([trailer[1], trailer[2], trailer[3], trailer[4]]);
    let computed = crc32fast::hash(body);
    if sent != computed {
        return Err(format!("the snapshot's checksum is {computed:08x}, it was sent as {sent:08x}"));
    }
    Ok(body)
}

/// Adds to `batch` the record that names the latest durable snapshot.
fn put_snapshot_record(batch: &mut WriteBatch, meta: &SnapshotMeta) {
    let stored = pb::StoredSnapshot { meta: Some(codec::snapshot_meta_to_pb(meta)), data: Vec::new(), chunks: 0 };
    batch.put(CF_SM, KEY_SNAPSHOT, stored.encode_to_vec());
}

/// Makes the state applied when it was created durable, in a task of
/// openraft's own while applies go on.
pub struct SnapshotBuilder {
    engine: Arc<dyn Engine>,
    meta: SnapshotMeta,
    last: LastSnapshot,
}

/// The meta of the latest durable snapshot, shared by the store and its
/// builders.
type LastSnapshot = Arc<std::sync::Mutex<Option<SnapshotMeta>>>;

fn lock(last: &LastSnapshot) -> std::sync::MutexGuard<'_, Option<SnapshotMeta>> {
    last.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes `meta` the latest snapshot unless a newer one is (a builder may
/// finish after a later snapshot was made durable).
fn record_newer(last: &LastSnapshot, meta: &SnapshotMeta) {
    let mut last = lock(last);
    if last.as_ref().is_none_or(|l| l.last_log_id <= meta.last_log_id) {
        *last = Some(meta.clone());
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    /// The returned snapshot carries no bytes: openraft keeps only the meta
    /// of a built snapshot (core/sm/worker.rs, `build_snapshot`), and reads
    /// the bytes, when a follower needs them, from `get_current_snapshot`.
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let mut batch = WriteBatch::new();
        put_snapshot_record(&mut batch, &self.meta);
        // Synced, so every earlier write is durable too: the applies up to
        // the meta's log id, which were written unsynced.
        self.engine.write(batch, true).map_err(|e| write_err("snapshot", e))?;
        record_newer(&self.last, &self.meta);
        Ok(Snapshot { meta: self.meta.clone(), snapshot: Vec::new() })
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::PutRequest;
    use crate::proto::raft::v1::{command, Command};

    /// Hash, HashKV and Snapshot scan through [`scan_state`]: while the scan
    /// runs, an apply can take the state's write lock (it used to wait for
    /// the whole scan), and the scan sees the state of when it started.
    #[test]
    fn a_scan_of_the_whole_state_lets_applies_take_the_lock() {
        let shared: SharedState = Arc::new(RwLock::new(KvState::new()));
        let put = |key: &str| Command {
            request: Some(command::Request::Put(PutRequest {
                key: key.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
            ..Default::default()
        };
        write_state(&shared).apply(&put("a")).expect("a put");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let during = shared.clone();
        let (applied_meanwhile, revision_seen) = runtime
            .block_on(scan_state(&shared, move |view| {
                let applied = during.try_write().map(|mut state| state.apply(&put("b")).is_ok()).unwrap_or(false);
                (applied, view.revision())
            }))
            .expect("the scan runs");
        assert!(applied_meanwhile, "an apply could not take the lock while the state was scanned");
        assert_eq!(revision_seen, 2, "the scan saw a write made after it started");
        assert_eq!(read_state(&shared).revision(), 3);
    }
}
