//! The gRPC services clients talk to. Every error a client sees is made in
//! [`error`], with etcd's exact codes and messages.

pub mod error;
pub mod kv;

pub use error::ApiError;
pub use kv::KvService;
