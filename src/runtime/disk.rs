//! The storage engine factory: RocksDB in production, SimDisk under madsim.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::storage::{ColumnFamily, Engine, StorageError};

/// Opens the persistent engine at `dir` with the given column families.
#[cfg(not(madsim))]
pub fn open_engine(dir: &Path, column_families: &[ColumnFamily]) -> Result<Arc<dyn Engine>, StorageError> {
    std::fs::create_dir_all(dir).map_err(|e| StorageError::Io(format!("create {}: {e}", dir.display())))?;
    Ok(Arc::new(crate::storage::rocksdb::RocksEngine::open(dir, column_families)?))
}

/// Under simulation there is no real disk: each node gets a SimDisk that the
/// simulation harness keeps across restarts, registered per data directory.
#[cfg(madsim)]
pub fn open_engine(dir: &Path, column_families: &[ColumnFamily]) -> Result<Arc<dyn Engine>, StorageError> {
    Ok(crate::storage::sim_disk::SimDisk::registered(dir, column_families))
}

/// Runs a long blocking disk job (RocksDB's manual compaction) off the async
/// threads. The simulated disk's jobs are instant and run in place.
#[cfg(not(madsim))]
pub async fn blocking<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> std::io::Result<T> {
    tokio::task::spawn_blocking(job).await.map_err(std::io::Error::other)
}

/// See the production definition.
#[cfg(madsim)]
pub async fn blocking<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> std::io::Result<T> {
    Ok(job())
}

/// Waits, at most `limit`, until no handle on `engine` remains, so that its
/// data dir can be opened again: RocksDB keeps the dir's lock until the last
/// handle drops, and openraft's state-machine task drops its handle only after
/// `Raft::shutdown` returns. False if one is still held after `limit`.
#[cfg(not(madsim))]
pub async fn engine_closed(engine: &Weak<dyn Engine>, limit: Duration) -> bool {
    let deadline = super::now() + limit;
    while engine.strong_count() > 0 {
        if super::now() >= deadline {
            return false;
        }
        super::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// See the production definition. The simulated disk outlives its node by
/// design (the harness keeps it across restarts), and has no lock.
#[cfg(madsim)]
pub async fn engine_closed(_engine: &Weak<dyn Engine>, _limit: Duration) -> bool {
    true
}
