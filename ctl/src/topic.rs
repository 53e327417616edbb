//! `placement-ctl topic` and `placement-ctl shard`: topics, their shards,
//! operators' moves, and a broker's assignment.

use clap::Subcommand;
use serde_json::{json, Value};

use super::output::Table;
use super::{Ctl, Outcome};
use crate::proto::placement::v1::assignment::Role;
use crate::proto::placement::v1::{MoveShardRequest, Shard, Topic, TopicSpec};

/// `topic` subcommands.
#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Creates a topic; the controller places its shards on live brokers
    /// (exit 4 if it exists).
    Create {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The topic.
        name: String,
        /// How many shards (1 to 10,000).
        #[arg(long, default_value_t = 1)]
        shards: u32,
        /// Replicas per shard (1 to 7).
        #[arg(long, default_value_t = 1)]
        replication_factor: u32,
        /// Only brokers with this role hold its shards.
        #[arg(long, default_value = "")]
        role: String,
        /// Replicas of a shard on brokers with distinct values of this label (e.g. zone).
        #[arg(long, default_value = "")]
        spread_label: String,
    },
    /// Changes a topic at the revision read (more shards, another
    /// replication factor or constraint); exit 4 if it changed since.
    Update {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The topic.
        name: String,
        /// The topic's revision as read (`topic describe`).
        #[arg(long)]
        revision: i64,
        /// New shard count (only grows; default: unchanged).
        #[arg(long)]
        shards: Option<u32>,
        /// New replication factor (default: unchanged).
        #[arg(long)]
        replication_factor: Option<u32>,
    },
    /// A cluster's topics.
    List {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
    },
    /// A topic and its shards.
    Describe {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The topic.
        name: String,
    },
    /// Deletes a topic and its shards.
    Delete {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The topic.
        name: String,
        /// Only if the topic is at this revision (0: whatever it is).
        #[arg(long, default_value_t = 0)]
        revision: i64,
    },
}

/// `shard` subcommands.
#[derive(Subcommand, Debug)]
pub enum ShardCommand {
    /// A cluster's shards, of one topic and/or one broker.
    List {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// Only this topic.
        #[arg(long, default_value = "")]
        topic: String,
        /// Only the shards this broker holds.
        #[arg(long, default_value_t = 0)]
        broker: u64,
    },
    /// Moves a shard's leadership (--leader) or one of its replicas (--from, --to).
    Move {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// The shard.
        #[arg(long)]
        shard: u32,
        /// The broker to lead it: an in-sync replica.
        #[arg(long, default_value_t = 0)]
        leader: u64,
        /// Allow --leader outside the in-sync set (data only it lacked may be lost).
        #[arg(long)]
        unclean: bool,
        /// The broker whose replica moves.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// The broker taking it.
        #[arg(long, default_value_t = 0)]
        to: u64,
        /// Only if the shard is at this revision (0: whatever it is).
        #[arg(long, default_value_t = 0)]
        revision: i64,
    },
    /// Streams the shards a broker must lead or follow: all of them, then every change.
    Watch {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The broker.
        #[arg(long)]
        broker: u64,
        /// Resume from this revision (0: the whole assignment first).
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

fn topic_json(t: &Topic) -> Value {
    let spec = t.spec.clone().unwrap_or_default();
    json!({
        "cluster": spec.cluster, "name": spec.name, "shards": spec.shards,
        "replication_factor": spec.replication_factor, "role": spec.role,
        "spread_label": spec.spread_label, "revision": t.revision, "create_revision": t.create_revision,
    })
}

fn topic_table(topics: &[Topic]) -> Table {
    let mut t = Table::new(vec!["NAME", "SHARDS", "REPLICATION", "ROLE", "SPREAD", "REVISION"]);
    for topic in topics {
        let spec = topic.spec.clone().unwrap_or_default();
        t.row(vec![
            spec.name,
            spec.shards.to_string(),
            spec.replication_factor.to_string(),
            spec.role,
            spec.spread_label,
            topic.revision.to_string(),
        ]);
    }
    t
}

fn ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn shard_json(s: &Shard) -> Value {
    json!({
        "topic": s.topic, "shard": s.shard, "replicas": s.replicas, "leader": s.leader,
        "leader_epoch": s.leader_epoch, "in_sync": s.in_sync, "high_watermark": s.high_watermark,
        "revision": s.revision,
    })
}

fn shard_table(shards: &[Shard]) -> Table {
    let mut t = Table::new(vec!["TOPIC", "SHARD", "LEADER", "LEADER EPOCH", "REPLICAS", "IN SYNC", "HIGH WATERMARK"]);
    for s in shards {
        t.row(vec![
            s.topic.clone(),
            s.shard.to_string(),
            if s.leader == 0 { "none".to_string() } else { s.leader.to_string() },
            s.leader_epoch.to_string(),
            ids(&s.replicas),
            ids(&s.in_sync),
            s.high_watermark.to_string(),
        ]);
    }
    t
}

fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Leader) => "lead",
        Ok(Role::Follower) => "follow",
        _ => "removed",
    }
}

impl Ctl {
    pub(super) async fn topic(&self, command: TopicCommand) -> Outcome {
        match command {
            TopicCommand::Create { cluster, name, shards, replication_factor, role, spread_label } => {
                let spec = TopicSpec { cluster, name, shards, replication_factor, role, spread_label };
                let topic = self.client.create_topic(spec).await?.topic.unwrap_or_default();
                self.print(
                    || {
                        format!(
                            "created topic {} at revision {}\n",
                            topic.spec.clone().unwrap_or_default().name,
                            topic.revision
                        )
                    },
                    || topic_json(&topic),
                );
            }
            TopicCommand::Update { cluster, name, revision, shards, replication_factor } => {
                let current = self.client.get_topic(&cluster, &name).await?.topic.unwrap_or_default();
                let mut spec = current.spec.unwrap_or_default();
                spec.shards = shards.unwrap_or(spec.shards);
                spec.replication_factor = replication_factor.unwrap_or(spec.replication_factor);
                let topic = self.client.update_topic(spec, revision).await?.topic.unwrap_or_default();
                self.print(|| format!("updated topic {name} at revision {}\n", topic.revision), || topic_json(&topic));
            }
            TopicCommand::List { cluster } => {
                let topics = self.client.list_topics(&cluster).await?.topics;
                self.print(
                    || topic_table(&topics),
                    || json!({"topics": topics.iter().map(topic_json).collect::<Vec<_>>()}),
                );
            }
            TopicCommand::Describe { cluster, name } => {
                let resp = self.client.get_topic(&cluster, &name).await?;
                let topic = resp.topic.unwrap_or_default();
                self.print(
                    || {
                        let mut text = topic_table(std::slice::from_ref(&topic)).render();
                        text.push('\n');
                        text.push_str(&shard_table(&resp.shards).render());
                        text
                    },
                    || {
                        let mut v = topic_json(&topic);
                        v["placed"] = json!(resp.shards.iter().map(shard_json).collect::<Vec<_>>());
                        v
                    },
                );
            }
            TopicCommand::Delete { cluster, name, revision } => {
                let resp = self.client.delete_topic(&cluster, &name, revision).await?;
                let revision = resp.header.map_or(0, |h| h.revision);
                if !resp.deleted {
                    return Err(super::not_found(format!("topic {name} of cluster {cluster} not found")));
                }
                self.print(
                    || format!("deleted topic {name} and its shards at revision {revision}\n"),
                    || json!({"deleted": true, "revision": revision}),
                );
            }
        }
        Ok(())
    }

    pub(super) async fn shard(&self, command: ShardCommand) -> Outcome {
        match command {
            ShardCommand::List { cluster, topic, broker } => {
                let shards = self.client.list_shards(&cluster, &topic, broker).await?.shards;
                self.print(
                    || shard_table(&shards),
                    || json!({"shards": shards.iter().map(shard_json).collect::<Vec<_>>()}),
                );
            }
            ShardCommand::Move { cluster, topic, shard, leader, unclean, from, to, revision } => {
                let req = MoveShardRequest { cluster, topic, shard, leader, unclean, from, to, revision };
                let moved = self.client.move_shard(req).await?.shard.unwrap_or_default();
                self.print(
                    || {
                        format!(
                            "moved shard {}/{}: leader {} at leader epoch {}, replicas {}\n",
                            moved.topic,
                            moved.shard,
                            moved.leader,
                            moved.leader_epoch,
                            ids(&moved.replicas)
                        )
                    },
                    || shard_json(&moved),
                );
            }
            ShardCommand::Watch { cluster, broker, rev } => {
                let mut stream = self.client.watch_assignments(&cluster, broker, rev);
                while let Some(resp) = stream.recv().await {
                    let resp = resp?;
                    let revision = resp.header.as_ref().map_or(0, |h| h.revision);
                    for a in &resp.assignments {
                        let s = a.shard.clone().unwrap_or_default();
                        self.print(
                            || {
                                format!(
                                    "{revision} {} {}/{} leader_epoch={} replicas={}\n",
                                    role_name(a.role),
                                    s.topic,
                                    s.shard,
                                    s.leader_epoch,
                                    ids(&s.replicas)
                                )
                            },
                            || {
                                json!({"revision": revision, "snapshot": resp.snapshot, "role": role_name(a.role), "shard": shard_json(&s)})
                            },
                        );
                    }
                }
            }
        }
        Ok(())
    }
}
