//! `placement-ctl lease`: leases.

use super::output::{text, Table};
use super::{not_found, parse_hex, Ctl, Outcome};
use crate::client::{Client, Retry};
use crate::proto::etcdserverpb::{LeaseLeasesRequest, LeaseTimeToLiveRequest};
use clap::Subcommand;
use serde_json::json;

/// `lease` subcommands.
#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Every lease id.
    List,
    /// A lease's granted and remaining TTL (exit 3 when it does not exist).
    Ttl {
        /// The lease id (hex).
        #[arg(value_parser = parse_hex)]
        id: i64,
        /// Also list the keys attached to it.
        #[arg(long)]
        keys: bool,
    },
}

impl Ctl {
    pub(super) async fn lease(&self, command: LeaseCommand) -> Outcome {
        match command {
            LeaseCommand::List => {
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(LeaseLeasesRequest {});
                        async move { Client::lease(ch).lease_leases(req).await }
                    })
                    .await?;
                let ids: Vec<i64> = resp.leases.iter().map(|l| l.id).collect();
                self.print(
                    || {
                        let mut t = Table::new(vec!["LEASE"]);
                        ids.iter().for_each(|id| t.row(vec![format!("{id:x}")]));
                        t
                    },
                    || json!({"leases": ids}),
                );
                Ok(())
            }
            LeaseCommand::Ttl { id, keys } => {
                let req = LeaseTimeToLiveRequest { id, keys };
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(req);
                        async move { Client::lease(ch).lease_time_to_live(req).await }
                    })
                    .await?;
                if resp.ttl < 0 {
                    return Err(not_found(format!("lease {id:x} not found")));
                }
                let keys: Vec<String> = resp.keys.iter().map(|k| text(k)).collect();
                self.print(
                    || {
                        let mut out = format!("lease {id:x}: granted {}s, remaining {}s\n", resp.granted_ttl, resp.ttl);
                        keys.iter().for_each(|k| out += &format!("  {k}\n"));
                        out
                    },
                    || json!({"id": id, "granted_ttl": resp.granted_ttl, "ttl": resp.ttl, "keys": keys}),
                );
                Ok(())
            }
        }
    }
}
