//! `Checked`: every value stored through it ends with a CRC-32 of its column
//! family, key and value, and every read verifies it. A flipped bit, a torn
//! value or a value written under another key (a misdirected write) is never
//! handed up as if valid: the read fails with [`StorageError::Corrupt`],
//! which stops a member's Raft (a log entry) or its start (state read at
//! open), so a damaged record is neither served nor replicated.
//!
//! RocksDB checksums its own blocks too; this covers what those do not see
//! (a record written whole at the wrong place, memory corrupted before the
//! write) and gives the simulator's disk, which has no blocks, the same
//! detection.

use std::sync::Arc;

use super::{Engine, InjectedDelays, Pair, StorageError, WriteBatch, WriteOp};

/// Bytes the checksum adds to each value.
pub const TRAILER_BYTES: usize = 4;

fn checksum(cf: &str, key: &[u8], value: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(cf.as_bytes());
    hasher.update(&[0]);
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key);
    hasher.update(value);
    hasher.finalize()
}

/// `value` as stored under `cf`/`key`: followed by its checksum.
pub fn seal(cf: &str, key: &[u8], mut value: Vec<u8>) -> Vec<u8> {
    let crc = checksum(cf, key, &value);
    value.extend_from_slice(&crc.to_le_bytes());
    value
}

/// The value that `stored` (read from `cf`/`key`) holds, once its checksum
/// holds.
pub fn unseal(cf: &str, key: &[u8], mut stored: Vec<u8>) -> Result<Vec<u8>, StorageError> {
    let corrupt = |what: String| {
        StorageError::Corrupt(format!(
            "record {cf}/{} {what}: the data dir is damaged; replace this member \
             (remove it, empty its data dir, add it back)",
            key.escape_ascii()
        ))
    };
    let Some(body_len) = stored.len().checked_sub(TRAILER_BYTES) else {
        return Err(corrupt(format!("is {} bytes, shorter than its checksum", stored.len())));
    };
    let mut trailer = [0u8; TRAILER_BYTES];
    trailer.copy_from_slice(&stored[body_len..]);
    let recorded = u32::from_le_bytes(trailer);
    stored.truncate(body_len);
    let computed = checksum(cf, key, &stored);
    if computed != recorded {
        return Err(corrupt(format!("fails its checksum (stored {recorded:08x}, computed {computed:08x})")));
    }
    Ok(stored)
}

fn unseal_pairs(cf: &str, pairs: Vec<Pair>) -> Result<Vec<Pair>, StorageError> {
    pairs
        .into_iter()
        .map(|(key, value)| {
            let value = unseal(cf, &key, value)?;
            Ok((key, value))
        })
        .collect()
}

/// An engine whose values carry checksums (see the module).
pub struct Checked {
    inner: Arc<dyn Engine>,
}

impl Checked {
    /// Wraps `inner`, whose values are all sealed (see [`seal`]).
    pub fn new(inner: Arc<dyn Engine>) -> Self {
        Self { inner }
    }
}

impl Engine for Checked {
    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(cf, key)?.map(|stored| unseal(cf, key, stored)).transpose()
    }

    fn write(&self, mut batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        for op in &mut batch.ops {
            if let WriteOp::Put { cf, key, value } = op {
                *value = seal(cf, key, std::mem::take(value));
            }
        }
        self.inner.write(batch, sync)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.inner.sync()
    }

    fn scan(
        &self,
        cf: &'static str,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Pair>, StorageError> {
        unseal_pairs(cf, self.inner.scan(cf, start, end, limit)?)
    }

    fn last(&self, cf: &'static str) -> Result<Option<Pair>, StorageError> {
        match self.inner.last(cf)? {
            Some((key, stored)) => {
                let value = unseal(cf, &key, stored)?;
                Ok(Some((key, value)))
            }
            None => Ok(None),
        }
    }

    fn export(&self, cf: &'static str) -> Result<Vec<Pair>, StorageError> {
        unseal_pairs(cf, self.inner.export(cf)?)
    }

    fn clear_into(&self, cf: &'static str, batch: &mut WriteBatch) -> Result<(), StorageError> {
        // Only keys: a damaged value must not keep it from being dropped.
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

#[cfg(test)]
mod tests {
    use super::super::sim_disk::SimDisk;
    use super::*;

    fn engine() -> (Arc<SimDisk>, Checked) {
        let disk = Arc::new(SimDisk::new());
        (disk.clone(), Checked::new(disk))
    }

    fn put(engine: &dyn Engine, cf: &'static str, key: &str, value: &str) {
        let mut batch = WriteBatch::new();
        batch.put(cf, key.as_bytes(), value.as_bytes().to_vec());
        engine.write(batch, true).unwrap();
    }

    #[test]
    fn values_read_back_as_written() {
        let (disk, checked) = engine();
        put(&checked, "cf", "a", "alpha");
        put(&checked, "cf", "b", "");
        assert_eq!(checked.get("cf", b"a").unwrap().as_deref(), Some(&b"alpha"[..]));
        assert_eq!(checked.get("cf", b"b").unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(checked.get("cf", b"c").unwrap(), None);
        let all = checked.export("cf").unwrap();
        assert_eq!(all, vec![(b"a".to_vec(), b"alpha".to_vec()), (b"b".to_vec(), Vec::new())]);
        assert_eq!(checked.last("cf").unwrap(), Some((b"b".to_vec(), Vec::new())));
        // What the disk holds is longer by the checksum.
        assert_eq!(disk.get("cf", b"a").unwrap().map(|v| v.len()), Some(5 + TRAILER_BYTES));
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_value_fails_every_read_of_it() {
        let (disk, checked) = engine();
        put(&checked, "cf", "a", "alpha");
        let stored = disk.get("cf", b"a").unwrap().unwrap();
        for bit in 0..stored.len() * 8 {
            let mut flipped = stored.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let mut batch = WriteBatch::new();
            batch.put("cf", b"a".to_vec(), flipped);
            disk.write(batch, true).unwrap();
            let err = checked.get("cf", b"a").unwrap_err();
            assert!(matches!(&err, StorageError::Corrupt(m) if m.contains("cf/a fails its checksum")), "{err}");
            assert!(matches!(checked.scan("cf", b"", None, 10), Err(StorageError::Corrupt(_))));
            assert!(matches!(checked.last("cf"), Err(StorageError::Corrupt(_))));
        }
    }

    #[test]
    fn a_value_written_under_another_key_or_column_family_is_refused() {
        let (disk, checked) = engine();
        put(&checked, "cf", "a", "alpha");
        let stored = disk.get("cf", b"a").unwrap().unwrap();
        let mut batch = WriteBatch::new();
        batch.put("cf", b"b".to_vec(), stored.clone());
        batch.put("other", b"a".to_vec(), stored);
        disk.write(batch, true).unwrap();
        assert!(matches!(checked.get("cf", b"b"), Err(StorageError::Corrupt(_))));
        assert!(matches!(checked.get("other", b"a"), Err(StorageError::Corrupt(_))));
    }

    #[test]
    fn a_torn_value_is_refused() {
        let (disk, checked) = engine();
        put(&checked, "cf", "a", "alpha");
        let stored = disk.get("cf", b"a").unwrap().unwrap();
        for len in 0..stored.len() {
            let mut batch = WriteBatch::new();
            batch.put("cf", b"a".to_vec(), stored[..len].to_vec());
            disk.write(batch, true).unwrap();
            assert!(matches!(checked.get("cf", b"a"), Err(StorageError::Corrupt(_))), "cut to {len}");
        }
    }

    #[test]
    fn every_damage_the_simulated_disk_does_is_caught_on_read() {
        use super::super::sim_disk::DamageKind;
        use rand::SeedableRng;
        for seed in 0..200 {
            let (disk, checked) = engine();
            for key in ["a", "b", "c"] {
                put(&checked, "kv", key, &format!("value of {key}"));
            }
            put(&checked, "log", "1", "");
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let kind = [DamageKind::BitFlip, DamageKind::Torn, DamageKind::Misdirected][seed as usize % 3];
            let damage = disk.damage(kind, &mut rng).expect("something to damage");
            let read = checked.get(damage.cf, &damage.key);
            assert!(matches!(read, Err(StorageError::Corrupt(_))), "seed {seed}: {damage} read as {read:?}");
        }
    }

    #[test]
    fn clearing_a_column_family_drops_damaged_values_too() {
        let (disk, checked) = engine();
        put(&checked, "cf", "a", "alpha");
        let mut batch = WriteBatch::new();
        batch.put("cf", b"a".to_vec(), b"garbage".to_vec());
        disk.write(batch, true).unwrap();
        checked.import("cf", vec![(b"z".to_vec(), b"zeta".to_vec())]).unwrap();
        assert_eq!(checked.export("cf").unwrap(), vec![(b"z".to_vec(), b"zeta".to_vec())]);
    }
}
