//! How the Rust code is generated from the .proto files: shared by the
//! build script (the simulation's flavour, at build time) and by
//! `placement-proto-codegen` (the production flavour, committed under
//! src/generated/ so that building the crate needs no protoc).

use std::error::Error;
use std::path::Path;

/// The .proto files, relative to the crate's directory (also the import root).
pub const PROTOS: [&str; 6] =
    ["etcd/kv.proto", "etcd/auth.proto", "etcd/rpc.proto", "raft.proto", "grpc/health.proto", "placement.proto"];

/// Writes into `out_dir`: `<package>.rs` (tonic's flavour), `sim/<package>.rs`
/// (madsim-tonic's flavour: madsim-tonic-build writes both) and
/// `<package>.serde.rs` (serde's traits for the client API's messages), from
/// the .proto files under `proto_dir`.
pub fn generate(proto_dir: &Path, out_dir: &Path) -> Result<(), Box<dyn Error>> {
    let protos: Vec<_> = PROTOS.iter().map(|p| proto_dir.join(p)).collect();
    let descriptors = out_dir.join("descriptors.bin");
    tonic_build::configure()
        .btree_map(["."])
        .out_dir(out_dir)
        .emit_rerun_if_changed(false)
        .file_descriptor_set_path(&descriptors)
        .compile_protos(&protos, &[proto_dir])?;
    // JSON for the client API's messages (the server's gateway): proto3's JSON
    // mapping with the proto field names, as etcd's gateway writes it (int64
    // as strings, bytes as base64, defaults left out).
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .btree_map(["."])
        .out_dir(out_dir)
        .build(&[".mvccpb", ".authpb", ".etcdserverpb", ".placement.v1"])?;
    Ok(())
}
