//! The state machine against the naive model of `model` (every command:
//! puts with and without leases, deletes, txns, lease grants and revokes,
//! compaction, reads at past revisions), driven by random sequences on a
//! small key set, plus hand-made cases.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::model::{self, key, Model, Op};
use super::*;
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4u8, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v, 0)),
        1 => (0..4u8, any::<u8>(), 0..3i64).prop_map(|(k, v, lease)| Op::Put(k, v, lease)),
        1 => (0..4u8).prop_map(Op::Delete),
        1 => (0..4u8, 0..5u8).prop_map(|(a, b)| Op::DeleteRange(a, b)),
        2 => (0..4u8, 0..3i64, any::<u8>()).prop_map(|(k, ver, v)| Op::Cas(k, ver, v)),
        1 => (0..3i64, 1..100i64).prop_map(|(id, ttl)| Op::Grant(id, ttl)),
        1 => (0..3i64).prop_map(Op::Revoke),
        1 => (0..20i64).prop_map(Op::Compact),
        1 => (0..20i64).prop_map(Op::GetAll),
    ]
}

/// Writes only (for the tests that replay a log).
fn write() -> impl Strategy<Value = Op> {
    op().prop_filter("a write", |op| op.command().is_some())
}

fn command(op: &Op) -> Command {
    op.command().expect("a write")
}

proptest! {
    #[test]
    fn a_sorted_page_is_the_first_limit_of_the_whole_range_sorted(
        puts in proptest::collection::vec((0..8u8, 0..4u8), 1..40),
        target in 0..5i32,
        order in 0..3i32,
        limit in 0..10i64,
    ) {
        use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
        let mut state = KvState::new();
        for (k, v) in &puts {
            state.apply(&command(&Op::Put(*k, *v, 0))).unwrap();
        }
        let req = RangeRequest { key: vec![0], range_end: vec![0], sort_target: target, sort_order: order, limit, ..Default::default() };
        let got = state.range(&req).unwrap();
        // The reference: everything, sorted whole (key order breaks ties), then the page.
        let mut all: Vec<KeyValue> = state.records().cloned().collect();
        let target = SortTarget::try_from(target).unwrap();
        let field = |kv: &KeyValue| match target {
            SortTarget::Key => (kv.key.clone(), 0),
            SortTarget::Version => (Vec::new(), kv.version),
            SortTarget::Create => (Vec::new(), kv.create_revision),
            SortTarget::Mod => (Vec::new(), kv.mod_revision),
            SortTarget::Value => (kv.value.clone(), 0),
        };
        all.sort_by(|a, b| field(a).cmp(&field(b)).then_with(|| a.key.cmp(&b.key)));
        let order = SortOrder::try_from(order).unwrap();
        if order == SortOrder::Descend {
            all.reverse();
        }
        let count = all.len() as i64;
        let page: Vec<KeyValue> = all.into_iter().take(if limit == 0 { usize::MAX } else { limit as usize }).collect();
        prop_assert_eq!(got.count, count);
        prop_assert_eq!(got.more, (page.len() as i64) < count);
        prop_assert_eq!(got.kvs, page);
    }

    #[test]
    fn state_machine_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut state = KvState::new();
        let mut model = Model::new();
        for op in &ops {
            if let Err(difference) = model::step(&mut state, &mut model, op) {
                prop_assert!(false, "{}", difference);
            }
            let counted: u64 = state.kept_history().flat_map(|(_, events)| events).map(history::event_bytes).sum();
            prop_assert_eq!(state.history_bytes(), counted, "after {:?}", op);
        }
        if let Err(difference) = model::same_end(&state, &model) {
            prop_assert!(false, "{}", difference);
        }
    }

    #[test]
    fn a_read_at_any_kept_revision_sees_the_state_of_then(
        ops in proptest::collection::vec(write().prop_filter("history kept", |op| !matches!(op, Op::Compact(_))), 1..40)
    ) {
        let all = |state: &KvState, revision| {
            state.range(&RangeRequest { key: vec![0], range_end: vec![0], revision, ..Default::default() }).unwrap().kvs
        };
        let mut state = KvState::new();
        let mut then = BTreeMap::new();
        then.insert(1, Vec::new());
        for op in &ops {
            let _ = state.apply(&command(op));
            then.insert(state.revision(), all(&state, 0));
        }
        for (revision, kvs) in &then {
            prop_assert_eq!(&all(&state, *revision), kvs, "at revision {}", revision);
        }
    }

    #[test]
    fn replaying_a_log_gives_the_same_hash(ops in proptest::collection::vec(write(), 1..40)) {
        let mut a = KvState::new();
        let mut b = KvState::new();
        for op in &ops {
            prop_assert_eq!(a.apply(&command(op)).is_ok(), b.apply(&command(op)).is_ok());
        }
        prop_assert_eq!(a.hash(), b.hash());
        let restored = KvState::restore(a.persisted());
        prop_assert_eq!(restored.hash(), a.hash());
    }

    /// Hash, HashKV and Snapshot read a copy of the state taken under the
    /// lock and scanned after it is released: the copy must stay the state
    /// of then, whatever is applied to the original meanwhile.
    #[test]
    fn a_copy_keeps_the_state_of_when_it_was_taken(
        before in proptest::collection::vec(write(), 1..40),
        after in proptest::collection::vec(write(), 1..40),
    ) {
        let mut state = KvState::new();
        let mut twin = KvState::new();
        for op in &before {
            let _ = state.apply(&command(op));
            let _ = twin.apply(&command(op));
        }
        let copy = state.clone();
        for op in &after {
            let _ = state.apply(&command(op));
        }
        prop_assert!(copy == twin);
        prop_assert_eq!(copy.hash(), twin.hash());
        prop_assert_eq!(copy.hash_kv(0).ok(), twin.hash_kv(0).ok());
        let bytes = crate::raft::state_store::snapshot_bytes;
        prop_assert_eq!(bytes(&copy), bytes(&twin));
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
        (Command { auth_revision: None, alarm_disarms: None, request: None }, StateError::EmptyCommand),
        (with_key(command(&Op::Put(0, 1, 0)), Vec::new()), StateError::EmptyKey),
        (
            Command {
                auth_revision: None,
                alarm_disarms: None,
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
                auth_revision: None,
                alarm_disarms: None,
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
                auth_revision: None,
                alarm_disarms: None,
                request: Some(command::Request::Put(PutRequest { key: key(0), lease: 7, ..Default::default() })),
            },
            StateError::LeaseNotFound,
        ),
        (
            Command {
                auth_revision: None,
                alarm_disarms: None,
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
    state.apply(&command(&Op::Put(0, 1, 0))).unwrap();
    state.apply(&command(&Op::Put(1, 1, 0))).unwrap();
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
    let refused = state
        .apply(&Command { auth_revision: None, alarm_disarms: None, request: Some(command::Request::Txn(txn)) })
        .unwrap_err();
    assert_eq!(refused, StateError::LeaseNotFound);
    assert_eq!(state, before);
    assert_eq!(state.hash(), before.hash());
}

#[test]
fn reads_at_past_revisions_see_the_past_until_compacted() {
    let mut state = KvState::new();
    state.apply(&command(&Op::Put(0, 1, 0))).unwrap(); // revision 2
    state.apply(&command(&Op::Put(0, 2, 0))).unwrap(); // 3
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
        auth_revision: None,
        alarm_disarms: None,
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

#[test]
fn compaction_to_fit_drops_the_oldest_revisions_until_the_history_fits_its_budget() {
    let mut state = KvState::new();
    let put = |key: u8, len: usize| Command {
        auth_revision: None,
        alarm_disarms: None,
        request: Some(command::Request::Put(PutRequest { key: vec![key], value: vec![7; len], ..Default::default() })),
    };
    for key in 0..10 {
        state.apply(&put(key, 1000)).unwrap(); // revisions 2..=11, one event of ~1.1 kB each
    }
    let per_event = state.history_bytes() / 10;
    assert_eq!(state.compaction_to_fit(state.history_bytes()), None);
    assert_eq!(state.compaction_to_fit(per_event * 4), Some(8), "keeps revisions 8..=11");
    assert_eq!(state.compaction_to_fit(per_event * 4 - 1), Some(9));
    assert_eq!(state.compaction_to_fit(0), Some(11), "the newest revision is never compacted");
    let compact = Command {
        auth_revision: None,
        alarm_disarms: None,
        request: Some(command::Request::Compaction(CompactionRequest { revision: 8, physical: false })),
    };
    state.apply(&compact).unwrap();
    assert_eq!(state.history_bytes(), per_event * 4);
    assert_eq!(KvState::restore(state.persisted()).history_bytes(), per_event * 4);
    assert_eq!(state.compaction_to_fit(per_event * 4), None);
}

#[test]
fn compacting_to_a_delete_frees_the_values_it_deleted() {
    let mut state = KvState::new();
    let put = Command {
        auth_revision: None,
        alarm_disarms: None,
        request: Some(command::Request::Put(PutRequest { key: key(1), value: vec![7; 10_000], ..Default::default() })),
    };
    state.apply(&put).unwrap(); // revision 2
    state.apply(&command(&Op::Delete(1))).unwrap(); // 3: its event keeps the 10 kB record
    assert!(state.history_bytes() > 20_000);
    let compact = Command {
        auth_revision: None,
        alarm_disarms: None,
        request: Some(command::Request::Compaction(CompactionRequest { revision: 3, physical: false })),
    };
    let applied = state.apply(&compact).unwrap();
    assert!(state.history_bytes() < 1_000, "{} bytes kept", state.history_bytes());
    let boundary = match &applied.changes[..] {
        [Change::Compacted { below: 3, boundary }] => boundary.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(boundary.len(), 1);
    assert_eq!(boundary[0].prev_kv, None);
    // The revision compacted to still reads as it was, and restores the same.
    let at3 = state.range(&RangeRequest { key: key(1), revision: 3, ..Default::default() }).unwrap();
    assert!(at3.kvs.is_empty());
    assert_eq!(KvState::restore(state.persisted()), state);
}

fn grant(id: i64, ttl: i64) -> Command {
    Command {
        auth_revision: None,
        alarm_disarms: None,
        request: Some(command::Request::LeaseGrant(LeaseGrantRequest { id, ttl })),
    }
}

fn revoke(id: i64) -> Command {
    Command {
        auth_revision: None,
        alarm_disarms: None,
        request: Some(command::Request::LeaseRevoke(LeaseRevokeRequest { id })),
    }
}

fn put_with_lease(k: u8, lease: i64) -> Command {
    Command {
        auth_revision: None,
        alarm_disarms: None,
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
    let refused = state
        .apply(&Command { auth_revision: None, alarm_disarms: None, request: Some(command::Request::Txn(txn)) })
        .unwrap_err();
    assert_eq!(refused, StateError::LeaseNotFound);
    assert_eq!(state, before);
}

#[test]
fn range_honours_limit_count_keys_only_and_sort() {
    let mut state = KvState::new();
    for k in 0..4 {
        state.apply(&command(&Op::Put(k, k, 0))).unwrap();
    }
    let all = |mut r: RangeRequest| {
        r.key = key(0);
        r.range_end = b"z".to_vec();
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

/// `command` with its put's key replaced by `k`.
fn with_key(mut command: Command, k: Vec<u8>) -> Command {
    if let Some(command::Request::Put(p)) = &mut command.request {
        p.key = k;
    }
    command
}

/// A compaction drops its events from every read at once, and frees them
/// over the writes after it, a few per write: meanwhile the state equals
/// (and hashes as) one restored from what it persists.
#[test]
fn compacted_events_are_freed_over_the_following_writes() {
    let mut state = KvState::new();
    for i in 0..1000u32 {
        state.apply(&command(&Op::Put((i % 4) as u8, i as u8, 0))).unwrap();
    }
    let compact = Command {
        auth_revision: None,
        alarm_disarms: None,
        request: Some(command::Request::Compaction(CompactionRequest { revision: 901, physical: false })),
    };
    state.apply(&compact).unwrap();
    assert!(state.history.len() > 100, "not all freed by the compaction itself");
    assert_eq!(state.kept_history().count(), 101);
    let restored = KvState::restore(state.persisted());
    assert_eq!(restored, state);
    assert_eq!(restored.hash(), state.hash());
    let writes = 900 / history::DROP_PER_WRITE;
    for i in 0..writes {
        state.apply(&command(&Op::Put(0, i as u8, 0))).unwrap();
    }
    assert_eq!(state.history.len(), 101 + writes, "every compacted revision freed");
}

/// A write checked against the auth store at one revision is refused at
/// apply once auth changed (a revoke came in between), leaving nothing
/// behind; checked at the current revision, or by the server (no revision),
/// it applies. With auth off, revisions are not compared.
#[test]
fn a_write_checked_at_an_older_auth_revision_is_refused_at_apply() {
    use crate::proto::etcdserverpb::{AuthRoleAddRequest, AuthUserAddRequest, AuthUserGrantRoleRequest};
    use crate::proto::raft::v1::AuthEnable;
    let mut state = KvState::new();
    let auth = |state: &mut KvState, request| {
        state.apply(&Command { auth_revision: None, alarm_disarms: None, request: Some(request) }).unwrap();
    };
    let put = |checked_at| Command {
        auth_revision: checked_at,
        alarm_disarms: None,
        request: Some(command::Request::Put(PutRequest { key: b"k".to_vec(), ..Default::default() })),
    };
    let add = AuthUserAddRequest { name: "root".into(), hashed_password: "h".into(), ..Default::default() };
    auth(&mut state, command::Request::UserAdd(add));
    assert!(state.apply(&put(Some(0))).is_ok(), "auth off: the revision does not matter");
    auth(
        &mut state,
        command::Request::UserGrantRole(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }),
    );
    auth(&mut state, command::Request::AuthEnable(AuthEnable { token_key: vec![1; 32] }));
    let checked_at = state.auth().revision();
    auth(&mut state, command::Request::RoleAdd(AuthRoleAddRequest { name: "other".into() }));
    let before = state.clone();
    assert_eq!(state.apply(&put(Some(checked_at))).map(|_| ()), Err(StateError::Auth(AuthError::OldRevision)));
    assert_eq!(state, before, "a refused write changed the state");
    assert!(state.apply(&put(Some(state.auth().revision()))).is_ok());
    assert!(state.apply(&put(None)).is_ok());
}

/// While NOSPACE is raised, writes that grow the store (puts, txns with a
/// put, lease grants) are refused and change nothing; deletes, compactions
/// and lease revokes still apply; disarming opens the store again. The
/// alarms survive the persisted form.
#[test]
fn nospace_refuses_growing_writes_until_it_is_disarmed() {
    use crate::proto::etcdserverpb::alarm_request::AlarmAction;
    use crate::proto::etcdserverpb::{AlarmRequest, AlarmType};
    let mut state = KvState::new();
    let alarm = |action: AlarmAction, alarm: AlarmType| Command {
        auth_revision: None,
        alarm_disarms: None,
        request: Some(command::Request::Alarm(AlarmRequest {
            action: action as i32,
            member_id: 2,
            alarm: alarm as i32,
        })),
    };
    state.apply(&command(&Op::Put(0, 1, 0))).unwrap();
    state.apply(&command(&Op::Grant(1, 60))).unwrap();
    assert_eq!(state.apply(&alarm(AlarmAction::Activate, AlarmType::None)).unwrap_err(), StateError::NoAlarm);
    state.apply(&alarm(AlarmAction::Activate, AlarmType::Nospace)).unwrap();
    assert!(state.out_of_space());
    assert_eq!(KvState::restore(state.persisted()), state, "the alarm is not persisted");
    let before = state.clone();
    for refused in [Op::Put(1, 1, 0), Op::Cas(0, 1, 2), Op::Grant(2, 60)] {
        assert_eq!(state.apply(&command(&refused)).unwrap_err(), StateError::NoSpace, "{refused:?}");
    }
    assert_eq!(state, before);
    for allowed in [Op::Delete(0), Op::Revoke(1), Op::Compact(2)] {
        state.apply(&command(&allowed)).unwrap_or_else(|e| panic!("{allowed:?}: {e}"));
    }
    state.apply(&alarm(AlarmAction::Deactivate, AlarmType::Nospace)).unwrap();
    assert!(!state.out_of_space());
    state.apply(&command(&Op::Put(1, 1, 0))).unwrap();
}

/// A member's own raise carries the disarm count it read its condition at:
/// applied after a disarm, it is refused and changes nothing (its reading
/// may predate the room the operator freed), while one decided after the
/// disarm, and a client's raise (no count), apply. Only a disarm that
/// removes an alarm counts; the count survives the persisted form and is
/// in the state hash.
#[test]
fn a_raise_decided_before_a_disarm_is_refused() {
    use crate::proto::etcdserverpb::alarm_request::AlarmAction;
    use crate::proto::etcdserverpb::{AlarmRequest, AlarmType};
    let alarm = |action: AlarmAction, alarm_disarms: Option<u64>| Command {
        auth_revision: None,
        alarm_disarms,
        request: Some(command::Request::Alarm(AlarmRequest {
            action: action as i32,
            member_id: 2,
            alarm: AlarmType::Nospace as i32,
        })),
    };
    let mut state = KvState::new();
    state.apply(&alarm(AlarmAction::Deactivate, None)).unwrap();
    assert_eq!(state.alarm_disarms(), 0, "disarming no alarm counted");
    let untouched = state.hash();
    state.apply(&alarm(AlarmAction::Activate, Some(0))).unwrap();
    assert!(state.out_of_space());
    state.apply(&alarm(AlarmAction::Deactivate, None)).unwrap();
    assert_eq!(state.alarm_disarms(), 1);
    assert_ne!(state.hash(), untouched, "the disarm count is not in the hash");
    assert_eq!(KvState::restore(state.persisted()), state, "the disarm count is not persisted");
    let before = state.clone();
    assert_eq!(state.apply(&alarm(AlarmAction::Activate, Some(0))).unwrap_err(), StateError::AlarmDisarmedSince);
    assert_eq!(state, before, "a refused raise changed the state");
    state.apply(&alarm(AlarmAction::Activate, Some(1))).unwrap();
    assert!(state.out_of_space(), "a raise decided after the disarm was refused");
    state.apply(&alarm(AlarmAction::Deactivate, None)).unwrap();
    state.apply(&alarm(AlarmAction::Activate, None)).unwrap();
    assert!(state.out_of_space(), "a client's raise was checked against the count");
}
