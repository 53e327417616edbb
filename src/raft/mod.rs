//! Raft: openraft over the storage engine, its gRPC network and service, and
//! the node handle the API uses (propose, forward to leader, ReadIndex).

// openraft's error types are large by design; they are its API, returned as is.
#![allow(clippy::result_large_err)]

mod append_stream;
pub mod codec;
pub mod compactor;
pub mod corruption;
pub mod lessor;
pub mod log_store;
pub mod membership;
pub mod state_store;
pub mod types;

#[cfg(test)]
mod storage_suite;

use crate::storage::ColumnFamily;

/// Every column family the Raft layer keeps in the engine.
/// The state machine's state is served from memory, so the families that
/// persist it are read only when a node opens its data.
pub const COLUMN_FAMILIES: [ColumnFamily; 6] = [
    ColumnFamily::any(log_store::CF_LOG),
    ColumnFamily::any(log_store::CF_META),
    ColumnFamily::scanned_at_open(state_store::CF_KV),
    ColumnFamily::any(state_store::CF_SM),
    ColumnFamily::scanned_at_open(state_store::CF_HISTORY),
    ColumnFamily::scanned_at_open(state_store::CF_LEASE),
];
mod batch;
mod contact;
mod error;
mod forwards;
mod handle;
pub mod network;
pub mod node;
pub mod peer_gate;
mod proposals;
mod read_index;
mod recent_entries;
pub mod service;
pub mod snapshot_receiver;
pub mod transfer;

pub use node::{NodeError, NodeOptions, RaftNode};
/// The trait of `Raft::metrics()`'s receiver (`borrow_watched`, `changed`).
pub use openraft::async_runtime::WatchReceiver as MetricsWatch;
pub use types::{Member, NodeId};
