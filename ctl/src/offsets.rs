//! `placement-ctl offsets`: consumer groups' committed offsets.

use super::output::Table;
use super::{Ctl, Outcome};
use crate::proto::placement::v1::{CommitOffsetsRequest, ShardOffset};
use clap::Subcommand;
use serde_json::json;

/// `offsets` subcommands.
#[derive(Subcommand, Debug)]
pub enum OffsetsCommand {
    /// A group's committed offsets (of one topic, or all) and its generation.
    Get {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The consumer group.
        #[arg(long)]
        group: String,
        /// Only this topic.
        #[arg(long, default_value = "")]
        topic: String,
    },
    /// Commits offsets, all or none (exit 4 when the group has seen a higher generation).
    Commit {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The consumer group.
        #[arg(long)]
        group: String,
        /// The committer's generation (0: no fence).
        #[arg(long, default_value_t = 0)]
        generation: i64,
        /// Text kept with every offset of this commit.
        #[arg(long, default_value = "")]
        metadata: String,
        /// TOPIC/SHARD=OFFSET, one or more.
        #[arg(required = true, value_parser = parse_offset)]
        offsets: Vec<(String, u32, i64)>,
    },
}

/// `TOPIC/SHARD=OFFSET`.
fn parse_offset(s: &str) -> Result<(String, u32, i64), String> {
    let bad = || format!("expected TOPIC/SHARD=OFFSET, got {s:?}");
    let (at, offset) = s.split_once('=').ok_or_else(bad)?;
    let (topic, shard) = at.rsplit_once('/').ok_or_else(bad)?;
    Ok((topic.to_string(), shard.parse().map_err(|_| bad())?, offset.parse().map_err(|_| bad())?))
}

impl Ctl {
    pub(super) async fn offsets(&self, command: OffsetsCommand) -> Outcome {
        match command {
            OffsetsCommand::Get { cluster, group, topic } => {
                let resp = self.client.fetch_offsets(&cluster, &group, &topic).await?;
                let revision = resp.header.map_or(0, |h| h.revision);
                self.print(
                    || {
                        let mut t = Table::new(vec!["TOPIC", "SHARD", "OFFSET", "METADATA"]);
                        for o in &resp.offsets {
                            t.row(vec![o.topic.clone(), o.shard.to_string(), o.offset.to_string(), o.metadata.clone()]);
                        }
                        t
                    },
                    || {
                        let offsets: Vec<_> = resp
                            .offsets
                            .iter()
                            .map(|o| json!({"topic": o.topic, "shard": o.shard, "offset": o.offset, "metadata": o.metadata}))
                            .collect();
                        json!({"cluster": cluster, "group": group, "generation": resp.generation, "revision": revision, "offsets": offsets})
                    },
                );
                Ok(())
            }
            OffsetsCommand::Commit { cluster, group, generation, metadata, offsets } => {
                let count = offsets.len();
                let offsets = offsets
                    .into_iter()
                    .map(|(topic, shard, offset)| ShardOffset { topic, shard, offset, metadata: metadata.clone() })
                    .collect();
                let req = CommitOffsetsRequest { cluster, group: group.clone(), generation, offsets };
                let resp = self.client.commit_offsets(req).await?;
                let revision = resp.header.map_or(0, |h| h.revision);
                self.print(
                    || {
                        format!(
                            "committed {count} offsets of group {group} at revision {revision} (generation {})\n",
                            resp.generation
                        )
                    },
                    || json!({"group": group, "committed": count, "revision": revision, "generation": resp.generation}),
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_argument_is_topic_slash_shard_equals_offset() {
        assert_eq!(parse_offset("orders.eu/3=120"), Ok(("orders.eu".to_string(), 3, 120)));
        for bad in ["orders=1", "orders/x=1", "orders/1", "orders/1=z"] {
            assert!(parse_offset(bad).unwrap_err().contains("TOPIC/SHARD=OFFSET"), "{bad}");
        }
    }
}
