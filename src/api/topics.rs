//! Topics and shards in the `placement.v1` service: create, change, read
//! and delete topics, list and move shards, and the leaders' status reports.
//! Every write is a transaction conditioned on what it was decided from
//! (compare-and-set on revisions), through the same Raft log as the rest.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::context::{ApiContext, Caller};
use super::ApiError;
use crate::placement::controller::Broker;
use crate::placement::offsets::check_segment;
use crate::placement::topics::{self, ShardRecord, TopicRecord, MAX_REPORTED_SHARDS};
use crate::placement::{self, check_cluster, NodeRecord, PlacementError};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::{Event, KeyValue};
use crate::proto::placement::v1::assignment::Role;
use crate::proto::placement::v1::{
    Assignment, CreateTopicRequest, DeleteTopicRequest, GetTopicRequest, ListShardsRequest, ListTopicsRequest,
    MoveShardRequest, ReportShardStatusRequest, Shard, Topic, UpdateTopicRequest,
};
use crate::proto::raft::v1::command;
use crate::proto::raft::v1::command_result::Response as Applied;
use crate::state::{Access, KvState};

/// How often a status report is checked and written again when a shard
/// changed between the check and the write.
const REPORT_ATTEMPTS: u32 = 3;

/// The topic and shard calls of one member.
pub struct Topics {
    ctx: Arc<ApiContext>,
}

/// What a write answers: the revision it applied at.
type Written<T> = Result<(T, i64), ApiError>;

impl Topics {
    /// The calls on `ctx`.
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        Self { ctx }
    }

    /// Proposes `txn` for `caller`: whether it succeeded, its responses and
    /// revision.
    async fn txn(&self, caller: &Caller, txn: TxnRequest) -> Result<(bool, Vec<Op2>, i64), ApiError> {
        let applied = self.ctx.propose(caller, command::Request::Txn(txn)).await?;
        match applied.response {
            Some(Applied::Txn(t)) => {
                Ok((t.succeeded, t.responses.into_iter().filter_map(|r| r.response).collect(), applied.revision))
            }
            other => Err(ApiError::UnexpectedResult(format!("{other:?}"))),
        }
    }

    /// CreateTopic: the topic, written if there was none.
    pub async fn create(&self, caller: &Caller, req: CreateTopicRequest) -> Written<Topic> {
        let spec = req.spec.unwrap_or_default();
        let record = TopicRecord::from_spec(&spec)?;
        let key = topics::topic_key(&spec.cluster, &spec.name);
        let txn = TxnRequest {
            compare: vec![mod_is(&key, 0)],
            success: vec![put(&key, record.encode())],
            failure: Vec::new(),
        };
        let (succeeded, _, revision) = self.txn(caller, txn).await?;
        if !succeeded {
            return Err(PlacementError::TopicExists { cluster: spec.cluster, topic: spec.name }.into());
        }
        let kv = KeyValue { key, mod_revision: revision, create_revision: revision, ..Default::default() };
        Ok((record.to_topic(&spec.cluster, &spec.name, &kv), revision))
    }

    /// UpdateTopic: the topic changed, if it is still at the revision given.
    pub async fn update(&self, caller: &Caller, req: UpdateTopicRequest) -> Written<Topic> {
        let spec = req.spec.unwrap_or_default();
        let next = TopicRecord::from_spec(&spec)?;
        if req.revision <= 0 {
            let why = "must be set to the topic's revision as read".to_string();
            return Err(PlacementError::BadField { what: "revision", why }.into());
        }
        let key = topics::topic_key(&spec.cluster, &spec.name);
        self.ctx.check(caller, Access::Read, &key, &[]).await?;
        let current = self.topic(&spec.cluster, &spec.name).await?;
        let what = format!("topic {}", spec.name);
        let changed = |current| PlacementError::Changed {
            what: what.clone(),
            cluster: spec.cluster.clone(),
            given: req.revision,
            current,
        };
        if current.1.mod_revision != req.revision {
            return Err(changed(current.1.mod_revision).into());
        }
        current.0.check_update(&next)?;
        let txn = TxnRequest {
            compare: vec![mod_is(&key, req.revision)],
            success: vec![put(&key, next.encode())],
            failure: vec![get_op(&key)],
        };
        let (succeeded, responses, revision) = self.txn(caller, txn).await?;
        if !succeeded {
            return Err(changed(first_kv(responses).map_or(0, |kv| kv.mod_revision)).into());
        }
        let kv =
            KeyValue { key, mod_revision: revision, create_revision: current.1.create_revision, ..Default::default() };
        Ok((next.to_topic(&spec.cluster, &spec.name, &kv), revision))
    }

    /// A topic's record and key value, read linearizably.
    async fn topic(&self, cluster: &str, name: &str) -> Result<(TopicRecord, KeyValue), ApiError> {
        let key = topics::topic_key(cluster, name);
        let kv = self.ctx.read_caught_up(|s| super::placement::get(s, &key)).await?;
        let not_found = || PlacementError::TopicNotFound { cluster: cluster.to_string(), topic: name.to_string() };
        let kv = kv.ok_or_else(not_found)?;
        let record = TopicRecord::decode(&kv.value).map_err(|cause| {
            tracing::warn!(cluster, topic = name, %cause, "unreadable topic record (written by hand?)");
            not_found()
        })?;
        Ok((record, kv))
    }

    /// GetTopic: the topic and its shards.
    pub async fn get(&self, caller: &Caller, req: GetTopicRequest) -> Result<(Topic, Vec<Shard>, i64), ApiError> {
        check_cluster(&req.cluster)?;
        check_segment("topic", &req.name)?;
        self.ctx.check(caller, Access::Read, &topics::topic_key(&req.cluster, &req.name), &[]).await?;
        let (start, end) = topics::shards_range(&req.cluster, &req.name);
        self.ctx.check(caller, Access::Read, &start, &end).await?;
        let (topic, shards, revision) = self
            .ctx
            .read_caught_up(|s| {
                let topic = super::placement::get(s, &topics::topic_key(&req.cluster, &req.name));
                (topic, shards(s, &req.cluster, &req.name, 0), s.revision())
            })
            .await?;
        let not_found = || PlacementError::TopicNotFound { cluster: req.cluster.clone(), topic: req.name.clone() };
        let kv = topic.ok_or_else(not_found)?;
        let record = TopicRecord::decode(&kv.value).map_err(|_| not_found())?;
        Ok((record.to_topic(&req.cluster, &req.name, &kv), shards, revision))
    }

    /// ListTopics: a cluster's topics by name.
    pub async fn list(&self, caller: &Caller, req: ListTopicsRequest) -> Result<(Vec<Topic>, i64), ApiError> {
        check_cluster(&req.cluster)?;
        let (key, range_end) = topics::topics_range(&req.cluster);
        self.ctx.check(caller, Access::Read, &key, &range_end).await?;
        self.ctx
            .read_caught_up(|s| {
                let found = s.range(&RangeRequest { key, range_end, ..Default::default() }).map(|r| r.kvs);
                let topics = found
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|kv| {
                        let (cluster, name) = topics::parse_topic_key(&kv.key)?;
                        let record = TopicRecord::decode(&kv.value).ok()?;
                        Some(record.to_topic(cluster, name, kv))
                    })
                    .collect();
                (topics, s.revision())
            })
            .await
    }

    /// DeleteTopic: the topic and its shards gone; whether there was one.
    pub async fn delete(&self, caller: &Caller, req: DeleteTopicRequest) -> Written<bool> {
        check_cluster(&req.cluster)?;
        check_segment("topic", &req.name)?;
        let key = topics::topic_key(&req.cluster, &req.name);
        let (start, end) = topics::shards_range(&req.cluster, &req.name);
        let compare = if req.revision > 0 { vec![mod_is(&key, req.revision)] } else { Vec::new() };
        let delete = |key: &[u8], range_end: &[u8]| RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                key: key.to_vec(),
                range_end: range_end.to_vec(),
                ..Default::default()
            })),
        };
        let txn =
            TxnRequest { compare, success: vec![delete(&key, &[]), delete(&start, &end)], failure: vec![get_op(&key)] };
        let (succeeded, responses, revision) = self.txn(caller, txn).await?;
        if !succeeded {
            let current = first_kv(responses).map_or(0, |kv| kv.mod_revision);
            let what = format!("topic {}", req.name);
            return Err(PlacementError::Changed { what, cluster: req.cluster, given: req.revision, current }.into());
        }
        let deleted = matches!(responses.first(), Some(Op2::ResponseDeleteRange(d)) if d.deleted > 0);
        Ok((deleted, revision))
    }

    /// ListShards: a cluster's shards, of one topic and/or broker.
    pub async fn list_shards(&self, caller: &Caller, req: ListShardsRequest) -> Result<(Vec<Shard>, i64), ApiError> {
        check_cluster(&req.cluster)?;
        if !req.topic.is_empty() {
            check_segment("topic", &req.topic)?;
        }
        let (start, end) = topics::shards_range(&req.cluster, &req.topic);
        self.ctx.check(caller, Access::Read, &start, &end).await?;
        self.ctx.read_caught_up(|s| (shards(s, &req.cluster, &req.topic, req.broker), s.revision())).await
    }

    /// MoveShard: the shard with its leadership or a replica moved.
    pub async fn move_shard(&self, caller: &Caller, req: MoveShardRequest) -> Written<Shard> {
        check_cluster(&req.cluster)?;
        check_segment("topic", &req.topic)?;
        let key = topics::shard_key(&req.cluster, &req.topic, req.shard);
        self.ctx.check(caller, Access::Read, &key, &[]).await?;
        let (topic, shard, brokers) = self
            .ctx
            .read_caught_up(|s| {
                let topic = super::placement::get(s, &topics::topic_key(&req.cluster, &req.topic));
                (topic, super::placement::get(s, &key), brokers(s, &req.cluster))
            })
            .await?;
        let not_found = || PlacementError::ShardNotFound {
            cluster: req.cluster.clone(),
            topic: req.topic.clone(),
            shard: req.shard,
        };
        let (Some(topic_kv), Some(shard_kv)) = (topic, shard) else { return Err(not_found().into()) };
        let topic = TopicRecord::decode(&topic_kv.value).map_err(|_| not_found())?;
        let current = ShardRecord::decode(&shard_kv.value).map_err(|_| not_found())?;
        if req.revision > 0 && req.revision != shard_kv.mod_revision {
            let what = format!("shard {}/{}", req.topic, req.shard);
            let (given, current) = (req.revision, shard_kv.mod_revision);
            return Err(PlacementError::Changed { what, cluster: req.cluster, given, current }.into());
        }
        let next = topics::moved(&topic, &current, &brokers, &req)?;
        let mut compare = vec![mod_is(&key, shard_kv.mod_revision), mod_is(&topic_kv.key, topic_kv.mod_revision)];
        // Every replica's registration as read: a gone broker kept as the
        // last in-sync replica has none (or another epoch).
        for b in next.broker_epochs.keys() {
            let seen = brokers.get(b).map_or(0, |broker| broker.epoch);
            compare.push(mod_is(&placement::node_key(&req.cluster, *b), seen));
        }
        let txn = TxnRequest { compare, success: vec![put(&key, next.encode())], failure: Vec::new() };
        let (succeeded, _, revision) = self.txn(caller, txn).await?;
        if !succeeded {
            let what = format!("shard {}/{}", req.topic, req.shard);
            return Err(PlacementError::WriteRaced { what, cluster: req.cluster }.into());
        }
        tracing::info!(topic = %req.topic, shard = req.shard, leader = next.leader, leader_epoch = next.leader_epoch, "shard moved by an operator");
        Ok((next.to_shard(&req.topic, req.shard, revision), revision))
    }

    /// ReportShardStatus: the shards' in-sync sets and high watermarks, if the
    /// broker's registration and the shards' leader epochs are current.
    pub async fn report(&self, caller: &Caller, req: ReportShardStatusRequest) -> Result<i64, ApiError> {
        placement::check_node(&req.cluster, req.node_id)?;
        if req.epoch <= 0 {
            return Err(PlacementError::NoEpoch.into());
        }
        let bad = |why: String| PlacementError::BadField { what: "shards", why };
        if req.shards.is_empty() || req.shards.len() > MAX_REPORTED_SHARDS {
            return Err(bad(format!("{} given: report 1 to {MAX_REPORTED_SHARDS} shards", req.shards.len())).into());
        }
        for s in &req.shards {
            check_segment("topic", &s.topic)?;
            if s.high_watermark < 0 {
                return Err(
                    bad(format!("high watermark {} of {}/{} is negative", s.high_watermark, s.topic, s.shard)).into()
                );
            }
        }
        for attempt in 1..=REPORT_ATTEMPTS {
            let (compare, success) = self.ctx.read_caught_up(|s| reported(s, &req)).await??;
            let txn = TxnRequest { compare, success, failure: Vec::new() };
            let (succeeded, _, revision) = self.txn(caller, txn).await?;
            if succeeded {
                return Ok(revision);
            }
            tracing::debug!(attempt, "a reported shard changed while being written: checking again");
        }
        Err(PlacementError::WriteRaced { what: format!("node {}'s shards", req.node_id), cluster: req.cluster }.into())
    }
}

/// A transaction's response, unwrapped.
type Op2 = crate::proto::etcdserverpb::response_op::Response;

/// The first key value a transaction's range answered.
fn first_kv(responses: Vec<Op2>) -> Option<KeyValue> {
    responses.into_iter().find_map(|r| match r {
        Op2::ResponseRange(range) => range.kvs.into_iter().next(),
        _ => None,
    })
}

/// A compare: `key`'s mod revision is `revision` (0: the key is missing).
pub(super) fn mod_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::ModRevision(revision)),
    }
}

/// A put of `value` at `key`.
pub(super) fn put(key: &[u8], value: Vec<u8>) -> RequestOp {
    RequestOp { request: Some(Op::RequestPut(PutRequest { key: key.to_vec(), value, ..Default::default() })) }
}

fn get_op(key: &[u8]) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(RangeRequest { key: key.to_vec(), ..Default::default() })) }
}

/// `cluster`'s shards in `state`, of `topic` ("": all) held by `broker` (0:
/// any), by topic then shard.
pub(super) fn shards(state: &KvState, cluster: &str, topic: &str, broker: u64) -> Vec<Shard> {
    let (key, range_end) = topics::shards_range(cluster, topic);
    let found = state.range(&RangeRequest { key, range_end, ..Default::default() }).map(|r| r.kvs);
    let mut shards: Vec<Shard> = found
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| {
            let (_, topic, shard) = topics::parse_shard_key(&kv.key)?;
            let record = ShardRecord::decode(&kv.value).ok()?;
            (broker == 0 || record.holds(broker)).then(|| record.to_shard(topic, shard, kv.mod_revision))
        })
        .collect();
    shards.sort_by(|a, b| (&a.topic, a.shard).cmp(&(&b.topic, b.shard)));
    shards
}

/// `cluster`'s registered brokers in `state`, as the controller sees them.
pub(super) fn brokers(state: &KvState, cluster: &str) -> BTreeMap<u64, Broker> {
    let (key, range_end) = placement::nodes_range(cluster);
    let found = state.range(&RangeRequest { key, range_end, ..Default::default() }).map(|r| r.kvs);
    found
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| NodeRecord::decode(kv).ok())
        .map(|n| (n.node_id, Broker { epoch: n.epoch, roles: n.roles, labels: n.labels }))
        .collect()
}

/// The write of `req`'s statuses as `state` has the broker and the shards:
/// compares on the broker's registration and on each shard as read, and a
/// put of each shard's record with the status; or why it is refused.
fn reported(state: &KvState, req: &ReportShardStatusRequest) -> Result<(Vec<Compare>, Vec<RequestOp>), PlacementError> {
    let node = placement::node_key(&req.cluster, req.node_id);
    let registered = super::placement::get(state, &node)
        .ok_or_else(|| PlacementError::NotRegistered { cluster: req.cluster.clone(), node_id: req.node_id })?;
    if registered.mod_revision != req.epoch {
        return Err(PlacementError::StaleEpoch {
            cluster: req.cluster.clone(),
            node_id: req.node_id,
            given: req.epoch,
            current: registered.mod_revision,
        });
    }
    let mut compare = vec![mod_is(&node, req.epoch)];
    let mut success = Vec::with_capacity(req.shards.len());
    let mut records: BTreeMap<Vec<u8>, (ShardRecord, i64)> = BTreeMap::new();
    for status in &req.shards {
        let key = topics::shard_key(&req.cluster, &status.topic, status.shard);
        let (record, revision) = match records.remove(&key) {
            Some(found) => found,
            None => {
                let not_found = || PlacementError::ShardNotFound {
                    cluster: req.cluster.clone(),
                    topic: status.topic.clone(),
                    shard: status.shard,
                };
                let kv = super::placement::get(state, &key).ok_or_else(not_found)?;
                compare.push(mod_is(&key, kv.mod_revision));
                (ShardRecord::decode(&kv.value).map_err(|_| not_found())?, kv.mod_revision)
            }
        };
        let next = topics::with_status(&req.cluster, req.node_id, &record, status).inspect_err(|e| {
            if matches!(e, PlacementError::StaleLeaderEpoch { .. }) {
                crate::runtime::coverage::reached("shard-status-fenced");
            }
        })?;
        records.insert(key, (next, revision));
    }
    for (key, (record, _)) in records {
        success.push(put(&key, record.encode()));
    }
    Ok((compare, success))
}

/// What `record` asks of `broker`.
fn role(record: &ShardRecord, broker: u64) -> Role {
    if record.leader == broker && broker != 0 {
        Role::Leader
    } else if record.holds(broker) {
        Role::Follower
    } else {
        Role::Removed
    }
}

/// Every shard of `cluster` `broker` holds in `state`, as assignments.
pub(super) fn assignments(state: &KvState, cluster: &str, broker: u64) -> Vec<Assignment> {
    shards(state, cluster, "", broker)
        .into_iter()
        .map(|shard| {
            let role = if shard.leader == broker { Role::Leader } else { Role::Follower };
            Assignment { role: role as i32, shard: Some(shard) }
        })
        .collect()
}

/// What the shard events of one revision change for `broker`: a shard it
/// came to hold, or holds in another role, leader epoch, replica or in-sync
/// set, or no longer holds. High watermarks alone are not news to it.
pub(super) fn assignment_changes(broker: u64, revision: i64, events: &[&Event]) -> Vec<Assignment> {
    let decode = |kv: Option<&KeyValue>| kv.and_then(|kv| ShardRecord::decode(&kv.value).ok());
    events
        .iter()
        .filter_map(|e| {
            let key = e.kv.as_ref()?;
            let (_, topic, shard) = topics::parse_shard_key(&key.key)?;
            let before = decode(e.prev_kv.as_ref()).filter(|r| r.holds(broker));
            let after = if e.r#type == EventType::Delete as i32 { None } else { decode(e.kv.as_ref()) };
            let after = after.filter(|r| r.holds(broker));
            match (before, after) {
                (None, None) => None,
                (Some(b), Some(a)) if b.placement() == a.placement() => None,
                (_, Some(a)) => {
                    Some(Assignment { role: role(&a, broker) as i32, shard: Some(a.to_shard(topic, shard, revision)) })
                }
                (Some(b), None) => {
                    Some(Assignment { role: Role::Removed as i32, shard: Some(b.to_shard(topic, shard, revision)) })
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::placement::v1::ShardStatus;
    use crate::proto::raft::v1::Command;

    fn apply(state: &mut KvState, request: command::Request) {
        let command = Command { auth_revision: None, alarm_disarms: None, request: Some(request) };
        state.apply(&command).unwrap();
    }

    #[test]
    fn the_largest_status_report_is_one_valid_transaction() {
        let mut state = KvState::new();
        let node = placement::node_key("mq", 1);
        apply(&mut state, command::Request::Put(PutRequest { key: node, value: b"{}".to_vec(), ..Default::default() }));
        let epoch = state.revision();
        let record = ShardRecord {
            replicas: vec![1],
            broker_epochs: [(1, epoch)].into(),
            leader: 1,
            leader_epoch: 1,
            in_sync: vec![1],
            ..Default::default()
        };
        let shards = MAX_REPORTED_SHARDS as u32;
        for shard in 0..shards {
            let put =
                PutRequest { key: topics::shard_key("mq", "t", shard), value: record.encode(), ..Default::default() };
            apply(&mut state, command::Request::Put(put));
        }
        let status =
            |shard| ShardStatus { topic: "t".into(), shard, leader_epoch: 1, in_sync: vec![1], high_watermark: 9 };
        let req = ReportShardStatusRequest {
            cluster: "mq".into(),
            node_id: 1,
            epoch,
            shards: (0..shards).map(status).collect(),
        };
        let (compare, success) = reported(&state, &req).unwrap();
        let txn = TxnRequest { compare, success, failure: Vec::new() };
        let command = Command { auth_revision: None, alarm_disarms: None, request: Some(command::Request::Txn(txn)) };
        KvState::validate(&command).unwrap();
        let applied = state.apply(&command).unwrap();
        assert!(matches!(applied.result.response, Some(Applied::Txn(ref t)) if t.succeeded));
        // A stale leader epoch is named.
        let stale = ReportShardStatusRequest { shards: vec![ShardStatus { leader_epoch: 0, ..status(3) }], ..req };
        let refused = reported(&state, &stale).unwrap_err().to_string();
        assert_eq!(refused, "stale leader epoch 0 for shard t/3 of cluster mq: the shard is at leader epoch 1");
    }
}
