//! What placement-ctl prints: aligned tables for people, JSON for scripts,
//! and etcdctl's `simple` lines for shell pipelines.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::proto::etcdserverpb::Member;
use crate::proto::mvccpb::KeyValue;
use crate::proto::placement::v1::{node_event, ClusterStatusResponse, NodeEvent, NodeInfo};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with a header line.
    Table,
    /// One JSON document (one per line for streams).
    Json,
    /// etcdctl's `simple`: a table's rows without the header, cells
    /// separated by ", "; a key and its value on lines of their own.
    Simple,
}

/// What a command shows people: a table, or text that is the same in
/// every human format.
pub enum Shown {
    /// Rows under a header (`table`), or comma-separated rows (`simple`).
    Table(Table),
    /// Lines printed as they are.
    Text(String),
}

impl From<Table> for Shown {
    fn from(table: Table) -> Self {
        Shown::Table(table)
    }
}

impl From<String> for Shown {
    fn from(text: String) -> Self {
        Shown::Text(text)
    }
}

impl Shown {
    /// The text `format` prints (`Json` is printed by the caller).
    pub fn render(&self, format: Format) -> String {
        match (self, format) {
            (Shown::Table(t), Format::Simple) => t.render_simple(),
            (Shown::Table(t), _) => t.render(),
            (Shown::Text(text), _) => text.clone(),
        }
    }
}

/// Rows under a header, each column as wide as its widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(header: Vec<&'static str>) -> Self {
        Self { header, rows: Vec::new() }
    }

    /// Adds a row (as many cells as columns).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row after the header.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            padded.join("  ").trim_end().to_string() + "\n"
        };
        let mut out = line(self.header.clone());
        for row in &self.rows {
            out += &line(row.iter().map(String::as_str).collect());
        }
        out
    }

    /// The rows as etcdctl's `simple` prints them: no header, cells
    /// separated by ", ", one line per row.
    pub fn render_simple(&self) -> String {
        self.rows.iter().map(|row| row.join(", ") + "\n").collect()
    }
}

/// `k=v,k=v` for a map cell.
pub fn pairs(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Bytes as text (lossy) for people.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A node as JSON.
pub fn node_json(n: &NodeInfo) -> Value {
    json!({
        "cluster": n.cluster,
        "node_id": n.node_id,
        "roles": n.roles,
        "addresses": n.addresses,
        "labels": n.labels,
        "epoch": n.epoch,
        "lease_id": n.lease_id,
    })
}

/// The node table's columns.
pub fn node_table(nodes: &[NodeInfo]) -> Table {
    let mut table = Table::new(vec!["CLUSTER", "NODE", "EPOCH", "LEASE", "ROLES", "ADDRESSES", "LABELS"]);
    for n in nodes {
        table.row(vec![
            n.cluster.clone(),
            n.node_id.to_string(),
            n.epoch.to_string(),
            format!("{:x}", n.lease_id),
            n.roles.join(","),
            pairs(&n.addresses),
            pairs(&n.labels),
        ]);
    }
    table
}

/// The name of a node event's kind.
pub fn event_kind(e: &NodeEvent) -> &'static str {
    match node_event::Kind::try_from(e.kind) {
        Ok(node_event::Kind::Joined) => "JOINED",
        Ok(node_event::Kind::Changed) => "CHANGED",
        Ok(node_event::Kind::Left) => "LEFT",
        Err(_) => "UNKNOWN",
    }
}

/// A node event as one line of text.
pub fn event_line(e: &NodeEvent) -> String {
    let n = e.node.clone().unwrap_or_default();
    format!(
        "{} {}/{} epoch={} revision={} roles={}",
        event_kind(e),
        n.cluster,
        n.node_id,
        n.epoch,
        e.revision,
        n.roles.join(",")
    )
}

/// A node event as JSON.
pub fn event_json(e: &NodeEvent) -> Value {
    json!({
        "kind": event_kind(e),
        "revision": e.revision,
        "node": e.node.as_ref().map(node_json),
    })
}

/// A key-value as JSON (key and value as UTF-8 text, lossy).
pub fn kv_json(kv: &KeyValue) -> Value {
    json!({
        "key": text(&kv.key),
        "value": text(&kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    })
}

/// Members as a table.
pub fn member_table(members: &[Member]) -> Table {
    let mut table = Table::new(vec!["ID", "NAME", "PEER_ADDR", "CLIENT_ADDR", "ROLE"]);
    for m in members {
        table.row(vec![
            format!("{:x}", m.id),
            m.name.clone(),
            m.peer_ur_ls.join(","),
            m.client_ur_ls.join(","),
            if m.is_learner { "learner" } else { "voter" }.to_string(),
        ]);
    }
    table
}

/// A member as JSON.
pub fn member_json(m: &Member) -> Value {
    json!({
        "id": m.id,
        "id_hex": format!("{:x}", m.id),
        "name": m.name,
        "peer_urls": m.peer_ur_ls,
        "client_urls": m.client_ur_ls,
        "is_learner": m.is_learner,
    })
}

/// The cluster status as text: a summary line, the members, the node counts.
pub fn status_text(s: &ClusterStatusResponse) -> String {
    let mut out = format!("leader {:x}, term {}\n\n", s.leader, s.term);
    let mut members = Table::new(vec!["ID", "NAME", "CLIENT_ADDR", "ROLE", "HEALTHY", "APPLIED", "ERROR"]);
    for m in &s.members {
        let role = if m.id == s.leader {
            "leader"
        } else if m.is_learner {
            "learner"
        } else {
            "follower"
        };
        members.row(vec![
            format!("{:x}", m.id),
            m.name.clone(),
            m.client_addr.clone(),
            role.to_string(),
            m.healthy.to_string(),
            m.applied_index.to_string(),
            m.error.clone(),
        ]);
    }
    out += &members.render();
    let mut clusters = Table::new(vec!["CLUSTER", "NODES", "BY_ROLE"]);
    for c in &s.clusters {
        let by_role = c.by_role.iter().map(|(r, n)| format!("{r}={n}")).collect::<Vec<_>>().join(",");
        clusters.row(vec![c.cluster.clone(), c.nodes.to_string(), by_role]);
    }
    out += "\n";
    out += &clusters.render();
    out
}

/// The cluster status as JSON.
pub fn status_json(s: &ClusterStatusResponse) -> Value {
    let members: Vec<Value> = s
        .members
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "name": m.name,
                "peer_addr": m.peer_addr,
                "client_addr": m.client_addr,
                "is_learner": m.is_learner,
                "is_leader": m.id == s.leader,
                "healthy": m.healthy,
                "applied_index": m.applied_index,
                "raft_index": m.raft_index,
                "error": m.error,
            })
        })
        .collect();
    let clusters: Vec<Value> =
        s.clusters.iter().map(|c| json!({"cluster": c.cluster, "nodes": c.nodes, "by_role": c.by_role})).collect();
    json!({
        "leader": s.leader,
        "term": s.term,
        "revision": s.header.as_ref().map_or(0, |h| h.revision),
        "members": members,
        "clusters": clusters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_each_column_to_its_widest_cell() {
        let mut t = Table::new(vec!["A", "LONGER"]);
        t.row(vec!["wide cell".into(), "x".into()]);
        t.row(vec!["b".into(), String::new()]);
        assert_eq!(t.render(), "A          LONGER\nwide cell  x\nb\n");
    }
}
