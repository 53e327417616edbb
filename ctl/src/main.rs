//! placement-ctl: keys, broker registrations, topics and shards, members
//! and leases of a
//! Placement Center cluster from the command line, for operators and
//! scripts, over the `placement-client` library alone (no RocksDB, no Raft).
//!
//! Exit codes (stable, for scripts): 0 success; 1 the cluster could not
//! answer (unavailable, timeout, internal); 2 bad usage or an argument the
//! server refused as invalid; 3 not found (a key, a node, a member); 4
//! refused in the current state (stale epoch, a lost registration, a member
//! change the cluster cannot take); 5 a revision out of range (compacted).
//! Errors go to stderr as `Error: <message>`; results to stdout.

mod cluster;
mod kv;
mod lease;
mod node;
mod offsets;
mod output;
mod topic;

use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use placement_client::tonic::Code;

pub use output::Format;
use output::Shown;

use placement_client as client;
use placement_client::proto;

use crate::client::{Client, ClientError, ClientOptions, Credentials};

pub use cluster::{ClusterCommand, ConfigCommand};
pub use kv::KvCommand;
pub use lease::LeaseCommand;
pub use node::NodeCommand;
pub use offsets::OffsetsCommand;
pub use topic::{ShardCommand, TopicCommand};

/// Command line of placement-ctl.
#[derive(Parser, Debug)]
#[command(name = "placement-ctl", version, about = "Talk to a Placement Center cluster")]
pub struct Cli {
    /// Comma-separated client addresses of members (HOST:PORT).
    #[arg(long, global = true, env = "PLACEMENT_ENDPOINTS", default_value = "127.0.0.1:2379")]
    pub endpoints: String,
    /// Output format (`-w`/`--write-out`, as etcdctl spells it, also work).
    #[arg(short, long, global = true, value_enum, default_value = "table", short_alias = 'w', alias = "write-out")]
    pub output: Format,
    /// Seconds one request may take.
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout: u64,
    /// TLS: the CA that signed the members' certificates (PEM), as etcdctl's --cacert.
    #[arg(id = "tls_cacert", long = "cacert", global = true, env = "PLACEMENT_CACERT")]
    pub cacert: Option<std::path::PathBuf>,
    /// TLS: this client's certificate (PEM), for members that require one.
    #[arg(id = "tls_cert", long = "cert", global = true, env = "PLACEMENT_CERT")]
    pub cert: Option<std::path::PathBuf>,
    /// TLS: the private key of --cert (PEM).
    #[arg(id = "tls_key", long = "key", global = true, env = "PLACEMENT_KEY")]
    pub key: Option<std::path::PathBuf>,
    /// Auth: the user to act as. The password comes from PLACEMENT_PASSWORD
    /// or, when that is unset, a prompt; never from a flag, which `ps` shows.
    #[arg(long, global = true, env = "PLACEMENT_USER")]
    pub user: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The credentials `--user` names: the password from the environment or a
/// prompt on the terminal.
fn credentials(user: Option<&str>) -> Result<Option<Credentials>, CtlError> {
    let Some(user) = user else { return Ok(None) };
    let bad = |message: String| CtlError { code: 2, message };
    if user.contains(':') {
        return Err(bad("--user takes a name only: pass the password in PLACEMENT_PASSWORD or at the prompt".into()));
    }
    let password = match std::env::var("PLACEMENT_PASSWORD") {
        Ok(password) => password,
        Err(_) => rpassword::prompt_password(format!("Password for {user}: "))
            .map_err(|e| bad(format!("cannot read the password: {e}")))?,
    };
    Ok(Some(Credentials { user: user.to_string(), password }))
}

/// The command groups.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Keys and values (etcd KV and Watch).
    #[command(subcommand)]
    Kv(KvCommand),
    /// Broker registrations (the placement API).
    #[command(subcommand)]
    Node(NodeCommand),
    /// The Placement Center cluster: status, members, per-cluster settings.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Leases.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Consumer groups' committed offsets.
    #[command(subcommand)]
    Offsets(OffsetsCommand),
    /// Topics: shard counts, replication and placement constraints.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Shards: where they are placed, who leads them, operators' moves.
    #[command(subcommand)]
    Shard(ShardCommand),
    /// Prints a shell completion script (e.g. `placement-ctl completions bash > /etc/bash_completion.d/placement-ctl`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))?;
    Ok((k.to_string(), v.to_string()))
}

fn parse_hex_u64(s: &str) -> Result<u64, String> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| format!("expected a hex id, got {s:?}: {e}"))
}

fn parse_hex(s: &str) -> Result<i64, String> {
    parse_hex_u64(s).map(|v| v as i64)
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct CtlError {
    /// The process exit code.
    pub code: i32,
    /// The message for stderr.
    pub message: String,
}

impl From<ClientError> for CtlError {
    fn from(e: ClientError) -> Self {
        let code = match e.code() {
            Code::InvalidArgument => 2,
            Code::NotFound => 3,
            Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => 4,
            Code::OutOfRange => 5,
            _ => 1,
        };
        CtlError { code, message: e.to_string() }
    }
}

fn not_found(message: String) -> CtlError {
    CtlError { code: 3, message }
}

type Outcome = Result<(), CtlError>;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    std::process::exit(run(Cli::parse()).await);
}

/// Runs the command line; the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match execute(cli).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {}", e.message);
            e.code
        }
    }
}

async fn execute(cli: Cli) -> Outcome {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "placement-ctl", &mut std::io::stdout());
        return Ok(());
    }
    let tls = crate::client::TlsSettings::for_client(cli.cacert.as_deref(), cli.cert.as_deref(), cli.key.as_deref())
        .map_err(|e| CtlError { code: 2, message: e.to_string() })?;
    let credentials = credentials(cli.user.as_deref())?;
    let options = ClientOptions {
        request_timeout: Duration::from_secs(cli.timeout),
        tls,
        credentials,
        ..ClientOptions::default()
    };
    let endpoints: Vec<String> = cli.endpoints.split(',').map(str::to_string).collect();
    let client = Client::new(&endpoints, options).map_err(|e| CtlError { code: 2, message: e.to_string() })?;
    let ctl = Ctl { client, format: cli.output };
    match cli.command {
        Command::Kv(c) => ctl.kv(c).await,
        Command::Node(c) => ctl.node(c).await,
        Command::Cluster(c) => ctl.cluster(c).await,
        Command::Lease(c) => ctl.lease(c).await,
        Command::Offsets(c) => ctl.offsets(c).await,
        Command::Topic(c) => ctl.topic(c).await,
        Command::Shard(c) => ctl.shard(c).await,
        Command::Completions { .. } => Ok(()),
    }
}

struct Ctl {
    client: Arc<Client>,
    format: Format,
}

/// The end of the range of every key starting with `key` (etcd's prefix rule).
fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

impl Ctl {
    /// Prints `shown` (a table or text) or `json` as the format asks.
    fn print<S: Into<Shown>>(&self, shown: impl FnOnce() -> S, json: impl FnOnce() -> serde_json::Value) {
        match self.format {
            Format::Json => println!("{}", json()),
            human => print!("{}", shown().into().render(human)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn the_command_line_is_well_formed_and_parses_pairs_and_hex_ids() {
        Cli::command().debug_assert();
        assert_eq!(parse_pair("grpc=1.2.3.4:5"), Ok(("grpc".into(), "1.2.3.4:5".into())));
        assert!(parse_pair("nopair").is_err());
        assert_eq!(parse_hex_u64("ff"), Ok(255));
        assert_eq!(parse_hex_u64("0x10"), Ok(16));
        assert!(parse_hex_u64("zz").is_err());
    }
}
