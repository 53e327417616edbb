//! Generates the protobuf messages and gRPC stubs for proto/. madsim-tonic-build
//! writes both the production (tonic) and the simulation (madsim-tonic) flavour;
//! `tonic::include_proto!` picks the one matching `cfg(madsim)`. pbjson-build
//! adds serde's traits to the client API's messages (`*.serde.rs`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/etcd/kv.proto",
        "proto/etcd/auth.proto",
        "proto/etcd/rpc.proto",
        "proto/raft.proto",
        "proto/grpc/health.proto",
        "proto/placement.proto",
    ];
    let descriptors = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("descriptors.bin");
    tonic_build::configure()
        .btree_map(["."])
        .file_descriptor_set_path(&descriptors)
        .compile_protos(&protos, &["proto"])?;
    // JSON for the client API's messages (the gateway: src/api/gateway.rs):
    // proto3's JSON mapping with the proto field names, as etcd's gateway
    // writes it (int64 as strings, bytes as base64, defaults left out).
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .btree_map(["."])
        .build(&[".mvccpb", ".authpb", ".etcdserverpb", ".placement.v1"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
