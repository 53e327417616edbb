//! Clients on their own simulated nodes, speaking the real etcd KV gRPC API
//! with timeouts, on a small key set (contention is where bugs are). Each
//! operation is recorded with its virtual invocation and completion time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use placement_center::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::request_op::Request;
use placement_center::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use placement_center::runtime::{self, Instant};
use rand::Rng;
use tonic::transport::{Channel, Endpoint};

use crate::history::{Call, Op, Outcome};

/// The recorded history, shared by all clients.
pub type History = Arc<Mutex<Vec<Op>>>;

/// How long a client waits for one RPC before it gives up (outcome unknown).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// Clients move to fresh keys every this many virtual seconds, so that each
/// key's history (and the linearizability search over its unknown-outcome
/// operations) stays small, as with Jepsen's independent keys.
pub const KEY_GENERATION: Duration = Duration::from_secs(4);

/// The key `index` of the generation current at `elapsed`.
pub fn key_name(index: usize, elapsed: Duration) -> String {
    format!("k{index}-{:04}", elapsed.as_secs() / KEY_GENERATION.as_secs())
}

/// One client's connections: a lazily connected channel per server.
pub struct Client {
    /// This client's number.
    pub id: u32,
    /// One KV client per server node.
    kvs: Vec<KvClient<Channel>>,
    /// When the run started (history times are relative to it).
    start: Instant,
    /// Where operations are recorded.
    history: History,
}

impl Client {
    /// A client of the servers at `addrs`.
    pub fn new(id: u32, addrs: &[String], start: Instant, history: History) -> Self {
        let kvs = addrs
            .iter()
            .map(|a| {
                let endpoint = Endpoint::from_shared(format!("http://{a}")).expect("valid address");
                KvClient::new(endpoint.connect_timeout(Duration::from_secs(1)).connect_lazy())
            })
            .collect();
        Self { id, kvs, start, history }
    }

    fn record(&self, key: &str, call: Call, invoked: Instant, outcome: Outcome) -> Outcome {
        let op = Op {
            client: self.id,
            key: key.to_string(),
            call,
            invoked: invoked - self.start,
            completed: runtime::now() - self.start,
            outcome: outcome.clone(),
        };
        self.history.lock().unwrap_or_else(|e| e.into_inner()).push(op);
        outcome
    }

    /// Runs `call` on `key` at server `server` and records it.
    pub async fn run(&mut self, server: usize, key: &str, call: Call) -> Outcome {
        let invoked = runtime::now();
        // Now and then the caller gives up early: an unknown outcome.
        let deadline = crate::caller_deadline(RPC_TIMEOUT);
        let kv = &mut self.kvs[server];
        let is_write = matches!(call, Call::Put(_) | Call::Delete | Call::Cas { .. });
        let result = match &call {
            Call::Put(v) => {
                let req = PutRequest { key: key.into(), value: v.clone().into_bytes(), ..Default::default() };
                runtime::timeout(deadline, kv.put(crate::request(req))).await.map(|r| r.map(|_| Outcome::Written))
            }
            Call::Get | Call::GetSerializable => {
                let req =
                    RangeRequest { key: key.into(), serializable: call == Call::GetSerializable, ..Default::default() };
                runtime::timeout(deadline, kv.range(crate::request(req))).await.map(|r| {
                    r.map(|resp| {
                        Outcome::Read(
                            resp.into_inner().kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
                        )
                    })
                })
            }
            Call::Delete => {
                let req = DeleteRangeRequest { key: key.into(), ..Default::default() };
                runtime::timeout(deadline, kv.delete_range(crate::request(req)))
                    .await
                    .map(|r| r.map(|resp| Outcome::Deleted(resp.into_inner().deleted)))
            }
            Call::Cas { expected, new } => {
                let req = TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Value as i32,
                        key: key.into(),
                        target_union: Some(TargetUnion::Value(expected.clone().into_bytes())),
                        range_end: Vec::new(),
                    }],
                    success: vec![RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            key: key.into(),
                            value: new.clone().into_bytes(),
                            ..Default::default()
                        })),
                    }],
                    failure: Vec::new(),
                };
                runtime::timeout(deadline, kv.txn(crate::request(req)))
                    .await
                    .map(|r| r.map(|resp| Outcome::Swapped(resp.into_inner().succeeded)))
            }
        };
        if std::env::var_os("PLACEMENT_SIM_DEBUG").is_some() {
            if let Ok(Err(status)) = &result {
                eprintln!("client {} {key} {call:?}: {:?} {}", self.id, status.code(), status.message());
            }
        }
        let outcome = match result {
            Ok(Ok(outcome)) => outcome,
            // A refusal that says the request was not executed.
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::NotFound
                        | tonic::Code::OutOfRange
                        | tonic::Code::FailedPrecondition
                        // auth refuses before proposing
                        | tonic::Code::PermissionDenied
                        | tonic::Code::Unauthenticated
                        // NOSPACE, before proposing or at apply
                        | tonic::Code::ResourceExhausted
                ) =>
            {
                Outcome::Failed
            }
            // madsim's tonic says "transport error" only when it could not
            // connect: the request was never sent, so it did not happen.
            // (Real tonic says it also when a connection broke after sending.)
            #[cfg(madsim)]
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable && status.message() == "transport error" => {
                Outcome::Failed
            }
            // Real tonic: the connection could not be made (refused, no
            // route), so the request was never sent.
            #[cfg(not(madsim))]
            Ok(Err(status))
                if status.code() == tonic::Code::Unavailable && status.message().contains("tcp connect error") =>
            {
                Outcome::Failed
            }
            // The server says nothing was proposed.
            Ok(Err(status)) if status.metadata().contains_key(placement_center::api::error::NOT_APPLIED_METADATA) => {
                Outcome::Failed
            }
            // No answer: a write may or may not have happened; a read had no effect.
            _ if is_write => Outcome::Unknown,
            _ => Outcome::Failed,
        };
        self.record(key, call, invoked, outcome)
    }
}

impl Client {
    /// A linearizable range read covering `keys` (one generation), recorded
    /// as one read per key: the read is atomic, so each key's projection of it
    /// is a valid read of that key.
    pub async fn run_range(&mut self, server: usize, keys: &[String]) {
        let (Some(first), Some(last)) = (keys.iter().min(), keys.iter().max()) else { return };
        let invoked = runtime::now();
        let mut end = last.clone().into_bytes();
        end.push(0);
        let req = RangeRequest { key: first.clone().into_bytes(), range_end: end, ..Default::default() };
        let Ok(Ok(resp)) = runtime::timeout(RPC_TIMEOUT, self.kvs[server].range(crate::request(req))).await else {
            return;
        };
        let found: std::collections::BTreeMap<Vec<u8>, String> = resp
            .into_inner()
            .kvs
            .into_iter()
            .map(|kv| (kv.key, String::from_utf8_lossy(&kv.value).into_owned()))
            .collect();
        for key in keys {
            self.record(key, Call::Get, invoked, Outcome::Read(found.get(key.as_bytes()).cloned()));
        }
    }
}

/// Runs one client until `until`: random operations on random keys, sent to
/// random servers, retrying a put whose outcome is unknown once (as real
/// clients do).
pub async fn client_loop(mut client: Client, keys: u32, until: Instant) {
    let servers = client.kvs.len();
    let mut seq = 0u64;
    let mut last_seen: Vec<Option<String>> = vec![None; keys as usize];
    let mut generation = String::new();
    while runtime::now() < until {
        let (server, key_index, choice) = {
            let mut rng = runtime::rng();
            (rng.gen_range(0..servers), rng.gen_range(0..keys as usize), rng.gen_range(0..100))
        };
        let key = key_name(key_index, runtime::now() - client.start);
        let this_generation = key_name(0, runtime::now() - client.start);
        if this_generation != generation {
            generation = this_generation;
            last_seen = vec![None; keys as usize];
        }
        seq += 1;
        let value = format!("c{}-{}", client.id, seq);
        match choice {
            0..=34 => {
                let mut outcome = client.run(server, &key, Call::Put(value.clone())).await;
                if outcome == Outcome::Unknown {
                    let retry_on = (server + 1) % servers;
                    outcome = client.run(retry_on, &key, Call::Put(value.clone())).await;
                }
                if outcome == Outcome::Written {
                    last_seen[key_index] = Some(value);
                }
            }
            35..=54 => {
                if let Outcome::Read(v) = client.run(server, &key, Call::Get).await {
                    last_seen[key_index] = v;
                }
            }
            55..=59 => {
                let elapsed = runtime::now() - client.start;
                let keys: Vec<String> = (0..keys as usize).map(|i| key_name(i, elapsed)).collect();
                client.run_range(server, &keys).await;
            }
            60..=69 => {
                client.run(server, &key, Call::GetSerializable).await;
            }
            70..=79 => {
                if client.run(server, &key, Call::Delete).await != Outcome::Unknown {
                    last_seen[key_index] = None;
                }
            }
            _ => {
                let expected = last_seen[key_index].clone().unwrap_or_else(|| "none".to_string());
                if client.run(server, &key, Call::Cas { expected, new: value.clone() }).await == Outcome::Swapped(true)
                {
                    last_seen[key_index] = Some(value);
                }
            }
        }
        let pause = runtime::rng().gen_range(0..50);
        runtime::sleep(Duration::from_millis(pause)).await;
    }
}

/// Starts `clients` client nodes running [`client_loop`]; returns their join handles.
#[cfg(madsim)]
pub fn start_clients(
    clients: u32,
    keys: u32,
    addrs: &[String],
    start: Instant,
    until: Instant,
    history: &History,
) -> Vec<madsim::task::JoinHandle<()>> {
    (0..clients)
        .map(|i| {
            let node = crate::hosts::Host::KvClient(i).node(format!("client{i}"));
            let client = Client::new(i, addrs, start, history.clone());
            node.spawn(client_loop(client, keys, until))
        })
        .collect()
}
