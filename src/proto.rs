//! Generated protobuf messages and gRPC stubs (see build.rs and proto/).
//! The module nesting mirrors the protobuf packages, which the generated
//! code relies on for cross-package references.
#![allow(clippy::all, missing_docs)]

/// etcd's `mvccpb`: KeyValue and Event.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

/// etcd's `authpb`: users, roles and permissions.
pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

/// etcd's `etcdserverpb`: the client API.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

/// Node-to-node traffic.
pub mod raft {
    /// Version 1 of the `raft` package.
    pub mod v1 {
        tonic::include_proto!("raft.v1");
    }
}

/// The placement API for brokers.
pub mod placement {
    /// Version 1 of the `placement` package.
    pub mod v1 {
        tonic::include_proto!("placement.v1");
        include!(concat!(env!("OUT_DIR"), "/placement.v1.serde.rs"));
    }
}

/// The standard gRPC health checking protocol.
pub mod grpc {
    /// `grpc.health`.
    pub mod health {
        /// `grpc.health.v1`.
        pub mod v1 {
            tonic::include_proto!("grpc.health.v1");
        }
    }
}
