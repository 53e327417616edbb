//! The deterministic state machine: an MVCC key space with one global revision.
//!
//! Pure: no I/O, no clock, no randomness. Applying a command to a state gives a
//! result and the list of key changes the caller must persist (in the same
//! atomic batch as the applied log index — see `raft/`).
//!
//! Revision rules (etcd's): every Put bumps the store revision; a DeleteRange
//! bumps it only when it deleted something; a Txn bumps it once if any of its
//! operations wrote, and all its writes share that revision.

mod kv;
mod txn;

#[cfg(test)]
mod model_tests;

use std::collections::BTreeMap;

pub use kv::KeyRange;

use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};
use crate::proto::mvccpb::KeyValue;
use crate::proto::raft::v1::command_result::Response;
use crate::proto::raft::v1::{command, Command, CommandResult};

/// Largest number of operations in one txn (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// Why a command or a read was refused. Deterministic: every replica refuses
/// the same command the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A request without a key.
    #[error("key is not provided")]
    EmptyKey,
    /// A txn with more operations than [`MAX_TXN_OPS`] in one branch.
    #[error("too many operations in txn request")]
    TooManyOps,
    /// A txn that writes the same key twice in one branch.
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// A read at a revision newer than the store's.
    #[error("required revision is a future revision")]
    FutureRevision,
    /// A read at a revision whose history is no longer kept.
    #[error("required revision has been compacted")]
    Compacted,
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value.
    #[error("value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("lease is provided")]
    LeaseProvided,
    /// A put naming a lease that does not exist.
    #[error("requested lease not found")]
    LeaseNotFound,
    /// A log entry with no request in it.
    #[error("empty command")]
    EmptyCommand,
}

/// A change to persist for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key now has this record.
    Put(KeyValue),
    /// The key no longer exists.
    Delete(Vec<u8>),
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The response, without header (the API layer fills it).
    pub result: CommandResult,
    /// Key changes, in order, to persist with the applied index.
    pub changes: Vec<Change>,
}

/// The key space.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KvState {
    /// The store revision: that of the last write. Starts at 1 like etcd's.
    revision: i64,
    /// Live keys and their records.
    keys: BTreeMap<Vec<u8>, KeyValue>,
}

impl KvState {
    /// An empty store at revision 1 (etcd's initial revision).
    pub fn new() -> Self {
        Self { revision: 1, keys: BTreeMap::new() }
    }

    /// A store restored from persisted records.
    pub fn restore(revision: i64, kvs: impl IntoIterator<Item = KeyValue>) -> Self {
        let keys = kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        Self { revision: revision.max(1), keys }
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Every live record, in key order.
    pub fn records(&self) -> impl Iterator<Item = &KeyValue> {
        self.keys.values()
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A digest of the whole state (revision and every record), equal on every
    /// replica that applied the same log. FNV-1a: stable across platforms.
    pub fn hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        feed(&self.revision.to_be_bytes());
        for kv in self.keys.values() {
            feed(&(kv.key.len() as u64).to_be_bytes());
            feed(&kv.key);
            feed(&(kv.value.len() as u64).to_be_bytes());
            feed(&kv.value);
            for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
                feed(&n.to_be_bytes());
            }
        }
        h
    }

    /// Checks a command without applying it: what would make every replica
    /// refuse it. The API layer calls this before proposing.
    pub fn validate(command: &Command) -> Result<(), StateError> {
        match &command.request {
            None => Err(StateError::EmptyCommand),
            Some(command::Request::Put(put)) => kv::validate_put(put),
            Some(command::Request::DeleteRange(del)) => kv::validate_delete(del),
            Some(command::Request::Txn(txn)) => txn::validate(txn),
        }
    }

    /// Applies a committed command. On error the state is unchanged.
    pub fn apply(&mut self, command: &Command) -> Result<Applied, StateError> {
        Self::validate(command)?;
        let mut write = Write::new(self.revision + 1);
        let response = match &command.request {
            None => return Err(StateError::EmptyCommand),
            Some(command::Request::Put(put)) => Response::Put(kv::put(&mut self.keys, &mut write, put)?),
            Some(command::Request::DeleteRange(del)) => {
                Response::DeleteRange(kv::delete(&mut self.keys, &mut write, del))
            }
            Some(command::Request::Txn(req)) => match txn::apply(self, &mut write, req) {
                Ok(resp) => Response::Txn(resp),
                Err(refused) => {
                    // A txn either applies whole or, on error, not at all: undo
                    // what it changed (the revision is only set below).
                    write.undo(&mut self.keys);
                    return Err(refused);
                }
            },
        };
        if !write.changes.is_empty() {
            self.revision = write.revision;
        }
        Ok(Applied {
            result: CommandResult { revision: self.revision, response: Some(response) },
            changes: write.changes,
        })
    }

    /// Serves a read at the current state.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StateError> {
        kv::validate_range(req)?;
        if req.revision > self.revision {
            return Err(StateError::FutureRevision);
        }
        if req.revision > 0 && req.revision < self.revision {
            // No history is kept: everything below the current revision is compacted.
            return Err(StateError::Compacted);
        }
        Ok(kv::range(&self.keys, req))
    }
}

/// The writes of one command: they all get `revision`.
struct Write {
    revision: i64,
    changes: Vec<Change>,
    /// Each changed key's record before the change, in order, so that a txn
    /// failing midway can be undone without copying the key space.
    previous: Vec<(Vec<u8>, Option<KeyValue>)>,
}

impl Write {
    fn new(revision: i64) -> Self {
        Self { revision, changes: Vec::new(), previous: Vec::new() }
    }

    /// Restores `keys` to how they were before this write.
    fn undo(&mut self, keys: &mut BTreeMap<Vec<u8>, KeyValue>) {
        for (key, previous) in self.previous.drain(..).rev() {
            match previous {
                Some(record) => keys.insert(key, record),
                None => keys.remove(&key),
            };
        }
        self.changes.clear();
    }
}
