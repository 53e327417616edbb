//! Typed calls for topics and shards: what an operator's tool and a shard
//! leader call.

use std::sync::Arc;

use super::{Client, ClientError, Retry, Revisioned};
use crate::proto::placement::v1::placement_client::PlacementClient;
use crate::proto::placement::v1::{
    CreateTopicRequest, DeleteTopicRequest, DeleteTopicResponse, GetTopicRequest, GetTopicResponse, ListShardsRequest,
    ListShardsResponse, ListTopicsRequest, ListTopicsResponse, MoveShardRequest, MoveShardResponse,
    ReportShardStatusRequest, ReportShardStatusResponse, TopicResponse, TopicSpec, UpdateTopicRequest,
    WatchAssignmentsRequest, WatchAssignmentsResponse,
};

impl Revisioned for WatchAssignmentsResponse {
    fn revision(&self) -> Option<i64> {
        self.header.as_ref().map(|h| h.revision)
    }
}

impl Client {
    /// Creates a topic (AlreadyExists if there is one). Retried only when it
    /// certainly did not reach a member: a retry of one that was applied
    /// would answer AlreadyExists.
    ///
    /// ```no_run
    /// use placement_client::proto::placement::v1::TopicSpec;
    ///
    /// # async fn example(client: &placement_client::Client) -> Result<(), placement_client::ClientError> {
    /// let spec = TopicSpec {
    ///     cluster: "mq".into(),
    ///     name: "orders".into(),
    ///     shards: 12,
    ///     replication_factor: 3,
    ///     role: "journal".into(),
    ///     spread_label: "zone".into(),
    /// };
    /// client.create_topic(spec).await?;
    /// for shard in client.get_topic("mq", "orders").await?.shards {
    ///     println!("shard {} led by {} at epoch {}", shard.shard, shard.leader, shard.leader_epoch);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_topic(&self, spec: TopicSpec) -> Result<TopicResponse, ClientError> {
        let req = CreateTopicRequest { spec: Some(spec) };
        self.call(Retry::OnlyIfNotSent, |ch| {
            let req = self.request(req.clone());
            async move { PlacementClient::new(ch).create_topic(req).await }
        })
        .await
    }

    /// Changes a topic if it is still at `revision` (FailedPrecondition
    /// otherwise). Idempotent: a retry of an applied update is refused as
    /// changed, never applied twice.
    pub async fn update_topic(&self, spec: TopicSpec, revision: i64) -> Result<TopicResponse, ClientError> {
        let req = UpdateTopicRequest { spec: Some(spec), revision };
        self.call(Retry::OnlyIfNotSent, |ch| {
            let req = self.request(req.clone());
            async move { PlacementClient::new(ch).update_topic(req).await }
        })
        .await
    }

    /// A topic and its shards, linearizable (NotFound if there is none).
    pub async fn get_topic(&self, cluster: &str, name: &str) -> Result<GetTopicResponse, ClientError> {
        let req = GetTopicRequest { cluster: cluster.to_string(), name: name.to_string() };
        self.call(Retry::Idempotent, |ch| {
            let req = self.request(req.clone());
            async move { PlacementClient::new(ch).get_topic(req).await }
        })
        .await
    }

    /// A cluster's topics, linearizable.
    pub async fn list_topics(&self, cluster: &str) -> Result<ListTopicsResponse, ClientError> {
        let req = ListTopicsRequest { cluster: cluster.to_string() };
        self.call(Retry::Idempotent, |ch| {
            let req = self.request(req.clone());
            async move { PlacementClient::new(ch).list_topics(req).await }
        })
        .await
    }

    /// Deletes a topic and its shards (`revision` 0: whatever is there).
    /// Idempotent: retried.
    pub async fn delete_topic(
        &self,
        cluster: &str,
        name: &str,
        revision: i64,
    ) -> Result<DeleteTopicResponse, ClientError> {
        let req = DeleteTopicRequest { cluster: cluster.to_string(), name: name.to_string(), revision };
        self.call(Retry::Idempotent, |ch| {
            let req = self.request(req.clone());
            async move { PlacementClient::new(ch).delete_topic(req).await }
        })
        .await
    }

    /// A cluster's shards, of `topic` ("": all) held by `broker` (0: any),
    /// linearizable.
    pub async fn list_shards(
        &self,
        cluster: &str,
        topic: &str,
        broker: u64,
    ) -> Result<ListShardsResponse, ClientError> {
        let req = ListShardsRequest { cluster: cluster.to_string(), topic: topic.to_string(), broker };
        self.call(Retry::Idempotent, |ch| {
            let req = self.request(req.clone());
            async move { PlacementClient::new(ch).list_shards(req).await }
        })
        .await
    }

    /// Moves a shard's leadership or a replica (see `MoveShardRequest`).
    /// Retried only when it certainly did not reach a member.
    pub async fn move_shard(&self, req: MoveShardRequest) -> Result<MoveShardResponse, ClientError> {
        self.call(Retry::OnlyIfNotSent, |ch| {
            let req = self.request(req.clone());
            async move { PlacementClient::new(ch).move_shard(req).await }
        })
        .await
    }

    /// A shard leader's report of in-sync sets and high watermarks; refused
    /// with FailedPrecondition when its registration or a leader epoch is
    /// stale. Idempotent (the same status written twice): retried.
    pub async fn report_shard_status(
        &self,
        req: ReportShardStatusRequest,
    ) -> Result<ReportShardStatusResponse, ClientError> {
        self.call(Retry::Idempotent, |ch| {
            let req = self.request(req.clone());
            async move { PlacementClient::new(ch).report_shard_status(req).await }
        })
        .await
    }

    /// The shards `broker` must lead or follow: first all of them (a
    /// response with `snapshot` set, when `start_revision` is 0), then every
    /// change, resumed on another endpoint from the last revision seen when
    /// a stream breaks. Feed the responses to an [`crate::Assignments`] to
    /// know the current work.
    pub fn watch_assignments(
        self: &Arc<Self>,
        cluster: &str,
        broker: u64,
        start_revision: i64,
    ) -> tokio::sync::mpsc::Receiver<Result<WatchAssignmentsResponse, ClientError>> {
        let client = self.clone();
        let cluster = cluster.to_string();
        // From 0 the server itself pins the snapshot's revision.
        let pin = async { Ok(0) };
        self.resumed_stream("client-watch-assignments", start_revision.max(0), pin, move |channel, next| {
            let req =
                client.request(WatchAssignmentsRequest { cluster: cluster.clone(), broker, start_revision: next });
            async move { PlacementClient::new(channel).watch_assignments(req).await }
        })
    }
}
