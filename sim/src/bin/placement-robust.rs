//! The robustness suite's runner: `ci/robustness.sh` calls this inside the
//! client's network namespace, with the members' namespaces made.

#[cfg(madsim)]
fn main() {
    eprintln!("placement-robust runs real processes: build it without --cfg madsim (use ci/robustness.sh)");
    std::process::exit(2);
}

#[cfg(not(madsim))]
fn main() {
    use std::path::PathBuf;

    use clap::Parser;
    use placement_sim::robust::{self, Cluster, Fault, Options};

    /// Flags (see ci/robustness.sh).
    #[derive(Parser, Debug)]
    #[command(name = "placement-robust")]
    struct Args {
        /// The placement-center binary the members run.
        #[arg(long)]
        bin: PathBuf,
        /// Directory for data dirs and logs.
        #[arg(long)]
        work: PathBuf,
        /// The members' network namespaces, comma-separated, member 1 first.
        #[arg(long)]
        namespaces: String,
        /// Seconds of workload under faults.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Seed of the fault schedule.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Comma-separated fault kinds, "all" or "none".
        #[arg(long, default_value = "all")]
        faults: String,
        /// Concurrent KV clients.
        #[arg(long, default_value_t = 4)]
        clients: u32,
        /// Distinct keys per generation.
        #[arg(long, default_value_t = 3)]
        keys: u32,
    }

    let args = Args::parse();
    let faults = match Fault::parse_list(&args.faults) {
        Ok(faults) => faults,
        Err(e) => {
            eprintln!("placement-robust: {e}");
            std::process::exit(2);
        }
    };
    let opts = Options {
        bin: args.bin,
        work: args.work,
        namespaces: args.namespaces.split(',').map(str::to_string).collect(),
        duration: args.duration,
        seed: args.seed,
        faults,
        clients: args.clients,
        keys: args.keys,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let report = runtime.block_on(async {
        let cluster = match Cluster::new(&opts) {
            Ok(cluster) => cluster,
            Err(e) => {
                eprintln!("placement-robust: {e}");
                std::process::exit(1);
            }
        };
        println!(
            "robustness: {} members, seed {}, {} s, faults {}",
            opts.namespaces.len(),
            opts.seed,
            opts.duration,
            opts.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(",")
        );
        if let Err(e) = cluster.start_all().await {
            cluster.stop();
            eprintln!("placement-robust: {e}");
            std::process::exit(1);
        }
        cluster.note("every member serves; workload and faults start");
        let report = robust::run(&cluster, &opts).await;
        cluster.stop();
        report
    });
    print!("{report}");
    println!(
        "replay: ci/robustness.sh --nodes {} --duration {} --seed {} --faults {}",
        opts.namespaces.len(),
        opts.duration,
        opts.seed,
        args.faults
    );
    std::process::exit(if report.violations.is_empty() { 0 } else { 1 });
}
