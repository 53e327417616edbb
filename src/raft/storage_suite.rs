//! openraft's own storage test suite against our log and state-machine stores,
//! on both engines.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::state_store::StateMachineStore;
use super::types::{StorageError, TypeConfig};
use super::COLUMN_FAMILIES;
use crate::storage::sim_disk::SimDisk;

struct SimDiskBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, ()> for SimDiskBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachineStore), StorageError> {
        let engine: Arc<dyn crate::storage::Engine> = Arc::new(SimDisk::new());
        Ok(((), LogStore::new(engine.clone()), StateMachineStore::open(engine)?))
    }
}

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = crate::runtime::open_engine(dir.path(), &COLUMN_FAMILIES).expect("open rocksdb");
        Ok((dir, LogStore::new(engine.clone()), StateMachineStore::open(engine)?))
    }
}

#[test]
fn openraft_storage_suite_passes_on_simdisk() {
    Suite::test_all(SimDiskBuilder).unwrap();
}

#[test]
fn openraft_storage_suite_passes_on_rocksdb() {
    Suite::test_all(RocksBuilder).unwrap();
}

/// A replication read whose head was purged (a purge racing with
/// replication) must not return the entries after the hole: they would be
/// sent right after the purged one, and the follower's log would have a gap.
#[test]
fn a_log_read_never_returns_entries_after_a_hole() {
    use openraft::storage::RaftLogReader;
    use openraft::{CommittedLeaderId, EntryPayload};
    use prost::Message;

    use super::codec;
    use super::log_store::{index_key, CF_LOG};
    use super::types::{Entry, LogId};
    use crate::storage::{Engine, WriteBatch};

    let engine = Arc::new(SimDisk::new());
    let mut batch = WriteBatch::new();
    for index in 1..=10 {
        let entry = Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank };
        batch.put(CF_LOG, index_key(index), codec::entry_to_pb(&entry).encode_to_vec());
    }
    // Entries 1..=5 purged.
    batch.delete_range(CF_LOG, index_key(0), index_key(6));
    engine.write(batch, true).unwrap();
    let mut store = LogStore::new(engine);
    let read = |store: &mut LogStore, range: std::ops::Range<u64>| {
        futures::executor::block_on(store.limited_get_log_entries(range.start, range.end))
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect::<Vec<_>>()
    };
    assert_eq!(read(&mut store, 3..9), Vec::<u64>::new());
    assert_eq!(read(&mut store, 6..9), vec![6, 7, 8]);
}

/// A follower installing a snapshot of a compacted state must keep the
/// history after the compact revision, on disk as in memory (a reopened
/// store must be able to serve a read at a kept revision). Seed 10388 lost it.
#[test]
fn an_installed_snapshot_of_a_compacted_state_keeps_its_history_across_a_reopen() {
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::types::{Entry, LogId};
    use crate::proto::etcdserverpb::{CompactionRequest, PutRequest, RangeRequest};
    use crate::proto::raft::v1::{command::Request, Command, Proposal};

    let put = |i: u8| Request::Put(PutRequest { key: vec![b'k'], value: vec![i], ..Default::default() });
    let mut requests: Vec<Request> = (1..=6).map(put).collect();
    // Revisions 2..=7 hold the puts; history is kept from 5 on.
    requests.push(Request::Compaction(CompactionRequest { revision: 5, physical: false }));
    let entries = requests.into_iter().enumerate().map(|(i, request)| Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
        payload: EntryPayload::Normal(Proposal { commands: vec![Command { request: Some(request) }] }),
    });

    futures::executor::block_on(async {
        let mut leader = StateMachineStore::open(Arc::new(SimDisk::new())).unwrap();
        leader.apply(entries).await.unwrap();
        let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();

        let engine: Arc<dyn crate::storage::Engine> = Arc::new(SimDisk::new());
        let mut follower = StateMachineStore::open(engine.clone()).unwrap();
        follower.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap();
        let reopened = StateMachineStore::open(engine).unwrap();

        let hash = |s: &StateMachineStore| super::state_store::read_state(&s.shared_state()).hash();
        assert_eq!(hash(&leader), hash(&reopened), "the reopened follower differs from the leader");
        let at_5 = super::state_store::read_state(&reopened.shared_state())
            .range(&RangeRequest { key: vec![b'k'], revision: 5, ..Default::default() })
            .expect("revision 5 is kept");
        assert_eq!(at_5.kvs[0].value, vec![4]);
    });
}

/// A node that led when it stopped comes back with its vote granted but not
/// committed (so openraft does not resume leading without an election); a
/// follower's vote for another leader is kept as it was.
#[test]
fn a_restarted_leader_comes_back_with_its_vote_uncommitted() {
    use openraft::storage::RaftLogStorage;

    use super::types::Vote;

    futures::executor::block_on(async {
        let engine: Arc<dyn crate::storage::Engine> = Arc::new(SimDisk::new());
        let mut log = LogStore::new(engine.clone());
        super::log_store::demote_restarted_leader(&engine, 1).expect("no vote yet is fine");
        assert_eq!(log.read_vote().await.unwrap(), None);

        log.save_vote(&Vote::new_committed(4, 1)).await.unwrap();
        super::log_store::demote_restarted_leader(&engine, 1).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(4, 1)), "its own vote, no longer committed");

        log.save_vote(&Vote::new_committed(5, 2)).await.unwrap();
        super::log_store::demote_restarted_leader(&engine, 1).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new_committed(5, 2)), "a vote for another leader");
    });
}

/// A built snapshot larger than a chunk is written in chunks and reads back
/// whole, after a reopen too; building the next one drops the chunks of the
/// one before.
#[test]
fn a_large_snapshot_is_stored_in_chunks_and_reads_back_whole() {
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::types::{Entry, LogId};
    use crate::proto::etcdserverpb::PutRequest;
    use crate::proto::raft::v1::{command::Request, Command, Proposal};

    let entry = |index: u64, key: u8| Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            commands: vec![Command {
                request: Some(Request::Put(PutRequest {
                    key: vec![key],
                    value: vec![key; 900_000],
                    ..Default::default()
                })),
            }],
        }),
    };
    let chunk_keys = |engine: &Arc<dyn crate::storage::Engine>| {
        engine.scan("sm_meta", b"snapshot_chunk/", Some(b"snapshot_chunk0"), usize::MAX).unwrap().len()
    };
    futures::executor::block_on(async {
        let engine: Arc<dyn crate::storage::Engine> = Arc::new(SimDisk::new());
        let mut sm = StateMachineStore::open(engine.clone()).unwrap();
        sm.apply((1..=3).map(|i| entry(i, i as u8))).await.unwrap();
        let first = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let chunks = |len: usize| len.div_ceil(1024 * 1024);
        assert!(first.snapshot.get_ref().len() > 2 * 1024 * 1024, "keys and history of 2.7 MB of values");
        assert_eq!(chunk_keys(&engine), chunks(first.snapshot.get_ref().len()), "in 1 MiB chunks");
        let stored = sm.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(stored.snapshot.get_ref(), first.snapshot.get_ref());

        sm.apply([entry(4, 4)]).await.unwrap();
        let second = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_ne!(second.meta.snapshot_id, first.meta.snapshot_id);
        assert_eq!(
            chunk_keys(&engine),
            chunks(second.snapshot.get_ref().len()),
            "only the newest one's chunks are kept"
        );

        let mut reopened = StateMachineStore::open(engine.clone()).unwrap();
        let stored = reopened.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(stored.meta, second.meta);
        assert_eq!(stored.snapshot.get_ref(), second.snapshot.get_ref());
    });
}

/// A snapshot build that fails halfway (here: the disk refuses its chunk
/// writes) leaves the snapshot stored before it whole, after a power loss
/// too: the record that names a snapshot is written only after its chunks.
#[test]
fn a_snapshot_build_that_fails_halfway_leaves_the_previous_snapshot_whole() {
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
    use openraft::{CommittedLeaderId, EntryPayload};
    use rand::SeedableRng;

    use super::types::{Entry, LogId};
    use crate::proto::etcdserverpb::PutRequest;
    use crate::proto::raft::v1::{command::Request, Command, Proposal};
    use crate::storage::sim_disk::DiskFaults;

    let entry = |index: u64| Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            commands: vec![Command {
                request: Some(Request::Put(PutRequest {
                    key: vec![index as u8],
                    value: vec![7; 64],
                    ..Default::default()
                })),
            }],
        }),
    };
    futures::executor::block_on(async {
        let disk = Arc::new(SimDisk::new());
        let engine: Arc<dyn crate::storage::Engine> = disk.clone();
        let mut sm = StateMachineStore::open(engine.clone()).unwrap();
        sm.set_chunk_bytes(64);
        sm.apply([entry(1)]).await.unwrap();
        let stored = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();

        sm.apply([entry(2)]).await.unwrap();
        let mut builder = sm.get_snapshot_builder().await;
        disk.set_faults(DiskFaults { fail_writes: true, ..Default::default() });
        assert!(builder.build_snapshot().await.is_err());
        disk.set_faults(DiskFaults::default());
        disk.power_loss(&mut rand::rngs::StdRng::seed_from_u64(7));

        let mut reopened = StateMachineStore::open(engine).unwrap();
        let current = reopened.get_current_snapshot().await.expect("readable").expect("a snapshot");
        assert_eq!(current.meta, stored.meta);
        assert_eq!(current.snapshot.get_ref(), stored.snapshot.get_ref());
    });
}
