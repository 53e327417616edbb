//! A recorded history: every client operation with its invocation and
//! completion time (virtual), and what it observed.

use std::fmt;
use std::time::Duration;

/// What a client asked for, on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Call {
    /// Put a value (values are unique per history).
    Put(String),
    /// Linearizable read.
    Get,
    /// Serializable (possibly stale) read.
    GetSerializable,
    /// Delete the key.
    Delete,
    /// Txn: if value == expected then put new.
    Cas { expected: String, new: String },
}

/// What the client observed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The write was acknowledged.
    Written,
    /// A read's value (`None`: no such key).
    Read(Option<String>),
    /// How many keys a delete removed.
    Deleted(i64),
    /// Whether a CAS's compare held.
    Swapped(bool),
    /// No answer (timeout, connection lost): it may or may not have happened.
    Unknown,
    /// A definite refusal: it did not happen.
    Failed,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Op {
    /// Client that issued it.
    pub client: u32,
    /// The key.
    pub key: String,
    /// What was asked.
    pub call: Call,
    /// Invocation time (virtual, since the run started).
    pub invoked: Duration,
    /// Completion time; for `Unknown` outcomes, when the client gave up.
    pub completed: Duration,
    /// What was observed.
    pub outcome: Outcome,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>9.3}s..{:>9.3}s] client {} {} {:?} -> {:?}",
            self.invoked.as_secs_f64(),
            self.completed.as_secs_f64(),
            self.client,
            self.key,
            self.call,
            self.outcome
        )
    }
}

/// A digest of a history (and of anything else fed to it), stable across
/// processes: the trace hash that must not change when a seed is replayed.
#[derive(Debug, Clone, Copy)]
pub struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    /// Feeds bytes (FNV-1a).
    pub fn feed(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Feeds a displayable value.
    pub fn feed_display(&mut self, value: &impl fmt::Display) {
        self.feed(value.to_string().as_bytes());
        self.feed(b"\n");
    }

    /// The digest.
    pub fn value(&self) -> u64 {
        self.0
    }
}
