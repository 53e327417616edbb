//! A follower's side of a snapshot sent in chunks. openraft's own receiver
//! seeks to whatever offset a chunk names (zero-filling up to it) and hands
//! the state machine whatever bytes arrived, where bytes that do not decode
//! are a fatal storage error. Here each chunk must continue the snapshot
//! being received exactly where it stopped, the whole stays under a size
//! limit, and only bytes that decode as a state snapshot reach openraft.

/// Largest snapshot a follower accepts, bytes: twice the largest quota etcd
/// recommends (8 GiB), so a real state machine always fits while a forged
/// stream cannot grow a follower's memory without end.
pub const MAX_SNAPSHOT_BYTES: u64 = 16 << 30;

/// Why a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// The chunk does not continue the snapshot being received.
    #[error("snapshot {id} chunk at offset {got}, expected offset {expected}")]
    OutOfOrder { id: String, expected: u64, got: u64 },
    /// The snapshot would exceed the limit ([`MAX_SNAPSHOT_BYTES`]).
    #[error("snapshot {id} would exceed {limit} bytes")]
    TooLarge { id: String, limit: u64 },
}

/// The snapshot being received, if any.
#[derive(Debug)]
pub struct SnapshotReceiver {
    /// Its id and the bytes received so far.
    receiving: Option<(String, Vec<u8>)>,
    /// The largest snapshot taken, bytes ([`MAX_SNAPSHOT_BYTES`]).
    limit: u64,
}

impl Default for SnapshotReceiver {
    fn default() -> Self {
        Self { receiving: None, limit: MAX_SNAPSHOT_BYTES }
    }
}

impl SnapshotReceiver {
    /// A receiver of snapshots up to `limit` bytes (tests and fuzzing use
    /// small ones).
    pub fn with_limit(limit: u64) -> Self {
        Self { receiving: None, limit }
    }

    /// Takes one chunk. Offset 0 starts a snapshot (dropping one that was
    /// under way); any other offset must be where the snapshot with that id
    /// stopped, or the end of the chunk before it resent (a leader retries a
    /// chunk whose answer was lost), which changes nothing. Returns the whole
    /// snapshot once `done`.
    pub fn accept(&mut self, id: &str, offset: u64, data: Vec<u8>, done: bool) -> Result<Option<Vec<u8>>, ChunkError> {
        let expected = match &self.receiving {
            _ if offset == 0 => 0,
            Some((current, bytes)) if current == id => bytes.len() as u64,
            _ => 0,
        };
        let end = offset.checked_add(data.len() as u64);
        if offset != 0 && end == Some(expected) && !data.is_empty() && !done {
            return Ok(None); // resent
        }
        if offset != expected {
            return Err(ChunkError::OutOfOrder { id: id.to_string(), expected, got: offset });
        }
        if end.is_none_or(|end| end > self.limit) {
            return Err(ChunkError::TooLarge { id: id.to_string(), limit: self.limit });
        }
        match &mut self.receiving {
            Some((current, bytes)) if offset != 0 && current == id => bytes.extend_from_slice(&data),
            _ => self.receiving = Some((id.to_string(), data)),
        }
        if !done {
            return Ok(None);
        }
        Ok(self.receiving.take().map(|(_, bytes)| bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_in_order_make_the_snapshot() {
        let mut r = SnapshotReceiver::default();
        assert_eq!(r.accept("s1", 0, b"ab".to_vec(), false), Ok(None));
        assert_eq!(r.accept("s1", 2, b"cd".to_vec(), false), Ok(None));
        assert_eq!(r.accept("s1", 4, b"e".to_vec(), true), Ok(Some(b"abcde".to_vec())));
        assert_eq!(
            r.accept("s1", 5, b"f".to_vec(), true),
            Err(ChunkError::OutOfOrder { id: "s1".into(), expected: 0, got: 5 })
        );
    }

    #[test]
    fn a_chunk_at_a_gap_or_of_another_snapshot_is_refused_without_allocating() {
        let mut r = SnapshotReceiver::default();
        assert_eq!(r.accept("s1", 0, b"ab".to_vec(), false), Ok(None));
        assert_eq!(
            r.accept("s1", 1 << 40, b"x".to_vec(), false),
            Err(ChunkError::OutOfOrder { id: "s1".into(), expected: 2, got: 1 << 40 })
        );
        assert_eq!(
            r.accept("s2", 2, b"x".to_vec(), false),
            Err(ChunkError::OutOfOrder { id: "s2".into(), expected: 0, got: 2 })
        );
        // The snapshot under way is unharmed.
        assert_eq!(r.accept("s1", 2, b"c".to_vec(), true), Ok(Some(b"abc".to_vec())));
    }

    #[test]
    fn a_resent_chunk_changes_nothing_and_a_new_start_replaces_the_old() {
        let mut r = SnapshotReceiver::default();
        r.accept("s1", 0, b"ab".to_vec(), false).unwrap();
        r.accept("s1", 2, b"cd".to_vec(), false).unwrap();
        assert_eq!(r.accept("s1", 2, b"cd".to_vec(), false), Ok(None));
        r.accept("s2", 0, b"zz".to_vec(), false).unwrap();
        assert_eq!(r.accept("s2", 2, b"!".to_vec(), true), Ok(Some(b"zz!".to_vec())));
    }

    #[test]
    fn sizes_past_the_limit_are_refused() {
        let mut r = SnapshotReceiver::with_limit(16);
        let too_large = Err(ChunkError::TooLarge { id: "s".into(), limit: 16 });
        assert_eq!(r.accept("s", 0, vec![0; 17], false), too_large);
        r.accept("s", 0, vec![0; 8], false).unwrap();
        assert_eq!(r.accept("s", 8, vec![0; 9], false), too_large);
        assert_eq!(r.accept("s", 8, vec![0; 8], true).map(|s| s.map(|s| s.len())), Ok(Some(16)));
        // An offset so large that offset + length overflows is out of order first.
        assert!(matches!(r.accept("s", u64::MAX, vec![0; 2], false), Err(ChunkError::OutOfOrder { .. })));
    }
}
