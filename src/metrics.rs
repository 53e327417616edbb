//! A node's metrics, rendered as Prometheus text for `/metrics`: counters,
//! gauges and fixed-bucket histograms on atomics, no global registry (tests
//! and the simulator run several nodes in one process).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at or below each bound (not cumulative; summed when rendered).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// What a node measures about itself (Raft's own numbers are read from
/// openraft's metrics when rendering).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Duration of each apply batch of committed entries.
    pub apply: Histogram,
    /// Duration of each synced (fsynced) storage write.
    pub disk_sync: Histogram,
    /// Leader changes this node saw.
    pub leader_changes: AtomicU64,
    /// Proposals this node made as leader (log entries of client commands).
    pub proposals: AtomicU64,
    /// Client commands those proposals carried (over `proposals`: the mean batch).
    pub proposed_commands: AtomicU64,
    /// Open watchers.
    pub watchers: AtomicU64,
    /// Replication streams (raft.v1 AppendStream) this node accepted from leaders.
    pub append_streams: AtomicU64,
    /// gRPC calls by method: count by status code, latency.
    requests: Mutex<BTreeMap<&'static str, MethodStats>>,
}

#[derive(Debug, Default)]
struct MethodStats {
    by_code: BTreeMap<&'static str, u64>,
    latency: Histogram,
}

/// A point-in-time reading of a node, rendered alongside the metrics.
#[derive(Debug, Default, Clone)]
pub struct NodeGauges {
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    /// Entries in the log: last index minus the purged index.
    pub log_entries: u64,
    pub is_leader: bool,
    pub has_leader: bool,
    pub revision: i64,
    pub keys: u64,
    pub leases: u64,
    pub db_size_bytes: u64,
}

impl Metrics {
    /// Records one gRPC call of `method` that ended with `code` ("OK" or a
    /// gRPC code name) after `took`.
    pub fn request(&self, method: &'static str, code: &'static str, took: Duration) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let stats = requests.entry(method).or_default();
        *stats.by_code.entry(code).or_default() += 1;
        stats.latency.observe(took);
    }

    /// Calls of `method` so far (all codes).
    pub fn requests(&self, method: &str) -> u64 {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.get(method).map_or(0, |s| s.by_code.values().sum())
    }

    /// Prometheus text exposition of everything.
    pub fn render(&self, g: &NodeGauges) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        gauge("placement_raft_term", "Current Raft term.", g.term.to_string());
        gauge("placement_raft_last_log_index", "Index of the last Raft log entry.", g.last_log_index.to_string());
        gauge("placement_raft_applied_index", "Index of the last applied entry.", g.applied_index.to_string());
        gauge(
            "placement_raft_log_entries",
            "Entries kept in the Raft log (not yet purged).",
            g.log_entries.to_string(),
        );
        gauge("placement_raft_is_leader", "1 if this node leads.", u8::from(g.is_leader).to_string());
        gauge("placement_raft_has_leader", "1 if a leader is known.", u8::from(g.has_leader).to_string());
        gauge("placement_mvcc_revision", "Current store revision.", g.revision.to_string());
        gauge("placement_mvcc_keys", "Live keys.", g.keys.to_string());
        gauge("placement_leases", "Granted leases.", g.leases.to_string());
        gauge("placement_watchers", "Open watchers.", self.watchers.load(Ordering::Relaxed).to_string());
        gauge("placement_db_size_bytes", "Bytes the storage engine holds.", g.db_size_bytes.to_string());
        for (name, help, counter) in [
            ("placement_raft_leader_changes_total", "Leader changes seen.", &self.leader_changes),
            ("placement_raft_proposals_total", "Log entries proposed for client commands.", &self.proposals),
            (
                "placement_raft_proposed_commands_total",
                "Client commands those entries carried.",
                &self.proposed_commands,
            ),
            ("placement_raft_append_streams_total", "Replication streams accepted from leaders.", &self.append_streams),
        ] {
            let value = counter.load(Ordering::Relaxed);
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        for (name, help, h) in [
            ("placement_apply_duration_seconds", "Apply time per batch of committed entries.", &self.apply),
            ("placement_disk_sync_duration_seconds", "Time per synced storage write.", &self.disk_sync),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            h.render(&mut out, name, "");
        }
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP placement_grpc_requests_total gRPC calls by method and code.\n# TYPE placement_grpc_requests_total counter"
        );
        for (method, stats) in requests.iter() {
            for (code, n) in &stats.by_code {
                let _ = writeln!(out, "placement_grpc_requests_total{{method=\"{method}\",code=\"{code}\"}} {n}");
            }
        }
        let name = "placement_grpc_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} gRPC call latency by method.\n# TYPE {name} histogram");
        for (method, stats) in requests.iter() {
            stats.latency.render(&mut out, name, &format!("method=\"{method}\""));
        }
        out
    }
}

/// gRPC's name of a status code, for the `code` label.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
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
    fn requests_are_counted_by_method_and_code() {
        let m = Metrics::default();
        m.request("KV/Put", "OK", Duration::from_millis(2));
        m.request("KV/Put", "OK", Duration::from_millis(3));
        m.request("KV/Range", "OutOfRange", Duration::from_millis(1));
        assert_eq!(m.requests("KV/Put"), 2);
        let text = m.render(&NodeGauges { term: 7, is_leader: true, ..Default::default() });
        assert!(text.contains("placement_grpc_requests_total{method=\"KV/Put\",code=\"OK\"} 2\n"), "{text}");
        assert!(text.contains("placement_grpc_requests_total{method=\"KV/Range\",code=\"OutOfRange\"} 1\n"));
        assert!(text.contains("placement_grpc_request_duration_seconds_count{method=\"KV/Put\"} 2\n"), "{text}");
        assert!(text.contains("placement_raft_term 7\n"));
        assert!(text.contains("placement_raft_is_leader 1\n"));
    }
}
