//! Auth on a quarter of the seeds. Before the workload starts, a root user
//! and a `prober` user (role `probe`: read and write under `probe/`) are
//! added and auth is enabled. Every client then authenticates: the KV
//! workload, watchers, lease clients and the final checks carry root's
//! token; brokers authenticate through the client library. An auth nemesis
//! revokes the prober's role and grants it back while the prober reads and
//! writes; the revocation checker then holds that no prober request that
//! started after a revoke was acknowledged, and ended before the grant back
//! was proposed, succeeded; and that none that started after a grant was
//! acknowledged, and ended before the next revoke was proposed, was refused
//! for want of permission.
//!
//! The revoke and grant are proposed on the leader directly (as MoveLeader
//! is): a change made through the Auth service goes the same way.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use placement_center::client::Credentials;
use placement_center::proto::authpb::permission::Type as PermType;
use placement_center::proto::authpb::Permission;
use placement_center::proto::etcdserverpb::auth_client::AuthClient;
use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
    AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest, AuthenticateRequest, PutRequest, RangeRequest,
};
use placement_center::proto::raft::v1::command_result::Response as Applied;
use placement_center::proto::raft::v1::{command, CommandResult};
use placement_center::runtime::{self, Instant};
use placement_center::state::StateError;
use rand::Rng;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::cluster::SimCluster;

const ROOT_PASSWORD: &str = "sim-root-password";
const PROBER: &str = "prober";
const PROBER_PASSWORD: &str = "sim-prober-password";
const PROBE_ROLE: &str = "probe";
const PROBE_PREFIX: &[u8] = b"probe/";

/// Whether seed `seed` runs with auth on.
pub fn enabled_for(seed: u64) -> bool {
    seed % 4 == 1
}

thread_local! {
    /// Root's token once auth is on (a seed runs on one thread of its own).
    static ROOT_TOKEN: RefCell<Option<MetadataValue<Ascii>>> = const { RefCell::new(None) };
}

/// Forgets root's token: a new simulation on this thread starts with auth
/// off (scenarios run one after another on one thread).
pub fn forget_root() {
    ROOT_TOKEN.with(|t| *t.borrow_mut() = None);
}

/// `message` as a request carrying root's token when auth is on.
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = ROOT_TOKEN.with(|t| t.borrow().clone()) {
        request.metadata_mut().insert("token", token);
    }
    request
}

/// Root's credentials when auth is on (for the client library).
pub fn credentials() -> Option<Credentials> {
    ROOT_TOKEN
        .with(|t| t.borrow().is_some())
        .then(|| Credentials { user: "root".into(), password: ROOT_PASSWORD.into() })
}

/// Runs `call` on the members in turn until it succeeds (or is refused as
/// already done: a retried step that had happened).
async fn until_done<T, F, Fut>(addrs: &[String], what: &str, mut call: F) -> Option<T>
where
    F: FnMut(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    T: Default,
{
    for attempt in 0..60 {
        let addr = &addrs[attempt % addrs.len()];
        match runtime::timeout(Duration::from_secs(2), call(crate::channel(addr))).await {
            Ok(Ok(resp)) => return Some(resp.into_inner()),
            Ok(Err(status)) if status.message().contains("already exists") => return Some(T::default()),
            Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition || attempt > 50 => {
                eprintln!("auth setup: {what} refused: {}", status.message());
            }
            _ => {}
        }
        runtime::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Adds root and the prober, enables auth and keeps root's token.
/// Whether auth is on.
pub async fn setup(addrs: Vec<String>) -> bool {
    let a = &addrs;
    let user_add = |name: &str, password: &str| AuthUserAddRequest {
        name: name.into(),
        password: password.into(),
        ..Default::default()
    };
    let grant = |user: &str, role: &str| AuthUserGrantRoleRequest { user: user.into(), role: role.into() };
    let mut end = PROBE_PREFIX.to_vec();
    *end.last_mut().expect("a prefix") += 1;
    let perm = Permission { perm_type: PermType::Readwrite as i32, key: PROBE_PREFIX.to_vec(), range_end: end };
    let permission = AuthRoleGrantPermissionRequest { name: PROBE_ROLE.into(), perm: Some(perm) };
    macro_rules! step {
        ($what:expr, $method:ident, $req:expr) => {{
            let req = $req;
            until_done(a, $what, |ch| {
                let req = req.clone();
                async move { AuthClient::new(ch).$method(req).await }
            })
            .await
            .is_some()
        }};
    }
    let done = step!("add root", user_add, user_add("root", ROOT_PASSWORD))
        && step!("grant root", user_grant_role, grant("root", "root"))
        && step!("add the probe role", role_add, AuthRoleAddRequest { name: PROBE_ROLE.into() })
        && step!("grant probe/", role_grant_permission, permission)
        && step!("add the prober", user_add, user_add(PROBER, PROBER_PASSWORD))
        && step!("grant the prober", user_grant_role, grant(PROBER, PROBE_ROLE))
        && step!("enable auth", auth_enable, AuthEnableRequest {});
    if !done {
        return false;
    }
    let Some(token) = authenticate(a, "root", ROOT_PASSWORD).await else { return false };
    ROOT_TOKEN.with(|t| *t.borrow_mut() = Some(token));
    true
}

async fn authenticate(addrs: &[String], user: &str, password: &str) -> Option<MetadataValue<Ascii>> {
    let req = AuthenticateRequest { name: user.into(), password: password.into() };
    let resp = until_done(addrs, "authenticate", |ch| {
        let req = req.clone();
        async move { AuthClient::new(ch).authenticate(req).await }
    })
    .await?;
    resp.token.parse().ok()
}

/// Adds user `name` (password `password`) with the prober's role through
/// `addrs`, as root, and authenticates it there: its token, or `None`.
pub(crate) async fn add_prober_like(addrs: &[String], name: &str, password: &str) -> Option<MetadataValue<Ascii>> {
    let add = AuthUserAddRequest { name: name.into(), password: password.into(), ..Default::default() };
    until_done(addrs, "add a user", |ch| {
        let req = add.clone();
        async move { AuthClient::new(ch).user_add(request(req)).await }
    })
    .await?;
    let grant = AuthUserGrantRoleRequest { user: name.into(), role: PROBE_ROLE.into() };
    until_done(addrs, "grant it the probe role", |ch| {
        let req = grant.clone();
        async move { AuthClient::new(ch).user_grant_role(request(req)).await }
    })
    .await?;
    authenticate(addrs, name, password).await
}

/// One request of the prober.
#[derive(Debug, Clone)]
pub struct ProbeOp {
    /// Since the start of the run.
    pub invoked: Duration,
    /// Since the start of the run.
    pub completed: Duration,
    /// What it was.
    pub what: String,
    /// Whether the server answered with success.
    pub succeeded: bool,
    /// Whether the server refused it for want of permission.
    pub denied: bool,
}

/// Reads and writes under `probe/` as the prober until `until`.
pub async fn probe(addrs: Vec<String>, start: Instant, until: Instant, ops: Arc<Mutex<Vec<ProbeOp>>>) {
    let mut token = None;
    let mut n = 0usize;
    while runtime::now() < until {
        if token.is_none() {
            token = authenticate(&addrs, PROBER, PROBER_PASSWORD).await;
        }
        let Some(current) = token.clone() else { continue };
        let addr = &addrs[runtime::rng().gen_range(0..addrs.len())];
        let key = format!("probe/{}", n % 4).into_bytes();
        n += 1;
        let mut kv = KvClient::new(crate::channel(addr));
        let invoked = runtime::now();
        let (what, answer) = if n.is_multiple_of(2) {
            let mut req =
                tonic::Request::new(PutRequest { key, value: n.to_string().into_bytes(), ..Default::default() });
            req.metadata_mut().insert("token", current);
            ("put", runtime::timeout(Duration::from_secs(2), kv.put(req)).await.map(|r| r.map(|_| ())))
        } else {
            let mut req = tonic::Request::new(RangeRequest { key, ..Default::default() });
            req.metadata_mut().insert("token", current);
            ("get", runtime::timeout(Duration::from_secs(2), kv.range(req)).await.map(|r| r.map(|_| ())))
        };
        if let Ok(Err(status)) = &answer {
            if status.code() == tonic::Code::Unauthenticated {
                token = None;
            }
        }
        let op = ProbeOp {
            invoked: invoked - start,
            completed: runtime::now() - start,
            what: format!("{what} via {addr}: {answer:?}"),
            succeeded: matches!(answer, Ok(Ok(()))),
            denied: matches!(&answer, Ok(Err(status)) if status.code() == tonic::Code::PermissionDenied),
        };
        ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
        runtime::sleep(Duration::from_millis(runtime::rng().gen_range(20..120))).await;
    }
}

/// The prober's token (for the scenarios).
pub(crate) async fn prober_token(addrs: &[String]) -> Option<MetadataValue<Ascii>> {
    authenticate(addrs, PROBER, PROBER_PASSWORD).await
}

/// Grants the prober its role, or revokes it, on the leader: `Some(Ok(auth
/// revision after it))`, `Some(Err)` refused, `None` unknown.
pub(crate) async fn set_prober_role(cluster: &SimCluster, granted: bool) -> Option<Result<u64, StateError>> {
    let (name, role) = (PROBER.to_string(), PROBE_ROLE.to_string());
    let request = if granted {
        command::Request::UserGrantRole(AuthUserGrantRoleRequest { user: name, role })
    } else {
        command::Request::UserRevokeRole(AuthUserRevokeRoleRequest { name, role })
    };
    on_leader(cluster, request).await
}

/// What the auth nemesis did.
#[derive(Debug, Default)]
pub struct Revocations {
    /// (revoke acknowledged, grant back proposed), since the start: the
    /// prober held no permission in between.
    pub windows: Vec<(Duration, Duration)>,
    /// (grant acknowledged, next revoke proposed), since the start: the
    /// prober held its permission in between, on every member that had
    /// caught up with the grant.
    pub grants: Vec<(Duration, Duration)>,
    /// Events, for the nemesis log.
    pub events: Vec<String>,
}

/// Proposes `request` on the leader, as an administrator's call would end
/// up: `Some(Ok(auth revision after it))`, `Some(Err)` refused, `None`
/// unknown (it may still apply later).
async fn on_leader(cluster: &SimCluster, request: command::Request) -> Option<Result<u64, StateError>> {
    match cluster.propose_on_leader(request).await? {
        Ok(CommandResult { response: Some(Applied::Auth(changed)), .. }) => Some(Ok(changed.auth_revision)),
        Ok(_) => None,
        Err(refused) => Some(Err(refused)),
    }
}

/// Revokes the prober's role and grants it back, over and over, until `until`.
///
/// A window runs from a revoke's acknowledgement (at auth revision r) to the
/// first attempt to grant the role back. It is kept only if the grant, once
/// acknowledged, is at revision r + 1: no other auth change (a grant of an
/// earlier cycle whose outcome was unknown, applied late) came in between.
pub async fn revoke_and_grant(cluster: &SimCluster, start: Instant, until: Instant, log: &mut Revocations) {
    let at = |start: Instant| runtime::now() - start;
    let user = || PROBER.to_string();
    let role = || PROBE_ROLE.to_string();
    let mut granted_at = None;
    while runtime::now() < until {
        runtime::sleep(Duration::from_millis(runtime::rng().gen_range(500..2500))).await;
        if let Some(granted_at) = granted_at.take() {
            log.grants.push((granted_at, at(start)));
        }
        let revoked = on_leader(
            cluster,
            command::Request::UserRevokeRole(AuthUserRevokeRoleRequest { name: user(), role: role() }),
        )
        .await;
        let revoked_at = at(start);
        log.events.push(format!("[{:>8.3}s] revoke the prober's role: {revoked:?}", revoked_at.as_secs_f64()));
        runtime::sleep(Duration::from_millis(runtime::rng().gen_range(200..2000))).await;
        let granting_at = at(start);
        // Until it is granted back for certain.
        let granted = loop {
            let grant = AuthUserGrantRoleRequest { user: user(), role: role() };
            let granted = on_leader(cluster, command::Request::UserGrantRole(grant)).await;
            log.events.push(format!("[{:>8.3}s] grant the prober's role back: {granted:?}", at(start).as_secs_f64()));
            if let Some(Ok(revision)) = granted {
                granted_at = Some(at(start));
                break Some(revision);
            }
            if runtime::now() >= until + Duration::from_secs(20) {
                break None;
            }
            runtime::sleep(Duration::from_millis(300)).await;
        };
        if let (Some(Ok(revoked)), Some(granted)) = (revoked, granted) {
            if granted == revoked + 1 {
                log.windows.push((revoked_at, granting_at));
            }
        }
    }
    if let Some(granted_at) = granted_at {
        log.grants.push((granted_at, Duration::MAX));
    }
}

/// The revocation checker, both ways: a prober request that started after
/// a revoke was acknowledged and ended before the grant back was proposed
/// must have failed; one that started after a grant was acknowledged and
/// ended before the next revoke was proposed must not have been refused
/// for want of permission (a member refuses only on an auth store that has
/// caught up with the leader's, as etcd refuses only at apply).
pub fn check(log: &Revocations, probes: &[ProbeOp]) -> Vec<String> {
    let within = |windows: &[(Duration, Duration)], op: &ProbeOp| {
        windows.iter().copied().find(|(from, to)| op.invoked >= *from && op.completed <= *to)
    };
    let mut violations = Vec::new();
    for op in probes {
        if let Some((from, to)) = within(&log.windows, op).filter(|_| op.succeeded) {
            violations.push(format!(
                "auth: a request succeeded with a revoked permission: {} at [{:?}, {:?}], role revoked {from:?} until {to:?}",
                op.what, op.invoked, op.completed
            ));
        }
        if let Some((from, _)) = within(&log.grants, op).filter(|_| op.denied) {
            violations.push(format!(
                "auth: a request was refused a granted permission: {} at [{:?}, {:?}], role granted at {from:?}",
                op.what, op.invoked, op.completed
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(invoked: u64, completed: u64, succeeded: bool) -> ProbeOp {
        ProbeOp {
            invoked: Duration::from_millis(invoked),
            completed: Duration::from_millis(completed),
            what: "put".into(),
            succeeded,
            denied: false,
        }
    }

    fn denied(invoked: u64, completed: u64) -> ProbeOp {
        ProbeOp { denied: true, ..op(invoked, completed, false) }
    }

    fn ms(from: u64, to: u64) -> (Duration, Duration) {
        (Duration::from_millis(from), Duration::from_millis(to))
    }

    #[test]
    fn a_success_inside_a_revocation_is_a_violation_and_one_overlapping_its_edges_is_not() {
        let log = Revocations { windows: vec![ms(100, 200)], ..Default::default() };
        assert_eq!(check(&log, &[op(120, 180, true)]).len(), 1);
        assert!(check(&log, &[op(120, 180, false)]).is_empty());
        assert!(check(&log, &[op(90, 150, true)]).is_empty(), "started before the revoke was acknowledged");
        assert!(check(&log, &[op(150, 210, true)]).is_empty(), "ended after the grant back was proposed");
    }

    #[test]
    fn a_permission_refused_inside_a_grant_is_a_violation_and_other_failures_are_not() {
        let log = Revocations { grants: vec![ms(300, 500)], ..Default::default() };
        assert_eq!(check(&log, &[denied(320, 380)]).len(), 1);
        assert!(check(&log, &[op(320, 380, false)]).is_empty(), "a timeout or no leader is no refusal");
        assert!(check(&log, &[denied(290, 380)]).is_empty(), "started before the grant was acknowledged");
        assert!(check(&log, &[denied(450, 510)]).is_empty(), "ended after the next revoke was proposed");
    }
}
