//! etcd's auth store as replicated state: whether auth is on, users, roles
//! and their key-range permissions, and the auth revision that every change
//! bumps.
//!
//! Pure like the rest of `state/`: passwords arrive already hashed (the
//! proposer hashes them, so the log never holds one in clear) and the key
//! that signs tokens is picked by the proposer of AuthEnable.
//!
//! Permission rules (etcd's): a user with the `root` role may do anything; any
//! other user may read (write) a key range only when the READ or READWRITE
//! (WRITE or READWRITE) permissions of its roles cover all of it, together.

use std::collections::{BTreeMap, BTreeSet};

use crate::proto::authpb::permission::Type as PermType;
use crate::proto::authpb::{Permission, Role};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};
use crate::proto::raft::v1::{command, AuthSnapshot, AuthUser};

/// The user and the role that may do anything.
pub const ROOT: &str = "root";

/// Why an auth request or a permission check was refused (etcd's errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("root user does not exist")]
    RootUserNotExist,
    #[error("root user does not have root role")]
    RootRoleNotExist,
    #[error("user name already exists")]
    UserAlreadyExist,
    #[error("user name is empty")]
    UserEmpty,
    #[error("user name not found")]
    UserNotFound,
    #[error("role name already exists")]
    RoleAlreadyExist,
    #[error("role name not found")]
    RoleNotFound,
    #[error("role name is empty")]
    RoleEmpty,
    #[error("permission not given")]
    PermissionNotGiven,
    #[error("permission denied")]
    PermissionDenied,
    #[error("role is not granted to the user")]
    RoleNotGranted,
    #[error("permission is not granted to the role")]
    PermissionNotGranted,
    #[error("authentication is not enabled")]
    AuthNotEnabled,
    #[error("invalid auth management")]
    InvalidAuthMgmt,
    #[error("revision of auth store is old")]
    OldRevision,
    #[error("authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("invalid auth token")]
    InvalidToken,
}

/// What a request needs on a key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    fn granted_by(self, perm: &Permission) -> bool {
        let t = PermType::try_from(perm.perm_type).unwrap_or(PermType::Read);
        matches!(
            (self, t),
            (_, PermType::Readwrite) | (Access::Read, PermType::Read) | (Access::Write, PermType::Write)
        )
    }
}

/// A user as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// argon2 PHC string (empty with `no_password`).
    pub password_hash: String,
    /// Granted roles.
    pub roles: BTreeSet<String>,
    /// The user cannot authenticate by password (only by certificate).
    pub no_password: bool,
    /// Auth revision of the last password change: tokens issued before are void.
    pub password_revision: u64,
}

/// The auth store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthState {
    enabled: bool,
    revision: u64,
    token_key: Vec<u8>,
    users: BTreeMap<String, User>,
    /// Role name to its permissions, sorted by (key, range_end).
    roles: BTreeMap<String, Vec<Permission>>,
}

impl AuthState {
    /// Whether permission checks are on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The auth revision: bumped by every change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The key that signs tokens (empty until auth is first enabled).
    pub fn token_key(&self) -> &[u8] {
        &self.token_key
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// Every user's name, sorted.
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// Every role's name, sorted.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// A role's permissions; the `root` role, even never added, may do anything.
    pub fn role(&self, name: &str) -> Result<Vec<Permission>, AuthError> {
        match self.roles.get(name) {
            Some(perms) => Ok(perms.clone()),
            None if name == ROOT => {
                Ok(vec![Permission { perm_type: PermType::Readwrite as i32, key: Vec::new(), range_end: vec![0] }])
            }
            None => Err(AuthError::RoleNotFound),
        }
    }

    /// Whether `user` holds the root role.
    pub fn is_admin(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.contains(ROOT))
    }

    /// Refuses unless auth is off or `user` is root (etcd's admin check).
    pub fn check_admin(&self, user: Option<&str>) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let user = user.ok_or(AuthError::UserEmpty)?;
        if self.is_admin(user) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Refuses unless auth is off or `user` may `access` all of
    /// `[key, range_end)` (etcd's convention for `range_end`).
    pub fn check(&self, user: Option<&str>, access: Access, key: &[u8], range_end: &[u8]) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let user = user.ok_or(AuthError::UserEmpty)?;
        self.check_user(user, access, key, range_end)
    }

    fn check_user(&self, user: &str, access: Access, key: &[u8], range_end: &[u8]) -> Result<(), AuthError> {
        let record = self.users.get(user).ok_or(AuthError::PermissionDenied)?;
        if record.roles.contains(ROOT) {
            return Ok(());
        }
        let mut granted: Vec<(&[u8], Option<Vec<u8>>)> = record
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flatten()
            .filter(|p| access.granted_by(p))
            .map(|p| (p.key.as_slice(), interval_end(&p.key, &p.range_end)))
            .collect();
        granted.sort();
        if covers(&granted, key, interval_end(key, range_end)) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Checks every key range a KV request reads or writes (a txn's
    /// compares and both branches, nested txns included).
    pub fn check_request(&self, user: Option<&str>, request: &command::Request) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let user = user.ok_or(AuthError::UserEmpty)?;
        let mut needs = Vec::new();
        match request {
            command::Request::Put(put) => put_needs(put, &mut needs),
            command::Request::DeleteRange(del) => delete_needs(del, &mut needs),
            command::Request::Txn(txn) => txn_needs(txn, &mut needs),
            // Any user may grant leases and compact (etcd's rule); revoking
            // a lease is checked against its keys by the caller.
            command::Request::Compaction(_) | command::Request::LeaseGrant(_) | command::Request::LeaseRevoke(_) => {}
            _ => return self.check_admin(Some(user)),
        }
        if !self.users.contains_key(user) {
            return Err(AuthError::PermissionDenied);
        }
        needs.iter().try_for_each(|(access, key, end)| self.check_user(user, *access, key, end))
    }

    /// Checks a read.
    pub fn check_range(&self, user: Option<&str>, req: &RangeRequest) -> Result<(), AuthError> {
        self.check(user, Access::Read, &req.key, &req.range_end)
    }

    /// Applies an auth administration command; returns the auth revision
    /// after it. On error nothing changed.
    pub fn apply(&mut self, request: &command::Request) -> Result<u64, AuthError> {
        use command::Request as R;
        let changed = match request {
            R::AuthEnable(enable) => {
                if self.enabled {
                    false
                } else {
                    let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                    if !root.roles.contains(ROOT) {
                        return Err(AuthError::RootRoleNotExist);
                    }
                    self.enabled = true;
                    self.token_key = enable.token_key.clone();
                    true
                }
            }
            R::AuthDisable(_) => std::mem::replace(&mut self.enabled, false),
            R::UserAdd(add) => {
                if add.name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(&add.name) {
                    return Err(AuthError::UserAlreadyExist);
                }
                let no_password = add.options.as_ref().is_some_and(|o| o.no_password);
                let user = User {
                    password_hash: if no_password { String::new() } else { add.hashed_password.clone() },
                    roles: BTreeSet::new(),
                    no_password,
                    password_revision: self.revision + 1,
                };
                self.users.insert(add.name.clone(), user);
                true
            }
            R::UserDelete(del) => {
                if self.enabled && del.name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.users.remove(&del.name).ok_or(AuthError::UserNotFound)?;
                true
            }
            R::UserChangePassword(change) => {
                let next = self.revision + 1;
                let user = self.users.get_mut(&change.name).ok_or(AuthError::UserNotFound)?;
                user.password_hash = change.hashed_password.clone();
                user.password_revision = next;
                true
            }
            R::UserGrantRole(grant) => {
                if !self.users.contains_key(&grant.user) {
                    return Err(AuthError::UserNotFound);
                }
                if grant.role != ROOT && !self.roles.contains_key(&grant.role) {
                    return Err(AuthError::RoleNotFound);
                }
                let user = self.users.get_mut(&grant.user).ok_or(AuthError::UserNotFound)?;
                user.roles.insert(grant.role.clone())
            }
            R::UserRevokeRole(revoke) => {
                if self.enabled && revoke.name == ROOT && revoke.role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let user = self.users.get_mut(&revoke.name).ok_or(AuthError::UserNotFound)?;
                if !user.roles.remove(&revoke.role) {
                    return Err(AuthError::RoleNotGranted);
                }
                true
            }
            R::RoleAdd(add) => {
                if add.name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(&add.name) {
                    return Err(AuthError::RoleAlreadyExist);
                }
                self.roles.insert(add.name.clone(), Vec::new());
                true
            }
            R::RoleDelete(del) => {
                if self.enabled && del.role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.roles.remove(&del.role).ok_or(AuthError::RoleNotFound)?;
                for user in self.users.values_mut() {
                    user.roles.remove(&del.role);
                }
                true
            }
            R::RoleGrantPermission(grant) => {
                let perm = grant.perm.as_ref().ok_or(AuthError::PermissionNotGiven)?;
                if perm.key.is_empty() && perm.range_end.is_empty()
                    || interval_end(&perm.key, &perm.range_end).is_some_and(|end| end.as_slice() <= perm.key.as_slice())
                    || PermType::try_from(perm.perm_type).is_err()
                {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let perms = self.roles.get_mut(&grant.name).ok_or(AuthError::RoleNotFound)?;
                let at = perms.binary_search_by(|p| (&p.key, &p.range_end).cmp(&(&perm.key, &perm.range_end)));
                match at {
                    Ok(i) => perms[i].perm_type = perm.perm_type,
                    Err(i) => perms.insert(i, perm.clone()),
                }
                true
            }
            R::RoleRevokePermission(revoke) => {
                let perms = self.roles.get_mut(&revoke.role).ok_or(AuthError::RoleNotFound)?;
                let at = perms.iter().position(|p| p.key == revoke.key && p.range_end == revoke.range_end);
                perms.remove(at.ok_or(AuthError::PermissionNotGranted)?);
                true
            }
            _ => return Err(AuthError::InvalidAuthMgmt),
        };
        if changed {
            self.revision += 1;
        }
        Ok(self.revision)
    }

    /// Whether nothing was ever set (snapshots then leave the store out).
    pub fn is_pristine(&self) -> bool {
        *self == Self::default()
    }

    /// The store as its protobuf record (snapshots, the data dir, the hash).
    pub fn to_pb(&self) -> AuthSnapshot {
        AuthSnapshot {
            enabled: self.enabled,
            revision: self.revision,
            token_key: self.token_key.clone(),
            users: self
                .users
                .iter()
                .map(|(name, u)| AuthUser {
                    name: name.clone(),
                    password_hash: u.password_hash.clone(),
                    roles: u.roles.iter().cloned().collect(),
                    no_password: u.no_password,
                    password_revision: u.password_revision,
                })
                .collect(),
            roles: self
                .roles
                .iter()
                .map(|(name, perms)| Role { name: name.clone().into_bytes(), key_permission: perms.clone() })
                .collect(),
        }
    }

    /// The store from its record.
    pub fn from_pb(pb: AuthSnapshot) -> Self {
        let users = pb
            .users
            .into_iter()
            .map(|u| {
                let user = User {
                    password_hash: u.password_hash,
                    roles: u.roles.into_iter().collect(),
                    no_password: u.no_password,
                    password_revision: u.password_revision,
                };
                (u.name, user)
            })
            .collect();
        let roles = pb
            .roles
            .into_iter()
            .map(|r| {
                let mut perms = r.key_permission;
                perms.sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
                (String::from_utf8_lossy(&r.name).into_owned(), perms)
            })
            .collect();
        Self { enabled: pb.enabled, revision: pb.revision, token_key: pb.token_key, users, roles }
    }
}

/// The exclusive end of `[key, range_end)` in etcd's convention: a single
/// key ends right after itself; `"\0"` is unbounded (None).
fn interval_end(key: &[u8], range_end: &[u8]) -> Option<Vec<u8>> {
    match range_end {
        [] => {
            let mut end = key.to_vec();
            end.push(0);
            Some(end)
        }
        [0] => None,
        end => Some(end.to_vec()),
    }
}

/// Whether the union of `granted` (sorted by start) covers `[start, end)`.
fn covers(granted: &[(&[u8], Option<Vec<u8>>)], start: &[u8], end: Option<Vec<u8>>) -> bool {
    if end.as_deref().is_some_and(|e| e <= start) {
        // An empty range reads nothing; it still needs its start key.
        return covers(granted, start, interval_end(start, &[]));
    }
    let mut reached = start.to_vec();
    for (from, to) in granted {
        if *from > reached.as_slice() {
            break;
        }
        match to {
            None => return true,
            Some(to) if to.as_slice() > reached.as_slice() => reached = to.clone(),
            Some(_) => {}
        }
        if end.as_deref().is_some_and(|e| reached.as_slice() >= e) {
            return true;
        }
    }
    false
}

fn put_needs<'a>(put: &'a PutRequest, needs: &mut Vec<(Access, &'a [u8], &'a [u8])>) {
    needs.push((Access::Write, &put.key, &[]));
    if put.prev_kv {
        needs.push((Access::Read, &put.key, &[]));
    }
}

fn delete_needs<'a>(del: &'a DeleteRangeRequest, needs: &mut Vec<(Access, &'a [u8], &'a [u8])>) {
    needs.push((Access::Write, &del.key, &del.range_end));
    if del.prev_kv {
        needs.push((Access::Read, &del.key, &del.range_end));
    }
}

fn txn_needs<'a>(txn: &'a TxnRequest, needs: &mut Vec<(Access, &'a [u8], &'a [u8])>) {
    for c in &txn.compare {
        needs.push((Access::Read, &c.key, &c.range_end));
    }
    for op in txn.success.iter().chain(&txn.failure) {
        match &op.request {
            Some(Op::RequestRange(r)) => needs.push((Access::Read, &r.key, &r.range_end)),
            Some(Op::RequestPut(p)) => put_needs(p, needs),
            Some(Op::RequestDeleteRange(d)) => delete_needs(d, needs),
            Some(Op::RequestTxn(t)) => txn_needs(t, needs),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::authpb::UserAddOptions;
    use crate::proto::etcdserverpb::{
        AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
        AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest, Compare, RequestOp,
    };
    use crate::proto::raft::v1::AuthEnable;

    fn store() -> AuthState {
        let mut auth = AuthState::default();
        for name in [ROOT, "alice"] {
            let add = AuthUserAddRequest { name: name.into(), hashed_password: "h".into(), ..Default::default() };
            auth.apply(&command::Request::UserAdd(add)).unwrap();
        }
        auth.apply(&command::Request::UserGrantRole(AuthUserGrantRoleRequest { user: ROOT.into(), role: ROOT.into() }))
            .unwrap();
        auth.apply(&command::Request::RoleAdd(AuthRoleAddRequest { name: "app".into() })).unwrap();
        auth.apply(&command::Request::UserGrantRole(AuthUserGrantRoleRequest {
            user: "alice".into(),
            role: "app".into(),
        }))
        .unwrap();
        auth.apply(&command::Request::AuthEnable(AuthEnable { token_key: vec![7; 32] })).unwrap();
        auth
    }

    fn grant(auth: &mut AuthState, t: PermType, key: &[u8], range_end: &[u8]) {
        let perm = Permission { perm_type: t as i32, key: key.to_vec(), range_end: range_end.to_vec() };
        auth.apply(&command::Request::RoleGrantPermission(AuthRoleGrantPermissionRequest {
            name: "app".into(),
            perm: Some(perm),
        }))
        .unwrap();
    }

    #[test]
    fn enabling_needs_a_root_user_with_the_root_role() {
        let mut auth = AuthState::default();
        let enable = command::Request::AuthEnable(AuthEnable::default());
        assert_eq!(auth.apply(&enable), Err(AuthError::RootUserNotExist));
        let add = AuthUserAddRequest {
            name: ROOT.into(),
            options: Some(UserAddOptions { no_password: true }),
            ..Default::default()
        };
        auth.apply(&command::Request::UserAdd(add)).unwrap();
        assert_eq!(auth.apply(&enable), Err(AuthError::RootRoleNotExist));
        assert!(!auth.enabled());
    }

    #[test]
    fn a_prefix_permission_covers_its_keys_and_nothing_else() {
        let mut auth = store();
        grant(&mut auth, PermType::Readwrite, b"a/", b"a0");
        let alice = Some("alice");
        assert_eq!(auth.check(alice, Access::Write, b"a/x", b""), Ok(()));
        assert_eq!(auth.check(alice, Access::Read, b"a/", b"a0"), Ok(()));
        assert_eq!(auth.check(alice, Access::Read, b"a/", b"b"), Err(AuthError::PermissionDenied));
        assert_eq!(auth.check(alice, Access::Write, b"b", b""), Err(AuthError::PermissionDenied));
        assert_eq!(auth.check(alice, Access::Read, b"", &[0]), Err(AuthError::PermissionDenied));
        assert_eq!(auth.check(None, Access::Read, b"a/x", b""), Err(AuthError::UserEmpty));
        assert_eq!(auth.check(Some(ROOT), Access::Write, b"", &[0]), Ok(()));
    }

    #[test]
    fn adjacent_permissions_cover_a_range_together_but_by_type() {
        let mut auth = store();
        grant(&mut auth, PermType::Read, b"a", b"c");
        grant(&mut auth, PermType::Readwrite, b"c", &[0]);
        assert_eq!(auth.check(Some("alice"), Access::Read, b"b", &[0]), Ok(()));
        assert_eq!(auth.check(Some("alice"), Access::Write, b"b", b"d"), Err(AuthError::PermissionDenied));
        assert_eq!(auth.check(Some("alice"), Access::Write, b"c", b"z"), Ok(()));
    }

    #[test]
    fn a_txn_needs_its_compares_and_both_branches() {
        let mut auth = store();
        grant(&mut auth, PermType::Readwrite, b"k", b"");
        let put = |key: &[u8]| RequestOp {
            request: Some(Op::RequestPut(PutRequest { key: key.to_vec(), ..Default::default() })),
        };
        let txn = |failure: &[u8]| {
            command::Request::Txn(TxnRequest {
                compare: vec![Compare { key: b"k".to_vec(), ..Default::default() }],
                success: vec![put(b"k")],
                failure: vec![put(failure)],
            })
        };
        assert_eq!(auth.check_request(Some("alice"), &txn(b"k")), Ok(()));
        assert_eq!(auth.check_request(Some("alice"), &txn(b"other")), Err(AuthError::PermissionDenied));
    }

    #[test]
    fn revoking_bumps_the_revision_and_takes_the_access_away() {
        let mut auth = store();
        grant(&mut auth, PermType::Readwrite, b"k", b"");
        let before = auth.revision();
        let revoke = AuthRoleRevokePermissionRequest { role: "app".into(), key: b"k".to_vec(), range_end: Vec::new() };
        auth.apply(&command::Request::RoleRevokePermission(revoke.clone())).unwrap();
        assert!(auth.revision() > before);
        assert_eq!(auth.check(Some("alice"), Access::Read, b"k", b""), Err(AuthError::PermissionDenied));
        assert_eq!(auth.apply(&command::Request::RoleRevokePermission(revoke)), Err(AuthError::PermissionNotGranted));
    }

    #[test]
    fn root_keeps_its_role_while_auth_is_on() {
        let mut auth = store();
        let revoke = AuthUserRevokeRoleRequest { name: ROOT.into(), role: ROOT.into() };
        assert_eq!(auth.apply(&command::Request::UserRevokeRole(revoke)), Err(AuthError::InvalidAuthMgmt));
        assert_eq!(auth.check_admin(Some("alice")), Err(AuthError::PermissionDenied));
        assert_eq!(auth.check_admin(Some(ROOT)), Ok(()));
    }

    #[test]
    fn the_store_survives_its_record() {
        let mut auth = store();
        grant(&mut auth, PermType::Write, b"z", &[0]);
        grant(&mut auth, PermType::Read, b"a", b"b");
        assert_eq!(AuthState::from_pb(auth.to_pb()), auth);
    }
}
