//! Txn: compare, then one branch of operations, atomically at one revision.

use std::cmp::Ordering;

use super::kv::{self, KeyRange};
use super::{KvState, StateError, Write, MAX_TXN_OPS};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{Compare, RequestOp, ResponseOp, TxnRequest, TxnResponse};
use crate::proto::mvccpb::KeyValue;

/// etcd's checks before a txn is proposed: op counts, keys present, and no key
/// written twice in one branch.
pub(super) fn validate(txn: &TxnRequest) -> Result<(), StateError> {
    if txn.compare.len() > MAX_TXN_OPS || txn.success.len() > MAX_TXN_OPS || txn.failure.len() > MAX_TXN_OPS {
        return Err(StateError::TooManyOps);
    }
    for c in &txn.compare {
        if c.key.is_empty() {
            return Err(StateError::EmptyKey);
        }
    }
    for branch in [&txn.success, &txn.failure] {
        let mut writes = Vec::new();
        validate_branch(branch, &mut writes)?;
    }
    Ok(())
}

/// What one branch writes: single-key puts and deleted ranges.
enum Written {
    Put(Vec<u8>),
    Delete(KeyRange),
}

fn validate_branch(ops: &[RequestOp], writes: &mut Vec<Written>) -> Result<(), StateError> {
    for op in ops {
        match &op.request {
            None => return Err(StateError::EmptyCommand),
            Some(Request::RequestRange(r)) => kv::validate_range(r)?,
            Some(Request::RequestPut(p)) => {
                kv::validate_put(p)?;
                let clash = writes.iter().any(|w| match w {
                    Written::Put(k) => *k == p.key,
                    Written::Delete(range) => range.contains(&p.key),
                });
                if clash {
                    return Err(StateError::DuplicateKey);
                }
                writes.push(Written::Put(p.key.clone()));
            }
            Some(Request::RequestDeleteRange(d)) => {
                kv::validate_delete(d)?;
                let range = KeyRange::new(&d.key, &d.range_end);
                if writes.iter().any(|w| matches!(w, Written::Put(k) if range.contains(k))) {
                    return Err(StateError::DuplicateKey);
                }
                writes.push(Written::Delete(range));
            }
            Some(Request::RequestTxn(t)) => {
                if t.compare.len() > MAX_TXN_OPS || t.success.len() > MAX_TXN_OPS || t.failure.len() > MAX_TXN_OPS {
                    return Err(StateError::TooManyOps);
                }
                // Only one of the nested branches runs; each must be clean
                // together with what this branch already writes.
                for branch in [&t.success, &t.failure] {
                    let mut nested = std::mem::take(writes);
                    let before = nested.len();
                    validate_branch(branch, &mut nested)?;
                    nested.truncate(before);
                    *writes = nested;
                }
            }
        }
    }
    Ok(())
}

pub(super) fn apply(state: &mut KvState, write: &mut Write, txn: &TxnRequest) -> Result<TxnResponse, StateError> {
    let succeeded = txn.compare.iter().all(|c| compare(state, c));
    let branch = if succeeded { &txn.success } else { &txn.failure };
    let mut responses = Vec::with_capacity(branch.len());
    for op in branch {
        let response = match &op.request {
            None => return Err(StateError::EmptyCommand),
            // Reads inside a txn see the txn's earlier writes.
            Some(Request::RequestRange(r)) => Response::ResponseRange(state.range_with_pending(r, &write.events)?),
            Some(Request::RequestPut(p)) => Response::ResponsePut(kv::put(state, write, p)?),
            Some(Request::RequestDeleteRange(d)) => Response::ResponseDeleteRange(kv::delete(state, write, d)),
            Some(Request::RequestTxn(t)) => Response::ResponseTxn(apply(state, write, t)?),
        };
        responses.push(ResponseOp { response: Some(response) });
    }
    Ok(TxnResponse { header: None, succeeded, responses })
}

/// etcd's compare: every key of the range must satisfy it; a missing key
/// compares as an empty record, except that a value compare on it fails.
fn compare(state: &KvState, c: &Compare) -> bool {
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    let kvs = KeyRange::new(&c.key, &c.range_end).select(&state.keys);
    if kvs.is_empty() {
        return target != CompareTarget::Value && compare_one(&KeyValue::default(), target, c);
    }
    kvs.into_iter().all(|kv| compare_one(kv, target, c))
}

fn compare_one(kv: &KeyValue, target: CompareTarget, c: &Compare) -> bool {
    // A target_union of another kind than the target reads as zero/empty, as in etcd.
    let expected = match (target, &c.target_union) {
        (CompareTarget::Version, Some(TargetUnion::Version(n)))
        | (CompareTarget::Create, Some(TargetUnion::CreateRevision(n)))
        | (CompareTarget::Mod, Some(TargetUnion::ModRevision(n)))
        | (CompareTarget::Lease, Some(TargetUnion::Lease(n))) => *n,
        _ => 0,
    };
    let ordering = match target {
        CompareTarget::Version => kv.version.cmp(&expected),
        CompareTarget::Create => kv.create_revision.cmp(&expected),
        CompareTarget::Mod => kv.mod_revision.cmp(&expected),
        CompareTarget::Lease => kv.lease.cmp(&expected),
        CompareTarget::Value => match &c.target_union {
            Some(TargetUnion::Value(v)) => kv.value.as_slice().cmp(v.as_slice()),
            _ => kv.value.as_slice().cmp(&[][..]),
        },
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}
