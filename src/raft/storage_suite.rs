//! openraft's own storage test suite against our log and state-machine stores,
//! on both engines.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::state_store::StateMachineStore;
use super::types::{StorageError, TypeConfig};
use super::COLUMN_FAMILIES;
use crate::storage::sim_disk::SimDisk;

struct SimDiskBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, ()> for SimDiskBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachineStore), StorageError> {
        let engine: Arc<dyn crate::storage::Engine> = Arc::new(SimDisk::new());
        Ok(((), LogStore::new(engine.clone()), StateMachineStore::open(engine)?))
    }
}

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = crate::runtime::open_engine(dir.path(), &COLUMN_FAMILIES).expect("open rocksdb");
        Ok((dir, LogStore::new(engine.clone()), StateMachineStore::open(engine)?))
    }
}

#[test]
fn openraft_storage_suite_passes_on_simdisk() {
    Suite::test_all(SimDiskBuilder).unwrap();
}

#[test]
fn openraft_storage_suite_passes_on_rocksdb() {
    Suite::test_all(RocksBuilder).unwrap();
}
