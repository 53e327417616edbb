//! A peer's raft.v1 messages: the first byte picks the message type, the
//! rest is its protobuf. Decoding and conversion to openraft's types either
//! succeed or give an error, never a panic; what converts converts back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_center::proto::raft::v1 as pb;
use placement_center::raft::codec;
use placement_center::raft::membership::MemberChange;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((kind, bytes)) = data.split_first() else { return };
    match kind % 9 {
        0 => {
            if let Ok(m) = pb::AppendEntriesRequest::decode(bytes) {
                if let Ok(req) = codec::append_req_from_pb(m) {
                    let back = codec::append_req_to_pb(&req);
                    assert!(codec::append_req_from_pb(back).is_ok());
                }
            }
        }
        1 => {
            if let Ok(m) = pb::AppendEntriesResponse::decode(bytes) {
                let _ = codec::append_resp_from_pb(&m);
                // The same bytes as an AppendStream answer.
                if let Ok(result) = codec::stream_result_from_pb(&m) {
                    assert_eq!(codec::stream_result_from_pb(&codec::stream_result_to_pb(&result)).ok(), Some(result));
                }
            }
        }
        2 => {
            if let Ok(m) = pb::VoteRequest::decode(bytes) {
                if let Ok(req) = codec::vote_req_from_pb(&m) {
                    assert!(codec::vote_req_from_pb(&codec::vote_req_to_pb(&req)).is_ok());
                }
            }
        }
        3 => {
            if let Ok(m) = pb::VoteResponse::decode(bytes) {
                let _ = codec::vote_resp_from_pb(&m);
            }
        }
        4 => {
            if let Ok(m) = pb::InstallSnapshotRequest::decode(bytes) {
                if let Ok(req) = codec::snapshot_req_from_pb(m) {
                    assert!(codec::snapshot_req_from_pb(codec::snapshot_req_to_pb(&req)).is_ok());
                }
            }
        }
        5 => {
            if let Ok(m) = pb::MemberChange::decode(bytes) {
                if let Some(change) = MemberChange::from_pb(m) {
                    assert_eq!(MemberChange::from_pb(change.to_pb()), Some(change));
                }
            }
        }
        7 => {
            if let Ok(m) = pb::TransferLeaderRequest::decode(bytes) {
                if let Ok(req) = codec::transfer_req_from_pb(&m) {
                    assert!(codec::transfer_req_from_pb(&codec::transfer_req_to_pb(&req)).is_ok());
                }
            }
        }
        8 => {
            if let Ok(m) = pb::TransferLeaderResponse::decode(bytes) {
                if let Ok(resp) = codec::transfer_resp_from_pb(&m) {
                    assert_eq!(codec::transfer_resp_from_pb(&codec::transfer_resp_to_pb(&resp)).ok(), Some(resp));
                }
            }
        }
        _ => {
            if let Ok(m) = pb::StoredSnapshot::decode(bytes) {
                if let Some(meta) = &m.meta {
                    let _ = codec::snapshot_meta_from_pb(meta);
                }
                let _ = pb::StateSnapshot::decode(m.data.as_slice());
            }
        }
    }
});
