//! Generates the protobuf messages and gRPC stubs for proto/. madsim-tonic-build
//! writes both the production (tonic) and the simulation (madsim-tonic) flavour;
//! `tonic::include_proto!` picks the one matching `cfg(madsim)`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/etcd/kv.proto",
        "proto/etcd/auth.proto",
        "proto/etcd/rpc.proto",
        "proto/raft.proto",
        "proto/grpc/health.proto",
        "proto/placement.proto",
    ];
    tonic_build::configure().btree_map(["."]).compile_protos(&protos, &["proto"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
