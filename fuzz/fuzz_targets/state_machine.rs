//! Client requests as the state machine applies them: the input is a
//! sequence of (u16 length, raft.v1 Command protobuf). Every command is
//! validated and applied (or refused) without a panic; the revision never
//! goes back; and the state survives its persisted form (what snapshots and
//! restarts rebuild it from) with the same digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_center::proto::raft::v1::Command;
use placement_center::state::KvState;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let mut state = KvState::default();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        let (bytes, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        let Ok(command) = Command::decode(bytes) else { continue };
        let before = state.revision();
        let _ = state.apply(&command);
        assert!(state.revision() >= before, "the revision went back");
    }
    let rebuilt = KvState::restore(state.persisted());
    assert_eq!(rebuilt.hash(), state.hash(), "the persisted form lost something");
});
