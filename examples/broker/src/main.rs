//! A broker's life with Placement Center, depending on `placement-client`
//! alone (no RocksDB, no Raft):
//!
//! 1. register in a cluster with its roles and addresses;
//! 2. keep the registration alive in the background, and register again (a
//!    new epoch) if it is ever lost;
//! 3. watch the cluster's nodes join, change and leave;
//! 4. follow its assignment: the shards the controller gives it to lead or
//!    follow, and takes from it (a real broker would start and stop serving
//!    them, and report the status of those it leads);
//! 5. on Ctrl-C or SIGTERM, unregister its own epoch and exit.
//!
//! ```text
//! broker ENDPOINTS CLUSTER NODE_ID [ROLE=ADDR ...]
//! broker 127.0.0.1:2379 mqtt 1 mqtt=127.0.0.1:1883
//! ```
//!
//! Each line it prints is one fact: `registered`, `joined`, `changed`,
//! `left`, `lead`, `follow`, `drop`, `lost`, `unregistered`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use placement_client::proto::placement::v1::assignment::Role;
use placement_client::proto::placement::v1::node_event::Kind;
use placement_client::proto::placement::v1::{NodeInfo, RegisterNodeRequest, UnregisterNodeRequest};
use placement_client::{Assignments, Client, ClientError, ClientOptions, Registration};

/// What the command line asks for.
struct Args {
    endpoints: Vec<String>,
    cluster: String,
    node_id: u64,
    addresses: BTreeMap<String, String>,
}

fn parse_args() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoints, cluster, node_id, addresses @ ..] = args.as_slice() else {
        return Err("usage: broker ENDPOINTS CLUSTER NODE_ID [ROLE=ADDR ...]".into());
    };
    let node_id = node_id.parse().map_err(|_| format!("NODE_ID {node_id:?} is not a number"))?;
    let addresses = addresses
        .iter()
        .map(|a| a.split_once('=').map(|(r, a)| (r.to_string(), a.to_string())))
        .collect::<Option<_>>()
        .ok_or("each address is ROLE=HOST:PORT")?;
    Ok(Args { endpoints: vec![endpoints.clone()], cluster: cluster.clone(), node_id, addresses })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {e} ({:?})", e.code());
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), ClientError> {
    // A comma-separated list of members; the client finds the leader and
    // retries on the others.
    let client = Client::new(&args.endpoints, ClientOptions::default())?;
    let request = RegisterNodeRequest {
        cluster: args.cluster.clone(),
        node_id: args.node_id,
        roles: args.addresses.keys().cloned().collect(),
        addresses: args.addresses.clone(),
        labels: BTreeMap::new(),
    };
    let mut registration = register(&client, &request).await?;
    let mut keep_alive = client.keep_alive(&registration);
    // From now on: the watch resumes by itself on another member.
    let mut events = client.watch_nodes(&args.cluster, 0);
    // Its whole assignment first, then every change (resumed the same way).
    let mut assigned = client.watch_assignments(&args.cluster, args.node_id, 0);
    let mut work = Assignments::default();
    let shutdown = placement_client::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            lost = keep_alive.lost() => {
                println!("lost epoch {}: {lost}", registration.node.epoch);
                registration = register(&client, &request).await?;
                keep_alive = client.keep_alive(&registration);
            }
            event = events.recv() => {
                let Some(response) = event else { break };
                for event in response?.events {
                    let kind = match event.kind() {
                        Kind::Joined => "joined",
                        Kind::Changed => "changed",
                        Kind::Left => "left",
                    };
                    println!("{kind} {}", describe(&event.node.unwrap_or_default()));
                }
            }
            response = assigned.recv() => {
                let Some(response) = response else { break };
                for (role, shard) in work.apply(&response?) {
                    let what = match role {
                        Role::Leader => "lead",
                        Role::Follower => "follow",
                        Role::Removed => "drop",
                    };
                    println!("{what} {}/{} leader epoch {}", shard.topic, shard.shard, shard.leader_epoch);
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(keep_alive);
    let mine = UnregisterNodeRequest { cluster: args.cluster, node_id: args.node_id, epoch: registration.node.epoch };
    let removed = client.unregister(mine).await?;
    println!("unregistered node {} epoch {} (removed: {removed})", args.node_id, registration.node.epoch);
    Ok(())
}

async fn register(client: &Client, request: &RegisterNodeRequest) -> Result<Registration, ClientError> {
    let registration = client.register(request.clone()).await?;
    println!(
        "registered {} (heartbeat every {:?}, expires after {:?} without one)",
        describe(&registration.node),
        registration.heartbeat_interval,
        registration.expiry
    );
    Ok(registration)
}

/// `node 1 epoch 7 mqtt=127.0.0.1:1883`
fn describe(node: &NodeInfo) -> String {
    let mut out = format!("node {} epoch {}", node.node_id, node.epoch);
    for (role, addr) in &node.addresses {
        out.push_str(&format!(" {role}={addr}"));
    }
    out
}
