//! Runs simulation seeds and reports: `ci/sim.sh` calls this.
//! Build with `RUSTFLAGS="--cfg madsim"`.

#[cfg(madsim)]
fn main() {
    sweep::main()
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("placement-sim needs the madsim build: RUSTFLAGS=\"--cfg madsim\" (use ci/sim.sh)");
    std::process::exit(2);
}

#[cfg(madsim)]
mod sweep {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use clap::Parser;
    use placement_sim::nemesis::FaultKind;
    use placement_sim::run::{run_seed, RunOptions};

    /// Flags (see ci/sim.sh).
    #[derive(Parser, Debug)]
    #[command(name = "placement-sim")]
    struct Args {
        /// Run exactly this seed.
        #[arg(long)]
        seed: Option<u64>,
        /// First seed of a sweep.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Number of seeds in a sweep.
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Cluster size.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Virtual seconds of workload under faults per seed.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 4)]
        clients: u32,
        /// Distinct keys.
        #[arg(long, default_value_t = 3)]
        keys: u32,
        /// Comma-separated fault kinds, "all" or "none".
        #[arg(long, default_value = "all")]
        faults: String,
        /// Print each seed's nemesis log.
        #[arg(long)]
        verbose: bool,
    }

    pub fn main() {
        let args = Args::parse();
        let faults: Vec<FaultKind> = match args.faults.as_str() {
            "all" => FaultKind::ALL.to_vec(),
            "none" => Vec::new(),
            list => match list.split(',').map(|s| s.trim().parse()).collect() {
                Ok(faults) => faults,
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(2);
                }
            },
        };
        let seeds: Vec<u64> = match args.seed {
            Some(seed) => vec![seed],
            None => (args.from..args.from + args.seeds).collect(),
        };
        // Real time on purpose: the speed report compares virtual to wall time.
        #[allow(clippy::disallowed_methods)]
        let started = std::time::Instant::now();
        let mut virtual_total = Duration::ZERO;
        let mut failed = Vec::new();
        let mut counts: BTreeMap<FaultKind, u32> = BTreeMap::new();
        for seed in &seeds {
            let opts = RunOptions {
                seed: *seed,
                nodes: args.nodes,
                duration: Duration::from_secs(args.duration),
                clients: args.clients,
                keys: args.keys,
                faults: faults.clone(),
            };
            let report = run_seed(&opts);
            virtual_total += report.virtual_time;
            for (kind, n) in &report.fault_counts {
                *counts.entry(*kind).or_default() += n;
            }
            let status = if report.violations.is_empty() { "ok" } else { "FAIL" };
            println!(
                "seed {seed:>6} {status:<4} ops={} unknown={} virtual={:.1}s trace={:016x}",
                report.ops,
                report.unknown,
                report.virtual_time.as_secs_f64(),
                report.trace_hash
            );
            if args.verbose || !report.violations.is_empty() {
                for event in &report.nemesis_log {
                    println!("    {event}");
                }
            }
            if !report.violations.is_empty() {
                for v in &report.violations {
                    println!("  violation: {v}");
                }
                println!(
                    "  replay: ci/sim.sh --seed {seed} --nodes {} --duration {} --faults {} --verbose",
                    args.nodes, args.duration, args.faults
                );
                failed.push(*seed);
            }
        }
        let wall = started.elapsed().as_secs_f64();
        let faults: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!("faults injected: {}", faults.join(" "));
        println!("{} passed, {} failed", seeds.len() - failed.len(), failed.len());
        println!(
            "summary: seeds={} failures={} virtual={:.0}s wall={:.1}s speed={:.0} virtual s/wall s{}",
            seeds.len(),
            failed.len(),
            virtual_total.as_secs_f64(),
            wall,
            virtual_total.as_secs_f64() / wall.max(1e-9),
            if failed.is_empty() { String::new() } else { format!(" failed seeds: {failed:?}") }
        );
        if !failed.is_empty() {
            std::process::exit(1);
        }
    }
}
