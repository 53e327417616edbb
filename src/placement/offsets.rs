//! Consumer offsets on the key space: where a group's committed offsets and
//! its generation live, how they are encoded, what a commit may hold, and
//! how a batch of commits (from any groups, in arrival order) becomes one
//! write. Pure: the committer (`api::offsets`) reads the generations, asks
//! [`plan`] what to write and proposes it as one transaction.
//!
//! - `/placement/offsets/<cluster>/<group>/<topic>/<shard>`: an
//!   [`OffsetRecord`] as JSON.
//! - `/placement/groups/<cluster>/<group>`: a [`GroupRecord`] as JSON, the
//!   highest generation the group's commits carried.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_cluster, prefix_range, PlacementError};
use crate::proto::mvccpb::KeyValue;
use crate::proto::placement::v1::{CommitOffsetsRequest, ShardOffset};

/// Prefix of every committed offset.
pub const OFFSETS_PREFIX: &str = "/placement/offsets/";
/// Prefix of every group's generation.
pub const GROUPS_PREFIX: &str = "/placement/groups/";
/// Most offsets one commit may hold.
pub const MAX_OFFSETS_PER_COMMIT: usize = 1000;
/// Longest metadata kept with an offset.
pub const MAX_METADATA: usize = 4096;

/// What is stored for a committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRecord {
    /// The next offset to consume.
    pub offset: i64,
    /// The committer's free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
}

/// What is stored for a group: the highest generation its commits carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The generation; commits with a lower one are refused.
    pub generation: i64,
}

impl GroupRecord {
    /// The stored value.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record stored in `value`.
    pub fn decode(value: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(value).map_err(|e| e.to_string())
    }
}

/// Where `group`'s offset of `shard` of `topic` is.
pub fn offset_key(cluster: &str, group: &str, topic: &str, shard: u32) -> Vec<u8> {
    format!("{OFFSETS_PREFIX}{cluster}/{group}/{topic}/{shard}").into_bytes()
}

/// Where `group`'s generation is.
pub fn group_key(cluster: &str, group: &str) -> Vec<u8> {
    format!("{GROUPS_PREFIX}{cluster}/{group}").into_bytes()
}

/// The key range of `group`'s offsets of `topic` (every topic's when
/// empty): (key, range_end) as etcd's prefix reads take it.
pub fn offsets_range(cluster: &str, group: &str, topic: &str) -> (Vec<u8>, Vec<u8>) {
    prefix_range(if topic.is_empty() {
        format!("{OFFSETS_PREFIX}{cluster}/{group}/")
    } else {
        format!("{OFFSETS_PREFIX}{cluster}/{group}/{topic}/")
    })
}

/// Checks a group or topic name: one key segment, as a cluster name.
pub fn check_segment(what: &'static str, name: &str) -> Result<(), PlacementError> {
    check_cluster(name).map_err(|_| PlacementError::BadField {
        what,
        why: format!("{name:?}: use 1 to 128 letters, digits, '.', '_' or '-'"),
    })
}

/// Checks what a commit stores.
pub fn validate_commit(req: &CommitOffsetsRequest) -> Result<(), PlacementError> {
    check_cluster(&req.cluster)?;
    check_segment("group", &req.group)?;
    let bad = |why: String| Err(PlacementError::BadField { what: "offsets", why });
    if req.generation < 0 {
        return Err(PlacementError::BadField {
            what: "generation",
            why: format!("{} is negative (0: no fence)", req.generation),
        });
    }
    if req.offsets.is_empty() {
        return bad("none given".into());
    }
    if req.offsets.len() > MAX_OFFSETS_PER_COMMIT {
        return bad(format!("{} given, at most {MAX_OFFSETS_PER_COMMIT} in one commit", req.offsets.len()));
    }
    for o in &req.offsets {
        check_segment("topic", &o.topic)?;
        if o.offset < 0 {
            return bad(format!("offset {} of {}/{} is negative", o.offset, o.topic, o.shard));
        }
        if o.metadata.len() > MAX_METADATA {
            return bad(format!("metadata of {}/{} is longer than {MAX_METADATA} bytes", o.topic, o.shard));
        }
    }
    Ok(())
}

/// The offset a stored record under `group`'s prefix holds: its topic and
/// shard from the key (a record written by hand may be anything).
pub fn decode_offset(kv: &KeyValue, cluster: &str, group: &str) -> Result<ShardOffset, String> {
    let prefix = format!("{OFFSETS_PREFIX}{cluster}/{group}/");
    let key = std::str::from_utf8(&kv.key).map_err(|_| "key is not UTF-8".to_string())?;
    let rest = key.strip_prefix(&prefix).ok_or("key is not under the group")?;
    let (topic, shard) = rest.rsplit_once('/').ok_or("key has no shard")?;
    let shard = shard.parse().map_err(|_| format!("shard {shard:?} is not a number"))?;
    let record: OffsetRecord = serde_json::from_slice(&kv.value).map_err(|e| e.to_string())?;
    Ok(ShardOffset { topic: topic.to_string(), shard, offset: record.offset, metadata: record.metadata })
}

/// A group as a batch sees it: (cluster, group).
pub type GroupId = (String, String);

/// A group's generation as read, with the mod revision of its record (0:
/// no record), which the batch's write is conditioned on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadGeneration {
    /// The generation (0: never fenced).
    pub generation: i64,
    /// The record's mod revision (0: none).
    pub mod_revision: i64,
}

/// What a batch of commits does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Per commit, in order: the group's generation after it, or why it is
    /// refused.
    pub outcomes: Vec<Result<i64, PlacementError>>,
    /// What to write: each key once, with the last value committed for it.
    pub writes: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The groups whose generation the accepted commits relied on: the
    /// write holds only if their records are still at these mod revisions.
    pub conditions: BTreeMap<Vec<u8>, i64>,
}

/// Plans `commits` (in arrival order) against the groups' generations as
/// read (`read`; a group missing there has none). A commit with a
/// generation below its group's (as raised by the commits before it in the
/// batch too) is refused; one with a higher one raises it. Offsets written
/// twice keep the last value: the batch is one write.
pub fn plan(commits: &[&CommitOffsetsRequest], read: &BTreeMap<GroupId, ReadGeneration>) -> Plan {
    let mut plan = Plan::default();
    let mut generations: BTreeMap<GroupId, i64> = BTreeMap::new();
    for commit in commits {
        let id = (commit.cluster.clone(), commit.group.clone());
        let stored = read.get(&id).copied().unwrap_or_default();
        let current = *generations.entry(id).or_insert(stored.generation);
        if commit.generation > 0 && commit.generation < current {
            plan.outcomes.push(Err(PlacementError::StaleGeneration {
                cluster: commit.cluster.clone(),
                group: commit.group.clone(),
                given: commit.generation,
                current,
            }));
            continue;
        }
        let key = group_key(&commit.cluster, &commit.group);
        if commit.generation > 0 {
            // Whether raised or equal, the commit holds only at this generation.
            plan.conditions.insert(key.clone(), stored.mod_revision);
        }
        let after = current.max(commit.generation);
        if after > current {
            plan.writes.insert(key, GroupRecord { generation: after }.encode());
            generations.insert((commit.cluster.clone(), commit.group.clone()), after);
        }
        for o in &commit.offsets {
            let record = OffsetRecord { offset: o.offset, metadata: o.metadata.clone() };
            let value = serde_json::to_vec(&record).unwrap_or_default();
            plan.writes.insert(offset_key(&commit.cluster, &commit.group, &o.topic, o.shard), value);
        }
        plan.outcomes.push(Ok(after));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(group: &str, generation: i64, offsets: &[(&str, u32, i64)]) -> CommitOffsetsRequest {
        CommitOffsetsRequest {
            cluster: "mq".into(),
            group: group.into(),
            generation,
            offsets: offsets
                .iter()
                .map(|(t, s, o)| ShardOffset { topic: t.to_string(), shard: *s, offset: *o, metadata: String::new() })
                .collect(),
        }
    }

    fn stored_offset(plan: &Plan, group: &str, topic: &str, shard: u32) -> Option<i64> {
        let value = plan.writes.get(&offset_key("mq", group, topic, shard))?;
        Some(serde_json::from_slice::<OffsetRecord>(value).unwrap().offset)
    }

    #[test]
    fn a_batch_writes_each_offset_once_with_the_last_value_committed() {
        let (a, b, c) = (
            commit("g1", 0, &[("t", 0, 5), ("t", 1, 7)]),
            commit("g2", 0, &[("t", 0, 1)]),
            commit("g1", 0, &[("t", 0, 9)]),
        );
        let plan = plan(&[&a, &b, &c], &BTreeMap::new());
        assert_eq!(plan.outcomes, vec![Ok(0), Ok(0), Ok(0)]);
        assert_eq!(plan.writes.len(), 3, "g1/t/0 twice is written once");
        assert_eq!(stored_offset(&plan, "g1", "t", 0), Some(9));
        assert_eq!(stored_offset(&plan, "g1", "t", 1), Some(7));
        assert_eq!(stored_offset(&plan, "g2", "t", 0), Some(1));
        assert!(plan.conditions.is_empty(), "commits without a generation rely on none");
    }

    #[test]
    fn a_lower_generation_is_refused_naming_both_and_a_higher_one_fences_the_rest() {
        let read = BTreeMap::from([(("mq".into(), "g".into()), ReadGeneration { generation: 3, mod_revision: 40 })]);
        let stale = commit("g", 2, &[("t", 0, 1)]);
        let same = commit("g", 3, &[("t", 0, 2)]);
        let newer = commit("g", 5, &[("t", 0, 3)]);
        let fenced = commit("g", 4, &[("t", 0, 4)]);
        let unfenced = commit("g", 0, &[("t", 1, 8)]);
        let plan = plan(&[&stale, &same, &newer, &fenced, &unfenced], &read);
        let e = plan.outcomes[0].clone().unwrap_err();
        assert_eq!(e.to_string(), "stale generation 2 for group g of cluster mq: the group is at generation 3");
        assert_eq!(plan.outcomes[1], Ok(3));
        assert_eq!(plan.outcomes[2], Ok(5));
        assert!(matches!(plan.outcomes[3], Err(PlacementError::StaleGeneration { given: 4, current: 5, .. })));
        assert_eq!(plan.outcomes[4], Ok(5));
        assert_eq!(stored_offset(&plan, "g", "t", 0), Some(3), "the fenced commit wrote nothing");
        let group = plan.writes.get(&group_key("mq", "g")).unwrap();
        assert_eq!(GroupRecord::decode(group), Ok(GroupRecord { generation: 5 }));
        assert_eq!(plan.conditions, BTreeMap::from([(group_key("mq", "g"), 40)]));
    }

    #[test]
    fn a_first_generation_holds_only_while_the_group_has_no_record() {
        let plan = plan(&[&commit("g", 1, &[("t", 0, 1)])], &BTreeMap::new());
        assert_eq!(plan.outcomes, vec![Ok(1)]);
        assert_eq!(plan.conditions, BTreeMap::from([(group_key("mq", "g"), 0)]));
    }

    #[test]
    fn commits_that_cannot_be_stored_are_refused_naming_the_field() {
        let long = "x".repeat(MAX_METADATA + 1);
        let mut with_long = commit("g", 0, &[("t", 0, 1)]);
        with_long.offsets[0].metadata = long;
        let too_many = commit("g", 0, &vec![("t", 0, 1); MAX_OFFSETS_PER_COMMIT + 1]);
        let cases = [
            (commit("g", 0, &[]), "none given"),
            (commit("g/h", 0, &[("t", 0, 1)]), "invalid group"),
            (commit("g", 0, &[("a/b", 0, 1)]), "invalid topic"),
            (commit("g", 0, &[("t", 0, -1)]), "is negative"),
            (commit("g", -1, &[("t", 0, 1)]), "invalid generation"),
            (with_long, "longer than 4096"),
            (too_many, "at most 1000"),
            (CommitOffsetsRequest { cluster: String::new(), ..commit("g", 0, &[("t", 0, 1)]) }, "invalid cluster"),
        ];
        for (req, expected) in cases {
            let e = validate_commit(&req).unwrap_err().to_string();
            assert!(e.contains(expected), "{e:?} should say {expected:?}");
        }
        validate_commit(&commit("g", 7, &[("orders", 3, 0)])).unwrap();
    }

    #[test]
    fn a_stored_offset_reads_back_from_its_key_and_value() {
        let value = serde_json::to_vec(&OffsetRecord { offset: 42, metadata: "m".into() }).unwrap();
        let kv = KeyValue { key: offset_key("mq", "g", "orders.eu", 7), value, ..Default::default() };
        let read = decode_offset(&kv, "mq", "g").unwrap();
        assert_eq!((read.topic.as_str(), read.shard, read.offset, read.metadata.as_str()), ("orders.eu", 7, 42, "m"));
        let stray = KeyValue { key: offset_key("mq", "g", "t", 1), value: b"{".to_vec(), ..Default::default() };
        assert!(decode_offset(&stray, "mq", "g").is_err());
        let (start, end) = offsets_range("mq", "g", "t");
        let inside = |k: &[u8]| k >= start.as_slice() && k < end.as_slice();
        assert!(inside(&offset_key("mq", "g", "t", u32::MAX)));
        assert!(!inside(&offset_key("mq", "g", "t2", 0)) && !inside(&offset_key("mq", "g2", "t", 0)));
    }
}
