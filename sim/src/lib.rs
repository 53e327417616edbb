//! `placement-sim`: the whole Placement Center cluster inside madsim's
//! deterministic simulator. One seed = one run: a cluster, clients running a
//! workload through the real gRPC API, a nemesis injecting faults drawn from the
//! seed, then heal, convergence and checkers over the recorded history.
//!
//! - [`history`]: what clients did and saw (pure data).
//! - [`checker`]: linearizability (Wing–Gong–Lowe, per key), serializable reads,
//!   Raft invariants, convergence. Pure: unit-tested with hand-made histories.
//! - `cluster`, `nemesis`, `workload`, `watchers`, `brokers`, `run` (only with `--cfg madsim`): the
//!   harness, the faults, the clients and one seed's run.

pub mod checker;
pub mod history;

#[cfg(madsim)]
pub mod auth;
pub mod brokers;
#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod forgery;
#[cfg(madsim)]
pub mod nemesis;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod watchers;
#[cfg(madsim)]
pub mod workload;
