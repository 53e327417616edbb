//! Consumer offsets through the client library: commit and fetch on any
//! member, the generation fence, and commits that arrive together sharing
//! one write.

use std::collections::BTreeSet;
use std::sync::Arc;

use placement_center::client::{Client, ClientOptions};
use placement_center::proto::etcdserverpb::RangeRequest;
use placement_center::proto::placement::v1::{CommitOffsetsRequest, ShardOffset};
use tonic::Code;

use crate::cluster::Cluster;

fn client_of(cluster: &Cluster, i: usize) -> Arc<Client> {
    Client::new(&[cluster.client_addr(i)], ClientOptions::default()).unwrap()
}

fn commit(group: &str, generation: i64, offsets: &[(&str, u32, i64)]) -> CommitOffsetsRequest {
    CommitOffsetsRequest {
        cluster: "mq".into(),
        group: group.into(),
        generation,
        offsets: offsets
            .iter()
            .map(|(topic, shard, offset)| ShardOffset {
                topic: topic.to_string(),
                shard: *shard,
                offset: *offset,
                metadata: format!("by {group}"),
            })
            .collect(),
    }
}

fn status(e: placement_center::client::ClientError) -> (Code, String) {
    (e.code(), e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_committed_on_one_member_are_fetched_on_another_and_stale_generations_are_fenced() {
    let cluster = Cluster::start(3).await;
    cluster.wait_leader().await;
    let (first, second) = (client_of(&cluster, 0), client_of(&cluster, 1));

    let committed = first.commit_offsets(commit("billing", 0, &[("orders", 0, 10), ("orders", 1, 20)])).await.unwrap();
    assert_eq!(committed.generation, 0);
    first.commit_offsets(commit("billing", 0, &[("refunds", 0, 3)])).await.unwrap();
    let all = second.fetch_offsets("mq", "billing", "").await.unwrap();
    let seen: Vec<(&str, u32, i64)> = all.offsets.iter().map(|o| (o.topic.as_str(), o.shard, o.offset)).collect();
    assert_eq!(seen, vec![("orders", 0, 10), ("orders", 1, 20), ("refunds", 0, 3)]);
    assert_eq!(all.offsets[0].metadata, "by billing");
    assert!(all.header.unwrap().revision >= committed.header.unwrap().revision);
    let orders = second.fetch_offsets("mq", "billing", "orders").await.unwrap();
    assert_eq!(orders.offsets.len(), 2);
    assert!(second.fetch_offsets("mq", "nobody", "").await.unwrap().offsets.is_empty());

    // Generation 5 fences every lower one; equal and higher ones commit.
    assert_eq!(second.commit_offsets(commit("billing", 5, &[("orders", 0, 11)])).await.unwrap().generation, 5);
    let (code, message) = status(first.commit_offsets(commit("billing", 4, &[("orders", 0, 99)])).await.unwrap_err());
    assert_eq!(code, Code::FailedPrecondition);
    assert_eq!(message, "placement: stale generation 4 for group billing of cluster mq: the group is at generation 5");
    first.commit_offsets(commit("billing", 5, &[("orders", 0, 12)])).await.unwrap();
    assert_eq!(first.commit_offsets(commit("billing", 6, &[("orders", 1, 21)])).await.unwrap().generation, 6);
    // No generation: no fence, and the group keeps its generation.
    assert_eq!(first.commit_offsets(commit("billing", 0, &[("orders", 1, 22)])).await.unwrap().generation, 6);
    let fetched = second.fetch_offsets("mq", "billing", "orders").await.unwrap();
    assert_eq!(fetched.generation, 6);
    let seen: Vec<i64> = fetched.offsets.iter().map(|o| o.offset).collect();
    assert_eq!(seen, vec![12, 22], "the fenced commit wrote nothing");

    // Bad input is named.
    let bad = [
        (commit("bill/ing", 0, &[("t", 0, 1)]), "invalid group"),
        (commit("g", 0, &[("t", 0, -5)]), "is negative"),
        (commit("g", 0, &[]), "none given"),
    ];
    for (req, expected) in bad {
        let (code, message) = status(first.commit_offsets(req).await.unwrap_err());
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.contains(expected), "{message:?} should say {expected:?}");
    }
    let (code, _) = status(first.fetch_offsets("mq", "", "").await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_that_arrive_together_share_a_write_and_a_shard_is_written_once_per_write() {
    let cluster = Cluster::start(3).await;
    cluster.wait_leader().await;
    let client = client_of(&cluster, cluster.follower().await);
    const COMMITS: i64 = 200;
    // 200 commits at once, of 20 groups, all to the same shard of their group.
    let commits = (0..COMMITS).map(|i| {
        let client = client.clone();
        let group = format!("g{}", i % 20);
        async move { client.commit_offsets(commit(&group, 0, &[("t", 0, i)])).await.unwrap() }
    });
    let answers = futures::future::join_all(commits).await;
    let revisions: BTreeSet<i64> = answers.iter().map(|a| a.header.as_ref().unwrap().revision).collect();
    assert!(
        revisions.len() < COMMITS as usize / 4,
        "{} writes for {COMMITS} commits that arrived together",
        revisions.len()
    );
    // A shard's key was written once per write that carried its commits.
    let mut kv = cluster.kv(0).await;
    let key = placement_center::placement::offsets::offset_key("mq", "g0", "t", 0);
    let read = kv.range(RangeRequest { key, ..Default::default() }).await.unwrap().into_inner();
    let version = read.kvs[0].version;
    assert!(version <= revisions.len() as i64, "g0/t/0 written {version} times in {} writes", revisions.len());
    assert!(version < COMMITS / 20, "g0/t/0 written {version} times for {} commits", COMMITS / 20);
    // And it holds a value of the last write that carried its commits.
    let fetched = client.fetch_offsets("mq", "g0", "t").await.unwrap();
    let g0: Vec<(i64, i64)> = answers
        .iter()
        .zip(0..)
        .filter(|(_, i)| i % 20 == 0)
        .map(|(a, i)| (a.header.as_ref().unwrap().revision, i))
        .collect();
    let last_write = g0.iter().map(|(revision, _)| *revision).max().unwrap();
    let in_last: Vec<i64> = g0.iter().filter(|(revision, _)| *revision == last_write).map(|(_, i)| *i).collect();
    assert!(in_last.contains(&fetched.offsets[0].offset), "{} is not one of {in_last:?}", fetched.offsets[0].offset);
}
