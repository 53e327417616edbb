//! A broker's current work from its assignment watch.

use std::collections::BTreeMap;

use crate::proto::placement::v1::assignment::Role;
use crate::proto::placement::v1::{Shard, WatchAssignmentsResponse};

/// The shards a broker holds, kept current from `Client::watch_assignments`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assignments {
    /// By (topic, shard): the broker's role and the shard as last seen.
    pub shards: BTreeMap<(String, u32), (Role, Shard)>,
    /// The revision of the last response applied.
    pub revision: i64,
}

impl Assignments {
    /// Applies one response of the watch: a snapshot replaces everything,
    /// a change updates or removes its shards. Returns the changes applied.
    pub fn apply(&mut self, resp: &WatchAssignmentsResponse) -> Vec<(Role, Shard)> {
        if resp.snapshot {
            self.shards.clear();
        }
        if let Some(h) = &resp.header {
            self.revision = h.revision;
        }
        let mut changes = Vec::new();
        for a in &resp.assignments {
            let Some(shard) = &a.shard else { continue };
            let role = Role::try_from(a.role).unwrap_or(Role::Removed);
            let id = (shard.topic.clone(), shard.shard);
            if role == Role::Removed {
                self.shards.remove(&id);
            } else {
                self.shards.insert(id, (role, shard.clone()));
            }
            changes.push((role, shard.clone()));
        }
        changes
    }

    /// The shards led, with their leader epochs.
    pub fn led(&self) -> impl Iterator<Item = &Shard> {
        self.shards.values().filter(|(r, _)| *r == Role::Leader).map(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::placement::v1::{Assignment, Header};

    fn resp(revision: i64, snapshot: bool, changes: &[(Role, &str, u32)]) -> WatchAssignmentsResponse {
        WatchAssignmentsResponse {
            header: Some(Header { revision, ..Default::default() }),
            snapshot,
            assignments: changes
                .iter()
                .map(|(role, topic, shard)| Assignment {
                    role: *role as i32,
                    shard: Some(Shard { topic: topic.to_string(), shard: *shard, ..Default::default() }),
                })
                .collect(),
        }
    }

    #[test]
    fn a_snapshot_replaces_the_work_and_changes_update_it() {
        let mut work = Assignments::default();
        work.apply(&resp(5, true, &[(Role::Leader, "t", 0), (Role::Follower, "t", 1)]));
        assert_eq!(work.led().count(), 1);
        work.apply(&resp(6, false, &[(Role::Removed, "t", 0), (Role::Leader, "t", 1)]));
        assert_eq!(work.shards.keys().cloned().collect::<Vec<_>>(), vec![("t".to_string(), 1)]);
        assert_eq!(work.led().map(|s| s.shard).collect::<Vec<_>>(), vec![1]);
        work.apply(&resp(9, true, &[(Role::Follower, "u", 3)]));
        assert_eq!((work.shards.len(), work.led().count(), work.revision), (1, 0, 9));
    }
}
