//! The state machine against a deliberately naive model: a map of key to
//! (value, create, mod, version) and a revision counter, driven by random
//! command sequences on a small key set (contention is where bugs are).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    DeleteRange(u8, u8),
    /// if version(key) == v then put(key, val) else get(key)
    Cas(u8, i64, u8),
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4u8, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        (0..4u8).prop_map(Op::Delete),
        (0..4u8, 0..5u8).prop_map(|(a, b)| Op::DeleteRange(a, b)),
        (0..4u8, 0..3i64, any::<u8>()).prop_map(|(k, ver, v)| Op::Cas(k, ver, v)),
    ]
}

fn command(op: &Op) -> Command {
    let request = match op {
        Op::Put(k, v) => command::Request::Put(PutRequest { key: key(*k), value: vec![*v], ..Default::default() }),
        Op::Delete(k) => command::Request::DeleteRange(DeleteRangeRequest { key: key(*k), ..Default::default() }),
        Op::DeleteRange(a, b) => {
            command::Request::DeleteRange(DeleteRangeRequest { key: key(*a), range_end: key(*b), ..Default::default() })
        }
        Op::Cas(k, ver, v) => command::Request::Txn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Version as i32,
                key: key(*k),
                target_union: Some(TargetUnion::Version(*ver)),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp {
                request: Some(Request::RequestPut(PutRequest { key: key(*k), value: vec![*v], ..Default::default() })),
            }],
            failure: vec![RequestOp {
                request: Some(Request::RequestRange(RangeRequest { key: key(*k), ..Default::default() })),
            }],
        }),
    };
    Command { request: Some(request) }
}

#[derive(Default, Debug)]
struct Model {
    revision: i64,
    keys: BTreeMap<Vec<u8>, (Vec<u8>, i64, i64, i64)>,
}

impl Model {
    fn put(&mut self, k: Vec<u8>, v: u8) {
        self.revision += 1;
        let (create, version) = match self.keys.get(&k) {
            Some((_, c, _, ver)) => (*c, ver + 1),
            None => (self.revision, 1),
        };
        self.keys.insert(k, (vec![v], create, self.revision, version));
    }

    /// Returns (succeeded, deleted) for the op, the model's view of the result.
    fn apply(&mut self, op: &Op) -> (bool, i64) {
        match op {
            Op::Put(k, v) => {
                self.put(key(*k), *v);
                (true, 0)
            }
            Op::Delete(k) => self.delete(|x| x == key(*k).as_slice()),
            Op::DeleteRange(a, b) => {
                let (a, b) = (key(*a), key(*b));
                self.delete(|x| x >= a.as_slice() && x < b.as_slice())
            }
            Op::Cas(k, ver, v) => {
                let current = self.keys.get(&key(*k)).map_or(0, |e| e.3);
                if current == *ver {
                    self.put(key(*k), *v);
                    (true, 0)
                } else {
                    (false, 0)
                }
            }
        }
    }

    fn delete(&mut self, inside: impl Fn(&[u8]) -> bool) -> (bool, i64) {
        let doomed: Vec<Vec<u8>> = self.keys.keys().filter(|k| inside(k)).cloned().collect();
        if !doomed.is_empty() {
            self.revision += 1;
        }
        for k in &doomed {
            self.keys.remove(k);
        }
        (true, doomed.len() as i64)
    }
}

proptest! {
    #[test]
    fn state_machine_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut state = KvState::new();
        let mut model = Model { revision: 1, ..Default::default() };
        for op in &ops {
            let applied = state.apply(&command(op)).expect("valid command");
            let (succeeded, deleted) = model.apply(op);
            prop_assert_eq!(applied.result.revision, model.revision, "revision after {:?}", op);
            match applied.result.response {
                Some(Response::Txn(t)) => prop_assert_eq!(t.succeeded, succeeded),
                Some(Response::DeleteRange(d)) => prop_assert_eq!(d.deleted, deleted),
                _ => {}
            }
        }
        let all = state.range(&RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() }).unwrap();
        let got: Vec<_> = all.kvs.iter().map(|kv| (kv.key.clone(), (kv.value.clone(), kv.create_revision, kv.mod_revision, kv.version))).collect();
        let want: Vec<_> = model.keys.clone().into_iter().collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(all.count, model.keys.len() as i64);
    }

    #[test]
    fn a_read_at_any_kept_revision_sees_the_state_of_then(ops in proptest::collection::vec(op(), 1..40)) {
        let all = |state: &KvState, revision| {
            state.range(&RangeRequest { key: vec![0], range_end: vec![0], revision, ..Default::default() }).unwrap().kvs
        };
        let mut state = KvState::new();
        let mut then = BTreeMap::new();
        then.insert(1, Vec::new());
        for op in &ops {
            state.apply(&command(op)).expect("valid command");
            then.insert(state.revision(), all(&state, 0));
        }
        for (revision, kvs) in &then {
            prop_assert_eq!(&all(&state, *revision), kvs, "at revision {}", revision);
        }
    }

    #[test]
    fn replaying_a_log_gives_the_same_hash(ops in proptest::collection::vec(op(), 1..40)) {
        let mut a = KvState::new();
        let mut b = KvState::new();
        for op in &ops {
            a.apply(&command(op)).unwrap();
            b.apply(&command(op)).unwrap();
        }
        prop_assert_eq!(a.hash(), b.hash());
        let restored = KvState::restore(a.persisted());
        prop_assert_eq!(restored.hash(), a.hash());
    }
}

#[test]
fn an_empty_store_is_the_same_however_it_is_made() {
    let restored = KvState::restore(Persisted::default());
    assert_eq!(KvState::default(), KvState::new());
    assert_eq!(restored, KvState::new());
    assert_eq!(restored.hash(), KvState::default().hash());
    assert_eq!(KvState::default().revision(), 1);
}

#[test]
fn invalid_commands_are_refused_without_changing_state() {
    let mut state = KvState::new();
    let cases: Vec<(Command, StateError)> = vec![
        (Command { request: None }, StateError::EmptyCommand),
        (command(&Op::Put(0, 1)).with_key(Vec::new()), StateError::EmptyKey),
        (
            Command {
                request: Some(command::Request::Txn(TxnRequest {
                    success: vec![
                        RequestOp {
                            request: Some(Request::RequestPut(PutRequest { key: key(0), ..Default::default() }))
                        };
                        MAX_TXN_OPS + 1
                    ],
                    ..Default::default()
                })),
            },
            StateError::TooManyOps,
        ),
        (
            Command {
                request: Some(command::Request::Txn(TxnRequest {
                    success: vec![
                        RequestOp {
                            request: Some(Request::RequestPut(PutRequest { key: key(0), ..Default::default() }))
                        };
                        2
                    ],
                    ..Default::default()
                })),
            },
            StateError::DuplicateKey,
        ),
        (
            Command {
                request: Some(command::Request::Put(PutRequest { key: key(0), lease: 7, ..Default::default() })),
            },
            StateError::LeaseNotFound,
        ),
        (
            Command {
                request: Some(command::Request::Put(PutRequest {
                    key: key(0),
                    ignore_value: true,
                    ..Default::default()
                })),
            },
            StateError::KeyNotFound,
        ),
    ];
    for (cmd, want) in cases {
        assert_eq!(state.apply(&cmd).unwrap_err(), want);
        assert_eq!(state, KvState::new());
    }
}

#[test]
fn a_txn_failing_midway_leaves_no_trace() {
    let mut state = KvState::new();
    state.apply(&command(&Op::Put(0, 1))).unwrap();
    state.apply(&command(&Op::Put(1, 1))).unwrap();
    let before = state.clone();
    let op = |request| RequestOp { request: Some(request) };
    // A put, a delete and a nested put succeed, then a put naming a missing
    // lease fails: nothing of it may remain.
    let txn = TxnRequest {
        success: vec![
            op(Request::RequestPut(PutRequest { key: key(0), value: vec![9], ..Default::default() })),
            op(Request::RequestDeleteRange(DeleteRangeRequest { key: key(1), ..Default::default() })),
            op(Request::RequestTxn(TxnRequest {
                success: vec![op(Request::RequestPut(PutRequest {
                    key: key(2),
                    value: vec![9],
                    ..Default::default()
                }))],
                ..Default::default()
            })),
            op(Request::RequestPut(PutRequest { key: key(3), lease: 5, ..Default::default() })),
        ],
        ..Default::default()
    };
    let refused = state.apply(&Command { request: Some(command::Request::Txn(txn)) }).unwrap_err();
    assert_eq!(refused, StateError::LeaseNotFound);
    assert_eq!(state, before);
    assert_eq!(state.hash(), before.hash());
}

#[test]
fn reads_at_past_revisions_see_the_past_until_compacted() {
    let mut state = KvState::new();
    state.apply(&command(&Op::Put(0, 1))).unwrap(); // revision 2
    state.apply(&command(&Op::Put(0, 2))).unwrap(); // 3
    state.apply(&command(&Op::DeleteRange(0, 1))).unwrap(); // 4
    let at = |state: &KvState, revision| {
        state
            .range(&RangeRequest { key: key(0), revision, ..Default::default() })
            .map(|r| r.kvs.iter().map(|kv| kv.value.clone()).collect::<Vec<_>>())
    };
    assert_eq!(at(&state, 1).unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(at(&state, 2).unwrap(), vec![vec![1]]);
    assert_eq!(at(&state, 3).unwrap(), vec![vec![2]]);
    assert_eq!(at(&state, 4).unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(at(&state, 5).unwrap_err(), StateError::FutureRevision);

    let compact = |revision| Command {
        request: Some(command::Request::Compaction(CompactionRequest { revision, physical: false })),
    };
    assert_eq!(state.apply(&compact(9)).unwrap_err(), StateError::FutureRevision);
    state.apply(&compact(3)).unwrap();
    assert_eq!(state.revision(), 4, "compaction does not bump the revision");
    assert_eq!(at(&state, 2).unwrap_err(), StateError::Compacted);
    assert_eq!(at(&state, 3).unwrap(), vec![vec![2]]);
    assert_eq!(state.apply(&compact(3)).unwrap_err(), StateError::Compacted);
    assert!(state.events_from(2).is_err());
    let kept: Vec<i64> = state.events_from(3).unwrap().map(|(rev, _)| *rev).collect();
    assert_eq!(kept, vec![3, 4]);
    assert_eq!(KvState::restore(state.persisted()), state);
}

fn grant(id: i64, ttl: i64) -> Command {
    Command { request: Some(command::Request::LeaseGrant(LeaseGrantRequest { id, ttl })) }
}

fn revoke(id: i64) -> Command {
    Command { request: Some(command::Request::LeaseRevoke(LeaseRevokeRequest { id })) }
}

fn put_with_lease(k: u8, lease: i64) -> Command {
    Command {
        request: Some(command::Request::Put(PutRequest { key: key(k), value: vec![k], lease, ..Default::default() })),
    }
}

#[test]
fn revoking_a_lease_deletes_its_keys_at_one_revision() {
    let mut state = KvState::new();
    assert_eq!(state.apply(&put_with_lease(0, 7)).unwrap_err(), StateError::LeaseNotFound);
    state.apply(&grant(7, 10)).unwrap();
    assert_eq!(state.revision(), 1, "a grant does not bump the revision");
    assert_eq!(state.apply(&grant(7, 10)).unwrap_err(), StateError::LeaseExists);
    assert_eq!(state.apply(&grant(8, MAX_LEASE_TTL + 1)).unwrap_err(), StateError::LeaseTtlTooLarge);
    state.apply(&put_with_lease(0, 7)).unwrap();
    state.apply(&put_with_lease(1, 7)).unwrap();
    state.apply(&put_with_lease(2, 0)).unwrap();
    // Moving a key to no lease detaches it.
    state.apply(&put_with_lease(1, 0)).unwrap();
    state.apply(&put_with_lease(1, 7)).unwrap();
    assert_eq!(state.leases()[&7].keys.len(), 2);
    let before = state.revision();
    let applied = state.apply(&revoke(7)).unwrap();
    assert_eq!(applied.result.revision, before + 1);
    let deleted: Vec<_> = state.events_from(before + 1).unwrap().flat_map(|(_, events)| events.clone()).collect();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.iter().all(|e| e.r#type == EventType::Delete as i32));
    assert_eq!(state.len(), 1, "the key without the lease stays");
    assert!(state.leases().is_empty());
    assert_eq!(state.apply(&revoke(7)).unwrap_err(), StateError::LeaseNotFound);
    assert_eq!(KvState::restore(state.persisted()), state);
}

#[test]
fn a_refused_txn_leaves_leases_and_history_untouched() {
    let mut state = KvState::new();
    state.apply(&grant(5, 10)).unwrap();
    state.apply(&put_with_lease(0, 5)).unwrap();
    let before = state.clone();
    let txn = TxnRequest {
        success: vec![
            RequestOp {
                request: Some(Request::RequestPut(PutRequest { key: key(0), value: vec![9], ..Default::default() })),
            },
            RequestOp {
                request: Some(Request::RequestPut(PutRequest { key: key(1), lease: 99, ..Default::default() })),
            },
        ],
        ..Default::default()
    };
    let refused = state.apply(&Command { request: Some(command::Request::Txn(txn)) }).unwrap_err();
    assert_eq!(refused, StateError::LeaseNotFound);
    assert_eq!(state, before);
}

#[test]
fn range_honours_limit_count_keys_only_and_sort() {
    let mut state = KvState::new();
    for k in 0..4 {
        state.apply(&command(&Op::Put(k, k))).unwrap();
    }
    let all = |mut r: RangeRequest| {
        r.key = key(0);
        r.range_end = key(9);
        state.range(&r).unwrap()
    };
    let limited = all(RangeRequest { limit: 2, ..Default::default() });
    assert_eq!((limited.kvs.len(), limited.more, limited.count), (2, true, 4));
    let keys_only = all(RangeRequest { keys_only: true, ..Default::default() });
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));
    let count_only = all(RangeRequest { count_only: true, ..Default::default() });
    assert_eq!((count_only.kvs.len(), count_only.count), (0, 4));
    let desc = all(RangeRequest { sort_order: 2, ..Default::default() });
    assert_eq!(desc.kvs[0].key, key(3));
}

impl Command {
    fn with_key(mut self, k: Vec<u8>) -> Self {
        if let Some(command::Request::Put(p)) = &mut self.request {
            p.key = k;
        }
        self
    }
}
