//! Auth administration and permission checks as the state machine and the
//! API see them: every 4 bytes pick an auth command (users, roles, grants
//! and revokes over a small alphabet of names and key ranges, so the store
//! fills up), a checked KV write, or a token to verify. Nothing panics, and:
//! a refused command leaves the auth store as it was; with auth on, root
//! exists and holds the root role; root may do anything and a user without
//! roles nothing; a write checked at an older auth revision is refused; the
//! auth revision never goes back; the store survives its persisted form.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use placement_center::api::tokens::Tokens;
use placement_center::proto::authpb::{Permission, UserAddOptions};
use placement_center::proto::etcdserverpb::*;
use placement_center::proto::raft::v1::command::Request;
use placement_center::proto::raft::v1::{AuthEnable, Command};
use placement_center::state::{AuthError, KvState, StateError};

const USERS: [&str; 4] = ["root", "alice", "bob", ""];
const ROLES: [&str; 4] = ["root", "app", "ops", ""];
const KEYS: [&[u8]; 6] = [b"", b"a", b"a/", b"a0", b"b", b"\0"];

fn request(op: u8, x: u8, y: u8, z: u8) -> Request {
    let user = USERS[x as usize % 4].to_string();
    let role = ROLES[y as usize % 4].to_string();
    let key = KEYS[z as usize % 6].to_vec();
    let end = KEYS[z as usize / 6 % 6].to_vec();
    match op % 14 {
        0 => Request::UserAdd(AuthUserAddRequest {
            name: user,
            hashed_password: "h".into(),
            options: Some(UserAddOptions { no_password: y % 2 == 0 }),
            ..Default::default()
        }),
        1 => Request::UserDelete(AuthUserDeleteRequest { name: user }),
        2 => Request::UserChangePassword(AuthUserChangePasswordRequest {
            name: user,
            hashed_password: "g".into(),
            ..Default::default()
        }),
        3 => Request::UserGrantRole(AuthUserGrantRoleRequest { user, role }),
        4 => Request::UserRevokeRole(AuthUserRevokeRoleRequest { name: user, role }),
        5 => Request::RoleAdd(AuthRoleAddRequest { name: role }),
        6 => Request::RoleDelete(AuthRoleDeleteRequest { role }),
        7 => Request::RoleGrantPermission(AuthRoleGrantPermissionRequest {
            name: role,
            perm: (x % 8 != 0).then_some(Permission { perm_type: i32::from(x % 4), key, range_end: end }),
        }),
        8 => Request::RoleRevokePermission(AuthRoleRevokePermissionRequest { role, key, range_end: end }),
        9 => Request::AuthEnable(AuthEnable { token_key: vec![x; 32] }),
        10 => Request::AuthDisable(AuthDisableRequest {}),
        11 => Request::Put(PutRequest { key: if key.is_empty() { b"k".to_vec() } else { key }, ..Default::default() }),
        12 => Request::DeleteRange(DeleteRangeRequest {
            key: if key.is_empty() { b"k".to_vec() } else { key },
            range_end: end,
            prev_kv: x % 2 == 0,
            ..Default::default()
        }),
        _ => Request::LeaseGrant(LeaseGrantRequest { id: i64::from(x) + 1, ttl: 60 }),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut state = KvState::default();
    let tokens = Tokens::new(Duration::from_secs(300));
    for chunk in data.chunks(4) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        let [op, x, y, z] = b;
        let request = request(op, x, y, z);
        // Permission checks on the store as it is: never a panic, and root
        // (holding the root role) may do anything, a user without roles nothing.
        for user in USERS {
            let allowed = state.authorize(Some(user), &request);
            if state.auth().enabled() && state.auth().is_admin(user) {
                assert_eq!(allowed, Ok(()), "root refused {request:?}");
            }
            let roleless = state.auth().user(user).is_none_or(|u| u.roles.is_empty());
            if state.auth().enabled() && roleless && matches!(request, Request::Put(_) | Request::DeleteRange(_)) {
                assert!(allowed.is_err(), "{user:?} without roles was allowed {request:?}");
            }
        }
        let _ = tokens.verify(state.auth(), &String::from_utf8_lossy(data));
        let before = state.auth().clone();
        let revision = state.auth().revision();
        // Checked one revision ago: refused once auth is on.
        if state.auth().enabled() && revision > 0 && op % 3 == 0 {
            let stale = Command { auth_revision: Some(revision - 1), alarm_disarms: None, request: Some(request.clone()) };
            assert_eq!(state.apply(&stale).map(|_| ()), Err(StateError::Auth(AuthError::OldRevision)));
            assert_eq!(state.auth(), &before);
        }
        let command = Command { auth_revision: Some(revision), alarm_disarms: None, request: Some(request) };
        if state.apply(&command).is_err() {
            assert_eq!(state.auth(), &before, "a refused command changed the auth store");
        }
        assert!(state.auth().revision() >= revision, "the auth revision went back");
        if state.auth().enabled() {
            assert!(state.auth().is_admin("root"), "auth is on without a root user holding the root role");
        }
    }
    let rebuilt = KvState::restore(state.persisted());
    assert_eq!(rebuilt.hash(), state.hash(), "the persisted form lost something");
    assert_eq!(rebuilt.auth(), state.auth());
});
