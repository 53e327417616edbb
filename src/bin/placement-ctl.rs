//! placement-ctl: keys, broker registrations, members and leases of a
//! Placement Center cluster from the command line (see `ctl` for the exit codes).

use clap::Parser;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = placement_center::ctl::Cli::parse();
    std::process::exit(placement_center::ctl::run(cli).await);
}
