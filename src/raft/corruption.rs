//! The corruption check (etcd's `--experimental-corrupt-check-time` and its
//! initial check): members compare the CRC of their keys as of one revision
//! (HashKV). Replicas that applied the same log hold the same keys at every
//! revision they keep, so a member whose CRC differs from what a majority
//! of the members hold has a damaged copy: a bad disk, a bug, an operator's
//! hand in its data dir. It is named in a replicated CORRUPT alarm, which
//! stops every write until an operator repairs it and disarms the alarm.

use std::collections::BTreeMap;
use std::time::Duration;

use super::node::RaftNode;
use super::types::NodeId;
use crate::proto::etcdserverpb::HashKvRequest;
use crate::raft::state_store::scan_state;
use crate::runtime;

/// How long a check waits for one member's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// How long a member asked for its CRC at a revision waits to apply up to it.
pub const APPLY_WAIT: Duration = Duration::from_secs(1);

/// The members whose CRC differs from the one a strict majority of all
/// `members` hold; none without such a majority (too few answered, or the
/// answers split), since then who is wrong is not known.
pub fn odd_ones_out(members: usize, hashes: &BTreeMap<NodeId, u32>) -> Vec<NodeId> {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for hash in hashes.values() {
        *counts.entry(*hash).or_default() += 1;
    }
    let Some((majority, _)) = counts.into_iter().find(|(_, n)| *n > members / 2) else { return Vec::new() };
    hashes.iter().filter(|(_, hash)| **hash != majority).map(|(id, _)| *id).collect()
}

/// One check from this member: its CRC at its applied revision against
/// every other voter's at the same revision. Returns the members found
/// corrupt (see [`odd_ones_out`]). Members that do not answer in time, or
/// no longer keep that revision, are left out.
pub async fn check(node: &RaftNode) -> Vec<NodeId> {
    let own = scan_state(node.state(), |state| {
        let revision = state.revision();
        state.hash_kv(revision).map(|hash| (revision, hash))
    })
    .await;
    let Ok(Ok((revision, own))) = own else { return Vec::new() };
    let voters: Vec<_> = node.members().into_iter().filter(|(_, _, learner)| !learner).collect();
    let mut hashes = BTreeMap::from([(node.id, own)]);
    let asks = voters.iter().filter(|(id, _, _)| *id != node.id).map(|(id, member, _)| async move {
        let mut client = node.peer(&member.peer_addr).ok()?;
        let request = node.sender().request(HashKvRequest { revision });
        let answer = runtime::timeout(ANSWER_WAIT, client.hash_kv(request)).await.ok()?.ok()?;
        Some((*id, answer.into_inner().hash))
    });
    hashes.extend(futures::future::join_all(asks).await.into_iter().flatten());
    let corrupt = odd_ones_out(voters.len(), &hashes);
    if !corrupt.is_empty() {
        tracing::error!(revision, ?hashes, ?corrupt, "members disagree on their keys at one revision");
    }
    corrupt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_members_outside_a_strict_majority_are_corrupt() {
        let h = |pairs: &[(NodeId, u32)]| pairs.iter().copied().collect::<BTreeMap<_, _>>();
        // (voters, answers, corrupt)
        let cases: [(usize, BTreeMap<NodeId, u32>, Vec<NodeId>); 7] = [
            (3, h(&[(1, 7), (2, 7), (3, 7)]), vec![]),
            (3, h(&[(1, 7), (2, 7), (3, 9)]), vec![3]),
            (3, h(&[(1, 9), (2, 7), (3, 7)]), vec![1]),
            (3, h(&[(1, 7), (2, 9)]), vec![]),
            (3, h(&[(1, 7), (2, 8), (3, 9)]), vec![]),
            (5, h(&[(1, 7), (2, 7), (3, 7), (4, 8), (5, 9)]), vec![4, 5]),
            (5, h(&[(1, 7), (2, 7), (4, 8)]), vec![]),
        ];
        for (members, hashes, corrupt) in cases {
            assert_eq!(odd_ones_out(members, &hashes), corrupt, "{hashes:?} of {members}");
        }
    }
}
