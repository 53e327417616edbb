//! Snapshot chunks as the peer service receives them: a run of
//! InstallSnapshotRequests (each a length byte and its protobuf). Whatever
//! arrives, the receiver never panics, never holds more than its limit, and
//! a snapshot it completes is exactly the chunks it accepted, in order; the
//! decode check that follows never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_center::proto::raft::v1 as pb;
use placement_center::raft::codec;
use placement_center::raft::snapshot_receiver::SnapshotReceiver;
use prost::Message;

const LIMIT: u64 = 4096;

fuzz_target!(|data: &[u8]| {
    let mut receiver = SnapshotReceiver::with_limit(LIMIT);
    // The model: the snapshot under way as the chunks accepted so far.
    let mut model: Option<(String, Vec<u8>)> = None;
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (msg, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        let Ok(req) = pb::InstallSnapshotRequest::decode(msg) else { continue };
        let Ok(rpc) = codec::snapshot_req_from_pb(req) else { continue };
        let id = rpc.snapshot_id.clone();
        let (offset, chunk, done) = (rpc.offset, rpc.data.clone(), rpc.done);
        match receiver.accept(&id, offset, rpc.data, done) {
            Err(_) => {
                // Refused chunks leave the snapshot under way as it was,
                // except a too-large start, which replaced nothing either.
            }
            Ok(completed) => {
                let resent = matches!(&model, Some((m, b)) if *m == id && offset != 0
                    && offset + chunk.len() as u64 == b.len() as u64 && !chunk.is_empty() && !done);
                if !resent {
                    if offset == 0 {
                        model = Some((id.clone(), chunk));
                    } else if let Some((_, bytes)) = &mut model {
                        bytes.extend_from_slice(&chunk);
                    }
                }
                let held = model.as_ref().map_or(0, |(_, b)| b.len() as u64);
                assert!(held <= LIMIT, "holds {held} bytes");
                if let Some(snapshot) = completed {
                    let (_, expected) = model.take().expect("completed without a snapshot under way");
                    assert_eq!(snapshot, expected);
                    let _ = codec::decode::<pb::StateSnapshot>("StateSnapshot", &snapshot);
                } else {
                    assert!(!done || resent);
                }
            }
        }
    }
});
