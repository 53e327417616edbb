//! `placement-ctl kv`: keys and values, over etcd's KV and Watch.

use super::output::{kv_json, text, Format, Shown, Table};
use super::{not_found, parse_hex, prefix_end, Ctl, CtlError, Outcome};
use crate::client::{Client, ClientError, Retry};
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest};
use crate::proto::mvccpb::event::EventType;
use clap::Subcommand;
use placement_client::tonic;
use serde_json::json;

/// `kv` subcommands.
#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Reads a key (exit 3 when it does not exist) or, with --prefix, every key under it.
    Get {
        /// The key.
        key: String,
        /// Read every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// Read the answering member's state without asking the leader (may be stale).
        #[arg(long)]
        serializable: bool,
    },
    /// Writes a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Attach the key to this lease (hex, as `lease list` prints it).
        #[arg(long, value_parser = parse_hex)]
        lease: Option<i64>,
    },
    /// Deletes a key or, with --prefix, every key under it.
    Del {
        /// The key.
        key: String,
        /// Delete every key starting with KEY.
        #[arg(long)]
        prefix: bool,
    },
    /// Prints changes to a key (or prefix) until interrupted.
    Watch {
        /// The key.
        key: String,
        /// Watch every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// Replay from this revision on (0: from now).
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

impl Ctl {
    pub(super) async fn kv(&self, command: KvCommand) -> Outcome {
        match command {
            KvCommand::Get { key, prefix, serializable } => {
                let range_end = if prefix { prefix_end(key.as_bytes()) } else { Vec::new() };
                let req = RangeRequest { key: key.clone().into_bytes(), range_end, serializable, ..Default::default() };
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(req.clone());
                        async move { Client::kv(ch).range(req).await }
                    })
                    .await?;
                if !prefix && resp.kvs.is_empty() {
                    return Err(not_found(format!("key not found: {key}")));
                }
                let revision = resp.header.as_ref().map_or(0, |h| h.revision);
                let simple = self.format == Format::Simple;
                self.print(
                    || {
                        if simple {
                            // etcdctl's: the key, then the value, each on a line.
                            let lines = resp.kvs.iter().map(|kv| format!("{}\n{}\n", text(&kv.key), text(&kv.value)));
                            return Shown::Text(lines.collect());
                        }
                        let mut t = Table::new(vec!["KEY", "VALUE", "MOD_REVISION", "LEASE"]);
                        for kv in &resp.kvs {
                            let lease = if kv.lease == 0 { String::new() } else { format!("{:x}", kv.lease) };
                            t.row(vec![text(&kv.key), text(&kv.value), kv.mod_revision.to_string(), lease]);
                        }
                        Shown::Table(t)
                    },
                    || json!({"revision": revision, "kvs": resp.kvs.iter().map(kv_json).collect::<Vec<_>>()}),
                );
                Ok(())
            }
            KvCommand::Put { key, value, lease } => {
                let req = PutRequest {
                    key: key.into_bytes(),
                    value: value.into_bytes(),
                    lease: lease.unwrap_or(0),
                    ..Default::default()
                };
                let resp = self
                    .client
                    .call(Retry::OnlyIfNotSent, |ch| {
                        let req = self.client.request(req.clone());
                        async move { Client::kv(ch).put(req).await }
                    })
                    .await?;
                let revision = resp.header.map_or(0, |h| h.revision);
                self.print(|| format!("OK revision {revision}\n"), || json!({"revision": revision}));
                Ok(())
            }
            KvCommand::Del { key, prefix } => {
                let range_end = if prefix { prefix_end(key.as_bytes()) } else { Vec::new() };
                let req = DeleteRangeRequest { key: key.into_bytes(), range_end, ..Default::default() };
                let resp = self
                    .client
                    .call(Retry::OnlyIfNotSent, |ch| {
                        let req = self.client.request(req.clone());
                        async move { Client::kv(ch).delete_range(req).await }
                    })
                    .await?;
                let revision = resp.header.map_or(0, |h| h.revision);
                let deleted = resp.deleted;
                self.print(|| format!("deleted {deleted}\n"), || json!({"deleted": deleted, "revision": revision}));
                Ok(())
            }
            KvCommand::Watch { key, prefix, rev } => self.watch_keys(key, prefix, rev).await,
        }
    }

    async fn watch_keys(&self, key: String, prefix: bool, rev: i64) -> Outcome {
        let range_end = if prefix { prefix_end(key.as_bytes()) } else { Vec::new() };
        let create = WatchCreateRequest { key: key.into_bytes(), range_end, start_revision: rev, ..Default::default() };
        let (requests_tx, requests_rx) = tokio::sync::mpsc::channel(1);
        let request = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
        let _ = requests_tx.send(request).await;
        let (channel, endpoint) = self.client.channel();
        let requests = futures::stream::unfold(requests_rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
        let status_error = |status: tonic::Status| ClientError::Status { endpoint: endpoint.to_string(), status };
        self.client.authenticate().await?;
        let requests = self.client.request(requests);
        let mut stream = Client::watch(channel).watch(requests).await.map_err(status_error)?.into_inner();
        let mut interrupted = Box::pin(placement_client::shutdown_signal());
        loop {
            let message = tokio::select! {
                _ = &mut interrupted => return Ok(()),
                m = stream.message() => m.map_err(status_error)?,
            };
            let Some(resp) = message else {
                return Err(CtlError { code: 1, message: "watch ended by the server".into() });
            };
            if resp.canceled {
                let message = format!(
                    "watch canceled: {} (compact revision {})",
                    if resp.cancel_reason.is_empty() { "compacted" } else { &resp.cancel_reason },
                    resp.compact_revision
                );
                return Err(CtlError { code: 5, message });
            }
            for e in &resp.events {
                let kv = e.kv.clone().unwrap_or_default();
                let kind = if e.r#type == EventType::Delete as i32 { "DELETE" } else { "PUT" };
                self.print(
                    || format!("{kind} {} {} revision={}\n", text(&kv.key), text(&kv.value), kv.mod_revision),
                    || json!({"type": kind, "kv": kv_json(&kv)}),
                );
            }
        }
    }
}
