//! `SimDisk`: an in-memory engine that models RocksDB's point-in-time recovery,
//! for simulation and tests.
//!
//! - A synced batch is durable, and so is every batch written before it (the WAL
//!   is sequential: syncing it makes all of it durable).
//! - [`SimDisk::crash`] (the process dies, the OS survives): unsynced batches are
//!   in the page cache and survive.
//! - [`SimDisk::power_loss`]: a random prefix of the unsynced batches survives,
//!   the rest is lost.
//! - Injected faults: EIO on write and on sync, and latency.
//!
//! A SimDisk lives outside the node using it, so it survives kill and restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;

use super::{Engine, InjectedDelays, Pair, StorageError, WriteBatch, WriteOp};

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;
type Trees = BTreeMap<&'static str, Tree>;

/// Faults a test or the nemesis can inject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskFaults {
    /// Every unsynced write fails with EIO.
    pub fail_writes: bool,
    /// Every synced write fails with EIO (nothing of it is applied).
    pub fail_syncs: bool,
    /// Latency callers are asked to wait before each I/O.
    pub latency: Duration,
    /// How long the state machine waits before it writes what it applied
    /// (see [`InjectedDelays::write_stall`]).
    pub write_stall: Duration,
    /// Bytes the device holds (`None`: unbounded): a write that would take
    /// the live data past it fails with ENOSPC, like a full filesystem.
    pub capacity: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    /// What survives a power loss.
    durable: Trees,
    /// Batches written since the last sync, oldest first.
    unsynced: Vec<WriteBatch>,
    /// What reads see: `durable` with `unsynced` applied.
    live: Trees,
    faults: DiskFaults,
}

/// An in-memory [`Engine`] with RocksDB's crash semantics.
#[derive(Debug, Default)]
pub struct SimDisk {
    inner: Mutex<Inner>,
}

fn apply(trees: &mut Trees, batch: &WriteBatch) {
    for op in &batch.ops {
        match op {
            WriteOp::Put { cf, key, value } => {
                trees.entry(cf).or_default().insert(key.clone(), value.clone());
            }
            WriteOp::Delete { cf, key } => {
                trees.entry(cf).or_default().remove(key);
            }
            WriteOp::DeleteRange { cf, start, end } => {
                let tree = trees.entry(cf).or_default();
                if start < end {
                    let doomed: Vec<Vec<u8>> = tree.range(start.clone()..end.clone()).map(|(k, _)| k.clone()).collect();
                    for key in doomed {
                        tree.remove(&key);
                    }
                }
            }
        }
    }
}

thread_local! {
    /// Disks by data dir. Per thread: a simulated world runs on one thread,
    /// and concurrent worlds (tests, parallel seeds) must not share disks.
    static REGISTRY: std::cell::RefCell<BTreeMap<PathBuf, Arc<SimDisk>>> = const { std::cell::RefCell::new(BTreeMap::new()) };
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// The disk registered for `dir` on this thread, created empty on first use. The simulation
    /// harness uses this so that a restarted node finds its disk again.
    pub fn registered(dir: &Path, _column_families: &[super::ColumnFamily]) -> Arc<SimDisk> {
        REGISTRY.with(|r| r.borrow_mut().entry(dir.to_path_buf()).or_default().clone())
    }

    /// Forgets every registered disk (between simulation runs).
    pub fn clear_registry() {
        REGISTRY.with(|r| r.borrow_mut().clear());
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the injected faults.
    pub fn set_faults(&self, faults: DiskFaults) {
        self.lock().faults = faults;
    }

    /// The disk is replaced by an empty one (an operator wiped the data dir).
    pub fn wipe(&self) {
        let mut inner = self.lock();
        let faults = inner.faults.clone();
        *inner = Inner::default();
        inner.faults = faults;
    }

    /// The process died: unsynced data is in the OS page cache and survives.
    pub fn crash(&self) {
        let mut inner = self.lock();
        let unsynced = std::mem::take(&mut inner.unsynced);
        for batch in &unsynced {
            apply(&mut inner.durable, batch);
        }
    }

    /// The machine lost power: a random prefix of the unsynced batches survives.
    /// Returns how many batches were lost.
    pub fn power_loss(&self, rng: &mut impl Rng) -> usize {
        let kept = rng.gen_range(0..=self.unsynced_batches());
        self.power_loss_keeping(kept)
    }

    /// The machine lost power, and the first `kept` unsynced batches
    /// survive. Returns how many batches were lost.
    pub fn power_loss_keeping(&self, kept: usize) -> usize {
        let mut inner = self.lock();
        let unsynced = std::mem::take(&mut inner.unsynced);
        let kept = kept.min(unsynced.len());
        for batch in &unsynced[..kept] {
            apply(&mut inner.durable, batch);
        }
        inner.live = inner.durable.clone();
        unsynced.len() - kept
    }

    /// Number of batches that a power loss could lose right now.
    pub fn unsynced_batches(&self) -> usize {
        self.lock().unsynced.len()
    }

    /// Damages one stored record, on the medium (what survives and what
    /// reads see), the way `kind` says; the record is drawn from a column
    /// family drawn first. Call it on a stopped node's disk. `None`: the
    /// disk holds nothing to damage that way.
    pub fn damage(&self, kind: DamageKind, rng: &mut impl Rng) -> Option<Damage> {
        let mut inner = self.lock();
        let cfs: Vec<&'static str> = inner
            .durable
            .iter()
            .filter(|(_, tree)| tree.len() >= if kind == DamageKind::Misdirected { 2 } else { 1 })
            .map(|(cf, _)| *cf)
            .collect();
        let cf = *cfs.get(rng.gen_range(0..cfs.len().max(1)))?;
        let tree = inner.durable.get(cf)?;
        let pick = |rng: &mut dyn rand::RngCore| tree.keys().nth(rng.gen_range(0..tree.len())).cloned();
        let key = pick(rng)?;
        let mut value = tree.get(&key)?.clone();
        let (key, damage) = match kind {
            DamageKind::BitFlip => {
                let bit = rng.gen_range(0..value.len().max(1) * 8);
                if let Some(byte) = value.get_mut(bit / 8) {
                    *byte ^= 1 << (bit % 8);
                } else {
                    value.push(1);
                }
                (key.clone(), Damage { cf, key, what: format!("bit {bit} flipped") })
            }
            DamageKind::Torn => {
                let kept = rng.gen_range(0..value.len().max(1));
                value.truncate(kept);
                (key.clone(), Damage { cf, key, what: format!("torn after {kept} bytes") })
            }
            DamageKind::Misdirected => {
                // The write of `key`'s value landed on another record.
                let target = std::iter::repeat_with(|| pick(rng)).flatten().find(|k| *k != key)?;
                let what = format!("overwritten by the value of {}", key.escape_ascii());
                (target.clone(), Damage { cf, key: target, what })
            }
        };
        inner.durable.entry(cf).or_default().insert(key.clone(), value.clone());
        inner.live.entry(cf).or_default().insert(key, value);
        Some(damage)
    }
}

/// How [`SimDisk::damage`] damages a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// One bit of the value flips (bit rot, a bad sector read back).
    BitFlip,
    /// The value is cut short (a torn write: power failed halfway).
    Torn,
    /// Another record's value is written over it (a misdirected write).
    Misdirected,
}

/// What [`SimDisk::damage`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The damaged record's column family.
    pub cf: &'static str,
    /// Its key.
    pub key: Vec<u8>,
    /// What happened to it.
    pub what: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}: {}", self.cf, self.key.escape_ascii(), self.what)
    }
}

fn live_bytes(inner: &Inner) -> u64 {
    inner.live.values().flat_map(|tree| tree.iter()).map(|(k, v)| (k.len() + v.len()) as u64).sum()
}

impl SimDisk {
    /// Bytes the live data takes.
    pub fn used_bytes(&self) -> u64 {
        live_bytes(&self.lock())
    }
}

impl Engine for SimDisk {
    fn size_bytes(&self) -> Result<u64, StorageError> {
        Ok(live_bytes(&self.lock()))
    }

    fn available_bytes(&self) -> Result<Option<u64>, StorageError> {
        let inner = self.lock();
        Ok(inner.faults.capacity.map(|capacity| capacity.saturating_sub(live_bytes(&inner))))
    }

    fn size_of(&self, cfs: &[&'static str]) -> Result<u64, StorageError> {
        let inner = self.lock();
        let trees = cfs.iter().filter_map(|cf| inner.live.get(cf));
        Ok(trees.flat_map(|tree| tree.iter()).map(|(k, v)| (k.len() + v.len()) as u64).sum())
    }

    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().live.get(cf).and_then(|t| t.get(key)).cloned())
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if (sync && inner.faults.fail_syncs) || (!sync && inner.faults.fail_writes) {
            return Err(StorageError::Io("injected EIO".to_string()));
        }
        if let Some(capacity) = inner.faults.capacity {
            let added: u64 = batch
                .ops
                .iter()
                .map(|op| match op {
                    WriteOp::Put { key, value, .. } => (key.len() + value.len()) as u64,
                    _ => 0,
                })
                .sum();
            if added > 0 && live_bytes(&inner) + added > capacity {
                return Err(StorageError::NoSpace);
            }
        }
        apply(&mut inner.live, &batch);
        if sync {
            let unsynced = std::mem::take(&mut inner.unsynced);
            for earlier in &unsynced {
                apply(&mut inner.durable, earlier);
            }
            apply(&mut inner.durable, &batch);
        } else {
            inner.unsynced.push(batch);
        }
        Ok(())
    }

    fn scan(
        &self,
        cf: &'static str,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Pair>, StorageError> {
        let inner = self.lock();
        let Some(tree) = inner.live.get(cf) else { return Ok(Vec::new()) };
        let out = tree
            .range(start.to_vec()..)
            .take_while(|(k, _)| end.is_none_or(|end| k.as_slice() < end))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(out)
    }

    fn last(&self, cf: &'static str) -> Result<Option<Pair>, StorageError> {
        let inner = self.lock();
        Ok(inner.live.get(cf).and_then(|t| t.last_key_value()).map(|(k, v)| (k.clone(), v.clone())))
    }

    fn injected_delays(&self) -> InjectedDelays {
        let inner = self.lock();
        InjectedDelays { io: inner.faults.latency, write_stall: inner.faults.write_stall }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn put(disk: &SimDisk, key: &str, sync: bool) {
        let mut batch = WriteBatch::new();
        batch.put("cf", key.as_bytes(), b"v".to_vec());
        disk.write(batch, sync).unwrap();
    }

    fn has(disk: &SimDisk, key: &str) -> bool {
        disk.get("cf", key.as_bytes()).unwrap().is_some()
    }

    #[test]
    fn crash_keeps_unsynced_batches() {
        let disk = SimDisk::new();
        put(&disk, "a", false);
        disk.crash();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        // After the crash made them durable, a power loss has nothing to lose.
        assert_eq!(disk.power_loss(&mut rng), 0);
        assert!(has(&disk, "a"));
    }

    #[test]
    fn power_loss_keeps_synced_and_a_prefix_of_unsynced() {
        for seed in 0..50 {
            let disk = SimDisk::new();
            put(&disk, "synced", true);
            for i in 0..5 {
                put(&disk, &format!("u{i}"), false);
            }
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let lost = disk.power_loss(&mut rng);
            assert!(has(&disk, "synced"));
            let kept: Vec<bool> = (0..5).map(|i| has(&disk, &format!("u{i}"))).collect();
            // a prefix survives: no kept batch after a lost one
            assert!(kept.windows(2).all(|w| w[0] || !w[1]), "not a prefix: {kept:?}");
            assert_eq!(kept.iter().filter(|k| !**k).count(), lost);
        }
    }

    #[test]
    fn sync_makes_earlier_unsynced_batches_durable() {
        let disk = SimDisk::new();
        put(&disk, "a", false);
        put(&disk, "b", true);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(disk.power_loss(&mut rng), 0);
        assert!(has(&disk, "a") && has(&disk, "b"));
    }

    #[test]
    fn injected_eio_fails_the_write_and_applies_nothing() {
        let disk = SimDisk::new();
        disk.set_faults(DiskFaults { fail_syncs: true, ..Default::default() });
        let mut batch = WriteBatch::new();
        batch.put("cf", b"a".to_vec(), b"v".to_vec());
        assert!(matches!(disk.write(batch, true), Err(StorageError::Io(_))));
        assert!(!has(&disk, "a"));
        // unsynced writes still work
        put(&disk, "b", false);
        assert!(has(&disk, "b"));
    }
}
