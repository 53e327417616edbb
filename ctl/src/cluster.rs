//! `placement-ctl cluster`: status, members and per-cluster settings.

use super::output::{member_json, member_table, status_json, status_text};
use super::{parse_hex_u64, Ctl, Outcome};
use crate::client::{Client, Retry};
use crate::proto::etcdserverpb::{MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest};
use crate::proto::placement::v1::{ClusterStatusRequest, GetClusterConfigRequest, SetClusterConfigRequest};
use clap::Subcommand;
use serde_json::json;

/// `cluster` subcommands.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Leader, term, every member's health and applied index, nodes per broker cluster.
    Status,
    /// The members.
    Members,
    /// Adds a member by its peer address (then start it with --join).
    Add {
        /// The new member's peer address, HOST:PORT.
        peer_addr: String,
        /// Add it as a learner (promote it once caught up).
        #[arg(long)]
        learner: bool,
    },
    /// Promotes a learner (hex id, as `cluster members` prints it).
    Promote {
        /// The member id.
        #[arg(value_parser = parse_hex_u64)]
        id: u64,
    },
    /// Removes a member (hex id).
    Remove {
        /// The member id.
        #[arg(value_parser = parse_hex_u64)]
        id: u64,
    },
    /// A broker cluster's heartbeat settings.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `cluster config` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Prints a broker cluster's heartbeat interval and expiry.
    Get {
        /// The broker cluster.
        cluster: String,
    },
    /// Sets them (for registrations from now on).
    Set {
        /// The broker cluster.
        cluster: String,
        /// Seconds between heartbeats.
        #[arg(long)]
        heartbeat_interval: u32,
        /// Seconds without a heartbeat before a node expires.
        #[arg(long)]
        expiry: u32,
    },
}

impl Ctl {
    pub(super) async fn cluster(&self, command: ClusterCommand) -> Outcome {
        match command {
            ClusterCommand::Status => {
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(ClusterStatusRequest {});
                        async move { Client::placement(ch).cluster_status(req).await }
                    })
                    .await?;
                self.print(|| status_text(&resp), || status_json(&resp));
                Ok(())
            }
            ClusterCommand::Members => {
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(MemberListRequest { linearizable: true });
                        async move { Client::cluster(ch).member_list(req).await }
                    })
                    .await?;
                self.print(
                    || member_table(&resp.members),
                    || json!({"members": resp.members.iter().map(member_json).collect::<Vec<_>>()}),
                );
                Ok(())
            }
            ClusterCommand::Add { peer_addr, learner } => {
                let url = if peer_addr.starts_with("http") { peer_addr } else { format!("http://{peer_addr}") };
                let req = MemberAddRequest { peer_ur_ls: vec![url], is_learner: learner };
                let resp = self
                    .client
                    .call(Retry::OnlyIfNotSent, |ch| {
                        let req = self.client.request(req.clone());
                        async move { Client::cluster(ch).member_add(req).await }
                    })
                    .await?;
                let member = resp.member.unwrap_or_default();
                let kind = if member.is_learner { "learner" } else { "voter" };
                self.print(
                    || format!("added member {:x} as a {kind}; start it with --join\n", member.id),
                    || member_json(&member),
                );
                Ok(())
            }
            ClusterCommand::Promote { id } => {
                self.client
                    .call(Retry::OnlyIfNotSent, |ch| {
                        let req = self.client.request(MemberPromoteRequest { id });
                        async move { Client::cluster(ch).member_promote(req).await }
                    })
                    .await?;
                self.print(|| format!("promoted member {id:x}\n"), || json!({"promoted": id}));
                Ok(())
            }
            ClusterCommand::Remove { id } => {
                self.client
                    .call(Retry::OnlyIfNotSent, |ch| {
                        let req = self.client.request(MemberRemoveRequest { id });
                        async move { Client::cluster(ch).member_remove(req).await }
                    })
                    .await?;
                self.print(|| format!("removed member {id:x}\n"), || json!({"removed": id}));
                Ok(())
            }
            ClusterCommand::Config(ConfigCommand::Get { cluster }) => {
                let req = GetClusterConfigRequest { cluster };
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(req.clone());
                        async move { Client::placement(ch).get_cluster_config(req).await }
                    })
                    .await?;
                self.print_config(&resp);
                Ok(())
            }
            ClusterCommand::Config(ConfigCommand::Set { cluster, heartbeat_interval, expiry }) => {
                let req = SetClusterConfigRequest {
                    cluster,
                    heartbeat_interval_secs: heartbeat_interval,
                    expiry_secs: expiry,
                };
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(req.clone());
                        async move { Client::placement(ch).set_cluster_config(req).await }
                    })
                    .await?;
                self.print_config(&resp);
                Ok(())
            }
        }
    }

    fn print_config(&self, c: &crate::proto::placement::v1::ClusterConfigResponse) {
        self.print(
            || {
                let source = if c.configured { "set" } else { "defaults" };
                format!(
                    "cluster {}: heartbeat every {}s, expiry after {}s ({source})\n",
                    c.cluster, c.heartbeat_interval_secs, c.expiry_secs
                )
            },
            || {
                json!({
                    "cluster": c.cluster,
                    "heartbeat_interval_secs": c.heartbeat_interval_secs,
                    "expiry_secs": c.expiry_secs,
                    "configured": c.configured,
                })
            },
        );
    }
}
