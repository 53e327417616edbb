//! Client requests of the etcd API as a node decodes and serves them, against
//! a store the same input builds: the input is a sequence of frames (tag,
//! u16 length, protobuf). Writes (raft.v1 Commands: what Put, DeleteRange,
//! Txn, Compact, LeaseGrant and LeaseRevoke become) are applied; Range
//! requests are served; Watch create requests make a watcher that reads the
//! history to the end; member changes have their peer URL parsed; the other
//! requests are decoded. Beyond "no panic":
//! - a range answers only keys of its range, honors limit, count_only and
//!   keys_only, and counts at least what it returns;
//! - a watcher reads events it wants, in revision order, each once, never
//!   past the store's revision, and always comes to an end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_center::api::cluster::peer_addr;
use placement_center::api::watch::{Next, Watcher, EVENTS_PER_RESPONSE};
use placement_center::proto::etcdserverpb::{
    watch_request::RequestUnion, HashKvRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest, MemberAddRequest,
    MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest, MoveLeaderRequest, RangeRequest, WatchRequest,
};
use placement_center::proto::raft::v1::Command;
use placement_center::state::{KeyRange, KvState};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut state = KvState::default();
    let mut rest = data;
    while rest.len() >= 3 {
        let tag = rest[0];
        let len = u16::from_be_bytes([rest[1], rest[2]]) as usize;
        rest = &rest[3..];
        let (bytes, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        match tag % 5 {
            0 => {
                if let Ok(command) = Command::decode(bytes) {
                    let _ = state.apply(&command);
                }
            }
            1 => {
                if let Ok(req) = RangeRequest::decode(bytes) {
                    range(&state, &req);
                }
            }
            2 => {
                if let Ok(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }) =
                    WatchRequest::decode(bytes)
                {
                    watch(
                        &state,
                        &Watcher::new(&create, state.revision()),
                        &KeyRange::new(&create.key, &create.range_end),
                    );
                }
            }
            3 => {
                if let Ok(req) = MemberAddRequest::decode(bytes) {
                    member_urls(&req.peer_ur_ls);
                }
                if let Ok(req) = MemberUpdateRequest::decode(bytes) {
                    member_urls(&req.peer_ur_ls);
                }
            }
            _ => {
                let _ = LeaseKeepAliveRequest::decode(bytes);
                let _ = LeaseTimeToLiveRequest::decode(bytes);
                let _ = MemberRemoveRequest::decode(bytes);
                let _ = MemberPromoteRequest::decode(bytes);
                let _ = MoveLeaderRequest::decode(bytes);
                let _ = HashKvRequest::decode(bytes);
            }
        }
    }
});

fn range(state: &KvState, req: &RangeRequest) {
    let Ok(resp) = state.range(req) else { return };
    let keys = KeyRange::new(&req.key, &req.range_end);
    assert!(resp.kvs.iter().all(|kv| keys.contains(&kv.key)), "a key outside the range");
    assert!(resp.count >= resp.kvs.len() as i64, "count below what was returned");
    if req.limit > 0 {
        assert!(resp.kvs.len() as i64 <= req.limit, "more than the limit");
    }
    if req.count_only {
        assert!(resp.kvs.is_empty(), "count_only returned records");
    }
    if req.keys_only {
        assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()), "keys_only returned a value");
    }
}

fn watch(state: &KvState, watcher: &Watcher, keys: &KeyRange) {
    let mut watcher = watcher.clone();
    // The last revision of the batches read so far: each revision comes once.
    let mut read_up_to = 0;
    // Each read moves past at least one revision, so this bound is never the
    // one that ends the loop.
    for _ in 0..=state.revision().max(0) + 1 {
        match watcher.read(state) {
            Next::UpToDate | Next::Compacted { .. } => return,
            Next::Events { events, header_revision } => {
                assert!(!events.is_empty(), "an empty batch of events");
                assert!(header_revision <= state.revision(), "a header past the store's revision");
                let mut previous = read_up_to;
                for (i, event) in events.iter().enumerate() {
                    assert!(watcher.wants(event), "an event the watcher does not want");
                    let kv = event.kv.as_ref().expect("events carry their record");
                    assert!(keys.contains(&kv.key), "an event outside the range");
                    assert!(kv.mod_revision <= state.revision(), "an event past the store's revision");
                    if i == 0 {
                        assert!(kv.mod_revision > read_up_to, "a revision read twice");
                    }
                    assert!(kv.mod_revision >= previous, "events out of order");
                    previous = kv.mod_revision;
                }
                read_up_to = previous;
                if events.len() < EVENTS_PER_RESPONSE {
                    assert_eq!(watcher.next_revision(), state.revision() + 1, "a short batch ends the history");
                }
            }
        }
    }
    panic!("a watcher never caught up");
}

fn member_urls(urls: &[String]) {
    if let Ok(addr) = peer_addr(urls) {
        assert!(!addr.is_empty());
        assert_eq!(peer_addr(&[format!("http://{addr}")]).ok(), Some(addr), "a parsed peer URL parses back");
    }
}
