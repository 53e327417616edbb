//! The production engine: RocksDB, one column family per `cf` name.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions, WriteOptions, DB};

use super::{ColumnFamily, Engine, Pair, Reads, StorageError, WriteBatch, WriteOp};

/// RocksDB behind the [`Engine`] trait.
pub struct RocksEngine {
    /// The open database; column families are created on open when missing.
    db: DB,
    /// The column families it was opened with (for size reports).
    column_families: Vec<&'static str>,
    /// Its directory (for the free space of its filesystem).
    dir: std::path::PathBuf,
}

fn io(err: rocksdb::Error) -> StorageError {
    let message = err.into_string();
    if message.contains("No space left on device") {
        return StorageError::NoSpace;
    }
    StorageError::Io(message)
}

impl RocksEngine {
    /// Opens (or creates) the database at `dir` with `column_families`.
    pub fn open(dir: &Path, column_families: &[ColumnFamily]) -> Result<Self, StorageError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // One budget for the memtables of all six column families (RocksDB's
        // default is 64 MiB for each). After 100k puts at 100 clients a member
        // held 132 MiB RSS with it, 195 MiB without.
        opts.set_db_write_buffer_size(64 << 20);
        // Vector memtables (below) take one writer at a time.
        opts.set_allow_concurrent_memtable_write(false);
        // Flushes and compactions at the lowest CPU priority. With equal
        // memtable sizes (before `memtable_bytes` drew one per member) the
        // members flushed the same memtables at the same moment, 40-155 ms
        // apiece, and on two shared cores the requests waited: proposals
        // slowed to 10-40 ms around them. Put at 100 clients capped at
        // 4000/s, five alternated pairs: p99 28.1 ms on average against
        // 39.4 ms (every pair lower), p50 and the uncapped rate within noise.
        let mut env = rocksdb::Env::new().map_err(io)?;
        env.lower_thread_pool_cpu_priority();
        env.lower_high_priority_thread_pool_cpu_priority();
        opts.set_env(&env);
        let memtable_bytes = memtable_bytes(rand::Rng::gen(&mut crate::runtime::rng()));
        let cfs = column_families.iter().map(|family| {
            let mut cf = Options::default();
            cf.set_write_buffer_size(memtable_bytes);
            // Appending to a vector instead: put at 100 clients, five
            // alternated pairs, 8798/s on average with skip lists against
            // 9514/s (+8%), and the splice search left the profile.
            if family.reads == Reads::ScanAtOpen {
                cf.set_memtable_factory(rocksdb::MemtableFactory::Vector);
            }
            ColumnFamilyDescriptor::new(family.name, cf)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(io)?;
        Ok(Self {
            db,
            column_families: column_families.iter().map(|family| family.name).collect(),
            dir: dir.to_path_buf(),
        })
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db.cf_handle(name).ok_or_else(|| StorageError::UnknownColumnFamily(name.to_string()))
    }
}

/// The size of each memtable, from `draw` in [0, 1).
///
/// About 8 MiB rather than RocksDB's 64: inserts into the skip list were 7%
/// of a node's CPU (FindSpliceForLevel) under 100 clients. 250k puts at 100
/// clients: 9264/s and 189-199 MiB RSS per member, against 8738/s and
/// 227-231 MiB with 64 MiB memtables.
///
/// Each member draws its own size between 8 and 12 MiB. The members hold the
/// same data, so with equal sizes all three flushed the same memtable at the
/// same moment, and the fsyncs behind those flushes stalled every member at
/// once (synced writes of 5-15 ms on the leader during them). With different
/// sizes their flushes drift apart, and a quorum of members not flushing can
/// go on. Put at 100 clients capped at 4500/s, four alternated pairs, members
/// at 9.2, 10.4 and 11.6 MiB against all at 8 MiB: p99 15.7 ms on average
/// against 17.5 (lower in every pair), p99.9 23.6 against 27.9; all at 10.4
/// MiB gave 17.2, so the spread helps, not the size.
fn memtable_bytes(draw: f64) -> usize {
    const BASE: f64 = (8 << 20) as f64;
    (BASE * (1.0 + draw.clamp(0.0, 1.0) / 2.0)) as usize
}

impl Engine for RocksEngine {
    fn size_bytes(&self) -> Result<u64, StorageError> {
        self.size_of(&self.column_families)
    }

    fn size_of(&self, cfs: &[&'static str]) -> Result<u64, StorageError> {
        let mut total = 0;
        for name in cfs {
            let cf = self.cf(name)?;
            for property in ["rocksdb.total-sst-files-size", "rocksdb.cur-size-all-mem-tables"] {
                total += self.db.property_int_value_cf(cf, property).map_err(io)?.unwrap_or(0);
            }
        }
        Ok(total)
    }

    fn available_bytes(&self) -> Result<Option<u64>, StorageError> {
        let stat = rustix::fs::statvfs(&self.dir).map_err(|e| StorageError::Io(e.to_string()))?;
        Ok(Some(stat.f_bavail.saturating_mul(stat.f_frsize)))
    }

    fn defragment(&self) -> Result<(), StorageError> {
        for name in self.column_families.iter() {
            self.db.compact_range_cf(self.cf(name)?, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db.get_cf(self.cf(cf)?, key).map_err(io)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.ops {
            match op {
                WriteOp::Put { cf, key, value } => wb.put_cf(self.cf(cf)?, key, value),
                WriteOp::Delete { cf, key } => wb.delete_cf(self.cf(cf)?, key),
                WriteOp::DeleteRange { cf, start, end } => wb.delete_range_cf(self.cf(cf)?, start, end),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(wb, &opts).map_err(io)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true).map_err(io)
    }

    fn scan(
        &self,
        cf: &'static str,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Pair>, StorageError> {
        let mut read = ReadOptions::default();
        if let Some(end) = end {
            read.set_iterate_upper_bound(end.to_vec());
        }
        let iter = self.db.iterator_cf_opt(self.cf(cf)?, read, IteratorMode::From(start, Direction::Forward));
        let mut out = Vec::new();
        for item in iter.take(limit) {
            let (k, v) = item.map_err(io)?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    fn last(&self, cf: &'static str) -> Result<Option<Pair>, StorageError> {
        match self.db.iterator_cf(self.cf(cf)?, IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(io)?;
                Ok(Some((k.into_vec(), v.into_vec())))
            }
        }
    }

    fn export(&self, cf: &'static str) -> Result<Vec<Pair>, StorageError> {
        let snapshot = self.db.snapshot();
        let mut out = Vec::new();
        for item in snapshot.iterator_cf(self.cf(cf)?, IteratorMode::Start) {
            let (k, v) = item.map_err(io)?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::memtable_bytes;

    #[test]
    fn members_draw_memtables_between_8_and_12_mib() {
        assert_eq!(memtable_bytes(0.0), 8 << 20);
        assert_eq!(memtable_bytes(0.5), 10 << 20);
        assert!(memtable_bytes(0.999_999) < 12 << 20);
        assert_eq!(memtable_bytes(7.0), 12 << 20, "a draw outside [0, 1) is clamped");
        assert_eq!(memtable_bytes(-1.0), 8 << 20);
    }
}
