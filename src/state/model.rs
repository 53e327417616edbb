//! A deliberately naive model of the state machine, for differential
//! testing (the proptests in `model_tests` and the `differential` fuzz
//! target): a map of key to record, every past state kept whole, a lease
//! table and a compact revision. Built only for tests and fuzzing.
//!
//! [`Op`] is one step on a small key set (contention is where bugs are);
//! [`step`] applies it to a [`KvState`] and to the [`Model`] and says how
//! they differ, if they do.

use std::collections::{BTreeMap, BTreeSet};

use super::{command, Command, KvState, StateError, MAX_LEASE_TTL};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use crate::proto::raft::v1::command_result::Response;

/// One step: a write through `KvState::apply`, or a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// put(key, value) with a lease (0: none).
    Put(u8, u8, i64),
    /// delete(key).
    Delete(u8),
    /// delete [a, b).
    DeleteRange(u8, u8),
    /// if version(key) == v then put(key, value) else get(key).
    Cas(u8, i64, u8),
    /// grant(id, ttl).
    Grant(i64, i64),
    /// revoke(id).
    Revoke(i64),
    /// compact(revision).
    Compact(i64),
    /// get every key at a revision (0: now).
    GetAll(i64),
}

/// The key of key number `k`.
pub fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k % 8]
}

impl Op {
    /// The command for a write; `None` for a read.
    pub fn command(&self) -> Option<Command> {
        let request = match self {
            Op::Put(k, v, lease) => {
                command::Request::Put(PutRequest { key: key(*k), value: vec![*v], lease: *lease, ..Default::default() })
            }
            Op::Delete(k) => command::Request::DeleteRange(DeleteRangeRequest { key: key(*k), ..Default::default() }),
            Op::DeleteRange(a, b) => command::Request::DeleteRange(DeleteRangeRequest {
                key: key(*a),
                range_end: key(*b),
                ..Default::default()
            }),
            Op::Cas(k, version, v) => command::Request::Txn(TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Version as i32,
                    key: key(*k),
                    target_union: Some(TargetUnion::Version(*version)),
                    range_end: Vec::new(),
                }],
                success: vec![RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        key: key(*k),
                        value: vec![*v],
                        ..Default::default()
                    })),
                }],
                failure: vec![RequestOp {
                    request: Some(Request::RequestRange(RangeRequest { key: key(*k), ..Default::default() })),
                }],
            }),
            Op::Grant(id, ttl) => command::Request::LeaseGrant(LeaseGrantRequest { id: *id, ttl: *ttl }),
            Op::Revoke(id) => command::Request::LeaseRevoke(LeaseRevokeRequest { id: *id }),
            Op::Compact(revision) => {
                command::Request::Compaction(CompactionRequest { revision: *revision, physical: false })
            }
            Op::GetAll(_) => return None,
        };
        Some(Command { auth_revision: None, alarm_disarms: None, request: Some(request) })
    }

    /// Steps decoded from fuzzer bytes, four bytes each.
    pub fn from_bytes(data: &[u8]) -> Vec<Op> {
        data.chunks_exact(4)
            .map(|b| {
                let (k, v, n) = (b[1], b[2], i64::from(b[3]));
                match b[0] % 10 {
                    0 | 1 => Op::Put(k, v, 0),
                    2 => Op::Put(k, v, n % 4),
                    3 => Op::Delete(k),
                    4 => Op::DeleteRange(k, v),
                    5 => Op::Cas(k, n % 4, v),
                    6 => Op::Grant(n % 4, i64::from(v)),
                    7 => Op::Revoke(n % 4),
                    8 => Op::Compact(n % 32),
                    _ => Op::GetAll(n % 32),
                }
            })
            .collect()
    }
}

/// A record as the model keeps it: (value, create, mod, version, lease).
pub type Record = (Vec<u8>, i64, i64, i64, i64);
type Keys = BTreeMap<Vec<u8>, Record>;

/// What a step gave, compared between the state machine and the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A write: the revision after it, whether a txn took its success
    /// branch, and how many keys a delete removed.
    Written { revision: i64, succeeded: bool, deleted: i64 },
    /// Refused, state unchanged.
    Refused(StateError),
    /// A read: every key and record.
    Read(Vec<(Vec<u8>, Record)>),
}

/// The model.
#[derive(Debug, Clone)]
pub struct Model {
    revision: i64,
    compact_revision: i64,
    keys: Keys,
    /// Every state by the revision it was at (revisions are consecutive).
    past: BTreeMap<i64, Keys>,
    /// Granted leases: id -> TTL.
    leases: BTreeMap<i64, i64>,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Model {
    /// An empty store at revision 1.
    pub fn new() -> Self {
        Self {
            revision: 1,
            compact_revision: 0,
            keys: Keys::new(),
            past: [(1, Keys::new())].into(),
            leases: BTreeMap::new(),
        }
    }

    fn bump(&mut self) {
        self.revision += 1;
    }

    fn remember(&mut self) {
        self.past.insert(self.revision, self.keys.clone());
    }

    fn put(&mut self, k: Vec<u8>, v: u8, lease: i64) {
        let (create, version) = match self.keys.get(&k) {
            Some((_, create, _, version, _)) => (*create, version + 1),
            None => (self.revision, 1),
        };
        self.keys.insert(k, (vec![v], create, self.revision, version, lease));
    }

    fn delete(&mut self, doomed: Vec<Vec<u8>>) -> i64 {
        if !doomed.is_empty() {
            self.bump();
            for k in &doomed {
                self.keys.remove(k);
            }
            self.remember();
        }
        doomed.len() as i64
    }

    fn written(&self, succeeded: bool, deleted: i64) -> Outcome {
        Outcome::Written { revision: self.revision, succeeded, deleted }
    }

    /// Applies `op` as the state machine should.
    pub fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Put(k, v, lease) => {
                if *lease != 0 && !self.leases.contains_key(lease) {
                    return Outcome::Refused(StateError::LeaseNotFound);
                }
                self.bump();
                self.put(key(*k), *v, *lease);
                self.remember();
                self.written(true, 0)
            }
            Op::Delete(k) => {
                let doomed = self.keys.keys().filter(|x| **x == key(*k)).cloned().collect();
                let deleted = self.delete(doomed);
                self.written(true, deleted)
            }
            Op::DeleteRange(a, b) => {
                let (a, b) = (key(*a), key(*b));
                let doomed = self.keys.keys().filter(|x| **x >= a && **x < b).cloned().collect();
                let deleted = self.delete(doomed);
                self.written(true, deleted)
            }
            Op::Cas(k, version, v) => {
                if self.keys.get(&key(*k)).map_or(0, |r| r.3) != *version {
                    return self.written(false, 0);
                }
                self.bump();
                self.put(key(*k), *v, 0);
                self.remember();
                self.written(true, 0)
            }
            Op::Grant(id, ttl) => {
                if *ttl > MAX_LEASE_TTL {
                    return Outcome::Refused(StateError::LeaseTtlTooLarge);
                }
                if *id == 0 {
                    return Outcome::Refused(StateError::LeaseNotFound);
                }
                if self.leases.contains_key(id) {
                    return Outcome::Refused(StateError::LeaseExists);
                }
                self.leases.insert(*id, *ttl);
                self.written(true, 0)
            }
            Op::Revoke(id) => {
                if self.leases.remove(id).is_none() {
                    return Outcome::Refused(StateError::LeaseNotFound);
                }
                let doomed = self.keys.iter().filter(|(_, r)| r.4 == *id).map(|(k, _)| k.clone()).collect();
                self.delete(doomed);
                self.written(true, 0)
            }
            Op::Compact(revision) => {
                if *revision > self.revision {
                    return Outcome::Refused(StateError::FutureRevision);
                }
                if *revision <= self.compact_revision {
                    return Outcome::Refused(StateError::Compacted);
                }
                self.compact_revision = *revision;
                self.written(true, 0)
            }
            Op::GetAll(revision) => {
                let at = if *revision <= 0 { self.revision } else { *revision };
                if at > self.revision {
                    return Outcome::Refused(StateError::FutureRevision);
                }
                if at < self.compact_revision {
                    return Outcome::Refused(StateError::Compacted);
                }
                let keys = self.past.get(&at).cloned().unwrap_or_default();
                Outcome::Read(keys.into_iter().collect())
            }
        }
    }
}

/// What the state machine gave for `op`.
fn outcome(state: &mut KvState, op: &Op) -> Outcome {
    let Some(command) = op.command() else {
        let Op::GetAll(revision) = op else { unreachable!("only reads have no command") };
        let req = RangeRequest { key: vec![0], range_end: vec![0], revision: *revision, ..Default::default() };
        return match state.range(&req) {
            Ok(resp) => Outcome::Read(
                resp.kvs
                    .into_iter()
                    .map(|kv| (kv.key, (kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)))
                    .collect(),
            ),
            Err(refused) => Outcome::Refused(refused),
        };
    };
    match state.apply(&command) {
        Err(refused) => Outcome::Refused(refused),
        Ok(applied) => {
            let (succeeded, deleted) = match applied.result.response {
                Some(Response::Txn(t)) => (t.succeeded, 0),
                Some(Response::DeleteRange(d)) => (true, d.deleted),
                _ => (true, 0),
            };
            Outcome::Written { revision: applied.result.revision, succeeded, deleted }
        }
    }
}

/// Applies `op` to both; `Err` says how they differ.
pub fn step(state: &mut KvState, model: &mut Model, op: &Op) -> Result<(), String> {
    let before = state.clone();
    let got = outcome(state, op);
    let want = model.apply(op);
    if got != want {
        return Err(format!("{op:?}: state machine gave {got:?}, model {want:?}"));
    }
    if matches!(got, Outcome::Refused(_)) && *state != before {
        return Err(format!("{op:?} was refused but changed the state"));
    }
    Ok(())
}

/// Compares everything the two hold at the end, and the state's persisted
/// form with the state.
pub fn same_end(state: &KvState, model: &Model) -> Result<(), String> {
    let got = outcome(&mut state.clone(), &Op::GetAll(0));
    let want = Outcome::Read(model.keys.clone().into_iter().collect());
    if got != want {
        return Err(format!("final keys: state machine {got:?}, model {want:?}"));
    }
    let leases: BTreeMap<i64, i64> = state.leases().iter().map(|(id, l)| (*id, l.ttl)).collect();
    if leases != model.leases {
        return Err(format!("final leases: state machine {leases:?}, model {:?}", model.leases));
    }
    for (id, lease) in state.leases() {
        let attached: BTreeSet<Vec<u8>> =
            model.keys.iter().filter(|(_, r)| r.4 == *id).map(|(k, _)| k.clone()).collect();
        if lease.keys.iter().cloned().collect::<BTreeSet<_>>() != attached {
            return Err(format!("lease {id} lists keys {:?}, the model {attached:?}", lease.keys));
        }
    }
    if (state.revision(), state.compact_revision()) != (model.revision, model.compact_revision) {
        return Err(format!(
            "revision/compact revision: state machine {}/{}, model {}/{}",
            state.revision(),
            state.compact_revision(),
            model.revision,
            model.compact_revision
        ));
    }
    let restored = KvState::restore(state.persisted());
    if restored.hash() != state.hash() {
        return Err("the persisted form restores to another digest".to_string());
    }
    Ok(())
}
