//! Placement Center: a replicated, strongly consistent metadata store for
//! message-queue brokers, speaking the etcd v3 API.
//!
//! The modules, from the top of the stack down (a module uses only those below it):
//!
//! - [`server`]: wires config, runtime, Raft and the gRPC services; owns shutdown.
//! - [`api`]: tonic services (etcd `KV`); the one place errors become `tonic::Status`.
//! - [`raft`]: openraft over the storage engine: log store, state-machine store,
//!   the `raft.v1` network and service, forwarding to the leader, ReadIndex.
//! - [`client`]: a client for brokers and tools (endpoints, leader, retries, keep-alive);
//!   it sits beside the stack, speaking only gRPC: the `placement-client` crate.
//! - [`placement`]: the placement API's records and rules over the key space.
//! - [`state`]: the deterministic state machine (MVCC key space, txn). Pure: no I/O,
//!   no clock, no randomness.
//! - [`storage`]: the `Engine` trait, RocksDB and the in-memory `SimDisk`.
//! - [`runtime`]: the seams — clock, named tasks with shutdown, randomness, and the
//!   engine factory — in a production (tokio, RocksDB) and a simulation (madsim,
//!   SimDisk) flavour.
//! - [`config`]: one serde tree from TOML file, `PLACEMENT_*` env and flags.
//! - [`proto`]: generated protobuf messages and gRPC stubs: the `placement-proto` crate.

#![recursion_limit = "256"]

pub mod addr;
pub mod api;
pub mod backup;
pub mod config;
pub mod join;
pub mod metrics;
pub mod placement;
pub mod raft;
pub mod runtime;
pub mod server;
pub mod state;
pub mod storage;

/// The client library (the `placement-client` crate).
pub use placement_client as client;
/// The wire types (the `placement-proto` crate).
pub use placement_proto as proto;
