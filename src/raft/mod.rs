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

use std::path::Path;
use std::sync::Arc;

use crate::storage::checked::Checked;
use crate::storage::{ColumnFamily, Engine, StorageError};

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

/// Opens the data dir's engine (`dir` is its `db` directory) as the node
/// uses it: every value checksummed and verified on read (see
/// [`crate::storage::checked`]). A data dir written before values carried
/// checksums (format version 1) is rewritten with them first.
pub fn open_data(dir: &Path) -> Result<Arc<dyn Engine>, StorageError> {
    let raw = crate::runtime::open_engine(dir, &COLUMN_FAMILIES)?;
    state_store::seal_unchecked_records(raw.as_ref())?;
    Ok(Arc::new(Checked::new(raw)))
}
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
