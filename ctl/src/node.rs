//! `placement-ctl node`: broker registrations, over the placement API.

use super::output::{event_json, event_line, node_json, node_table};
use super::{parse_pair, Ctl, CtlError, Outcome};
use crate::proto::placement::v1::{NodeInfo, RegisterNodeRequest, UnregisterNodeRequest};
use clap::Subcommand;
use serde_json::json;

/// `node` subcommands.
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Registers a node; prints its epoch and lease. With --keep-alive it stays
    /// and heartbeats until interrupted (then unregisters) or the
    /// registration is lost (exit 4).
    Register {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The node id (non-zero).
        #[arg(long)]
        id: u64,
        /// A role (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A named address NAME=HOST:PORT (repeatable).
        #[arg(long = "address", value_parser = parse_pair)]
        addresses: Vec<(String, String)>,
        /// A label KEY=VALUE (repeatable).
        #[arg(long = "label", value_parser = parse_pair)]
        labels: Vec<(String, String)>,
        /// Stay and heartbeat.
        #[arg(long)]
        keep_alive: bool,
    },
    /// Sends one heartbeat for a registration (exit 4: stale epoch, 3: not registered).
    Heartbeat {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The node id.
        #[arg(long)]
        id: u64,
        /// The epoch `node register` printed.
        #[arg(long)]
        epoch: i64,
    },
    /// Lists registered nodes.
    List {
        /// Only this broker cluster.
        #[arg(long, default_value = "")]
        cluster: String,
        /// Only nodes with this role.
        #[arg(long, default_value = "")]
        role: String,
    },
    /// Prints nodes joining, changing and leaving until interrupted.
    Watch {
        /// Only this broker cluster.
        #[arg(long, default_value = "")]
        cluster: String,
        /// Replay from this revision on (0: from now).
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
    /// Removes a registration.
    Unregister {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The node id.
        #[arg(long)]
        id: u64,
        /// Only if this is still the registration's epoch.
        #[arg(long, default_value_t = 0)]
        epoch: i64,
    },
}

impl Ctl {
    pub(super) async fn node(&self, command: NodeCommand) -> Outcome {
        match command {
            NodeCommand::Register { cluster, id, roles, addresses, labels, keep_alive } => {
                let req = RegisterNodeRequest {
                    cluster,
                    node_id: id,
                    roles,
                    addresses: addresses.into_iter().collect(),
                    labels: labels.into_iter().collect(),
                };
                // Listening before the output a script may act on (see shutdown_signal).
                let interrupted = keep_alive.then(placement_client::shutdown_signal);
                let registration = self.client.register(req).await?;
                let (interval, expiry) = (registration.heartbeat_interval, registration.expiry);
                let node = registration.node.clone();
                self.print(
                    || {
                        let mut out = node_table(std::slice::from_ref(&node)).render();
                        out += &format!(
                            "heartbeat every {}s, expires after {}s without one\n",
                            interval.as_secs(),
                            expiry.as_secs()
                        );
                        out
                    },
                    || {
                        json!({
                            "node": node_json(&node),
                            "heartbeat_interval_secs": interval.as_secs(),
                            "expiry_secs": expiry.as_secs(),
                        })
                    },
                );
                match interrupted {
                    Some(interrupted) => self.keep_alive(&registration, interrupted).await,
                    None => Ok(()),
                }
            }
            NodeCommand::Heartbeat { cluster, id, epoch } => {
                let node = NodeInfo { cluster, node_id: id, epoch, ..Default::default() };
                let resp = self.client.heartbeat(&node).await?;
                let ttl = resp.ttl_secs;
                self.print(|| format!("OK ttl {ttl}s\n"), || json!({"ttl_secs": ttl}));
                Ok(())
            }
            NodeCommand::List { cluster, role } => {
                let resp = self.client.list_nodes(&cluster, &role).await?;
                let revision = resp.header.as_ref().map_or(0, |h| h.revision);
                self.print(
                    || node_table(&resp.nodes),
                    || json!({"revision": revision, "nodes": resp.nodes.iter().map(node_json).collect::<Vec<_>>()}),
                );
                Ok(())
            }
            NodeCommand::Watch { cluster, rev } => {
                let mut events = self.client.watch_nodes(&cluster, rev);
                let mut interrupted = Box::pin(placement_client::shutdown_signal());
                loop {
                    let next = tokio::select! {
                        _ = &mut interrupted => return Ok(()),
                        next = events.recv() => next,
                    };
                    let resp = match next {
                        None => return Err(CtlError { code: 1, message: "watch ended".into() }),
                        Some(resp) => resp?,
                    };
                    for e in &resp.events {
                        self.print(|| event_line(e) + "\n", || event_json(e));
                    }
                }
            }
            NodeCommand::Unregister { cluster, id, epoch } => {
                let req = UnregisterNodeRequest { cluster: cluster.clone(), node_id: id, epoch };
                let removed = self.unregister(req).await?;
                self.print(
                    || {
                        if removed {
                            format!("unregistered node {id} of cluster {cluster}\n")
                        } else {
                            format!("node {id} of cluster {cluster} was not registered\n")
                        }
                    },
                    || json!({"removed": removed}),
                );
                Ok(())
            }
        }
    }

    async fn unregister(&self, req: UnregisterNodeRequest) -> Result<bool, CtlError> {
        Ok(self.client.unregister(req).await?)
    }

    /// Heartbeats until interrupted (then unregisters) or the registration is lost.
    async fn keep_alive(
        &self,
        registration: &crate::client::Registration,
        interrupted: impl std::future::Future<Output = ()>,
    ) -> Outcome {
        let mut keep_alive = self.client.keep_alive(registration);
        tokio::select! {
            lost = keep_alive.lost() => Err(CtlError { code: 4, message: format!("registration lost: {lost}") }),
            _ = interrupted => {
                let node = &registration.node;
                let req = UnregisterNodeRequest { cluster: node.cluster.clone(), node_id: node.node_id, epoch: node.epoch };
                self.unregister(req).await?;
                eprintln!("interrupted: unregistered node {} of cluster {}", node.node_id, node.cluster);
                Ok(())
            }
        }
    }
}
