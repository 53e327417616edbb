//! `placement-check`: what a correct Placement Center cluster may do, judged
//! on a recorded history. The simulator (`placement-sim`, virtual time) and
//! the robustness suite on real processes (`placement-robust`, wall-clock
//! time) record the same histories and both hand them here, so both suites
//! judge by one definition of correct.
//!
//! - [`history`]: what KV clients did and saw (pure data).
//! - [`checker`]: linearizability (Wing–Gong–Lowe, per key), serializable
//!   reads, watch guarantees, lease safety, broker epochs, Raft invariants.
//!   Pure: unit-tested with hand-made histories.

pub mod checker;
pub mod history;
