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
    use placement_center::runtime::coverage;
    use placement_sim::hosts::MAX_KV_CLIENTS;
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
        /// Cluster size (at most 99: sim/src/hosts.rs).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=99))]
        nodes: u64,
        /// Virtual seconds of workload under faults per seed, at least 10
        /// (see `MIN_DURATION`).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(MIN_DURATION..))]
        duration: u64,
        /// Concurrent KV clients (the simulated address plan has room for
        /// 50: sim/src/hosts.rs).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(..=i64::from(MAX_KV_CLIENTS)))]
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
        /// Seeds run at once in a sweep, each in its own process (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Run the regression scenario NAME (an explicit fault schedule: see
        /// sim/src/scenarios.rs), or `all` of them, instead of seeds.
        #[arg(long)]
        scenario: Option<String>,
        /// Fail a sweep in which some rare path of the server (a coverage
        /// point: src/runtime/coverage.rs) was never reached.
        #[arg(long)]
        require_coverage: bool,
        /// Internal: end with the machine-readable report line a sweep's seed
        /// processes print.
        #[arg(long, hide = true)]
        child: bool,
        /// Internal: serve a sweep's seeds, read one per line from stdin,
        /// each in a child process forked from this one (see `zygote`).
        #[arg(long, hide = true)]
        zygote: bool,
    }

    /// The shortest workload a seed may run, in virtual seconds. A shorter
    /// one can end before a broker's first heartbeat gets through a fault,
    /// and the seed then fails its "checked nothing" guard without any bug
    /// (at 5 s: seed 10099, 1 of 100; at 1-3 s: seed 10002). At 10 s, 400
    /// three-node and 150 five-node seeds all checked something.
    const MIN_DURATION: u64 = 10;

    /// What a child process reports about its seed, on one machine-readable line.
    const REPORT_TAG: &str = "@report";

    /// What a zygote prints when a seed's process has ended, with how.
    const DONE_TAG: &str = "@done";

    pub fn main() {
        let args = Args::parse();
        if let Some(name) = &args.scenario {
            std::process::exit(if run_scenarios(name) { 0 } else { 1 });
        }
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
        if args.zygote {
            zygote::serve(&args, &faults);
        }
        match args.seed {
            Some(seed) => {
                let ok = run_one(&args, seed, faults);
                std::process::exit(if ok { 0 } else { 1 });
            }
            None => sweep(&args),
        }
    }

    /// Runs scenario `name` (or `all`), one line each; true if all passed.
    fn run_scenarios(name: &str) -> bool {
        let names: Vec<&str> = match name {
            "all" => placement_sim::scenarios::SCENARIOS.iter().map(|(n, _)| *n).collect(),
            one => vec![one],
        };
        let mut passed = true;
        for name in names {
            match placement_sim::scenarios::run(name) {
                None => {
                    eprintln!("no scenario {name}");
                    passed = false;
                }
                Some(violations) if violations.is_empty() => println!("scenario {name} ok"),
                Some(violations) => {
                    println!("scenario {name} FAIL");
                    for v in violations {
                        println!("  {v}");
                    }
                    passed = false;
                }
            }
        }
        passed
    }

    /// Runs `seed` in this process and prints its outcome; true if it passed.
    fn run_one(args: &Args, seed: u64, faults: Vec<FaultKind>) -> bool {
        let opts = RunOptions {
            seed,
            nodes: args.nodes,
            duration: Duration::from_secs(args.duration),
            clients: args.clients,
            keys: args.keys,
            faults,
        };
        // Real time on purpose: the speed report compares virtual to wall time.
        #[allow(clippy::disallowed_methods)]
        let started = std::time::Instant::now();
        let report = run_seed(&opts);
        let wall = started.elapsed();
        let status = if report.violations.is_empty() { "ok" } else { "FAIL" };
        println!(
            "seed {seed:>6} {status:<4} ops={} unknown={} watch={}/{}/{} leases={}/{} brokers={}/{}/{} offsets={}/{} shards={}/{}/{}/{}/{}/{} virtual={:.1}s trace={:016x}",
            report.ops,
            report.unknown,
            report.watch_events,
            report.watch_sessions,
            report.watch_compacted,
            report.leases,
            report.lease_acks,
            report.registrations,
            report.heartbeats,
            report.nodes_left,
            report.offset_commits,
            report.offset_commits_fenced,
            report.shard_placements,
            report.shard_leader_changes,
            report.shard_reports.0,
            report.shard_reports.1,
            report.decisions_replayed,
            report.shard_failovers,
            report.virtual_time.as_secs_f64(),
            report.trace_hash
        );
        if report.auth {
            println!(
                "    auth on: {} revocation windows checked, {} prober requests refused",
                report.revocation_windows, report.probes_denied
            );
        }
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
        }
        let counts: Vec<String> = report.fault_counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
        let reached: Vec<String> = report.coverage.iter().map(|(k, n)| format!("{k}={n}")).collect();
        if args.child || args.zygote {
            println!(
                "{REPORT_TAG} {status} {} {} faults:{} reached:{}",
                report.virtual_time.as_nanos(),
                wall.as_nanos(),
                counts.join(","),
                reached.join(",")
            );
        } else {
            println!("faults injected: {}", counts.join(" "));
            println!("rare paths reached: {}", reached.join(" "));
            println!(
                "summary: seeds=1 failures={} virtual={:.0}s wall={:.1}s speed={:.0} virtual s/wall s",
                u8::from(!report.violations.is_empty()),
                report.virtual_time.as_secs_f64(),
                wall.as_secs_f64(),
                report.virtual_time.as_secs_f64() / wall.as_secs_f64().max(1e-9)
            );
        }
        report.violations.is_empty()
    }

    /// One seed's outcome as its child process reported it.
    struct ChildOutcome {
        /// Everything the child printed except its report line.
        text: String,
        passed: bool,
        virtual_time: Duration,
        wall: Duration,
        fault_counts: Vec<(String, u32)>,
        /// Coverage points reached, with how often.
        reached: Vec<(String, u64)>,
    }

    impl ChildOutcome {
        /// A seed that could not run, or ended without its report.
        fn failed(args: &Args, seed: u64, text: String) -> Self {
            ChildOutcome {
                text: format!(
                    "seed {seed:>6} FAIL {text}\n  replay: ci/sim.sh --seed {seed} --nodes {} --duration {} --faults {} --verbose\n",
                    args.nodes, args.duration, args.faults
                ),
                passed: false,
                virtual_time: Duration::ZERO,
                wall: Duration::ZERO,
                fault_counts: Vec::new(),
                reached: Vec::new(),
            }
        }

        /// Reads what a seed's process printed and how it ended (`ended` is
        /// "exit 0" when it exited with 0).
        fn parse(args: &Args, seed: u64, printed: &str, ended: &str) -> Self {
            let mut text = String::new();
            let mut report = None;
            for line in printed.lines() {
                match line.strip_prefix(REPORT_TAG) {
                    Some(rest) => report = Some(rest.split_whitespace().map(str::to_string).collect::<Vec<_>>()),
                    None => {
                        text.push_str(line);
                        text.push('\n');
                    }
                }
            }
            let Some(fields) = report else {
                return Self::failed(
                    args,
                    seed,
                    format!("the seed's process ended ({ended}) without a report:\n{text}"),
                );
            };
            let nanos = |i: usize| Duration::from_nanos(fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0));
            // "faults:k=n,..." and "reached:k=n,...".
            fn counts<N: std::str::FromStr>(fields: &[String], tag: &str) -> Vec<(String, N)> {
                fields
                    .iter()
                    .find_map(|f| f.strip_prefix(tag))
                    .map(|list| {
                        list.split(',')
                            .filter_map(|kv| kv.split_once('='))
                            .filter_map(|(k, n)| Some((k.to_string(), n.parse().ok()?)))
                            .collect()
                    })
                    .unwrap_or_default()
            }
            ChildOutcome {
                text,
                passed: fields.first().map(String::as_str) == Some("ok") && ended == "exit 0",
                virtual_time: nanos(1),
                wall: nanos(2),
                fault_counts: counts(&fields, "faults:"),
                reached: counts(&fields, "reached:"),
            }
        }
    }

    /// Runs `seed` in a process of its own, forked by this sweep job's
    /// zygote (started on first use, and again after one is lost).
    fn run_child(args: &Args, zygote: &mut Option<zygote::Zygote>, seed: u64) -> ChildOutcome {
        let mut running = match zygote.take() {
            Some(running) => running,
            None => match zygote::Zygote::start(args) {
                Ok(started) => started,
                Err(e) => {
                    return ChildOutcome::failed(args, seed, format!("cannot start the seeds' zygote process: {e}"))
                }
            },
        };
        match running.run(seed) {
            Ok((printed, ended)) => {
                *zygote = Some(running);
                ChildOutcome::parse(args, seed, &printed, &ended)
            }
            Err(e) => ChildOutcome::failed(args, seed, e),
        }
    }

    /// A sweep runs each seed in a process of its own: that is what makes a
    /// seed in a sweep behave exactly as `--seed S` replays it (madsim and
    /// std keep per-process state, e.g. task ids and hash keys, that a second
    /// seed in the same process would inherit). The process is forked from a
    /// zygote, one per sweep job, rather than started afresh: the zygote has
    /// already built what every fresh process would build again, openraft's
    /// latency-histogram tables (base2histogram fills a 26 MB `LazyLock` for
    /// all its widths when the first `Raft` is built), and its children share
    /// them. A fork copies the one thread that forks; the zygote never starts
    /// another, so no lock can be left held in a child.
    mod zygote {
        use std::io::{BufRead, BufReader, Write};
        use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

        use super::{run_one, Args, FaultKind, DONE_TAG};

        /// The zygote's side: reads seeds, one per line, and answers each
        /// with what its process printed and a `DONE_TAG` line. Never returns.
        pub fn serve(args: &Args, faults: &[FaultKind]) -> ! {
            // Built here once, instead of once per seed.
            drop(base2histogram::Histogram::<()>::new());
            match std::fs::read_dir("/proc/self/task").map(Iterator::count) {
                Ok(1) => {}
                threads => {
                    eprintln!("placement-sim --zygote: cannot fork safely ({threads:?} threads, not one)");
                    std::process::exit(2);
                }
            }
            let mut stdout = std::io::stdout();
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                let Ok(seed) = line.trim().parse::<u64>() else {
                    eprintln!("placement-sim --zygote: not a seed: {line:?}");
                    std::process::exit(2);
                };
                // Nothing buffered may be copied into the child and printed twice.
                let _ = stdout.flush();
                let ended = fork_seed(args, faults, seed);
                println!("{DONE_TAG} {ended}");
                let _ = stdout.flush();
            }
            std::process::exit(0)
        }

        /// Runs `seed` in a forked child; says how the child ended ("exit 0"
        /// when its seed passed).
        fn fork_seed(args: &Args, faults: &[FaultKind], seed: u64) -> String {
            // SAFETY: this process has one thread (checked in `serve`, and
            // nothing in it starts another), so the child's copy of its
            // memory holds no lock that another thread held at the fork.
            match unsafe { libc::fork() } {
                -1 => format!("fork failed: {}", std::io::Error::last_os_error()),
                0 => {
                    let run = std::panic::AssertUnwindSafe(|| run_one(args, seed, faults.to_vec()));
                    let passed = std::panic::catch_unwind(run).unwrap_or(false);
                    let _ = std::io::stdout().flush();
                    // SAFETY: ends the child here (it must never go on into
                    // the zygote's loop); its output is flushed above.
                    unsafe { libc::_exit(if passed { 0 } else { 1 }) }
                }
                pid => {
                    let mut status = 0;
                    loop {
                        // SAFETY: waits for this process's own child; `status` outlives the call.
                        if unsafe { libc::waitpid(pid, &mut status, 0) } != -1 {
                            break;
                        }
                        let e = std::io::Error::last_os_error();
                        if e.kind() != std::io::ErrorKind::Interrupted {
                            return format!("waitpid failed: {e}");
                        }
                    }
                    if libc::WIFEXITED(status) {
                        format!("exit {}", libc::WEXITSTATUS(status))
                    } else if libc::WIFSIGNALED(status) {
                        format!("signal {}", libc::WTERMSIG(status))
                    } else {
                        format!("wait status {status}")
                    }
                }
            }
        }

        /// A sweep job's zygote process (`--zygote`) and its pipes.
        pub struct Zygote {
            process: Child,
            stdin: ChildStdin,
            stdout: BufReader<ChildStdout>,
        }

        impl Zygote {
            pub fn start(args: &Args) -> std::io::Result<Self> {
                let mut command = Command::new(std::env::current_exe()?);
                command
                    .args(["--nodes", &args.nodes.to_string(), "--duration", &args.duration.to_string()])
                    .args(["--clients", &args.clients.to_string(), "--keys", &args.keys.to_string()])
                    .args(["--faults", &args.faults, "--zygote"]);
                if args.verbose {
                    command.arg("--verbose");
                }
                let mut process =
                    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
                let (Some(stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
                    let _ = process.kill();
                    let _ = process.wait();
                    return Err(std::io::Error::other("the zygote's pipes were not set up"));
                };
                Ok(Zygote { process, stdin, stdout: BufReader::new(stdout) })
            }

            /// Runs `seed`: what its process printed, and how it ended; an
            /// error if the zygote itself failed (it is then dropped).
            pub fn run(&mut self, seed: u64) -> Result<(String, String), String> {
                writeln!(self.stdin, "{seed}")
                    .and_then(|()| self.stdin.flush())
                    .map_err(|e| format!("cannot hand the seed to its zygote process: {e}"))?;
                let mut printed = String::new();
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match self.stdout.read_until(b'\n', &mut line) {
                        Ok(0) => return Err(format!("the zygote process ended during the seed:\n{printed}")),
                        Ok(_) => {}
                        Err(e) => return Err(format!("cannot read the zygote process: {e}\n{printed}")),
                    }
                    let line = String::from_utf8_lossy(&line);
                    if let Some(ended) = line.trim_end().strip_prefix(DONE_TAG) {
                        return Ok((printed, ended.trim().to_string()));
                    }
                    printed.push_str(&line);
                }
            }
        }

        impl Drop for Zygote {
            fn drop(&mut self) {
                // Between seeds it has no child; stop it and reap it.
                let _ = self.process.kill();
                let _ = self.process.wait();
            }
        }
    }

    /// Runs seeds `from..from+seeds`, `--jobs` child processes at a time, and
    /// prints their outcomes in seed order.
    fn sweep(args: &Args) {
        let seeds: Vec<u64> = (args.from..args.from + args.seeds).collect();
        let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
        // Real time on purpose: the speed report compares virtual to wall time.
        #[allow(clippy::disallowed_methods)]
        let started = std::time::Instant::now();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut virtual_total = Duration::ZERO;
        let mut busy_total = Duration::ZERO;
        let mut failed = Vec::new();
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        let mut reached: BTreeMap<String, u64> = coverage::POINTS.iter().map(|point| (point.to_string(), 0)).collect();
        // The harness's own threads (outside any simulation), each driving
        // child processes.
        #[allow(clippy::disallowed_methods)]
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(seeds.len()) {
                let tx = tx.clone();
                let (next, seeds) = (&next, &seeds);
                scope.spawn(move || {
                    let mut zygote = None;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&seed) = seeds.get(i) else { break };
                        if tx.send((i, run_child(args, &mut zygote, seed))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            // Print in seed order as outcomes arrive.
            let mut pending = BTreeMap::new();
            let mut printed = 0;
            for (i, outcome) in rx {
                pending.insert(i, outcome);
                while let Some(outcome) = pending.remove(&printed) {
                    print!("{}", outcome.text);
                    virtual_total += outcome.virtual_time;
                    busy_total += outcome.wall;
                    for (kind, n) in outcome.fault_counts {
                        *counts.entry(kind).or_default() += n;
                    }
                    for (point, n) in outcome.reached {
                        *reached.entry(point).or_default() += n;
                    }
                    if !outcome.passed {
                        failed.push(seeds[printed]);
                    }
                    printed += 1;
                }
            }
        });
        let wall = started.elapsed().as_secs_f64();
        let mut failed_coverage = false;
        let faults: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!("faults injected: {}", faults.join(" "));
        let points: Vec<String> = reached.iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!("rare paths reached: {}", points.join(" "));
        let never: Vec<&str> = reached.iter().filter(|(_, n)| **n == 0).map(|(k, _)| k.as_str()).collect();
        if args.require_coverage && !never.is_empty() {
            println!("never reached (--require-coverage): {}", never.join(" "));
            failed_coverage = true;
        }
        println!("{} passed, {} failed", seeds.len() - failed.len(), failed.len());
        println!(
            "summary: seeds={} failures={} virtual={:.0}s wall={:.1}s jobs={jobs} speed={:.0} virtual s/wall s (one seed alone: {:.0}){}",
            seeds.len(),
            failed.len(),
            virtual_total.as_secs_f64(),
            wall,
            virtual_total.as_secs_f64() / wall.max(1e-9),
            virtual_total.as_secs_f64() / busy_total.as_secs_f64().max(1e-9),
            if failed.is_empty() { String::new() } else { format!(" failed seeds: {failed:?}") }
        );
        if !failed.is_empty() || failed_coverage {
            std::process::exit(1);
        }
    }
}

// malloc/free were ~14% of a sweep's profile; mimalloc is faster at the
// simulator's many small, short-lived allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
