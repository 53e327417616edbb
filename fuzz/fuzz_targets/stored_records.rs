//! Records read back from disk: a log entry, an event, a lease record, a
//! stored snapshot, this node's identity. Garbage is an error, not a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_center::join::Identity;
use placement_center::proto::mvccpb::{Event, KeyValue};
use placement_center::proto::raft::v1 as pb;
use placement_center::raft::codec;
use placement_center::storage::sim_disk::SimDisk;
use placement_center::storage::{Engine, WriteBatch};

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = codec::decode::<pb::Entry>("Entry", data) {
        if let Ok(e) = codec::entry_from_pb(entry) {
            assert!(codec::entry_from_pb(codec::entry_to_pb(&e)).is_ok());
        }
    }
    let _ = codec::decode::<Event>("Event", data);
    let _ = codec::decode::<KeyValue>("KeyValue", data);
    let _ = codec::decode::<pb::LeaseRecord>("LeaseRecord", data);
    let _ =
        codec::decode::<pb::StoredMembership>("StoredMembership", data).map(|m| codec::stored_membership_from_pb(&m));
    // The identity record as a data dir holds it.
    let disk = SimDisk::new();
    let mut batch = WriteBatch::new();
    batch.put(placement_center::raft::state_store::CF_SM, b"identity".to_vec(), data.to_vec());
    disk.write(batch, true).unwrap();
    let _ = Identity::load(&disk);
});
