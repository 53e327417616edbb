//! Health: the gRPC health service (`grpc.health.v1`) and the answers of the
//! HTTP endpoints `/livez`, `/readyz`, `/health` and `/metrics`.
//!
//! Live: the process runs and its Raft has not stopped. Ready (serving): live,
//! a member of the cluster, in touch with a quorum (a leader had a quorum
//! acknowledge it, a follower heard from the leader, within the longest
//! election timeout: knowing a leader is not enough, openraft never steps an
//! isolated leader down), and published: the membership carries this
//! member's name and client address, as etcd serves clients only once its
//! member published them (until then clients' member lists show it without
//! client URLs).

use openraft::async_runtime::WatchReceiver as _;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::context::ApiContext;
use crate::metrics::NodeGauges;
use crate::proto::grpc::health::v1::health_check_response::ServingStatus;
use crate::proto::grpc::health::v1::health_server::Health;
use crate::proto::grpc::health::v1::{HealthCheckRequest, HealthCheckResponse};
use crate::raft::state_store::read_state;
use crate::raft::RaftNode;
use crate::runtime;

/// Services a health check may name; "" is the server as a whole.
const KNOWN_SERVICES: [&str; 7] = [
    "",
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "placement.v1.Placement",
];

/// Why this node is not live, if it is not.
pub fn not_live(node: &RaftNode) -> Option<String> {
    node.raft.metrics().borrow_watched().running_state.as_ref().err().map(|e| format!("raft stopped: {e}"))
}

/// Why this node is not ready to serve, if it is not.
pub fn not_ready(node: &RaftNode) -> Option<String> {
    if let Some(why) = not_live(node) {
        return Some(why);
    }
    if node.removed() {
        return Some("removed from the cluster".into());
    }
    if let Err(why) = node.quorum_contact() {
        return Some(why);
    }
    if !node.member(node.id).is_some_and(|(_, me)| me.started) {
        return Some("this member has not published its name and client address yet".into());
    }
    None
}

/// etcd's /health is false while an alarm is raised: "ALARM NOSPACE".
fn raised_alarm(node: &RaftNode) -> Option<String> {
    use crate::proto::etcdserverpb::AlarmType;
    let alarms = read_state(node.state()).alarms();
    let first = alarms.first()?;
    Some(format!("ALARM {}", AlarmType::try_from(first.alarm).map_or("UNKNOWN", |t| t.as_str_name())))
}

/// The point-in-time numbers `/metrics` shows besides the node's own metrics.
pub fn gauges(node: &RaftNode) -> NodeGauges {
    let (term, last_log_index, applied_index, committed_index, purged, leader) = {
        let m = node.raft.metrics();
        let m = m.borrow_watched();
        (
            m.current_term,
            m.last_log_index.unwrap_or(0),
            m.last_applied.map_or(0, |l| l.index),
            m.local_committed.map_or(0, |l| l.index),
            m.purged.map_or(0, |l| l.index),
            m.current_leader,
        )
    };
    let (revision, keys, leases) = {
        let state = read_state(node.state());
        (state.revision(), state.key_count() as u64, state.leases().len() as u64)
    };
    NodeGauges {
        term,
        last_log_index,
        applied_index,
        committed_index,
        log_entries: last_log_index.saturating_sub(purged),
        is_leader: leader == Some(node.id),
        has_leader: leader.is_some(),
        revision,
        keys,
        leases,
        db_size_bytes: node.storage_bytes().unwrap_or(0),
    }
}

/// How long etcd's `/health` waits for its linearizable read: below the
/// 5 s an HTTP exchange may take, so a probe gets an answer, not a hang-up.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Why etcd's `/health` says false, if it does: not ready, an alarm raised,
/// or (unless `serializable`) a linearizable read that does not complete,
/// which a leader that lost its quorum or a member that cannot catch up
/// fails even while their last contact is recent.
pub async fn not_healthy(node: &RaftNode, serializable: bool) -> Option<String> {
    if let Some(why) = not_ready(node).or_else(|| raised_alarm(node)) {
        return Some(why);
    }
    if serializable {
        return None;
    }
    match runtime::timeout(HEALTH_READ_TIMEOUT, node.read_barrier()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("linearizable read failed: {e}")),
        Err(_) => Some(format!("linearizable read did not complete within {HEALTH_READ_TIMEOUT:?}")),
    }
}

/// The answer to an HTTP GET of `target` (a path, maybe a query): (status,
/// content type, body).
pub async fn http_answer(node: Arc<RaftNode>, target: String) -> (u16, &'static str, String) {
    let text = "text/plain; charset=utf-8";
    let verdict = |why: Option<String>| match why {
        None => (200, text, "ok\n".to_string()),
        Some(why) => (503, text, format!("{why}\n")),
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    match path {
        "/metrics" => (200, "text/plain; version=0.0.4", node.metrics().render(&gauges(&node))),
        "/livez" => verdict(not_live(&node)),
        "/readyz" => verdict(not_ready(&node)),
        // etcd's endpoint, as its probes read it (`?serializable=true`
        // skips the read round, as etcd's does).
        "/health" => match not_healthy(&node, query.split('&').any(|q| q == "serializable=true")).await {
            None => (200, "application/json", "{\"health\":\"true\"}".into()),
            Some(why) => (503, "application/json", format!("{{\"health\":\"false\",\"reason\":{why:?}}}")),
        },
        _ => (404, text, "not found: try /metrics, /livez, /readyz or /health\n".into()),
    }
}

/// The gRPC health service of one node.
pub struct HealthService {
    ctx: Arc<ApiContext>,
}

impl HealthService {
    /// The service over a node's context.
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        Self { ctx }
    }

    fn status(&self, service: &str) -> Result<ServingStatus, Status> {
        if !KNOWN_SERVICES.contains(&service) {
            return Err(Status::not_found(format!("unknown service {service:?}")));
        }
        Ok(if not_ready(&self.ctx.node).is_none() { ServingStatus::Serving } else { ServingStatus::NotServing })
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, req: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let status = self.status(&req.into_inner().service)?;
        Ok(Response::new(HealthCheckResponse { status: status as i32 }))
    }

    type WatchStream = super::context::ResponseStream<HealthCheckResponse>;

    /// The status now, then every change (checked twice a second) until the
    /// client goes away or the node shuts down.
    async fn watch(&self, req: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let service = req.into_inner().service;
        // An unknown service is an error right away.
        self.status(&service)?;
        let (out, rx) = tokio::sync::mpsc::channel(4);
        let ctx = self.ctx.clone();
        runtime::spawn_detached("health-watch", async move {
            let mut shutdown = ctx.shutdown.clone();
            let mut last = None;
            loop {
                let now =
                    if not_ready(&ctx.node).is_none() { ServingStatus::Serving } else { ServingStatus::NotServing };
                if last != Some(now) {
                    if out.send(Ok(HealthCheckResponse { status: now as i32 })).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => return,
                    _ = out.closed() => return,
                    _ = runtime::sleep(Duration::from_millis(500)) => {}
                }
            }
        });
        let stream: Self::WatchStream = Box::pin(super::context::receiver_stream(rx));
        Ok(Response::new(stream))
    }
}

/// Counts leader changes this node sees, until `stop`.
///
/// It follows openraft's server metrics, which change only with the vote,
/// the role, the leader or the membership. The full metrics change after
/// every batch of log writes, and waking the tasks that waited on them
/// (`watch::Sender::send` down to `notify_waiters`) was 2.3-3.4% of a
/// member's samples under 100 clients putting.
pub async fn count_leader_changes(node: Arc<RaftNode>, mut stop: runtime::Shutdown) {
    let mut metrics = node.raft.server_metrics();
    // The first leader seen counts (as etcd's leader_changes_seen does), also
    // one elected before this task looked: a single member elects itself at
    // once, and reading the leader only after the first change missed it.
    let mut leader = None;
    loop {
        let now = metrics.borrow_watched().current_leader;
        if now != leader {
            if now.is_some() {
                node.metrics().leader_changes.inc();
            }
            leader = now;
        }
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}
