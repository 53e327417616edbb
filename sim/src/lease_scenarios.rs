//! Regression scenarios for leases: a leader cut off from its peers, and
//! expiry across leader terms (see `scenarios` for why scenarios, not seeds).

use std::time::Duration;

use madsim::net::NetSim;
use placement_center::api::context::receiver_stream;
use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::lease_client::LeaseClient;
use placement_center::proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest};
use placement_center::raft::MetricsWatch as _;
use placement_center::runtime::{self, Instant};
use placement_center::storage::sim_disk::DiskFaults;

use crate::checker::lease::{self, LeaseEpisode};
use crate::run::wait_for;
use crate::scenarios::{scenario_client, simulate, three_nodes_led};

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
    /// Writes the key.
    kv: KvClient<tonic::transport::Channel>,
    /// Reads the key.
    reads: KvClient<tonic::transport::Channel>,
    /// When the scenario started (the episode's times are relative to it).
    start: Instant,
    /// The lease, the keepalives acknowledged and the reads of its key.
    pub(crate) episode: LeaseEpisode,
}

impl LeaseHolder {
    /// A client of the member at `addr`.
    pub(crate) fn new(addr: &str, start: Instant) -> Self {
        Self::reading_through(addr, addr, start)
    }

    /// A client of the member at `addr` that reads the key through the
    /// member at `reads`.
    pub(crate) fn reading_through(addr: &str, reads: &str, start: Instant) -> Self {
        Self {
            leases: LeaseClient::new(crate::channel(addr)),
            kv: KvClient::new(crate::channel(addr)),
            reads: KvClient::new(crate::channel(reads)),
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
            if runtime::now() < last {
                self.keep_alive(Duration::from_secs(3)).await;
            }
            self.read(read_wait).await;
            runtime::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One keepalive, waiting `wait` at most for its answer; an
    /// acknowledgement counts from when it was sent.
    pub(crate) async fn keep_alive(&mut self, wait: Duration) {
        let sent = runtime::now();
        if keep_alive_within(&mut self.leases, self.episode.id, wait).await {
            self.episode.acks.push(sent - self.start);
        }
    }

    /// One linearizable read of the key, waiting `wait` at most.
    pub(crate) async fn read(&mut self, wait: Duration) {
        let invoked = runtime::now();
        let read = RangeRequest { key: KEY.to_vec(), ..Default::default() };
        if let Ok(Ok(resp)) = runtime::timeout(wait, self.reads.range(read)).await {
            let present = !resp.into_inner().kvs.is_empty();
            self.episode.reads.push((invoked - self.start, runtime::now() - self.start, present));
        }
    }
}

/// The key a scenario's lease holds.
const KEY: &[u8] = b"scenario/lease-key";

/// How long `lease_leader_cut_off` cuts the leader off.
const CUT: Duration = Duration::from_secs(8);

/// Regression seed 238's bug class: the leader is cut off from its peers but
/// not from a lease holder, which keeps sending it keepalives while a reader
/// on the other side reads the lease's key. A leader that acknowledged those
/// keepalives without a quorum promised a TTL the new leader, which never saw
/// them, does not keep: the key goes before the promise ends.
pub(crate) fn lease_leader_cut_off() -> Vec<String> {
    simulate(|| async {
        let (cluster, leader) = match three_nodes_led("lease-leader-cut-off").await {
            Ok(led) => led,
            Err(violations) => return violations,
        };
        let other = (1..=3).find(|id| *id != leader).unwrap_or(1);
        let to_leader = cluster.nodes[leader as usize - 1].client_addr.clone();
        let to_other = cluster.nodes[other as usize - 1].client_addr.clone();
        let start = runtime::now();
        // The client: a lease and its key through the leader, then
        // keepalives to the leader and reads on the other side.
        let (cut, cut_rx) = tokio::sync::oneshot::channel::<()>();
        let (healed, healed_rx) = tokio::sync::oneshot::channel::<()>();
        let client = scenario_client();
        let holder = client.spawn(hold_lease_across_cut(to_leader, to_other, start, cut, healed_rx));
        // The cut: the leader from both peers, both ways, for longer than an
        // election and a TTL, so the lease runs out on the new leader unless
        // keepalives reach it.
        if cut_rx.await.is_err() {
            return vec!["lease-leader-cut-off: the client could not grant a lease".into()];
        }
        let net = NetSim::current();
        let sim_id = |id: u64| cluster.nodes[id as usize - 1].handle.id();
        let peers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        for peer in &peers {
            net.clog_link(sim_id(leader), sim_id(*peer));
            net.clog_link(sim_id(*peer), sim_id(leader));
        }
        runtime::sleep(CUT).await;
        for peer in &peers {
            net.unclog_link(sim_id(leader), sim_id(*peer));
            net.unclog_link(sim_id(*peer), sim_id(leader));
        }
        let _ = healed.send(());
        match holder.await {
            Ok(episode) if episode.acks.is_empty() => {
                vec!["lease-leader-cut-off: no keepalive was ever acknowledged".into()]
            }
            Ok(episode) => {
                if std::env::var_os("PLACEMENT_SIM_DEBUG").is_some() {
                    eprintln!("lease-leader-cut-off: leader {leader}, reader on {other}: {episode:?}");
                }
                lease::check(&[episode], &[]).into_iter().map(|v| v.to_string()).collect()
            }
            Err(_) => vec!["lease-leader-cut-off: the client task failed".into()],
        }
    })
}

/// The lease holder of `lease_leader_cut_off`: grants a lease, attaches a key
/// and keeps it alive once through `leader`, says so on `granted`, then keeps
/// the lease alive through `leader` until `healed` while reading the key
/// through `other`, and reads on for a TTL and 3 s after the last keepalive.
async fn hold_lease_across_cut(
    leader: String,
    other: String,
    start: Instant,
    granted: tokio::sync::oneshot::Sender<()>,
    mut healed: tokio::sync::oneshot::Receiver<()>,
) -> LeaseEpisode {
    let mut holder = LeaseHolder::reading_through(&leader, &other, start);
    if holder.grant_with_key(Duration::from_secs(crate::watchers::LEASE_TTL as u64)).await.is_none() {
        return holder.episode;
    }
    let mut last_sent = runtime::now();
    holder.keep_alive(KEEPALIVE_WAIT).await;
    if granted.send(()).is_err() {
        return holder.episode;
    }
    let mut keeping = true;
    loop {
        let now = runtime::now();
        if keeping && healed.try_recv().is_ok() {
            keeping = false;
        }
        if keeping {
            last_sent = now;
            holder.keep_alive(KEEPALIVE_WAIT).await;
        } else if now > last_sent + Duration::from_secs(holder.episode.ttl.max(0) as u64 + 3) {
            return holder.episode;
        }
        holder.read(Duration::from_millis(500)).await;
        runtime::sleep(Duration::from_millis(100)).await;
    }
}

/// How long `lease_leader_cut_off`'s keepalives wait for their answer.
const KEEPALIVE_WAIT: Duration = Duration::from_millis(300);

/// One keepalive of lease `id`, waiting `wait` at most: whether it was
/// acknowledged with a positive TTL.
async fn keep_alive_within(leases: &mut LeaseClient<tonic::transport::Channel>, id: i64, wait: Duration) -> bool {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let _ = tx.send(LeaseKeepAliveRequest { id }).await;
    let renewed = async {
        let mut stream = leases.lease_keep_alive(receiver_stream(rx)).await.ok()?.into_inner();
        stream.message().await.ok()?
    };
    matches!(runtime::timeout(wait, renewed).await, Ok(Some(resp)) if resp.ttl > 0)
}
