//! Regression scenarios for lease expiry across leader terms (see
//! `scenarios` for why scenarios, not seeds).

use std::time::Duration;

use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::lease_client::LeaseClient;
use placement_center::proto::etcdserverpb::{LeaseGrantRequest, PutRequest, RangeRequest};
use placement_center::raft::MetricsWatch as _;
use placement_center::runtime::{self, Instant};
use placement_center::storage::sim_disk::DiskFaults;

use crate::checker::lease::{self, LeaseEpisode};
use crate::run::wait_for;
use crate::scenarios::{keep_alive_within, scenario_client, simulate, three_nodes_led};

/// The lease's TTL.
const TTL: Duration = Duration::from_secs(3);
/// How long the first leader's state machine stalls before it writes the
/// put it applies (and so before that put is answered).
const STALL: Duration = Duration::from_millis(2500);
/// How long before the lease's deadline the stall and the put begin.
const BEFORE_DEADLINE: Duration = Duration::from_millis(500);
/// How long after the deadline the leadership goes away: the expiry pass
/// (every 500 ms) has decided the revoke by then.
const AFTER_DEADLINE: Duration = Duration::from_millis(700);

/// The 10,000-seed soak's lease bug (seeds 204267, 203653 and 203590): a
/// leader decides a lease's expiry in its term, but the revoke waits in its
/// proposal queue behind a write that is slow to be answered. Meanwhile the
/// leadership goes to another member and comes back, the member leads in a
/// later term (every lease gets a full TTL from that election) and
/// acknowledges a keepalive; then the queued revoke is proposed and applied,
/// and the key goes right after the acknowledged keepalive promised it
/// another TTL. Here the first leader's state machine stalls (a write stall)
/// while it applies a put sent just before the lease's deadline, so the put
/// stays unanswered through two leadership transfers (to a follower and
/// back); the keepalives go to the leader once it leads again. A revoke
/// decided in one term must never be proposed in another: the scenario
/// requires that refusal (`proposal-refused-in-a-later-term`) and checks
/// the lease's key against the acknowledged keepalives.
pub fn expiry_queued_across_terms() -> Vec<String> {
    const NAME: &str = "expiry-queued-across-terms";
    simulate(|| async {
        let (cluster, first) = match three_nodes_led(NAME).await {
            Ok(led) => led,
            Err(violations) => return violations,
        };
        let other = first % 3 + 1;
        let addr = cluster.nodes[first as usize - 1].client_addr.clone();
        let _ = runtime::coverage::take_reached();
        let start = runtime::now();
        let (granted, granted_rx) = tokio::sync::oneshot::channel::<Instant>();
        let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
        let client = scenario_client();
        let holder = client.spawn(keep_alive_once_back(addr.clone(), start, granted, go_rx));
        let Ok(granted_at) = granted_rx.await else {
            return vec![format!("{NAME}: the client could not grant a lease and attach its key")];
        };
        let Some((leader_node, term)) =
            cluster.node(first).map(|n| (n.clone(), n.raft.metrics().borrow_watched().current_term))
        else {
            return vec![format!("{NAME}: the leader is gone")];
        };
        // Just before the deadline: the leader's state machine stalls, and a
        // put through the leader commits but stays unanswered meanwhile.
        runtime::sleep((granted_at + TTL - BEFORE_DEADLINE).saturating_duration_since(runtime::now())).await;
        let disk = cluster.nodes[first as usize - 1].disk.clone();
        disk.set_faults(DiskFaults { write_stall: STALL, ..Default::default() });
        let put_addr = addr.clone();
        let put = client.spawn(async move {
            let mut kv = KvClient::new(crate::channel(&put_addr));
            let put = PutRequest { key: b"scenario/slow".to_vec(), value: b"v".to_vec(), ..Default::default() };
            let _ = runtime::timeout(Duration::from_secs(5), kv.put(put)).await;
        });
        // The stall was taken when the put's apply began: later applies run at speed.
        runtime::sleep(Duration::from_millis(100)).await;
        disk.set_faults(DiskFaults::default());
        // Past the deadline, the leadership goes to the other member and back.
        runtime::sleep((granted_at + TTL + AFTER_DEADLINE).saturating_duration_since(runtime::now())).await;
        if let Err(e) = leader_node.transfer_leadership(other).await {
            return vec![format!("{NAME}: the transfer to {other} failed: {e}")];
        }
        let Some(second) = cluster.node(other) else { return vec![format!("{NAME}: {other} is gone")] };
        if let Err(e) = second.transfer_leadership(first).await {
            return vec![format!("{NAME}: the transfer back to {first} failed: {e}")];
        }
        let back = || {
            let m = leader_node.raft.metrics().borrow_watched().clone();
            m.state.is_leader() && m.current_term >= term + 2
        };
        if !wait_for(Duration::from_secs(1), back).await {
            return vec![format!("{NAME}: {first} did not lead again in a later term")];
        }
        let in_time = runtime::now() < granted_at + TTL - BEFORE_DEADLINE + STALL;
        let _ = go.send(());
        let _ = put.await;
        let episode = match holder.await {
            Ok(episode) => episode,
            Err(_) => return vec![format!("{NAME}: the client task failed")],
        };
        if std::env::var_os("PLACEMENT_SIM_DEBUG").is_some() {
            eprintln!("{NAME}: leader {first}, term {term}: {episode:?}");
        }
        let mut violations: Vec<String> =
            lease::check(std::slice::from_ref(&episode), &[]).into_iter().map(|v| v.to_string()).collect();
        if !in_time {
            violations.push(format!("{NAME}: {first} led again only after its stalled put was answered"));
        }
        if episode.acks.is_empty() {
            violations.push(format!("{NAME}: no keepalive was acknowledged once {first} led again"));
        }
        let reached = runtime::coverage::take_reached();
        if reached.get("scenario:proposal-refused-in-a-later-term").copied().unwrap_or(0) == 0 {
            violations.push(format!(
                "{NAME}: no revoke decided in term {term} waited for a later term (the scenario missed its shape)"
            ));
        }
        violations
    })
}

/// The client of `expiry_queued_across_terms`: grants a lease and attaches a
/// key through `leader`, says when on `granted`, and once told to `go`
/// sends a keepalive every 100 ms for 1.5 s, reading the key (linearizable)
/// until a TTL and 2 s past the last.
async fn keep_alive_once_back(
    leader: String,
    start: Instant,
    granted: tokio::sync::oneshot::Sender<Instant>,
    go: tokio::sync::oneshot::Receiver<()>,
) -> LeaseEpisode {
    let mut client = LeaseHolder::new(&leader, start);
    let Some(granted_at) = client.grant_with_key(TTL).await else { return client.episode };
    if granted.send(granted_at).is_err() || go.await.is_err() {
        return client.episode;
    }
    let last = runtime::now() + Duration::from_millis(1500);
    client.keep_alive_and_read(last, last + TTL + Duration::from_secs(2), Duration::from_secs(3)).await;
    client.episode
}

/// A scenario's lease client: one lease, its key, and what happened to them.
pub(crate) struct LeaseHolder {
    leases: LeaseClient<tonic::transport::Channel>,
    kv: KvClient<tonic::transport::Channel>,
    /// When the scenario started (the episode's times are relative to it).
    start: Instant,
    /// The lease, the keepalives acknowledged and the reads of its key.
    pub(crate) episode: LeaseEpisode,
}

impl LeaseHolder {
    /// A client of the member at `addr`.
    pub(crate) fn new(addr: &str, start: Instant) -> Self {
        Self {
            leases: LeaseClient::new(crate::channel(addr)),
            kv: KvClient::new(crate::channel(addr)),
            start,
            episode: LeaseEpisode { client: 0, ..Default::default() },
        }
    }

    /// Grants a lease of `ttl` and attaches the key `scenario/lease-key` to
    /// it; when the lease was granted, or `None` if either failed.
    pub(crate) async fn grant_with_key(&mut self, ttl: Duration) -> Option<Instant> {
        let grant = LeaseGrantRequest { ttl: ttl.as_secs() as i64, id: 0 };
        let lease = runtime::timeout(Duration::from_secs(2), self.leases.lease_grant(grant)).await.ok()?.ok()?;
        let granted_at = runtime::now();
        let lease = lease.into_inner();
        (self.episode.id, self.episode.ttl) = (lease.id, lease.ttl);
        let put = PutRequest { key: KEY.to_vec(), value: b"alive".to_vec(), lease: lease.id, ..Default::default() };
        self.episode.key_written =
            matches!(runtime::timeout(Duration::from_secs(2), self.kv.put(put)).await, Ok(Ok(_)));
        self.episode.key_written.then_some(granted_at)
    }

    /// Every 100 ms until `until`: a keepalive (while before `last`; each
    /// waits 3 s at most) and a linearizable read of the key (each waits
    /// `read_wait` at most).
    pub(crate) async fn keep_alive_and_read(&mut self, last: Instant, until: Instant, read_wait: Duration) {
        while runtime::now() < until {
            let now = runtime::now();
            if now < last && keep_alive_within(&mut self.leases, self.episode.id, Duration::from_secs(3)).await {
                self.episode.acks.push(now - self.start);
            }
            let invoked = runtime::now();
            let read = RangeRequest { key: KEY.to_vec(), ..Default::default() };
            if let Ok(Ok(resp)) = runtime::timeout(read_wait, self.kv.range(read)).await {
                let present = !resp.into_inner().kvs.is_empty();
                self.episode.reads.push((invoked - self.start, runtime::now() - self.start, present));
            }
            runtime::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The key a scenario's lease holds.
const KEY: &[u8] = b"scenario/lease-key";
