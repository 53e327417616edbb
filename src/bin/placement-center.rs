//! The Placement Center server. With no arguments: a single-node cluster with
//! data in ./default.placement, clients on 127.0.0.1:2379, peers on 127.0.0.1:2380.

use std::path::PathBuf;

use clap::Parser;
use placement_center::config::{Config, Overrides};

/// mimalloc rather than glibc's malloc: under 100 clients perf showed a
/// node spending 12% of its CPU in `_int_malloc` alone, and waiting on its
/// arena locks.
///
/// Built with `no_thp`: mimalloc no longer asks for transparent huge pages,
/// whose first touch cost the touching thread one fault of about 5 ms here
/// (zeroing 2 MiB). Timed inside the state machine, every apply that spent
/// 2.8-5.6 ms on the CPU (about 0.1 ms is usual) had one such fault. Put
/// at 100 clients capped at 4500/s, four alternated pairs on fresh
/// clusters: p99 17.7 ms on average against 19.7, p99.9 28.7 against 32.8,
/// p50 7.2 against 6.9, and 8 MiB less RSS per member; uncapped, 10843 and
/// 10328/s against 10101 and 10286/s.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Flags; each also reads a PLACEMENT_* environment variable (flags win).
#[derive(Parser, Debug)]
#[command(name = "placement-center", version, about = "Replicated metadata service, etcd v3 compatible")]
struct Args {
    /// TOML config file (lowest precedence).
    #[arg(long, env = "PLACEMENT_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
    /// Seed the (empty) data dir from a backup (`etcdctl snapshot save`) as
    /// this node of a new cluster, then exit. Restore every member from the
    /// same file, then start them without this flag.
    #[arg(long, value_name = "FILE")]
    restore_from: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .init();
    let args = Args::parse();
    let config = Config::load(args.config.as_deref(), args.overrides)?;
    if let Some(file) = &args.restore_from {
        let revision = placement_center::server::restore(&config, file)?;
        println!(
            "restored {} at revision {revision} into {} as node {}; start the node without --restore-from",
            file.display(),
            config.data_dir.display(),
            config.node_id
        );
        return Ok(());
    }
    placement_center::server::run(config, placement_center::runtime::shutdown_signal()).await?;
    Ok(())
}
