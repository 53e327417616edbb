//! The gRPC services clients talk to. Every error a client sees is made in
//! [`error`], with etcd's exact codes and messages.

pub mod auth;
pub mod cluster;
pub mod context;
pub mod controller;
pub mod error;
mod follow;
pub mod gateway;
pub mod health;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod offsets;
pub mod placement;
pub mod tokens;
pub mod topics;
pub mod watch;

pub use auth::AuthService;
pub use cluster::ClusterService;
pub use context::ApiContext;
pub use error::ApiError;
pub use kv::KvService;
pub use lease::LeaseService;
pub use maintenance::MaintenanceService;
pub use placement::PlacementService;
pub use watch::WatchService;
