//! The storage engine factory: RocksDB in production, SimDisk under madsim.

use std::path::Path;
use std::sync::Arc;

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
