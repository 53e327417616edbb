//! Put, DeleteRange and Range over the live key space.

use std::ops::Bound;

use super::{KvState, StateError, Write};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
};
use crate::proto::mvccpb::KeyValue;

/// Records by key: the live keys, or those of a past revision.
pub type Records = imbl::OrdMap<Vec<u8>, KeyValue>;

/// The keys a request names, decoded from etcd's `key` + `range_end` convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// `range_end` empty: exactly `key`.
    Single(Vec<u8>),
    /// `[start, end)`; `end == None` (etcd's `range_end == "\0"`) means to the last key.
    Range { start: Vec<u8>, end: Option<Vec<u8>> },
}

impl KeyRange {
    /// Decodes etcd's convention.
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::Range { start: key.to_vec(), end: None },
            end => KeyRange::Range { start: key.to_vec(), end: Some(end.to_vec()) },
        }
    }

    /// Whether `key` is inside.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_slice() == key,
            KeyRange::Range { start, end } => key >= start.as_slice() && end.as_deref().is_none_or(|end| key < end),
        }
    }

    /// The records of `keys` inside this range, in key order.
    pub fn select<'a>(&self, keys: &'a Records) -> Vec<&'a KeyValue> {
        match self {
            KeyRange::Single(k) => keys.get(k).into_iter().collect(),
            KeyRange::Range { start, end } => {
                let upper = match end {
                    Some(end) if end <= start => return Vec::new(),
                    Some(end) => Bound::Excluded(end.clone()),
                    None => Bound::Unbounded,
                };
                keys.range((Bound::Included(start.clone()), upper)).map(|(_, kv)| kv).collect()
            }
        }
    }
}

fn require_key(key: &[u8]) -> Result<(), StateError> {
    if key.is_empty() {
        return Err(StateError::EmptyKey);
    }
    Ok(())
}

pub(super) fn validate_put(req: &PutRequest) -> Result<(), StateError> {
    require_key(&req.key)?;
    if req.ignore_value && !req.value.is_empty() {
        return Err(StateError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(StateError::LeaseProvided);
    }
    Ok(())
}

pub(super) fn validate_delete(req: &DeleteRangeRequest) -> Result<(), StateError> {
    require_key(&req.key)
}

pub(super) fn validate_range(req: &RangeRequest) -> Result<(), StateError> {
    require_key(&req.key)
}

pub(super) fn put(state: &mut KvState, write: &mut Write, req: &PutRequest) -> Result<PutResponse, StateError> {
    let prev = state.keys.get(&req.key);
    if (req.ignore_value || req.ignore_lease) && prev.is_none() {
        return Err(StateError::KeyNotFound);
    }
    if !req.ignore_lease && req.lease != 0 && !state.leases.contains_key(&req.lease) {
        return Err(StateError::LeaseNotFound);
    }
    let record = KeyValue {
        key: req.key.clone(),
        value: match (req.ignore_value, prev) {
            (true, Some(prev)) => prev.value.clone(),
            _ => req.value.clone(),
        },
        create_revision: prev.map_or(write.revision, |p| p.create_revision),
        mod_revision: write.revision,
        version: prev.map_or(0, |p| p.version) + 1,
        lease: match (req.ignore_lease, prev) {
            (true, Some(prev)) => prev.lease,
            _ => req.lease,
        },
    };
    let prev = state.set(write, &req.key, Some(record));
    Ok(PutResponse { header: None, prev_kv: if req.prev_kv { prev } else { None } })
}

pub(super) fn delete(state: &mut KvState, write: &mut Write, req: &DeleteRangeRequest) -> DeleteRangeResponse {
    let doomed: Vec<KeyValue> =
        KeyRange::new(&req.key, &req.range_end).select(&state.keys).into_iter().cloned().collect();
    for kv in &doomed {
        state.set(write, &kv.key, None);
    }
    DeleteRangeResponse {
        header: None,
        deleted: doomed.len() as i64,
        prev_kvs: if req.prev_kv { doomed } else { Vec::new() },
    }
}

pub(super) fn range(keys: &Records, req: &RangeRequest) -> RangeResponse {
    let wanted = |kv: &KeyValue| {
        (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
    };
    let limit = usize::try_from(req.limit).ok().filter(|l| *l > 0).unwrap_or(usize::MAX);
    let selected = KeyRange::new(&req.key, &req.range_end).select(keys);
    let (count, page): (usize, Vec<&KeyValue>) = match order(req) {
        // Key order, either way: count the range, keep only the page.
        None => {
            let count = selected.iter().filter(|kv| wanted(kv)).count();
            (count, selected.into_iter().filter(|kv| wanted(kv)).take(limit).collect())
        }
        Some((SortTarget::Key, SortOrder::Descend)) => {
            let count = selected.iter().filter(|kv| wanted(kv)).count();
            (count, selected.into_iter().rev().filter(|kv| wanted(kv)).take(limit).collect())
        }
        // Another target: the page is the `limit` first in that order, found
        // without sorting the whole range (etcd sorts it all).
        Some((target, order)) => {
            let mut kvs: Vec<&KeyValue> = selected.into_iter().filter(|kv| wanted(kv)).collect();
            let count = kvs.len();
            let cmp = |a: &&KeyValue, b: &&KeyValue| {
                let by = compare(target, a, b).then_with(|| a.key.cmp(&b.key));
                if order == SortOrder::Descend {
                    by.reverse()
                } else {
                    by
                }
            };
            if limit < kvs.len() {
                kvs.select_nth_unstable_by(limit, cmp);
                kvs.truncate(limit);
            }
            kvs.sort_unstable_by(cmp);
            (count, kvs)
        }
    };
    let count = count as i64;
    if req.count_only {
        return RangeResponse { header: None, kvs: Vec::new(), more: false, count };
    }
    let more = count > page.len() as i64;
    let kvs = page
        .into_iter()
        .map(|kv| {
            let mut kv = kv.clone();
            if req.keys_only {
                kv.value.clear();
            }
            kv
        })
        .collect();
    RangeResponse { header: None, kvs, more, count }
}

/// etcd's sort: key order unless asked otherwise; a target other than KEY with
/// no order means ascending. `None`: ascending key order, as the range is.
fn order(req: &RangeRequest) -> Option<(SortTarget, SortOrder)> {
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    if order == SortOrder::None && target != SortTarget::Key {
        order = SortOrder::Ascend;
    }
    match (target, order) {
        (_, SortOrder::None) | (SortTarget::Key, SortOrder::Ascend) => None,
        other => Some(other),
    }
}

fn compare(target: SortTarget, a: &KeyValue, b: &KeyValue) -> std::cmp::Ordering {
    match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    }
}
