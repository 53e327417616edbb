//! The backup file `Maintenance.Snapshot` streams (what `etcdctl snapshot
//! save` writes): a consistent copy of the state machine, checked on read.
//!
//! Layout: the 8 bytes `PCSNAP1\n`, the length of the body (u64,
//! big-endian), the body (a raft.v1 `StateSnapshot` message), zeros up to a
//! multiple of 512 bytes, then the SHA-256 of everything before it. etcdctl
//! checks that shape (a 512-byte-aligned file plus a 32-byte SHA-256, as
//! etcd's own backups are) before it saves. [`decode`] refuses a file that is
//! cut short, has another magic or whose checksum does not match.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::proto::raft::v1::StateSnapshot;

/// The first bytes of a backup file.
pub const MAGIC: &[u8; 8] = b"PCSNAP1\n";

const HEADER: usize = 16;
const ALIGN: usize = 512;
const SHA: usize = 32;

/// Why a backup file cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackupError {
    #[error("not a Placement Center snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot is truncated")]
    Truncated,
    #[error("snapshot checksum mismatch")]
    Checksum,
    #[error("snapshot content does not decode: {0}")]
    Decode(String),
}

/// The backup file for the encoded `StateSnapshot` message `state`.
pub fn encode(state: &[u8]) -> Vec<u8> {
    let unpadded = HEADER + state.len();
    let padded = unpadded.div_ceil(ALIGN) * ALIGN;
    let mut out = Vec::with_capacity(padded + SHA);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(state.len() as u64).to_be_bytes());
    out.extend_from_slice(state);
    out.resize(padded, 0);
    let sha = Sha256::digest(&out);
    out.extend_from_slice(&sha);
    out
}

/// The state a backup file holds.
pub fn decode(file: &[u8]) -> Result<StateSnapshot, BackupError> {
    if file.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(file) { BackupError::Truncated } else { BackupError::BadMagic });
    }
    if !file.starts_with(MAGIC) {
        return Err(BackupError::BadMagic);
    }
    if file.len() < HEADER + SHA || (file.len() - SHA) % ALIGN != 0 {
        return Err(BackupError::Truncated);
    }
    let (content, sha) = file.split_at(file.len() - SHA);
    if Sha256::digest(content).as_slice() != sha {
        return Err(BackupError::Checksum);
    }
    let len = u64::from_be_bytes(content[8..HEADER].try_into().expect("8 bytes"));
    let body = usize::try_from(len)
        .ok()
        .and_then(|len| content.get(HEADER..HEADER.checked_add(len)?))
        .ok_or(BackupError::Truncated)?;
    let state = StateSnapshot::decode(body).map_err(|e| BackupError::Decode(e.to_string()))?;
    crate::state::check_snapshot(&state).map_err(BackupError::Decode)?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb::KeyValue;

    fn sample() -> StateSnapshot {
        StateSnapshot {
            revision: 7,
            kvs: vec![KeyValue { key: b"k".to_vec(), value: b"v".to_vec(), mod_revision: 7, ..Default::default() }],
            compact_revision: 3,
            ..Default::default()
        }
    }

    #[test]
    fn a_backup_reads_back_what_was_written() {
        let file = encode(&sample().encode_to_vec());
        assert_eq!(decode(&file).unwrap(), sample());
    }

    #[test]
    fn damaged_backups_are_refused_with_the_reason() {
        let file = encode(&sample().encode_to_vec());
        assert_eq!(file.len() % 512, 32, "etcdctl wants 512-byte pages plus a SHA-256");
        assert_eq!(decode(&file[..file.len() - 1]), Err(BackupError::Truncated));
        assert_eq!(decode(&file[..5]), Err(BackupError::Truncated));
        assert_eq!(decode(&file[..10]), Err(BackupError::Truncated));
        assert_eq!(decode(b"SQLite format 3\0"), Err(BackupError::BadMagic));
        let mut flipped = file.clone();
        flipped[20] ^= 1;
        assert_eq!(decode(&flipped), Err(BackupError::Checksum));
        // A length field pointing past the content, with a valid checksum.
        let mut long = file[..file.len() - 32].to_vec();
        long[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        long.extend_from_slice(&Sha256::digest(&long));
        assert_eq!(decode(&long), Err(BackupError::Truncated));
    }

    /// A backup whose lease TTL no server grants (i64::MAX panicked the
    /// leader's expiry task once restored) is refused with the reason.
    #[test]
    fn a_backup_with_an_impossible_lease_ttl_is_refused() {
        use crate::proto::raft::v1::LeaseRecord;
        let bad = StateSnapshot { leases: vec![LeaseRecord { id: 7, ttl: i64::MAX }], ..sample() };
        let refused = decode(&encode(&bad.encode_to_vec())).unwrap_err();
        assert!(refused.to_string().contains("lease 7 has TTL"), "{refused}");
        let fine = StateSnapshot { leases: vec![LeaseRecord { id: 7, ttl: 60 }], ..sample() };
        assert_eq!(decode(&encode(&fine.encode_to_vec())).unwrap(), fine);
    }
}
