//! A node's metrics, kept in a `prometheus-client` registry of its own (tests
//! and the simulator run several nodes in one process, so there is no global
//! registry) and rendered as Prometheus text (0.0.4) for `/metrics`.
//!
//! Two sets of names: ours (`placement_*`), and etcd's most used ones where
//! we measure the same thing (`etcd_server_has_leader`, `etcd_disk_wal_fsync_
//! duration_seconds`, `grpc_server_handled_total`, ...), so etcd's dashboards
//! and alerts work unchanged (deploy/monitoring). A measurement behind both
//! names is one metric registered twice.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram.
#[derive(Debug, Clone)]
pub struct Latency(Histogram);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new(BUCKETS))
    }
}

impl Latency {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Our per-method labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodCode {
    method: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodOnly {
    method: &'static str,
}

/// go-grpc-prometheus's labels, which etcd's dashboards select on.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcHandled {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcMethod {
    grpc_type: &'static str,
    grpc_service: &'static str,
    grpc_method: &'static str,
}

/// etcd's label for a peer (its member id in hex).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(non_snake_case)]
struct Peer {
    To: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Point-in-time gauges, set from [`NodeGauges`] when rendered.
#[derive(Debug, Default)]
struct Readings {
    term: Gauge,
    last_log_index: Gauge,
    applied_index: Gauge,
    committed_index: Gauge,
    log_entries: Gauge,
    is_leader: Gauge,
    has_leader: Gauge,
    revision: Gauge,
    keys: Gauge,
    leases: Gauge,
    db_size_bytes: Gauge,
}

/// What a node measures about itself (Raft's own numbers are read from
/// openraft's metrics when rendering).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    readings: Readings,
    /// Duration of each apply batch of committed entries.
    pub apply: Latency,
    /// Duration of each synced (fsynced) storage write.
    pub disk_sync: Latency,
    /// Leader changes this node saw.
    pub leader_changes: Counter,
    /// Proposals this node made as leader (log entries of client commands).
    pub proposals: Counter,
    /// Client commands those proposals carried (over `proposals`: the mean batch).
    pub proposed_commands: Counter,
    /// Open watchers.
    pub watchers: Gauge,
    /// Replication streams (raft.v1 AppendStream) this node accepted from leaders.
    pub append_streams: Counter,
    /// The space quota (`quota_backend_bytes`), set once the API starts.
    pub quota_bytes: Gauge,
    requests: Family<MethodCode, Counter>,
    latency: HistogramFamily<MethodOnly>,
    grpc_handled: Family<GrpcHandled, Counter>,
    grpc_handling: HistogramFamily<GrpcMethod>,
    peer_rtt: HistogramFamily<Peer>,
}

/// A point-in-time reading of a node, rendered alongside the metrics.
#[derive(Debug, Default, Clone)]
pub struct NodeGauges {
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    /// The last index this node knows as committed.
    pub committed_index: u64,
    /// Entries in the log: last index minus the purged index.
    pub log_entries: u64,
    pub is_leader: bool,
    pub has_leader: bool,
    pub revision: i64,
    pub keys: u64,
    pub leases: u64,
    pub db_size_bytes: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            readings: Readings::default(),
            apply: Latency::default(),
            disk_sync: Latency::default(),
            leader_changes: Counter::default(),
            proposals: Counter::default(),
            proposed_commands: Counter::default(),
            watchers: Gauge::default(),
            append_streams: Counter::default(),
            quota_bytes: Gauge::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(new_histogram),
            grpc_handled: Family::default(),
            grpc_handling: Family::new_with_constructor(new_histogram),
            peer_rtt: Family::new_with_constructor(new_histogram),
        };
        m.register();
        m
    }
}

impl Metrics {
    /// Registers every metric under its names (the encoder adds `_total` to
    /// counters, and a period to help texts).
    fn register(&mut self) {
        let r = &mut self.registry;
        let g = &self.readings;
        r.register("placement_raft_term", "Current Raft term", g.term.clone());
        r.register("placement_raft_last_log_index", "Index of the last Raft log entry", g.last_log_index.clone());
        r.register("placement_raft_applied_index", "Index of the last applied entry", g.applied_index.clone());
        r.register(
            "placement_raft_log_entries",
            "Entries kept in the Raft log (not yet purged)",
            g.log_entries.clone(),
        );
        r.register("placement_raft_is_leader", "1 if this node leads", g.is_leader.clone());
        r.register("placement_raft_has_leader", "1 if a leader is known", g.has_leader.clone());
        r.register("placement_mvcc_revision", "Current store revision", g.revision.clone());
        r.register("placement_mvcc_keys", "Live keys", g.keys.clone());
        r.register("placement_leases", "Granted leases", g.leases.clone());
        r.register("placement_watchers", "Open watchers", self.watchers.clone());
        r.register("placement_db_size_bytes", "Bytes the storage engine holds", g.db_size_bytes.clone());
        r.register("placement_raft_leader_changes", "Leader changes seen", self.leader_changes.clone());
        r.register("placement_raft_proposals", "Log entries proposed for client commands", self.proposals.clone());
        r.register(
            "placement_raft_proposed_commands",
            "Client commands those entries carried",
            self.proposed_commands.clone(),
        );
        r.register(
            "placement_raft_append_streams",
            "Replication streams accepted from leaders",
            self.append_streams.clone(),
        );
        r.register(
            "placement_apply_duration_seconds",
            "Apply time per batch of committed entries",
            self.apply.0.clone(),
        );
        r.register("placement_disk_sync_duration_seconds", "Time per synced storage write", self.disk_sync.0.clone());
        r.register("placement_grpc_requests", "gRPC calls by method and code", self.requests.clone());
        r.register("placement_grpc_request_duration_seconds", "gRPC call latency by method", self.latency.clone());

        // etcd's names for the same measurements.
        r.register(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not",
            g.has_leader.clone(),
        );
        r.register(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise",
            g.is_leader.clone(),
        );
        r.register("etcd_server_leader_changes_seen", "The number of leader changes seen", self.leader_changes.clone());
        // etcd exposes these two as gauges, under names that end in _total.
        r.register(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed",
            g.committed_index.clone(),
        );
        r.register(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied",
            g.applied_index.clone(),
        );
        r.register(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes",
            g.db_size_bytes.clone(),
        );
        r.register(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes",
            self.quota_bytes.clone(),
        );
        r.register("etcd_debugging_mvcc_keys_total", "Total number of keys", g.keys.clone());
        r.register("etcd_debugging_mvcc_watcher_total", "Total number of watchers", self.watchers.clone());
        r.register(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL (here: every synced storage write)",
            self.disk_sync.0.clone(),
        );
        r.register(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers (here: a replication message to its answer, the peer's log write included)",
            self.peer_rtt.clone(),
        );
        r.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            self.grpc_handled.clone(),
        );
        r.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server",
            self.grpc_handling.clone(),
        );
    }

    /// Records one gRPC call of `method` ("KV/Put": service and method) that
    /// ended with `code` ("OK" or a gRPC code name) after `took`.
    pub fn request(&self, method: &'static str, code: &'static str, took: Duration) {
        self.requests.get_or_create(&MethodCode { method, code }).inc();
        self.latency.get_or_create(&MethodOnly { method }).observe(took.as_secs_f64());
        let (grpc_service, grpc_method, grpc_type) = grpc_names(method);
        self.grpc_handled.get_or_create(&GrpcHandled { grpc_type, grpc_service, grpc_method, grpc_code: code }).inc();
        let labels = GrpcMethod { grpc_type, grpc_service, grpc_method };
        self.grpc_handling.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// The round-trip histogram of messages to `peer` (a node id).
    pub fn peer_round_trip(&self, peer: u64) -> Latency {
        Latency(self.peer_rtt.get_or_create(&Peer { To: format!("{peer:x}") }).clone())
    }

    /// Prometheus text exposition of everything.
    pub fn render(&self, g: &NodeGauges) -> String {
        let r = &self.readings;
        let set = |gauge: &Gauge, value: u64| gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        set(&r.term, g.term);
        set(&r.last_log_index, g.last_log_index);
        set(&r.applied_index, g.applied_index);
        set(&r.committed_index, g.committed_index);
        set(&r.log_entries, g.log_entries);
        set(&r.is_leader, u64::from(g.is_leader));
        set(&r.has_leader, u64::from(g.has_leader));
        r.revision.set(g.revision);
        set(&r.keys, g.keys);
        set(&r.leases, g.leases);
        set(&r.db_size_bytes, g.db_size_bytes);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// go-grpc-prometheus's service, method and type of one of our method
/// names ("KV/Put" is `etcdserverpb.KV`, `Put`, `unary`).
fn grpc_names(method: &'static str) -> (&'static str, &'static str, &'static str) {
    let (service, name) = method.split_once('/').unwrap_or(("", method));
    let service = match service {
        "KV" => "etcdserverpb.KV",
        "Watch" => "etcdserverpb.Watch",
        "Lease" => "etcdserverpb.Lease",
        "Cluster" => "etcdserverpb.Cluster",
        "Maintenance" => "etcdserverpb.Maintenance",
        "Auth" => "etcdserverpb.Auth",
        "Placement" => "placement.v1.Placement",
        "Health" => "grpc.health.v1.Health",
        other => other,
    };
    let kind = match method {
        "Watch/Watch" | "Lease/LeaseKeepAlive" => "bidi_stream",
        "Maintenance/Snapshot" | "Placement/WatchNodes" | "Health/Watch" => "server_stream",
        _ => "unary",
    };
    (service, name, kind)
}

/// gRPC's names of the status codes, for the `code` label.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// gRPC's name of a status code, for the `code` label.
pub fn code_name(code: tonic::Code) -> &'static str {
    CODE_NAMES[code as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let m = Metrics::default();
        m.apply.observe(Duration::from_micros(300));
        m.apply.observe(Duration::from_millis(3));
        m.apply.observe(Duration::from_secs(20));
        let text = m.render(&NodeGauges::default());
        assert!(text.contains("placement_apply_duration_seconds_bucket{le=\"0.0005\"} 1\n"), "{text}");
        assert!(text.contains("placement_apply_duration_seconds_bucket{le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("placement_apply_duration_seconds_bucket{le=\"10\"} 2\n"), "{text}");
        assert!(text.contains("placement_apply_duration_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("placement_apply_duration_seconds_count 3\n"), "{text}");
    }

    #[test]
    fn requests_are_counted_by_method_and_code_under_both_names() {
        let m = Metrics::default();
        m.request("KV/Put", "OK", Duration::from_millis(2));
        m.request("KV/Put", "OK", Duration::from_millis(3));
        m.request("KV/Range", "OutOfRange", Duration::from_millis(1));
        m.request("Watch/Watch", "OK", Duration::from_secs(1));
        let text = m.render(&NodeGauges { term: 7, is_leader: true, has_leader: true, ..Default::default() });
        assert!(text.contains("placement_grpc_requests_total{method=\"KV/Put\",code=\"OK\"} 2\n"), "{text}");
        assert!(text.contains("placement_grpc_requests_total{method=\"KV/Range\",code=\"OutOfRange\"} 1\n"));
        assert!(text.contains("placement_grpc_request_duration_seconds_count{method=\"KV/Put\"} 2\n"), "{text}");
        assert!(text.contains(
            "grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Put\",grpc_code=\"OK\"} 2\n"
        ), "{text}");
        assert!(text.contains("grpc_type=\"bidi_stream\",grpc_service=\"etcdserverpb.Watch\""), "{text}");
        assert!(text.contains("placement_raft_term 7\n"));
        assert!(text.contains("placement_raft_is_leader 1\n"));
        assert!(text.contains("etcd_server_has_leader 1\n"));
    }

    #[test]
    fn one_measurement_shows_under_ours_and_etcds_name() {
        let m = Metrics::default();
        m.disk_sync.observe(Duration::from_millis(1));
        m.leader_changes.inc();
        m.peer_round_trip(0x2a).observe(Duration::from_millis(1));
        let text = m.render(&NodeGauges::default());
        assert!(text.contains("placement_disk_sync_duration_seconds_count 1\n"), "{text}");
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_count 1\n"), "{text}");
        assert!(text.contains("placement_raft_leader_changes_total 1\n"), "{text}");
        assert!(text.contains("etcd_server_leader_changes_seen_total 1\n"), "{text}");
        assert!(text.contains("etcd_network_peer_round_trip_time_seconds_count{To=\"2a\"} 1\n"), "{text}");
    }

    #[test]
    fn every_code_has_its_grpc_name() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::Cancelled), "Canceled");
        assert_eq!(code_name(tonic::Code::Unauthenticated), "Unauthenticated");
        assert_eq!(code_name(tonic::Code::OutOfRange), "OutOfRange");
    }
}
