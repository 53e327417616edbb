//! openraft's own storage test suite against our log and state-machine stores,
//! on both engines.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::state_store::StateMachineStore;
use super::types::{Entry, TypeConfig};
use crate::storage::checked::Checked;
use crate::storage::sim_disk::SimDisk;

/// Committed entries as openraft hands them to the state machine, with no
/// proposer waiting for their results.
fn stream(
    entries: impl IntoIterator<Item = Entry>,
) -> impl futures::Stream<Item = Result<openraft::storage::EntryResponder<TypeConfig>, std::io::Error>> + Unpin {
    futures::stream::iter(entries.into_iter().map(|entry| Ok((entry, None))).collect::<Vec<_>>())
}

/// The state machine over `engine`, its failure as the suite reports it.
fn open_sm(engine: Arc<dyn crate::storage::Engine>) -> Result<StateMachineStore, openraft::StorageError<TypeConfig>> {
    StateMachineStore::open(engine).map_err(|e| {
        openraft::StorageError::from_io_error(openraft::ErrorSubject::StateMachine, openraft::ErrorVerb::Read, e)
    })
}

struct SimDiskBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, ()> for SimDiskBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachineStore), openraft::StorageError<TypeConfig>> {
        let engine: Arc<dyn crate::storage::Engine> = Arc::new(Checked::new(Arc::new(SimDisk::new())));
        Ok(((), LogStore::new(engine.clone()), open_sm(engine)?))
    }
}

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), openraft::StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = super::open_data(dir.path()).expect("open rocksdb");
        Ok((dir, LogStore::new(engine.clone()), open_sm(engine)?))
    }
}

#[tokio::test]
async fn openraft_storage_suite_passes_on_simdisk() {
    Suite::test_all(SimDiskBuilder).await.unwrap();
}

#[tokio::test]
async fn openraft_storage_suite_passes_on_rocksdb() {
    Suite::test_all(RocksBuilder).await.unwrap();
}

/// A replication read whose head was purged (a purge racing with
/// replication) must not return the entries after the hole: they would be
/// sent right after the purged one, and the follower's log would have a gap.
#[test]
fn a_log_read_never_returns_entries_after_a_hole() {
    use crate::raft::types::{EntryPayload, LeaderId};
    use openraft::storage::RaftLogReader;
    use prost::Message;

    use super::codec;
    use super::log_store::{index_key, CF_LOG};
    use super::types::{Entry, LogId};
    use crate::storage::{Engine, WriteBatch};

    let engine = Arc::new(SimDisk::new());
    let mut batch = WriteBatch::new();
    for index in 1..=10 {
        let entry = Entry { log_id: LogId::new(LeaderId { term: 1, node_id: 1 }, index), payload: EntryPayload::Blank };
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
    use crate::raft::types::{EntryPayload, LeaderId};
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

    use super::types::{Entry, LogId};
    use crate::proto::etcdserverpb::{
        AlarmRequest, AlarmType, AuthRoleAddRequest, AuthUserAddRequest, AuthUserGrantRoleRequest, CompactionRequest,
        LeaseGrantRequest, PutRequest, RangeRequest,
    };
    use crate::proto::raft::v1::{command::Request, AuthEnable, Command, Proposal};

    let put = |i: u8| Request::Put(PutRequest { key: vec![b'k'], value: vec![i], ..Default::default() });
    let mut requests: Vec<Request> = (1..=6).map(put).collect();
    // Revisions 2..=7 hold the puts; history is kept from 5 on.
    requests.push(Request::Compaction(CompactionRequest { revision: 5, physical: false }));
    requests.push(Request::LeaseGrant(LeaseGrantRequest { id: 9, ttl: 60 }));
    requests.push(Request::Put(PutRequest { key: vec![b'l'], value: vec![1], lease: 9, ..Default::default() }));
    // The auth store travels with the snapshot too.
    requests.push(Request::UserAdd(AuthUserAddRequest {
        name: "root".into(),
        hashed_password: "h".into(),
        ..Default::default()
    }));
    requests.push(Request::UserGrantRole(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }));
    requests.push(Request::RoleAdd(AuthRoleAddRequest { name: "app".into() }));
    requests.push(Request::AuthEnable(AuthEnable { token_key: vec![3; 32] }));
    // And the raised alarms, one of them raised and disarmed before.
    requests.push(Request::Alarm(AlarmRequest { action: 1, member_id: 3, alarm: AlarmType::Nospace as i32 }));
    requests.push(Request::Alarm(AlarmRequest { action: 2, member_id: 3, alarm: AlarmType::Nospace as i32 }));
    requests.push(Request::Alarm(AlarmRequest { action: 1, member_id: 2, alarm: AlarmType::Nospace as i32 }));
    let entries = requests.into_iter().enumerate().map(|(i, request)| Entry {
        log_id: LogId::new(LeaderId { term: 1, node_id: 1 }, i as u64 + 1),
        payload: EntryPayload::Normal(
            Proposal { commands: vec![Command { auth_revision: None, alarm_disarms: None, request: Some(request) }] }
                .into(),
        ),
    });

    futures::executor::block_on(async {
        let mut leader = StateMachineStore::open(Arc::new(SimDisk::new())).unwrap();
        leader.apply(stream(entries)).await.unwrap();
        leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let snapshot = leader.get_current_snapshot().await.unwrap().expect("a snapshot");
        let state = super::state_store::read_state(&leader.shared_state()).persisted();
        let copied = crate::proto::raft::v1::StateSnapshot {
            revision: state.revision,
            kvs: state.kvs,
            compact_revision: state.compact_revision,
            history: state.history,
            leases: state.leases.into_iter().map(|(id, ttl)| crate::proto::raft::v1::LeaseRecord { id, ttl }).collect(),
            auth: state.auth,
            alarms: state.alarms,
            alarm_disarms: state.alarm_disarms,
        };
        let sealed = super::state_store::seal_snapshot(prost::Message::encode_to_vec(&copied));
        assert_eq!(snapshot.snapshot, sealed, "encoded in place as copied, then sealed");
        let mut flipped = sealed.clone();
        flipped[3] ^= 0x10;
        assert!(super::state_store::unseal_snapshot(&flipped).is_err(), "a flipped bit passed the checksum");

        let engine: Arc<dyn crate::storage::Engine> = Arc::new(SimDisk::new());
        let mut follower = StateMachineStore::open(engine.clone()).unwrap();
        follower.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap();
        let reopened = StateMachineStore::open(engine).unwrap();

        let hash = |s: &StateMachineStore| super::state_store::read_state(&s.shared_state()).hash();
        assert_eq!(hash(&leader), hash(&reopened), "the reopened follower differs from the leader");
        let auth = |s: &StateMachineStore| super::state_store::read_state(&s.shared_state()).auth().clone();
        assert!(auth(&reopened).enabled(), "the auth store was not installed");
        assert_eq!(auth(&leader), auth(&reopened));
        let alarms = |s: &StateMachineStore| super::state_store::read_state(&s.shared_state()).alarms();
        assert_eq!(alarms(&reopened).len(), 1, "the alarm was not installed");
        let disarms = |s: &StateMachineStore| super::state_store::read_state(&s.shared_state()).alarm_disarms();
        assert_eq!((disarms(&leader), disarms(&reopened)), (1, 1), "the disarm count was not installed");
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
        assert_eq!(openraft::storage::RaftLogReader::read_vote(&mut log).await.unwrap(), None);

        log.save_vote(&Vote::new_committed(4, 1)).await.unwrap();
        super::log_store::demote_restarted_leader(&engine, 1).unwrap();
        assert_eq!(
            openraft::storage::RaftLogReader::read_vote(&mut log).await.unwrap(),
            Some(Vote::new(4, 1)),
            "its own vote, no longer committed"
        );

        log.save_vote(&Vote::new_committed(5, 2)).await.unwrap();
        super::log_store::demote_restarted_leader(&engine, 1).unwrap();
        assert_eq!(
            openraft::storage::RaftLogReader::read_vote(&mut log).await.unwrap(),
            Some(Vote::new_committed(5, 2)),
            "a vote for another leader"
        );
    });
}

/// A log entry at `index` of term 1 that puts `value_len` bytes under `[key]`.
fn put_entry(index: u64, key: u8, value_len: usize) -> super::types::Entry {
    use crate::proto::etcdserverpb::PutRequest;
    use crate::proto::raft::v1::{command::Request, Command, Proposal};

    let put = PutRequest { key: vec![key], value: vec![key; value_len], ..Default::default() };
    super::types::Entry {
        log_id: super::types::LogId::new(crate::raft::types::LeaderId { term: 1, node_id: 1 }, index),
        payload: openraft::EntryPayload::Normal(
            Proposal {
                commands: vec![Command { auth_revision: None, alarm_disarms: None, request: Some(Request::Put(put)) }],
            }
            .into(),
        ),
    }
}

/// A membership entry at `index` of term 1 whose voters are `voters`.
fn membership_entry(index: u64, voters: &[u64]) -> super::types::Entry {
    let nodes = voters.iter().map(|&id| (id, super::types::Member { name: format!("m{id}"), ..Default::default() }));
    let membership = super::types::Membership::new(
        vec![voters.iter().copied().collect()],
        nodes.collect::<std::collections::BTreeMap<_, _>>(),
    )
    .expect("every voter has a node");
    super::types::Entry {
        log_id: super::types::LogId::new(crate::raft::types::LeaderId { term: 1, node_id: 1 }, index),
        payload: openraft::EntryPayload::Membership(membership),
    }
}

/// The membership a reopened state machine reports is the last one it
/// applied, also when the batches after it did not write it again (apply
/// writes the membership record only in a batch that changes it), and after
/// a power loss that keeps any prefix of the unsynced batches.
#[test]
fn a_reopened_state_machine_has_the_last_applied_membership() {
    use openraft::storage::RaftStateMachine;
    use rand::SeedableRng;

    for seed in 0..20 {
        futures::executor::block_on(async {
            let disk = Arc::new(SimDisk::new());
            let engine: Arc<dyn crate::storage::Engine> = disk.clone();
            let mut sm = StateMachineStore::open(engine.clone()).unwrap();
            sm.apply(stream([membership_entry(1, &[1])])).await.unwrap();
            sm.apply(stream((2..=3).map(|i| put_entry(i, i as u8, 10)))).await.unwrap();
            sm.apply(stream([membership_entry(4, &[1, 2, 3])])).await.unwrap();
            for i in 5..=7 {
                sm.apply(stream([put_entry(i, i as u8, 10)])).await.unwrap();
            }
            let (applied, membership) = StateMachineStore::open(engine.clone()).unwrap().applied_state().await.unwrap();
            assert_eq!(applied.map(|id| id.index), Some(7));
            assert_eq!(membership.log_id().map(|id| id.index), Some(4), "seed {seed}: reopened without a power loss");
            assert_eq!(membership.voter_ids().collect::<Vec<_>>(), vec![1, 2, 3]);

            disk.power_loss(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let (applied, membership) = StateMachineStore::open(engine).unwrap().applied_state().await.unwrap();
            let expected = match applied.map(|id| id.index) {
                None => None,
                Some(1..=3) => Some(1),
                Some(_) => Some(4),
            };
            assert_eq!(membership.log_id().map(|id| id.index), expected, "seed {seed}: applied up to {applied:?}");
        });
    }
}

/// A built snapshot names the state applied when it was asked for; its bytes
/// (read through `get_current_snapshot`) are that state, and installed on
/// another store they give the same state. Once more is applied, the current
/// snapshot is a newer one, and a reopened store serves it again.
#[test]
fn the_current_snapshot_is_the_applied_state() {
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

    use super::state_store::read_state;

    futures::executor::block_on(async {
        let engine: Arc<dyn crate::storage::Engine> = Arc::new(SimDisk::new());
        let mut sm = StateMachineStore::open(engine.clone()).unwrap();
        assert!(sm.get_current_snapshot().await.unwrap().is_none(), "none before the first build");
        sm.apply(stream((1..=3).map(|i| put_entry(i, i as u8, 100)))).await.unwrap();
        let built = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id.map(|id| id.index), Some(3));
        let current = sm.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(current.meta, built.meta, "nothing applied since: the built snapshot");

        let mut other = StateMachineStore::open(Arc::new(SimDisk::new())).unwrap();
        other.install_snapshot(&current.meta, current.snapshot).await.unwrap();
        let hash = |s: &StateMachineStore| read_state(&s.shared_state()).hash();
        assert_eq!(hash(&other), hash(&sm));

        sm.apply(stream([put_entry(4, 4, 100)])).await.unwrap();
        let newer = sm.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(newer.meta.last_log_id.map(|id| id.index), Some(4));
        assert_ne!(super::codec::snapshot_id(&newer.meta), super::codec::snapshot_id(&built.meta));

        let mut reopened = StateMachineStore::open(engine).unwrap();
        let served = reopened.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(served.meta, newer.meta);
        assert_eq!(served.snapshot, newer.snapshot);
    });
}

/// What a snapshot names survives a power loss: the applies before it were
/// written unsynced, and openraft purges the log behind a snapshot, so the
/// snapshot must make them durable (built, or served as the current one).
#[test]
fn a_snapshot_makes_the_state_it_names_durable() {
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
    use rand::SeedableRng;

    for seed in 0..20 {
        futures::executor::block_on(async {
            let disk = Arc::new(SimDisk::new());
            let engine: Arc<dyn crate::storage::Engine> = disk.clone();
            let mut sm = StateMachineStore::open(engine.clone()).unwrap();
            sm.apply(stream((1..=3).map(|i| put_entry(i, i as u8, 10)))).await.unwrap();
            sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
            sm.apply(stream((4..=5).map(|i| put_entry(i, i as u8, 10)))).await.unwrap();
            disk.power_loss(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let mut reopened = StateMachineStore::open(engine.clone()).unwrap();
            let (applied, _) = reopened.applied_state().await.unwrap();
            assert!(applied.unwrap().index >= 3, "seed {seed}: the built snapshot's state was lost");

            reopened.apply(stream((applied.unwrap().index + 1..=7).map(|i| put_entry(i, i as u8, 10)))).await.unwrap();
            let current = reopened.get_current_snapshot().await.unwrap().expect("a snapshot");
            assert_eq!(current.meta.last_log_id.map(|id| id.index), Some(7));
            disk.power_loss(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let mut again = StateMachineStore::open(engine).unwrap();
            let (applied, _) = again.applied_state().await.unwrap();
            assert_eq!(applied.map(|id| id.index), Some(7), "seed {seed}: the served snapshot's state was lost");
        });
    }
}

/// openraft's startup reads the current snapshot's meta only, so a node
/// spares it the bytes (`meta_only_at_startup`); the startup must be the
/// call that uses that up, or a follower could later be sent an empty
/// snapshot. After it, the current snapshot has its bytes again.
#[test]
fn openraft_startup_uses_up_the_meta_only_snapshot() {
    use openraft::storage::{RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine, StorageHelper};

    use super::types::Vote;

    futures::executor::block_on(async {
        let engine: Arc<dyn crate::storage::Engine> = Arc::new(SimDisk::new());
        let mut log = LogStore::new(engine.clone());
        log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
        let mut sm = StateMachineStore::open(engine.clone()).unwrap();
        sm.apply(stream((1..=3).map(|i| put_entry(i, i as u8, 100)))).await.unwrap();
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let full = sm.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert!(!full.snapshot.is_empty());

        let mut sm = StateMachineStore::open(engine.clone()).unwrap();
        sm.meta_only_at_startup();
        let state = StorageHelper::new(&mut log, &mut sm).get_initial_state().await.unwrap();
        assert_eq!(state.snapshot_meta, full.meta, "startup saw the snapshot's meta");
        let after = sm.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(after.snapshot, full.snapshot, "bytes again after the startup");
    });
}

/// Reads the log store serves from its recent entries in memory equal what
/// the engine holds, through appends, truncations (a new leader's entries
/// replacing a suffix) and purges.
#[test]
fn reads_of_recent_entries_equal_reads_of_the_engine() {
    use crate::raft::types::LeaderId;
    use openraft::storage::{RaftLogReader, RaftLogStorage};
    use rand::{Rng, SeedableRng};

    use super::types::LogId;

    let engine: Arc<dyn crate::storage::Engine> = Arc::new(SimDisk::new());
    // The state machine holds everything: purges are written at once.
    mark_applied(&engine, 1_000_000);
    let mut store = LogStore::new(engine.clone());
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let (mut first, mut next, mut term) = (1u64, 1u64, 1u64);
    let encoded = |entries: Vec<super::types::Entry>| {
        entries.iter().map(|e| prost::Message::encode_to_vec(&super::codec::entry_to_pb(e))).collect::<Vec<_>>()
    };
    futures::executor::block_on(async {
        for _ in 0..300 {
            match rng.gen_range(0..10) {
                0 if next > first + 1 => {
                    let since = rng.gen_range(first + 1..next);
                    term += 1;
                    store
                        .truncate_after(Some(LogId::new(LeaderId { term: term - 1, node_id: 1 }, since - 1)))
                        .await
                        .unwrap();
                    next = since;
                }
                1 if next > first + 1 => {
                    let upto = rng.gen_range(first..next - 1);
                    store.purge(LogId::new(LeaderId { term, node_id: 1 }, upto)).await.unwrap();
                    first = upto + 1;
                }
                _ => {
                    let count = rng.gen_range(1..5);
                    let entries: Vec<_> = (next..next + count)
                        .map(|index| {
                            let mut entry = put_entry(index, rng.gen(), rng.gen_range(0..64));
                            entry.log_id.leader_id = LeaderId { term, node_id: 1 };
                            entry
                        })
                        .collect();
                    store.write_entries(entries).unwrap();
                    next += count;
                }
            }
            let mut stored = LogStore::new(engine.clone());
            for _ in 0..5 {
                let start = rng.gen_range(first.saturating_sub(2)..next + 2);
                let end = rng.gen_range(start..next + 3);
                let cached = store.try_get_log_entries(start..end).await.unwrap();
                assert_eq!(encoded(cached), encoded(stored.try_get_log_entries(start..end).await.unwrap()));
            }
        }
        let held = store.try_get_log_entries(next - 1..next).await.unwrap();
        assert_eq!(held.len(), 1, "the newest entry is kept");
    });
}

#[test]
fn a_data_dir_of_another_format_version_is_refused_at_open() {
    use crate::storage::{Engine, WriteBatch};
    let engine: Arc<dyn Engine> = Arc::new(SimDisk::new());
    StateMachineStore::open(engine.clone()).expect("a new data dir opens");
    assert_eq!(
        engine.get(super::state_store::CF_SM, b"format_version").unwrap(),
        Some(super::state_store::FORMAT_VERSION.to_be_bytes().to_vec()),
        "opening records the version"
    );
    StateMachineStore::open(engine.clone()).expect("its own version opens");
    let mut batch = WriteBatch::new();
    batch.put(super::state_store::CF_SM, b"format_version".to_vec(), 3u32.to_be_bytes().to_vec());
    engine.write(batch, true).unwrap();
    let refused = StateMachineStore::open(engine).err().expect("version 3 was opened").to_string();
    assert!(refused.contains("format version 3, this build reads version 2"), "{refused}");
}

/// Flips one bit of the value `cf`/`key` holds on `disk`, below any checksum.
fn flip_a_bit(disk: &SimDisk, cf: &'static str, key: &[u8]) {
    use crate::storage::{Engine, WriteBatch};
    let mut value = disk.get(cf, key).unwrap().expect("the record exists");
    value[0] ^= 0x10;
    let mut batch = WriteBatch::new();
    batch.put(cf, key.to_vec(), value);
    disk.write(batch, true).unwrap();
}

#[test]
fn a_version_1_data_dir_gets_checksums_and_keeps_its_records() {
    use crate::storage::{Engine, WriteBatch};
    let disk = Arc::new(SimDisk::new());
    let raw: Arc<dyn Engine> = disk.clone();
    // What version 1 wrote: the same records, without checksums.
    StateMachineStore::open(raw.clone()).unwrap();
    mark_applied(&raw, 7);
    let mut batch = WriteBatch::new();
    batch.put(super::state_store::CF_SM, b"format_version".to_vec(), 1u32.to_be_bytes().to_vec());
    raw.write(batch, true).unwrap();
    LogStore::new(raw.clone()).write_entries((1..=3).map(|i| put_entry(i, 1, 8))).unwrap();
    let applied = raw.get(super::state_store::CF_SM, b"applied").unwrap();

    super::state_store::seal_unchecked_records(raw.as_ref()).unwrap();
    let checked: Arc<dyn Engine> = Arc::new(Checked::new(disk.clone()));
    assert_eq!(checked.get(super::state_store::CF_SM, b"applied").unwrap(), applied);
    assert_eq!(
        checked.get(super::state_store::CF_SM, b"format_version").unwrap(),
        Some(super::state_store::FORMAT_VERSION.to_be_bytes().to_vec())
    );
    StateMachineStore::open(checked.clone()).expect("the upgraded data dir opens");
    let entries = futures::executor::block_on(async {
        use openraft::storage::RaftLogReader;
        LogStore::new(checked.clone()).try_get_log_entries(1..4).await.unwrap()
    });
    assert_eq!(entries.len(), 3);
    // A second open finds it upgraded and changes nothing.
    let before = disk.export(super::state_store::CF_SM).unwrap();
    super::state_store::seal_unchecked_records(raw.as_ref()).unwrap();
    assert_eq!(disk.export(super::state_store::CF_SM).unwrap(), before);
}

#[test]
fn a_data_dir_written_before_its_first_start_is_not_sealed_twice() {
    use crate::storage::{Engine, WriteBatch};
    // What `restore` does: open a new data dir, write state, and only then
    // does the node start and open it again.
    let disk = Arc::new(SimDisk::new());
    super::state_store::seal_unchecked_records(disk.as_ref()).unwrap();
    let checked: Arc<dyn Engine> = Arc::new(Checked::new(disk.clone()));
    let mut batch = WriteBatch::new();
    batch.put(super::state_store::CF_KV, b"k".to_vec(), b"restored".to_vec());
    checked.write(batch, true).unwrap();
    super::state_store::seal_unchecked_records(disk.as_ref()).unwrap();
    assert_eq!(checked.get(super::state_store::CF_KV, b"k").unwrap().as_deref(), Some(&b"restored"[..]));
}

#[test]
fn a_damaged_state_record_stops_the_open() {
    let disk = Arc::new(SimDisk::new());
    let checked: Arc<dyn crate::storage::Engine> = Arc::new(Checked::new(disk.clone()));
    StateMachineStore::open(checked.clone()).unwrap();
    mark_applied(&checked, 7);
    flip_a_bit(&disk, super::state_store::CF_SM, b"applied");
    let refused = StateMachineStore::open(checked).err().expect("a damaged record was read as valid").to_string();
    assert!(refused.contains("sm_meta/applied fails its checksum"), "{refused}");
}

#[test]
fn a_damaged_log_entry_is_never_read_as_valid() {
    use openraft::storage::RaftLogReader;
    let disk = Arc::new(SimDisk::new());
    let checked: Arc<dyn crate::storage::Engine> = Arc::new(Checked::new(disk.clone()));
    LogStore::new(checked.clone()).write_entries((1..=5).map(|i| put_entry(i, 1, 8))).unwrap();
    flip_a_bit(&disk, super::log_store::CF_LOG, &super::log_store::index_key(3));
    futures::executor::block_on(async {
        // A restarted store reads from the disk, not from its recent entries.
        let mut restarted = LogStore::new(checked.clone());
        let err = restarted.try_get_log_entries(1..6).await.expect_err("a damaged entry was read");
        assert!(err.to_string().contains("fails its checksum"), "{err}");
        assert_eq!(restarted.try_get_log_entries(4..6).await.unwrap().len(), 2, "the others read");
    });
}

/// Records in `engine` that the state machine applied up to `index`.
fn mark_applied(engine: &Arc<dyn crate::storage::Engine>, index: u64) {
    use crate::raft::types::LeaderId;
    let id = super::types::LogId::new(LeaderId { term: 1, node_id: 1 }, index);
    let mut batch = crate::storage::WriteBatch::new();
    batch.put(
        super::state_store::CF_SM,
        b"applied".to_vec(),
        prost::Message::encode_to_vec(&super::codec::log_id_to_pb(&id)),
    );
    engine.write(batch, true).unwrap();
}

#[test]
fn a_purge_past_the_state_machine_is_written_only_once_it_holds_that_far() {
    use crate::raft::types::LeaderId;
    use openraft::storage::{RaftLogReader, RaftLogStorage};
    let engine: Arc<dyn crate::storage::Engine> = Arc::new(SimDisk::new());
    let mut store = LogStore::new(engine.clone());
    store.write_entries((1..=10).map(|i| put_entry(i, 1, 8))).unwrap();
    let upto = super::types::LogId::new(LeaderId { term: 1, node_id: 1 }, 6);
    futures::executor::block_on(async {
        // openraft asked for it before the state machine got there (a
        // snapshot being installed): it sees the purge, the disk does not.
        store.purge(upto).await.unwrap();
        assert_eq!(store.get_log_state().await.unwrap().last_purged_log_id, Some(upto));
        assert_eq!(store.try_get_log_entries(0..20).await.unwrap().len(), 4);
        let mut restarted = LogStore::new(engine.clone());
        assert_eq!(restarted.get_log_state().await.unwrap().last_purged_log_id, None, "purged past the applied state");
        assert_eq!(restarted.try_get_log_entries(0..20).await.unwrap().len(), 10);
        // The state machine caught up: the next purge (or append) writes it.
        mark_applied(&engine, 6);
        store.purge(upto).await.unwrap();
        let mut restarted = LogStore::new(engine.clone());
        assert_eq!(restarted.get_log_state().await.unwrap().last_purged_log_id, Some(upto));
        assert_eq!(restarted.try_get_log_entries(0..20).await.unwrap().len(), 4);
    });
}

#[test]
fn entries_appended_after_a_purge_put_off_restart_after_the_purge() {
    use crate::raft::types::LeaderId;
    use openraft::storage::{RaftLogReader, RaftLogStorage};
    // 8..=10 are stale (an old leader's); the new leader sent a snapshot up to
    // 20 and then 21..=23. openraft 0.9 truncates nothing (no entry at 20).
    let (engine, mut store, snapshot) = stale_entries_below_a_snapshot();
    let newer = |index| {
        let mut entry = put_entry(index, 2, 8);
        entry.log_id.leader_id = LeaderId { term: 2, node_id: 2 };
        entry
    };
    futures::executor::block_on(async {
        store.purge(snapshot).await.unwrap();
        // A new leader's entries arrive while the install is still under way.
        store.write_entries((21..=23).map(newer)).unwrap();
        // The install finishes (synced), then the member crashes.
        mark_applied(&engine, 20);
        // A store that never saw the purge (a restart) must not see 8..=10.
        let mut restarted = LogStore::new(engine.clone());
        let state = restarted.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(snapshot), "the log restarts after the snapshot");
        assert_eq!(state.last_log_id.map(|id| id.index), Some(23));
        let held: Vec<u64> =
            restarted.try_get_log_entries(0..30).await.unwrap().iter().map(|e| e.log_id.index).collect();
        assert_eq!(held, vec![21, 22, 23], "no stale entry is served");
        // The next append writes the purge and drops the record.
        restarted.write_entries([newer(24)]).unwrap();
        restarted.purge(snapshot).await.unwrap();
        let mut again = LogStore::new(engine.clone());
        assert_eq!(again.get_log_state().await.unwrap().last_purged_log_id, Some(snapshot));
        assert_eq!(again.try_get_log_entries(0..30).await.unwrap().len(), 4);
        assert_eq!(engine.get(super::log_store::CF_META, b"purge_put_off").unwrap(), None, "record dropped");
    });
}

#[test]
fn a_log_that_continues_past_a_lost_snapshot_is_refused_at_restart() {
    use openraft::storage::RaftLogStorage;
    let (engine, mut store, snapshot) = stale_entries_below_a_snapshot();
    futures::executor::block_on(async {
        store.purge(snapshot).await.unwrap();
        store.write_entries((21..=23).map(|i| put_entry(i, 2, 8))).unwrap();
        // The state machine never got to 20.
        let refused = LogStore::new(engine.clone()).get_log_state().await.expect_err("opened a log with a gap");
        assert!(refused.to_string().contains("remove this member and add it back"), "{refused}");
    });
}

/// A log store holding entries 1..=10 with the state machine at 7, and the id
/// of a newer leader's snapshot up to 20 that it is about to receive.
fn stale_entries_below_a_snapshot() -> (Arc<dyn crate::storage::Engine>, LogStore, super::types::LogId) {
    let engine: Arc<dyn crate::storage::Engine> = Arc::new(SimDisk::new());
    mark_applied(&engine, 7);
    let store = LogStore::new(engine.clone());
    store.write_entries((1..=10).map(|i| put_entry(i, 1, 8))).unwrap();
    (engine, store, super::types::LogId::new(crate::raft::types::LeaderId { term: 2, node_id: 2 }, 20))
}
