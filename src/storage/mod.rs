//! The disk seam: an ordered key-value engine with column families and atomic,
//! optionally synced write batches. It knows nothing of Raft or of what keys
//! mean; `raft/` owns the layout.
//!
//! Durability contract (both engines): a batch written with `sync = true` is on
//! stable storage, together with every batch written before it, when `write`
//! returns. A batch written without sync survives a process crash but may be
//! lost, as a suffix of unsynced batches, on power loss.

pub mod checked;
#[cfg(not(madsim))]
pub mod rocksdb;
pub mod sim_disk;

#[cfg(test)]
mod contract_tests;

use std::sync::Arc;
use std::time::Duration;

/// Errors of the storage layer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The device or engine failed to read or write (EIO and the like).
    #[error("storage I/O error: {0}")]
    Io(String),
    /// The device is full (ENOSPC).
    #[error("no space left on device")]
    NoSpace,
    /// A stored record is damaged (its checksum does not hold).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A column family the engine was not opened with.
    #[error("unknown column family {0:?}")]
    UnknownColumnFamily(String),
}

/// How the running service reads a column family back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Point reads and scans at any time (the Raft log, metadata).
    Any,
    /// Only scans while the node opens its data: the family persists state
    /// that is served from memory. RocksDB keeps such a family's recent writes
    /// in an unsorted vector, sorted once when it is flushed, instead of a
    /// skip list whose inserts cost a search each.
    ScanAtOpen,
}

/// A column family the engine is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnFamily {
    /// Its name, as batches and reads give it.
    pub name: &'static str,
    /// How it is read back.
    pub reads: Reads,
}

impl ColumnFamily {
    /// A family read in any way.
    pub const fn any(name: &'static str) -> Self {
        Self { name, reads: Reads::Any }
    }

    /// A family read only by scans at open.
    pub const fn scanned_at_open(name: &'static str) -> Self {
        Self { name, reads: Reads::ScanAtOpen }
    }
}

/// One change inside a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put { cf: &'static str, key: Vec<u8>, value: Vec<u8> },
    /// Remove `key`.
    Delete { cf: &'static str, key: Vec<u8> },
    /// Remove every key in `[start, end)`.
    DeleteRange { cf: &'static str, start: Vec<u8>, end: Vec<u8> },
}

/// Changes applied all together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The changes, applied in order.
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, cf: &'static str, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Put { cf, key: key.into(), value: value.into() });
    }

    /// Adds a delete.
    pub fn delete(&mut self, cf: &'static str, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete { cf, key: key.into() });
    }

    /// Adds a range delete of `[start, end)`.
    pub fn delete_range(&mut self, cf: &'static str, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::DeleteRange { cf, start: start.into(), end: end.into() });
    }

    /// Whether the batch has no change.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A key and its value, as returned by scans.
pub type Pair = (Vec<u8>, Vec<u8>);

/// An ordered, persistent key-value engine.
pub trait Engine: Send + Sync + 'static {
    /// The value of `key`, if any.
    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Applies `batch` atomically; with `sync`, durably (see the module contract).
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError>;

    /// Makes every write before it durable, as a synced write would.
    fn sync(&self) -> Result<(), StorageError> {
        self.write(WriteBatch::new(), true)
    }

    /// Up to `limit` pairs with `start <= key < end` (no `end`: to the last key),
    /// in ascending key order.
    fn scan(&self, cf: &'static str, start: &[u8], end: Option<&[u8]>, limit: usize)
        -> Result<Vec<Pair>, StorageError>;

    /// The pair with the greatest key, if the column family is not empty.
    fn last(&self, cf: &'static str) -> Result<Option<Pair>, StorageError>;

    /// Every pair of a column family, read from one point-in-time view.
    fn export(&self, cf: &'static str) -> Result<Vec<Pair>, StorageError> {
        self.scan(cf, &[], None, usize::MAX)
    }

    /// Adds to `batch` the removal of every key the column family holds now.
    fn clear_into(&self, cf: &'static str, batch: &mut WriteBatch) -> Result<(), StorageError> {
        if let Some((last, _)) = self.last(cf)? {
            let mut end = last;
            end.push(0);
            batch.delete_range(cf, Vec::new(), end);
        }
        Ok(())
    }

    /// Replaces the whole content of a column family, atomically and durably.
    fn import(&self, cf: &'static str, pairs: Vec<Pair>) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        self.clear_into(cf, &mut batch)?;
        for (key, value) in pairs {
            batch.put(cf, key, value);
        }
        self.write(batch, true)
    }

    /// Bytes the engine holds (files and memory tables), for status reports.
    fn size_bytes(&self) -> Result<u64, StorageError>;

    /// Bytes the engine holds for the column families `cfs`.
    fn size_of(&self, cfs: &[&'static str]) -> Result<u64, StorageError>;

    /// Bytes still free for the engine on its device (`None`: unknown).
    fn available_bytes(&self) -> Result<Option<u64>, StorageError> {
        Ok(None)
    }

    /// Rewrites the files to drop deleted data (etcd's defragment). Engines
    /// that keep nothing deleted do nothing.
    fn defragment(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// The waits a simulated disk asks of its callers; none for real
    /// engines (their latency is real).
    fn injected_delays(&self) -> InjectedDelays {
        InjectedDelays::default()
    }
}

/// What a simulated disk asks its callers to wait (see [`Engine::injected_delays`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InjectedDelays {
    /// Before an I/O: the log's syncs and the vote's writes.
    pub io: Duration,
    /// Before the state machine writes what it applied: a write stall
    /// (RocksDB stops writes while flushes and compactions catch up), which
    /// the log's own appends and syncs do not wait for.
    pub write_stall: Duration,
}

/// An engine that times its synced writes into a node's metrics.
pub struct Timed {
    inner: Arc<dyn Engine>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Timed {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Engine>, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl Engine for Timed {
    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(cf, key)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        if !sync {
            return self.inner.write(batch, false);
        }
        let started = crate::runtime::now();
        let result = self.inner.write(batch, true);
        self.metrics.disk_sync.observe(crate::runtime::now() - started);
        result
    }

    fn sync(&self) -> Result<(), StorageError> {
        let started = crate::runtime::now();
        let result = self.inner.sync();
        self.metrics.disk_sync.observe(crate::runtime::now() - started);
        result
    }

    fn scan(
        &self,
        cf: &'static str,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Pair>, StorageError> {
        self.inner.scan(cf, start, end, limit)
    }

    fn last(&self, cf: &'static str) -> Result<Option<Pair>, StorageError> {
        self.inner.last(cf)
    }

    fn export(&self, cf: &'static str) -> Result<Vec<Pair>, StorageError> {
        self.inner.export(cf)
    }

    fn clear_into(&self, cf: &'static str, batch: &mut WriteBatch) -> Result<(), StorageError> {
        self.inner.clear_into(cf, batch)
    }

    fn size_bytes(&self) -> Result<u64, StorageError> {
        self.inner.size_bytes()
    }

    fn size_of(&self, cfs: &[&'static str]) -> Result<u64, StorageError> {
        self.inner.size_of(cfs)
    }

    fn available_bytes(&self) -> Result<Option<u64>, StorageError> {
        self.inner.available_bytes()
    }

    fn defragment(&self) -> Result<(), StorageError> {
        self.inner.defragment()
    }

    fn injected_delays(&self) -> InjectedDelays {
        self.inner.injected_delays()
    }
}
